use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use futures::StreamExt;
use serde_json::{Value, json};

pub const PASSWORD: &str = "process-test-pw";

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `edgefleet serve` on an ephemeral port and waits for its address line.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgefleet"))
            .args(["serve", "--listen", "127.0.0.1:0", "--edge-networks", "127.0.0.0/8", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("EDGEFLEET_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut base = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).expect("read") > 0 {
            if let Some(address) = line.trim().strip_prefix("edgefleet listening on ") {
                base = address.to_owned();
                break;
            }
            line.clear();
        }
        assert!(!base.is_empty(), "the server printed its address");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Server { child, base }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn api(&self) -> Api {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        Api { http, base: self.base.clone(), token: login["token"].as_str().expect("token").to_owned() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("put");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    /// A project with the simulator's instances registered and a one-stream, one-rule template;
    /// answers (project id, template).
    pub async fn rule_setup(&self, sim: &neuronex_sim::RunningSim) -> (String, Value) {
        let project = self.project().await;
        let rows: Vec<Value> = sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint})).collect();
        self.post(&format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await;
        let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}).to_string();
        let doc = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": rule}});
        let template = self
            .post(
                &format!("/api/v1/projects/{project}/templates"),
                json!({"name": "t", "kind": "rule", "content": doc}),
            )
            .await;
        (project, template)
    }

    pub async fn project(&self) -> String {
        let org = self.post("/api/v1/orgs", json!({"name": "o"})).await;
        let project = self
            .post(&format!("/api/v1/orgs/{}/projects", org["id"].as_str().expect("id")), json!({"name": "p"}))
            .await;
        project["id"].as_str().expect("id").to_owned()
    }

    /// Reads delivery events until `stop_after` target events or the final event; answers how
    /// many target events came.
    pub async fn watch(&self, path: &str, stop_after: usize) -> usize {
        let response =
            self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.expect("events");
        let mut stream = response.bytes_stream();
        let mut parser = sse::Parser::new();
        let mut targets = 0;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
            for event in parser.feed(&chunk) {
                match event.name.as_str() {
                    "target" => {
                        targets += 1;
                        if targets >= stop_after {
                            return targets;
                        }
                    }
                    "final" => return targets,
                    _ => {}
                }
            }
        }
        targets
    }
}
