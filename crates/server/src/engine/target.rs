//! What a delivery does on one edge: render, gate on the version, apply each object in order
//! (retrying transient failures), then check that the edge reports what was asked.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::delivery::{DeliveryMode, DeliveryOptions, FailureCode, OnConflict, OnFailure, TargetStatus};
use domain::driver::DriverDocument;
use domain::edge::EdgeStatus;
use domain::params::{self, ParamValues};
use domain::plan::{self as planning, Change, ObjectRef, SnapshotEntry};
use domain::rule::RuleDocument;
use domain::template::{self, Document, TemplateKind};
use domain::version::{MIN_NEURONEX, Version};
use edge_client::{Edge, EdgeClient, EdgeError, EdgeTarget, RuleState, StreamKind, Write, human_duration, tries_word};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use store::{ClaimedTarget, EdgeHealth, Store, TargetOutcome};

use tokio_util::sync::CancellationToken;

use crate::blobs::PackageLinks;
use crate::crypto::SecretBox;
use crate::jwt_keys::ProjectKeys;
use crate::metrics::Metrics;

/// What a delivery sends.
pub enum Payload {
    /// `shared` is the rendered document when it is the same for every target (no per-target or
    /// built-in parameters), so it is rendered and checked once, not once per target.
    Template { kind: TemplateKind, normalized: Value, shared: Option<Document> },
    /// An eKuiper portable plugin, downloaded by the edge from a signed link.
    Plugin { name: String, sha256: String, version: String },
}

/// Everything a target needs from its delivery, parsed once per delivery.
pub struct Plan {
    /// Whose keys sign the JWTs of `auth: jwt` targets.
    pub project_id: String,
    pub payload: Payload,
    pub defaults: BTreeMap<String, Value>,
    /// Keyed by edge id or edge name.
    pub per_target: BTreeMap<String, BTreeMap<String, Value>>,
    pub options: DeliveryOptions,
    pub dry_run: bool,
    pub mode: DeliveryMode,
    /// The plan an `apply` carries out: its targets' objects must not have changed since.
    pub plan_id: Option<String>,
    /// Write over objects changed since the plan or the delivery rolled back.
    pub force: bool,
    /// For a `rollback`: the delivery it puts back.
    pub rollback: Option<RollbackSource>,
    /// The template or plugin delivered, recorded with what each target left.
    pub source: store::Delivered,
    /// With `offline: wait`: when waiting ends (ms), and the delivery, which a newer delivery of
    /// the same template supersedes for a target that waited.
    pub waiting: Option<(i64, store::Delivery)>,
    /// With `options.respect_windows`: the project's maintenance windows (tag, name, schedule),
    /// read when the runner started.
    pub windows: Vec<(String, String, domain::window::Window)>,
}

/// The delivery a rollback puts back, and what that delivery was.
pub struct RollbackSource {
    pub of: String,
    pub mode: DeliveryMode,
    /// When the source is itself a rollback: the delivery it rolled back.
    pub rollback_of: Option<String>,
}

impl Plan {
    /// The document every target gets, when no parameter depends on the target.
    pub fn shared_document(
        kind: TemplateKind,
        normalized: &Value,
        defaults: &BTreeMap<String, Value>,
        per_target: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Option<Document> {
        let names = params::placeholders(normalized);
        let per_target_names = per_target.values().flat_map(|m| m.keys());
        let depends_on_target =
            names.iter().any(|n| n.starts_with("edge.")) || per_target_names.into_iter().any(|n| names.contains(n));
        if depends_on_target {
            return None;
        }
        let values = ParamValues { target: None, defaults: Some(defaults), builtins: BTreeMap::new() };
        let rendered = params::render(normalized, &values).ok()?;
        template::load(kind, &rendered).ok()
    }

    pub fn values_for<'a>(&'a self, target: &ClaimedTarget) -> ParamValues<'a> {
        ParamValues {
            target: self.per_target.get(&target.edge_id).or_else(|| self.per_target.get(&target.edge_name)),
            defaults: Some(&self.defaults),
            builtins: params::edge_builtins(
                &target.edge_id,
                &target.edge_name,
                &target.endpoint,
                target.edge_version.as_deref(),
                &target.tags,
            ),
        }
    }
}

/// A target that ran out of its time: worded like the edge client's own timeouts.
fn timed_out_reason(progress: &Progress, timeout: Duration, spent: Duration) -> String {
    let tries = u32::try_from(progress.tries.max(1)).unwrap_or(u32::MAX);
    format!(
        "{}: no answer within the target's {} (options.timeout_secs) ({} in {})",
        progress.step,
        human_duration(timeout.as_millis() as u64),
        tries_word(tries),
        human_duration(spent.as_millis() as u64),
    )
}

