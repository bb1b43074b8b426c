//! One error for every way a call to an edge can fail, carrying what a person needs to act on it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Timeouts, resets, refused connections, 5xx, 429 and "busy" codes.
    Transient,
    /// The edge understood and said no; the same request will fail the same way.
    Permanent,
}

/// How the failure showed itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Agent mode: the agent did not answer in time (offline, slow, or the broker lost the command).
    AgentSilent {
        agent_id: String,
        after_ms: u64,
        /// The agent said it took the command (it then died, hung, or lost its connection).
        accepted: bool,
    },
    /// Agent mode: the agent refused the command (bad signature, expired, already run, ...).
    AgentRefused {
        agent_id: String,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
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
    /// How long the call took, every try included, when it was measured.
    pub spent_ms: Option<u64>,
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
            spent_ms: None,
        }
    }

    pub(crate) fn transport(step: &str, object: &str, failure: Failure) -> EdgeError {
        let retry = match failure {
            Failure::Decode { .. } | Failure::Refused { .. } | Failure::AgentRefused { .. } => Retry::Permanent,
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
            spent_ms: None,
        }
    }

    pub fn refused(step: &str, object: &str, detail: impl Into<String>) -> EdgeError {
        EdgeError::transport(step, object, Failure::Refused { detail: detail.into() })
    }

    /// No answer within `after`, measured by a caller with a deadline of its own.
    pub fn timeout(step: &str, object: &str, after: std::time::Duration) -> EdgeError {
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        EdgeError::transport(step, object, Failure::Timeout { after_ms })
    }

    /// Records how many tries were made and how long they took, for the message.
    pub fn with_tries(mut self, tries: u32, spent: std::time::Duration) -> EdgeError {
        self.tries = tries;
        self.spent_ms = Some(u64::try_from(spent.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// eKuiper's and Neuron's answers for an object that already exists (node 2002, group 2104,
    /// tag 2202; eKuiper says it in words).
    pub fn is_already_exists(&self) -> bool {
        self.failure == Failure::Edge
            && self.version_clash().is_none()
            && (matches!(self.code, Some(2002) | Some(2104) | Some(2202)) || self.message.contains("already exists"))
    }

    /// eKuiper's refusal to replace a rule (2.2+) or a stream or table (2.3+) whose stored
    /// `version` is not lower than the new one: `(stored, sent)`. eKuiper compares versions as
    /// text and refuses an equal one too, so re-sending the same versioned object is refused.
    pub fn version_clash(&self) -> Option<VersionClash> {
        if self.failure != Failure::Edge {
            return None;
        }
        let (_, rest) = self.message.split_once("already exists with version (")?;
        let (stored, rest) = rest.split_once("), new version (")?;
        let (sent, _) = rest.split_once(") is lower")?;
        Some(VersionClash { stored: stored.to_owned(), sent: sent.to_owned() })
    }

    /// eKuiper 2.3+ refusing to change a stream's `SHARED` option on replace (it must be dropped and
    /// created again).
    pub fn is_shared_change(&self) -> bool {
        self.failure == Failure::Edge && self.message.contains("do not support to change stream SHARED option")
    }

    /// eKuiper 2.4+ refusing to download from a loopback, private or link-local address (its
    /// `basic.enablePrivateNet` is off): the cause ends `ip <addr> is in internal network`.
    pub fn is_private_download_refused(&self) -> bool {
        self.failure == Failure::Edge && self.message.contains("is in internal network")
    }
}

/// See [`EdgeError::version_clash`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionClash {
    pub stored: String,
    pub sent: String,
}

impl VersionClash {
    /// The edge already holds exactly the version that was sent.
    pub fn same(&self) -> bool {
        self.stored == self.sent
    }
}

/// `300 ms`, `15 s`, `46.2 s`: the one way durations appear in reasons.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        _ if ms.is_multiple_of(1000) => format!("{} s", ms / 1000),
        _ => format!("{:.1} s", ms as f64 / 1000.0),
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
            Failure::Timeout { after_ms } => write!(f, "no answer within {}", human_duration(*after_ms)),
            Failure::Connect { detail } => write!(f, "cannot connect: {detail}"),
            Failure::Reset { detail } => write!(f, "connection closed without an answer: {detail}"),
            Failure::Decode { detail } => write!(f, "unreadable answer: {detail}"),
            Failure::Refused { detail } => write!(f, "{detail}"),
            Failure::AgentSilent { agent_id, after_ms, accepted: false } => {
                write!(f, "the agent {agent_id} did not answer within {}", human_duration(*after_ms))
            }
            Failure::AgentSilent { agent_id, after_ms, accepted: true } => {
                write!(
                    f,
                    "the agent {agent_id} took the command but did not answer within {}",
                    human_duration(*after_ms)
                )
            }
            Failure::AgentRefused { agent_id, detail } => {
                write!(f, "the agent {agent_id} refused the command: {detail}")
            }
        }?;
        // Tries and time matter where trying again could help; a refusal is the edge's answer.
        match self.spent_ms {
            Some(ms) if self.is_transient() => write!(f, " ({} in {})", tries_word(self.tries), human_duration(ms)),
            _ if self.tries > 1 => write!(f, " ({})", tries_word(self.tries)),
            _ => Ok(()),
        }
    }
}

