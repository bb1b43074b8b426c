//! Deliveries made from other deliveries (applying a plan, a rollback, an abort's rollback) and
//! the targets of a new delivery.

use domain::delivery::{DeliveryMode, DeliveryState};
use serde_json::Value;
use store::{Delivery, NewDelivery};

/// A delivery made from another one: the same content and parameters, another mode; it starts at
/// once (no rollout, schedule or approvals of its own).
pub fn derived_delivery(
    source: &Delivery,
    mode: DeliveryMode,
    options: Value,
    plan_id: Option<String>,
    rollback_of: Option<String>,
    force: bool,
    created_by: &str,
) -> NewDelivery {
    NewDelivery {
        id: store::new_id(),
        project_id: source.project_id.clone(),
        kind: source.kind,
        template_id: source.template_id.clone(),
        template_name: source.template_name.clone(),
        template_version: source.template_version,
        template_kind: source.template_kind,
        plugin_id: source.plugin_id.clone(),
        content: source.content.clone(),
        content_sha256: source.content_sha256.clone(),
        content_edited: source.content_edited,
        params: source.params.clone(),
        options,
        dry_run: false,
        mode,
        plan_id,
        rollback_of,
        force,
        created_by: created_by.to_owned(),
        state: DeliveryState::Running,
        rollout: None,
        wave_ends: Vec::new(),
        start_at: None,
        approvals_required: 0,
        first_rollback_only: false,
    }
}