/// What a canceled target says: the step it was in, and whether something may be half-written.
fn canceled_reason(progress: &Progress) -> String {
    let applied = progress.items.len();
    let writing = !matches!(progress.step.as_str(), "start" | "version gate" | "render");
    match (writing, applied) {
        (false, 0) => format!("canceled during {}; nothing was written", progress.step),
        (true, 0) if progress.step.ends_with(" together") => {
            format!("canceled during {}; those objects may be written or half-written", progress.step)
        }
        (true, 0) => format!("canceled during {}; that object may be half-written", progress.step),
        (_, n) => format!(
            "canceled during {} after {n} objects were applied; the current one may be half-written",
            progress.step
        ),
    }
}

/// The desired objects an apply wrote: all but those it skipped because they existed (a skipped
/// node keeps its groups and tags as they were too).
fn written_objects(desired: Vec<(ObjectRef, Value)>, items: &[Item]) -> Vec<(ObjectRef, Option<Value>)> {
    let skipped: std::collections::HashSet<&str> =
        items.iter().filter(|item| item.action == "skipped").map(|item| item.object.as_str()).collect();
    let was_skipped = |object: &ObjectRef| match object {
        ObjectRef::Group { node, .. } | ObjectRef::Tags { node, .. } => {
            skipped.contains(format!("node {node}").as_str())
        }
        other => skipped.contains(other.to_string().as_str()),
    };
    desired
        .into_iter()
        .filter(|(object, _)| !was_skipped(object))
        .map(|(object, value)| (object, Some(value)))
        .collect()
}

#[derive(Debug, Clone, Serialize)]
struct Item {
    object: String,
    action: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

/// The running record of one target: applied items, tries, the step under way.
#[derive(Default)]
pub(super) struct Progress {
    items: Vec<Item>,
    /// What a `plan` target found: its items, instead of `items`.
    pub(super) changes: Option<Vec<Change>>,
    /// What an `apply` target held before its first write, once recorded.
    pub(super) snapshot: Option<Vec<SnapshotEntry>>,
    tries: i64,
    pub(super) step: String,
    pub(super) version: Option<String>,
    /// What the edge holds of each object once the target succeeds (`None`: the object is gone),
    /// kept per edge for drift checks; unset when nothing was written.
    pub(super) delivered: Option<Vec<(ObjectRef, Option<Value>)>>,
    /// The rules this target delivered, for `options.verify`.
    verify_rules: Vec<String>,
}

pub struct Runner<'a> {
    pub plan: &'a Plan,
    /// Whether the target counts against the delivery's concurrency (not while it waits).
    pub slot: &'a super::slots::TargetSlot,
    pub store: &'a Store,
    /// Where snapshots are recorded (committed in batches, before any edge write).
    pub snapshots: &'a tokio::sync::mpsc::Sender<super::SnapshotWrite>,
    pub links: &'a PackageLinks,
    pub client: &'a EdgeClient,
    pub secrets: &'a SecretBox,
    pub jwt_keys: &'a ProjectKeys,
    pub agents: &'a crate::agents::Agents,
    pub metrics: &'a Metrics,
    /// What `options.verify` waits on.
    pub clock: &'a crate::clock::Clock,
}

pub(super) enum Failure {
    Edge(EdgeError),
    Other(String),
}

impl From<EdgeError> for Failure {
    fn from(err: EdgeError) -> Failure {
        Failure::Edge(err)
    }
}

/// The failure code of a failed edge call.
fn edge_failure_code(failure: &edge_client::Failure) -> FailureCode {
    match failure {
        edge_client::Failure::Edge => FailureCode::EdgeError,
        edge_client::Failure::Timeout { .. } => FailureCode::EdgeTimeout,
        edge_client::Failure::Connect { .. } => FailureCode::Unreachable,
        edge_client::Failure::Reset { .. } => FailureCode::ConnectionReset,
        edge_client::Failure::Decode { .. } => FailureCode::UnreadableAnswer,
        edge_client::Failure::Refused { .. } => FailureCode::NotSent,
        edge_client::Failure::AgentSilent { .. } => FailureCode::AgentSilent,
        edge_client::Failure::AgentRefused { .. } => FailureCode::AgentRefused,
    }
}

