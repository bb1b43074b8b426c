//! Which of a runner's targets count against the delivery's `options.concurrency`.
//!
//! A target counts while it exchanges with its edge. It stops counting while it waits: when its
//! edge has kept it for [`WAITING_AFTER`] (a hung gateway then costs its own target's time, up to
//! `timeout_secs`, not the fleet's throughput), and while it sleeps before a retry. Waiting
//! targets keep their claim, their connection and their timeout; only their slot goes to the next
//! target. At most [`Slots::max_waiting`] targets wait at once, so a fleet of hung gateways cannot
//! open connections without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// How long a target may go without finishing before it counts as waiting. Longer than any
/// healthy target's whole exchange on a local network (milliseconds), and no longer than the
/// shortest `timeout_secs`.
pub const WAITING_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Waiting targets per unit of concurrency: with 4, 100,000 targets of which 11% hung waited on
/// the cap (73 s against 28 s clean); with 16, 65 s against 33 s (docs/BENCHMARKS.md).
const WAITING_PER_SLOT: usize = 16;
/// Waiting targets of one runner, whatever its concurrency.
pub const MAX_WAITING: usize = 4096;

pub struct Slots {
    concurrency: usize,
    waiting: AtomicUsize,
    /// Told when a target starts waiting, so the runner claims another at once.
    freed: Notify,
    metrics: Arc<Metrics>,
}

impl Slots {
    pub fn new(concurrency: usize, metrics: Arc<Metrics>) -> Slots {
        Slots { concurrency, waiting: AtomicUsize::new(0), freed: Notify::new(), metrics }
    }

    /// The most targets that may wait at once besides the `concurrency` working ones.
    pub fn max_waiting(&self) -> usize {
        (self.concurrency * WAITING_PER_SLOT).min(MAX_WAITING)
    }

    /// How many more targets may start, with `in_flight` started and not finished.
    pub fn room(&self, in_flight: usize) -> usize {
        let waiting = self.waiting.load(Ordering::Acquire).min(in_flight);
        let working = in_flight - waiting;
        let by_concurrency = self.concurrency.saturating_sub(working);
        let by_cap = (self.concurrency + self.max_waiting()).saturating_sub(in_flight);
        by_concurrency.min(by_cap)
    }

    /// Resolves when a target has started waiting since the last call.
    pub async fn freed(&self) {
        self.freed.notified().await;
    }
}

/// One target's standing: working, or waiting for one reason or more (a slow answer and a
/// back-off may overlap; the target counts once).
pub struct TargetSlot {
    slots: Arc<Slots>,
    reasons: AtomicUsize,
}

impl TargetSlot {
    pub fn new(slots: Arc<Slots>) -> TargetSlot {
        TargetSlot { slots, reasons: AtomicUsize::new(0) }
    }

    /// The target waits until the guard drops.
    pub fn wait(&self) -> Waiting<'_> {
        if self.reasons.fetch_add(1, Ordering::AcqRel) == 0 {
            self.slots.waiting.fetch_add(1, Ordering::AcqRel);
            Metrics::inc(&self.slots.metrics.targets_waiting);
            self.slots.freed.notify_one();
        }
        Waiting(self)
    }
}

/// One reason a target waits; dropping it ends that reason.
pub struct Waiting<'a>(&'a TargetSlot);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.reasons.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.slots.waiting.fetch_sub(1, Ordering::AcqRel);
            Metrics::dec(&self.0.slots.metrics.targets_waiting);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(concurrency: usize) -> Arc<Slots> {
        Arc::new(Slots::new(concurrency, Arc::new(Metrics::default())))
    }

    #[test]
    fn waiting_targets_make_room_up_to_the_cap() {
        let slots = slots(1);
        assert_eq!((slots.room(0), slots.room(1)), (1, 0));
        assert_eq!(slots.max_waiting(), 16);
        let targets: Vec<TargetSlot> = (0..17).map(|_| TargetSlot::new(Arc::clone(&slots))).collect();
        let first = targets[0].wait();
        assert_eq!(slots.room(1), 1, "a waiting target gives its slot");
        let waiting: Vec<_> = targets[1..16].iter().map(TargetSlot::wait).collect();
        assert_eq!(slots.room(17), 0, "sixteen waiting and one working is the cap");
        assert_eq!(slots.room(16), 1, "sixteen waiting, none working");
        drop(first);
        assert_eq!(slots.room(16), 0, "fifteen waiting and one working: the slot is taken");
        assert_eq!(slots.room(15), 1, "fifteen waiting, none working");
        drop(waiting);
        assert_eq!(slots.room(3), 0, "three working targets fill one slot and more");
        assert_eq!(slots.metrics.targets_waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_target_waiting_for_two_reasons_counts_once() {
        let slots = slots(1);
        let target = TargetSlot::new(Arc::clone(&slots));
        let slow = target.wait();
        let backoff = target.wait();
        assert_eq!(slots.waiting.load(Ordering::Relaxed), 1);
        drop(backoff);
        assert_eq!(slots.room(1), 1, "still waiting for its slow answer");
        drop(slow);
        assert_eq!(slots.room(1), 0);
    }

    #[test]
    fn the_cap_holds_for_large_concurrency() {
        assert_eq!(slots(2048).max_waiting(), MAX_WAITING);
    }
}
