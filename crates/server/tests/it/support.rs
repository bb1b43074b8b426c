use std::net::SocketAddr;
use std::time::Duration;

use api_client::ApiClient;
use neuronex_sim::versions::Version;
use neuronex_sim::{RunningSim, SimConfig};
use reqwest::Method;
use serde_json::{Value, json};
use server::{App, Config};

pub const PASSWORD: &str = "test-password-1";

pub use api_client::Answer;

pub struct TestApp {
    pub base: String,
    pub token: String,
    pub project: String,
    /// The shared API client, signed in as the system admin.
    pub client: ApiClient,
    /// Its HTTP client, for tests of raw HTTP (no token, cookies, odd headers).
    pub http: reqwest::Client,
    pub data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        // TEST_LOG=1 shows the server's log.
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        }
        let data = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(data.path().to_owned());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin_password = Some(PASSWORD.into());
        config.probe_interval = Duration::from_secs(3600);
        config.edge_request_timeout = Duration::from_secs(2);
        config.edge_connect_timeout = Duration::from_secs(1);
        // A minute's back-off after the free sign-in attempts, so no refusal depends on speed.
        config.sign_in_backoff = Duration::from_secs(60);
        // The simulator is on loopback; a few tests register made-up gateways in 10.0.0.0/8.
        config.edge_networks = domain::network::NetworkPolicy::parse_list("127.0.0.0/8,10.0.0.0/8").expect("networks");
        // EDGEFLEET_TEST_POSTGRES=postgres://user@host:port runs the suite on PostgreSQL.
        if let Ok(base) = std::env::var("EDGEFLEET_TEST_POSTGRES")
            && !base.is_empty()
        {
            config.database_url = Some(store::testing::fresh_postgres_database(&base).await.expect("test database"));
        }
        adjust(&mut config);
        let app = App::build(config).await.expect("server builds");
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        let (client, login) = ApiClient::new(&base).login("admin", PASSWORD).await.expect("login");
        let token = login["token"].as_str().expect("token").to_owned();
        let http = client.http().clone();
        let mut app = TestApp { base, token, project: String::new(), client, http, data, _stop: stop };
        let org = app.call(Method::POST, "/api/v1/orgs", Some(json!({"name": "Plant"}))).await;
        let org_id = org.body["id"].as_str().expect("org id").to_owned();
        let project =
            app.call(Method::POST, &format!("/api/v1/orgs/{org_id}/projects"), Some(json!({"name": "Line 1"}))).await;
        app.project = project.body["id"].as_str().expect("project id").to_owned();
        app
    }

    pub fn p(&self, path: &str) -> String {
        format!("/api/v1/projects/{}{path}", self.project)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.client.send(method, path, body.as_ref()).await.expect("request")
    }

    /// The same request with another user's token.
    pub async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.client.with_token(token).send(method, path, body.as_ref()).await.expect("request")
    }

    /// `POST /api/v1/auth/login` with these credentials (and extra headers).
    pub async fn login(&self, username: &str, password: &str, headers: &[(&str, &str)]) -> Answer {
        let body = json!({"username": username, "password": password});
        self.client
            .anonymous()
            .send_with(Method::POST, "/api/v1/auth/login", Some(&body), headers)
            .await
            .expect("login")
    }

    /// Creates a user and, when given, makes them a project member with `role`; answers (id, token).
    pub async fn user(&self, username: &str, password: &str, project_role: Option<&str>) -> (String, String) {
        let created = self.post("/api/v1/users", json!({"username": username, "password": password})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["id"].as_str().expect("id").to_owned();
        if let Some(role) = project_role {
            let scope = self.get(&self.p("")).await;
            let org = scope.body["org_id"].as_str().expect("org id").to_owned();
            let member = self
                .call(Method::PUT, &format!("/api/v1/orgs/{org}/members/{id}"), Some(json!({"role": "member"})))
                .await;
            assert_eq!(member.status, 200, "{}", member.text);
            let member = self.call(Method::PUT, &self.p(&format!("/members/{id}")), Some(json!({"role": role}))).await;
            assert_eq!(member.status, 200, "{}", member.text);
        }
        let login = self.login(username, password, &[]).await;
        assert_eq!(login.status, 200, "{}", login.text);
        (id, login.body["token"].as_str().expect("token").to_owned())
    }

    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
        self.client.send_raw(method, path, content_type, body).await.expect("request")
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Registers the simulator's instances; answers their ids in instance order.
    pub async fn register(&self, sim: &RunningSim, count: u32) -> Vec<String> {
        let rows: Vec<Value> = sim
            .manifest
            .iter()
            .take(count as usize)
            .map(|e| json!({"name": e.name, "endpoint": e.endpoint, "tags": e.tags}))
            .collect();
        let answer = self.post(&self.p("/edge-services/import"), json!(rows)).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let mut ids = Vec::new();
        for (k, item) in answer.body["items"].as_array().expect("items").iter().enumerate() {
            ids.push(item["id"].as_str().expect("id").to_owned());
            // Probe now, so versions are known without waiting for a round.
            let probed = self.post(&self.p(&format!("/edge-services/{}/probe", ids[k])), json!({})).await;
            assert_eq!(probed.status, 200);
        }
        ids
    }

    /// `count` registered gateways that never answer, and the body of a rule delivery to all of
    /// them (concurrency 4, `timeout_secs` per target, no retries): for tests that need a delivery
    /// to stay running. The server's edge request timeout must be longer than the test's wait.
    pub async fn hanging_fleet(&self, count: u32, timeout_secs: u64) -> (RunningSim, Value) {
        let sim = sim(count, &["3.6.0"]).await;
        let ids = self.register(&sim, count).await;
        sim.sim.set_faults(None, Some(neuronex_sim::Faults { timeout_rate: 1.0, ..neuronex_sim::Faults::default() }));
        let template = self.template("hanging", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
        let body = json!({"template_id": template, "targets": {"ids": ids},
                          "options": {"concurrency": 4, "timeout_secs": timeout_secs, "retries": 0}});
        (sim, body)
    }

    pub async fn template(&self, name: &str, kind: &str, content: Value) -> String {
        let answer = self.post(&self.p("/templates"), json!({"name": name, "kind": kind, "content": content})).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.body["id"].as_str().expect("id").to_owned()
    }

    /// Starts a delivery and follows its events to the end; answers (delivery, events).
    pub async fn deliver(&self, body: Value) -> (Value, Vec<(String, Value)>) {
        let started = self.post(&self.p("/deliveries"), body).await;
        assert_eq!(started.status, 202, "{}", started.text);
        let id = started.body["id"].as_str().expect("id").to_owned();
        let events = self.events(&id).await;
        let delivery = self.get(&self.p(&format!("/deliveries/{id}"))).await.body;
        (delivery, events)
    }

    /// Reads the SSE stream of a delivery until its `final` event.
    pub async fn events(&self, id: &str) -> Vec<(String, Value)> {
        self.events_at(&self.p(""), id).await
    }

    /// The same, for a delivery of the project at `project_path` (`/api/v1/projects/<id>`).
    pub async fn events_at(&self, project_path: &str, id: &str) -> Vec<(String, Value)> {
        let path = format!("{project_path}/deliveries/{id}/events");
        let mut stream = self.client.events(&path, None).await.expect("events");
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while let Some(event) = tokio::time::timeout_at(deadline, stream.next()).await.expect("events end in time") {
            let event = event.expect("the stream goes on");
            events.push((event.name, serde_json::from_str(&event.data).expect("event json")));
        }
        events
    }

    /// Opens a delivery's event stream and reads it until `enough` says so (given every event so
    /// far); waits follow the stream, never the clock.
    pub async fn events_until(&self, id: &str, mut enough: impl FnMut(&sse::Event) -> bool) {
        let mut stream = self.client.events(&self.p(&format!("/deliveries/{id}/events")), None).await.expect("events");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let event = tokio::time::timeout_at(deadline, stream.next())
                .await
                .expect("the awaited events come in time")
                .expect("the stream goes on")
                .expect("an event");
            if enough(&event) {
                return;
            }
        }
    }

    pub async fn targets(&self, delivery: &Value) -> Vec<Value> {
        let id = delivery["id"].as_str().expect("id");
        let answer = self.get(&self.p(&format!("/deliveries/{id}/targets?limit=1000"))).await;
        answer.body["items"].as_array().expect("items").clone()
    }
}

