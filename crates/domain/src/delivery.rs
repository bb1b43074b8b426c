//! Deliveries: the status of each target, the state of the whole, and the options a user sets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

crate::wire_enum! {
    /// A target's status. `succeeded`, `failed`, `canceled` and `skipped` are final.
    pub enum TargetStatus ("target status") {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
        Skipped = "skipped",
    }
}

impl TargetStatus {
    /// Whether the target has ended. Every status is named, so a new one must be placed here.
    pub fn is_final(self) -> bool {
        match self {
            TargetStatus::Pending | TargetStatus::Running => false,
            TargetStatus::Succeeded | TargetStatus::Failed | TargetStatus::Canceled | TargetStatus::Skipped => true,
        }
    }
}

crate::wire_enum! {
    /// Why a target failed, as a code a console can translate and a metric can count; the
    /// target's `reason` text says the rest.
    pub enum FailureCode ("failure code") {
        /// The gateway answered an error.
        EdgeError = "edge_error",
        /// No answer within the call's time.
        EdgeTimeout = "edge_timeout",
        /// No connection.
        Unreachable = "unreachable",
        /// The connection closed before a whole answer.
        ConnectionReset = "connection_reset",
        UnreadableAnswer = "unreadable_answer",
        /// Refused before sending: a bad address, the network policy.
        NotSent = "not_sent",
        AgentSilent = "agent_silent",
        AgentRefused = "agent_refused",
        /// The target's own time limit (`options.timeout_secs`) ran out.
        TargetTimeout = "target_timeout",
        /// `options.verify` found a rule unhealthy.
        UnhealthyRule = "unhealthy_rule",
        /// edgefleet itself stopped the target: version gate, missing parameter, gateway changed
        /// since the plan, snapshot not recorded, ...
        RefusedByEdgefleet = "refused_by_edgefleet",
    }
}

crate::wire_enum! {
    /// The delivery as a whole.
    pub enum DeliveryState ("delivery state") {
        Running = "running",
        /// Waits until enough other project admins approve it (`approvals_required`).
        AwaitingApproval = "awaiting_approval",
        /// Waits for its `start_at`.
        Scheduled = "scheduled",
        /// A rollout stopped between waves (manual gate) or by a user; `resume` goes on.
        Paused = "paused",
        /// Asked to stop: edge calls are being abandoned; `canceled` once every target is final.
        Canceling = "canceling",
        Succeeded = "succeeded",
        /// Some targets succeeded (or were skipped) and some failed.
        Partial = "partial",
        Failed = "failed",
        Canceled = "canceled",
        /// A rollout stopped by its abort rule or by a user: targets never started were canceled.
        Aborted = "aborted",
    }
}

impl DeliveryState {
    /// Whether the delivery has ended (nothing more will change without a retry). Every state is
    /// named, so a new one (a rollout's `paused`, `awaiting_approval`) must be placed here.
    pub fn is_final(self) -> bool {
        match self {
            DeliveryState::Running
            | DeliveryState::AwaitingApproval
            | DeliveryState::Scheduled
            | DeliveryState::Paused
            | DeliveryState::Canceling => false,
            DeliveryState::Succeeded
            | DeliveryState::Partial
            | DeliveryState::Failed
            | DeliveryState::Canceled
            | DeliveryState::Aborted => true,
        }
    }
}

crate::wire_enum! {
    /// What a delivery sends. A new kind is found by the compiler in every `match` on it: the
    /// engine's payload, the route that starts it, the console's label.
    pub enum DeliveryKind ("delivery kind") {
        /// A version of a rule or driver template.
        Template = "template",
        /// An eKuiper portable plugin package.
        Plugin = "plugin",
    }
}

crate::wire_enum! {
    /// What a delivery does with its targets.
    pub enum DeliveryMode ("delivery mode") {
        /// Writes the objects to every target (the default).
        Apply = "apply",
        /// Reads every target's live objects and records what applying would change; writes nothing.
        Plan = "plan",
        /// Puts each target back as another delivery's snapshot holds it.
        Rollback = "rollback",
    }
}

/// Target counts of one delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Counts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Not final yet: pending or running.
    pub pending: u64,
    pub running: u64,
    pub canceled: u64,
    pub skipped: u64,
}

