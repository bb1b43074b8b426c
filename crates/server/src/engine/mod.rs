//! The delivery engine: one runner task per unfinished delivery claims its targets in batches,
//! works on up to `options.concurrency` of them at once, writes each result as it comes, and
//! publishes counts and results to SSE watchers. State lives in the store, so a restarted server
//! picks up where the last one stopped; a target is sent again only if its result was never
//! written.

pub mod derive;
pub mod drift;
pub mod hub;
pub mod probe;
mod rollout;
mod slots;
mod snapshots;
pub mod target;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use domain::access::Outcome;
use domain::audit::AuditAction;
use domain::delivery::{Counts, DeliveryKind, DeliveryOptions, DeliveryState, FailureCode, TargetStatus};
use domain::edge::{AuthKind, Reach};
use domain::template;
use edge_client::EdgeClient;
use serde_json::{Value, json};
use store::{AuditEntry, ClaimedTarget, Delivery, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::blobs::PackageLinks;
use crate::crypto::SecretBox;
use crate::jwt_keys::ProjectKeys;
use crate::metrics::Metrics;
use hub::{DeliveryEvent, Hub, TargetEvent};
use target::{Payload, Plan, RollbackSource, Runner};

/// Extra lease time beyond a target's timeout. A live worker gives every target up at its timeout,
/// so the margin only covers writing the result.
const LEASE_MARGIN_MS: i64 = 5_000;
/// How often each replica looks for deliveries with work nobody holds.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// The channel replicas tell each other about delivery events on (PostgreSQL).
const EVENTS_CHANNEL: &str = "edgefleet_delivery_events";
/// How often a runner that may share its delivery re-reads the stored counts.
const COUNTS_REFRESH: std::time::Duration = std::time::Duration::from_millis(500);
/// Counts go to watchers at most this often (every target's own event goes at once).
const COUNTS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_NOTIFY_REASON: usize = 2000;

pub struct Engine {
    store: Store,
    links: Arc<PackageLinks>,
    client: EdgeClient,
    secrets: Arc<SecretBox>,
    jwt_keys: Arc<ProjectKeys>,
    agents: Arc<crate::agents::Agents>,
    metrics: Arc<Metrics>,
    pub hub: Hub,
    /// Bounds the probes in flight in this process (see `probe::CONCURRENCY`).
    pub probe_slots: tokio::sync::Semaphore,
    /// Bounds the drift checks in flight in this process (see `drift::CONCURRENCY`).
    pub drift_slots: tokio::sync::Semaphore,
    worker_id: String,
    running: Mutex<HashSet<String>>,
    /// API-only replicas leave deliveries to the workers.
    works: bool,
    /// Runners of this process by delivery: cancelling stops their claims and their edge calls.
    cancels: Mutex<BTreeMap<String, CancellationToken>>,
    clock: crate::clock::Clock,
}

/// How this process's engine works.
pub struct EngineSettings {
    /// API-only replicas leave deliveries to the workers.
    pub works: bool,
    /// How agent-mode edges are reached (the broker link and the projects' command keys).
    pub agents: Arc<crate::agents::Agents>,
    pub clock: crate::clock::Clock,
}

impl Engine {
    pub fn new(
        store: Store,
        client: EdgeClient,
        secrets: Arc<SecretBox>,
        jwt_keys: Arc<ProjectKeys>,
        metrics: Arc<Metrics>,
        links: Arc<PackageLinks>,
        settings: EngineSettings,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            links,
            client,
            secrets,
            jwt_keys,
            agents: settings.agents,
            metrics,
            hub: Hub::default(),
            probe_slots: tokio::sync::Semaphore::new(probe::CONCURRENCY),
            drift_slots: tokio::sync::Semaphore::new(drift::CONCURRENCY),
            worker_id: format!("{}-{}", std::process::id(), uuid::Uuid::now_v7()),
            running: Mutex::new(HashSet::new()),
            works: settings.works,
            cancels: Mutex::new(BTreeMap::new()),
            clock: settings.clock,
        })
    }

    pub fn client(&self) -> &EdgeClient {
        &self.client
    }

    /// See [`edge_target`].
    pub async fn edge_target(&self, edge: EdgeAddress<'_>, purpose: &str) -> Result<edge_client::EdgeTarget, String> {
        edge_target(&self.secrets, &self.jwt_keys, &self.agents, edge, purpose).await
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Starts runners for deliveries with work nobody holds: new ones on other replicas, and the
    /// targets of a replica that died. Runners on several replicas share a delivery safely.
    /// Scheduled deliveries start here too, when their time comes.
    pub async fn sweep_forever(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SWEEP_INTERVAL) => {}
                () = self.clock.moved() => {}
            }
            self.start_due().await;
            match self.store.claimable_deliveries(self.clock.now_ms()).await {
                Ok(ids) => ids.iter().for_each(|id| self.start(id)),
                Err(err) => tracing::warn!(error = %err, "cannot look for deliveries to work on"),
            }
        }
    }

    /// Relays other replicas' delivery events to this replica's watchers (PostgreSQL only).
    pub async fn relay_forever(self: Arc<Self>) {
        loop {
            let listener = match self.store.listen(EVENTS_CHANNEL).await {
                Ok(Some(listener)) => listener,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for other replicas' events; retrying");
                    tokio::time::sleep(SWEEP_INTERVAL).await;
                    continue;
                }
            };
            self.relay(listener).await;
            tokio::time::sleep(SWEEP_INTERVAL).await;
        }
    }

    async fn relay(&self, mut listener: store::Listener) {
        loop {
            let payload = match listener.recv().await {
                Ok(payload) => payload,
                Err(err) => {
                    tracing::warn!(error = %err, "lost the event channel; reconnecting");
                    return;
                }
            };
            let message = match serde_json::from_str::<ReplicaMessage>(&payload) {
                Ok(message) => message,
                Err(err) => {
                    tracing::warn!(error = %err, "ignoring an unreadable message from another replica");
                    continue;
                }
            };
            if message.worker == self.worker_id {
                continue;
            }
            let delivery_id = message.delivery.as_str();
            match message.event {
                ReplicaEvent::Target { target, counts } => {
                    self.hub.publish_all(
                        delivery_id,
                        vec![DeliveryEvent::Target { target }, DeliveryEvent::Counts { counts }],
                    );
                }
                ReplicaEvent::Cancel => self.cancel_here(delivery_id),
                ReplicaEvent::Rollout { event } => {
                    self.hub.publish(delivery_id, DeliveryEvent::Rollout { rollout: event })
                }
                ReplicaEvent::Final { state, counts } => {
                    self.hub.publish_all(
                        delivery_id,
                        vec![DeliveryEvent::Counts { counts }, DeliveryEvent::Final { state, counts }],
                    );
                    self.hub.close(delivery_id);
                }
            }
        }
    }

    /// Whether other replicas may share this database (and so need to hear about events).
    fn shared(&self) -> bool {
        self.store.backend() == store::Backend::Postgres
    }

    /// Tells the other replicas about an event (PostgreSQL `NOTIFY`).
    async fn tell_replicas(&self, delivery_id: &str, event: ReplicaEvent) {
        let message = ReplicaMessage { delivery: delivery_id.to_owned(), worker: self.worker_id.clone(), event };
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(delivery.id = %delivery_id, error = %err, "cannot encode a message to other replicas");
                return;
            }
        };
        if let Err(err) = self.store.notify(EVENTS_CHANNEL, &text).await {
            tracing::warn!(delivery.id = %delivery_id, error = %err, "cannot tell other replicas about an event");
        }
    }

    pub async fn resume_unfinished(self: &Arc<Self>) -> store::Result<()> {
        if self.store.backend() == store::Backend::Sqlite {
            // The process that held these leases is gone (the database lock proves it).
            let released = self.store.release_all_leases().await?;
            if released > 0 {
                tracing::info!(targets = released, "released targets of a previous process");
            }
        }
        for id in self.store.unfinished_deliveries().await? {
            tracing::info!(delivery.id = %id, "resuming unfinished delivery");
            self.start(&id);
        }
        Ok(())
    }

    /// Starts this process's runner for the delivery, unless one is already running.
    pub fn start(self: &Arc<Self>, delivery_id: &str) {
        if !self.works {
            return;
        }
        let fresh =
            self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(delivery_id.to_owned());
        if !fresh {
            return;
        }
        let engine = Arc::clone(self);
        let id = delivery_id.to_owned();
        tokio::spawn(async move {
            if let Err(err) = engine.run_delivery(&id).await {
                tracing::error!(delivery.id = %id, error = %err, "delivery runner stopped; it resumes on the next start");
            }
            engine.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
            engine.cancels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        });
    }

    /// Stops this process's runner of the delivery: no more claims, and every edge call under way
    /// is abandoned at once (its target ends `canceled`, saying what it was doing). Other replicas
    /// are told to do the same. Pending targets were canceled in the store.
    pub async fn cancel(&self, delivery_id: &str) {
        self.cancel_here(delivery_id);
        if self.shared() {
            self.tell_replicas(delivery_id, ReplicaEvent::Cancel).await;
        }
    }

    fn cancel_here(&self, delivery_id: &str) {
        let cancels = self.cancels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(token) = cancels.get(delivery_id) {
            token.cancel();
        }
    }

    async fn run_delivery(self: &Arc<Self>, delivery_id: &str) -> anyhow::Result<()> {
        let delivery = self.store.delivery_by_id(delivery_id).await?;
        let mut plan = match plan_of(&delivery, &self.secrets) {
            Ok(plan) => plan,
            Err(reason) => return self.fail_everything(&delivery, &reason).await,
        };
        // A rollback needs to know what its source left: a rollback of a rollback left the
        // snapshot of the delivery that one rolled back.
        if let Some(of) = &delivery.rollback_of {
            let source = self.store.delivery_by_id(of).await?;
            plan.rollback = Some(RollbackSource { of: of.clone(), mode: source.mode, rollback_of: source.rollback_of });
        }
        if plan.options.respect_windows {
            plan.windows = self.windows_of(&delivery.project_id).await?;
        }
        let plan = Arc::new(plan);
        let cancel = CancellationToken::new();
        self.cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(delivery_id.to_owned(), cancel.clone());
        if delivery.cancel_requested {
            cancel.cancel();
        }
        let counts = Arc::new(Mutex::new(self.store.delivery_counts(delivery_id).await?));
        self.publish_counts(delivery_id, &counts);
        let concurrency = plan.options.concurrency as usize;
        let slots = Arc::new(slots::Slots::new(concurrency, Arc::clone(&self.metrics)));
        let refill_at = (concurrency / 8).max(1);
        let lease_ms = lease_ms(&plan.options);
        let mut canceled = delivery.cancel_requested;
        let shared = self.shared();
        let mut refreshed = std::time::Instant::now();
        let mut counts_sent = std::time::Instant::now();
        let mut last_ticked = *lock(&counts);
        let (writes, queue) = tokio::sync::mpsc::channel::<ResultWrite>(WRITE_QUEUE);
        let writer = tokio::spawn(Arc::clone(self).write_results(delivery_id.to_owned(), queue, Arc::clone(&counts)));
        let (snapshots, snapshot_queue) = tokio::sync::mpsc::channel::<SnapshotWrite>(WRITE_QUEUE);
        let snapshot_writer = tokio::spawn(write_snapshots(self.store.clone(), snapshot_queue));
        let mut tasks: JoinSet<()> = JoinSet::new();
        // A rollout's runner claims only the current wave; an aborted one claims nothing new.
        let rollout = delivery.rollout.clone();
        let mut wave = delivery.wave;
        let mut below = delivery.claim_limit();
        let mut aborted = delivery.abort_reason.is_some();
        loop {
            if shared && refreshed.elapsed() >= COUNTS_REFRESH {
                *lock(&counts) = self.store.delivery_counts(delivery_id).await?;
                refreshed = std::time::Instant::now();
            }
            let room = slots.room(tasks.len());
            if !canceled && (room >= refill_at || tasks.is_empty()) {
                let claimed = self
                    .store
                    .claim_targets(delivery_id, &self.worker_id, lease_ms, room as i64, below, self.clock.now_ms())
                    .await?;
                let ids: Vec<String> = claimed.iter().map(|t| t.edge_id.clone()).collect();
                let mut health = self.store.edge_health(&ids).await?;
                for target in claimed {
                    let health = health.remove(&target.edge_id);
                    if self.waits_for_window(&plan, &target).await?
                        || self.waits_offline(&plan, &target, health.as_ref()).await?
                    {
                        continue;
                    }
                    // With several replicas the stored counts are read instead: a claim may take
                    // over a running target whose holder died, and another runner moves targets
                    // too, so moving them here would count some twice.
                    if !shared {
                        lock(&counts).moved(TargetStatus::Pending, TargetStatus::Running);
                    }
                    // Boxed: a target's future is kilobytes (6.4 KiB), and spawning copies a
                    // future several times (it was 7% of a delivery's instructions unboxed).
                    tasks.spawn(Box::pin(Arc::clone(self).run_target(
                        Arc::clone(&plan),
                        target,
                        health,
                        Arc::clone(&counts),
                        Writers { results: writes.clone(), snapshots: snapshots.clone() },
                        Steering { slots: Arc::clone(&slots), cancel: cancel.clone() },
                    )));
                }
            }
            if tasks.is_empty() {
                if rollout.is_some()
                    && !canceled
                    && !aborted
                    && let rollout::Between::Claim { wave: next, below: end } =
                        self.between_waves(delivery_id, wave).await?
                {
                    (wave, below) = (next, end);
                    continue;
                }
                break;
            }
            tokio::select! {
                _ = tasks.join_next() => {
                    if counts_sent.elapsed() >= COUNTS_EVERY {
                        self.publish_counts(delivery_id, &counts);
                        counts_sent = std::time::Instant::now();
                    }
                    if let Some(rollout) = rollout.as_ref().filter(|_| !aborted) {
                        let now = *lock(&counts);
                        if self.check_abort(&delivery, rollout, &now, wave).await? {
                            aborted = true;
                            // The abort canceled the targets not started: count them.
                            *lock(&counts) = self.store.delivery_counts(delivery_id).await?;
                            self.publish_counts(delivery_id, &counts);
                        }
                    }
                }
                // Counts that changed after the last tick go out even when no target finishes
                // for a while (the last ones may hang until their timeout).
                _ = tokio::time::sleep(COUNTS_EVERY) => {
                    if shared {
                        *lock(&counts) = self.store.delivery_counts(delivery_id).await?;
                        refreshed = std::time::Instant::now();
                    }
                    let now = *lock(&counts);
                    if now != last_ticked {
                        self.publish_counts(delivery_id, &counts);
                        last_ticked = now;
                        counts_sent = std::time::Instant::now();
                    }
                }
                // A target kept waiting by its edge gave its slot: claim another now.
                () = slots.freed() => {}
                () = cancel.cancelled(), if !canceled => {
                    canceled = true;
                    *lock(&counts) = self.store.delivery_counts(delivery_id).await?;
                    self.publish_counts(delivery_id, &counts);
                }

            }
        }
        drop(writes);
        drop(snapshots);
        let _ = writer.await;
        let _ = snapshot_writer.await;
        self.finish(delivery_id, canceled).await
    }

    async fn run_target(
        self: Arc<Self>,
        plan: Arc<Plan>,
        target: ClaimedTarget,
        health: Option<store::EdgeHealth>,
        counts: Arc<Mutex<Counts>>,
        writers: Writers,
        steering: Steering,
    ) {
        let Writers { results: writes, snapshots } = writers;
        let Steering { slots, cancel } = steering;
        Metrics::inc(&self.metrics.targets_in_flight);
        let slot = slots::TargetSlot::new(slots);
        let runner = Runner {
            slot: &slot,
            plan: &plan,
            store: &self.store,
            snapshots: &snapshots,
            links: &self.links,
            client: &self.client,
            secrets: &self.secrets,
            jwt_keys: &self.jwt_keys,
            agents: &self.agents,
            metrics: &self.metrics,
            clock: &self.clock,
        };
        let outcome = match self.before_running(&plan, &target).await {
            Some((status, reason)) => store::TargetOutcome {
                failure: (status == TargetStatus::Failed).then_some(FailureCode::RefusedByEdgefleet),
                status,
                reason,
                items: json!([]),
                tries: 0,
                edge_version: None,
                restore: None,
                delivered: None,
            },
            None => {
                let began = std::time::Instant::now();
                // Whatever the target is doing, a second of work in all makes it wait.
                let work = std::pin::pin!(runner.run(&target, health.as_ref(), &cancel));
                let outcome = slot.waiting_after(slots::WAITING_AFTER, work).await;
                let labels = format!("status=\"{}\"", outcome.status);
                self.metrics.target_seconds.observe(labels, began.elapsed());
                outcome
            }
        };
        Metrics::dec(&self.metrics.targets_in_flight);
        let (reply, written) = tokio::sync::oneshot::channel();
        let event = TargetEvent {
            seq: 0, // numbered when written
            edge_id: target.edge_id.clone(),
            name: target.edge_name.clone(),
            endpoint: target.endpoint.clone(),
            version: outcome.edge_version.clone().or(target.edge_version.clone()),
            status: outcome.status,
            reason: outcome.reason.clone(),
            failure_code: outcome.failure,
        };
        let row = (target.delivery_id.clone(), target.edge_id.clone(), target.attempt, outcome.clone());
        if writes.send(ResultWrite { row, event, reply }).await.is_err() {
            return;
        }
        // An unwritten result (a database error) leaves the lease to run out; the target is then
        // claimed again, by this runner or another.
        let Ok(written) = written.await else {
            return;
        };
        if !written {
            tracing::warn!(delivery.id = %target.delivery_id, edge.id = %target.edge_id, "result dropped: another worker holds the target");
            return;
        }
        let counter = match outcome.status {
            TargetStatus::Succeeded => &self.metrics.targets_succeeded,
            TargetStatus::Skipped => &self.metrics.targets_skipped,
            _ => &self.metrics.targets_failed,
        };
        Metrics::inc(counter);
        if !self.shared() {
            lock(&counts).moved(TargetStatus::Running, outcome.status);
        }
    }

    /// Writes results in batches, one transaction each (one commit for many targets is what lets
    /// a single SQLite writer keep up with thousands of targets a second), then publishes their
    /// events in the order of their numbers, so watchers receive them in order and seldom need to
    /// read the store. A batch's events reach watchers as one message: one wake-up per watcher and
    /// batch instead of per target.
    async fn write_results(
        self: Arc<Self>,
        delivery_id: String,
        mut queue: tokio::sync::mpsc::Receiver<ResultWrite>,
        counts: Arc<Mutex<Counts>>,
    ) {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let rows: Vec<_> = batch.iter().map(|w| w.row.clone()).collect();
            match self.store.finish_targets(&rows).await {
                Ok(written) => {
                    let mut relayed = Vec::new();
                    let mut live = Vec::with_capacity(batch.len());
                    for (write, number) in batch.drain(..).zip(written) {
                        if let Some(seq) = number {
                            let event = TargetEvent { seq, ..write.event };
                            relayed.extend(self.relayed_result(&delivery_id, &event, &counts));
                            live.push(DeliveryEvent::Target { target: event });
                        }
                        let _ = write.reply.send(number.is_some());
                    }
                    self.hub.publish_all(&delivery_id, live);
                    // Other replicas hear of the batch in order, without holding up the next one.
                    if !relayed.is_empty() {
                        let engine = Arc::clone(&self);
                        tokio::spawn(async move {
                            for (delivery_id, event) in relayed {
                                engine.tell_replicas(&delivery_id, event).await;
                            }
                        });
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, results = rows.len(), "cannot record target results");
                    batch.clear();
                }
            }
        }
    }

    /// The message that tells other replicas, if there are any, about a written result.
    fn relayed_result(
        &self,
        delivery_id: &str,
        event: &TargetEvent,
        counts: &Mutex<Counts>,
    ) -> Option<(String, ReplicaEvent)> {
        self.shared().then(|| {
            let counts = *lock(counts);
            let mut target = event.clone();
            target.reason = target.reason.chars().take(MAX_NOTIFY_REASON).collect();
            (delivery_id.to_owned(), ReplicaEvent::Target { target, counts })
        })
    }

    fn publish_counts(&self, delivery_id: &str, counts: &Mutex<Counts>) {
        let counts = *lock(counts);
        self.hub.publish(delivery_id, DeliveryEvent::Counts { counts });
    }

    /// Closes the delivery from the stored counts (the source of truth) and tells watchers.
    /// An aborted rollout ends `aborted` (after starting its rollback, when it asks for one).
    async fn finish(self: &Arc<Self>, delivery_id: &str, canceled: bool) -> anyhow::Result<()> {
        let counts = self.store.delivery_counts(delivery_id).await?;
        if counts.pending > 0 {
            // Targets held by another worker are still running, or a rollout waits between waves
            // or for targets that wait; whoever moves the last of them finishes the delivery.
            // Watchers get the counts this runner leaves (its last tick may not have sent them).
            self.hub.publish(delivery_id, DeliveryEvent::Counts { counts });
            return Ok(());
        }
        let delivery = self.store.delivery_by_id(delivery_id).await?;
        let state = if delivery.abort_reason.is_some() && !delivery.cancel_requested {
            self.roll_back_aborted(&delivery).await?;
            DeliveryState::Aborted
        } else {
            counts.state(canceled || delivery.cancel_requested)
        };
        let entry = finish_audit(&self.store, &delivery, state, &counts).await;
        if self.store.finish_delivery(delivery_id, state, &entry).await? {
            Metrics::inc(&self.metrics.deliveries_finished);
        }
        self.hub
            .publish_all(delivery_id, vec![DeliveryEvent::Counts { counts }, DeliveryEvent::Final { state, counts }]);
        self.hub.close(delivery_id);
        if self.shared() {
            self.tell_replicas(delivery_id, ReplicaEvent::Final { state, counts }).await;
        }
        Ok(())
    }

    /// A delivery whose stored content cannot be read any more fails every target with the reason.
    async fn fail_everything(self: &Arc<Self>, delivery: &Delivery, reason: &str) -> anyhow::Result<()> {
        loop {
            let claimed = self
                .store
                .claim_targets(&delivery.id, &self.worker_id, LEASE_MARGIN_MS, 500, i64::MAX, i64::MAX)
                .await?;
            if claimed.is_empty() {
                break;
            }
            for target in claimed {
                let outcome = store::TargetOutcome {
                    status: TargetStatus::Failed,
                    reason: reason.to_owned(),
                    failure: Some(FailureCode::RefusedByEdgefleet),
                    items: json!([]),
                    tries: 0,
                    edge_version: None,
                    restore: None,
                    delivered: None,
                };
                self.store.finish_target(&delivery.id, &target.edge_id, target.attempt, &outcome).await?;
            }
        }
        self.finish(&delivery.id, false).await
    }
}