impl Runner<'_> {
    /// Counts a failure in `edgefleet_target_failures_total` and answers its code for the result.
    fn count_failure(&self, code: FailureCode) -> Option<FailureCode> {
        self.metrics.target_failures.inc(format!("reason=\"{code}\""));
        Some(code)
    }

    /// Runs one target to a final outcome within the delivery's per-target timeout.
    /// Runs one target to a final outcome within the delivery's per-target timeout, or until the
    /// delivery is canceled: then the edge call under way is abandoned at once and the target ends
    /// `canceled`, saying what it was doing (an object being written may be half-written).
    ///
    /// `health` is what the prober last found: an edge it found offline gets one quick check
    /// instead of the delivery's retries.
    pub async fn run(
        &self,
        target: &ClaimedTarget,
        health: Option<&EdgeHealth>,
        cancel: &CancellationToken,
    ) -> TargetOutcome {
        let progress = Arc::new(Mutex::new(Progress { step: "start".into(), ..Progress::default() }));
        let timeout = self.plan.options.timeout();
        let started = Instant::now();
        let result = tokio::select! {
            result = tokio::time::timeout(timeout, self.apply(target, health, &progress)) => Some(result),
            () = cancel.cancelled() => None,
        };
        let (mut status, mut reason, mut failure, snapshot, verify_rules) = {
            let progress = progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (status, reason, failure) = match result {
                Some(Ok(Ok(status))) => (status, String::new(), None),
                Some(Ok(Err(Failure::Edge(err)))) => {
                    (TargetStatus::Failed, err.to_string(), self.count_failure(edge_failure_code(&err.failure)))
                }
                Some(Ok(Err(Failure::Other(reason)))) => {
                    (TargetStatus::Failed, reason, self.count_failure(FailureCode::RefusedByEdgefleet))
                }
                Some(Err(_)) => (
                    TargetStatus::Failed,
                    timed_out_reason(&progress, timeout, started.elapsed()),
                    self.count_failure(FailureCode::TargetTimeout),
                ),
                None => (TargetStatus::Canceled, canceled_reason(&progress), None),
            };
            (status, reason, failure, progress.snapshot.clone(), progress.verify_rules.clone())
        };
        if status == TargetStatus::Succeeded
            && let Some(verify) = self.plan.options.verify.filter(|_| !verify_rules.is_empty())
            && let Some(unhealthy) = self.verify(target, &verify, &verify_rules, cancel).await
        {
            if unhealthy.0 == TargetStatus::Failed {
                failure = self.count_failure(FailureCode::UnhealthyRule);
            }
            (status, reason) = unhealthy;
        }
        let mut restore = None;
        if status == TargetStatus::Failed
            && self.plan.options.on_failure == OnFailure::Restore
            && let Some(snapshot) = snapshot
            && let Some((outcome, said)) = self.restore(target, &snapshot, timeout).await
        {
            restore = Some(outcome);
            reason = format!("{reason}; {said}");
        }
        let progress = progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let delivered = progress.delivered.as_ref().filter(|_| status == TargetStatus::Succeeded);
        TargetOutcome {
            delivered: delivered.map(|objects| self.delivered(objects)),
            restore,
            status,
            reason,
            failure,
            items: match &progress.changes {
                Some(changes) => serde_json::to_value(changes).unwrap_or(Value::Null),
                None => serde_json::to_value(&progress.items).unwrap_or(Value::Null),
            },
            tries: progress.tries.max(1),
            edge_version: progress.version.clone(),
        }
    }

    async fn apply(
        &self,
        target: &ClaimedTarget,
        health: Option<&EdgeHealth>,
        progress: &Arc<Mutex<Progress>>,
    ) -> Result<TargetStatus, Failure> {
        let rendered;
        let document = match &self.plan.payload {
            Payload::Template { shared: Some(shared), .. } => Some(shared),
            Payload::Template { kind, normalized, shared: None } => {
                rendered = self.render(*kind, normalized, target)?;
                Some(&rendered)
            }
            Payload::Plugin { .. } => None,
        };
        let desired = match (document, &self.plan.payload) {
            (Some(document), _) => planning::desired(document),
            (None, Payload::Plugin { name, version, .. }) => {
                vec![(ObjectRef::Plugin { name: name.clone() }, planning::plugin_shape(version))]
            }
            (None, Payload::Template { .. }) => return Err(Failure::Other("nothing to deliver".into())),
        };
        let objects: Vec<ObjectRef> = desired.iter().map(|(object, _)| object.clone()).collect();
        let edge_target = self.edge_target(target).await?;
        let edge = self.client.edge(&edge_target);
        let step = Steps { progress, options: &self.plan.options, metrics: self.metrics, slot: self.slot };
        let version = match health {
            Some(health) if health.status == EdgeStatus::Offline => quick_check(&edge, health, &step).await?,
            _ => {
                let reads = if self.reads_objects(target) { objects.as_slice() } else { &[] };
                edge.read_ahead(reads).await;
                step.call("version gate", || edge.version()).await?
            }
        };
        step.set_version(&version);
        match Version::parse(&version) {
            Some(v) if v >= MIN_NEURONEX => {
                if let Some(reason) = document.and_then(|d| domain::compat::incompatibility(d, v)) {
                    return Err(Failure::Other(format!("version gate: {reason}; nothing was sent")));
                }
            }
            Some(v) => {
                return Err(Failure::Other(format!(
                    "version gate: NeuronEX {v} is older than {MIN_NEURONEX}, the oldest edgefleet delivers to; nothing was sent"
                )));
            }
            None => {
                return Err(Failure::Other(format!(
                    "version gate: the edge reports version `{version}`, which is not a version number"
                )));
            }
        }
        if self.plan.dry_run {
            step.note("delivery", "dry run", "rendered, checked and version-gated; nothing was sent");
            return Ok(TargetStatus::Skipped);
        }
        match self.plan.mode {
            DeliveryMode::Plan => return self.plan_target(&edge, target, &desired, &objects, &step).await,
            DeliveryMode::Rollback => return self.roll_back(&edge, target, &desired, &step).await,
            DeliveryMode::Apply => {
                let mut read = None;
                if let Some(plan_id) = self.plan.plan_id.as_deref().filter(|_| !self.plan.force) {
                    read = Some(self.unchanged_since_plan(&edge, target, plan_id, &objects, &step).await?);
                }
                // What the check just read is the snapshot, unless a node needs reading whole.
                let whole_nodes = objects.iter().any(|o| matches!(o, ObjectRef::Node { .. }));
                match read.filter(|_| !whole_nodes && target.snapshot.is_none()) {
                    Some(read) => {
                        self.record(target, &read).await?;
                        step.with(|p| p.snapshot = Some(read));
                    }
                    None => self.snapshot(&edge, target, &objects, &step).await?,
                }
            }
        }
        let skipped_any = match (document, &self.plan.payload) {
            (Some(Document::Rule(doc)), _) => {
                let skipped = self.apply_rules(&edge, doc, &step).await?;
                if self.plan.mode == DeliveryMode::Apply {
                    step.with(|p| p.verify_rules = doc.rules.iter().map(|r| r.id.clone()).collect());
                }
                skipped
            }
            (Some(Document::Driver(doc)), _) => self.apply_drivers(&edge, doc, &step).await?,
            (None, Payload::Plugin { name, sha256, .. }) => self.apply_plugin(&edge, name, sha256, &step).await?,
            (None, Payload::Template { .. }) => return Err(Failure::Other("nothing to deliver".into())),
        };
        let all_skipped = skipped_any && step.all_items_skipped();
        step.with(|p| p.delivered = Some(written_objects(desired, &p.items)));
        Ok(if all_skipped { TargetStatus::Skipped } else { TargetStatus::Succeeded })
    }

    /// Whether this target reads its objects back before writing: a plan and a rollback always
    /// do; an apply takes its snapshot (unless a retry finds it recorded) or checks the plan. What
    /// it reads is asked for with the version gate (`Edge::read_ahead`).
    fn reads_objects(&self, target: &ClaimedTarget) -> bool {
        match self.plan.mode {
            _ if self.plan.dry_run => false,
            DeliveryMode::Plan | DeliveryMode::Rollback => true,
            DeliveryMode::Apply => target.snapshot.is_none() || (self.plan.plan_id.is_some() && !self.plan.force),
        }
    }

    /// What a target left, sealed (node settings hold gateway passwords), as the store keeps it.
    fn delivered(&self, objects: &[(ObjectRef, Option<Value>)]) -> store::Delivered {
        let objects = objects
            .iter()
            .map(|(object, held)| store::DeliveredObject {
                object: serde_json::to_string(object).unwrap_or_default(),
                expected: held.as_ref().map(|value| self.secrets.seal(&value.to_string())),
            })
            .collect();
        store::Delivered {
            template_id: self.plan.source.template_id.clone(),
            plugin_id: self.plan.source.plugin_id.clone(),
            objects,
        }
    }

    /// `options.verify`: waits `secs` (on the engine's clock) and reads each delivered rule's
    /// status and metrics; answers the failure when one is unhealthy (a canceled delivery stops
    /// the watch and the target is canceled).
    async fn verify(
        &self,
        target: &ClaimedTarget,
        verify: &domain::delivery::Verify,
        rules: &[String],
        cancel: &CancellationToken,
    ) -> Option<(TargetStatus, String)> {
        let until = self.clock.now_ms() + verify.secs as i64 * 1000;
        let watching = self.slot.wait();
        tokio::select! {
            () = self.clock.sleep_until(until) => {}
            () = cancel.cancelled() => {
                return Some((TargetStatus::Canceled, "canceled while verifying its rules".into()));
            }
        }
        drop(watching);
        let edge_target = match self.edge_target(target).await {
            Ok(edge_target) => edge_target,
            Err(Failure::Edge(err)) => return Some((TargetStatus::Failed, format!("verify: {err}"))),
            Err(Failure::Other(reason)) => return Some((TargetStatus::Failed, format!("verify: {reason}"))),
        };
        let edge = self.client.edge(&edge_target);
        // One target timeout for reading every rule, so the claim's lease covers the watch.
        let judged = tokio::time::timeout(self.plan.options.timeout(), async {
            for rule in rules {
                let status = match edge.rule_status(rule).await {
                    Ok(status) => status,
                    Err(err) => return Some(format!("verify: {err}")),
                };
                let shown = if status.message.is_empty() { status.status.clone() } else { status.message.clone() };
                if let Some(mut why) = verify.judge(rule, status.running, &shown, status.exceptions, status.records_in)
                {
                    if !status.last_exception.is_empty() {
                        why = format!("{why}; last exception: {}", status.last_exception);
                    }
                    return Some(why);
                }
            }
            None
        })
        .await;
        match judged {
            Ok(None) => None,
            Ok(Some(why)) => Some((TargetStatus::Failed, why)),
            Err(_) => Some((
                TargetStatus::Failed,
                format!("verify: the rules' status did not come within {} s", self.plan.options.timeout_secs),
            )),
        }
    }

    fn render(&self, kind: TemplateKind, normalized: &Value, target: &ClaimedTarget) -> Result<Document, Failure> {
        let values = self.plan.values_for(target);
        let rendered = params::render(normalized, &values)
            .map_err(|missing| Failure::Other(format!("parameters: no value for {}", missing.join(", "))))?;
        template::load(kind, &rendered).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            Failure::Other(format!("the rendered template is invalid for this target: {}", list.join("; ")))
        })
    }

    pub(super) async fn edge_target(&self, target: &ClaimedTarget) -> Result<EdgeTarget, Failure> {
        // JWTs for this edge and this delivery only, signed by the project's own key.
        let purpose = format!("delivery:{}", target.delivery_id);
        let address = super::EdgeAddress {
            project_id: &self.plan.project_id,
            edge_id: &target.edge_id,
            endpoint: &target.endpoint,
            auth: &target.auth,
            reach: &target.reach,
        };
        super::edge_target(self.secrets, self.jwt_keys, self.agents, address, &purpose).await.map_err(Failure::Other)
    }

    /// Streams, tables, rules in that order, then a check that each rule runs as asked. Answers
    /// whether anything was skipped because it existed (`on_conflict = skip`).
    async fn apply_rules(&self, edge: &Edge<'_>, doc: &RuleDocument, step: &Steps<'_>) -> Result<bool, Failure> {
        let on_conflict = self.plan.options.on_conflict;
        let mut skipped = false;
        if !doc.extras.is_empty() {
            let sections: Vec<&str> = doc.extras.keys().map(String::as_str).collect();
            let object = format!("config {}", sections.join(", "));
            let extras = doc.extras_for_import();
            let errors = step.call(&format!("import {object}"), || edge.data_import(&extras, true)).await?;
            if !errors.is_empty() {
                let detail: Vec<String> =
                    errors.0.iter().flat_map(|(s, m)| m.iter().map(move |(k, v)| format!("{s}.{k}: {v}"))).collect();
                return Err(Failure::Other(format!("import {object}: edge refused {}", detail.join("; "))));
            }
            step.note(&object, "imported", "");
        }
        if on_conflict == OnConflict::Overwrite {
            self.write_ahead(edge, doc, step).await;
        }
        for (kind, list) in [(StreamKind::Stream, &doc.streams), (StreamKind::Table, &doc.tables)] {
            let word = if kind == StreamKind::Stream { "stream" } else { "table" };
            for (name, sql) in list {
                let object = format!("{word} {name}");
                if on_conflict == OnConflict::Overwrite {
                    match step.call(&format!("replace {object}"), || edge.replace_stream(kind, name, sql)).await {
                        Ok(()) => step.note(&object, "applied", ""),
                        Err(err) => skipped |= same_version(step, &object, err)?,
                    }
                    continue;
                }
                match step.call(&format!("create {object}"), || edge.create_stream(kind, name, sql)).await {
                    Ok(()) => step.note(&object, "created", ""),
                    Err(err) if err.is_already_exists() => skipped |= self.on_existing(step, &object, err)?,
                    Err(err) => return Err(err.into()),
                }
            }
        }
        let mut applied = Vec::new();
        for rule in &doc.rules {
            let object = format!("rule {}", rule.id);
            // `verify_rule` reads the status first thing; through an agent it comes with the write.
            edge.read_rule_status_after_write(&rule.id);
            if on_conflict == OnConflict::Overwrite {
                match step.call(&format!("apply {object}"), || edge.upsert_rule(&rule.id, &rule.definition)).await {
                    Ok(()) => {
                        step.note(&object, "applied", "");
                        applied.push(rule);
                    }
                    Err(err) => skipped |= same_version(step, &object, err)?,
                }
                continue;
            }
            match step.call(&format!("create {object}"), || edge.create_rule(&rule.definition)).await {
                Ok(()) => {
                    step.note(&object, "created", "");
                    applied.push(rule);
                }
                Err(err) if err.is_already_exists() => skipped |= self.on_existing(step, &object, err)?,
                Err(err) => return Err(err.into()),
            }
        }
        for rule in applied {
            self.verify_rule(edge, &rule.id, rule.starts(), step).await?;
        }
        Ok(skipped)
    }

    /// Through an agent: the overwrite's writes, in the order the loops below make them, go to
    /// the agent as one command (`Edge::write_ahead`); the loops then find their answers. The
    /// step names them all, so a cancel while they travel says what may have been written.
    async fn write_ahead(&self, edge: &Edge<'_>, doc: &RuleDocument, step: &Steps<'_>) {
        if !edge.writes_ahead() {
            return;
        }
        let streams = [(StreamKind::Stream, &doc.streams), (StreamKind::Table, &doc.tables)]
            .into_iter()
            .flat_map(|(kind, list)| list.iter().map(move |(name, sql)| Write::replace_stream(kind, name, sql)));
        let rules = doc.rules.iter().map(|rule| Write::upsert_rule(&rule.id, &rule.definition));
        let writes: Vec<Write> = streams.chain(rules).collect();
        if writes.len() > 1 {
            let names: Vec<&str> = writes.iter().map(Write::object).collect();
            step.with(|p| p.step = format!("apply {} together", names.join(", ")));
            edge.write_ahead(&writes).await;
        }
    }

    /// `skip` records the item and goes on; `fail` fails the target naming the object.
    fn on_existing(&self, step: &Steps<'_>, object: &str, err: EdgeError) -> Result<bool, Failure> {
        match self.plan.options.on_conflict {
            OnConflict::Skip => {
                step.note(object, "skipped", "already exists on the edge (on_conflict = skip)");
                Ok(true)
            }
            _ => Err(Failure::Other(format!("{err} (on_conflict = fail)"))),
        }
    }

    /// A rule counts only when the edge reports it running (or stopped on purpose).
    async fn verify_rule(&self, edge: &Edge<'_>, id: &str, starts: bool, step: &Steps<'_>) -> Result<(), Failure> {
        let object = format!("rule {id}");
        let mut started_once = false;
        for wait_ms in [0u64, 100, 200, 400, 800, 1500] {
            if wait_ms > 0 {
                let _waiting = step.slot.wait();
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            let status = step.call(&format!("check {object}"), || edge.rule_status(id)).await?;
            if status.running == starts {
                let word = if starts { "running" } else { "stopped (triggered: false)" };
                step.note(&object, "verified", word);
                return Ok(());
            }
            let state = status.state();
            if starts && state == RuleState::StoppedByError {
                let message = if status.message.is_empty() { String::new() } else { format!(": {}", status.message) };
                return Err(Failure::Other(format!("{object}: the edge reports it {:?}{message}", status.status)));
            }
            if starts && !started_once && state == RuleState::StoppedByHand {
                // Updating a rule that was stopped by hand leaves it stopped; the template asks
                // for it to run.
                step.call(&format!("start {object}"), || edge.control_rule(id, "start")).await?;
                started_once = true;
            }
        }
        Err(Failure::Other(format!(
            "{object}: not {} on the edge after 3 s",
            if starts { "running" } else { "stopped" }
        )))
    }

    /// Nodes with their settings, then groups and tags, then subscriptions; then a check that each
    /// group holds the template's tags.
    async fn apply_drivers(&self, edge: &Edge<'_>, doc: &DriverDocument, step: &Steps<'_>) -> Result<bool, Failure> {
        let mut skipped = false;
        let mut applied = Vec::new();
        for node in &doc.nodes {
            let object = format!("node {}", node.name);
            match step
                .call(&format!("create {object}"), || edge.create_node(&node.name, &node.plugin, node.params.as_ref()))
                .await
            {
                Ok(()) => step.note(&object, "created", &node.plugin),
                Err(err) if err.is_already_exists() => match self.plan.options.on_conflict {
                    OnConflict::Overwrite => {
                        step.call(&format!("delete {object}"), || edge.delete_node(&node.name)).await?;
                        step.call(&format!("create {object}"), || {
                            edge.create_node(&node.name, &node.plugin, node.params.as_ref())
                        })
                        .await?;
                        step.note(&object, "replaced", &node.plugin);
                    }
                    _ => {
                        skipped |= self.on_existing(step, &object, err)?;
                        continue;
                    }
                },
                Err(err) => return Err(err.into()),
            }
            if !node.groups.is_empty() {
                let groups: Vec<Value> = node
                    .groups
                    .iter()
                    .map(|g| json!({"group": g.name, "interval": g.interval, "tags": g.tags}))
                    .collect();
                step.call(&format!("add groups and tags of {object}"), || edge.add_group_tags(&node.name, &groups))
                    .await?;
                for group in &node.groups {
                    step.note(
                        &format!("group {} of {object}", group.name),
                        "created",
                        &format!("{} tags", group.tags.len()),
                    );
                }
            }
            applied.push(node);
        }
        for sub in &doc.subscriptions {
            let object = format!("subscription of {} to {}/{}", sub.app, sub.driver, sub.group);
            step.call(&format!("create {object}"), || {
                edge.subscribe(&sub.app, &sub.driver, &sub.group, sub.params.as_ref())
            })
            .await?;
            step.note(&object, "created", "");
        }
        for node in applied.into_iter().filter(|n| !n.groups.is_empty()) {
            let object = format!("node {}", node.name);
            let on_edge = step.call(&format!("check {object}"), || edge.list_groups(&node.name)).await?;
            for group in &node.groups {
                let count =
                    on_edge.iter().find(|g| g["name"] == group.name.as_str()).and_then(|g| g["tag_count"].as_u64());
                if count != Some(group.tags.len() as u64) {
                    return Err(Failure::Other(format!(
                        "{object}: group {} holds {} tags on the edge, the template has {}",
                        group.name,
                        count.map(|c| c.to_string()).unwrap_or_else(|| "no".into()),
                        group.tags.len()
                    )));
                }
            }
            step.note(&object, "verified", "");
        }
        Ok(skipped)
    }
}

