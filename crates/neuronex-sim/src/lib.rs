//! `neuronex-sim`: many simulated NeuronEX instances in one process.
//!
//! Each instance keeps its own eKuiper and Neuron state in memory, is created on first use (so a
//! 10,000-instance simulator costs memory only for the instances actually called), imitates the
//! engine versions its NeuronEX version bundles, and can be told to fail: errors, hangs, resets and
//! latency, reproducible with a seed. Tests steer and inspect instances through `/__sim/`.

pub mod agents;
mod auth;
mod ekuiper;
mod neuron;
mod plugin_zip;
mod reply;
mod server;
pub mod versions;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use auth::AuthMode;
pub use reply::Reply;
pub use server::{RunningSim, start};
use versions::{Engines, Version};

/// How the simulator is set up; the command line maps onto this one to one.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub count: u32,
    pub seed: u64,
    /// NeuronEX versions with weights, e.g. `[(3.6.0, 90), (2.9.0, 10)]`.
    pub versions: Vec<(Version, u32)>,
    /// When not empty, instance `k` reports `exact_versions[k % len]` instead of a weighted draw.
    pub exact_versions: Vec<Version>,
    pub auth: AuthMode,
    pub username: String,
    pub password: String,
    /// Folder of RS256 public keys; a token's `iss` names its key file.
    pub jwt_key_dir: Option<PathBuf>,
    pub token_ttl: Duration,
    pub faults: Faults,
    /// eKuiper's `basic.enablePrivateNet`: whether eKuiper 2.4+ (NeuronEX 3.9) may download
    /// plugins from loopback and private addresses. Off, as eKuiper ships.
    pub enable_private_net: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            count: 1,
            seed: 0,
            versions: vec![(Version::new(3, 6, 0), 100)],
            exact_versions: Vec::new(),
            auth: AuthMode::None,
            username: "admin".into(),
            password: "0000".into(),
            jwt_key_dir: None,
            token_ttl: Duration::from_secs(24 * 3600),
            faults: Faults::default(),
            enable_private_net: false,
        }
    }
}

/// Per-request fault probabilities and delays. Rates are in `[0, 1]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer 500 `{"error": 1001}` (Neuron's internal error) instead of doing the work.
    pub error_rate: f64,
    /// Never answer.
    pub timeout_rate: f64,
    /// Close the connection without an answer.
    pub reset_rate: f64,
    /// Answer 200 with an HTML page instead (a proxy or a captive portal in front of the gateway).
    pub garbage_rate: f64,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Every request is reset: the gateway is unreachable.
    pub offline: bool,
    /// Each status read of a running rule adds this many exceptions to it (a rule that throws).
    pub rule_exceptions: u64,
    /// Rules' sources receive nothing (by default each status read adds 10 records).
    pub silent_sources: bool,
}

/// Parses `3.6.0=90,2.9.0=10` (a bare `3.6.0` weighs 1).
pub fn parse_version_mix(text: &str) -> Result<Vec<(Version, u32)>, String> {
    let mut mix = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (version, weight) = part.split_once('=').unwrap_or((part, "1"));
        let version = Version::parse(version).ok_or_else(|| format!("`{version}` is not a version like 3.6.0"))?;
        let weight = weight.parse::<u32>().map_err(|_| format!("`{weight}` is not a whole-number weight"))?;
        mix.push((version, weight));
    }
    if mix.iter().map(|(_, w)| w).sum::<u32>() == 0 {
        return Err("the version mix needs at least one version with a weight above 0".into());
    }
    Ok(mix)
}

/// One line of the manifest: what a fleet registry needs to know about an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub index: u32,
    pub name: String,
    pub endpoint: String,
    pub version: String,
    pub tags: Vec<String>,
}

/// A request as an engine sees it: the path is what follows the instance prefix.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a HashMap<String, String>,
    pub body: &'a [u8],
}

impl Request<'_> {
    fn query_flag(&self, key: &str) -> bool {
        self.query.get(key).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
    }
}

pub struct Instance {
    pub index: u32,
    pub engines: Engines,
    ekuiper: ekuiper::Ekuiper,
    neuron: neuron::Neuron,
    tokens: HashMap<String, Instant>,
    faults: Option<Faults>,
    rng: StdRng,
    requests: BTreeMap<String, u64>,
    enable_private_net: bool,
}

/// What `PUT /__sim/instances/<k>/ekuiper-config` sets: the part of eKuiper's `etc/kuiper.yaml`
/// the simulator models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EkuiperConfig {
    pub enable_private_net: bool,
}

/// What the fault dice decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Serve,
    Error,
    Garbage,
    Hang,
    Reset,
}

pub struct Sim {
    config: SimConfig,
    instances: Mutex<HashMap<u32, Arc<Mutex<Instance>>>>,
    default_faults: Mutex<Faults>,
    http: reqwest::Client,
    started: Instant,
    /// Requests being answered now, across instances, and the most there ever were at once:
    /// how tests see that edgefleet paces its calls.
    in_flight: std::sync::atomic::AtomicUsize,
    peak_in_flight: std::sync::atomic::AtomicUsize,
}

