//! Fan-out of live delivery events to SSE watchers in this process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

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
    pub fn write_to(&self, frame: &mut String, id: i64) {
        frame.push_str(&self.text);
        if !matches!(self.event, DeliveryEvent::Target { .. }) {
            // Writing to a String cannot fail.
            let _ = write!(frame, "id: {id}\n\n");
        }
    }
}

/// Events published together (a batch of written results, counts with the final state): one
/// message on the channel, so a watcher wakes once for the lot.
pub type Batch = Arc<[Arc<Published>]>;

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
        let batch: Batch = events.into_iter().map(|event| Arc::new(Published::from(event))).collect();
        let _ = sender.send(batch);
    }

    /// After the final event: watchers see the channel close once they have read everything.
    pub fn close(&self, delivery_id: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.remove(delivery_id);
    }
}
