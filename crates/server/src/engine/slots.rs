//! Which of a runner's targets count against the delivery's `options.concurrency`.
//!
//! A target whose edge has kept it waiting for [`WAITING_AFTER`] stops counting: a hung gateway
//! then costs its own target's time (up to `timeout_secs`), not the fleet's throughput. Waiting
//! targets still hold their claim, their connection and their timeout; only their slot is given
//! to the next target. At most [`Slots::max_waiting`] targets wait at once, so a fleet of hung
//! gateways cannot open connections without bound.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// How long a target may go without finishing before it counts as waiting. Longer than any
/// healthy target's whole exchange on a local network (milliseconds), shorter than the shortest
/// `timeout_secs` (1 s) can make it matter.
pub const WAITING_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Waiting targets per unit of concurrency.
const WAITING_PER_SLOT: usize = 4;
/// Waiting targets of one runner, whatever its concurrency.
pub const MAX_WAITING: usize = 4096;

pub struct Slots {
    concurrency: usize,
    waiting: AtomicUsize,
    /// Told when a target starts waiting, so the runner claims another at once.
    freed: Notify,
}

impl Slots {
    pub fn new(concurrency: usize) -> Slots {
        Slots { concurrency, waiting: AtomicUsize::new(0), freed: Notify::new() }
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

    /// Marks one target waiting until the guard drops (when the target ends).
    pub fn wait(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.freed.notify_one();
        Waiting(self)
    }

    /// Resolves when a target has started waiting since the last call.
    pub async fn freed(&self) {
        self.freed.notified().await;
    }
}

/// A target counted as waiting; dropping it counts it out.
pub struct Waiting<'a>(&'a Slots);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_targets_make_room_up_to_the_cap() {
        let slots = Slots::new(2);
        assert_eq!(slots.room(0), 2);
        assert_eq!(slots.room(2), 0);
        let first = slots.wait();
        assert_eq!(slots.room(2), 1, "a waiting target gives its slot");
        let waiting: Vec<_> = (0..7).map(|_| slots.wait()).collect();
        assert_eq!(slots.max_waiting(), 8);
        assert_eq!(slots.room(10), 0, "eight waiting and two working is the cap");
        drop(first);
        assert_eq!(slots.room(9), 0, "seven waiting and two working: both slots taken");
        assert_eq!(slots.room(8), 1, "seven waiting and one working");
        drop(waiting);
        assert_eq!(slots.room(9), 0, "nine working targets fill two slots and more");
    }

    #[test]
    fn the_cap_holds_for_large_concurrency() {
        assert_eq!(Slots::new(2048).max_waiting(), MAX_WAITING);
    }
}