pub async fn sim(count: u32, versions: &[&str]) -> RunningSim {
    let exact_versions = versions.iter().map(|v| Version::parse(v).expect("version")).collect();
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    neuronex_sim::start(SimConfig { count, exact_versions, ..SimConfig::default() }, listen, false).await.expect("sim")
}

pub async fn sim_state(sim: &RunningSim, k: u32) -> Value {
    reqwest::get(format!("{}/__sim/instances/{k}", sim.base_url)).await.expect("sim").json().await.expect("json")
}

pub fn rule_doc(stream: &str, rule_id: &str, sql: &str) -> Value {
    let rule = json!({"id": rule_id, "sql": sql, "actions": [{"log": {}}]}).to_string();
    json!({"streams": {stream: format!("CREATE STREAM {stream} () WITH (TYPE=\"neuron\", FORMAT=\"json\")")}, "tables": {}, "rules": {rule_id: rule}})
}

/// The error code of an API error answer.
pub fn code(answer: &Answer) -> &str {
    answer.code()
}

/// Files under a folder, recursively (for "nothing was left behind").
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in files {
        writer.start_file(*name, zip::write::SimpleFileOptions::default()).expect("entry");
        writer.write_all(content).expect("write");
    }
    writer.finish().expect("finish").into_inner()
}

/// A Python portable plugin: metadata, the .py executable, a source yaml.
pub fn python_plugin(name: &str, version: &str) -> Vec<u8> {
    let meta = format!(
        r#"{{"version":"{version}","language":"python","executable":"{name}.py","sources":["pyjson"],"sinks":["print"],"functions":["revert"]}}"#
    );
    zip_of(&[
        (&format!("{name}.json"), meta.as_bytes()),
        (&format!("{name}.py"), b"print('plugin')\n"),
        ("sources/pyjson.yaml", b"default: {}\n"),
    ])
}

impl TestApp {
    pub async fn upload(&self, name: Option<&str>, file: Option<Vec<u8>>) -> Answer {
        let mut form = reqwest::multipart::Form::new().text("description", "test plugin");
        if let Some(name) = name {
            form = form.text("name", name.to_owned());
        }
        if let Some(bytes) = file {
            form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name("plugin.zip"));
        }
        self.client.send_form(&self.p("/plugins"), form).await.expect("upload")
    }
}
