//! Prometheus counters, gauges and histograms, rendered by hand in the text exposition format
//! (`promtool check metrics` checks the output in the tests). Labels are few and bounded: step
//! kinds, final statuses, failure codes, route templates; never object names or ids.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) for one edge call or one API request.
const CALL_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Bucket bounds (seconds) for a whole target, every call and retry included.
const TARGET_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// One histogram: cumulative counts are computed when rendered.
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is above every bound.
    buckets: Vec<u64>,
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, buckets: vec![0; bounds.len() + 1], sum_seconds: 0.0, count: 0 }
    }

    fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = self.bounds.iter().position(|bound| seconds <= *bound).unwrap_or(self.bounds.len());
        self.buckets[bucket] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Histograms by label set (`step="create"`), in a stable order.
pub struct Histograms {
    bounds: &'static [f64],
    by_labels: Mutex<BTreeMap<String, Histogram>>,
}

impl Histograms {
    fn new(bounds: &'static [f64]) -> Histograms {
        Histograms { bounds, by_labels: Mutex::default() }
    }

    pub fn observe(&self, labels: String, took: Duration) {
        let mut all = self.by_labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.entry(labels).or_insert_with(|| Histogram::new(self.bounds)).observe(took);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let all = self.by_labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (labels, histogram) in all.iter() {
            histogram.render(out, name, labels);
        }
    }
}

/// Counters by label set.
#[derive(Default)]
pub struct Counters {
    by_labels: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    pub fn inc(&self, labels: String) {
        *self.by_labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(labels).or_default() += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in self.by_labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// What the scrape reads from the store: the fleet's, not this process's.
pub struct FleetGauges {
    /// Edge services that no longer hold what was last delivered to them (-1: unknown).
    pub drifted_edges: i64,
    /// Deliveries by state (every state listed, 0 included).
    pub deliveries: Vec<(domain::delivery::DeliveryState, i64)>,
    /// Webhook calls still to be tried (-1: unknown).
    pub webhook_calls_pending: i64,
}

pub struct Metrics {
    pub deliveries_started: AtomicU64,
    pub deliveries_finished: AtomicU64,
    pub targets_succeeded: AtomicU64,
    pub targets_failed: AtomicU64,
    pub targets_skipped: AtomicU64,
    pub targets_in_flight: AtomicU64,
    /// Targets in flight whose edge has kept them waiting (they do not count against concurrency).
    pub targets_waiting: AtomicU64,
    pub edge_retries: AtomicU64,
    pub probes: AtomicU64,
    pub probes_failed: AtomicU64,
    pub sse_clients: AtomicU64,
    /// Times a live-event stream fell behind its channel and read the results from the store.
    pub sse_catch_ups: AtomicU64,
    pub drift_rounds: AtomicU64,
    pub drift_checks: AtomicU64,
    pub drift_checks_failed: AtomicU64,
    /// How long the last drift round took, in milliseconds.
    pub drift_last_round_ms: AtomicU64,
    /// `status="succeeded"`: each target from its start to its final state.
    pub target_seconds: Histograms,
    /// `step="create"`: each call to an edge (each try), by the kind of step.
    pub edge_call_seconds: Histograms,
    /// `reason="unreachable"`: targets that failed, by failure code.
    pub target_failures: Counters,
    /// `method="GET",route="/api/v1/...",status="200"`.
    pub http_requests: Counters,
    /// `method="GET",route="/api/v1/..."`: until the answer's head was sent.
    pub http_request_seconds: Histograms,
    /// `event="delivery.finished",result="delivered"`: each try of a webhook call, by its event and
    /// how it went (`delivered`, `retrying`, `failed`: given up, or a test call that failed).
    pub webhook_tries: Counters,
    /// `event="delivery.finished"`: how long each try took to be answered (or to fail).
    pub webhook_try_seconds: Histograms,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            deliveries_started: AtomicU64::default(),
            deliveries_finished: AtomicU64::default(),
            targets_succeeded: AtomicU64::default(),
            targets_failed: AtomicU64::default(),
            targets_skipped: AtomicU64::default(),
            targets_in_flight: AtomicU64::default(),
            targets_waiting: AtomicU64::default(),
            edge_retries: AtomicU64::default(),
            probes: AtomicU64::default(),
            probes_failed: AtomicU64::default(),
            sse_clients: AtomicU64::default(),
            sse_catch_ups: AtomicU64::default(),
            drift_rounds: AtomicU64::default(),
            drift_checks: AtomicU64::default(),
            drift_checks_failed: AtomicU64::default(),
            drift_last_round_ms: AtomicU64::default(),
            target_seconds: Histograms::new(TARGET_BUCKETS),
            edge_call_seconds: Histograms::new(CALL_BUCKETS),
            target_failures: Counters::default(),
            http_requests: Counters::default(),
            http_request_seconds: Histograms::new(CALL_BUCKETS),
            webhook_tries: Counters::default(),
            webhook_try_seconds: Histograms::new(CALL_BUCKETS),
        }
    }
}

/// The kind of an engine step, for a label: its first word (`create stream demo` → `create`),
/// from a fixed list, so object names never become label values.
pub fn step_kind(step: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "add", "apply", "check", "create", "delete", "import", "install", "read", "replace", "restore", "snapshot",
        "start", "update", "version",
    ];
    let first = step.split_whitespace().next().unwrap_or_default();
    KINDS.iter().find(|kind| **kind == first).copied().unwrap_or("other")
}

