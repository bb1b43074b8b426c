//! Rollouts in the engine: what a runner does when a wave is done (open the next, or pause at a
//! manual gate), the abort rule after each result, an abort's rollback, and schedules coming due.
//! Every step is a conditional change in the store, so replicas racing to take it take it once,
//! and a restarted server finds the rollout where it was.

use std::sync::Arc;

use api_types::RolloutEvent;
use domain::access::Outcome;
use domain::audit::AuditAction;
use domain::delivery::{Counts, DeliveryMode};
use domain::rollout::{OnAbort, Rollout};
use serde_json::{Value, json};
use store::{AuditEntry, Delivery};

use super::derive::derived_delivery;
use super::hub::DeliveryEvent;
use super::{Engine, ReplicaEvent};

/// Who an engine-made change is audited as.
pub const ROLLOUT_ACTOR: &str = "edgefleet (rollout)";

/// What a runner with nothing in flight does next.
pub(super) enum Between {
    /// Claim targets below `below`: a new wave opened (here or on another replica).
    Claim { wave: i64, below: i64 },
    /// Nothing to claim now: the delivery ends, is paused, or waits for targets held elsewhere.
    Stop,
}

impl Engine {
    /// A runner has nothing in flight and claimed nothing at wave `wave`: if the wave is done and
    /// the abort rule holds, open the next wave (auto gate) or pause (manual gate).
    pub(super) async fn between_waves(&self, delivery_id: &str, wave: i64) -> anyhow::Result<Between> {
        let delivery = self.store.delivery_by_id(delivery_id).await?;
        let Some(rollout) = &delivery.rollout else {
            return Ok(Between::Stop);
        };
        if delivery.state != domain::delivery::DeliveryState::Running || delivery.abort_reason.is_some() {
            return Ok(Between::Stop);
        }
        if delivery.wave != wave {
            return Ok(Between::Claim { wave: delivery.wave, below: delivery.claim_limit() });
        }
        if self.store.unfinished_below(delivery_id, delivery.claim_limit()).await? > 0 || !delivery.has_next_wave() {
            return Ok(Between::Stop);
        }
        // The last check before the next wave opens uses the stored counts, so results written
        // by other replicas count too: no target of the next wave starts past a broken rule.
        let counts = self.store.delivery_counts(delivery_id).await?;
        if self.check_abort(&delivery, rollout, &counts, wave).await? {
            return Ok(Between::Stop);
        }
        let waves = delivery.wave_ends.len() as u32;
        let details = json!({"wave": wave + 1, "waves": waves, "counts": counts, "gate": rollout.gate});
        let entry = system_entry(&self.store, &delivery, AuditAction::DeliveryWave, details).await;
        let finished = RolloutEvent::WaveFinished { wave: wave as u32 + 1, waves, counts };
        match rollout.gate {
            domain::rollout::Gate::Auto => {
                if !self.store.next_wave(delivery_id, wave, &entry).await? {
                    let now = self.store.delivery_by_id(delivery_id).await?;
                    return Ok(if now.state == domain::delivery::DeliveryState::Running && now.wave != wave {
                        Between::Claim { wave: now.wave, below: now.claim_limit() }
                    } else {
                        Between::Stop
                    });
                }
                self.announce(delivery_id, finished).await;
                self.announce(delivery_id, RolloutEvent::WaveStarted { wave: wave as u32 + 2, waves }).await;
                let below = delivery.wave_ends.get(wave as usize + 1).map_or(i64::MAX, |end| *end as i64);
                Ok(Between::Claim { wave: wave + 1, below })
            }
            domain::rollout::Gate::Manual => {
                if self.store.pause_delivery(delivery_id, Some(wave), Some(&entry)).await? {
                    self.announce(delivery_id, finished).await;
                    let reason = format!("wave {} of {waves} is done; resume to start wave {}", wave + 1, wave + 2);
                    let paused = RolloutEvent::Paused { wave: wave as u32 + 1, by: "gate".into(), reason };
                    self.announce(delivery_id, paused).await;
                }
                Ok(Between::Stop)
            }
        }
    }

