//! The time deliveries wait on: schedules (`start_at`), approval expiry, a rollout's deadlines.
//! The server reads the system clock; a test holds a manual clock it moves itself, so nothing
//! that waits for a time depends on how fast the machine is.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Clock(Arc<Kind>);

enum Kind {
    System,
    /// Milliseconds since the Unix epoch, moved only by `advance`, and how many tasks wait on it.
    Manual(watch::Sender<i64>, watch::Sender<usize>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Kind::System => f.write_str("Clock::System"),
            Kind::Manual(now, _) => write!(f, "Clock::Manual({})", *now.borrow()),
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
        Clock(Arc::new(Kind::Manual(watch::channel(start_ms).0, watch::channel(0).0)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &*self.0 {
            Kind::System => store::now_ms(),
            Kind::Manual(now, _) => *now.borrow(),
        }
    }

    /// Moves a manual clock forward (a system clock moves by itself; this does nothing to it).
    pub fn advance(&self, by: std::time::Duration) {
        if let Kind::Manual(now, _) = &*self.0 {
            now.send_modify(|now| *now += by.as_millis() as i64);
        }
    }

    /// Resolves once the clock reads `at_ms` or later.
    pub async fn sleep_until(&self, at_ms: i64) {
        match &*self.0 {
            Kind::System => {
                let left = at_ms - store::now_ms();
                if left > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(left as u64)).await;
                }
            }
            Kind::Manual(now, sleepers) => {
                sleepers.send_modify(|n| *n += 1);
                let _awake = Awake(sleepers);
                let mut watcher = now.subscribe();
                while *watcher.borrow_and_update() < at_ms {
                    if watcher.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Resolves when a manual clock moves; never for the system clock (callers also poll).
    pub async fn moved(&self) {
        match &*self.0 {
            Kind::System => std::future::pending().await,
            Kind::Manual(now, _) => {
                let mut watcher = now.subscribe();
                watcher.borrow_and_update();
                if watcher.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Counts a task out of a manual clock's sleepers, however its wait ends.
struct Awake<'a>(&'a watch::Sender<usize>);

impl Drop for Awake<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Clock {
    /// Resolves once `count` tasks wait on a manual clock (tests move it only then, so nothing
    /// depends on how fast the waiting tasks got there); at once for the system clock.
    pub async fn sleepers(&self, count: usize) {
        if let Kind::Manual(_, sleepers) = &*self.0 {
            let mut watcher = sleepers.subscribe();
            let _ = watcher.wait_for(|n| *n >= count).await;
        }
    }
}
