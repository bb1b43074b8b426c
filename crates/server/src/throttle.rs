//! Login throttling: failed attempts per username and per client address, in a sliding window.
//! (Per process: with several replicas each counts its own.)

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    window: Duration,
    per_user: usize,
    per_address: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            window: Duration::from_secs(300),
            per_user: 5,
            per_address: 20,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl Throttle {
    /// Seconds to wait, if the user or the address has failed too often recently.
    pub fn blocked(&self, username: &str, address: &str) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let mut wait = None;
        for (key, limit) in [(format!("user:{username}"), self.per_user), (format!("addr:{address}"), self.per_address)]
        {
            if let Some(times) = failures.get_mut(&key) {
                while times.front().is_some_and(|t| now.duration_since(*t) > self.window) {
                    times.pop_front();
                }
                if times.len() >= limit
                    && let Some(oldest) = times.front()
                {
                    let left = self.window.saturating_sub(now.duration_since(*oldest)).as_secs().max(1);
                    wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, username: &str, address: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        for key in [format!("user:{username}"), format!("addr:{address}")] {
            failures.entry(key).or_default().push_back(now);
        }
    }

    pub fn succeeded(&self, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(&format!("user:{username}"));
    }
}
