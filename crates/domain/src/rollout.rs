//! Rollouts: a delivery's targets in waves, the gate between waves, and the rule that stops it.
//!
//! Targets are put in a random order fixed per delivery and cut into waves by position, so wave
//! `n` is the targets whose position is below `ends[n]` and above the previous end: the engine
//! claims only positions below the current wave's end, and "the wave is done" is "no unfinished
//! target below that end".

use serde::{Deserialize, Serialize};

use crate::delivery::Counts;

/// At most this many waves in one rollout.
pub const MAX_WAVES: usize = 20;
/// `min_results` is at most this (a delivery has at most a few hundred thousand targets).
pub const MAX_MIN_RESULTS: u64 = 1_000_000;

/// `{"waves": [...], "gate": "auto" | "manual", "abort": {...}, "on_abort": "stop" | "rollback"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// In order; the last wave takes the rest of the targets whatever it says.
    pub waves: Vec<Wave>,
    #[serde(default)]
    pub gate: Gate,
    /// Stop the rollout when too many targets fail; none means never stop on failures.
    #[serde(default)]
    pub abort: Option<AbortRule>,
    #[serde(default)]
    pub on_abort: OnAbort,
}

/// The size of one wave: a share of the delivery's targets (not cumulative) or a number of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Wave {
    Percent(f64),
    Count(u64),
}

/// What happens when a wave is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The next wave starts at once if the abort rule holds.
    #[default]
    Auto,
    /// The delivery is `paused` until someone resumes it.
    Manual,
}

/// Abort when `failed / results >= failed_percent`, checked after every result once the delivery
/// has `min_results` results (succeeded, failed or skipped).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbortRule {
    pub failed_percent: f64,
    #[serde(default = "default_min_results")]
    pub min_results: u64,
}

fn default_min_results() -> u64 {
    1
}

/// What an abort does besides stopping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnAbort {
    /// Cancel the targets not started; leave the others as they are.
    #[default]
    Stop,
    /// Also start a rollback delivery of every target this delivery changed.
    Rollback,
}

impl Rollout {
    /// Checks sizes and bounds; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.waves.is_empty() {
            return Err("rollout.waves: give at least one wave, e.g. [{\"percent\": 10}, {\"percent\": 90}]".into());
        }
        if self.waves.len() > MAX_WAVES {
            return Err(format!("rollout.waves: at most {MAX_WAVES} waves, got {}", self.waves.len()));
        }
        for (i, wave) in self.waves.iter().enumerate() {
            match *wave {
                Wave::Percent(p) if !(p > 0.0 && p <= 100.0) => {
                    return Err(format!("rollout.waves[{i}].percent must be above 0 and at most 100, got {p}"));
                }
                Wave::Count(0) => return Err(format!("rollout.waves[{i}].count must be at least 1")),
                _ => {}
            }
        }
        if let Some(rule) = &self.abort {
            if !(0.0..=100.0).contains(&rule.failed_percent) {
                return Err(format!(
                    "rollout.abort.failed_percent must be between 0 and 100, got {}",
                    rule.failed_percent
                ));
            }
            if !(1..=MAX_MIN_RESULTS).contains(&rule.min_results) {
                return Err(format!(
                    "rollout.abort.min_results must be between 1 and {MAX_MIN_RESULTS}, got {}",
                    rule.min_results
                ));
            }
        }
        Ok(())
    }

    /// Where each wave ends in the delivery's target order, for `total` targets: increasing, the
    /// last one `total`. A wave is at least one target; waves left empty because earlier ones took
    /// every target are dropped.
    pub fn wave_ends(&self, total: u64) -> Vec<u64> {
        let mut ends = Vec::with_capacity(self.waves.len());
        let mut end = 0u64;
        for (i, wave) in self.waves.iter().enumerate() {
            if end >= total {
                break;
            }
            let last = i + 1 == self.waves.len();
            let size = match *wave {
                _ if last => total - end,
                Wave::Percent(p) => ((total as f64 * p / 100.0).ceil() as u64).max(1),
                Wave::Count(n) => n,
            };
            end = (end + size).min(total);
            ends.push(end);
        }
        if ends.is_empty() {
            ends.push(0);
        }
        ends
    }
}

impl AbortRule {
    /// The failure rate in percent when these counts break the rule.
    pub fn tripped(&self, counts: &Counts) -> Option<f64> {
        let results = counts.succeeded + counts.failed + counts.skipped;
        if results == 0 || results < self.min_results {
            return None;
        }
        let rate = counts.failed as f64 * 100.0 / results as f64;
        (rate >= self.failed_percent).then_some(rate)
    }

    /// `rollout aborted at wave 2: 9.1% failed (threshold 5%)`: the reason of every target the
    /// abort cancels, and of the delivery.
    pub fn reason(&self, wave: usize, rate: f64) -> String {
        format!(
            "rollout aborted at wave {wave}: {}% failed (threshold {}%)",
            round_percent(rate),
            round_percent(self.failed_percent)
        )
    }
}

/// `9.0909` → `9.1`, `5.0` → `5`.
fn round_percent(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 { format!("{}", rounded as i64) } else { format!("{rounded:.1}") }
}

