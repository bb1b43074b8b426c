//! Periodic probes: every edge service's version and whether it answers.

use domain::edge::EdgeStatus;
use futures::StreamExt;
use store::{ProbeResult, ProbeTarget};

use crate::AppState;
use crate::metrics::Metrics;

const PAGE: i64 = 500;
/// Probe results recorded per transaction.
const PROBES_PER_WRITE: usize = 16;
/// Probes in flight at once in this process, whatever started them (rounds, fresh imports, the
/// probe button): a 20,000-row import is probed at the pace of a round, not all at once.
pub const CONCURRENCY: usize = 64;

/// One probe round per interval across all replicas: the replica holding the `prober` lease runs it.
pub async fn run_forever(state: AppState) {
    let lease_ms = state.config.probe_interval.as_millis() as i64 * 2;
    loop {
        match state.store.hold_singleton("prober", state.engine.worker_id(), lease_ms).await {
            Ok(true) => {
                remove_abandoned_imports(&state).await;
                if let Err(err) = probe_all(&state).await {
                    tracing::warn!(error = %err, "edge probe round failed");
                }
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "cannot take the prober lease"),
        }
        tokio::time::sleep(state.config.probe_interval).await;
    }
}

/// Imports whose process died half-way are removed whole, as if they had failed.
async fn remove_abandoned_imports(state: &AppState) {
    let stale_before = store::now_ms() - store::IMPORT_ABANDONED_AFTER_MS;
    match state.store.remove_abandoned_imports(stale_before).await {
        Ok(0) => {}
        Ok(imports) => tracing::warn!(imports, "removed the services of imports that never finished"),
        Err(err) => tracing::warn!(error = %err, "cannot remove the services of imports that never finished"),
    }
}

async fn probe_all(state: &AppState) -> store::Result<()> {
    let mut after = String::new();
    loop {
        let page = state.store.probe_targets(&after, PAGE).await?;
        let Some(last) = page.last() else {
            tidy(state).await;
            return Ok(());
        };
        after = last.id.clone();
        probe_page(state, page).await?;
    }
}

/// Store housekeeping after registry writes, between probe rounds where it disturbs nothing.
pub async fn tidy(state: &AppState) {
    let started = std::time::Instant::now();
    match state.store.tidy().await {
        Ok(true) => tracing::info!(ms = started.elapsed().as_millis() as u64, "tidied the registry indexes"),
        Ok(false) => {}
        Err(err) => tracing::warn!(error = %err, "cannot tidy the registry indexes"),
    }
}

/// Probes a page of edges concurrently and records results in small batches as they come, so one
/// gateway that never answers does not hold back the others' status.
pub async fn probe_page(state: &AppState, page: Vec<ProbeTarget>) -> store::Result<()> {
    let mut results = futures::stream::iter(page)
        .map(|target| async move { (target.id.clone(), probe(state, &target).await) })
        .buffer_unordered(CONCURRENCY)
        // A transaction holds SQLite's one writer: a first probe sets each version, which rewrites
        // the service in the search index, and 64 of them held it for up to 0.47 s.
        .ready_chunks(PROBES_PER_WRITE);
    while let Some(batch) = results.next().await {
        state.store.record_probes(&batch).await?;
    }
    Ok(())
}
/// Probes one edge now and records the result.
pub async fn probe_and_record(state: &AppState, target: &ProbeTarget) -> store::Result<ProbeResult> {
    let result = probe(state, target).await;
    state.store.record_probe(&target.id, &result).await?;
    Ok(result)
}

pub async fn probe(state: &AppState, target: &ProbeTarget) -> ProbeResult {
    let started_at = store::now_ms();
    let offline = |reason: String| ProbeResult { version: None, status: EdgeStatus::Offline, reason, started_at };
    let Ok(_slot) = state.engine.probe_slots.acquire().await else {
        return offline("the server is shutting down".into());
    };
    Metrics::inc(&state.metrics.probes);
    let address = super::EdgeAddress {
        project_id: &target.project_id,
        edge_id: &target.id,
        endpoint: &target.endpoint,
        auth: &target.auth,
        reach: &target.reach,
    };
    let edge_target = match state.engine.edge_target(address, "probe").await {
        Ok(edge_target) => edge_target,
        Err(reason) => return offline(reason),
    };
    match state.engine.client().edge(&edge_target).version().await {
        Ok(version) => {
            ProbeResult { version: Some(version), status: EdgeStatus::Online, reason: String::new(), started_at }
        }
        Err(err) => {
            Metrics::inc(&state.metrics.probes_failed);
            offline(err.to_string())
        }
    }
}