/// A label value, escaped as the exposition format asks.
pub fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set_last_drift_round(&self, took: std::time::Duration) {
        self.drift_last_round_ms.store(took.as_millis() as u64, Ordering::Relaxed);
    }

    /// The exposition; `drifted_edges` is read from the store by the caller (it is the fleet's,
    /// not this process's).
    pub fn render(&self, fleet: &FleetGauges, agents: Option<&agent::link::Counters>) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: &AtomicU64| {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
        };
        line("edgefleet_deliveries_started_total", "counter", "Deliveries started.", &self.deliveries_started);
        line(
            "edgefleet_deliveries_finished_total",
            "counter",
            "Deliveries that reached a final state.",
            &self.deliveries_finished,
        );
        line("edgefleet_targets_succeeded_total", "counter", "Targets that succeeded.", &self.targets_succeeded);
        line("edgefleet_targets_failed_total", "counter", "Targets that failed.", &self.targets_failed);
        line(
            "edgefleet_targets_skipped_total",
            "counter",
            "Targets skipped (dry run or on_conflict skip).",
            &self.targets_skipped,
        );
        line("edgefleet_targets_in_flight", "gauge", "Targets being worked on now.", &self.targets_in_flight);
        line(
            "edgefleet_targets_waiting",
            "gauge",
            "Targets in flight kept waiting by their edge or sleeping before a retry; they do not count against concurrency.",
            &self.targets_waiting,
        );
        line(
            "edgefleet_edge_retries_total",
            "counter",
            "Edge calls retried after a transient failure.",
            &self.edge_retries,
        );
        line("edgefleet_probes_total", "counter", "Edge probes made.", &self.probes);
        line(
            "edgefleet_probes_failed_total",
            "counter",
            "Edge probes that found the edge offline.",
            &self.probes_failed,
        );
        line("edgefleet_sse_clients", "gauge", "Clients watching delivery events.", &self.sse_clients);
        line(
            "edgefleet_sse_catch_ups_total",
            "counter",
            "Times a live-event stream fell behind and read results from the database instead.",
            &self.sse_catch_ups,
        );
        line("edgefleet_drift_rounds_total", "counter", "Drift check rounds this process ran.", &self.drift_rounds);
        line("edgefleet_drift_checks_total", "counter", "Edges read back by drift checks.", &self.drift_checks);
        line(
            "edgefleet_drift_checks_failed_total",
            "counter",
            "Drift checks that could not read the edge.",
            &self.drift_checks_failed,
        );
        if let Some(agents) = agents {
            line("edgefleet_agent_commands_total", "counter", "Commands published to agents.", &agents.commands);
            line(
                "edgefleet_agent_commands_unanswered_total",
                "counter",
                "Agent commands with no reply within their wait.",
                &agents.silent,
            );
            line(
                "edgefleet_agent_commands_refused_total",
                "counter",
                "Agent commands the agent refused.",
                &agents.refused,
            );
            line(
                "edgefleet_agent_replies_unmatched_total",
                "counter",
                "Agent replies no call here waited for (another replica's, late, or repeated).",
                &agents.unmatched_replies,
            );
        }
        let last_round = self.drift_last_round_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "# HELP edgefleet_drift_last_round_seconds How long this process's last drift round took.\n\
             # TYPE edgefleet_drift_last_round_seconds gauge\nedgefleet_drift_last_round_seconds {last_round}"
        );
        let _ = writeln!(
            out,
            "# HELP edgefleet_edges_drifted Edge services that no longer hold what was last delivered to them.\n\
             # TYPE edgefleet_edges_drifted gauge\nedgefleet_edges_drifted {}",
            fleet.drifted_edges
        );
        let _ = writeln!(
            out,
            "# HELP edgefleet_deliveries Deliveries by state (all replicas').\n# TYPE edgefleet_deliveries gauge"
        );
        for (state, count) in &fleet.deliveries {
            let _ = writeln!(out, "edgefleet_deliveries{{state=\"{state}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP edgefleet_webhook_calls_pending Webhook calls not yet answered with a 2xx and still to be tried (all replicas').\n\
             # TYPE edgefleet_webhook_calls_pending gauge\nedgefleet_webhook_calls_pending {}",
            fleet.webhook_calls_pending
        );
        self.webhook_tries.render(
            &mut out,
            "edgefleet_webhook_tries_total",
            "Tries of webhook calls, by event and result (delivered, retrying, failed).",
        );
        self.webhook_try_seconds.render(
            &mut out,
            "edgefleet_webhook_try_duration_seconds",
            "Time of each webhook try until its answer or failure, by event.",
        );
        self.target_seconds.render(
            &mut out,
            "edgefleet_target_duration_seconds",
            "Time from a target's start to its final state, by that state.",
        );
        self.edge_call_seconds.render(
            &mut out,
            "edgefleet_edge_call_duration_seconds",
            "Time of each call to an edge (each try), by the kind of step.",
        );
        self.target_failures.render(
            &mut out,
            "edgefleet_target_failures_total",
            "Targets that failed, by failure code.",
        );
        self.http_requests.render(&mut out, "edgefleet_http_requests_total", "API requests, by route and status.");
        self.http_request_seconds.render(
            &mut out,
            "edgefleet_http_request_duration_seconds",
            "Time until an API request's answer began, by route.",
        );
        out
    }
}
