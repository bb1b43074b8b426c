use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::network::NetworkPolicy;
use edge_client::{ClientConfig, EdgeAuth, EdgeClient, EdgeTarget};
use neuronex_sim::versions::Version;
use neuronex_sim::{RunningSim, SimConfig};
use serde_json::Value;

pub async fn sim_with(config: SimConfig) -> RunningSim {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
    neuronex_sim::start(config, listen, false).await.expect("simulator starts")
}

/// One instance reporting `version`, no auth, no faults.
pub async fn sim(version: &str) -> RunningSim {
    let version = Version::parse(version).expect("test version");
    sim_with(SimConfig { versions: vec![(version, 1)], ..SimConfig::default() }).await
}

/// The simulator runs on loopback, which the default network policy refuses.
pub fn loopback() -> NetworkPolicy {
    NetworkPolicy::new(NetworkPolicy::parse_list("127.0.0.0/8").expect("networks"), None)
}

pub fn client_with(connect_timeout: Duration, request_timeout: Duration) -> EdgeClient {
    EdgeClient::new(ClientConfig { connect_timeout, request_timeout, policy: loopback() }).expect("client")
}

pub fn client() -> EdgeClient {
    client_with(Duration::from_secs(2), Duration::from_secs(5))
}

pub fn target(sim: &RunningSim, k: u32) -> EdgeTarget {
    EdgeTarget::http(sim.endpoint(k).to_owned(), EdgeAuth::None)
}

/// `GET /__sim/instances/{k}`.
pub async fn snapshot(sim: &RunningSim, k: u32) -> Value {
    let url = format!("{}/__sim/instances/{k}", sim.base_url);
    reqwest::get(url).await.expect("control api").json().await.expect("snapshot json")
}

pub async fn request_count(sim: &RunningSim, k: u32, key: &str) -> u64 {
    snapshot(sim, k).await["requests"][key].as_u64().unwrap_or(0)
}

pub async fn control(sim: &RunningSim, method: reqwest::Method, path: &str, body: Value) {
    let url = format!("{}/__sim/{path}", sim.base_url);
    let response = reqwest::Client::new().request(method, url).json(&body).send().await.expect("control api");
    assert!(response.status().is_success(), "control call {path} failed: {}", response.status());
}

/// A zip built in memory from `(name, content)` pairs.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in files {
        writer.start_file(*name, zip::write::SimpleFileOptions::default()).expect("zip entry");
        writer.write_all(content).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// A real Python portable plugin: metadata json, the .py executable, a source yaml.
pub fn python_plugin(name: &str) -> Vec<u8> {
    let meta = format!(
        r#"{{"version":"v1.0.0","language":"python","executable":"{name}.py","sources":["pyjson"],"sinks":["print"],"functions":["revert"]}}"#
    );
    zip_of(&[
        (&format!("{name}.json"), meta.as_bytes()),
        (&format!("{name}.py"), b"from ekuiper import plugin\nplugin.start({})\n"),
        ("sources/pyjson.yaml", b"default:\n  value: 1\n"),
    ])
}

/// Serves files from memory on loopback, 404 for anything else.
pub struct FileServer {
    pub base_url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl FileServer {
    pub async fn start() -> FileServer {
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let shared = Arc::clone(&files);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let files = Arc::clone(&shared);
            async move {
                match files.lock().expect("file map").get(uri.path()) {
                    Some(bytes) => (axum::http::StatusCode::OK, bytes.clone()),
                    None => (axum::http::StatusCode::NOT_FOUND, b"404 page not found".to_vec()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind file server");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FileServer { base_url, files }
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>) -> String {
        self.files.lock().expect("file map").insert(path.to_owned(), bytes);
        format!("{}{path}", self.base_url)
    }
}
