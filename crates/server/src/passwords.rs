//! Password hashing with a bound on memory. Each Argon2id hash takes 19 MiB and tens of
//! milliseconds of a core; unbounded, 256 parallel sign-ins took the server from 18 MB to 4.9 GB.
//! A few hashes run at once (`slots`), a bounded number of sign-ins wait for a slot (`queue`), and
//! the rest are told to come back (503 `server_busy` with `Retry-After`). Hashing runs on threads
//! of its own, one per slot, never on the threads that answer other requests: the allocator keeps
//! a freed 19 MiB block in the arena of the thread that used it, so on the (many) threads of the
//! blocking pool each hash left its own block behind (256 sign-ins peaked at 690 MiB); on a few
//! threads of their own the same blocks are used again. A hashing thread keeps its block while
//! sign-ins keep coming and gives it back after [`HASH_MEMORY_LINGER`] without one, so a burst of
//! sign-ins long past does not hold 19 MiB per slot for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::crypto;
use crate::error::{ApiError, ErrorCode};

pub struct Passwords {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    jobs: flume::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// How long a hashing thread keeps its 19 MiB without a sign-in to hash. Allocating the block
/// afresh costs a sign-in about 6 ms (17 ms against 23 ms, sequential sign-ins measured over
/// HTTP), so sign-ins in a row keep it; an idle server holds none.
const HASH_MEMORY_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Longest a sign-in waits for a hashing slot before it is told to come back.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest password accepted anywhere (Argon2 reads all of it).
pub const MAX_PASSWORD_CHARS: usize = 1024;

impl Passwords {
    pub fn new(slots: usize, queue: usize) -> Passwords {
        let slots = slots.max(1);
        // Each thread takes jobs from the one queue and waits with its own timeout (one receiver
        // shared behind a lock would let the thread waiting in it keep the others from giving back).
        let (jobs, inbox) = flume::unbounded::<Job>();
        for k in 0..slots {
            let inbox = inbox.clone();
            let spawned = std::thread::Builder::new().name(format!("password-hash-{k}")).spawn(move || {
                loop {
                    match inbox.recv_timeout(HASH_MEMORY_LINGER) {
                        Ok(job) => job(),
                        Err(flume::RecvTimeoutError::Timeout) => crypto::release_hash_memory(),
                        Err(flume::RecvTimeoutError::Disconnected) => return, // the server is gone
                    }
                }
            });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "cannot start a password-hashing thread");
            }
        }
        Passwords { slots: Arc::new(Semaphore::new(slots)), waiting: AtomicUsize::new(0), queue, jobs }
    }

    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let password = password.to_owned();
        self.run(move || crypto::hash_password(&password)).await?.map_err(ApiError::internal)
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is no user, so both
    /// take the same time.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, ApiError> {
        let password = password.to_owned();
        self.run(move || crypto::verify_password(&password, hash.as_deref())).await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let waiting = WaitingGuard::enter(&self.waiting);
                if waiting.count > self.queue {
                    return Err(busy());
                }
                // A waiting sign-in gives up after a while rather than waiting without end.
                match tokio::time::timeout(MAX_WAIT, Arc::clone(&self.slots).acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) | Err(_) => return Err(busy()),
                }
            }
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = done.send(work());
        });
        self.jobs.send(job).map_err(|_| ApiError::internal("the password-hashing threads are gone"))?;
        result.await.map_err(|_| ApiError::internal("a password-hashing thread stopped"))
    }
}

fn busy() -> ApiError {
    ApiError::new(ErrorCode::ServerBusy, "too many sign-ins are being checked right now; try again in a second")
        .with_details(serde_json::json!({"retry_after_secs": 1}))
}

/// Counts a sign-in waiting for a slot while it is held.
struct WaitingGuard<'a> {
    counter: &'a AtomicUsize,
    count: usize,
}

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a AtomicUsize) -> WaitingGuard<'a> {
        let count = counter.fetch_add(1, Ordering::SeqCst) + 1;
        WaitingGuard { counter, count }
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

/// At least 10 characters, at most 1024, not one repeated character, not the username.
pub fn check_strength(username: &str, password: &str) -> Result<(), String> {
    let count = password.chars().count();
    if count < 10 {
        return Err("use at least 10 characters".into());
    }
    if count > MAX_PASSWORD_CHARS {
        return Err(format!("use at most {MAX_PASSWORD_CHARS} characters"));
    }
    if password.chars().all(|c| password.starts_with(c)) {
        return Err("one character repeated is not a password".into());
    }
    if password.eq_ignore_ascii_case(username) {
        return Err("the password must not be the username".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every slot busy and the queue full, a sign-in is told to come back instead of
    /// waiting (and holding memory) without bound.
    #[tokio::test]
    async fn past_the_slots_and_the_queue_sign_ins_are_refused_at_once() {
        let passwords = Arc::new(Passwords::new(1, 1));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let busy_slot = {
            let passwords = Arc::clone(&passwords);
            tokio::spawn(async move {
                passwords
                    .run(move || {
                        let _ = started.send(());
                        let _ = hold.recv();
                    })
                    .await
            })
        };
        running.await.expect("the slot is taken");
        let queued = {
            let passwords = Arc::clone(&passwords);
            tokio::spawn(async move { passwords.run(|| 7).await })
        };
        while passwords.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = passwords.run(|| 8).await.expect_err("queue full");
        assert_eq!(refused.code, crate::error::ErrorCode::ServerBusy);
        release.send(()).expect("release");
        busy_slot.await.expect("join").expect("ran");
        assert_eq!(queued.await.expect("join").expect("the queued one ran"), 7);
    }

    #[test]
    fn weak_passwords_are_named() {
        assert!(check_strength("admin", "admin").is_err());
        assert!(check_strength("maria", "aaaaaaaaaaaa").is_err());
        assert!(check_strength("maria", &"ab".repeat(600)).is_err());
        assert!(check_strength("maria", "correct horse battery").is_ok());
    }
}