/// The windows that apply to a target: those without a tag and those of one of its tags.
fn windows_for<'a>(
    plan: &'a Plan,
    target: &'a ClaimedTarget,
) -> impl Iterator<Item = &'a (String, String, domain::window::Window)> {
    plan.windows.iter().filter(|(tag, _, _)| tag.is_empty() || target.tags.contains(tag))
}

/// How long a claim holds a target: everything a live worker may spend on it (the target's time,
/// a restore after a failure, which has a time of its own, and a verification's watch) and a
/// margin for writing the result. A shorter lease let another claim take over a target whose
/// restore was still running, and its result was dropped.
fn lease_ms(options: &domain::delivery::DeliveryOptions) -> i64 {
    let timeout = options.timeout_secs as i64 * 1000;
    let restore = if options.on_failure == domain::delivery::OnFailure::Restore { timeout } else { 0 };
    let verify = options.verify.map_or(0, |v| (v.secs as i64 + options.timeout_secs as i64) * 1000);
    timeout + restore + verify + LEASE_MARGIN_MS
}

/// How long a target waiting for an offline edge waits before it is claimed again to look (an
/// edge the prober sees online wakes it sooner).
const OFFLINE_RECHECK_MS: i64 = 60_000;

impl Engine {
    /// With `offline: wait`, a claimed target whose edge the prober sees offline goes back to wait
    /// (before its deadline; at the deadline it runs, with one quick check); `true` when it did.
    async fn waits_offline(
        &self,
        plan: &Plan,
        target: &ClaimedTarget,
        health: Option<&store::EdgeHealth>,
    ) -> anyhow::Result<bool> {
        let Some((deadline, _)) = &plan.waiting else {
            return Ok(false);
        };
        let Some(health) = health.filter(|h| h.status == domain::edge::EdgeStatus::Offline) else {
            return Ok(false);
        };
        let left = deadline - self.clock.now_ms();
        if left <= 0 {
            return Ok(false);
        }
        let since = health.since.map_or_else(|| "the last probe".to_owned(), domain::edge::utc_text);
        let reason = format!(
            "waiting: offline since {since}; runs when it is seen online (until {})",
            domain::edge::utc_text(*deadline)
        );
        let not_before = self.clock.now_ms() + left.min(OFFLINE_RECHECK_MS);
        self.defer(target, not_before, reason).await?;
        Ok(true)
    }

