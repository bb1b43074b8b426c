//! Typed calls to a NeuronEX edge service (its own API, eKuiper under `/api/ekuiper`, Neuron under
//! `/api/neuron`), with login-token reuse, RS256 JWT signing, timeouts, and one structured
//! [`EdgeError`] for every failure. This crate is the only place edgefleet makes outbound HTTP calls.

mod error;
mod jwt;
mod policy;
mod readback;
mod relay;
mod restore;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::network::NetworkPolicy;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use error::{EdgeError, Failure, Retry, VersionClash, human_duration, neuron_code_text, tries_word};
pub use jwt::{JwtError, JwtGrant, JwtSigner, TOKEN_LIFETIME, generate_rsa_keypair, public_pem_of};
pub use readback::is_absent;
pub use relay::{
    ANSWERS_BYTES, AgentRoute, CallAnswer, MAX_READS, MAX_WRITES, Relay, RelayAnswer, RelayFuture, RelayRequest, Via,
    WRITES_BODY_BYTES, WriteCall,
};
pub use restore::RestoreError;
pub use writes::Write;

/// How edgefleet proves itself to an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeAuth {
    None,
    /// NeuronEX's `POST /api/login`; the token is reused until the edge answers 401.
    Basic {
        username: String,
        password: String,
    },
    /// RS256 tokens signed by the edge's project key, minted for this edge and this piece of work.
    Jwt(JwtGrant),
}

/// One edge to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTarget {
    /// Base URL, `http(s)://host:port[/prefix]`, without a trailing slash. Through an agent, the
    /// agent's own `--neuronex` is used and this is only shown.
    pub endpoint: String,
    pub auth: EdgeAuth,
    pub via: Via,
}

impl EdgeTarget {
    /// An edge edgefleet calls itself.
    pub fn http(endpoint: impl Into<String>, auth: EdgeAuth) -> EdgeTarget {
        EdgeTarget { endpoint: endpoint.into(), auth, via: Via::Http }
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Where edges may be; checked on every connection (see `domain::network`).
    pub policy: NetworkPolicy,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            policy: NetworkPolicy::default(),
        }
    }
}

/// The HTTP client could not be set up (no TLS roots, no resolver): a process that cannot talk to
/// edges must say so at start, not run without timeouts.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the edge HTTP client: {0}")]
pub struct BuildError(String);

/// Shared by all deliveries of a process: one connection pool, one token cache.
#[derive(Clone)]
pub struct EdgeClient {
    http: reqwest::Client,
    config: ClientConfig,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

/// A rule's run state as the edge reports it, across eKuiper 1.x and 2.x shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleStatus {
    pub running: bool,
    /// The edge's own status string (`running`, `Running`, `stopped by error`, `Stopped: ...`).
    pub status: String,
    /// Why it stopped, when the edge says.
    pub message: String,
    /// Exceptions counted by all its operators (`*_exceptions_total`), summed.
    pub exceptions: u64,
    /// Records its sources took in (`source_*_records_in_total`), summed.
    pub records_in: u64,
    /// The latest `*_last_exception` text it reports, if any.
    pub last_exception: String,
}

/// One installed portable plugin, as `GET /plugins/portables` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortablePlugin {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub executable: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub sinks: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
}

/// The drivers document with `description: ""` added to every tag that lacks one.
fn with_tag_descriptions(document: &Value) -> Value {
    let mut document = document.clone();
    let nodes = document.get_mut("nodes").and_then(Value::as_array_mut).into_iter().flatten();
    let groups = nodes.filter_map(|node| node.get_mut("groups").and_then(Value::as_array_mut)).flatten();
    let tags = groups.filter_map(|group| group.get_mut("tags").and_then(Value::as_array_mut)).flatten();
    for tag in tags.filter_map(Value::as_object_mut) {
        tag.entry("description").or_insert_with(|| Value::String(String::new()));
    }
    document
}

/// What a rule's status string means, across eKuiper versions: 1.x says `Running` or
/// `Stopped: canceled manually.` / `Stopped: <error>.`, 2.x says `running`, `stopped` or
/// `stopped by error` with the error in `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    Running,
    /// Stopped on purpose (by a user, or created with `triggered: false`).
    StoppedByHand,
    /// Stopped because it failed.
    StoppedByError,
    /// Anything else (starting, a status this client does not know).
    Other,
}

impl RuleStatus {
    pub fn state(&self) -> RuleState {
        let lower = self.status.to_lowercase();
        if self.running {
            RuleState::Running
        } else if lower.contains("error") || (lower.starts_with("stopped:") && !lower.contains("canceled manually")) {
            RuleState::StoppedByError
        } else if lower == "stopped" || lower.contains("canceled manually") {
            RuleState::StoppedByHand
        } else {
            RuleState::Other
        }
    }
}

/// Per-item outcome of `data/import`: section -> name -> error text. Empty means all applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportErrors(pub HashMap<String, HashMap<String, String>>);

impl ImportErrors {
    pub fn is_empty(&self) -> bool {
        self.0.values().all(HashMap::is_empty)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stream,
    Table,
}

impl StreamKind {
    fn path(self) -> &'static str {
        match self {
            StreamKind::Stream => "streams",
            StreamKind::Table => "tables",
        }
    }
    fn word(self) -> &'static str {
        match self {
            StreamKind::Stream => "stream",
            StreamKind::Table => "table",
        }
    }
}

struct Answer {
    status: StatusCode,
    body: String,
}

