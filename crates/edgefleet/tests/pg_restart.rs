//! PostgreSQL restarts in the middle of a delivery run by two replicas: they reconnect and the
//! delivery finishes with one final result per target. The test runs a PostgreSQL server of its
//! own, so the machine's shared one is never restarted.

#[path = "it/process.rs"]
#[allow(dead_code, reason = "shared with the main test binary, which uses all of it")]
mod process;

use neuronex_sim::{Faults, SimConfig};
use serde_json::json;

use process::Server;

/// A PostgreSQL server of this test's own, in a temporary directory on a free port: restarting
/// it disturbs nothing else on the machine (the shared server the other tests use stays up).
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("a Debian PostgreSQL installation (scripts/ensure-services installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = tempfile::tempdir().expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let server = PrivatePostgres { dir, port, bin };
        if PrivatePostgres::as_root() {
            // PostgreSQL refuses to run as root: its files belong to the `postgres` user.
            let owned = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .expect("chown runs");
            assert!(owned.success(), "the data directory is given to postgres");
        }
        let data = server.dir.path().join("data");
        server.run("initdb", &["-D", path(&data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        server.pg_ctl("start");
        server
    }

    fn as_root() -> bool {
        std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            path(self.dir.path())
        );
        self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-o", &options, "-m", "fast", "-w", action]);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if Self::as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            std::process::Command::new(&program)
        };
        let output = command.args(args).output().expect("PostgreSQL's tools run");
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let program = self.bin.join("pg_ctl");
        let args = ["-D", path(&data), "-m", "immediate", "-w", "stop"];
        let _ = if Self::as_root() {
            std::process::Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            std::process::Command::new(&program).args(args).output()
        };
    }
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[tokio::test]
async fn replicas_reconnect_after_a_postgresql_restart_and_finish_the_delivery() {
    let postgres = PrivatePostgres::start();
    let database_url = store::testing::fresh_postgres_database(&postgres.url()).await.expect("database");
    let shared = tempfile::tempdir().expect("dir");
    let config = shared.path().join("replica.toml");
    std::fs::write(&config, format!("secret_key = \"{}\"\n", "cd".repeat(32))).expect("config");
    let args = [
        "--database-url",
        &database_url,
        "--blob-dir",
        shared.path().to_str().expect("path"),
        "--config",
        config.to_str().expect("path"),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let a = Server::start_with(dir_a.path(), &args);
    let _b = Server::start_with(dir_b.path(), &args);
    let sim = neuronex_sim::start(
        SimConfig { count: 200, ..SimConfig::default() },
        "127.0.0.1:0".parse().expect("addr"),
        false,
    )
    .await
    .expect("sim");
    sim.sim.set_faults(None, Some(Faults { latency_ms: 20, ..Faults::default() }));
    let api = a.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    // A generous target timeout: a busy machine must not fail targets while PostgreSQL restarts
    // (a result whose write failed is claimed again when its lease, timeout + 5 s, runs out).
    let body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": 4, "timeout_secs": 30}});
    let delivery = api.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let id = delivery["id"].as_str().expect("id").to_owned();
    let events = format!("/api/v1/projects/{project}/deliveries/{id}/events");
    assert!(api.watch(&events, 30).await >= 30, "the delivery was under way");
    postgres.pg_ctl("restart");
    // A new session on the restarted database server; follow the delivery to its end.
    let api = a.api().await;
    api.watch(&events, usize::MAX).await;
    let finished = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await;
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(
        (finished["counts"]["total"].as_u64(), finished["counts"]["succeeded"].as_u64()),
        (Some(200), Some(200))
    );
}