    /// Puts a claimed target back to wait until `not_before` and tells watchers why (a target
    /// another claim took over meanwhile is that claim's to run).
    async fn defer(&self, target: &ClaimedTarget, not_before: i64, reason: String) -> anyhow::Result<()> {
        let (delivery_id, edge_id) = (&target.delivery_id, &target.edge_id);
        if self.store.defer_target(delivery_id, edge_id, target.attempt, not_before, &reason).await? {
            let waiting = api_types::WaitingEvent { edge_id: edge_id.clone(), name: target.edge_name.clone(), reason };
            self.hub.publish(delivery_id, DeliveryEvent::Waiting { waiting });
        }
        Ok(())
    }

    /// What ends a target before it contacts its edge: no maintenance window for it (failed), or
    /// a newer delivery of the same template (or plugin) to that edge, which a target that waited
    /// for its edge gives way to (canceled).
    async fn before_running(&self, plan: &Plan, target: &ClaimedTarget) -> Option<(TargetStatus, String)> {
        if plan.options.respect_windows && windows_for(plan, target).next().is_none() {
            let reason = format!(
                "no maintenance window applies to this edge (tags: {}); add one, or deliver without respect_windows; nothing was sent",
                if target.tags.is_empty() { "none".to_owned() } else { target.tags.join(", ") }
            );
            return Some((TargetStatus::Failed, reason));
        }
        let (_, delivery) = plan.waiting.as_ref()?;
        if target.attempt <= 1 {
            return None;
        }
        match self.store.superseding_delivery(delivery, &target.edge_id).await {
            Ok(newer) => newer.map(|id| (TargetStatus::Canceled, format!("superseded by delivery {id}"))),
            Err(err) => {
                tracing::warn!(delivery.id = %delivery.id, error = %err, "cannot look for a newer delivery; running the target");
                None
            }
        }
    }