impl EdgeClient {
    pub fn new(config: ClientConfig) -> Result<EdgeClient, BuildError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            // A real edge rarely holds more than one connection; a proxy or gateway in front of
            // many edges holds up to a delivery's concurrency, and closing the surplus after each
            // burst only to reconnect a moment later costs more than keeping them.
            .pool_max_idle_per_host(512)
            // NeuronEX answers its API directly; a redirect is an error to report, not to follow
            // with the edge's credentials.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            // Every name is resolved through the network policy, at connect time.
            .dns_resolver(policy::PolicyResolver::new(config.policy.clone()))
            .build()
            .map_err(|e| BuildError(error_chain(&e)))?;
        Ok(EdgeClient { http, config, tokens: Arc::new(Mutex::new(HashMap::new())) })
    }

    /// Downloads a file (an agent bringing a plugin package over from edgefleet's signed link),
    /// under the network policy, refusing more than `max_bytes`.
    pub async fn download(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, EdgeError> {
        let object = "package";
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| EdgeError::refused("download", object, format!("invalid URL: {e}")))?;
        policy::check_literal(&self.config.policy, &parsed)
            .map_err(|denied| EdgeError::refused("download", object, format!("edge_network_denied: {denied}")))?;
        let transport = |e: reqwest::Error| self.transport_error("download", object, url, &e);
        let mut response = self.http.get(parsed).send().await.map_err(transport)?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(EdgeError::edge("download", object, status.as_u16(), None, format!("HTTP {status}")));
        }
        let body = limited_body(&mut response, max_bytes)
            .await
            .map_err(transport)?
            .ok_or_else(|| EdgeError::refused("download", object, format!("larger than {max_bytes} bytes")))?;
        Ok(body)
    }

    /// Posts a JSON body with extra headers (a webhook call) under the network policy, following
    /// no redirect; answers the receiver's status code, or why no answer came. The answer's body
    /// is not read.
    pub async fn post_json(&self, url: &str, headers: &[(&str, String)], body: String) -> Result<u16, String> {
        let denied = |denied: &dyn std::fmt::Display| format!("not allowed by the network policy: {denied}");
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        policy::check_literal(&self.config.policy, &parsed).map_err(|d| denied(&d))?;
        let mut request = self.http.post(parsed).header("content-type", "application/json").body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(err) => Err(match policy::denial_in(&err) {
                Some(denial) => denied(&denial),
                None if err.is_timeout() => {
                    format!("no answer within {} s", self.config.request_timeout.as_secs())
                }
                None => error_chain(&err),
            }),
        }
    }

    /// One wording per way a connection fails; `endpoint` is what was called (for a bad URL).
    fn transport_error(&self, step: &str, object: &str, endpoint: &str, err: &reqwest::Error) -> EdgeError {
        let detail = error_chain(err);
        if let Some(denied) = policy::denial_in(err) {
            return EdgeError::refused(step, object, format!("edge_network_denied: {denied}"));
        }
        let failure = if err.is_timeout() {
            Failure::Timeout { after_ms: self.config.request_timeout.as_millis() as u64 }
        } else if err.is_connect() {
            Failure::Connect { detail }
        } else if err.is_builder() {
            Failure::Refused { detail: format!("invalid endpoint {endpoint}: {detail}") }
        } else {
            Failure::Reset { detail }
        };
        EdgeError::transport(step, object, failure)
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.config.policy
    }

    pub fn edge<'a>(&'a self, target: &'a EdgeTarget) -> Edge<'a> {
        Edge {
            client: self,
            target,
            read_ahead: Mutex::default(),
            after_write: Mutex::default(),
            written_ahead: Mutex::default(),
        }
    }

    fn cached_token(&self, target: &EdgeTarget) -> Option<String> {
        self.tokens.lock().ok()?.get(&token_key(target)).cloned()
    }

    fn store_token(&self, target: &EdgeTarget, token: Option<String>) {
        if let Ok(mut tokens) = self.tokens.lock() {
            match token {
                Some(token) => tokens.insert(token_key(target), token),
                None => tokens.remove(&token_key(target)),
            };
        }
    }
}

/// Login tokens belong to an endpoint and the credentials that obtained them: two registrations of
/// one gateway with different passwords must not share a token.
fn token_key(target: &EdgeTarget) -> String {
    match &target.auth {
        EdgeAuth::Basic { username, password } => format!("{}\n{username}\n{password}", target.endpoint),
        _ => target.endpoint.clone(),
    }
}

/// Calls against one edge.
pub struct Edge<'a> {
    client: &'a EdgeClient,
    target: &'a EdgeTarget,
    /// Answers an agent gave ahead of their calls ([`Edge::read_ahead`]), by path; each is used
    /// once, and all are dropped at the first call that is not a `GET`, so none outlives a write.
    read_ahead: Mutex<HashMap<String, CallAnswer>>,
    /// Reads the next successful write makes right after it ([`Edge::read_rule_status_after_write`]).
    after_write: Mutex<Vec<String>>,
    /// Writes an agent made ahead of their calls ([`Edge::write_ahead`]), in order, each used by
    /// the one call that matches it exactly.
    written_ahead: Mutex<writes::WrittenAhead>,
}

