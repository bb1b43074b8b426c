//! The agent: connects out to the broker, keeps its retained status (last will `offline`), and
//! runs each verified command once on its local NeuronEX through the edge client.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use edge_client::{EdgeClient, EdgeError, EdgeTarget, MAX_READS, MAX_WRITES, WriteCall};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::keys::CommandVerifier;
use crate::mqtt::{Backoff, BrokerUrl, Incoming, Publisher, SessionOptions};
use crate::protocol::{
    AgentState, AgentStatus, Command, Op, Outcome, PROTOCOL, Refusal, Reply, SignedCommand, commands_topic,
    results_topic, status_topic,
};
use crate::record::{Record, Seen};

/// How long a command runs before the agent says it took it (see `Outcome::Accepted`).
const ACCEPTED_AFTER: Duration = Duration::from_millis(500);

/// The largest package an agent brings over (edgefleet's own upload limit).
pub const MAX_PACKAGE_BYTES: u64 = 256 * 1024 * 1024;

pub struct AgentConfig {
    pub broker: BrokerUrl,
    pub agent_id: String,
    /// Broker sign-in; the URL's own credentials otherwise.
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub verifier: CommandVerifier,
    /// The local NeuronEX and how to sign in to it.
    pub neuronex: EdgeTarget,
    pub client: EdgeClient,
    pub record: Record,
    /// Where packages brought over are kept for NeuronEX to install.
    pub package_dir: PathBuf,
    /// How far the agent's clock may be from the server's.
    pub max_clock_skew: Duration,
    pub version: String,
    /// Set to true once the agent listens for commands (false while disconnected); tests and the
    /// simulator wait on it instead of on time.
    pub ready: Option<tokio::sync::watch::Sender<bool>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Session(#[from] crate::mqtt::SessionError),
    #[error("package directory {path}: {error}")]
    PackageDir { path: String, error: String },
}

struct Agent {
    config: AgentConfig,
    record: Mutex<Record>,
    publisher: Publisher,
}

/// Runs until `shutdown`; then publishes `offline` and disconnects.
pub async fn run(mut config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.package_dir)
        .map_err(|e| AgentError::PackageDir { path: config.package_dir.display().to_string(), error: e.to_string() })?;
    let offline = status_payload(&config, AgentState::Offline);
    let options = SessionOptions {
        username: config.username.clone(),
        password: config.password.clone(),
        last_will: Some((status_topic(&config.agent_id), offline.clone())),
        ca_file: config.ca_file.clone(),
        ..SessionOptions::new(format!("edgefleet-agent-{}", config.agent_id))
    };
    let (publisher, mut events) = crate::mqtt::connect(&config.broker, &options)?;
    let record = std::mem::replace(&mut config.record, Record::in_memory());
    let agent = Arc::new(Agent { config, record: Mutex::new(record), publisher });
    let commands = commands_topic(&agent.config.agent_id);
    let mut backoff = Backoff::default();
    // Commands run in tasks owned here: a killed agent stops them where they are, as a crashed
    // process would.
    let mut work = tokio::task::JoinSet::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = work.join_next(), if !work.is_empty() => continue,
            event = events.next() => event,
        };
        match event {
            Ok(Incoming::Connected { session_present }) => {
                backoff.reset();
                if session_present {
                    mark_ready(&agent.config, true);
                }
                tracing::info!(agent.id = %agent.config.agent_id, broker = %agent.config.broker.display(), "connected");
                let agent = agent.clone();
                let commands = commands.clone();
                work.spawn(async move {
                    if !session_present {
                        let _ = agent.publisher.subscribe(&commands).await;
                    }
                    let online = status_payload(&agent.config, AgentState::Online);
                    let _ = agent.publisher.publish(&status_topic(&agent.config.agent_id), online, true).await;
                });
            }
            Ok(Incoming::Message { topic, payload }) if topic == commands => {
                let agent = agent.clone();
                work.spawn(async move { agent.handle(&payload).await });
            }
            Ok(Incoming::Subscribed) => {
                tracing::info!(agent.id = %agent.config.agent_id, "listening for commands on {commands}");
                mark_ready(&agent.config, true);
            }
            Ok(Incoming::SubscriptionRefused) => {
                tracing::error!(agent.id = %agent.config.agent_id, "the broker refused the subscription to {commands}; check its ACL");
            }
            Ok(_) => {}
            Err(err) => {
                mark_ready(&agent.config, false);
                let wait = backoff.next_wait();
                tracing::warn!(agent.id = %agent.config.agent_id, "{err}; reconnecting in {} ms", wait.as_millis());
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    // A clean stop says so at once rather than after the broker's keep-alive runs out.
    let _ = agent.publisher.publish(&status_topic(&agent.config.agent_id), offline, true).await;
    agent.publisher.disconnect().await;
    let drain = async {
        while let Ok(event) = events.next().await {
            if event == Incoming::Other {
                continue;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    Ok(())
}

fn mark_ready(config: &AgentConfig, ready: bool) {
    if let Some(sender) = &config.ready {
        sender.send_replace(ready);
    }
}

fn status_payload(config: &AgentConfig, status: AgentState) -> Vec<u8> {
    let status = AgentStatus { status, version: config.version.clone(), at: crate::now_ms(), protocol: PROTOCOL };
    serde_json::to_vec(&status).unwrap_or_default()
}

impl Agent {
    async fn handle(&self, payload: &[u8]) {
        let reply = match self.admit(payload) {
            Ok(command) => {
                // A call still running after a moment is reported as taken, so the server can tell
                // "it got the command and hung or died" from "it never got it"; quick calls (nearly
                // all) go without the extra message.
                let work = self.execute(&command);
                tokio::pin!(work);
                let outcome = tokio::select! {
                    outcome = &mut work => outcome,
                    () = tokio::time::sleep(ACCEPTED_AFTER) => {
                        let id = command.id.clone();
                        let accepted = Reply { id, agent_id: self.config.agent_id.clone(), outcome: Outcome::Accepted };
                        self.publish(&accepted).await;
                        work.await
                    }
                };
                let reply = Reply { id: command.id.clone(), agent_id: self.config.agent_id.clone(), outcome };
                if let Ok(mut record) = self.record.lock() {
                    record.answered(&reply);
                }
                reply
            }
            Err(reply) => reply,
        };
        if let Outcome::Refused { reason, detail } = &reply.outcome {
            tracing::warn!(agent.id = %self.config.agent_id, command.id = %reply.id, "refused a command ({}): {detail}", reason.as_str());
        }
        self.publish(&reply).await;
    }

    async fn publish(&self, reply: &Reply) {
        let Ok(bytes) = serde_json::to_vec(reply) else { return };
        let _ = self.publisher.publish(&results_topic(&self.config.agent_id), bytes, false).await;
    }

    /// The command, once it is signed, for this agent, fresh and new; the reply to send otherwise.
    fn admit(&self, payload: &[u8]) -> Result<Command, Reply> {
        let refuse = |id: &str, reason: Refusal, detail: String| Reply {
            id: id.to_owned(),
            agent_id: self.config.agent_id.clone(),
            outcome: Outcome::Refused { reason, detail },
        };
        let signed: SignedCommand = serde_json::from_slice(payload)
            .map_err(|e| refuse("", Refusal::Malformed, format!("not a signed command: {e}")))?;
        let Some(command) = self.config.verifier.verify(&signed) else {
            // The id is echoed (unverified) only so the server stops waiting on it.
            let id = serde_json::from_str::<serde_json::Value>(&signed.command)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(refuse(
                &id,
                Refusal::BadSignature,
                "the signature does not verify with this agent's command key".into(),
            ));
        };
        if command.agent_id != self.config.agent_id {
            return Err(refuse(
                &command.id,
                Refusal::WrongAgent,
                format!("the command is for agent {}", command.agent_id),
            ));
        }
        let now = crate::now_ms();
        let skew = i64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
        if now > command.expires_at.saturating_add(skew) || command.issued_at > now.saturating_add(skew) {
            let detail = format!(
                "issued at {}, expired at {}, now {} (allowed clock skew {} s)",
                domain::edge::utc_text(command.issued_at),
                domain::edge::utc_text(command.expires_at),
                domain::edge::utc_text(now),
                self.config.max_clock_skew.as_secs()
            );
            return Err(refuse(&command.id, Refusal::Expired, detail));
        }
        let mut record =
            self.record.lock().map_err(|_| refuse(&command.id, Refusal::Malformed, "record lock".into()))?;
        match record.seen(&command.id) {
            Some(Seen::Answered(reply)) => return Err(*reply),
            Some(Seen::Ran) => {
                let detail = "this command id was run before (replayed, or redelivered after a restart); not run again";
                return Err(refuse(&command.id, Refusal::AlreadyRun, detail.into()));
            }
            None => {}
        }
        if let Err(err) = record.start(&command.id, command.expires_at) {
            let error =
                EdgeError::refused("record", "command", format!("the agent cannot write its command record: {err}"));
            return Err(Reply {
                id: command.id,
                agent_id: self.config.agent_id.clone(),
                outcome: Outcome::Failed { error },
            });
        }
        let _ = record.forget_before(crate::record::horizon(self.config.max_clock_skew));
        Ok(command)
    }

    async fn execute(&self, command: &Command) -> Outcome {
        match &command.op {
            Op::Call { method, path, body, then } => {
                if let Some(why) = refused_call(method, path).or_else(|| refused_reads(then)) {
                    return Outcome::Refused { reason: Refusal::Malformed, detail: why };
                }
                let edge = self.config.client.edge(&self.config.neuronex);
                match edge.forward(method, path, body.as_ref()).await {
                    Ok((status, body)) if (200..300).contains(&status) && !then.is_empty() => {
                        Outcome::Answer { status, body, then: edge.read_all(then).await }
                    }
                    Ok((status, body)) => Outcome::Answer { status, body, then: Vec::new() },
                    Err(error) => Outcome::Failed { error },
                }
            }
            Op::Reads { paths } => self.reads(paths).await,
            Op::Writes { writes, then } => self.writes(writes, then).await,
            Op::Fetch { url, sha256, name } => self.fetch(url, sha256, name).await,
            Op::Chunk { sha256, name, offset, total, data } => self.chunk(sha256, name, *offset, *total, data),
        }
    }

    /// Each `GET` in turn; every path is checked before any is read.
    async fn reads(&self, paths: &[String]) -> Outcome {
        if let Some(why) = refused_reads(paths) {
            return Outcome::Refused { reason: Refusal::Malformed, detail: why };
        }
        let edge = self.config.client.edge(&self.config.neuronex);
        Outcome::Answers { answers: edge.read_all(paths).await }
    }

    /// Each write in turn, up to the first that fails; every call is checked before any is made.
    async fn writes(&self, writes: &[WriteCall], then: &[String]) -> Outcome {
        if let Some(why) = refused_writes(writes).or_else(|| refused_reads(then)) {
            return Outcome::Refused { reason: Refusal::Malformed, detail: why };
        }
        let edge = self.config.client.edge(&self.config.neuronex);
        let (answers, then) = edge.run_writes(writes, then).await;
        Outcome::Wrote { answers, then }
    }

    async fn fetch(&self, url: &str, sha256: &str, name: &str) -> Outcome {
        let Some(path) = self.package_path(sha256, name, "zip") else {
            return Outcome::Refused { reason: Refusal::Malformed, detail: "bad package name or hash".into() };
        };
        if file_matches(&path, sha256) {
            return Outcome::Fetched { url: file_url(&path) };
        }
        let bytes = match self.config.client.download(url, MAX_PACKAGE_BYTES as usize).await {
            Ok(bytes) => bytes,
            Err(err) => return Outcome::FetchFailed { detail: err.to_string() },
        };
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Outcome::FetchFailed { detail: "the downloaded package does not have the expected SHA-256".into() };
        }
        match write_atomically(&path, &bytes) {
            Ok(()) => Outcome::Fetched { url: file_url(&path) },
            Err(err) => Outcome::FetchFailed { detail: format!("cannot keep the package: {err}") },
        }
    }

    fn chunk(&self, sha256: &str, name: &str, offset: u64, total: u64, data: &str) -> Outcome {
        let (Some(part), Some(done)) =
            (self.package_path(sha256, name, "part"), self.package_path(sha256, name, "zip"))
        else {
            return Outcome::Refused { reason: Refusal::Malformed, detail: "bad package name or hash".into() };
        };
        let Ok(bytes) = STANDARD.decode(data) else {
            return Outcome::Refused { reason: Refusal::Malformed, detail: "a chunk that is not base64".into() };
        };
        let end = offset.saturating_add(bytes.len() as u64);
        if total > MAX_PACKAGE_BYTES || end > total {
            return Outcome::Refused {
                reason: Refusal::Malformed,
                detail: format!("a chunk past the package's {total} bytes"),
            };
        }
        if let Err(err) = write_at(&part, offset, &bytes) {
            return Outcome::FetchFailed { detail: format!("cannot keep the package: {err}") };
        }
        if end < total {
            return Outcome::Stored { received: end, complete: None };
        }
        if !file_matches(&part, sha256) {
            let _ = std::fs::remove_file(&part);
            return Outcome::FetchFailed {
                detail: "the package put together from chunks does not have the expected SHA-256".into(),
            };
        }
        match std::fs::rename(&part, &done) {
            Ok(()) => Outcome::Stored { received: end, complete: Some(file_url(&done)) },
            Err(err) => Outcome::FetchFailed { detail: format!("cannot keep the package: {err}") },
        }
    }

    /// `<package_dir>/<sha256>-<name>.<ext>`, for a hex hash and a plain name only.
    fn package_path(&self, sha256: &str, name: &str, ext: &str) -> Option<PathBuf> {
        let hash_ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        (hash_ok && name_ok).then(|| self.config.package_dir.join(format!("{sha256}-{name}.{ext}")))
    }
}

/// An agent makes NeuronEX API calls only: a method NeuronEX uses and a path under `/api/`.
fn refused_call(method: &str, path: &str) -> Option<String> {
    if !matches!(method, "GET" | "POST" | "PUT" | "DELETE" | "PATCH") {
        return Some(format!("method {method:?} is not one an agent uses"));
    }
    let plain = path.starts_with("/api/") && !path.contains("..") && !path.contains('#') && !path.contains("//");
    (!plain).then(|| format!("path {path:?} is not a NeuronEX API path"))
}

/// Why a list of reads is not run: too many, or a path an agent never reads.
fn refused_reads(paths: &[String]) -> Option<String> {
    if paths.len() > MAX_READS {
        return Some(format!("{} reads in one command; at most {MAX_READS}", paths.len()));
    }
    paths.iter().find_map(|path| refused_call("GET", path))
}

/// Why a list of writes is not run: too many, or a call an agent never makes (a write that
/// falls back may fall back once).
fn refused_writes(writes: &[WriteCall]) -> Option<String> {
    if writes.len() > MAX_WRITES {
        return Some(format!("{} writes in one command; at most {MAX_WRITES}", writes.len()));
    }
    writes.iter().find_map(|write| {
        if write.calls().count() > 2 {
            return Some(format!("the write {} {} falls back more than once", write.method, write.path));
        }
        write.calls().find_map(|call| refused_call(&call.method, &call.path))
    })
}

fn file_url(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

fn file_matches(path: &std::path::Path, sha256: &str) -> bool {
    std::fs::read(path).is_ok_and(|bytes| hex::encode(Sha256::digest(&bytes)) == sha256)
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("download");
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)
}

fn write_at(path: &std::path::Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(offset == 0).open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::refused_call;

    #[test]
    fn an_agent_calls_nothing_but_the_neuronex_api() {
        assert_eq!(refused_call("GET", "/api/version"), None);
        assert_eq!(refused_call("DELETE", "/api/ekuiper/rules/r%2F1"), None);
        for (method, path) in
            [("GET", "/etc/passwd"), ("GET", "/api/../x"), ("CONNECT", "/api/x"), ("GET", "/api//x"), ("GET", "api/x")]
        {
            assert!(refused_call(method, path).is_some(), "{method} {path}");
        }
    }
}