    /// The project's maintenance windows, parsed (a stored window that no longer parses is left
    /// out, with a warning).
    async fn windows_of(&self, project_id: &str) -> anyhow::Result<Vec<(String, String, domain::window::Window)>> {
        let mut windows = Vec::new();
        for stored in self.store.windows(project_id).await? {
            match domain::window::Window::parse(&stored.cron, stored.duration_minutes, &stored.timezone) {
                Ok(window) => windows.push((stored.tag, stored.name, window)),
                Err(err) => tracing::warn!(window = %stored.name, error = %err, "ignoring a maintenance window"),
            }
        }
        Ok(windows)
    }

    /// With `respect_windows`, a target outside all of its windows goes back to wait for the next
    /// opening; `true` when it did.
    async fn waits_for_window(&self, plan: &Plan, target: &ClaimedTarget) -> anyhow::Result<bool> {
        if !plan.options.respect_windows {
            return Ok(false);
        }
        let now = self.clock.now_ms();
        let mut next: Option<(i64, &str)> = None;
        for (_, name, window) in windows_for(plan, target) {
            if window.open_until(now).is_some() {
                return Ok(false);
            }
            if let Some(at) = window.next_opening(now)
                && next.is_none_or(|(best, _)| at < best)
            {
                next = Some((at, name));
            }
        }
        // No window at all fails before running; none opening within a year waits a day at a time.
        let Some((at, name)) =
            next.or(windows_for(plan, target).next().map(|(_, n, _)| (now + 86_400_000, n.as_str())))
        else {
            return Ok(false);
        };
        let reason =
            format!("waiting: outside its maintenance windows; `{name}` opens at {}", domain::edge::utc_text(at));
        self.defer(target, at, reason).await?;
        Ok(true)
    }
}

