//! What travels over the broker. Every payload is JSON; commands are signed as the exact text the
//! agent verifies (`SignedCommand.command`), so no re-encoding can change what was signed.

use edge_client::{CallAnswer, EdgeError, WriteCall};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Agent ids are checked by `domain::edge::check_agent_id`, so they hold no wildcard or `/`.
pub fn commands_topic(agent_id: &str) -> String {
    format!("edgefleet/v1/agents/{agent_id}/commands")
}

pub fn results_topic(agent_id: &str) -> String {
    format!("edgefleet/v1/agents/{agent_id}/results")
}

pub fn status_topic(agent_id: &str) -> String {
    format!("edgefleet/v1/agents/{agent_id}/status")
}

/// What the server subscribes to: every agent's results and status.
pub const ALL_RESULTS: &str = "edgefleet/v1/agents/+/results";
pub const ALL_STATUS: &str = "edgefleet/v1/agents/+/status";

/// `edgefleet/v1/agents/{agent_id}/{leaf}` → `(agent_id, leaf)`.
pub fn split_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("edgefleet/v1/agents/")?;
    let (agent_id, leaf) = rest.split_once('/')?;
    (!agent_id.is_empty() && !leaf.contains('/')).then_some((agent_id, leaf))
}

/// The largest package piece sent in one command when the agent cannot download it.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The largest MQTT packet either side accepts: a NeuronEX answer is at most 32 MiB (the edge
/// client's limit), and JSON escaping can make it longer. Mosquitto's own limit
/// (`message_size_limit`) is larger by default.
pub const MAX_PACKET_BYTES: usize = 72 * 1024 * 1024;

/// The payload on the commands topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedCommand {
    /// A [`Command`] as JSON text.
    pub command: String,
    /// Base64 of the Ed25519 signature of `command`'s bytes.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Unique per command; an agent never runs the same id twice.
    pub id: String,
    /// The agent it is for: a command published to another agent's topic is refused.
    pub agent_id: String,
    pub issued_at: i64,
    /// After this (by the agent's clock, with its allowed skew) the server has stopped waiting, so
    /// running it would change a gateway behind a result already written.
    pub expires_at: i64,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// One NeuronEX API call.
    Call {
        method: String,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
        /// `GET`s to make after the call when it succeeds (2xx), answered in its `then`. Agents
        /// of protocol 1 ignore it (and answer none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<String>,
    },
    /// Several `GET`s, made one after the other, answered together (at most
    /// [`edge_client::MAX_READS`]; only agents of [`PROTOCOL`] 2 or later get them).
    Reads { paths: Vec<String> },
    /// Several writes, made in order, stopping at the first that does not succeed (a write falls
    /// back to its `if_missing` call on 404); `then` read once all succeeded (at most
    /// [`edge_client::MAX_WRITES`]; only agents of [`PROTOCOL`] 3 or later get them).
    Writes {
        writes: Vec<WriteCall>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<String>,
    },
    /// Download a package from a signed link (outbound HTTPS from the plant) and keep it.
    Fetch { url: String, sha256: String, name: String },
    /// One piece of a package, when the agent cannot download it.
    Chunk { sha256: String, name: String, offset: u64, total: u64, data: String },
}

impl Op {
    pub fn describe(&self) -> String {
        match self {
            Op::Call { method, path, .. } => format!("{method} {path}"),
            Op::Reads { paths } => format!("GET {} paths", paths.len()),
            Op::Writes { writes, .. } => format!("{} writes", writes.len()),
            Op::Fetch { name, .. } => format!("fetch {name}"),
            Op::Chunk { name, offset, total, .. } => format!("chunk {name} {offset}/{total}"),
        }
    }
}

/// The payload on the results topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub agent_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Progress: the command verified and is still running half a second later (its answer
    /// follows). Tells a command the agent never got from one it got and did not finish.
    Accepted,
    /// NeuronEX answered (any status), and the call's `then` reads when it succeeded.
    Answer {
        status: u16,
        body: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<CallAnswer>,
    },
    /// The answers to `reads`, in order; fewer than asked once they grew past
    /// [`edge_client::ANSWERS_BYTES`] (the server reads the rest one by one).
    Answers { answers: Vec<CallAnswer> },
    /// The answers to `writes`: one per call made, ending at the first that did not succeed;
    /// `then` when every write succeeded.
    Wrote {
        answers: Vec<CallAnswer>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<CallAnswer>,
    },
    /// The package is on the agent's disk; NeuronEX can install it from `url` (`file://...`).
    Fetched { url: String },
    /// The download failed; the server may send the package in chunks instead.
    FetchFailed { detail: String },
    /// A piece was stored; `complete` once every byte came and the SHA-256 matched.
    Stored { received: u64, complete: Option<String> },
    /// The call could not be made (NeuronEX unreachable, sign-in refused, ...).
    Failed { error: EdgeError },
    /// Not run.
    Refused { reason: Refusal, detail: String },
}

/// Why an agent did not run a command. Reported on the results topic and in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The signature does not verify with the agent's command key (forged or altered).
    BadSignature,
    /// The command names another agent.
    WrongAgent,
    /// Past its `expires_at` (or issued in the future) by more than the allowed clock skew.
    Expired,
    /// This id was run before (a replay or a redelivery); its answer was sent then.
    AlreadyRun,
    /// Unreadable, or asks for something an agent never does (a path outside `/api/`, ...).
    Malformed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongAgent => "wrong_agent",
            Refusal::Expired => "expired",
            Refusal::AlreadyRun => "already_run",
            Refusal::Malformed => "malformed",
        }
    }
}

/// What an agent understands: 1 is every command of the first release; 2 adds `reads`; 3 adds
/// `writes`. An agent announces its number in its status, and the server sends nothing newer
/// than that, so agents can be upgraded after the server, one plant at a time.
pub const PROTOCOL: u32 = 3;

/// The retained document on the status topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub status: AgentState,
    /// The agent's own version.
    pub version: String,
    pub at: i64,
    /// [`PROTOCOL`] of the agent; absent (1) from agents of the first release.
    #[serde(default = "first_protocol")]
    pub protocol: u32,
}

fn first_protocol() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Offline,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_split_back_into_agent_and_leaf() {
        assert_eq!(split_topic(&results_topic("sim-3")), Some(("sim-3", "results")));
        assert_eq!(split_topic(&status_topic("a.b")), Some(("a.b", "status")));
        assert_eq!(split_topic("edgefleet/v1/agents//results"), None);
        assert_eq!(split_topic("edgefleet/v1/agents/a/b/results"), None);
        assert_eq!(split_topic("other/topic"), None);
    }

    #[test]
    fn commands_keep_their_op_at_the_top_level() {
        let command = Command {
            id: "c1".into(),
            agent_id: "sim-0".into(),
            issued_at: 1,
            expires_at: 2,
            op: Op::Call { method: "GET".into(), path: "/api/version".into(), body: None, then: Vec::new() },
        };
        let text = serde_json::to_string(&command).expect("json");
        assert_eq!(
            text,
            r#"{"id":"c1","agent_id":"sim-0","issued_at":1,"expires_at":2,"op":"call","method":"GET","path":"/api/version"}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&text).expect("back"), command);
    }
}