impl Runner<'_> {
    /// Installs the plugin from a fresh signed link; `overwrite` uses `PUT`, which eKuiper treats
    /// as delete-then-install and which is therefore safe to retry.
    async fn apply_plugin(&self, edge: &Edge<'_>, name: &str, sha256: &str, step: &Steps<'_>) -> Result<bool, Failure> {
        let object = format!("plugin {name}");
        let installed = step.call(&format!("check {object}"), || edge.get_portable(name)).await?;
        let url = self.links.url(sha256, name);
        if self.install_plugin(edge, name, &url, installed.is_some(), step).await.map_err(private_net_hint)? {
            return Ok(true);
        }
        match step.call(&format!("check {object}"), || edge.get_portable(name)).await? {
            Some(described) => {
                let version = described.get("version").and_then(Value::as_str).unwrap_or_default().to_owned();
                step.note(&object, "verified", &version);
                Ok(false)
            }
            None => Err(Failure::Other(format!("{object}: the edge does not list it after installing"))),
        }
    }

    /// Installs or updates as `on_conflict` says; answers whether it skipped.
    async fn install_plugin(
        &self,
        edge: &Edge<'_>,
        name: &str,
        url: &str,
        installed: bool,
        step: &Steps<'_>,
    ) -> Result<bool, Failure> {
        let object = format!("plugin {name}");
        match (installed, self.plan.options.on_conflict) {
            (false, OnConflict::Overwrite) => {
                step.call(&format!("install {object}"), || edge.install_portable(name, url, true)).await?;
                step.note(&object, "installed", "");
            }
            (false, _) => {
                step.call(&format!("install {object}"), || edge.install_portable(name, url, false)).await?;
                step.note(&object, "installed", "");
            }
            (true, OnConflict::Overwrite) => {
                step.call(&format!("update {object}"), || edge.install_portable(name, url, true)).await?;
                step.note(&object, "updated", "");
            }
            (true, OnConflict::Skip) => {
                step.note(&object, "skipped", "already installed on the edge (on_conflict = skip)");
                return Ok(true);
            }
            (true, OnConflict::Fail) => {
                return Err(Failure::Other(format!("{object}: already installed on the edge (on_conflict = fail)")));
            }
        }
        Ok(false)
    }
}

