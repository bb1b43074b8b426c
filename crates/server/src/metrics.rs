//! A few Prometheus counters and gauges, rendered by hand in the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub deliveries_started: AtomicU64,
    pub deliveries_finished: AtomicU64,
    pub targets_succeeded: AtomicU64,
    pub targets_failed: AtomicU64,
    pub targets_skipped: AtomicU64,
    pub targets_in_flight: AtomicU64,
    pub edge_retries: AtomicU64,
    pub probes: AtomicU64,
    pub probes_failed: AtomicU64,
    pub sse_clients: AtomicU64,
    pub drift_rounds: AtomicU64,
    pub drift_checks: AtomicU64,
    pub drift_checks_failed: AtomicU64,
    /// How long the last drift round took, in milliseconds.
    pub drift_last_round_ms: AtomicU64,
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
    pub fn render(&self, drifted_edges: i64, agents: Option<&agent::link::Counters>) -> String {
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
             # TYPE edgefleet_edges_drifted gauge\nedgefleet_edges_drifted {drifted_edges}"
        );
        out
    }
}
