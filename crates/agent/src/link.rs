//! The server's end of agent mode: publishes signed commands, matches replies to the calls waiting
//! for them, and passes agents' status on. It is an [`edge_client::Relay`], so the edge client's
//! calls (and with them every delivery, plan, snapshot, rollback, drift check and probe) go
//! through agents unchanged.
//!
//! Every replica subscribes to every agent's results; the replica that published a command is the
//! one waiting for it and takes the reply, the others find no waiter and drop it. A reply that
//! comes twice (QoS 1 redelivery) finds its waiter gone the second time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use edge_client::{Failure, Relay, RelayAnswer, RelayFuture, RelayRequest, WriteCall};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::keys::CommandSigner;
use crate::mqtt::{Backoff, BrokerUrl, Incoming, Publisher, SessionOptions};
use crate::protocol::{
    ALL_RESULTS, ALL_STATUS, AgentState, AgentStatus, CHUNK_BYTES, Command, Op, Outcome, Reply, SignedCommand,
    commands_topic, split_topic, status_topic,
};

/// How long a command waits for the first status of an agent the link has not heard of.
const FIRST_STATUS_GRACE: Duration = Duration::from_secs(3);

/// A package the server can send in chunks when an agent cannot download it.
pub struct Package {
    pub sha256: String,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Finds the package behind one of the server's signed package links.
pub trait PackageSource: Send + Sync {
    /// `(sha256, name)` named by the link, without reading the package.
    fn identify(&self, url: &str) -> Option<(String, String)>;
    fn read(&self, sha256: &str, name: &str) -> Option<Package>;
}

/// One agent's status as its retained topic said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub agent_id: String,
    pub status: AgentStatus,
}

pub struct AgentLink {
    publisher: Publisher,
    broker: BrokerUrl,
    pending: Mutex<HashMap<String, Waiter>>,
    statuses: Mutex<HashMap<String, AgentStatus>>,
    /// Woken whenever a status comes in, for a command waiting on an agent's first status.
    status_came: tokio::sync::Notify,
    packages: Option<Arc<dyn PackageSource>>,
    counters: Counters,
    /// Whether both subscriptions (results, status) are in place and the broker has sent every
    /// retained status: a command published before would have its reply lost, and an agent with
    /// no status yet could be one whose status is still on its way.
    ready: tokio::sync::watch::Sender<bool>,
    /// The topic level of this link's own marker (see [`AgentLink::mark_statuses_loaded`]); it
    /// starts with `.`, which no agent id may.
    marker: String,
}

/// Totals for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub commands: std::sync::atomic::AtomicU64,
    pub silent: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    pub unmatched_replies: std::sync::atomic::AtomicU64,
}

