//! edgefleet's domain: what a template document is and when it is valid, how parameters render,
//! what a delivery's states and options mean, how edge services are selected. No IO here: every
//! function takes values and returns values, so all of it is tested without a server.

pub mod access;
pub mod audit;
pub mod compat;
pub mod delivery;
pub mod drift;
pub mod driver;
pub mod edge;
pub mod endpoint;
pub mod filter;
pub mod import;
pub mod network;
pub mod params;
pub mod patch;
pub mod plan;
pub mod rollout;
pub mod rule;
pub mod secrets;
pub mod template;
pub mod text;
pub mod version;
pub mod webhook;
pub mod window;
pub mod wire;

/// One problem in a document: where it is and what is wrong, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Problem {
    /// A path into the document, such as `rules.r1.actions` or `nodes[0].groups[1].tags[2]`.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { path: path.into(), message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// `invalid JSON at line 2, column 13: key must be a string` from a serde_json error.
pub fn json_error_text(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("invalid JSON at line {}, column {}: {reason}", err.line(), err.column())
}
