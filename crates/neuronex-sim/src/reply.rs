//! What an instance answers: an HTTP response, a dropped connection, or nothing at all.

use serde_json::Value;

use crate::versions::Engines;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Http {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Close the connection without an answer (a reset, or eKuiper's panicking handlers).
    Reset,
    /// Never answer; the client must give up on its own.
    Hang,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::Http { status, content_type: TEXT, body: body.into() }
    }

    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::Http { status, content_type: JSON, body: body.to_string() }
    }

    /// A JSON document sent exactly as it was stored (eKuiper answers a rule's own text).
    pub fn json_text(status: u16, body: String) -> Reply {
        Reply::Http { status, content_type: JSON, body }
    }

    /// JSON sent with Go's default text content type, as several eKuiper handlers do.
    pub fn json_as_text(status: u16, body: &Value) -> Reply {
        Reply::Http { status, content_type: TEXT, body: body.to_string() }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// eKuiper's `handleError`: 404 only for code 1002, 400 otherwise; body written by `http.Error`
/// (text content type, trailing newline). eKuiper 1.x splices the message in unescaped.
pub fn ekuiper_error(engines: &Engines, code: u32, message: &str) -> Reply {
    let status = if code == 1002 { 404 } else { 400 };
    let body = if engines.ekuiper_v2() {
        format!("{}\n", serde_json::json!({ "error": code, "message": message }))
    } else {
        format!("{{\"error\":{code},\"message\":\"{message}\"}}\n")
    };
    Reply::text(status, body)
}

/// Neuron's jansson bodies: `{"error": 2002}` with the space jansson puts after the colon.
pub fn neuron_code(status: u16, code: u32) -> Reply {
    Reply::Http { status, content_type: JSON, body: format!("{{\"error\": {code}}}") }
}

/// Neuron derives the HTTP status from the error code alone (`neu_http_response`).
pub fn neuron_error(code: u32) -> Reply {
    neuron_code(neuron_status(code), code)
}

pub fn neuron_status(code: u32) -> u16 {
    match code {
        0 | 2005 | 2101 | 4010 => 200,
        2003 | 2102 | 2106 | 2201 | 2301 | 3014 => 404,
        2002 | 2006..=2009 | 2103 | 2104 | 2202 | 2307 => 409,
        1001 | 1010 => 500,
        1004 | 1005 | 1009 => 401,
        1006..=1008 => 403,
        _ => 400,
    }
}

pub fn neuron_ok() -> Reply {
    neuron_code(200, 0)
}
