//! Which of a runner's targets count against the delivery's `options.concurrency`.
//!
//! A target counts while it exchanges with its edge. It stops counting while it waits: when an
//! answer from its edge takes longer than the runner's [`Pace`] expects (a hung gateway then
//! costs its own target's time, up to `timeout_secs`, not the fleet's throughput), when its whole
//! work has taken [`WAITING_AFTER`], and while it sleeps before a retry. Waiting targets keep
//! their claim, their connection and their timeout; only their slot goes to the next target. At
//! most [`Slots::max_waiting`] targets wait at once, so a fleet of hung gateways cannot open
//! connections without bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// How long a target may go without finishing before it counts as waiting. Longer than any
/// healthy target's whole exchange on a local network (milliseconds), and no longer than the
/// shortest `timeout_secs`.
pub const WAITING_AFTER: Duration = Duration::from_secs(1);
/// The least patience for one answer: below this, a busy server's own scheduling delays would
/// make healthy answers look slow.
const PATIENCE_FLOOR: Duration = Duration::from_millis(50);
/// Patience is this many times the time within which nine answers in ten came.
const PATIENCE_FACTOR: u32 = 4;
/// Answers between two estimates of the patience; each estimate halves the older counts, so
/// the patience follows the fleet as the delivery moves through it.
const PACE_EVERY: u32 = 256;
/// Buckets of answer times, the first below 1 ms and each next one twice as wide.
const PACE_BUCKETS: usize = 12;
/// Waiting targets per unit of concurrency: with 4, 100,000 targets of which 11% hung waited on
/// the cap (73 s against 28 s clean); with 16, 65 s against 33 s (docs/BENCHMARKS.md).
const WAITING_PER_SLOT: usize = 16;
/// Waiting targets of one runner, whatever its concurrency.
pub const MAX_WAITING: usize = 4096;

pub struct Slots {
    concurrency: usize,
    waiting: AtomicUsize,
    pace: Pace,
    /// Told when a target starts waiting, so the runner claims another at once.
    freed: Notify,
    metrics: Arc<Metrics>,
}

impl Slots {
    pub fn new(concurrency: usize, metrics: Arc<Metrics>) -> Slots {
        Slots { concurrency, waiting: AtomicUsize::new(0), pace: Pace::default(), freed: Notify::new(), metrics }
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

    /// Awaits one answer from the edge. An answer slower than the runner's patience makes the
    /// target wait until it comes; every answer that comes teaches the patience. (A request the
    /// target's timeout drops taught nothing: hung gateways do not make the runner patient.)
    /// The call comes pinned by its caller: a future taken by value and pinned here would be
    /// stored twice in this one's state (it is kilobytes, held by every target in flight).
    pub async fn answer<F: Future>(&self, call: Pin<&mut F>) -> F::Output {
        let began = Instant::now();
        let output = self.waiting_after(self.slots.pace.patience(), call).await;
        self.slots.pace.answered(began.elapsed());
        output
    }

    /// Awaits `work`; once it has taken `after`, the target waits (gives its slot) until it
    /// ends. The work comes pinned by its caller, for the same reason as in [`Self::answer`].
    pub async fn waiting_after<F: Future>(&self, after: Duration, mut work: Pin<&mut F>) -> F::Output {
        tokio::select! {
            output = work.as_mut() => output,
            () = tokio::time::sleep(after) => {
                let _waiting = self.wait();
                work.await
            }
        }
    }
}

/// How long a runner's edges take to answer, and so how long an answer may take before its
/// target gives its slot: [`PATIENCE_FACTOR`] times the time within which nine answers in ten
/// came recently, between [`PATIENCE_FLOOR`] and [`WAITING_AFTER`]. Until it has seen
/// [`PACE_EVERY`] answers it waits the full [`WAITING_AFTER`]. Counts are atomics: a lost
/// update among concurrent answers only blurs an estimate.
pub struct Pace {
    buckets: [AtomicU32; PACE_BUCKETS],
    seen: AtomicU32,
    patience_micros: AtomicU64,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            buckets: Default::default(),
            seen: AtomicU32::new(0),
            patience_micros: AtomicU64::new(micros(WAITING_AFTER)),
        }
    }
}