impl Edge<'_> {
    // ----- NeuronEX itself -----

    /// `GET /api/version` -> `3.6.0`.
    pub async fn version(&self) -> Result<String, EdgeError> {
        let answer = self.call("read", "version", Method::GET, VERSION_PATH, None).await?;
        let value = expect_json("read", "version", answer, &[200])?;
        value
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| decode_error("read", "version", "no `version` in the answer"))
    }

    /// Logs in and caches the token for later calls to this endpoint.
    pub async fn login(&self) -> Result<String, EdgeError> {
        let EdgeAuth::Basic { username, password } = &self.target.auth else {
            return Err(EdgeError::refused("login", "edge", "this edge is not set up for password login"));
        };
        let body = json!({"name": username, "password": password});
        let answer = self.send_raw("login", "edge", Method::POST, "/api/login", Some(&body), None).await?;
        let value = expect_json("login", "edge", answer, &[200])?;
        let token = value
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| decode_error("login", "edge", "no `token` in the answer"))?;
        self.client.store_token(self.target, Some(token.clone()));
        Ok(token)
    }

    // ----- eKuiper: streams and tables -----

    pub async fn create_stream(&self, kind: StreamKind, name: &str, sql: &str) -> Result<(), EdgeError> {
        let object = format!("{} {name}", kind.word());
        let path = format!("/api/ekuiper/{}", kind.path());
        let answer = self.call("create", &object, Method::POST, &path, Some(&json!({"sql": sql}))).await?;
        expect_text("create", &object, answer, &[201]).map(drop)
    }

    /// `PUT` creates a missing stream too (eKuiper 1.x and 2.x).
    pub async fn replace_stream(&self, kind: StreamKind, name: &str, sql: &str) -> Result<(), EdgeError> {
        let object = format!("{} {name}", kind.word());
        let path = stream_path(kind, name);
        let answer = self.call("replace", &object, Method::PUT, &path, Some(&stream_body(sql))).await?;
        expect_text("replace", &object, answer, &[200]).map(drop)
    }

    pub async fn drop_stream(&self, kind: StreamKind, name: &str, force: bool) -> Result<(), EdgeError> {
        let object = format!("{} {name}", kind.word());
        let mut path = stream_path(kind, name);
        if force {
            path.push_str("?force=true");
        }
        let answer = self.call("delete", &object, Method::DELETE, &path, None).await?;
        expect_text("delete", &object, answer, &[200]).map(drop)
    }

    pub async fn list_streams(&self, kind: StreamKind) -> Result<Vec<String>, EdgeError> {
        let path = format!("/api/ekuiper/{}", kind.path());
        let answer = self.call("list", kind.path(), Method::GET, &path, None).await?;
        parse_as("list", kind.path(), expect_json("list", kind.path(), answer, &[200])?)
    }

    pub async fn describe_stream(&self, kind: StreamKind, name: &str) -> Result<Value, EdgeError> {
        let object = format!("{} {name}", kind.word());
        let path = stream_path(kind, name);
        let answer = self.call("describe", &object, Method::GET, &path, None).await?;
        expect_json("describe", &object, answer, &[200])
    }

    // ----- eKuiper: rules -----

    pub async fn create_rule(&self, rule: &Value) -> Result<(), EdgeError> {
        let object = format!("rule {}", rule.get("id").and_then(Value::as_str).unwrap_or("?"));
        let answer = self.call("create", &object, Method::POST, RULES_PATH, Some(rule)).await?;
        expect_text("create", &object, answer, &[201]).map(drop)
    }

    pub async fn update_rule(&self, id: &str, rule: &Value) -> Result<(), EdgeError> {
        let object = format!("rule {id}");
        let path = rule_path(id);
        let answer = self.call("update", &object, Method::PUT, &path, Some(rule)).await?;
        expect_text("update", &object, answer, &[200]).map(drop)
    }

    /// Creates or replaces a rule on any eKuiper: `PUT` upserts from 2.2; older engines answer 404
    /// for a missing rule, and then the rule is created with `POST`.
    pub async fn upsert_rule(&self, id: &str, rule: &Value) -> Result<(), EdgeError> {
        match self.update_rule(id, rule).await {
            Err(err) if err.status == Some(404) => self.create_rule(rule).await,
            other => other,
        }
    }

    pub async fn get_rule(&self, id: &str) -> Result<Value, EdgeError> {
        let object = format!("rule {id}");
        let path = rule_path(id);
        let answer = self.call("describe", &object, Method::GET, &path, None).await?;
        expect_json("describe", &object, answer, &[200])
    }

    pub async fn delete_rule(&self, id: &str) -> Result<(), EdgeError> {
        let object = format!("rule {id}");
        let path = rule_path(id);
        let answer = self.call("delete", &object, Method::DELETE, &path, None).await?;
        expect_text("delete", &object, answer, &[200]).map(drop)
    }

    /// `[{id, name, status, ...}]` as the edge lists them.
    pub async fn list_rules(&self) -> Result<Vec<Value>, EdgeError> {
        let answer = self.call("list", "rules", Method::GET, "/api/ekuiper/rules", None).await?;
        parse_as("list", "rules", expect_json("list", "rules", answer, &[200])?)
    }

    pub async fn rule_status(&self, id: &str) -> Result<RuleStatus, EdgeError> {
        let object = format!("rule {id}");
        let path = rule_status_path(id);
        let answer = self.call("status", &object, Method::GET, &path, None).await?;
        let value = expect_json("status", &object, answer, &[200])?;
        let status = value.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
        let message = value.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
        let metrics = value.as_object().into_iter().flatten();
        let (mut exceptions, mut records_in, mut last_exception) = (0u64, 0u64, String::new());
        for (key, metric) in metrics {
            if key.ends_with("_exceptions_total") {
                exceptions += metric.as_u64().unwrap_or(0);
            } else if key.starts_with("source_") && key.ends_with("_records_in_total") {
                records_in += metric.as_u64().unwrap_or(0);
            } else if key.ends_with("_last_exception")
                && let Some(text) = metric.as_str().filter(|t| !t.is_empty())
            {
                last_exception = text.chars().take(500).collect();
            }
        }
        Ok(RuleStatus {
            running: status.eq_ignore_ascii_case("running"),
            status,
            message,
            exceptions,
            records_in,
            last_exception,
        })
    }

    /// `action` is `start`, `stop` or `restart`.
    pub async fn control_rule(&self, id: &str, action: &str) -> Result<(), EdgeError> {
        let object = format!("rule {id}");
        let path = format!("/api/ekuiper/rules/{}/{action}", encode(id));
        let answer = self.call(action, &object, Method::POST, &path, None).await?;
        expect_text(action, &object, answer, &[200]).map(drop)
    }

    /// `POST /data/import[?partial=1]` with the document inline. A 400 whose message is the
    /// per-item map (eKuiper 2.x) comes back as `Ok(errors)`; eKuiper 1.x only says "process
    /// error", so the per-item map is then read from `data/import/status`.
    pub async fn data_import(&self, document: &Value, partial: bool) -> Result<ImportErrors, EdgeError> {
        let path = if partial { "/api/ekuiper/data/import?partial=1" } else { "/api/ekuiper/data/import" };
        let body = json!({"content": document.to_string()});
        let answer = self.call("import", "data", Method::POST, path, Some(&body)).await?;
        if answer.status == StatusCode::OK {
            return Ok(ImportErrors::default());
        }
        let err = edge_error("import", "data", &answer);
        if answer.status != StatusCode::BAD_REQUEST || err.code != Some(1000) {
            return Err(err);
        }
        if let Ok(map) = serde_json::from_str::<HashMap<String, HashMap<String, String>>>(&err.message) {
            return Ok(ImportErrors(map));
        }
        if err.message == "process error" {
            let answer =
                self.call("import status", "data", Method::GET, "/api/ekuiper/data/import/status", None).await?;
            let value = expect_json("import status", "data", answer, &[200])?;
            return parse_as("import status", "data", value).map(ImportErrors);
        }
        Err(err)
    }

    /// `POST /ruleset/import`; answers the edge's own summary (`imported 1 streams, ...`).
    pub async fn ruleset_import(&self, document: &Value) -> Result<String, EdgeError> {
        let body = json!({"content": document.to_string()});
        let answer = self.call("import", "ruleset", Method::POST, "/api/ekuiper/ruleset/import", Some(&body)).await?;
        expect_text("import", "ruleset", answer, &[200])
    }

    // ----- eKuiper: portable plugins -----

    /// Asks the edge to download and install a plugin zip from `url`. With `replace`, `PUT` is
    /// used, which installs whether or not the plugin exists.
    pub async fn install_portable(&self, name: &str, url: &str, replace: bool) -> Result<(), EdgeError> {
        let object = format!("plugin {name}");
        // Behind an agent the edge may not reach edgefleet: the agent brings the package over
        // first and NeuronEX installs it from the agent's disk.
        let local;
        let url = match &self.target.via {
            Via::Http => url,
            Via::Agent(route) => {
                let fetch = RelayRequest::Fetch { url: url.to_owned() };
                match self.relay(route, "fetch", &object, fetch).await? {
                    RelayAnswer::Fetched { url } => {
                        local = url;
                        local.as_str()
                    }
                    other => return Err(decode_error("fetch", &object, &format!("the agent answered {other:?}"))),
                }
            }
        };
        let body = json!({"name": name, "file": url});
        let (step, method, path, ok) = if replace {
            ("update", Method::PUT, portable_path(name), 200)
        } else {
            ("install", Method::POST, "/api/ekuiper/plugins/portables".to_owned(), 201)
        };
        let answer = self.call(step, &object, method, &path, Some(&body)).await?;
        expect_text(step, &object, answer, &[ok]).map(drop)
    }

    /// `None` when the plugin is not installed.
    pub async fn get_portable(&self, name: &str) -> Result<Option<Value>, EdgeError> {
        let object = format!("plugin {name}");
        let path = portable_path(name);
        let answer = self.call("describe", &object, Method::GET, &path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect_json("describe", &object, answer, &[200]).map(Some)
    }

    /// The installed portable plugins as eKuiper lists them: one object each (`name`, `version`,
    /// `language`, `executable`, `sources`, `sinks`, `functions`), not bare names.
    pub async fn list_portables(&self) -> Result<Vec<PortablePlugin>, EdgeError> {
        let answer = self.call("list", "plugins", Method::GET, "/api/ekuiper/plugins/portables", None).await?;
        parse_as("list", "plugins", expect_json("list", "plugins", answer, &[200])?)
    }

    pub async fn delete_portable(&self, name: &str) -> Result<(), EdgeError> {
        let object = format!("plugin {name}");
        let path = portable_path(name);
        let answer = self.call("delete", &object, Method::DELETE, &path, None).await?;
        expect_text("delete", &object, answer, &[200]).map(drop)
    }

    pub async fn ekuiper_ping(&self) -> Result<(), EdgeError> {
        let answer = self.call("ping", "eKuiper", Method::GET, "/api/ekuiper/ping", None).await?;
        expect_text("ping", "eKuiper", answer, &[200]).map(drop)
    }

    // ----- Neuron -----

    /// Installed plugins: `[{name, node_type, library, ...}]`.
    pub async fn neuron_plugins(&self) -> Result<Vec<Value>, EdgeError> {
        let value = self.neuron("list", "plugins", Method::GET, "plugin", None).await?;
        parse_as("list", "plugins", value.get("plugins").cloned().unwrap_or(Value::Null))
    }

    pub async fn create_node(&self, name: &str, plugin: &str, params: Option<&Value>) -> Result<(), EdgeError> {
        let mut body = json!({"name": name, "plugin": plugin});
        if let Some(params) = params {
            body["params"] = params.clone();
        }
        self.neuron("create", &format!("node {name}"), Method::POST, "node", Some(&body)).await.map(drop)
    }

    pub async fn delete_node(&self, name: &str) -> Result<(), EdgeError> {
        let body = json!({"name": name});
        self.neuron("delete", &format!("node {name}"), Method::DELETE, "node", Some(&body)).await.map(drop)
    }

    /// `node_type` 1 = south drivers, 2 = north apps.
    pub async fn list_nodes(&self, node_type: u8) -> Result<Vec<Value>, EdgeError> {
        let value = self.neuron("list", "nodes", Method::GET, &format!("node?type={node_type}"), None).await?;
        parse_as("list", "nodes", value.get("nodes").cloned().unwrap_or(Value::Null))
    }

    pub async fn set_node_setting(&self, node: &str, params: &Value) -> Result<(), EdgeError> {
        let body = json!({"node": node, "params": params});
        self.neuron("configure", &format!("node {node}"), Method::POST, "node/setting", Some(&body)).await.map(drop)
    }

    pub async fn node_setting(&self, node: &str) -> Result<Option<Value>, EdgeError> {
        let object = format!("node {node}");
        let answer = self
            .call(
                "read setting",
                &object,
                Method::GET,
                &format!("/api/neuron/node/setting?node={}", encode(node)),
                None,
            )
            .await?;
        let value = expect_json("read setting", &object, answer, &[200])?;
        if value.get("error").and_then(Value::as_i64) == Some(2005) {
            return Ok(None);
        }
        Ok(value.get("params").cloned())
    }

    pub async fn create_group(&self, node: &str, group: &str, interval_ms: u64) -> Result<(), EdgeError> {
        let body = json!({"node": node, "group": group, "interval": interval_ms});
        self.neuron("create", &format!("group {group} of node {node}"), Method::POST, "group", Some(&body))
            .await
            .map(drop)
    }

    pub async fn delete_group(&self, node: &str, group: &str) -> Result<(), EdgeError> {
        let body = json!({"node": node, "group": group});
        self.neuron("delete", &format!("group {group} of node {node}"), Method::DELETE, "group", Some(&body))
            .await
            .map(drop)
    }

    pub async fn list_groups(&self, node: &str) -> Result<Vec<Value>, EdgeError> {
        let value = self
            .neuron(
                "list",
                &format!("groups of node {node}"),
                Method::GET,
                &format!("group?node={}", encode(node)),
                None,
            )
            .await?;
        parse_as("list", "groups", value.get("groups").cloned().unwrap_or(Value::Null))
    }

    /// Adds tags in order. Neuron stops at the first bad tag and keeps the earlier ones; the error
    /// then names that tag and its position.
    pub async fn add_tags(&self, node: &str, group: &str, tags: &[Value]) -> Result<usize, EdgeError> {
        let body = json!({"node": node, "group": group, "tags": tags});
        let object = format!("tags of group {group} on node {node}");
        let answer = self.call("add", &object, Method::POST, "/api/neuron/tags", Some(&body)).await?;
        tags_outcome(&answer, &object, |index| {
            let name = tags.get(index).and_then(|t| t.get("name")).and_then(Value::as_str).unwrap_or("?");
            format!("tag {name} (#{} in group {group} on node {node})", index + 1)
        })
    }

    /// `POST /gtags`: groups and their tags in one call.
    pub async fn add_group_tags(&self, node: &str, groups: &[Value]) -> Result<usize, EdgeError> {
        let body = json!({"node": node, "groups": groups});
        let object = format!("groups and tags of node {node}");
        let answer = self.call("add", &object, Method::POST, "/api/neuron/gtags", Some(&body)).await?;
        tags_outcome(&answer, &object, |index| format!("tag #{} on node {node}", index + 1))
    }

    pub async fn list_tags(&self, node: &str, group: &str) -> Result<Vec<Value>, EdgeError> {
        let path = format!("tags?node={}&group={}", encode(node), encode(group));
        let value = self.neuron("list", &format!("tags of group {group}"), Method::GET, &path, None).await?;
        parse_as("list", "tags", value.get("tags").cloned().unwrap_or(Value::Null))
    }

    pub async fn subscribe(
        &self,
        app: &str,
        driver: &str,
        group: &str,
        params: Option<&Value>,
    ) -> Result<(), EdgeError> {
        let mut body = json!({"app": app, "driver": driver, "group": group});
        if let Some(params) = params {
            body["params"] = params.clone();
        }
        let object = format!("subscription of {app} to {driver}/{group}");
        match self.neuron("subscribe", &object, Method::POST, "subscribe", Some(&body)).await {
            // Already subscribed: Neuron keeps the old params, so new ones are set explicitly.
            Err(err) if err.code == Some(2101) && params.is_some() => {
                self.neuron("update", &object, Method::PUT, "subscribe", Some(&body)).await.map(drop)
            }
            Err(err) if err.code == Some(2101) => Ok(()),
            other => other.map(drop),
        }
    }

    /// `PUT /global/drivers` (Neuron 2.8+, NeuronEX 3.2+): replaces the listed nodes whole. Every
    /// tag is sent with a `description` (empty when the document has none): real Neuron 2.13.0
    /// to 2.15 crash on a tag without the key.
    pub async fn put_drivers(&self, document: &Value) -> Result<(), EdgeError> {
        let document = with_tag_descriptions(document);
        self.neuron("apply", "drivers", Method::PUT, "global/drivers", Some(&document)).await.map(drop)
    }

    pub async fn get_drivers(&self, names: &[&str]) -> Result<Value, EdgeError> {
        let path = if names.is_empty() {
            "global/drivers".to_owned()
        } else {
            format!("global/drivers?name={}", encode(&names.join(",")))
        };
        self.neuron("export", "drivers", Method::GET, &path, None).await
    }

    // ----- plumbing -----

    /// A Neuron call: success is 200 with `error` absent or 0.
    async fn neuron(
        &self,
        step: &str,
        object: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EdgeError> {
        let answer = self.call(step, object, method, &format!("/api/neuron/{path}"), body).await?;
        let value = expect_json(step, object, answer, &[200])?;
        match value.get("error").and_then(Value::as_i64) {
            Some(code) if code != 0 => {
                Err(EdgeError::edge(step, object, 200, Some(code), neuron_code_text(code).to_owned()))
            }
            _ => Ok(value),
        }
    }

    /// Sends with credentials; on 401 with a cached login token, logs in again once and retries.
    /// A failure records the time it took.
    async fn call(
        &self,
        step: &str,
        object: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, EdgeError> {
        let started = std::time::Instant::now();
        if let Via::Agent(route) = &self.target.via {
            if method != Method::GET
                && let Some(answer) = self.written_ahead(method.as_str(), path, body)
            {
                return relayed(step, object, answer);
            }
            if let Some(answer) = self.answered_ahead(&method, path) {
                return relayed(step, object, answer);
            }
            let then = if method == Method::GET { Vec::new() } else { self.reads_after_write() };
            let request =
                RelayRequest::Call { method: method.to_string(), path: path.to_owned(), body: body.cloned(), then };
            return match self.relay(route, step, object, request).await {
                Ok(RelayAnswer::Answer { status, body, then }) => {
                    self.keep_read_after_write(status, then);
                    relayed(step, object, CallAnswer::Answer { status, body })
                }
                Ok(other) => Err(decode_error(step, object, &format!("the agent answered {other:?} to a call"))),
                Err(err) => Err(err.with_tries(1, started.elapsed())),
            };
        }
        let answer = async {
            let token = self.credentials(step, object).await?;
            let answer = self.send_raw(step, object, method.clone(), path, body, token.as_deref()).await?;
            if answer.status != StatusCode::UNAUTHORIZED || !matches!(self.target.auth, EdgeAuth::Basic { .. }) {
                return Ok(answer);
            }
            self.client.store_token(self.target, None);
            let token = self.login().await?;
            self.send_raw(step, object, method, path, body, Some(&token)).await
        }
        .await;
        answer.map_err(|err| err.with_tries(1, started.elapsed()))
    }

    /// Through an agent: the version and what reading `objects` back takes (streams, tables, rules,
    /// plugins), asked for in one exchange, so the calls that follow find their answers here
    /// instead of crossing the broker one by one. Over HTTP it does nothing (each call is one
    /// round trip either way). Reads only: nothing on the edge changes, and every answer is
    /// dropped at the first write. When the exchange fails, the failure is kept as the version
    /// read's answer, so the target fails (or retries) exactly as that call would have.
    pub async fn read_ahead(&self, objects: &[domain::plan::ObjectRef]) {
        let Via::Agent(route) = &self.target.via else { return };
        let mut paths = vec![VERSION_PATH.to_owned()];
        paths.extend(readback::read_paths(objects));
        paths.dedup();
        paths.truncate(MAX_READS);
        let wait = relay::relay_wait(self.client.config.request_timeout);
        let answers =
            match route.relay.exchange(&route.agent_id, RelayRequest::Reads { paths: paths.clone() }, wait).await {
                Ok(RelayAnswer::Answers { answers }) => answers,
                Ok(RelayAnswer::Failed { error }) => vec![CallAnswer::Failed { error }],
                Ok(other) => vec![CallAnswer::Failed {
                    error: decode_error("read", "version", &format!("the agent answered {other:?} to reads")),
                }],
                Err(failure) => vec![CallAnswer::Failed { error: EdgeError::transport("read", "version", failure) }],
            };
        if let Ok(mut ahead) = self.read_ahead.lock() {
            ahead.extend(paths.into_iter().zip(answers));
        }
    }

    /// Through an agent: the next write that succeeds also reads `id`'s status, answered with
    /// the write (the check that follows a rule's write costs no round trip of its own). Does
    /// nothing over HTTP.
    pub fn read_rule_status_after_write(&self, id: &str) {
        if let (Via::Agent(_), Ok(mut after)) = (&self.target.via, self.after_write.lock()) {
            after.push(rule_status_path(id));
        }
    }

    /// The reads the next write carries (kept until a write succeeds: an upsert's `PUT` that
    /// finds no rule is followed by its `POST`).
    fn reads_after_write(&self) -> Vec<String> {
        self.after_write.lock().map(|after| after.clone()).unwrap_or_default()
    }

    /// A write's answers to its reads, for the calls that follow it.
    fn keep_read_after_write(&self, status: u16, answers: Vec<CallAnswer>) {
        if !(200..300).contains(&status) {
            return;
        }
        let Ok(mut after) = self.after_write.lock() else { return };
        let paths = std::mem::take(&mut *after);
        if let Ok(mut ahead) = self.read_ahead.lock() {
            ahead.extend(paths.into_iter().zip(answers));
        }
    }

    /// The answer read ahead for this call, if it is a `GET` that has one; any other call drops
    /// them all, since what was read may be about to change.
    fn answered_ahead(&self, method: &Method, path: &str) -> Option<CallAnswer> {
        let mut ahead = self.read_ahead.lock().ok()?;
        if *method == Method::GET {
            ahead.remove(path)
        } else {
            ahead.clear();
            None
        }
    }

    /// One exchange with the agent; its report of a failed call becomes this call's error.
    async fn relay(
        &self,
        route: &AgentRoute,
        step: &str,
        object: &str,
        request: RelayRequest,
    ) -> Result<RelayAnswer, EdgeError> {
        let wait = relay::relay_wait(self.client.config.request_timeout);
        match route.relay.exchange(&route.agent_id, request, wait).await {
            Ok(RelayAnswer::Failed { error }) => Err(error.relabeled(step, object)),
            Ok(answer) => Ok(answer),
            Err(failure) => Err(EdgeError::transport(step, object, failure)),
        }
    }

    /// The agent's side of agent mode: one call as the server asked for it, with this client's
    /// credentials for the local NeuronEX; the answer whatever its status.
    pub async fn forward(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String), EdgeError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| EdgeError::refused("relay", "call", format!("unknown HTTP method {method:?}")))?;
        let answer = self.call("relay", path, method, path, body).await?;
        Ok((answer.status.as_u16(), answer.body))
    }

    /// The agent's side of reads: each `GET` in turn, as [`Edge::forward`] makes it; the list
    /// stops once the answers pass [`ANSWERS_BYTES`], so a reply stays within a packet.
    pub async fn read_all(&self, paths: &[String]) -> Vec<CallAnswer> {
        let mut answers = Vec::with_capacity(paths.len());
        let mut size = 0;
        for path in paths {
            if size > ANSWERS_BYTES {
                break;
            }
            let answer = self.forward_answer("GET", path, None).await;
            size += answer_bytes(&answer);
            answers.push(answer);
        }
        answers
    }

    /// [`Edge::forward`] as an agent reports it.
    pub(crate) async fn forward_answer(&self, method: &str, path: &str, body: Option<&Value>) -> CallAnswer {
        match self.forward(method, path, body).await {
            Ok((status, body)) => CallAnswer::Answer { status, body },
            Err(error) => CallAnswer::Failed { error },
        }
    }

    async fn credentials(&self, step: &str, object: &str) -> Result<Option<String>, EdgeError> {
        match &self.target.auth {
            EdgeAuth::None => Ok(None),
            EdgeAuth::Basic { .. } => match self.client.cached_token(self.target) {
                Some(token) => Ok(Some(token)),
                None => self.login().await.map(Some),
            },
            EdgeAuth::Jwt(grant) => {
                grant.token().map(Some).map_err(|e| EdgeError::refused(step, object, format!("cannot sign a JWT: {e}")))
            }
        }
    }

    async fn send_raw(
        &self,
        step: &str,
        object: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Answer, EdgeError> {
        let url = format!("{}{path}", self.target.endpoint.trim_end_matches('/'));
        // Parsed once: the policy checks what reqwest will connect to.
        let url = reqwest::Url::parse(&url)
            .map_err(|e| EdgeError::refused(step, object, format!("invalid endpoint {}: {e}", self.target.endpoint)))?;
        policy::check_literal(&self.client.config.policy, &url)
            .map_err(|denied| EdgeError::refused(step, object, format!("edge_network_denied: {denied}")))?;
        let mut request = self.client.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(step, object, &e))?;
        let status = response.status();
        let mut response = response;
        let Some(body) =
            limited_body(&mut response, MAX_ANSWER_BYTES).await.map_err(|e| self.transport_error(step, object, &e))?
        else {
            let what = format!("an answer larger than {} MiB; {NOT_NEURONEX}", MAX_ANSWER_BYTES >> 20);
            return Err(EdgeError::edge(step, object, status.as_u16(), None, what));
        };
        Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
    }

    fn transport_error(&self, step: &str, object: &str, err: &reqwest::Error) -> EdgeError {
        self.client.transport_error(step, object, &self.target.endpoint, err)
    }
}