/// What one replica tells the others through PostgreSQL `NOTIFY` (payloads stay under 8000
/// bytes: reasons are cut to `MAX_NOTIFY_REASON`). Short field names keep them small.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ReplicaMessage {
    #[serde(rename = "d")]
    delivery: String,
    /// The sender, which ignores its own messages.
    #[serde(rename = "w")]
    worker: String,
    #[serde(flatten)]
    event: ReplicaEvent,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum ReplicaEvent {
    /// A result this replica wrote, with its runner's counts.
    Target { target: TargetEvent, counts: Counts },
    /// The delivery was canceled: abandon its edge calls.
    Cancel,
    /// A rollout event (wave, pause, abort, approval).
    Rollout { event: hub::RolloutEvent },
    /// The delivery ended.
    Final { state: DeliveryState, counts: Counts },
}

/// A target's result on its way to the store, its event (numbered when written), and where to
/// say whether it was written.
struct ResultWrite {
    row: (String, String, i64, store::TargetOutcome),
    event: TargetEvent,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// Where a target's work goes to be written: its snapshot, then its result.
struct Writers {
    results: tokio::sync::mpsc::Sender<ResultWrite>,
    snapshots: tokio::sync::mpsc::Sender<SnapshotWrite>,
}

/// How a runner steers its targets: the slots they count against, and the cancel they obey.
struct Steering {
    slots: Arc<slots::Slots>,
    cancel: CancellationToken,
}

/// A target's snapshot on its way to the store, and where to say whether it was recorded (an
/// error is a reason).
pub struct SnapshotWrite {
    pub row: (String, String, i64, Value),
    pub reply: tokio::sync::oneshot::Sender<Result<bool, String>>,
}

/// Records snapshots in batches, one transaction each, and answers every target once its batch
/// is committed: snapshots stay durable before any edge write, at the cost of one commit per
/// batch instead of one per target (group commit).
async fn write_snapshots(store: Store, mut queue: tokio::sync::mpsc::Receiver<SnapshotWrite>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let rows: Vec<_> = batch.iter().map(|w| w.row.clone()).collect();
        match store.record_snapshots(&rows).await {
            Ok(recorded) => {
                for (write, done) in batch.drain(..).zip(recorded) {
                    let _ = write.reply.send(Ok(done));
                }
            }
            Err(err) => {
                for write in batch.drain(..) {
                    let _ = write.reply.send(Err(err.to_string()));
                }
            }
        }
    }
}

