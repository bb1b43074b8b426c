//! The time deliveries wait on: schedules (`start_at`), approval expiry, a rollout's deadlines.
//! The server reads the system clock; a test holds a manual clock it moves itself, so nothing
//! that waits for a time depends on how fast the machine is.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Clock(Arc<Kind>);

enum Kind {
    System,
    /// Milliseconds since the Unix epoch, moved only by `set` and `advance`.
    Manual(watch::Sender<i64>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Kind::System => f.write_str("Clock::System"),
            Kind::Manual(now) => write!(f, "Clock::Manual({})", *now.borrow()),
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(Kind::System))
    }

    /// A clock that stands at `start_ms` until moved.
    pub fn manual(start_ms: i64) -> Clock {
        Clock(Arc::new(Kind::Manual(watch::channel(start_ms).0)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &*self.0 {
            Kind::System => store::now_ms(),
            Kind::Manual(now) => *now.borrow(),
        }
    }

    /// Moves a manual clock forward (a system clock moves by itself; this does nothing to it).
    pub fn advance(&self, by: std::time::Duration) {
        if let Kind::Manual(now) = &*self.0 {
            now.send_modify(|now| *now += by.as_millis() as i64);
        }
    }

    /// Resolves when a manual clock moves; never for the system clock (callers also poll).
    pub async fn moved(&self) {
        match &*self.0 {
            Kind::System => std::future::pending().await,
            Kind::Manual(now) => {
                let mut watcher = now.subscribe();
                watcher.borrow_and_update();
                if watcher.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}