impl Counts {
    pub fn add(&mut self, status: TargetStatus, n: u64) {
        self.total += n;
        match status {
            TargetStatus::Pending => self.pending += n,
            TargetStatus::Running => {
                self.pending += n;
                self.running += n;
            }
            TargetStatus::Succeeded => self.succeeded += n,
            TargetStatus::Failed => self.failed += n,
            TargetStatus::Canceled => self.canceled += n,
            TargetStatus::Skipped => self.skipped += n,
        }
    }

    /// Moves one target from one status to another.
    pub fn moved(&mut self, from: TargetStatus, to: TargetStatus) {
        self.add(to, 1);
        self.remove(from);
    }

    fn remove(&mut self, status: TargetStatus) {
        self.total -= 1;
        let slot = match status {
            TargetStatus::Pending => &mut self.pending,
            TargetStatus::Running => {
                self.running -= 1;
                &mut self.pending
            }
            TargetStatus::Succeeded => &mut self.succeeded,
            TargetStatus::Failed => &mut self.failed,
            TargetStatus::Canceled => &mut self.canceled,
            TargetStatus::Skipped => &mut self.skipped,
        };
        *slot -= 1;
    }

    /// The state these counts mean once nothing is pending; `Running` while something is.
    pub fn state(&self, canceled: bool) -> DeliveryState {
        if self.pending > 0 {
            return DeliveryState::Running;
        }
        let done_well = self.succeeded + self.skipped;
        if canceled {
            DeliveryState::Canceled
        } else if self.failed == 0 {
            DeliveryState::Succeeded
        } else if done_well == 0 {
            DeliveryState::Failed
        } else {
            DeliveryState::Partial
        }
    }
}

/// What to do when an object of the template already exists on the edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Replace it (what NeuronEX's own import does).
    #[default]
    Overwrite,
    /// Leave the existing one and count the item as skipped.
    Skip,
    /// Fail the target.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryOptions {
    /// Targets worked on at the same time.
    pub concurrency: u32,
    /// Time one target may take, all attempts included.
    pub timeout_secs: u64,
    /// Extra attempts after a transient failure (timeout, reset, 5xx, busy).
    pub retries: u32,
    pub on_conflict: OnConflict,
    /// What a target that fails after its first write does: put back what it held (`restore`,
    /// the default) or stay as the failure left it (`leave`).
    pub on_failure: OnFailure,
    /// What a target whose edge the prober sees offline does: fail at once (`fail`, the default)
    /// or wait until it is seen online (`wait`), at most until `deadline`.
    pub offline: Offline,
    /// RFC 3339; with `offline: wait`, when a target still offline gives up (default: 7 days after
    /// the delivery was made).
    pub deadline: Option<String>,
    /// Start a target only while one of its maintenance windows is open.
    pub respect_windows: bool,
    /// Watch each delivered rule for a while before the target counts as succeeded.
    pub verify: Option<Verify>,
}

/// `{secs, max_exceptions, min_records_in}`: after delivering, each rule of the template is
/// watched for `secs`; it is healthy when it still runs, its operators counted at most
/// `max_exceptions` exceptions and its sources took in at least `min_records_in` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub secs: u64,
    #[serde(default)]
    pub max_exceptions: u64,
    #[serde(default)]
    pub min_records_in: u64,
}

/// Verification watches a rule for at most an hour.
pub const MAX_VERIFY_SECS: u64 = 3600;

impl Verify {
    /// Why a rule that reports these is unhealthy; `None` when it is healthy.
    pub fn judge(&self, rule: &str, running: bool, status: &str, exceptions: u64, records_in: u64) -> Option<String> {
        if !running {
            return Some(format!("verify: rule {rule} is not running after {} s ({status})", self.secs));
        }
        if exceptions > self.max_exceptions {
            return Some(format!(
                "verify: rule {rule} raised {exceptions} exceptions in {} s (at most {} allowed)",
                self.secs, self.max_exceptions
            ));
        }
        if records_in < self.min_records_in {
            return Some(format!(
                "verify: rule {rule} read {records_in} records in {} s (at least {} needed)",
                self.secs, self.min_records_in
            ));
        }
        None
    }
}

/// What a delivery does with a target whose edge is offline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offline {
    /// One quick check; the target fails when it still does not answer.
    #[default]
    Fail,
    /// The target waits (`pending`, `waiting: offline since ...`) and runs once the edge is seen
    /// online, or tries a last time at the deadline.
    Wait,
}

/// How long `offline: wait` waits without a deadline.
pub const DEFAULT_OFFLINE_WAIT_MS: i64 = 7 * 24 * 3600 * 1000;
/// How far ahead a deadline may be.
pub const MAX_OFFLINE_WAIT_MS: i64 = 90 * 24 * 3600 * 1000;