/// Results queued while a batch is being written.
const WRITE_QUEUE: usize = 4096;
/// Most results written in one transaction.
const WRITE_BATCH: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How to sign in to an edge, for deliveries and probes alike: the stored password opened, or a
/// JWT grant from the edge's own project key for this edge and this `purpose` only.
/// What [`edge_target`] needs of an edge service, from whichever row holds it.
pub struct EdgeAddress<'a> {
    pub project_id: &'a str,
    pub edge_id: &'a str,
    pub endpoint: &'a str,
    pub auth: &'a store::EdgeAuthRow,
    pub reach: &'a Reach,
}

/// How to reach one edge for one piece of work (`purpose` names it in JWTs): its credentials over
/// HTTP, or its agent (which holds NeuronEX credentials of its own) through the broker.
pub async fn edge_target(
    secrets: &SecretBox,
    jwt_keys: &ProjectKeys,
    agents: &crate::agents::Agents,
    edge: EdgeAddress<'_>,
    purpose: &str,
) -> Result<edge_client::EdgeTarget, String> {
    match edge.reach {
        Reach::Http => {
            let auth = edge_auth(secrets, jwt_keys, edge.project_id, edge.edge_id, edge.auth, purpose).await?;
            Ok(edge_client::EdgeTarget::http(edge.endpoint, auth))
        }
        Reach::Agent { agent_id } => {
            let relay = agents.relay(edge.project_id).await.map_err(|e| e.to_string())?;
            Ok(edge_client::EdgeTarget {
                endpoint: edge.endpoint.to_owned(),
                auth: edge_client::EdgeAuth::None,
                via: edge_client::Via::Agent(edge_client::AgentRoute { agent_id: agent_id.clone(), relay }),
            })
        }
    }
}

