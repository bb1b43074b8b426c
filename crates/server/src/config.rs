//! Server settings. The binary fills this from flags, `EDGEFLEET_*` variables and a TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
            edge_connect_timeout: Duration::from_secs(5),
            edge_request_timeout: Duration::from_secs(15),
            max_body_bytes: 16 * 1024 * 1024,
            max_plugin_bytes: 256 * 1024 * 1024,
            public_url: None,
            session_ttl: Duration::from_secs(12 * 3600),
            worker: true,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("edgefleet.db").display()))
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.blob_dir.clone().unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}
