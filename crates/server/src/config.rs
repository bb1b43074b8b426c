//! Server settings. The binary fills this from flags, `EDGEFLEET_*` variables and a TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use domain::network::Cidr;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default SQLite in the data folder.
    pub database_url: Option<String>,
    /// Plugin packages; default `<data_dir>/blobs`.
    pub blob_dir: Option<PathBuf>,
    /// Password of the first `admin` on an empty database; generated and printed when absent.
    pub admin_password: Option<String>,
    /// 32-byte key (64 hex digits) that encrypts edge secrets; default a key file in the data folder.
    pub secret_key: Option<String>,
    /// How often every edge service's version and reachability are read.
    pub probe_interval: Duration,
    /// How often every edge's last delivered objects are read back and compared (one round across
    /// all replicas).
    pub drift_interval: Duration,
    pub edge_connect_timeout: Duration,
    pub edge_request_timeout: Duration,
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Largest plugin package.
    pub max_plugin_bytes: u64,
    /// The URL edges reach this server at, for plugin downloads; default the listen address.
    pub public_url: Option<String>,
    /// How long a console or API login lasts.
    pub session_ttl: Duration,
    /// Whether this process works on deliveries and probes; `false` makes an API-only replica.
    pub worker: bool,
    /// Networks edge endpoints may point to; empty means every address except loopback,
    /// link-local, unspecified, multicast and this server's own (see `domain::network`).
    pub edge_networks: Vec<Cidr>,
    /// How long a rotated project JWT key keeps signing, so operators can install the new public
    /// key on every edge first.
    pub jwt_overlap: Duration,
    /// Password hashes (Argon2id, 19 MiB each) computed at once; more sign-ins wait.
    pub password_hash_slots: usize,
    /// Sign-ins waiting for a hashing slot before more are answered 503.
    pub password_hash_queue: usize,
    /// Largest template document (after decoding), in bytes.
    pub max_document_bytes: usize,
    /// Most `${...}` placeholders in one template document.
    pub max_placeholders: usize,
    /// Most targets in one delivery.
    pub max_targets: usize,
    /// Most deliveries running at once in one project.
    pub max_running_deliveries: i64,
    /// Most live-event streams open at once in this process.
    pub max_event_streams: u64,
    /// The first wait of an account past its free sign-in attempts (doubling after).
    pub sign_in_backoff: Duration,
    /// The time schedules, approvals and deadlines are measured by (tests hold a manual one).
    pub clock: crate::clock::Clock,
    /// The MQTT broker agents are reached through (`mqtt://user:password@host:1883`,
    /// `mqtts://...`, `?version=5`); agent mode is off without it.
    pub mqtt_url: Option<String>,
    /// The broker's CA certificate (PEM) for `mqtts://`; the system's roots otherwise.
    pub mqtt_ca_file: Option<PathBuf>,
    /// The broker URL agents are told to use, when they reach it under another name than the
    /// server does; default `mqtt_url` without its credentials.
    pub agent_mqtt_url: Option<String>,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            database_url: None,
            blob_dir: None,
            admin_password: None,
            secret_key: None,
            probe_interval: Duration::from_secs(30),
            drift_interval: Duration::from_secs(300),
            mqtt_url: None,
            mqtt_ca_file: None,
            agent_mqtt_url: None,
            edge_connect_timeout: Duration::from_secs(5),
            edge_request_timeout: Duration::from_secs(15),
            max_body_bytes: 16 * 1024 * 1024,
            max_plugin_bytes: 256 * 1024 * 1024,
            public_url: None,
            session_ttl: Duration::from_secs(12 * 3600),
            worker: true,
            edge_networks: Vec::new(),
            jwt_overlap: Duration::from_secs(24 * 3600),
            password_hash_slots: 4,
            password_hash_queue: 64,
            max_document_bytes: 4 * 1024 * 1024,
            max_placeholders: 10_000,
            max_targets: 200_000,
            max_running_deliveries: 50,
            max_event_streams: 2000,
            sign_in_backoff: Duration::from_secs(1),
            clock: crate::clock::Clock::system(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("edgefleet.db").display()))
    }

    /// The database URL with any password replaced by `***`, for messages and logs.
    pub fn database_url_for_display(&self) -> String {
        redact_url_password(&self.database_url())
    }

    /// Whether people reach the server over https (cookies are then marked `Secure`).
    pub fn served_over_https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.blob_dir.clone().unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url_password;

    #[test]
    fn database_passwords_never_show() {
        assert_eq!(redact_url_password("postgres://ef:s3cr@t@db:5432/ef"), "postgres://ef:***@db:5432/ef");
        assert_eq!(redact_url_password("postgres://ef@db/ef"), "postgres://ef@db/ef");
        assert_eq!(redact_url_password("sqlite:///var/lib/x.db"), "sqlite:///var/lib/x.db");
    }
}
