//! Writes made ahead through an agent: a target's writes travel to its agent as one command, and
//! the calls that follow (the engine's usual `replace_stream`, `upsert_rule`, ...) take their
//! answers from what came back instead of crossing the broker one by one.
//!
//! Safety rests on three rules. The agent stops at the first write that does not succeed, which
//! is where the engine's own sequence stops or takes another turn, so it never writes what the
//! engine would not have. A [`Write`] is built by the same helpers as the call it stands for, and
//! an answer is used only by the call that matches it exactly (method, path and body). And any
//! write drops every answer read ahead, as a single call does.

use std::collections::VecDeque;

use reqwest::Method;
use serde_json::Value;

use crate::relay::{self, ANSWERS_BYTES, MAX_READS, MAX_WRITES, WRITES_BODY_BYTES, WriteCall};
use crate::{CallAnswer, Edge, EdgeError, RelayAnswer, RelayRequest, StreamKind, Via};

/// One write a target is about to make, declared ahead ([`Edge::write_ahead`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    call: WriteCall,
    /// What the engine reads right after it succeeds (a rule's status).
    check: Option<String>,
    /// `stream demo`, `rule r1`: how it is named in a target's steps.
    object: String,
}

impl Write {
    /// What [`Edge::replace_stream`] sends.
    pub fn replace_stream(kind: StreamKind, name: &str, sql: &str) -> Write {
        Write {
            call: WriteCall {
                method: Method::PUT.to_string(),
                path: crate::stream_path(kind, name),
                body: Some(crate::stream_body(sql)),
                if_missing: None,
            },
            check: None,
            object: format!("{} {name}", kind.word()),
        }
    }

    /// What [`Edge::upsert_rule`] sends: `PUT`, and `POST` when the engine answers 404; the
    /// rule's status is read after it.
    pub fn upsert_rule(id: &str, rule: &Value) -> Write {
        let create = WriteCall {
            method: Method::POST.to_string(),
            path: crate::RULES_PATH.to_owned(),
            body: Some(rule.clone()),
            if_missing: None,
        };
        Write {
            call: WriteCall {
                method: Method::PUT.to_string(),
                path: crate::rule_path(id),
                body: Some(rule.clone()),
                if_missing: Some(Box::new(create)),
            },
            check: Some(crate::rule_status_path(id)),
            object: format!("rule {id}"),
        }
    }

    pub fn object(&self) -> &str {
        &self.object
    }

    fn body_bytes(&self) -> usize {
        self.call.body.as_ref().map_or(0, |body| body.to_string().len())
    }
}

/// Answers to writes made ahead, in the order of their calls, and the reads that came with them.
#[derive(Default)]
pub(crate) struct WrittenAhead {
    calls: VecDeque<(WriteCall, CallAnswer)>,
    /// `then` reads, kept until the last write is used (a write drops what was read before it).
    then: Vec<(String, CallAnswer)>,
}