/// How long an edge the prober found offline is given to answer before the target fails.
const QUICK_CHECK: Duration = Duration::from_secs(5);

/// eKuiper 2.4 (NeuronEX 3.9) refuses to download from private addresses unless told to: the
/// reason then says what to change on either side.
fn private_net_hint(failure: Failure) -> Failure {
    let text = match &failure {
        Failure::Edge(err) if err.is_private_download_refused() => err.to_string(),
        _ => return failure,
    };
    Failure::Other(format!(
        "{text}; NeuronEX 3.9 and later (eKuiper 2.4+) refuse downloads from private addresses: set \
         `basic.enablePrivateNet: true` in the gateway's eKuiper configuration, or give edgefleet a public \
         download address (`public_url`)"
    ))
}

/// eKuiper refuses to replace a rule (2.2+) or stream (2.3+) with a `version` that is not greater
/// than the stored one, equal included. The same version means the edge already has what is
/// sent: the object is unchanged, noted as skipped. A greater stored version fails the target
/// with both versions named. Any other error passes through.
fn same_version(step: &Steps<'_>, object: &str, err: EdgeError) -> Result<bool, Failure> {
    match err.version_clash() {
        Some(clash) if clash.same() => {
            step.note(
                object,
                "unchanged",
                &format!("the edge already has version {} (eKuiper keeps it)", clash.stored),
            );
            Ok(true)
        }
        Some(clash) => Err(Failure::Other(format!(
            "{} {}: the edge has version ({}) and eKuiper replaces it only with a greater one; this template has ({})",
            err.step, err.object, clash.stored, clash.sent
        ))),
        None => Err(err.into()),
    }
}