    /// Aborts the rollout when `counts` break its rule; `true` when it is (now) aborted.
    pub(super) async fn check_abort(
        &self,
        delivery: &Delivery,
        rollout: &Rollout,
        counts: &Counts,
        wave: i64,
    ) -> anyhow::Result<bool> {
        let Some(rule) = &rollout.abort else {
            return Ok(false);
        };
        let Some(rate) = rule.tripped(counts) else {
            return Ok(false);
        };
        let reason = rule.reason(wave as usize + 1, rate);
        let entry = system_entry(
            &self.store,
            delivery,
            AuditAction::DeliveryAbort,
            json!({"reason": reason, "wave": wave + 1, "failed": counts.failed,
                   "results": counts.succeeded + counts.failed + counts.skipped}),
        )
        .await;
        if self.store.abort_delivery(&delivery.id, &reason, &entry).await?.is_some() {
            tracing::warn!(delivery.id = %delivery.id, %reason, "rollout aborted by its rule");
            let event = RolloutEvent::Aborted { wave: wave as u32 + 1, reason, by: "abort rule".into() };
            self.announce(&delivery.id, event).await;
        }
        Ok(true)
    }

    /// An aborted rollout with `on_abort: rollback` starts a rollback of every target it changed
    /// (once: the store refuses a second), before it is closed.
    pub(super) async fn roll_back_aborted(self: &Arc<Self>, delivery: &Delivery) -> anyhow::Result<()> {
        let wants = delivery.rollout.as_ref().is_some_and(|r| r.on_abort == OnAbort::Rollback);
        if !wants || delivery.abort_reason.is_none() || delivery.rollback_id.is_some() {
            return Ok(());
        }
        let edge_ids: Vec<String> =
            self.store.targets_with_snapshots(&delivery.id).await?.into_iter().map(|(edge, _)| edge).collect();
        if edge_ids.is_empty() {
            tracing::info!(delivery.id = %delivery.id, "aborted before any target wrote; nothing to roll back");
            return Ok(());
        }
        let targets = self.store.targets_by_ids(&delivery.project_id, &edge_ids).await?;
        let mut new = derived_delivery(
            delivery,
            DeliveryMode::Rollback,
            delivery.options.clone(),
            None,
            Some(delivery.id.clone()),
            false,
            &delivery.created_by,
        );
        new.first_rollback_only = true;
        let details = json!({"rollback_of": delivery.id, "targets": targets.len(), "reason": delivery.abort_reason});
        let mut entry = system_entry(&self.store, delivery, AuditAction::DeliveryRollback, details).await;
        entry.resource_id = new.id.clone();
        match self.store.create_delivery(&new, &targets, &entry).await {
            Ok(rollback) => {
                tracing::info!(delivery.id = %delivery.id, rollback.id = %rollback.id, "rolling back an aborted rollout");
                self.start(&rollback.id);
                Ok(())
            }
            Err(store::StoreError::Conflict { clash: store::Clash::AlreadyRolledBack, .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Tells this replica's watchers and the other replicas about a rollout event.
    pub async fn announce(&self, delivery_id: &str, event: RolloutEvent) {
        self.hub.publish(delivery_id, DeliveryEvent::Rollout { rollout: event.clone() });
        if self.shared() {
            self.tell_replicas(delivery_id, ReplicaEvent::Rollout { event }).await;
        }
    }

    /// Starts scheduled deliveries whose time came.
    pub(super) async fn start_due(self: &Arc<Self>) {
        match self.store.start_due(self.clock.now_ms()).await {
            Ok(ids) => {
                for id in ids {
                    tracing::info!(delivery.id = %id, "scheduled delivery starts");
                    if let Ok(delivery) = self.store.delivery_by_id(&id).await
                        && delivery.rollout.is_some()
                    {
                        let (wave, waves) = delivery.shown_waves();
                        self.announce(&id, RolloutEvent::WaveStarted { wave, waves }).await;
                    }
                    self.start(&id);
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot look for scheduled deliveries"),
        }
    }
}

/// An audit record of something the engine did on its own, in the delivery's project.
pub(super) async fn system_entry(
    store: &store::Store,
    delivery: &Delivery,
    action: AuditAction,
    details: Value,
) -> AuditEntry {
    let scope = store.project_scope(&delivery.project_id).await.ok();
    AuditEntry {
        actor_id: String::new(),
        actor_name: ROLLOUT_ACTOR.into(),
        org_id: scope.as_ref().map(|s| s.org_id.clone()).unwrap_or_default(),
        org_name: scope.as_ref().map(|s| s.org_name.clone()).unwrap_or_default(),
        project_id: delivery.project_id.clone(),
        project_name: scope.as_ref().map(|s| s.project_name.clone()).unwrap_or_default(),
        action,
        resource_type: "delivery".into(),
        resource_id: delivery.id.clone(),
        resource_name: delivery.template_name.clone(),
        outcome: Outcome::Success,
        details,
    }
}
