//! Content-addressed plugin packages on disk (`<blob_dir>/sha256/ab/<sha>`), and the short-lived
//! signed links edges download them from.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn open(root: &Path) -> std::io::Result<BlobStore> {
        std::fs::create_dir_all(root.join("sha256"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root: root.to_owned() })
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(&sha256[..2.min(sha256.len())]).join(sha256)
    }

    /// A temporary file beside the blobs (same file system, so it can be renamed into place);
    /// removed when dropped unless committed.
    pub fn temp_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new().prefix("upload-").tempfile_in(self.root.join("tmp"))
    }

    /// Moves a fully written, synced upload into place under its hash.
    pub fn commit(&self, temp: tempfile::NamedTempFile, sha256: &str) -> std::io::Result<()> {
        let path = self.path(sha256);
        if path.exists() {
            return Ok(());
        }
        temp.as_file().sync_all()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn remove(&self, sha256: &str) {
        let _ = std::fs::remove_file(self.path(sha256));
    }

    pub fn exists(&self, sha256: &str) -> bool {
        self.path(sha256).exists()
    }
}

/// Signs and checks package links: `/edge/packages/{sha}/{expires}/{signature}/{name}.zip`. The
/// signature lives in the path because eKuiper insists the URL ends in `.zip`.
pub struct PackageLinks {
    base_url: String,
    key: [u8; 32],
    ttl_secs: u64,
}

impl PackageLinks {
    pub fn new(base_url: &str, key: [u8; 32], ttl_secs: u64) -> PackageLinks {
        PackageLinks { base_url: base_url.trim_end_matches('/').to_owned(), key, ttl_secs }
    }

    pub fn url(&self, sha256: &str, name: &str) -> String {
        let expires = now_secs() + self.ttl_secs;
        let signature = self.sign(sha256, expires, name);
        format!("{}/edge/packages/{sha256}/{expires}/{signature}/{name}.zip", self.base_url)
    }

    /// Checks a link's parts as they came in the path. `expires` must be written as the signer
    /// writes it (digits, no sign, no leading zero), so one signature fits one spelling only.
    pub fn verify(&self, sha256: &str, expires: &str, signature: &str, name: &str) -> Result<(), &'static str> {
        let canonical = !expires.is_empty()
            && expires.bytes().all(|b| b.is_ascii_digit())
            && (expires == "0" || !expires.starts_with('0'));
        let expires: u64 = match expires.parse() {
            Ok(value) if canonical => value,
            _ => return Err("the link's expiry is not a number"),
        };
        let expected = self.sign(sha256, expires, name);
        if !crate::crypto::equal_in_constant_time(expected.as_bytes(), signature.as_bytes()) {
            return Err("the link's signature is wrong");
        }
        if expires < now_secs() {
            return Err("the link has expired");
        }
        Ok(())
    }

    fn sign(&self, sha256: &str, expires: u64, name: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(format!("{sha256}/{expires}/{name}").as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_refuse_tampering() {
        let links = PackageLinks::new("http://h:1/", [7; 32], 60);
        let url = links.url("abc", "pysam");
        let parts: Vec<&str> = url.trim_start_matches("http://h:1/edge/packages/").split('/').collect();
        let expires = parts[1];
        assert!(links.verify("abc", expires, parts[2], "pysam").is_ok());
        assert!(links.verify("abd", expires, parts[2], "pysam").is_err());
        let later = (expires.parse::<u64>().expect("expires") + 1).to_string();
        assert!(links.verify("abc", &later, parts[2], "pysam").is_err());
        for respelled in [format!("+{expires}"), format!("0{expires}"), format!("{expires} ")] {
            assert_eq!(links.verify("abc", &respelled, parts[2], "pysam"), Err("the link's expiry is not a number"));
        }
        let expired = PackageLinks::new("http://h:1", [7; 32], 0);
        let old = expired.sign("abc", 1, "pysam");
        assert_eq!(expired.verify("abc", "1", &old, "pysam"), Err("the link has expired"));
    }
}