impl Default for DeliveryOptions {
    fn default() -> DeliveryOptions {
        DeliveryOptions {
            concurrency: 64,
            timeout_secs: 60,
            retries: 2,
            on_conflict: OnConflict::Overwrite,
            on_failure: OnFailure::Restore,
            offline: Offline::Fail,
            deadline: None,
            respect_windows: false,
            verify: None,
        }
    }
}

/// What to do with a target that failed half-way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Put back every object as the snapshot taken before the first write holds it.
    #[default]
    Restore,
    /// Leave the target as the failure left it.
    Leave,
}

crate::wire_enum! {
    /// Whether a failed target was put back as it was.
    pub enum RestoreOutcome ("restore outcome") {
        /// Every object is again as the snapshot holds it.
        Restored = "restored",
        /// Putting it back failed; the target's reason says where.
        RestoreFailed = "restore_failed",
    }
}

pub const MAX_CONCURRENCY: u32 = 2048;
pub const MAX_TIMEOUT_SECS: u64 = 3600;
pub const MAX_RETRIES: u32 = 10;

impl DeliveryOptions {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!(
                "options.concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                self.concurrency
            ));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Err(format!(
                "options.timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}, got {}",
                self.timeout_secs
            ));
        }
        if self.retries > MAX_RETRIES {
            return Err(format!("options.retries must be at most {MAX_RETRIES}, got {}", self.retries));
        }
        if let Some(verify) = &self.verify
            && !(1..=MAX_VERIFY_SECS).contains(&verify.secs)
        {
            return Err(format!("options.verify.secs must be between 1 and {MAX_VERIFY_SECS}, got {}", verify.secs));
        }
        if let Some(deadline) = &self.deadline {
            if self.offline != Offline::Wait {
                return Err("options.deadline goes with options.offline: wait".into());
            }
            crate::edge::parse_time(deadline).map_err(|m| format!("options.deadline: {m}"))?;
        }
        Ok(())
    }

    /// With `offline: wait`, when waiting ends (ms), for a delivery made at `created_at`.
    pub fn offline_deadline(&self, created_at: i64) -> Option<i64> {
        if self.offline != Offline::Wait {
            return None;
        }
        let asked = self.deadline.as_deref().and_then(|d| crate::edge::parse_time(d).ok());
        Some(asked.unwrap_or(created_at + DEFAULT_OFFLINE_WAIT_MS).min(created_at + MAX_OFFLINE_WAIT_MS))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Wait before attempt `n` (1-based retry number): 200 ms doubled each time, capped at 5 s;
    /// `jitter` in `[0, 1)` spreads retries of many targets apart.
    pub fn backoff(retry: u32, jitter: f64) -> Duration {
        let base = 200u64.saturating_mul(1 << retry.min(5).saturating_sub(1)).min(5000);
        Duration::from_millis(base + (base as f64 * 0.5 * jitter) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_counts() {
        let mut counts = Counts::default();
        counts.add(TargetStatus::Pending, 3);
        assert_eq!(counts.state(false), DeliveryState::Running);
        counts.moved(TargetStatus::Pending, TargetStatus::Running);
        counts.moved(TargetStatus::Running, TargetStatus::Succeeded);
        counts.moved(TargetStatus::Pending, TargetStatus::Failed);
        assert_eq!((counts.pending, counts.running), (1, 0));
        counts.moved(TargetStatus::Pending, TargetStatus::Skipped);
        assert_eq!(counts.state(false), DeliveryState::Partial);
        assert_eq!(counts.total, 3);
        let all_failed = Counts { total: 2, failed: 2, ..Counts::default() };
        assert_eq!(all_failed.state(false), DeliveryState::Failed);
        assert_eq!(all_failed.state(true), DeliveryState::Canceled);
    }

    #[test]
    fn options_are_bounded() {
        assert!(DeliveryOptions::default().check().is_ok());
        let bad = DeliveryOptions { concurrency: 0, ..DeliveryOptions::default() };
        assert_eq!(bad.check(), Err("options.concurrency must be between 1 and 2048, got 0".into()));
        assert!(DeliveryOptions { retries: 11, ..DeliveryOptions::default() }.check().is_err());
        assert!(DeliveryOptions::backoff(1, 0.0) < DeliveryOptions::backoff(3, 0.0));
        assert!(DeliveryOptions::backoff(30, 0.99) <= std::time::Duration::from_millis(7500));
    }
}
