//! Sign-in throttling with back-off, shared by every replica through the database.
//!
//! Each attempt is counted *before* the password is checked, in one statement, so parallel
//! guesses cannot slip past the limit (before, 59 parallel wrong passwords and the right one got a
//! token). A subject gets a few free attempts per window; after that each further attempt must
//! wait twice as long as the one before (1 s, 2 s, 4 s ... at most 5 minutes) since the previous
//! attempt. Subjects:
//! - `user:<name>`: every attempt on a username, from anywhere;
//! - `addr:<ip>`: wrong passwords from one address (whatever the username), with a much higher
//!   allowance; right passwords never count here, since many people may share one address behind
//!   a proxy or a plant's NAT;
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
    /// The first wait of an account or device past its free attempts.
    pub first_wait: Duration,
    /// The first wait of an address past its allowance (one account starts at 1 s): a hundred
    /// wrong passwords from one place is an attack, not a typo.
    pub address_first_wait: Duration,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            window: Duration::from_secs(15 * 60),
            free_per_user: 5,
            free_per_device: 10,
            free_per_address: 100,
            max_wait: Duration::from_secs(300),
            first_wait: Duration::from_secs(1),
            address_first_wait: Duration::from_secs(30),
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
    /// Counts the attempt and decides; `device` is a verified device identity.
    ///
    /// The account (or device) is counted atomically before the password is checked: that is
    /// what stops parallel guesses at one account. The address is only looked at here and counted
    /// when a password turns out wrong, so successful sign-ins from a shared address (a proxy, a
    /// plant's NAT) never slow anyone down.
    pub async fn attempt(
        &self,
        store: &Store,
        username: &str,
        address: &str,
        device: Option<&str>,
    ) -> store::Result<Verdict> {
        let now = store::now_ms();
        let window_ms = self.window.as_millis() as i64;
        let (subject, free) = match device {
            Some(device) => (format!("device:{username}:{device}"), self.free_per_device),
            None => (format!("user:{username}"), self.free_per_user),
        };
        let count = store.count_login_attempt(&subject, now, window_ms).await?;
        if let Some(secs) = self.wait(count, free, now, self.first_wait) {
            return Ok(Verdict::Wait { subject, secs });
        }
        if device.is_none() {
            let subject = format!("addr:{address}");
            if let Some(failures) = store.peek_login_attempts(&subject, now, window_ms).await?
                && let Some(secs) = self.wait(
                    store::AttemptCount { attempts: failures.attempts + 1, previous_at: failures.previous_at },
                    self.free_per_address,
                    now,
                    self.address_first_wait,
                )
            {
                return Ok(Verdict::Wait { subject, secs });
            }
        }
        Ok(Verdict::Go)
    }

    /// Seconds left to wait before an attempt numbered `count.attempts`, if any.
    fn wait(&self, count: store::AttemptCount, free: i64, now: i64, first_wait: Duration) -> Option<u64> {
        let over = count.attempts - free;
        if over <= 0 {
            return None;
        }
        let wait_ms = self.backoff(over, first_wait).as_millis() as i64;
        let waited = now - count.previous_at;
        (waited < wait_ms).then(|| ((wait_ms - waited) as u64).div_ceil(1000).max(1))
    }

    /// A wrong password: the address is counted too (the account was counted before the check).
    pub async fn failed(&self, store: &Store, address: &str, device: Option<&str>) -> store::Result<()> {
        if device.is_none() {
            store
                .count_login_attempt(&format!("addr:{address}"), store::now_ms(), self.window.as_millis() as i64)
                .await?;
        }
        Ok(())
    }

    /// The wait before the `over`-th attempt beyond the free ones: the first wait, doubled each
    /// time, capped.
    fn backoff(&self, over: i64, first_wait: Duration) -> Duration {
        let doubling = (over.clamp(1, 20) - 1) as u32;
        first_wait.saturating_mul(1 << doubling).min(self.max_wait)
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