/// One try at the version, bounded by `QUICK_CHECK`: an edge the prober found offline that
/// still does not answer fails within seconds (`offline since ...`) instead of spending the
/// delivery's retries; one that answers anything is back, and gets the usual version gate.
async fn quick_check(edge: &Edge<'_>, health: &EdgeHealth, step: &Steps<'_>) -> Result<String, Failure> {
    step.with(|p| p.step = "version gate".into());
    let started = Instant::now();
    let answer = match tokio::time::timeout(QUICK_CHECK, edge.version()).await {
        Ok(answer) => answer,
        Err(_) => Err(EdgeError::timeout("read", "version", QUICK_CHECK)),
    };
    match answer {
        Ok(version) => {
            step.with(|p| p.tries += 1);
            Ok(version)
        }
        Err(err) if err.failure == edge_client::Failure::Edge => {
            Ok(step.call("version gate", || edge.version()).await?)
        }
        Err(err) => {
            step.with(|p| p.tries += 1);
            let err = err.with_tries(1, started.elapsed());
            let since = health.since.or(health.probed_at).map(domain::edge::utc_text);
            let since = since.map(|at| format!(" since {at}")).unwrap_or_default();
            Err(Failure::Other(format!("offline{since}; checked again now: {err}; nothing was sent")))
        }
    }
}

