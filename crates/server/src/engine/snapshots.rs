//! Plans, snapshots, restore and rollback on one target: what a `plan` reads and records, what an
//! `apply` records before its first write (and puts back when it fails), and what a `rollback`
//! checks and restores. The rest of a target's work is in `target.rs`.

use std::time::Duration;

use domain::compat;
use domain::delivery::{DeliveryMode, RestoreOutcome, TargetStatus};
use domain::plan::{self as planning, ChangeAction, ObjectRef, SnapshotEntry};
use domain::version::Version;
use edge_client::{Edge, human_duration};
use serde_json::Value;
use store::ClaimedTarget;

use super::target::{Failure, RollbackSource, Runner, Steps};

impl Runner<'_> {
    /// A stored snapshot (or plan reading), opened, as entries.
    fn entries(&self, stored: &Value, what: &str) -> Result<Vec<SnapshotEntry>, Failure> {
        let unreadable = |e: String| Failure::Other(format!("{what} is unreadable: {e}"));
        let sealed = stored.as_str().ok_or_else(|| unreadable("not sealed".into()))?;
        let plain = self.secrets.open(sealed).map_err(unreadable)?;
        serde_json::from_str(&plain).map_err(|e| unreadable(e.to_string()))
    }

    /// Records what the target holds before the first write, durably (a resumed target keeps the
    /// snapshot its first attempt recorded: what it holds now may be half-written).
    pub(super) async fn snapshot(
        &self,
        edge: &Edge<'_>,
        target: &ClaimedTarget,
        objects: &[ObjectRef],
        step: &Steps<'_>,
    ) -> Result<(), Failure> {
        let snapshot: Vec<SnapshotEntry> = match &target.snapshot {
            Some(recorded) => self.entries(recorded, "the recorded snapshot")?,
            None => {
                let taken = step.call("snapshot", || edge.take_snapshot(objects)).await?;
                self.record(target, &taken).await?;
                taken
            }
        };
        step.with(|p| p.snapshot = Some(snapshot));
        Ok(())
    }

    /// Stores what a target read (a snapshot, or what a plan read), fenced by the target's claim,
    /// sealed: it holds the gateway's settings, passwords included, in clear.
    pub(super) async fn record(&self, target: &ClaimedTarget, read: &[SnapshotEntry]) -> Result<(), Failure> {
        let plain = serde_json::to_string(read).map_err(|e| Failure::Other(e.to_string()))?;
        let json = Value::String(self.secrets.seal(&plain));
        let (reply, recorded) = tokio::sync::oneshot::channel();
        let row = (target.delivery_id.clone(), target.edge_id.clone(), target.attempt, json);
        let not_recorded = |e: String| Failure::Other(format!("snapshot: not recorded: {e}; nothing was sent"));
        self.snapshots
            .send(super::SnapshotWrite { row, reply })
            .await
            .map_err(|_| not_recorded("the delivery is ending".into()))?;
        let recorded = recorded.await.map_err(|_| not_recorded("the writer stopped".into()))?.map_err(not_recorded)?;
        if recorded {
            Ok(())
        } else {
            Err(Failure::Other("snapshot: another worker took the target over; nothing was sent".into()))
        }
    }

    /// Applying a plan: the target's objects must be as the plan read them, or nothing is written.
    /// Answers what it read.
    pub(super) async fn unchanged_since_plan(
        &self,
        edge: &Edge<'_>,
        target: &ClaimedTarget,
        plan_id: &str,
        objects: &[ObjectRef],
        step: &Steps<'_>,
    ) -> Result<Vec<SnapshotEntry>, Failure> {
        let read =
            self.store.target_snapshot(plan_id, &target.edge_id).await.map_err(|e| Failure::Other(e.to_string()))?;
        let Some(read) = read else {
            return Err(Failure::Other(
                "changed_since_plan: the plan could not read this gateway, so nothing it holds was checked; \
                 nothing was written (apply with force to write anyway)"
                    .into(),
            ));
        };
        let planned = self.entries(&read, "the plan's reading")?;
        let now = step.call("check against the plan", || edge.read_objects(objects)).await?;
        let now = SnapshotEntry::pair(objects.iter().cloned(), now);
        let changed: Vec<String> =
            planning::differing(&now, &planned).iter().map(|entry| entry.object.to_string()).collect();
        if changed.is_empty() {
            return Ok(now);
        }
        Err(Failure::Other(format!(
            "changed_since_plan: {} changed since the plan read it; nothing was written (apply with force to write anyway)",
            changed.join(", ")
        )))
    }

    /// Puts the target back as the rolled-back delivery's snapshot holds it, after checking that
    /// the target still holds what that delivery left (unless forced); the rollback's own snapshot
    /// is recorded first, so it can be rolled back in turn and is restored if it fails half-way.
    pub(super) async fn roll_back(
        &self,
        edge: &Edge<'_>,
        target: &ClaimedTarget,
        desired: &[(ObjectRef, Value)],
        step: &Steps<'_>,
    ) -> Result<TargetStatus, Failure> {
        let Some(source) = &self.plan.rollback else {
            return Err(Failure::Other("a rollback without the delivery it rolls back".into()));
        };
        let store_error = |e: store::StoreError| Failure::Other(e.to_string());
        let original = self.store.get_target(&source.of, &target.edge_id).await.map_err(store_error)?;
        let Some(snapshot) = original.as_ref().and_then(|t| t.snapshot.as_ref()) else {
            return Err(Failure::Other(format!(
                "delivery {} recorded no snapshot of this gateway; nothing to roll back",
                source.of
            )));
        };
        let snapshot = self.entries(snapshot, "the delivery's snapshot")?;
        let objects: Vec<ObjectRef> = snapshot.iter().map(|e| e.object.clone()).collect();
        let source_succeeded = original.as_ref().is_some_and(|t| t.status == TargetStatus::Succeeded);
        if !self.plan.force && source_succeeded {
            let changed = self.changed_since(edge, target, source, desired, &objects, step).await?;
            if !changed.is_empty() {
                return Err(Failure::Other(format!(
                    "changed_since_delivery: {} changed since delivery {}; nothing was written (roll back with force to put it back anyway)",
                    changed.join(", "),
                    source.of
                )));
            }
        }
        self.snapshot(edge, target, &objects, step).await?;
        step.with(|p| p.step = "roll back".into());
        step.with(|p| p.delivered = Some(rolled_back_objects(&snapshot, desired)));
        match edge.restore(&snapshot).await {
            Ok(0) => step.note("delivery", "unchanged", "already as the snapshot holds it"),
            Ok(count) => step.note(
                "delivery",
                "rolled back",
                &format!("{count} objects put back as delivery {} found them", source.of),
            ),
            Err(err) => return Err(Failure::Other(format!("roll back: {err}"))),
        }
        Ok(TargetStatus::Succeeded)
    }

    /// The objects that no longer hold what the rolled-back delivery left: an apply left what it
    /// sent; a rollback left the snapshot it put back.
    async fn changed_since(
        &self,
        edge: &Edge<'_>,
        target: &ClaimedTarget,
        source: &RollbackSource,
        desired: &[(ObjectRef, Value)],
        objects: &[ObjectRef],
        step: &Steps<'_>,
    ) -> Result<Vec<String>, Failure> {
        match (source.mode, &source.rollback_of) {
            (DeliveryMode::Rollback, Some(earlier)) => {
                let left = self
                    .store
                    .target_snapshot(earlier, &target.edge_id)
                    .await
                    .map_err(|e| Failure::Other(e.to_string()))?;
                let left = left.map(|l| self.entries(&l, "the earlier snapshot")).transpose()?.unwrap_or_default();
                let now = step.call("check against the delivery", || edge.take_snapshot(objects)).await?;
                Ok(planning::differing(&left, &now).iter().map(|entry| entry.object.to_string()).collect())
            }
            _ => {
                let refs: Vec<ObjectRef> = desired.iter().map(|(object, _)| object.clone()).collect();
                let now = step.call("check against the delivery", || edge.read_objects(&refs)).await?;
                Ok(desired
                    .iter()
                    .zip(&now)
                    .filter(|((_, sent), live)| live.as_ref() != Some(sent))
                    .map(|((object, _), _)| object.to_string())
                    .collect())
            }
        }
    }

    /// Puts a failed target back as its snapshot holds it, within one more `timeout`: what the
    /// target reports (restored or not) and the words its reason gains; `None` when nothing
    /// differed from the snapshot (the failure came before anything was written).
    pub(super) async fn restore(
        &self,
        target: &ClaimedTarget,
        snapshot: &[SnapshotEntry],
        timeout: Duration,
    ) -> Option<(RestoreOutcome, String)> {
        let edge_target = match self.edge_target(target).await {
            Ok(edge_target) => edge_target,
            Err(Failure::Other(reason) | Failure::Edge(edge_client::EdgeError { message: reason, .. })) => {
                return Some((RestoreOutcome::RestoreFailed, format!("restore failed: {reason}")));
            }
        };
        let edge = self.client.edge(&edge_target);
        let failed = |why: String| {
            Some((
                RestoreOutcome::RestoreFailed,
                format!("restore failed: {why}; the edge may hold part of the delivery"),
            ))
        };
        match tokio::time::timeout(timeout, edge.restore(snapshot)).await {
            Ok(Ok(0)) => None,
            Ok(Ok(objects)) => {
                let objects = if objects == 1 { "1 object".to_owned() } else { format!("{objects} objects") };
                Some((RestoreOutcome::Restored, format!("restored as it was ({objects} put back)")))
            }
            Ok(Err(err)) => failed(err.to_string()),
            Err(_) => failed(format!("not done within {}", human_duration(timeout.as_millis() as u64))),
        }
    }

    /// Reads every object the delivery would touch and records what applying would change;
    /// writes nothing.
    pub(super) async fn plan_target(
        &self,
        edge: &Edge<'_>,
        target: &ClaimedTarget,
        desired: &[(ObjectRef, Value)],
        objects: &[ObjectRef],
        step: &Steps<'_>,
    ) -> Result<TargetStatus, Failure> {
        let live = step.call("read back", || edge.read_objects(objects)).await?;
        // What was read is kept: applying the plan checks that the gateway still holds it.
        let read = SnapshotEntry::pair(objects.iter().cloned(), live);
        self.record(target, &read).await?;
        let on_conflict = self.plan.options.on_conflict;
        let neuronex = step.with(|p| p.version.as_deref().and_then(Version::parse));
        let changes = desired
            .iter()
            .zip(&read)
            .map(|((object, wanted), entry)| {
                let found = &entry.live;
                let change = planning::compare(object, wanted, found.as_ref(), on_conflict);
                // A change eKuiper would refuse for its version is not an update.
                let refusal = match (change.action, found, neuronex) {
                    (ChangeAction::Update | ChangeAction::Conflict, Some(found), Some(neuronex)) => {
                        compat::version_refusal(object, wanted, found, neuronex)
                    }
                    _ => None,
                };
                match refusal {
                    Some(reason) => planning::incompatible(object, reason),
                    None => change,
                }
            })
            .collect();
        step.with(|p| p.changes = Some(changes));
        Ok(TargetStatus::Succeeded)
    }
}

/// What a rollback leaves: the snapshot's objects as they were, and every other object of the
/// rolled-back delivery gone (it did not exist before it).
fn rolled_back_objects(snapshot: &[SnapshotEntry], desired: &[(ObjectRef, Value)]) -> Vec<(ObjectRef, Option<Value>)> {
    let mut objects = domain::drift::restored_objects(snapshot);
    for (object, _) in desired {
        if !objects.iter().any(|(restored, _)| restored == object) {
            objects.push((object.clone(), None));
        }
    }
    objects
}
