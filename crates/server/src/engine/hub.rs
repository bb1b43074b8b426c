//! Fan-out of live delivery events to SSE watchers in this process.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use domain::delivery::{Counts, DeliveryState};
use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeliveryEvent {
    Counts {
        counts: Counts,
    },
    Target {
        target: TargetEvent,
    },
    Final {
        state: DeliveryState,
        counts: Counts,
    },
    /// Where the delivery stands (the start of every stream).
    State {
        state: api_types::StateEvent,
    },
    /// A target went back to wait.
    Waiting {
        waiting: api_types::WaitingEvent,
    },
    /// Waves, pauses, aborts and approvals.
    Rollout {
        rollout: RolloutEvent,
    },
}

pub use api_types::RolloutEvent;

/// A live `target` event, as clients read it.
pub use api_types::TargetEvent;

/// The event of a stored result (for streams that catch up from the store).
pub fn stored_event(target: &store::DeliveryTarget) -> TargetEvent {
    TargetEvent {
        seq: target.result_seq,
        edge_id: target.edge_id.clone(),
        name: target.name.clone(),
        endpoint: target.endpoint.clone(),
        version: target.version.clone(),
        status: target.status,
        reason: target.reason.clone(),
        failure_code: target.failure,
    }
}

impl DeliveryEvent {
    /// The SSE event name and its JSON data.
    pub fn render(&self) -> (&'static str, String) {
        let (name, data) = match self {
            DeliveryEvent::Counts { counts } => ("counts", serde_json::json!(counts)),
            DeliveryEvent::Target { target } => ("target", serde_json::json!(target)),
            DeliveryEvent::Final { state, counts } => {
                ("final", serde_json::json!(api_types::FinalEvent { state: *state, counts: *counts }))
            }
            DeliveryEvent::State { state } => ("state", serde_json::json!(state)),
            DeliveryEvent::Waiting { waiting } => ("waiting", serde_json::json!(waiting)),
            DeliveryEvent::Rollout { rollout } => (rollout.name(), serde_json::json!(rollout)),
        };
        (name, data.to_string())
    }
}

/// An event as published: rendered once, however many watchers send it.
#[derive(Debug)]
pub struct Published {
    pub event: DeliveryEvent,
    /// Its `event:` and `data:` lines (JSON text has no line breaks: serde escapes them), and for a
    /// result also its `id:` line and the blank line that ends it: a result's id is its number,
    /// the same for every watcher.
    text: String,
}

impl From<DeliveryEvent> for Published {
    fn from(event: DeliveryEvent) -> Published {
        let (name, data) = event.render();
        let text = match &event {
            DeliveryEvent::Target { target } => format!("event: {name}\ndata: {data}\nid: {}\n\n", target.seq),
            _ => format!("event: {name}\ndata: {data}\n"),
        };
        Published { event, text }
    }
}

impl Published {
    /// Appends the event as SSE text with `id` (a result's own number, or for other events the
    /// number of the last result the watcher was sent).
    pub fn write_to(&self, frame: &mut Vec<u8>, id: i64) {
        frame.extend_from_slice(self.text.as_bytes());
        if !matches!(self.event, DeliveryEvent::Target { .. }) {
            // Writing to a Vec cannot fail.
            let _ = write!(frame, "id: {id}\n\n");
        }
    }

    /// The most bytes [`Published::write_to`] appends.
    pub fn written_len(&self) -> usize {
        // "id: " + an i64 + two line ends.
        self.text.len() + 26
    }
}

/// Events published together (a batch of written results, counts with the final state): one
/// message on the channel, so a watcher wakes once for the lot.
pub type Batch = Arc<PublishedEvents>;

/// The events of a batch, and, when the batch is a run of consecutive results, the whole batch as
/// SSE text: a watcher that has sent every result before it (most watchers, most of the time)
/// queues that one shared text instead of each event, so what a watcher costs per result is a
/// share of one copy, not an allocation, a reference count and a copy of its own.
#[derive(Debug)]
pub struct PublishedEvents {
    pub events: Box<[Arc<Published>]>,
    pub text: Option<BatchText>,
}

/// A batch as SSE text, right for a watcher whose last result sent is `follows`: its results are
/// numbered `follows + 1` to `last`, and its other events carry the number of the result before
/// them.
#[derive(Debug)]
pub struct BatchText {
    pub follows: i64,
    pub last: i64,
    pub bytes: Bytes,
}

impl PublishedEvents {
    fn new(events: Vec<DeliveryEvent>) -> PublishedEvents {
        let events: Box<[Arc<Published>]> = events.into_iter().map(|event| Arc::new(Published::from(event))).collect();
        let text = BatchText::of(&events);
        PublishedEvents { events, text }
    }
}