/// Calls with retries and keeps the target's record.
pub(super) struct Steps<'a> {
    progress: &'a Arc<Mutex<Progress>>,
    options: &'a DeliveryOptions,
    metrics: &'a Metrics,
    slot: &'a super::slots::TargetSlot,
}

impl Steps<'_> {
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Progress) -> R) -> R {
        f(&mut self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Runs `call`, retrying transient failures up to `options.retries` times with backoff.
    pub(super) async fn call<T, F, Fut>(&self, step: &str, call: F) -> Result<T, EdgeError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, EdgeError>>,
    {
        self.with(|p| p.step = step.to_owned());
        let started = Instant::now();
        let mut retry = 0;
        loop {
            self.with(|p| p.tries += 1);
            let began = Instant::now();
            let answer = self.slot.answer(std::pin::pin!(call())).await;
            let kind = crate::metrics::step_kind(step);
            self.metrics.edge_call_seconds.observe(format!("step=\"{kind}\""), began.elapsed());
            match answer {
                Err(err) if err.is_transient() && retry < self.options.retries => {
                    retry += 1;
                    Metrics::inc(&self.metrics.edge_retries);
                    let jitter: f64 = rand::thread_rng().r#gen();
                    // Sleeping is not working: the slot goes to the next target meanwhile.
                    let _waiting = self.slot.wait();
                    tokio::time::sleep(DeliveryOptions::backoff(retry, jitter)).await;
                }
                Err(err) => return Err(err.with_tries(retry + 1, started.elapsed())),
                other => return other,
            }
        }
    }

    pub(super) fn note(&self, object: &str, action: &'static str, detail: &str) {
        self.with(|p| p.items.push(Item { object: object.to_owned(), action, detail: detail.to_owned() }));
    }

    fn set_version(&self, version: &str) {
        self.with(|p| p.version = Some(version.to_owned()));
    }

    fn all_items_skipped(&self) -> bool {
        self.with(|p| p.items.iter().all(|i| matches!(i.action, "skipped" | "unchanged")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canceled_target_says_what_may_have_been_written() {
        let cases = [
            ("version gate", 0, "canceled during version gate; nothing was written"),
            ("create rule r1", 0, "canceled during create rule r1; that object may be half-written"),
            (
                "apply stream s, rule r1 together",
                0,
                "canceled during apply stream s, rule r1 together; those objects may be written or half-written",
            ),
            (
                "create rule r2",
                1,
                "canceled during create rule r2 after 1 objects were applied; the current one may be half-written",
            ),
        ];
        for (step, applied, expected) in cases {
            let items =
                (0..applied).map(|_| Item { object: "rule r1".into(), action: "created", detail: String::new() });
            let progress = Progress { step: step.into(), items: items.collect(), ..Progress::default() };
            assert_eq!(canceled_reason(&progress), expected);
        }
    }
}