const VERSION_PATH: &str = "/api/version";

fn stream_path(kind: StreamKind, name: &str) -> String {
    format!("/api/ekuiper/{}/{}", kind.path(), encode(name))
}

/// What creates or replaces a stream or table: its `CREATE` statement.
fn stream_body(sql: &str) -> Value {
    json!({"sql": sql})
}

const RULES_PATH: &str = "/api/ekuiper/rules";

fn rule_path(id: &str) -> String {
    format!("/api/ekuiper/rules/{}", encode(id))
}

fn rule_status_path(id: &str) -> String {
    format!("/api/ekuiper/rules/{}/status", encode(id))
}

fn portable_path(name: &str) -> String {
    format!("/api/ekuiper/plugins/portables/{}", encode(name))
}

/// An agent's answer to a call as the call's own answer or error.
fn answer_bytes(answer: &CallAnswer) -> usize {
    match answer {
        CallAnswer::Answer { body, .. } => body.len(),
        CallAnswer::Failed { .. } => 0,
    }
}

fn relayed(step: &str, object: &str, answer: CallAnswer) -> Result<Answer, EdgeError> {
    match answer {
        CallAnswer::Answer { status, body } => {
            let status = StatusCode::from_u16(status)
                .map_err(|_| decode_error(step, object, &format!("the agent relayed HTTP status {status}")))?;
            Ok(Answer { status, body })
        }
        CallAnswer::Failed { error } => Err(error.relabeled(step, object)),
    }
}

