//! Secrets at rest, password hashes and token hashes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Encrypts edge-service secrets with a key kept outside the database (data folder or
/// `EDGEFLEET_SECRET_KEY`), so a copy of the database alone reveals no password.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
    key: [u8; 32],
}

const PREFIX: &str = "v1:";

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox { cipher: ChaCha20Poly1305::new(&Key::from(*key)), key: *key }
    }

    /// A separate key for another purpose (`label`), so one secret never serves two uses.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(label.as_bytes());
        hasher.finalize().into()
    }

    pub fn generate_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        key
    }

    /// Empty stays empty (no secret).
    pub fn seal(&self, plain: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self.cipher.encrypt(&Nonce::from(nonce), plain.as_bytes()).unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{PREFIX}{}", STANDARD.encode(bytes))
    }

    pub fn open(&self, sealed: &str) -> Result<String, String> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or("stored secret is malformed")?;
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "stored secret is malformed")?;
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| "stored secret cannot be decrypted with this server's secret key")?;
        String::from_utf8(plain).map_err(|_| "stored secret is not text".to_owned())
    }
}

/// Compares secrets without an early exit, so the time taken says nothing about where they differ.
pub fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A new random token with a recognizable prefix (`efs_` sessions, `efp_` API tokens).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Verifies against `hash`, or against a fixed dummy when the user does not exist, so both
/// cases take the same time.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("dummy password for timing").unwrap_or_default());
    let stored = hash.unwrap_or(DUMMY.as_str());
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    ok && hash.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_differ_each_time() {
        let secret_box = SecretBox::new(&SecretBox::generate_key());
        let a = secret_box.seal("0000");
        assert_ne!(a, secret_box.seal("0000"));
        assert_eq!(secret_box.open(&a).as_deref(), Ok("0000"));
        assert_eq!(secret_box.open("").as_deref(), Ok(""));
        assert!(SecretBox::new(&SecretBox::generate_key()).open(&a).is_err());
    }

    #[test]
    fn passwords_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong", Some(&hash)));
        assert!(!verify_password("correct horse", None));
    }
}
