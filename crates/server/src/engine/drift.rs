//! Drift checks: every edge's last delivered objects read back and compared in the plan's normal
//! form, and what the edge holds listed for the inventory. One round per `--drift-interval-secs`
//! across all replicas (the replica holding the `drift` lease runs it), at most `CONCURRENCY`
//! edges at a time in this process, so a fleet of any size is read at a steady pace.

use std::time::Instant;

use domain::drift::{InventoryKind, drift_patch};
use domain::edge::EdgeStatus;
use domain::plan::ObjectRef;
use domain::secrets::mask_credentials;
use edge_client::{Edge, EdgeError, StreamKind};
use futures::StreamExt;
use serde_json::Value;
use store::{CheckResult, CheckTarget, Finding, ObjectFinding};

use crate::AppState;
use crate::metrics::Metrics;

/// Edges checked at once in this process, whatever started the check.
pub const CONCURRENCY: usize = 32;
const PAGE: i64 = 500;

pub async fn run_forever(state: AppState) {
    let interval = state.config.drift_interval;
    let lease_ms = interval.as_millis() as i64 * 2;
    loop {
        tokio::time::sleep(interval).await;
        match state.store.hold_singleton("drift", state.engine.worker_id(), lease_ms).await {
            Ok(true) => {
                if let Err(err) = check_all(&state).await {
                    tracing::warn!(error = %err, "drift check round failed");
                }
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "cannot take the drift lease"),
        }
    }
}

/// One round over every edge of every project; edges the prober found offline are not called
/// (they are `unknown` until they answer).
pub async fn check_all(state: &AppState) -> store::Result<()> {
    let started = Instant::now();
    let mut after = String::new();
    loop {
        let page = state.store.check_targets(&after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id.clone();
        let mut results = futures::stream::iter(page)
            .map(|target| async move { check(state, &target, Reach::SkipOffline).await })
            .buffer_unordered(CONCURRENCY)
            .ready_chunks(64);
        while let Some(batch) = results.next().await {
            // One batch that cannot be written does not end the round for the others.
            if let Err(err) = state.store.record_checks(&batch).await {
                tracing::warn!(error = %err, edges = batch.len(), "cannot record drift checks");
            }
        }
    }
    Metrics::inc(&state.metrics.drift_rounds);
    state.metrics.set_last_drift_round(started.elapsed());
    Ok(())
}

/// Checks one edge now (whatever the prober found) and records the finding.
pub async fn check_and_record(state: &AppState, target: &CheckTarget) -> store::Result<()> {
    let result = check(state, target, Reach::Always).await;
    state.store.record_checks(&[result]).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// A round does not wait on edges the prober found offline.
    SkipOffline,
    Always,
}

async fn check(state: &AppState, target: &CheckTarget, reach: Reach) -> CheckResult {
    let checked_at = store::now_ms();
    let finding = match read(state, target, reach).await {
        Ok(finding) => finding,
        Err(reason) => {
            Metrics::inc(&state.metrics.drift_checks_failed);
            Finding::Unreadable(reason)
        }
    };
    CheckResult { edge_id: target.id.clone(), checked_at, finding }
}

async fn read(state: &AppState, target: &CheckTarget, reach: Reach) -> Result<Finding, String> {
    if reach == Reach::SkipOffline && target.status == EdgeStatus::Offline {
        return Err("not checked: the prober found it offline".into());
    }
    let expected = state.store.expected_objects(&target.id).await.map_err(|e| e.to_string())?;
    let mut delivered = Vec::with_capacity(expected.len());
    for row in &expected {
        let object: ObjectRef =
            serde_json::from_str(&row.object).map_err(|e| format!("a kept object is unreadable: {e}"))?;
        let plain = state.secrets.open(&row.expected).map_err(|e| format!("a kept object is unreadable: {e}"))?;
        let value: Value = serde_json::from_str(&plain).map_err(|e| format!("a kept object is unreadable: {e}"))?;
        delivered.push((object, value, row));
    }
    let Ok(_slot) = state.engine.drift_slots.acquire().await else {
        return Err("the server is shutting down".into());
    };
    Metrics::inc(&state.metrics.drift_checks);
    let address = super::EdgeAddress {
        project_id: &target.project_id,
        edge_id: &target.id,
        endpoint: &target.endpoint,
        auth: &target.auth,
        reach: &target.reach,
    };
    let edge_target = state.engine.edge_target(address, "drift").await?;
    let edge = state.engine.client().edge(&edge_target);
    let refs: Vec<ObjectRef> = delivered.iter().map(|(object, ..)| object.clone()).collect();
    let live = edge.read_objects(&refs).await.map_err(|e| e.to_string())?;
    let objects = delivered
        .iter()
        .zip(&live)
        .map(|((_, expected, row), live)| ObjectFinding {
            object: row.object.clone(),
            delivery_id: row.delivery_id.clone(),
            drifted: live.as_ref() != Some(expected),
            live: live.as_ref().map(mask_credentials).unwrap_or(Value::Null).to_string(),
            diff: Value::from(drift_patch(expected, live.as_ref())).to_string(),
        })
        .collect();
    let inventory = inventory(&edge).await.map_err(|e| e.to_string())?;
    Ok(Finding::Read { objects, inventory })
}

/// Every rule, stream, table, node and portable plugin the edge holds.
pub async fn inventory(edge: &Edge<'_>) -> Result<Vec<(InventoryKind, String)>, EdgeError> {
    let mut found = Vec::new();
    for (kind, stream_kind) in [(InventoryKind::Stream, StreamKind::Stream), (InventoryKind::Table, StreamKind::Table)]
    {
        found.extend(edge.list_streams(stream_kind).await?.into_iter().map(|name| (kind, name)));
    }
    let rules = edge.list_rules().await?;
    found.extend(rules.iter().filter_map(|r| Some((InventoryKind::Rule, r.get("id")?.as_str()?.to_owned()))));
    for node_type in [1, 2] {
        let nodes = edge.list_nodes(node_type).await?;
        found.extend(nodes.iter().filter_map(|n| Some((InventoryKind::Node, n.get("name")?.as_str()?.to_owned()))));
    }
    found.extend(edge.list_portables().await?.into_iter().map(|plugin| (InventoryKind::Plugin, plugin.name)));
    Ok(found)
}