/// A body of at most `max_bytes`: `None` once it is larger (nothing more is read).
async fn limited_body(response: &mut reqwest::Response, max_bytes: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max_bytes {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn tags_outcome(answer: &Answer, object: &str, name_tag: impl Fn(usize) -> String) -> Result<usize, EdgeError> {
    let value: Value = serde_json::from_str(&answer.body).map_err(|e| decode_error("add", object, &e.to_string()))?;
    let code = value.get("error").and_then(Value::as_i64).unwrap_or(0);
    let index = value.get("index").and_then(Value::as_u64).map(|i| i as usize);
    match (answer.status.as_u16(), code, index) {
        (200, 0, Some(added)) => Ok(added),
        (200, 0, None) => Ok(0),
        (status, code, Some(index)) => {
            Err(EdgeError::edge("add", &name_tag(index), status, Some(code), neuron_code_text(code).to_owned()))
        }
        (status, code, None) => {
            Err(EdgeError::edge("add", object, status, Some(code), neuron_code_text(code).to_owned()))
        }
    }
}

/// Reads an error answer: eKuiper's `{"error":N,"message":"..."}` (1.x may leave quotes unescaped),
/// Neuron's `{"error": N}`, or anything else as text.
fn edge_error(step: &str, object: &str, answer: &Answer) -> EdgeError {
    let status = answer.status.as_u16();
    let text = answer.body.trim();
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        let code = value.get("error").and_then(Value::as_i64);
        let message = value.get("message").and_then(Value::as_str).map(str::to_owned);
        if let Some(code) = code {
            let message = message.unwrap_or_else(|| neuron_code_text(code).to_owned());
            return EdgeError::edge(step, object, status, Some(code), message);
        }
        if let Some(message) = message {
            return EdgeError::edge(step, object, status, None, message);
        }
    }
    if let Some((code, message)) = loose_ekuiper_error(text) {
        return EdgeError::edge(step, object, status, Some(code), message);
    }
    // Whatever else answered (a web server, a proxy, another service) is not quoted: the reason is
    // shown to every viewer of the project, and an endpoint must not become a way to read pages.
    EdgeError::edge(step, object, status, None, NOT_NEURONEX.to_owned())
}

/// The message of an answer that is not a NeuronEX error document.
pub const NOT_NEURONEX: &str = "not a NeuronEX answer";

/// The most of one answer the client reads. NeuronEX answers are small (a large driver export is a
/// few MiB); whatever answers with more (a gateway gone wrong, something in front of it) is refused
/// before it fills memory or a snapshot.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// eKuiper 1.x splices messages in without escaping: `{"error":1000,"message":"a "b" c"}`.
fn loose_ekuiper_error(text: &str) -> Option<(i64, String)> {
    let rest = text.strip_prefix("{\"error\":")?;
    let (code, rest) = rest.split_once(",\"message\":\"")?;
    let message = rest.strip_suffix("\"}")?;
    Some((code.trim().parse().ok()?, message.to_owned()))
}

fn expect_text(step: &str, object: &str, answer: Answer, ok: &[u16]) -> Result<String, EdgeError> {
    if ok.contains(&answer.status.as_u16()) { Ok(answer.body) } else { Err(edge_error(step, object, &answer)) }
}

fn expect_json(step: &str, object: &str, answer: Answer, ok: &[u16]) -> Result<Value, EdgeError> {
    let text = expect_text(step, object, answer, ok)?;
    serde_json::from_str(&text).map_err(|e| decode_error(step, object, &format!("{e}; {NOT_NEURONEX}")))
}

fn parse_as<T: serde::de::DeserializeOwned>(step: &str, object: &str, value: Value) -> Result<T, EdgeError> {
    serde_json::from_value(value).map_err(|e| decode_error(step, object, &e.to_string()))
}

fn decode_error(step: &str, object: &str, detail: &str) -> EdgeError {
    EdgeError::transport(step, object, Failure::Decode { detail: detail.to_owned() })
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encodes one path segment or query value.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b',') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod rule_state_tests {
    use super::*;

    #[test]
    fn every_driver_tag_goes_out_with_a_description() {
        let document = json!({"nodes": [{"name": "plc", "plugin": "Modbus TCP", "groups": [
            {"group": "g1", "interval": 1000, "tags": [
                {"name": "t1", "address": "1!400001", "attribute": 1, "type": 3},
                {"name": "t2", "address": "1!400002", "attribute": 1, "type": 3, "description": "kept"}
            ]}
        ]}]});
        let sent = with_tag_descriptions(&document);
        let tags = &sent["nodes"][0]["groups"][0]["tags"];
        assert_eq!((tags[0]["description"].as_str(), tags[1]["description"].as_str()), (Some(""), Some("kept")));
        assert_eq!(with_tag_descriptions(&json!({"nodes": "odd"})), json!({"nodes": "odd"}));
    }

    #[test]
    fn status_strings_of_both_ekuiper_generations_are_understood() {
        let cases = [
            ("Running", RuleState::Running),
            ("running", RuleState::Running),
            ("Stopped: canceled manually.", RuleState::StoppedByHand),
            ("stopped", RuleState::StoppedByHand),
            ("Stopped: fail to get stream demo.", RuleState::StoppedByError),
            ("stopped by error", RuleState::StoppedByError),
            ("starting", RuleState::Other),
        ];
        for (status, state) in cases {
            let rule = RuleStatus {
                running: status.eq_ignore_ascii_case("running"),
                status: status.into(),
                message: String::new(),
                exceptions: 0,
                records_in: 0,
                last_exception: String::new(),
            };
            assert_eq!(rule.state(), state, "{status}");
        }
    }
}
