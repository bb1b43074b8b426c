//! Store rows into what the API answers (`api_types`). Rows are never serialized as they are: a
//! column added to a table reaches clients only when it is added to its API type here.

use api_types as api;
use domain::delivery::{Counts, RestoreOutcome};
use domain::template::TemplateKind;
use serde_json::Value;

pub fn user(row: &store::User) -> api::User {
    api::User {
        id: row.id.clone(),
        username: row.username.clone(),
        is_system_admin: row.is_system_admin,
        disabled: row.disabled,
        language: row.language.clone(),
        created_at: row.created_at,
    }
}

pub fn org(row: &store::Org) -> api::Org {
    api::Org { id: row.id.clone(), name: row.name.clone(), created_at: row.created_at }
}

pub fn project(row: &store::Project) -> api::Project {
    api::Project { id: row.id.clone(), org_id: row.org_id.clone(), name: row.name.clone(), created_at: row.created_at }
}

pub fn member(row: &store::Member) -> api::Member {
    api::Member { user_id: row.user_id.clone(), username: row.username.clone(), role: row.role }
}

pub fn token(row: &store::TokenInfo) -> api::TokenInfo {
    api::TokenInfo {
        id: row.id.clone(),
        name: row.name.clone(),
        kind: row.kind.clone(),
        expires_at: row.expires_at,
        created_at: row.created_at,
    }
}