impl BatchText {
    /// `None` unless the events hold results, numbered one after another, and no `final` event
    /// (which makes each watcher read the store first).
    fn of(events: &[Arc<Published>]) -> Option<BatchText> {
        let mut seqs = events.iter().filter_map(|published| match &published.event {
            DeliveryEvent::Target { target } => Some(target.seq),
            _ => None,
        });
        let follows = seqs.next()? - 1;
        let mut last = follows + 1;
        for seq in seqs {
            if seq != last + 1 {
                return None;
            }
            last = seq;
        }
        if events.iter().any(|published| matches!(published.event, DeliveryEvent::Final { .. })) {
            return None;
        }
        let mut text = Vec::with_capacity(events.iter().map(|published| published.written_len()).sum());
        let mut sent = follows;
        for published in events {
            if let DeliveryEvent::Target { target } = &published.event {
                sent = target.seq;
            }
            published.write_to(&mut text, sent);
        }
        Some(BatchText { follows, last, bytes: Bytes::from(text) })
    }
}

/// Watchers of one delivery share a channel; slow watchers skip ahead and get fresh counts.
#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Batch>>>,
}

/// Batches a channel holds for its slowest watcher before that watcher reads the store instead.
const CHANNEL_CAPACITY: usize = 1024;

impl Hub {
    pub fn subscribe(&self, delivery_id: &str) -> broadcast::Receiver<Batch> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.entry(delivery_id.to_owned()).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0).subscribe()
    }

    pub fn publish(&self, delivery_id: &str, event: DeliveryEvent) {
        self.publish_all(delivery_id, vec![event]);
    }

    /// Sends `events`, in order, as one message; nothing is rendered when nobody watches.
    pub fn publish_all(&self, delivery_id: &str, events: Vec<DeliveryEvent>) {
        if events.is_empty() {
            return;
        }
        let sender = {
            let channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match channels.get(delivery_id) {
                Some(sender) if sender.receiver_count() > 0 => sender.clone(),
                _ => return,
            }
        };
        let _ = sender.send(Arc::new(PublishedEvents::new(events)));
    }

    /// After the final event: watchers see the channel close once they have read everything.
    pub fn close(&self, delivery_id: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.remove(delivery_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::delivery::TargetStatus;

    fn result(seq: i64) -> DeliveryEvent {
        DeliveryEvent::Target {
            target: TargetEvent {
                seq,
                edge_id: format!("e{seq}"),
                name: "gw".into(),
                endpoint: "http://gw".into(),
                version: None,
                status: TargetStatus::Succeeded,
                reason: String::new(),
                failure_code: None,
            },
        }
    }

    fn counts() -> DeliveryEvent {
        DeliveryEvent::Counts { counts: Counts::default() }
    }

    /// The shared text is what a watcher in step would write event by event, and only offered
    /// when that watcher is well defined.
    #[test]
    fn a_batch_of_consecutive_results_is_shared_text_written_as_a_watcher_in_step_would() {
        // (case, events, the numbers the shared text follows and ends with)
        type Case = (&'static str, Vec<DeliveryEvent>, Option<(i64, i64)>);
        let cases: Vec<Case> = vec![
            ("one result", vec![result(5)], Some((4, 5))),
            ("consecutive results", vec![result(5), result(6), result(7)], Some((4, 7))),
            ("counts before and after", vec![counts(), result(5), counts(), result(6), counts()], Some((4, 6))),
            ("a gap", vec![result(5), result(7)], None),
            ("out of order", vec![result(6), result(5)], None),
            ("no result", vec![counts()], None),
            (
                "a final event",
                vec![
                    result(5),
                    DeliveryEvent::Final {
                        state: domain::delivery::DeliveryState::Succeeded,
                        counts: Counts::default(),
                    },
                ],
                None,
            ),
        ];
        for (case, events, expected) in cases {
            let batch = PublishedEvents::new(events);
            let text = batch.text.as_ref();
            assert_eq!(text.map(|t| (t.follows, t.last)), expected, "{case}");
            if let Some(text) = text {
                // Read back as a client would: every event, named, with the id a watcher in step
                // gives it (a result its number, another event the number of the result before).
                let read = sse::Parser::new().feed(&text.bytes);
                let mut before = text.follows;
                let expected: Vec<(String, Option<String>)> = batch
                    .events
                    .iter()
                    .map(|published| {
                        if let DeliveryEvent::Target { target } = &published.event {
                            before = target.seq;
                        }
                        (published.event.render().0.to_owned(), Some(before.to_string()))
                    })
                    .collect();
                let got: Vec<(String, Option<String>)> = read.into_iter().map(|e| (e.name, e.id)).collect();
                assert_eq!(got, expected, "{case}");
                assert!(text.bytes.len() <= batch.events.iter().map(|p| p.written_len()).sum(), "{case}");
            }
        }
    }
}