/// Counts one request as in flight while it lives.
pub struct InFlight<'a>(&'a Sim);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Sim {
    /// Marks a request to an instance as in flight until the guard is dropped.
    pub fn enter(&self) -> InFlight<'_> {
        use std::sync::atomic::Ordering;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    /// The most requests that were being answered at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn new(config: SimConfig) -> Sim {
        let default_faults = Mutex::new(config.faults.clone());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Sim {
            config,
            instances: Mutex::new(HashMap::new()),
            default_faults,
            http,
            started: Instant::now(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            peak_in_flight: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The NeuronEX version instance `k` reports: a deterministic draw from the version mix.
    pub fn version_of(&self, k: u32) -> Version {
        if !self.config.exact_versions.is_empty() {
            return self.config.exact_versions[k as usize % self.config.exact_versions.len()];
        }
        let total: u32 = self.config.versions.iter().map(|(_, w)| w).sum();
        let mut point =
            (splitmix(self.config.seed ^ u64::from(k).wrapping_mul(0x9E37_79B9)) % u64::from(total.max(1))) as u32;
        for (version, weight) in &self.config.versions {
            if point < *weight {
                return *version;
            }
            point -= weight;
        }
        self.config.versions.first().map(|(v, _)| *v).unwrap_or(Version::new(3, 6, 0))
    }

    pub fn tags_of(&self, k: u32) -> Vec<String> {
        const ZONES: [&str; 4] = ["zone-a", "zone-b", "zone-c", "zone-d"];
        vec!["sim".to_owned(), ZONES[(k % 4) as usize].to_owned(), format!("line-{}", k % 3 + 1)]
    }

    pub fn instance(&self, k: u32) -> Option<Arc<Mutex<Instance>>> {
        if k >= self.config.count {
            return None;
        }
        let mut instances = lock(&self.instances);
        let instance = instances.entry(k).or_insert_with(|| Arc::new(Mutex::new(self.fresh_instance(k))));
        Some(Arc::clone(instance))
    }

    fn fresh_instance(&self, k: u32) -> Instance {
        Instance {
            index: k,
            engines: Engines::for_neuronex(self.version_of(k)),
            ekuiper: ekuiper::Ekuiper::default(),
            neuron: neuron::Neuron::default(),
            tokens: HashMap::new(),
            faults: None,
            rng: StdRng::seed_from_u64(self.config.seed ^ (u64::from(k) << 20) ^ 0x5eed),
            requests: BTreeMap::new(),
            enable_private_net: self.config.enable_private_net,
        }
    }

    pub fn instances_in_use(&self) -> usize {
        lock(&self.instances).len()
    }

    /// Serves one request to instance `k` (the path after its prefix).
    pub async fn serve(
        &self,
        k: u32,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let Some(instance) = self.instance(k) else {
            return Reply::text(404, format!("no simulated instance {k}"));
        };
        let (fate, delay) = {
            let mut inst = lock(&instance);
            *inst.requests.entry(format!("{method} {path}")).or_default() += 1;
            let faults = inst.faults.clone().unwrap_or_else(|| lock(&self.default_faults).clone());
            inst.roll(&faults)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match fate {
            Fate::Reset => return Reply::Reset,
            Fate::Hang => return Reply::Hang,
            Fate::Error => return reply::neuron_code(500, 1001),
            Fate::Garbage => return Reply::text(200, "<html><body>Welcome to the plant network</body></html>"),
            Fate::Serve => {}
        }
        let request = Request { method, path, query, body };
        let pending = {
            let mut inst = lock(&instance);
            if let Some(refused) = auth::check(self, &mut inst, &request, authorization) {
                return refused;
            }
            match inst.route(self, &request) {
                Ok(reply) => return reply,
                Err(pending) => pending,
            }
        };
        let guarded = {
            let inst = lock(&instance);
            inst.engines.download_guard() && !inst.enable_private_net
        };
        let download = match internal_address(&pending.url).filter(|_| guarded) {
            Some((ip, port)) => {
                Err(format!("Get \"{}\": dial tcp {ip}:{port}: ip {ip} is in internal network", pending.url))
            }
            None => self.download(&pending.url).await,
        };
        let mut inst = lock(&instance);
        let engines = inst.engines;
        inst.ekuiper.finish_plugin_install(&engines, &pending, download)
    }

    /// eKuiper's download step: http(s) with a 200 answer, or a local file.
    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        if let Some(path) = url.strip_prefix("file://") {
            return std::fs::read(path).map_err(|e| e.to_string());
        }
        let response = self.http.get(url).send().await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let reason = status.canonical_reason().unwrap_or_default();
            return Err(format!("cannot download the file with status: {} {reason}", status.as_u16()));
        }
        response.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string())
    }

    pub fn set_faults(&self, k: Option<u32>, faults: Option<Faults>) -> bool {
        match k {
            None => {
                *lock(&self.default_faults) = faults.unwrap_or_default();
                true
            }
            Some(k) => match self.instance(k) {
                Some(instance) => {
                    lock(&instance).faults = faults;
                    true
                }
                None => false,
            },
        }
    }