pub fn edge(row: &store::EdgeService) -> api::EdgeService {
    api::EdgeService {
        id: row.id.clone(),
        project_id: row.project_id.clone(),
        name: row.name.clone(),
        endpoint: row.endpoint.clone(),
        description: row.description.clone(),
        tags: row.tags.clone(),
        version: row.version.clone(),
        status: row.status,
        status_reason: row.status_reason.clone(),
        probed_at: row.probed_at,
        status_since: row.status_since,
        config_state: row.config_state,
        config_checked_at: row.config_checked_at,
        config_reason: row.config_reason.clone(),
        auth: api::EdgeAuth { kind: row.auth.kind, username: row.auth.username.clone() },
        transport: row.reach.transport(),
        agent_id: row.reach.agent_id().map(str::to_owned),
        agent_credentials_issued: row.agent_credentials_issued,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

pub fn inventory_item(row: &store::InventoryItem) -> api::InventoryItem {
    api::InventoryItem { name: row.name.clone(), kind: row.kind, edges: row.edges, edge_ids: row.edge_ids.clone() }
}

pub fn template_summary(row: &store::Template) -> api::TemplateSummary {
    api::TemplateSummary {
        id: row.id.clone(),
        project_id: row.project_id.clone(),
        name: row.name.clone(),
        kind: row.kind,
        description: row.description.clone(),
        current_version: row.current_version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

pub fn template(row: &store::Template, content: Value, checked: Option<&domain::template::Checked>) -> api::Template {
    api::Template {
        id: row.id.clone(),
        project_id: row.project_id.clone(),
        name: row.name.clone(),
        kind: row.kind,
        description: row.description.clone(),
        current_version: row.current_version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        content,
        parameters: checked.map(|c| c.parameters.clone()).unwrap_or_default(),
        secret_parameters: checked
            .map(|c| domain::params::secret_names(&c.normalized).into_iter().collect())
            .unwrap_or_default(),
        warnings: checked.map(|c| c.warnings.clone()).unwrap_or_default(),
    }
}

pub fn plugin(row: &store::Plugin) -> api::Plugin {
    api::Plugin {
        id: row.id.clone(),
        project_id: row.project_id.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        sha256: row.sha256.clone(),
        size: row.size,
        manifest: row.manifest.clone(),
        created_by: row.created_by.clone(),
        created_at: row.created_at,
    }
}

/// A delivery with its stored counts; secret parameter values are masked.
/// A delivery as the API shows it; `approvals` (with `now`, to say which still count) only where
/// one delivery is shown.
pub fn delivery(row: &store::Delivery, counts: &Counts, approvals: &[store::Approval], now: i64) -> api::Delivery {
    api::Delivery {
        id: row.id.clone(),
        project_id: row.project_id.clone(),
        kind: row.kind,
        template_id: row.template_id.clone(),
        template_name: row.template_name.clone(),
        template_version: row.template_version,
        template_kind: row.template_kind.map(TemplateKind::as_str).unwrap_or("").to_owned(),
        plugin_id: row.plugin_id.clone(),
        content_sha256: row.content_sha256.clone(),
        content_edited: row.content_edited,
        params: crate::secret_params::masked(&row.params),
        options: row.options.clone(),
        dry_run: row.dry_run,
        mode: row.mode,
        plan_id: row.plan_id.clone(),
        of: row.rollback_of.clone(),
        force: row.force,
        state: row.state,
        cancel_requested: row.cancel_requested,
        total: row.total,
        created_by: row.created_by.clone(),
        created_at: row.created_at,
        finished_at: row.finished_at,
        counts: *counts,
        rollout: row.rollout.clone(),
        wave: row.shown_waves().0,
        waves: row.shown_waves().1,
        wave_ends: row.wave_ends.clone(),
        start_at: row.start_at.map(domain::edge::utc_text),
        approvals_required: row.approvals_required,
        approvals: approvals
            .iter()
            .map(|a| api::Approval {
                user_id: a.user_id.clone(),
                username: a.username.clone(),
                at: a.at,
                valid: a.at > now - store::APPROVAL_LIFETIME_MS,
            })
            .collect(),
        abort_reason: row.abort_reason.clone(),
        rollback_id: row.rollback_id.clone(),
    }
}

pub fn target(row: &store::DeliveryTarget) -> api::DeliveryTarget {
    api::DeliveryTarget {
        edge_id: row.edge_id.clone(),
        name: row.name.clone(),
        endpoint: row.endpoint.clone(),
        version: row.version.clone(),
        tags: row.tags.clone(),
        status: row.status,
        reason: row.reason.clone(),
        failure_code: row.failure,
        items: row.items.clone(),
        attempts: row.attempts,
        tries: row.tries,
        started_at: row.started_at,
        finished_at: row.finished_at,
        result_seq: row.result_seq,
        restored: row.restore == Some(RestoreOutcome::Restored),
        restore_failed: (row.restore == Some(RestoreOutcome::RestoreFailed)).then(|| restore_failure(&row.reason)),
        wave: row.wave,
    }
}

/// The restore's own words at the end of a target's reason (`...; restore failed: <why>`).
fn restore_failure(reason: &str) -> String {
    reason.split_once("; restore failed: ").map_or(reason, |(_, why)| why).to_owned()
}

pub fn audit_event(row: &store::AuditEvent) -> api::AuditEvent {
    api::AuditEvent {
        id: row.id,
        at: row.at,
        actor_id: row.actor_id.clone(),
        actor_name: row.actor_name.clone(),
        org_id: row.org_id.clone(),
        org_name: row.org_name.clone(),
        project_id: row.project_id.clone(),
        project_name: row.project_name.clone(),
        action: row.action.clone(),
        resource_type: row.resource_type.clone(),
        resource_id: row.resource_id.clone(),
        resource_name: row.resource_name.clone(),
        outcome: row.outcome,
        details: row.details.clone(),
    }
}

/// A page of items in their API shape.
pub fn list<R, T>(rows: &[R], total: i64, view: impl Fn(&R) -> T) -> api::List<T> {
    api::List { items: rows.iter().map(view).collect(), total, total_estimated: false }
}

/// Items serialized per piece of a [`streamed_list`].
const STREAMED_ITEMS_PER_PIECE: usize = 1000;

/// All of `rows` as the JSON of [`list`] (`{"items":[...],"total":N}`), produced in pieces of
/// [`STREAMED_ITEMS_PER_PIECE`] items as the client reads them. The answer to a 100,000-service
/// import is tens of MiB of JSON: built whole, it and its API-shaped copy of every row sat beside
/// the rows themselves at the import's peak.
pub fn streamed_list<R, T>(
    rows: Vec<R>,
    view: fn(&R) -> T,
) -> impl futures::Stream<Item = Result<bytes::Bytes, serde_json::Error>> + Send + 'static
where
    R: Send + 'static,
    T: serde::Serialize + 'static,
{
    let total = rows.len();
    let mut next = 0;
    let mut ended = false;
    futures::stream::iter(std::iter::from_fn(move || {
        if ended {
            return None;
        }
        let mut piece = Vec::new();
        if next == 0 {
            piece.extend_from_slice(b"{\"items\":[");
        }
        let end = (next + STREAMED_ITEMS_PER_PIECE).min(total);
        for (k, row) in rows[next..end].iter().enumerate() {
            if next + k > 0 {
                piece.push(b',');
            }
            if let Err(err) = serde_json::to_writer(&mut piece, &view(row)) {
                ended = true;
                return Some(Err(err));
            }
        }
        next = end;
        if next == total {
            ended = true;
            piece.extend_from_slice(format!("],\"total\":{total}}}").as_bytes());
        }
        Some(Ok(bytes::Bytes::from(piece)))
    }))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    fn view(row: &u32) -> serde_json::Value {
        serde_json::json!({"n": row, "name": format!("edge-{row}")})
    }

    /// Streamed or whole, a list is the same bytes, at every size around the piece boundary.
    #[tokio::test]
    async fn a_streamed_list_is_the_list_whole() {
        let per_piece = super::STREAMED_ITEMS_PER_PIECE;
        for n in [0, 1, 2, per_piece - 1, per_piece, per_piece + 1, 3 * per_piece + 7] {
            let rows: Vec<u32> = (0..n as u32).collect();
            let whole = serde_json::to_vec(&super::list(&rows, n as i64, view)).expect("serializes");
            let pieces: Vec<_> = super::streamed_list(rows, view).collect().await;
            assert_eq!(pieces.len(), n.div_ceil(per_piece).max(1), "pieces for {n} rows");
            let streamed: Vec<u8> = pieces.into_iter().flat_map(|piece| piece.expect("serializes").to_vec()).collect();
            assert_eq!(String::from_utf8_lossy(&streamed), String::from_utf8_lossy(&whole), "{n} rows");
        }
    }
}
