//! The second way to reach an edge: through an agent beside it (agent mode). The edge client keeps
//! every rule of talking to NeuronEX (paths, answers, errors, retries); only the carriage of one
//! request and its answer is handed to a [`Relay`], which the server implements over MQTT. An edge
//! behind a relay is reached with the agent's own NeuronEX credentials, so the server sends none.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{EdgeError, Failure};

/// One request carried to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RelayRequest {
    /// One NeuronEX API call (`path` starts with `/api/`).
    Call {
        method: String,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
        /// `GET`s to make right after the call when it succeeds (2xx), answered with it: a write
        /// and the check that follows it cost one round trip
        /// ([`Edge::read_after_write`](crate::Edge::read_after_write)).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<String>,
    },
    /// Several `GET`s in one exchange ([`Edge::read_ahead`](crate::Edge::read_ahead)): a target's
    /// version check and the reads before its first write cost one round trip over the broker
    /// instead of one each. Answered by [`RelayAnswer::Answers`].
    Reads { paths: Vec<String> },
    /// Several writes in one exchange ([`Edge::write_ahead`](crate::Edge::write_ahead)), made
    /// in order; the agent stops at the first that does not succeed, so it never writes past a
    /// failure the server would have stopped at. `then` is read once every write succeeded.
    /// Answered by [`RelayAnswer::Wrote`].
    Writes { writes: Vec<WriteCall>, then: Vec<String> },
    /// Bring a package within the edge's reach; the answer is a URL its NeuronEX can read.
    Fetch { url: String },
}

/// One write of a [`RelayRequest::Writes`]: a call, and the call to make instead when it answers
/// 404 (an upsert on an engine whose `PUT` does not create).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteCall {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_missing: Option<Box<WriteCall>>,
}

impl WriteCall {
    /// Each call this write may make, in order (itself, then what it falls back to).
    pub fn calls(&self) -> impl Iterator<Item = &WriteCall> {
        std::iter::successors(Some(self), |call| call.if_missing.as_deref())
    }
}

/// An agent's answers to one command stop growing past this (each answer may be up to 32 MiB; an
/// MQTT packet must stay under the agent protocol's `MAX_PACKET_BYTES`): the server makes the
/// rest itself.
pub const ANSWERS_BYTES: usize = 8 * 1024 * 1024;

/// The most writes one [`RelayRequest::Writes`] carries (an agent refuses more).
pub const MAX_WRITES: usize = 32;

/// The bodies of one [`RelayRequest::Writes`] stay under this; a larger batch is cut, and the
/// writes left out are sent one by one.
pub const WRITES_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The most paths one [`RelayRequest::Reads`] carries (an agent refuses more).
pub const MAX_READS: usize = 32;

/// What came back for a [`RelayRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayAnswer {
    /// NeuronEX answered (any status); `then` holds the answers to the call's `then` reads (none
    /// when the call did not succeed, or the agent is too old to make them).
    Answer {
        status: u16,
        body: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<CallAnswer>,
    },
    /// The package is on the edge, at this URL (`file://...`).
    Fetched { url: String },
    /// The agent could not reach its NeuronEX (or sign in to it): the same error an HTTP call would
    /// have had, so reasons read alike in both transports.
    Failed { error: EdgeError },
    /// The answers to a [`RelayRequest::Writes`]: one per call made, in order (a write that fell
    /// back on 404 has two), ending at the first that did not succeed; `then` answered only when
    /// every write succeeded. An agent too old for `writes` answers none, and the server then
    /// writes one by one.
    Wrote {
        answers: Vec<CallAnswer>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<CallAnswer>,
    },
    /// The answers to a [`RelayRequest::Reads`], in its order. There may be fewer than the paths
    /// (an agent stops once the answers grow large, and an agent too old for reads answers none):
    /// the rest are read one by one.
    Answers { answers: Vec<CallAnswer> },
}

/// What came back for one call of a [`RelayRequest::Reads`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallAnswer {
    /// NeuronEX answered (any status).
    Answer { status: u16, body: String },
    /// The agent could not make the call.
    Failed { error: EdgeError },
}

pub type RelayFuture<'a> = Pin<Box<dyn Future<Output = Result<RelayAnswer, Failure>> + Send + 'a>>;

/// Carries requests to agents and brings their answers back within `wait`.
pub trait Relay: Send + Sync {
    fn exchange<'a>(&'a self, agent_id: &'a str, request: RelayRequest, wait: Duration) -> RelayFuture<'a>;
}

/// How an edge is reached.
#[derive(Clone, Default)]
pub enum Via {
    /// edgefleet calls the endpoint.
    #[default]
    Http,
    /// An agent next to the edge makes the calls.
    Agent(AgentRoute),
}

#[derive(Clone)]
pub struct AgentRoute {
    pub agent_id: String,
    pub relay: Arc<dyn Relay>,
}

impl fmt::Debug for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Http => f.write_str("Http"),
            Via::Agent(route) => write!(f, "Agent({})", route.agent_id),
        }
    }
}

impl PartialEq for Via {
    fn eq(&self, other: &Via) -> bool {
        match (self, other) {
            (Via::Http, Via::Http) => true,
            (Via::Agent(a), Via::Agent(b)) => a.agent_id == b.agent_id,
            _ => false,
        }
    }
}

impl Eq for Via {}

/// The answer to wait for: an agent's own call to NeuronEX may take the full request timeout, and
/// its report of that must arrive before the relay gives up on it.
pub(crate) fn relay_wait(request_timeout: Duration) -> Duration {
    request_timeout + Duration::from_secs(5)
}

impl EdgeError {
    /// An agent's report of a failed call, told as this call's own step and object.
    pub(crate) fn relabeled(mut self, step: &str, object: &str) -> EdgeError {
        step.clone_into(&mut self.step);
        object.clone_into(&mut self.object);
        self
    }
}