/// `1 try`, `3 tries`.
pub fn tries_word(tries: u32) -> String {
    if tries == 1 { "1 try".into() } else { format!("{tries} tries") }
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
        2012 => "node does not allow subscriptions (not an app node)",
        2015 => "node name is empty",
        2101 => "group already subscribed",
        2102 => "group is not subscribed",
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
        2210 => "tag already exists",
        2211 => "tag decimal invalid",
        2212 => "tag bias invalid (numeric read-only tags only, within ±1000)",
        2301 => "driver plugin (library) not found",
        2307 => "plugin allows a single instance only",
        2404 => "licence node limit reached",
        2405 => "licence tag limit reached",
        3013 => "plugin name too long",
        3014 => "plugin does not exist",
        3019 => "plugin is a north (app) plugin, not a driver",
        4010 => "MQTT subscription refused (its params need a non-empty topic)",
        13008 => "allocated tag count is less than in use",
        13012 => "edge left ECP management; changes are not allowed",
        20003 => "data-processing service error",
        20004 => "Neuron not ready",
        _ => "unknown Neuron error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One wording per kind of failure: what was done to what, what happened, tries and time.
    #[test]
    fn every_failure_reads_the_same_way() {
        let timeout = EdgeError::timeout("read", "version", std::time::Duration::from_secs(15));
        let reset = EdgeError::transport("create", "rule r1", Failure::Reset { detail: "eof".into() });
        let said = EdgeError::edge("create", "node n1", 409, Some(2002), "node already exists".into());
        let cases = [
            (timeout.clone(), "read version: no answer within 15 s"),
            (
                timeout.with_tries(3, std::time::Duration::from_millis(46_210)),
                "read version: no answer within 15 s (3 tries in 46.2 s)",
            ),
            (
                reset.with_tries(1, std::time::Duration::from_millis(12)),
                "create rule r1: connection closed without an answer: eof (1 try in 12 ms)",
            ),
            (
                said.clone().with_tries(1, std::time::Duration::from_millis(3)),
                "create node n1: edge said 2002 \"node already exists\"",
            ),
            (
                EdgeError::edge("read", "version", 500, Some(1001), "internal error".into())
                    .with_tries(2, std::time::Duration::from_millis(1_250)),
                "read version: edge said 1001 \"internal error\" (2 tries in 1.2 s)",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        assert!(said.is_already_exists());
        let clash = EdgeError::edge(
            "apply",
            "rule r1",
            400,
            Some(1000),
            "Update rule error: rule r1 already exists with version (2), new version (2) is lower".into(),
        );
        assert_eq!(clash.version_clash(), Some(VersionClash { stored: "2".into(), sent: "2".into() }));
        assert!(clash.version_clash().is_some_and(|c| c.same()) && !clash.is_already_exists());
        assert!(!EdgeError::edge("create", "rule r1", 400, Some(1000), "bad sql".into()).is_already_exists());
    }
}
