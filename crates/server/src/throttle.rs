//! Sign-in throttling with back-off, shared by every replica through the database.
//!
//! Each attempt is counted *before* the password is checked, in one statement, so parallel
//! guesses cannot slip past the limit (before, 59 parallel wrong passwords and the right one got a
//! token). A subject gets a few free attempts per window; after that each further attempt must
//! wait twice as long as the one before (1 s, 2 s, 4 s ... at most 5 minutes) since the previous
//! attempt. Subjects:
//! - `user:<name>`: every attempt on a username, from anywhere;
//! - `addr:<ip>`: every attempt from one address, with a much higher allowance, since many people
//!   may share one address behind a proxy;
//! - `device:<name>:<id>`: a browser or client that signed in as that user before and shows the
//!   device token it got then. Its attempts are counted on their own, so someone guessing a
//!   username's password elsewhere never locks out the person who owns it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use store::Store;

use crate::crypto;

pub struct Throttle {
    /// Attempts are counted within this window; a quiet window starts again from zero.
    pub window: Duration,
    pub free_per_user: i64,
    pub free_per_device: i64,
    pub free_per_address: i64,
    /// The longest back-off.
    pub max_wait: Duration,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            window: Duration::from_secs(15 * 60),
            free_per_user: 5,
            free_per_device: 10,
            free_per_address: 100,
            max_wait: Duration::from_secs(300),
        }
    }
}

/// What to do with a sign-in attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password.
    Go,
    /// Refuse without checking; the subject and how long to wait.
    Wait { subject: String, secs: u64 },
}

impl Throttle {
    /// Counts the attempt on each subject and decides; `device` is a verified device identity.
    pub async fn attempt(
        &self,
        store: &Store,
        username: &str,
        address: &str,
        device: Option<&str>,
    ) -> store::Result<Verdict> {
        let subjects = match device {
            Some(device) => vec![(format!("device:{username}:{device}"), self.free_per_device)],
            None => vec![
                (format!("user:{username}"), self.free_per_user),
                (format!("addr:{address}"), self.free_per_address),
            ],
        };
        let now = store::now_ms();
        let window_ms = self.window.as_millis() as i64;
        let mut verdict = Verdict::Go;
        for (subject, free) in subjects {
            let count = store.count_login_attempt(&subject, now, window_ms).await?;
            let over = count.attempts - free;
            if over <= 0 || verdict != Verdict::Go {
                continue;
            }
            let wait_ms = self.backoff(over).as_millis() as i64;
            let waited = now - count.previous_at;
            if waited < wait_ms {
                let secs = ((wait_ms - waited) as u64).div_ceil(1000).max(1);
                verdict = Verdict::Wait { subject, secs };
            }
        }
        Ok(verdict)
    }

    /// The wait before the `over`-th attempt beyond the free ones: 1 s, 2 s, 4 s, ... capped.
    fn backoff(&self, over: i64) -> Duration {
        let doubling = over.clamp(1, 20) - 1;
        Duration::from_secs(1u64 << doubling).min(self.max_wait)
    }

    /// A right password: the count it was made under starts again. A sign-in from a known device
    /// leaves the username's count alone, so guessing elsewhere stays slowed down.
    pub async fn succeeded(&self, store: &Store, username: &str, device: Option<&str>) -> store::Result<()> {
        let subject = match device {
            Some(device) => format!("device:{username}:{device}"),
            None => format!("user:{username}"),
        };
        store.clear_login_attempts(&subject).await?;
        // Keeps the table as small as the recent attempts.
        store.purge_login_attempts(store::now_ms() - 2 * self.window.as_millis() as i64).await?;
        Ok(())
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Device tokens: `<random id>.<HMAC of user id and id>`, given at a successful sign-in.
pub struct DeviceTokens {
    key: [u8; 32],
}

impl DeviceTokens {
    pub fn new(key: [u8; 32]) -> DeviceTokens {
        DeviceTokens { key }
    }

    pub fn issue(&self, user_id: &str) -> String {
        let id = crypto::new_token("")[..24].to_owned();
        format!("{id}.{}", self.mac(user_id, &id))
    }

    /// The device id, when the token was issued to this user by this server.
    pub fn verify(&self, user_id: &str, token: &str) -> Option<String> {
        let (id, mac) = token.split_once('.')?;
        if id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let expected = self.mac(user_id, id);
        crypto::equal_in_constant_time(expected.as_bytes(), mac.as_bytes()).then(|| id.to_owned())
    }

    fn mac(&self, user_id: &str, id: &str) -> String {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(user_id.as_bytes());
        mac.update(b"\n");
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}