    pub fn reset_instance(&self, k: u32) -> bool {
        match self.instance(k) {
            Some(instance) => {
                *lock(&instance) = self.fresh_instance(k);
                true
            }
            None => false,
        }
    }

    pub fn set_ekuiper_config(&self, k: u32, config: &EkuiperConfig) -> bool {
        match self.instance(k) {
            Some(instance) => {
                lock(&instance).enable_private_net = config.enable_private_net;
                true
            }
            None => false,
        }
    }

    /// A NeuronEX restart: the engines keep what they persist (streams, rules, nodes, plugins);
    /// login tokens survive only before 3.7.1, which regenerates its key pair at every start.
    pub fn restart_instance(&self, k: u32) -> bool {
        match self.instance(k) {
            Some(instance) => {
                let mut inst = lock(&instance);
                if inst.engines.login_key_per_start() {
                    inst.tokens.clear();
                }
                true
            }
            None => false,
        }
    }

    pub fn expire_tokens(&self, k: u32) -> bool {
        match self.instance(k) {
            Some(instance) => {
                lock(&instance).tokens.clear();
                true
            }
            None => false,
        }
    }

    pub fn snapshot(&self, k: u32) -> Option<Value> {
        let instance = self.instance(k)?;
        let inst = lock(&instance);
        Some(json!({
            "index": k,
            "version": inst.engines.neuronex.to_string(),
            "ekuiper_version": inst.engines.ekuiper.to_string(),
            "neuron_version": inst.engines.neuron.to_string(),
            "faults": inst.faults,
            "ekuiper": inst.ekuiper.snapshot(&inst.engines),
            "neuron": inst.neuron.snapshot(),
            "requests": inst.requests,
        }))
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Instance {
    fn roll(&mut self, faults: &Faults) -> (Fate, Duration) {
        let jitter = if faults.jitter_ms > 0 { self.rng.gen_range(0..=faults.jitter_ms) } else { 0 };
        let delay = Duration::from_millis(faults.latency_ms + jitter);
        if faults.offline {
            return (Fate::Reset, delay);
        }
        let draw: f64 = self.rng.r#gen();
        let fate = if draw < faults.error_rate {
            Fate::Error
        } else if draw < faults.error_rate + faults.timeout_rate {
            Fate::Hang
        } else if draw < faults.error_rate + faults.timeout_rate + faults.reset_rate {
            Fate::Reset
        } else if draw < faults.error_rate + faults.timeout_rate + faults.reset_rate + faults.garbage_rate {
            Fate::Garbage
        } else {
            Fate::Serve
        };
        (fate, delay)
    }

    /// Routes a request to NeuronEX's own API or to one of its engines. A plugin install comes
    /// back as `Err` because it must download its zip without holding the instance lock.
    fn route(&mut self, sim: &Sim, req: &Request<'_>) -> Result<Reply, ekuiper::PendingInstall> {
        let engines = self.engines;
        let faults = self.faults.clone().unwrap_or_else(|| lock(&sim.default_faults).clone());
        self.ekuiper.health = ekuiper::RuleHealth {
            exceptions_per_read: faults.rule_exceptions,
            records_per_read: if faults.silent_sources { 0 } else { ekuiper::RECORDS_PER_READ },
        };
        if let Some(rest) = req.path.strip_prefix("/api/ekuiper") {
            let inner = Request { path: rest, ..*req };
            return match self.ekuiper.handle(&engines, &inner, now_ms()) {
                ekuiper::Outcome::Done(reply) => Ok(reply),
                ekuiper::Outcome::Download(pending) => Err(pending),
            };
        }
        if let Some(rest) = req.path.strip_prefix("/api/neuron") {
            let inner = Request { path: rest, ..*req };
            return Ok(self.neuron.handle(&engines, &inner));
        }
        Ok(match (req.method, req.path) {
            ("GET", "/api/version") => Reply::json(200, &json!({"version": engines.neuronex.to_string()})),
            ("GET", "/api/system") => Reply::json(
                200,
                &json!({"version": engines.neuronex.to_string(), "neuron": {"running": true, "version": engines.neuron.to_string()},
                        "ekuiper": {"running": true, "version": engines.ekuiper.to_string()},
                        "os": "linux", "arch": "x86_64", "uptime": sim.uptime().as_secs()}),
            ),
            _ => Reply::text(404, "404 page not found"),
        })
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding an instance lock must not take the whole simulator down.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The address eKuiper 2.4 would dial for a download URL, when it is one its guard refuses:
/// loopback, private, unspecified, multicast or link-local. Only IP literals and `localhost` are
/// judged; other names would need a resolver (an approximation documented in SIMULATOR.md).
fn internal_address(url: &str) -> Option<(std::net::IpAddr, u16)> {
    use std::net::{IpAddr, Ipv4Addr};
    let url = reqwest::Url::parse(url).ok()?;
    let port = url.port_or_known_default()?;
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        url::Host::Domain(_) => return None,
    };
    let internal = match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_unspecified() || v4.is_multicast() || v4.is_link_local()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    internal.then_some((ip, port))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
