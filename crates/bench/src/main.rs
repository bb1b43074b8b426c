//! `cargo run --release -p bench -- [--sizes 1000,10000]`: measures a rule-template delivery from
//! `POST` to final state against `edgefleet serve` (a separate process, so its memory is its own),
//! and the raw limit: the same requests per target sent straight to the same simulator with the
//! same concurrency and no persistence or orchestration. Writes JSON and a Markdown table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use edge_client::{ClientConfig, EdgeAuth, EdgeClient, EdgeTarget, StreamKind};
use futures::StreamExt;
use neuronex_sim::{Faults, SimConfig};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Fleet sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<u32>,
    /// Targets worked on at once, by edgefleet and by the raw client alike.
    #[arg(long, default_value_t = 256)]
    concurrency: u32,
    /// The edgefleet binary (built with --release).
    #[arg(long, default_value = "target/release/edgefleet")]
    edgefleet: PathBuf,
    /// Where to write results.json.
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
}

const PASSWORD: &str = "bench-password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.edgefleet.exists(),
        "{} is missing: run `cargo build --release -p edgefleet` first",
        args.edgefleet.display()
    );
    let mut results = Vec::new();
    for &n in &args.sizes {
        let raw = raw_limit(n, args.concurrency).await?;
        println!("N={n} raw: {:.2} s, {:.0} targets/s", raw.as_secs_f64(), f64::from(n) / raw.as_secs_f64());
        let clean = delivery(&args, n, Faults::default()).await?;
        println!("N={n} edgefleet: {clean}");
        let faulty = delivery(&args, n, Faults { error_rate: 0.10, timeout_rate: 0.02, ..Faults::default() }).await?;
        println!("N={n} edgefleet with 10% errors, 2% timeouts: {faulty}");
        results.push(json!({
            "targets": n,
            "concurrency": args.concurrency,
            "raw_seconds": raw.as_secs_f64(),
            "raw_targets_per_second": f64::from(n) / raw.as_secs_f64(),
            "delivery": clean,
            "delivery_with_faults": faulty,
            "ratio_to_raw": (f64::from(n) / clean["seconds"].as_f64().unwrap_or(f64::MAX)) / (f64::from(n) / raw.as_secs_f64()),
        }));
    }
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json!({"results": results}))?)?;
    println!("wrote {}", path.display());
    Ok(())
}

async fn start_sim(n: u32, faults: Faults) -> anyhow::Result<neuronex_sim::RunningSim> {
    let config = SimConfig { count: n, seed: 7, faults, ..SimConfig::default() };
    neuronex_sim::start(config, "127.0.0.1:0".parse()?, false).await
}

/// The same requests a rule delivery makes per target, with nothing around them.
async fn raw_limit(n: u32, concurrency: u32) -> anyhow::Result<Duration> {
    let sim = start_sim(n, Faults::default()).await?;
    let client = Arc::new(EdgeClient::new(ClientConfig::default(), None));
    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    let started = Instant::now();
    futures::stream::iter(sim.manifest.iter().map(|e| e.endpoint.clone()))
        .for_each_concurrent(concurrency as usize, |endpoint| {
            let client = Arc::clone(&client);
            let rule = rule.clone();
            async move {
                let target = EdgeTarget { endpoint, auth: EdgeAuth::None };
                let edge = client.edge(&target);
                let _ = edge.version().await;
                let _ = edge
                    .replace_stream(StreamKind::Stream, "demo", "CREATE STREAM demo () WITH (TYPE=\"memory\")")
                    .await;
                let _ = edge.upsert_rule("r1", &rule).await;
                let _ = edge.rule_status("r1").await;
            }
        })
        .await;
    let elapsed = started.elapsed();
    sim.abort();
    Ok(elapsed)
}

struct ServerProcess {
    child: Child,
    base: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(binary: &Path, data: &Path) -> anyhow::Result<ServerProcess> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--probe-interval-secs", "3600", "--data-dir"])
        .arg(data)
        .env("EDGEFLEET_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("start edgefleet")?;
    let mut reader = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    let mut base = String::new();
    while reader.read_line(&mut line)? > 0 {
        if let Some(address) = line.trim().strip_prefix("edgefleet listening on ") {
            base = address.to_owned();
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || for _ in reader.lines() {});
    anyhow::ensure!(!base.is_empty(), "edgefleet did not print its address");
    Ok(ServerProcess { child, base })
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// User plus system CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks, 100 per second).
    (ticks(11) + ticks(12)) / 100.0
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.metadata().map(|m| if m.is_dir() { dir_size(&e.path()) } else { m.len() }).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

async fn delivery(args: &Args, n: u32, faults: Faults) -> anyhow::Result<Value> {
    let sim = start_sim(n, Faults::default()).await?;
    let data = tempfile::tempdir()?;
    let server = start_server(&args.edgefleet, data.path())?;
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("token")?.to_owned();
    let post = |path: String, body: Value| {
        let request = http.post(format!("{}{path}", server.base)).bearer_auth(&token).json(&body);
        async move { request.send().await?.json::<Value>().await.map_err(anyhow::Error::from) }
    };
    let org = post("/api/v1/orgs".into(), json!({"name": "bench"})).await?;
    let project =
        post(format!("/api/v1/orgs/{}/projects", org["id"].as_str().unwrap_or_default()), json!({"name": "bench"}))
            .await?;
    let project = project["id"].as_str().context("project")?.to_owned();
    let rows: Vec<Value> = sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint})).collect();
    post(format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await?;
    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}).to_string();
    let doc = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": rule}});
    let template =
        post(format!("/api/v1/projects/{project}/templates"), json!({"name": "bench", "kind": "rule", "content": doc}))
            .await?;
    sim.sim.set_faults(None, Some(faults));
    let db_before = dir_size(data.path());
    let body = json!({"template_id": template["id"], "targets": {"filter": {}}, "options": {"concurrency": args.concurrency, "timeout_secs": 5, "retries": 1}});
    let cpu_before = cpu_seconds(server.child.id());
    let started = Instant::now();
    let delivery = post(format!("/api/v1/projects/{project}/deliveries"), body).await?;
    let id = delivery["id"].as_str().context("delivery id")?.to_owned();
    let events = http
        .get(format!("{}/api/v1/projects/{project}/deliveries/{id}/events", server.base))
        .bearer_auth(&token)
        .send()
        .await?;
    let mut stream = events.bytes_stream();
    let mut buffer = String::new();
    'watch: while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.contains("event: final") {
                break 'watch;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let finished: Value = http
        .get(format!("{}/api/v1/projects/{project}/deliveries/{id}", server.base))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let result = json!({
        "seconds": seconds,
        "targets_per_second": f64::from(n) / seconds,
        "state": finished["state"],
        "counts": finished["counts"],
        "server_peak_rss_mib": peak_rss_mib(server.child.id()),
        "server_cpu_seconds": cpu_seconds(server.child.id()) - cpu_before,
        "database_growth_bytes": dir_size(data.path()).saturating_sub(db_before),
    });
    sim.abort();
    Ok(result)
}
