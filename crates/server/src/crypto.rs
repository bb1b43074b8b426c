//! Secrets at rest, password hashes and token hashes.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Argon2id with its defaults (19 MiB, 2 passes, 1 lane) in PHC string form.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
    })
    .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Verifies against `hash`, or against a fixed dummy when the user does not exist, so both
/// cases take the same time.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("dummy password for timing").unwrap_or_default());
    let stored = hash.unwrap_or(DUMMY.as_str());
    let ok = verify_phc(password, stored).unwrap_or(false);
    ok && hash.is_some()
}

fn verify_phc(password: &str, stored: &str) -> Option<bool> {
    let phc = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::try_from(phc.algorithm.as_str()).ok()?;
    let version = phc.version.map_or(Some(Version::V0x13), |v| Version::try_from(v).ok())?;
    let expected = phc.hash.as_ref()?;
    let stored_params = Params::try_from(&phc).ok()?;
    let params = argon2::ParamsBuilder::new()
        .m_cost(stored_params.m_cost())
        .t_cost(stored_params.t_cost())
        .p_cost(stored_params.p_cost())
        .output_len(expected.len())
        .build()
        .ok()?;
    let salt = phc.salt.as_ref()?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    with_memory(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, blocks)
    })
    .ok()?;
    Some(equal_in_constant_time(&out, expected.as_bytes()))
}

thread_local! {
    /// This thread's Argon2 memory: see [`with_memory`].
    static HASH_MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `work` with this thread's Argon2 memory, grown to `blocks` if needed. Hashing runs on a
/// few threads of its own (`passwords.rs`), so the memory is as many blocks of 19 MiB, used again
/// through a burst of sign-ins: allocating 19 MiB per hash left the freed blocks scattered over
/// the allocator's arenas (60 sequential hashes held 600 MiB).
fn with_memory<T>(blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    HASH_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        work(&mut memory[..blocks])
    })
}

/// Gives this thread's Argon2 memory back, once no sign-in has come for a while. Under the
/// server's allocator settings (ADR 13) a block this large is mapped on its own, so freeing it
/// returns it to the system at once.
pub fn release_hash_memory() {
    HASH_MEMORY.with(|memory| drop(std::mem::take(&mut *memory.borrow_mut())));
}

/// Argon2 blocks this thread holds (for tests).
#[cfg(test)]
fn held_hash_blocks() -> usize {
    HASH_MEMORY.with(|memory| memory.borrow().len())
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
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse", Some(&hash)));
        // Hashes stored before (made by the argon2 crate's own encoder) still verify.
        use argon2::PasswordHasher;
        let earlier = Argon2::default().hash_password_with_salt(b"old password", b"saltsaltsaltsalt").expect("hash");
        let earlier = earlier.to_string();
        assert!(verify_password("old password", Some(&earlier)));
        assert!(!verify_password("not it", Some(&earlier)));
        assert!(!verify_password("wrong", Some(&hash)));
        assert!(!verify_password("correct horse", None));
    }

    /// The 19 MiB a hash works in stays with the thread for the next hash until it is given back,
    /// and hashing after that grows it again.
    #[test]
    fn hash_memory_is_kept_until_released() {
        let hash = hash_password("correct horse").expect("hash");
        let blocks = Params::default().block_count();
        assert_eq!(held_hash_blocks(), blocks);
        assert!(verify_password("correct horse", Some(&hash)));
        assert_eq!(held_hash_blocks(), blocks);
        release_hash_memory();
        assert_eq!(held_hash_blocks(), 0);
        assert!(verify_password("correct horse", Some(&hash)));
        assert_eq!(held_hash_blocks(), blocks);
    }
}