impl AgentLink {
    /// Connects (in the background, reconnecting with back-off) and returns the link and the
    /// stream of agents' status.
    pub fn start(
        broker: BrokerUrl,
        client_id: String,
        ca_file: Option<std::path::PathBuf>,
        packages: Option<Arc<dyn PackageSource>>,
        shutdown: CancellationToken,
    ) -> Result<(Arc<AgentLink>, mpsc::UnboundedReceiver<StatusUpdate>), crate::mqtt::SessionError> {
        let options = SessionOptions { ca_file, ..SessionOptions::new(client_id) };
        let (publisher, mut events) = crate::mqtt::connect(&broker, &options)?;
        let link = Arc::new(AgentLink {
            publisher,
            broker,
            pending: Mutex::default(),
            statuses: Mutex::default(),
            status_came: tokio::sync::Notify::new(),
            packages,
            counters: Counters::default(),
            ready: tokio::sync::watch::Sender::new(false),
            marker: format!(".loaded-{}", uuid::Uuid::now_v7().simple()),
        });
        let (status_tx, status_rx) = mpsc::unbounded_channel();
        let pump = link.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::default();
            let mut acks = 0;
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => break,
                    event = events.next() => event,
                };
                match event {
                    Ok(Incoming::Connected { .. }) => {
                        backoff.reset();
                        acks = 0;
                        tracing::info!(broker = %pump.broker.display(), "connected to the agents' broker");
                        let publisher = pump.publisher.clone();
                        tokio::spawn(async move {
                            let _ = publisher.subscribe(ALL_RESULTS).await;
                            let _ = publisher.subscribe(ALL_STATUS).await;
                        });
                    }
                    Ok(Incoming::Message { topic, payload }) => pump.incoming(&topic, &payload, &status_tx),
                    Ok(Incoming::Subscribed) => {
                        acks += 1;
                        if acks == 2 {
                            pump.mark_statuses_loaded();
                        }
                    }
                    Ok(Incoming::SubscriptionRefused) => {
                        tracing::error!(broker = %pump.broker.display(), "the broker refused edgefleet's subscription to agents' results or status; check its ACL");
                    }
                    Ok(Incoming::Other) => {}
                    Err(err) => {
                        pump.ready.send_replace(false);
                        let wait = backoff.next_wait();
                        tracing::warn!(broker = %pump.broker.display(), "{err}; reconnecting in {} ms", wait.as_millis());
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            pump.publisher.disconnect().await;
        });
        Ok((link, status_rx))
    }

    pub fn broker(&self) -> &BrokerUrl {
        &self.broker
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A relay that signs with `signer` (the project's command key).
    pub fn relay(self: &Arc<AgentLink>, signer: Arc<CommandSigner>) -> Arc<dyn Relay> {
        Arc::new(SigningRelay { link: self.clone(), signer })
    }

    /// Publishes an empty message on this link's own marker status topic. The broker sends the
    /// retained statuses right after the status subscription's acknowledgement and this message
    /// after them, on the same connection and in order: when it comes back, every agent that
    /// has ever announced itself is known, and one that is not has never connected (or was
    /// forgotten with the broker's retained messages).
    fn mark_statuses_loaded(self: &Arc<AgentLink>) {
        let link = self.clone();
        tokio::spawn(async move {
            if let Err(err) = link.publisher.publish(&status_topic(&link.marker), Vec::new(), false).await {
                tracing::warn!(broker = %link.broker.display(), "cannot publish the status marker: {err}");
            }
        });
    }

    /// The last status an agent published, if any came since this process started.
    pub fn status_of(&self, agent_id: &str) -> Option<AgentStatus> {
        self.statuses.lock().ok()?.get(agent_id).cloned()
    }

    fn incoming(&self, topic: &str, payload: &[u8], statuses: &mpsc::UnboundedSender<StatusUpdate>) {
        match split_topic(topic) {
            Some((_, "results")) => {
                let Ok(reply) = serde_json::from_slice::<Reply>(payload) else {
                    tracing::warn!(topic, "an unreadable reply on the results topic");
                    return;
                };
                let Ok(mut pending) = self.pending.lock() else { return };
                if reply.outcome == Outcome::Accepted {
                    if let Some(waiter) = pending.get(&reply.id) {
                        waiter.accepted.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
                match pending.remove(&reply.id) {
                    Some(waiter) => {
                        let _ = waiter.reply.send(reply.outcome);
                    }
                    None => {
                        self.counters.unmatched_replies.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            Some((marker, "status")) if marker == self.marker => {
                self.ready.send_replace(true);
            }
            Some((agent_id, "status")) => {
                // An empty retained message clears the topic; it says nothing about the agent.
                let Ok(status) = serde_json::from_slice::<AgentStatus>(payload) else { return };
                if let Ok(mut known) = self.statuses.lock() {
                    known.insert(agent_id.to_owned(), status.clone());
                }
                self.status_came.notify_waiters();
                let _ = statuses.send(StatusUpdate { agent_id: agent_id.to_owned(), status });
            }
            _ => {}
        }
    }

    /// Publishes one command and waits for its reply.
    async fn send(&self, signer: &CommandSigner, agent_id: &str, op: Op, wait: Duration) -> Result<Outcome, Failure> {
        let total_wait = wait;
        let started = tokio::time::Instant::now();
        let mut ready = self.ready.subscribe();
        if tokio::time::timeout(wait, ready.wait_for(|ready| *ready)).await.is_err() {
            let detail = format!("no connection to the broker {} within {} s", self.broker.display(), wait.as_secs());
            return Err(Failure::Connect { detail });
        }
        self.check_present(agent_id).await?;
        let wait = wait.saturating_sub(started.elapsed());
        let now = crate::now_ms();
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let command = Command {
            id: uuid::Uuid::now_v7().to_string(),
            agent_id: agent_id.to_owned(),
            issued_at: now,
            expires_at: now + wait_ms,
            op,
        };
        let signed: SignedCommand = signer.sign(&command);
        let (tx, rx) = oneshot::channel();
        let accepted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = Waiting { link: self, id: command.id.clone() };
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(command.id.clone(), Waiter { reply: tx, accepted: accepted.clone() });
        }
        self.counters.commands.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let payload = serde_json::to_vec(&signed).unwrap_or_default();
        self.publisher.publish(&commands_topic(agent_id), payload, false).await.map_err(|e| Failure::Connect {
            detail: format!("cannot publish to the broker {}: {e}", self.broker.display()),
        })?;
        let outcome = tokio::time::timeout(wait, rx).await;
        drop(guard);
        match outcome {
            Ok(Ok(Outcome::Refused { reason, detail })) => {
                self.counters.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(Failure::AgentRefused {
                    agent_id: agent_id.to_owned(),
                    detail: format!("{}: {detail}", reason.as_str()),
                })
            }
            Ok(Ok(outcome)) => Ok(outcome),
            _ => {
                self.counters.silent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let after_ms = u64::try_from(total_wait.as_millis()).unwrap_or(u64::MAX);
                let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
                Err(Failure::AgentSilent { agent_id: agent_id.to_owned(), after_ms, accepted })
            }
        }
    }

    /// Fails early, rather than after the whole wait, a command to an agent that is offline or
    /// has never connected: nobody would take it (agents keep no session, so it would not wait
    /// for the agent either). An agent with no status yet gets [`FIRST_STATUS_GRACE`] for one to
    /// come: it may have connected a moment ago, its status still on the way.
    async fn check_present(&self, agent_id: &str) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + FIRST_STATUS_GRACE;
        let status = loop {
            let came = self.status_came.notified();
            if let Some(status) = self.status_of(agent_id) {
                break status;
            }
            if tokio::time::timeout_at(deadline, came).await.is_err() {
                let detail =
                    format!("the agent {agent_id} has never connected to the broker (it has published no status)");
                return Err(Failure::Connect { detail });
            }
        };
        if status.status == AgentState::Online {
            return Ok(());
        }
        let detail =
            format!("the agent {agent_id} is offline (its status since {})", domain::edge::utc_text(status.at));
        Err(Failure::Connect { detail })
    }

    /// Several reads in one command, to an agent that knows the command; none (the edge client
    /// then reads one by one) to an agent of the first protocol.
    async fn reads(
        &self,
        signer: &CommandSigner,
        agent_id: &str,
        paths: Vec<String>,
        wait: Duration,
    ) -> Result<RelayAnswer, Failure> {
        if self.status_of(agent_id).is_some_and(|status| status.protocol < 2) {
            return Ok(RelayAnswer::Answers { answers: Vec::new() });
        }
        match self.send(signer, agent_id, Op::Reads { paths }, wait).await? {
            Outcome::Answers { answers } => Ok(RelayAnswer::Answers { answers }),
            Outcome::Failed { error } => Ok(RelayAnswer::Failed { error }),
            other => Err(unexpected(&other)),
        }
    }

    /// Several writes in one command, to an agent that knows the command; none (the edge client
    /// then writes one by one) to an agent of an older protocol.
    async fn writes(
        &self,
        signer: &CommandSigner,
        agent_id: &str,
        writes: Vec<WriteCall>,
        then: Vec<String>,
        wait: Duration,
    ) -> Result<RelayAnswer, Failure> {
        if self.status_of(agent_id).is_some_and(|status| status.protocol < 3) {
            return Ok(RelayAnswer::Wrote { answers: Vec::new(), then: Vec::new() });
        }
        match self.send(signer, agent_id, Op::Writes { writes, then }, wait).await? {
            Outcome::Wrote { answers, then } => Ok(RelayAnswer::Wrote { answers, then }),
            Outcome::Failed { error } => Ok(RelayAnswer::Failed { error }),
            other => Err(unexpected(&other)),
        }
    }

    /// Brings a package to the agent: it downloads the signed link itself, or, when it cannot
    /// reach edgefleet, gets the package in chunks over the broker.
    async fn fetch(
        &self,
        signer: &CommandSigner,
        agent_id: &str,
        url: String,
        wait: Duration,
    ) -> Result<RelayAnswer, Failure> {
        let source = self.packages.as_ref().ok_or_else(|| Failure::Refused { detail: "no package store".into() })?;
        let (sha256, name) = source
            .identify(&url)
            .ok_or_else(|| Failure::Refused { detail: "not a package link of this server".into() })?;
        let op = Op::Fetch { url, sha256: sha256.clone(), name: name.clone() };
        let download_failed = match self.send(signer, agent_id, op, wait).await? {
            Outcome::Fetched { url } => return Ok(RelayAnswer::Fetched { url }),
            Outcome::FetchFailed { detail } => detail,
            other => return Err(unexpected(&other)),
        };
        tracing::info!(
            agent.id = agent_id,
            "the agent could not download {name} ({download_failed}); sending it in chunks"
        );
        let package = source
            .read(&sha256, &name)
            .ok_or_else(|| Failure::Refused { detail: format!("package {name} is gone") })?;
        let total = package.bytes.len() as u64;
        let mut offset = 0u64;
        for piece in package.bytes.chunks(CHUNK_BYTES) {
            let op =
                Op::Chunk { sha256: sha256.clone(), name: name.clone(), offset, total, data: STANDARD.encode(piece) };
            offset += piece.len() as u64;
            match self.send(signer, agent_id, op, wait).await? {
                Outcome::Stored { complete: Some(url), .. } => return Ok(RelayAnswer::Fetched { url }),
                Outcome::Stored { .. } => {}
                Outcome::FetchFailed { detail } => {
                    return Err(Failure::Refused { detail: format!("the agent could not keep the package: {detail}") });
                }
                other => return Err(unexpected(&other)),
            }
        }
        Err(Failure::Refused { detail: format!("the agent did not confirm package {name} after its last chunk") })
    }
}

fn unexpected(outcome: &Outcome) -> Failure {
    Failure::Decode { detail: format!("the agent answered {outcome:?}") }
}

/// A call waiting for its reply, and whether the agent said it took the command.
struct Waiter {
    reply: oneshot::Sender<Outcome>,
    accepted: Arc<std::sync::atomic::AtomicBool>,
}

/// Forgets a waiter however its wait ends (answered, timed out, or the caller gave up).
struct Waiting<'a> {
    link: &'a AgentLink,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.link.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

struct SigningRelay {
    link: Arc<AgentLink>,
    signer: Arc<CommandSigner>,
}

impl Relay for SigningRelay {
    fn exchange<'a>(&'a self, agent_id: &'a str, request: RelayRequest, wait: Duration) -> RelayFuture<'a> {
        Box::pin(async move {
            match request {
                RelayRequest::Call { method, path, body, then } => {
                    match self.link.send(&self.signer, agent_id, Op::Call { method, path, body, then }, wait).await? {
                        Outcome::Answer { status, body, then } => Ok(RelayAnswer::Answer { status, body, then }),
                        Outcome::Failed { error } => Ok(RelayAnswer::Failed { error }),
                        other => Err(unexpected(&other)),
                    }
                }
                RelayRequest::Reads { paths } => self.link.reads(&self.signer, agent_id, paths, wait).await,
                RelayRequest::Writes { writes, then } => {
                    self.link.writes(&self.signer, agent_id, writes, then, wait).await
                }
                RelayRequest::Fetch { url } => self.link.fetch(&self.signer, agent_id, url, wait).await,
            }
        })
    }
}