impl Edge<'_> {
    /// Whether writes declared ahead travel together (through an agent) rather than one by one.
    pub fn writes_ahead(&self) -> bool {
        matches!(self.target.via, Via::Agent(_))
    }

    /// Through an agent: makes `writes` (as many as one command carries) in one exchange; the
    /// calls that follow take their answers from it. Over HTTP it does nothing. When the exchange
    /// fails, the failure is kept as the first write's answer, so the target fails (or retries)
    /// exactly as that call would have; a retried write is sent on its own.
    pub async fn write_ahead(&self, writes: &[Write]) {
        let Via::Agent(route) = &self.target.via else { return };
        let batch = batch_of(writes);
        if batch.len() < 2 {
            return;
        }
        let mut then: Vec<String> = batch.iter().filter_map(|w| w.check.clone()).collect();
        then.dedup();
        then.truncate(MAX_READS);
        let request =
            RelayRequest::Writes { writes: batch.iter().map(|w| w.call.clone()).collect(), then: then.clone() };
        let wait = relay::relay_wait(self.client.config.request_timeout);
        let failed = |error: EdgeError| (vec![CallAnswer::Failed { error }], Vec::new());
        let (answers, then_answers) = match route.relay.exchange(&route.agent_id, request, wait).await {
            Ok(RelayAnswer::Wrote { answers, then }) => (answers, then),
            Ok(RelayAnswer::Failed { error }) => failed(error),
            Ok(other) => {
                failed(crate::decode_error("apply", "objects", &format!("the agent answered {other:?} to writes")))
            }
            Err(failure) => failed(EdgeError::transport("apply", "objects", failure)),
        };
        let (calls, complete) = pair_with_calls(&batch, answers);
        let then = if complete { then.into_iter().zip(then_answers).collect() } else { Vec::new() };
        if let Ok(mut ahead) = self.written_ahead.lock() {
            *ahead = WrittenAhead { calls: calls.into(), then };
        }
    }

    /// The answer made ahead for this write, when it is the next one exactly. What was read
    /// ahead is dropped (it may have changed), and the checks queued for this write came with the
    /// batch; after its last write, the batch's reads become the answers read ahead.
    pub(crate) fn written_ahead(&self, method: &str, path: &str, body: Option<&Value>) -> Option<CallAnswer> {
        let mut ahead = self.written_ahead.lock().ok()?;
        let (next, _) = ahead.calls.front()?;
        if next.method != method || next.path != path || next.body.as_ref() != body {
            // Cannot happen while `Write` and the calls share their helpers and the batch stops
            // where the engine's sequence could turn (the pinned exchanges in the relay tests
            // would show it). The batch's other answers are void either way.
            *ahead = WrittenAhead::default();
            return None;
        }
        let (_, answer) = ahead.calls.pop_front()?;
        if let Ok(mut read) = self.read_ahead.lock() {
            read.clear();
            if ahead.calls.is_empty() {
                read.extend(std::mem::take(&mut ahead.then));
            }
        }
        if let Ok(mut after) = self.after_write.lock() {
            after.clear();
        }
        Some(answer)
    }

    /// The agent's side of [`RelayRequest::Writes`]: each write in turn (its fallback on 404),
    /// stopping at the first that does not succeed, or once the answers pass
    /// [`ANSWERS_BYTES`] (the server makes the rest itself); `then` read when all were made.
    pub async fn run_writes(&self, writes: &[WriteCall], then: &[String]) -> (Vec<CallAnswer>, Vec<CallAnswer>) {
        let mut answers = Vec::new();
        let mut size = 0;
        for write in writes {
            if size > ANSWERS_BYTES {
                return (answers, Vec::new());
            }
            let mut calls = write.calls().peekable();
            while let Some(call) = calls.next() {
                let answer = self.forward_answer(&call.method, &call.path, call.body.as_ref()).await;
                size += crate::answer_bytes(&answer);
                let next = after(&answer, calls.peek().is_some());
                answers.push(answer);
                match next {
                    After::Fallback => {}
                    After::Done => break,
                    After::Stop => return (answers, Vec::new()),
                }
            }
        }
        (answers, self.read_all(then).await)
    }
}

/// What follows a write's answer. The agent making writes and the server pairing their answers
/// follow this one rule, so they agree on which call each answer belongs to.
enum After {
    /// 404 with a fallback: make the fallback.
    Fallback,
    /// Succeeded: on to the next write.
    Done,
    /// Anything else: no further write.
    Stop,
}

fn after(answer: &CallAnswer, has_fallback: bool) -> After {
    match status_of(answer) {
        Some(404) if has_fallback => After::Fallback,
        Some(status) if (200..300).contains(&status) => After::Done,
        _ => After::Stop,
    }
}

/// The writes one command carries: at most [`MAX_WRITES`], bodies within [`WRITES_BODY_BYTES`].
fn batch_of(writes: &[Write]) -> Vec<&Write> {
    let mut bytes = 0;
    let mut batch = Vec::new();
    for write in writes.iter().take(MAX_WRITES) {
        bytes += write.body_bytes();
        if bytes > WRITES_BODY_BYTES && !batch.is_empty() {
            break;
        }
        batch.push(write);
    }
    batch
}

/// Each answer with the call it answers, and whether every write succeeded.
fn pair_with_calls(batch: &[&Write], answers: Vec<CallAnswer>) -> (Vec<(WriteCall, CallAnswer)>, bool) {
    let mut answers = answers.into_iter();
    let mut paired = Vec::new();
    for write in batch {
        let mut calls = write.call.calls().peekable();
        loop {
            let (Some(call), Some(answer)) = (calls.next(), answers.next()) else { return (paired, false) };
            let next = after(&answer, calls.peek().is_some());
            paired.push((without_fallback(call), answer));
            match next {
                After::Fallback => {}
                After::Done => break,
                After::Stop => return (paired, false),
            }
        }
    }
    (paired, true)
}

fn without_fallback(call: &WriteCall) -> WriteCall {
    WriteCall { if_missing: None, ..call.clone() }
}

fn status_of(answer: &CallAnswer) -> Option<u16> {
    match answer {
        CallAnswer::Answer { status, .. } => Some(*status),
        CallAnswer::Failed { .. } => None,
    }
}