impl Pace {
    pub fn patience(&self) -> Duration {
        Duration::from_micros(self.patience_micros.load(Ordering::Relaxed))
    }

    pub fn answered(&self, took: Duration) {
        let millis = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        // Bucket 0 holds answers under 1 ms, bucket b those under 2^b ms.
        let bucket = (u64::BITS - millis.leading_zeros()) as usize;
        self.buckets[bucket.min(PACE_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        if self.seen.fetch_add(1, Ordering::Relaxed) % PACE_EVERY == PACE_EVERY - 1 {
            self.estimate();
        }
    }

    fn estimate(&self) {
        let counts: [u32; PACE_BUCKETS] = std::array::from_fn(|b| self.buckets[b].load(Ordering::Relaxed));
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let mut below = 0;
        let nine_in_ten = counts.iter().position(|&c| {
            below += u64::from(c);
            below * 10 >= total * 9
        });
        let bound = Duration::from_millis(1 << nine_in_ten.unwrap_or(PACE_BUCKETS - 1));
        let patience = (bound * PATIENCE_FACTOR).clamp(PATIENCE_FLOOR, WAITING_AFTER);
        self.patience_micros.store(micros(patience), Ordering::Relaxed);
        for bucket in &self.buckets {
            bucket.store(bucket.load(Ordering::Relaxed) / 2, Ordering::Relaxed);
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
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

    fn pace_after(answers: &[(Duration, u32)]) -> Duration {
        let pace = Pace::default();
        for &(took, times) in answers {
            (0..times).for_each(|_| pace.answered(took));
        }
        pace.patience()
    }

    #[test]
    fn patience_follows_how_fast_nine_answers_in_ten_come() {
        let ms = Duration::from_millis;
        let cases = [
            ("before enough answers: the full second", vec![(ms(3), PACE_EVERY - 1)], WAITING_AFTER),
            ("fast answers: the floor", vec![(Duration::from_micros(300), PACE_EVERY)], PATIENCE_FLOOR),
            ("20 ms answers: four times their bucket's 32 ms", vec![(ms(20), PACE_EVERY)], ms(128)),
            ("a tenth slower does not move it", vec![(ms(20), 231), (ms(900), 25)], ms(128)),
            ("slow answers: at most the second", vec![(ms(400), PACE_EVERY)], WAITING_AFTER),
            (
                "it follows the fleet: older answers count half",
                vec![(ms(400), PACE_EVERY), (ms(20), PACE_EVERY)],
                WAITING_AFTER,
            ),
            ("three rounds on, the new pace holds", vec![(ms(400), PACE_EVERY), (ms(20), 3 * PACE_EVERY)], ms(128)),
        ];
        for (case, answers, expected) in cases {
            assert_eq!(pace_after(&answers), expected, "{case}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_slower_than_the_patience_gives_the_slot_until_it_comes() {
        let slots = slots(1);
        let target = TargetSlot::new(Arc::clone(&slots));
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let answered = std::pin::pin!(answered);
        let call = target.answer(answered);
        tokio::pin!(call);
        assert!(futures::poll!(&mut call).is_pending());
        assert_eq!(slots.room(1), 0, "a target awaiting an answer works");
        tokio::time::advance(WAITING_AFTER).await;
        assert!(futures::poll!(&mut call).is_pending());
        assert_eq!(slots.room(1), 1, "past the patience it waits");
        answer.send(()).ok();
        assert!(futures::poll!(&mut call).is_ready());
        assert_eq!(slots.room(1), 0, "answered: it works again");
    }

    #[test]
    fn the_cap_holds_for_large_concurrency() {
        assert_eq!(slots(2048).max_waiting(), MAX_WAITING);
    }
}