/// `1%,10%,rest` or `5,50,rest`: waves as the command line takes them (`rest` is the last wave,
/// which takes the rest anyway).
pub fn parse_waves(text: &str) -> Result<Vec<Wave>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            if part == "rest" || part == "all" {
                Ok(Wave::Percent(100.0))
            } else if let Some(percent) = part.strip_suffix('%') {
                percent.trim().parse::<f64>().map(Wave::Percent).map_err(|_| format!("`{part}` is not a percentage"))
            } else {
                part.parse::<u64>()
                    .map(Wave::Count)
                    .map_err(|_| format!("`{part}` is not a wave: give a count (50), a percentage (10%) or `rest`"))
            }
        })
        .collect()
}

/// The canary preset: 1% of the targets, then 10%, then the rest.
pub fn canary() -> Vec<Wave> {
    vec![Wave::Percent(1.0), Wave::Percent(10.0), Wave::Percent(100.0)]
}

/// The wave (1-based) of the target at `position` (0-based) in the delivery's order.
pub fn wave_of(ends: &[u64], position: u64) -> usize {
    ends.iter().position(|end| position < *end).map_or(ends.len(), |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(waves: &[Wave]) -> Rollout {
        Rollout { waves: waves.to_vec(), gate: Gate::Auto, abort: None, on_abort: OnAbort::Stop }
    }

    #[test]
    fn waves_cut_the_targets_and_the_last_takes_the_rest() {
        let canary = rollout(&[Wave::Percent(1.0), Wave::Percent(10.0), Wave::Percent(100.0)]);
        assert_eq!(canary.wave_ends(1000), vec![10, 110, 1000]);
        // Small fleets: every wave has at least one target; waves left empty are dropped.
        assert_eq!(canary.wave_ends(3), vec![1, 2, 3]);
        assert_eq!(canary.wave_ends(1), vec![1]);
        assert_eq!(canary.wave_ends(0), vec![0]);
        let counts = rollout(&[Wave::Count(5), Wave::Count(5)]);
        assert_eq!(counts.wave_ends(100), vec![5, 100], "the last wave takes the rest");
        assert_eq!(counts.wave_ends(4), vec![4]);
        assert_eq!(wave_of(&[10, 110, 1000], 0), 1);
        assert_eq!(wave_of(&[10, 110, 1000], 10), 2);
        assert_eq!(wave_of(&[10, 110, 1000], 999), 3);
    }

    #[test]
    fn waves_parse_from_the_command_line() {
        assert_eq!(parse_waves("1%, 10%,rest"), Ok(canary()));
        assert_eq!(parse_waves("5,50,all"), Ok(vec![Wave::Count(5), Wave::Count(50), Wave::Percent(100.0)]));
        assert!(parse_waves("five").expect_err("refused").contains("give a count"));
        assert!(parse_waves("x%").is_err());
    }

    #[test]
    fn the_abort_rule_waits_for_its_sample() {
        let rule = AbortRule { failed_percent: 5.0, min_results: 20 };
        let counts = |succeeded, failed| Counts { succeeded, failed, total: 1000, ..Counts::default() };
        assert_eq!(rule.tripped(&counts(9, 1)), None, "10% failed but only 10 results");
        assert_eq!(rule.tripped(&counts(19, 0)), None);
        assert_eq!(rule.tripped(&counts(19, 1)), Some(5.0));
        assert_eq!(rule.tripped(&counts(100, 5)), None, "4.8% is below 5%");
        let rate = rule.tripped(&counts(100, 10)).expect("tripped");
        assert_eq!(rule.reason(2, rate), "rollout aborted at wave 2: 9.1% failed (threshold 5%)");
    }

    #[test]
    fn bad_rollouts_are_named() {
        let cases = [
            (serde_json::json!({"waves": []}), "at least one wave"),
            (serde_json::json!({"waves": [{"percent": 0}]}), "waves[0].percent must be above 0"),
            (serde_json::json!({"waves": [{"percent": 101}]}), "at most 100"),
            (serde_json::json!({"waves": [{"count": 0}]}), "waves[0].count must be at least 1"),
            (serde_json::json!({"waves": [{"count": 1}], "abort": {"failed_percent": -1}}), "failed_percent"),
            (
                serde_json::json!({"waves": [{"count": 1}], "abort": {"failed_percent": 5, "min_results": 0}}),
                "min_results",
            ),
        ];
        for (value, expected) in cases {
            let rollout: Rollout = serde_json::from_value(value.clone()).expect("parses");
            let err = rollout.check().expect_err("refused");
            assert!(err.contains(expected), "{value}: {err}");
        }
        let many = serde_json::json!({"waves": vec![serde_json::json!({"count": 1}); 21]});
        let many: Rollout = serde_json::from_value(many).expect("parses");
        assert!(many.check().is_err());
        assert!(serde_json::from_value::<Rollout>(serde_json::json!({"waves": [{"share": 1}]})).is_err());
        assert!(serde_json::from_value::<Rollout>(serde_json::json!({"waves": [], "gates": "auto"})).is_err());
    }
}
