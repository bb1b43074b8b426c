//! One error for every way a call to an edge can fail, carrying what a person needs to act on it.

use std::fmt;

use serde::Serialize;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Timeouts, resets, refused connections, 5xx, 429 and "busy" codes.
    Transient,
    /// The edge understood and said no; the same request will fail the same way.
    Permanent,
}

/// How the failure showed itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Failure {
    /// The edge answered with an error status or an error code in its body.
    Edge,
    Timeout {
        after_ms: u64,
    },
    Connect {
        detail: String,
    },
    /// The connection closed before a full answer arrived.
    Reset {
        detail: String,
    },
    /// The edge answered something this client cannot read.
    Decode {
        detail: String,
    },
    /// Refused before anything was sent (bad URL, version gate, ...).
    Refused {
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct EdgeError {
    /// What was being done: `create`, `update`, `start`, `status`, `login`, ...
    pub step: String,
    /// What it was done to: `rule r1`, `stream demo`, `node modbus-1`, `tag t3 (#3 in group g1)`.
    pub object: String,
    pub status: Option<u16>,
    /// The edge's own error code (eKuiper 1000..5000, Neuron 1001..3019, ...).
    pub code: Option<i64>,
    /// The edge's message, or a description of the code when the edge sends only a code.
    pub message: String,
    pub failure: Failure,
    pub retry: Retry,
    /// How many times the call was made before giving up (set by callers that retry).
    pub tries: u32,
}

impl EdgeError {
    pub fn is_transient(&self) -> bool {
        self.retry == Retry::Transient
    }

    pub(crate) fn edge(step: &str, object: &str, status: u16, code: Option<i64>, message: String) -> EdgeError {
        let busy = matches!(code, Some(1010) | Some(17023));
        let retry = if status >= 500 || status == 429 || busy { Retry::Transient } else { Retry::Permanent };
        EdgeError {
            step: step.into(),
            object: object.into(),
            status: Some(status),
            code,
            message,
            failure: Failure::Edge,
            retry,
            tries: 1,
        }
    }

    pub(crate) fn transport(step: &str, object: &str, failure: Failure) -> EdgeError {
        let retry = match failure {
            Failure::Decode { .. } | Failure::Refused { .. } => Retry::Permanent,
            _ => Retry::Transient,
        };
        EdgeError {
            step: step.into(),
            object: object.into(),
            status: None,
            code: None,
            message: String::new(),
            failure,
            retry,
            tries: 1,
        }
    }

    pub fn refused(step: &str, object: &str, detail: impl Into<String>) -> EdgeError {
        EdgeError::transport(step, object, Failure::Refused { detail: detail.into() })
    }
}

impl fmt::Display for EdgeError {
    /// `create rule r1: edge said 1000 "fail to get stream demo, please check if stream is created"`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.step, self.object)?;
        match &self.failure {
            Failure::Edge => match (self.code, self.status) {
                (Some(code), _) => write!(f, "edge said {code} {:?}", self.message),
                (None, Some(status)) if self.message == crate::NOT_NEURONEX => {
                    write!(f, "HTTP {status}, {}", crate::NOT_NEURONEX)
                }
                (None, Some(status)) => write!(f, "edge answered HTTP {status} {:?}", self.message),
                (None, None) => write!(f, "edge said {:?}", self.message),
            },
            Failure::Timeout { after_ms } => {
                write!(f, "no answer within {} ms (timeout)", after_ms)
            }
            Failure::Connect { detail } => write!(f, "cannot connect: {detail}"),
            Failure::Reset { detail } => write!(f, "connection closed without an answer: {detail}"),
            Failure::Decode { detail } => write!(f, "unreadable answer: {detail}"),
            Failure::Refused { detail } => write!(f, "{detail}"),
        }?;
        if self.tries > 1 {
            write!(f, " (after {} tries)", self.tries)?;
        }
        Ok(())
    }
}

/// What Neuron's bare codes mean (Neuron sends `{"error": N}` without text).
pub fn neuron_code_text(code: i64) -> &'static str {
    match code {
        1001 => "internal error",
        1002 => "request body is invalid",
        1003 => "request parameter is invalid",
        1004 => "missing token",
        1005 => "token decode error",
        1006 => "token expired",
        1007 => "token validation failed",
        1008 => "invalid token",
        1009 => "wrong user or password",
        1010 => "server busy",
        2001 => "node type invalid",
        2002 => "node already exists",
        2003 => "node does not exist",
        2004 => "node setting invalid",
        2005 => "node setting not found",
        2006 => "node not ready",
        2007 => "node is running",
        2008 => "node not running",
        2009 => "node is stopped",
        2010 => "node name too long",
        2011 => "node does not allow deleting",
        2101 => "group already subscribed",
        2103 => "group not allowed on an app node",
        2104 => "group already exists",
        2105 => "group interval invalid (below 100 ms)",
        2106 => "group does not exist",
        2107 => "group name too long",
        2108 => "too many groups",
        2201 => "tag does not exist",
        2202 => "tag name conflict",
        2203 => "tag attribute not supported",
        2204 => "tag type not supported",
        2205 => "tag address format invalid",
        2206 => "tag name too long",
        2207 => "tag address too long",
        2208 => "tag description too long",
        2209 => "tag precision invalid",
        2301 => "driver plugin (library) not found",
        2307 => "plugin allows a single instance only",
        2404 => "licence node limit reached",
        2405 => "licence tag limit reached",
        3013 => "plugin does not support the request",
        3014 => "plugin does not exist",
        3019 => "plugin is a north (app) plugin, not a driver",
        13008 => "allocated tag count is less than in use",
        13012 => "edge left ECP management; changes are not allowed",
        20003 => "data-processing service error",
        20004 => "Neuron not ready",
        _ => "unknown Neuron error",
    }
}
