use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use api_client::ApiClient;
use serde_json::{Value, json};

pub const PASSWORD: &str = "process-test-pw";

/// A simulator of `count` NeuronEX instances on a free loopback port.
pub async fn sim(count: u32) -> neuronex_sim::RunningSim {
    let listen = "127.0.0.1:0".parse().expect("addr");
    let config = neuronex_sim::SimConfig { count, ..neuronex_sim::SimConfig::default() };
    neuronex_sim::start(config, listen, false).await.expect("sim")
}

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
        Server::start_in(data_dir, extra, &[])
    }

    /// With `environment` added to the test's own.
    pub fn start_in(data_dir: &Path, extra: &[&str], environment: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgefleet"))
            .args(["serve", "--listen", "127.0.0.1:0", "--edge-networks", "127.0.0.0/8", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            // Whatever the test runner's environment holds, the server decides this itself.
            .env_remove("GLIBC_TUNABLES")
            .envs(environment.iter().copied())
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

    /// Whether the running server's environment, as the kernel holds it (after any restart the
    /// server made of itself: the process id stays the same), sets `name` to `value`. glibc 2.36
    /// splits `GLIBC_TUNABLES` in place at each `:` when it reads it, so a NUL counts as a `:`.
    pub fn environment_holds(&self, name: &str, value: &str) -> bool {
        let environ = std::fs::read(format!("/proc/{}/environ", self.child.id())).expect("environ");
        let entry = format!("{name}={value}");
        let mut starts =
            std::iter::once(0).chain(environ.iter().enumerate().filter(|(_, b)| **b == 0).map(|(i, _)| i + 1));
        starts.any(|start| {
            let Some(held) = environ.get(start..start + entry.len()) else {
                return false;
            };
            let whole_entry = matches!(environ.get(start + entry.len()), None | Some(0));
            whole_entry && held.iter().map(|b| if *b == 0 { b':' } else { *b }).eq(entry.bytes())
        })
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn api(&self) -> Api {
        let (client, _) = ApiClient::new(&self.base).login("admin", PASSWORD).await.expect("login");
        Api { client }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `edgefleet` command line signed in to a server, with its own config folder.
pub struct Cli {
    config: tempfile::TempDir,
}

impl Cli {
    /// Not signed in anywhere.
    pub fn new() -> Cli {
        Cli { config: tempfile::tempdir().expect("config dir") }
    }

    /// Runs `edgefleet login` as the admin; fails the test if it does not succeed.
    pub fn signed_in(server: &Server) -> Cli {
        let cli = Cli::new();
        let login = cli.run(&["login", "--server", &server.base, "--username", "admin"]);
        assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
        cli
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_edgefleet"))
            .args(args)
            .env("EDGEFLEET_CONFIG_DIR", self.config.path())
            .env("EDGEFLEET_PASSWORD", PASSWORD)
            .output()
            .expect("runs")
    }
}

/// The shared API client, with test helpers that fail the test on an error answer.
pub struct Api {
    client: ApiClient,
}

impl Api {
    pub async fn get(&self, path: &str) -> Value {
        self.client.get(path).await.unwrap_or_else(|err| panic!("GET {path}: {err}"))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.client.post(path, &body).await.unwrap_or_else(|err| panic!("POST {path}: {err}"))
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.client.put(path, &body).await.unwrap_or_else(|err| panic!("PUT {path}: {err}"))
    }

    /// A project with the simulator's instances registered and a one-stream, one-rule template;
    /// answers (project id, template).
    pub async fn rule_setup(&self, sim: &neuronex_sim::RunningSim) -> (String, Value) {
        let project = self.project().await;
        let rows: Vec<Value> = sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint})).collect();
        self.post(&format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await;
        let template = self.rule_setup_template(&project).await;
        (project, template)
    }

    /// The one-stream, one-rule template in `project`.
    pub async fn rule_setup_template(&self, project: &str) -> Value {
        let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}).to_string();
        let doc = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": rule}});
        self.post(
            &format!("/api/v1/projects/{project}/templates"),
            json!({"name": "t", "kind": "rule", "content": doc}),
        )
        .await
    }

    pub async fn project(&self) -> String {
        let org = self.post("/api/v1/orgs", json!({"name": "o"})).await;
        let project = self
            .post(&format!("/api/v1/orgs/{}/projects", org["id"].as_str().expect("id")), json!({"name": "p"}))
            .await;
        project["id"].as_str().expect("id").to_owned()
    }

    /// Reads delivery events until one satisfies `enough` (name, data); `false` when the stream
    /// ended first.
    pub async fn watch_for(&self, path: &str, enough: impl Fn(&str, &str) -> bool) -> bool {
        let mut events = self.client.events(path, None).await.expect("events");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, events.next()).await {
            if enough(&event.name, &event.data) {
                return true;
            }
        }
        false
    }

    /// Reads delivery events until `stop_after` target events or the final event; answers how
    /// many target events came.
    pub async fn watch(&self, path: &str, stop_after: usize) -> usize {
        let mut events = self.client.events(path, None).await.expect("events");
        let mut targets = 0;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, events.next()).await {
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
        targets
    }
}