async fn edge_auth(
    secrets: &SecretBox,
    jwt_keys: &ProjectKeys,
    project_id: &str,
    edge_id: &str,
    auth: &store::EdgeAuthRow,
    purpose: &str,
) -> Result<edge_client::EdgeAuth, String> {
    Ok(match auth.kind {
        AuthKind::Basic => {
            let password = secrets.open(&auth.secret).map_err(|e| format!("edge credentials: {e}"))?;
            edge_client::EdgeAuth::Basic { username: auth.username.clone(), password }
        }
        AuthKind::Jwt => {
            let signer = jwt_keys.signer(project_id).await.map_err(|e| format!("edge credentials: {e}"))?;
            edge_client::EdgeAuth::Jwt(edge_client::JwtGrant::new(signer, edge_id, purpose))
        }
        AuthKind::None => edge_client::EdgeAuth::None,
    })
}

/// Reads what the delivery stored at its start back into a plan.
pub fn plan_of(delivery: &Delivery, secrets: &SecretBox) -> Result<Plan, String> {
    let params = split_params(&crate::secret_params::open(&delivery.params, secrets)?);
    let payload = match (delivery.kind, delivery.template_kind) {
        (DeliveryKind::Plugin, _) => {
            // The content of a plugin delivery is the package's manifest, which names its version.
            let manifest: Value = serde_json::from_str(&delivery.content).unwrap_or(Value::Null);
            let version = manifest.get("version").and_then(Value::as_str).unwrap_or_default().to_owned();
            Payload::Plugin { name: delivery.template_name.clone(), sha256: delivery.content_sha256.clone(), version }
        }
        (DeliveryKind::Template, None) => return Err("stored delivery names no template kind".into()),
        (DeliveryKind::Template, Some(kind)) => {
            let content: Value =
                serde_json::from_str(&delivery.content).map_err(|e| format!("stored content unreadable: {e}"))?;
            let normalized =
                template::normalize(kind, &content).map_err(|p| format!("stored content invalid: {p:?}"))?;
            let shared = Plan::shared_document(kind, &normalized, &params.0, &params.1);
            Payload::Template { kind, normalized, shared }
        }
    };
    let options: DeliveryOptions =
        serde_json::from_value(delivery.options.clone()).map_err(|e| format!("stored options unreadable: {e}"))?;
    let waiting = options.offline_deadline(delivery.created_at).map(|deadline| (deadline, delivery.clone()));
    Ok(Plan {
        project_id: delivery.project_id.clone(),
        payload,
        defaults: params.0,
        per_target: params.1,
        options,
        dry_run: delivery.dry_run,
        mode: delivery.mode,
        plan_id: delivery.plan_id.clone(),
        force: delivery.force,
        rollback: None,
        source: store::Delivered {
            template_id: delivery.template_id.clone(),
            plugin_id: delivery.plugin_id.clone(),
            objects: Vec::new(),
        },
        waiting,
        windows: Vec::new(),
    })
}

pub type TargetParams = BTreeMap<String, BTreeMap<String, Value>>;

/// `{"defaults": {...}, "targets": {"<edge id or name>": {...}}}`.
pub fn split_params(params: &Value) -> (BTreeMap<String, Value>, TargetParams) {
    let defaults = params.get("defaults").and_then(|d| serde_json::from_value(d.clone()).ok()).unwrap_or_default();
    let targets = params.get("targets").and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or_default();
    (defaults, targets)
}

async fn finish_audit(store: &Store, delivery: &Delivery, state: DeliveryState, counts: &Counts) -> AuditEntry {
    let details = json!({
        "content_sha256": delivery.content_sha256,
        "template_id": delivery.template_id,
        "template_version": delivery.template_version,
        "plugin_id": delivery.plugin_id,
        "counts": counts,
        "abort_reason": delivery.abort_reason,
        "rollback_id": delivery.rollback_id,
    });
    let mut entry = rollout::system_entry(store, delivery, AuditAction::DeliveryFinish, details).await;
    entry.actor_name = delivery.created_by.clone();
    entry.outcome = Outcome::Ended(state);
    entry
}
