//! `cargo run --release -p bench -- [--sizes 1000,10000]`: measures a rule-template delivery from
//! `POST` to final state against `edgefleet serve` (a separate process, so its memory is its own),
//! and the raw limit: the same requests per target sent straight to the same simulator with the
//! same concurrency and no persistence or orchestration. Writes JSON and a Markdown table.

use domain::network::NetworkPolicy;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use api_client::ApiClient;
use clap::Parser;
use domain::plan::ObjectRef;
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
    /// Where to write results.json and the chart.
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
    /// Measure the registry on PostgreSQL only (with `--postgres`), not on SQLite first.
    #[arg(long)]
    registry_postgres_only: bool,
    /// Edge services in the registry benchmark (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    registry: u32,
    /// SSE watchers on a 10,000-target delivery, measured against the same delivery without them,
    /// `--repeat` times each, alternating (0 skips it).
    #[arg(long, default_value_t = 100)]
    watchers: u32,
    /// A PostgreSQL server (`postgres://user@host:port`): the clean deliveries are measured on it
    /// too, each in a database of its own.
    #[arg(long)]
    postgres: Option<String>,
    /// Runs of each clean delivery and its raw limit, alternating; the medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Targets of the 20 MiB plugin delivery (0 skips it).
    #[arg(long, default_value_t = 1000)]
    plugin_targets: u32,
    /// Parallel sign-ins of the hostile-load run (with a 16 MB hostile template; 0 skips it).
    #[arg(long, default_value_t = 256)]
    logins: u32,
    /// Hung targets of the cancel measurement (0 skips it).
    #[arg(long, default_value_t = 1000)]
    cancel_targets: u32,
    /// Targets of the plan measurement: a plan, its summary, and the plan applied (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    plan_targets: u32,
    /// Targets of the rollout measurement: the clean delivery again in three waves (1%, 10%, the
    /// rest; auto gate; an abort rule that never trips), for what waves cost (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    rollout_targets: u32,
    /// Edges of the drift measurement: one check round over all of them after a delivery, with
    /// 1% changed by hand (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    drift_edges: u32,
    /// Seconds between the drift measurement's rounds (long enough for the delivery before it).
    #[arg(long, default_value_t = 30)]
    drift_interval_secs: u64,
    /// Agent-mode targets: simulator instances with an embedded agent each, reached through a
    /// Mosquitto of the bench's own (0 skips it). Compared with the clean HTTP delivery of the same
    /// size when `--sizes` has it.
    #[arg(long, default_value_t = 10_000)]
    agent_targets: u32,
    /// Run only the agent-mode measurement: `--repeat` pairs of the clean HTTP delivery of its
    /// size and the agent-mode delivery, alternating; the median ratio is reported.
    #[arg(long)]
    agents_only: bool,
    /// Run only the hostile-load part (sign-ins and a hostile template), nothing else.
    #[arg(long)]
    hostile_only: bool,
    /// Targets of the instruction count: the clean delivery with the server under `valgrind
    /// --tool=callgrind`, counted from the delivery's start to its end only (concurrency 16, so
    /// the slowed server meets no timeout). The figure to compare commits with: it does not move
    /// with the machine's speed. 0 skips it.
    #[arg(long, default_value_t = 1000)]
    instruction_targets: u32,
    /// SSE watchers following a second counted delivery (a server of its own), so what watchers
    /// cost is counted too (`instructions_per_target_with_watchers`). 0 skips it.
    #[arg(long, default_value_t = 100)]
    instruction_watchers: u32,
    /// Services registered in one import request while another client writes (creates a
    /// template) every 20 ms: how long the import holds other writers back (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    import_services: u32,
    /// Run only the instruction count and write `instructions.json`.
    #[arg(long)]
    instructions_only: bool,
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
    if args.agents_only {
        return agents_only(&args).await;
    }
    if args.instructions_only {
        let counted = counted_instructions(&args).await?;
        println!("instructions: {counted}");
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(args.out.join("instructions.json"), serde_json::to_string_pretty(&counted)?)?;
        return Ok(());
    }
    let hostile = if args.logins > 0 { Some(hostile_load(&args, args.logins).await?) } else { None };
    println!("hostile load: {}", hostile.clone().unwrap_or(Value::Null));
    if args.hostile_only {
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(args.out.join("hostile.json"), serde_json::to_string_pretty(&hostile)?)?;
        return Ok(());
    }
    let mut results = Vec::new();
    for &n in &args.sizes {
        // This machine's speed drifts from minute to minute: runs alternate, medians are kept.
        let (mut raws, mut raw_cpus, mut cleans) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.repeat.max(1) {
            let RawRun { elapsed: raw, cpu_seconds } = raw_limit(n, args.concurrency).await?;
            println!(
                "N={n} raw: {:.2} s, {:.0} targets/s, {cpu_seconds:.2} CPU s (simulator and client)",
                raw.as_secs_f64(),
                f64::from(n) / raw.as_secs_f64()
            );
            raws.push(raw);
            raw_cpus.push(cpu_seconds);
            let clean = delivery_on(&args, n, Faults::default(), None, None).await?;
            println!("N={n} edgefleet: {clean}");
            cleans.push(clean);
        }
        raws.sort();
        let raw = raws[raws.len() / 2];
        let runs: Vec<f64> = cleans.iter().filter_map(|c| c["seconds"].as_f64()).collect();
        let raw_runs: Vec<f64> = raws.iter().map(Duration::as_secs_f64).collect();
        let clean = median_run(cleans);
        let on_postgres = match &args.postgres {
            Some(base) => {
                let mut runs = Vec::new();
                for _ in 0..args.repeat.max(1) {
                    let run = delivery_on(&args, n, Faults::default(), Some(base), None).await?;
                    println!("N={n} edgefleet on PostgreSQL: {run}");
                    runs.push(run);
                }
                runs.sort_by(|a, b| {
                    a["seconds"].as_f64().unwrap_or(0.0).total_cmp(&b["seconds"].as_f64().unwrap_or(0.0))
                });
                Some(runs[runs.len() / 2].clone())
            }
            None => None,
        };
        let faulty =
            delivery_on(&args, n, Faults { error_rate: 0.10, timeout_rate: 0.02, ..Faults::default() }, None, None)
                .await?;
        println!("N={n} edgefleet with 10% errors, 2% timeouts: {faulty}");
        results.push(json!({
            "targets": n,
            "concurrency": args.concurrency,
            "raw_seconds": raw.as_secs_f64(),
            "raw_runs_seconds": raw_runs,
            "raw_runs_cpu_seconds": raw_cpus,
            "delivery_runs_seconds": runs,
            "raw_targets_per_second": f64::from(n) / raw.as_secs_f64(),
            "delivery": clean,
            "delivery_with_faults": faulty,
            "delivery_on_postgres": on_postgres,
            "ratio_to_raw": (f64::from(n) / clean["seconds"].as_f64().unwrap_or(f64::MAX)) / (f64::from(n) / raw.as_secs_f64()),
        }));
    }
    let on_sqlite = args.registry > 0 && !(args.registry_postgres_only && args.postgres.is_some());
    let registry = if on_sqlite { Some(registry_on(&args, args.registry, None).await?) } else { None };
    println!("registry: {}", registry.clone().unwrap_or(Value::Null));
    let registry_on_postgres = match (&args.postgres, args.registry) {
        (Some(base), n) if n > 0 => Some(registry_on(&args, n, Some(base)).await?),
        _ => None,
    };
    println!("registry on PostgreSQL: {}", registry_on_postgres.clone().unwrap_or(Value::Null));
    let watched = if args.watchers > 0 { Some(watched_delivery(&args, 10_000, args.watchers).await?) } else { None };
    println!("watchers: {}", watched.clone().unwrap_or(Value::Null));
    let plugin = if args.plugin_targets > 0 { Some(plugin_delivery(&args, args.plugin_targets).await?) } else { None };
    println!("plugin: {}", plugin.clone().unwrap_or(Value::Null));
    let cancel = if args.cancel_targets > 0 { Some(cancel_delivery(&args, args.cancel_targets).await?) } else { None };
    println!("cancel: {}", cancel.clone().unwrap_or(Value::Null));
    let plan = if args.plan_targets > 0 { Some(plan_and_apply(&args, args.plan_targets).await?) } else { None };
    println!("plan: {}", plan.clone().unwrap_or(Value::Null));
    let rollout = match args.rollout_targets {
        0 => None,
        n => {
            let canary = json!({"waves": [{"percent": 1}, {"percent": 10}, {"percent": 100}], "gate": "auto",
                                "abort": {"failed_percent": 50, "min_results": 20}});
            Some(delivery_on(&args, n, Faults::default(), None, Some(canary)).await?)
        }
    };
    println!("rollout: {}", rollout.clone().unwrap_or(Value::Null));
    let drift = if args.drift_edges > 0 { Some(drift_round(&args, args.drift_edges).await?) } else { None };
    println!("drift: {}", drift.clone().unwrap_or(Value::Null));
    let agents = match args.agent_targets {
        0 => None,
        n => {
            let http = results.iter().find(|r| r["targets"] == n).and_then(|r| r["delivery"]["seconds"].as_f64());
            Some(agent_delivery(&args, n, http).await?)
        }
    };
    println!("agents: {}", agents.clone().unwrap_or(Value::Null));
    let import =
        if args.import_services > 0 { Some(import_beside_writers(&args, args.import_services).await?) } else { None };
    println!("import beside writers: {}", import.clone().unwrap_or(Value::Null));
    let instructions = if args.instruction_targets > 0 { Some(counted_instructions(&args).await?) } else { None };
    println!("instructions: {}", instructions.clone().unwrap_or(Value::Null));
    if let Some(base) = &args.postgres {
        store::testing::drop_test_databases(base).await?;
    }
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("results.json");
    let all = json!({"results": results, "hostile_load": hostile, "registry": registry, "registry_on_postgres": registry_on_postgres, "sse_watchers": watched, "plugin_delivery": plugin, "cancel": cancel, "plan": plan, "rollout": rollout, "drift": drift, "agent_mode": agents, "instructions": instructions, "import_beside_writers": import});
    std::fs::write(&path, serde_json::to_string_pretty(&all)?)?;
    std::fs::write(args.out.join("delivery-time.svg"), chart(&results))?;
    println!("wrote {} and delivery-time.svg", path.display());
    Ok(())
}

/// `logins` sign-ins at once (each of its own account, so every one runs a password hash) while a
/// 15 MB template of `${${${...` is posted, and `/healthz` is asked every 20 ms throughout: the
/// server's peak memory and the health check's latency.
async fn hostile_load(args: &Args, logins: u32) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let data = tempfile::tempdir()?;
    let server = start_server_on(&args.edgefleet, data.path(), None, NO_DRIFT_ROUNDS, None).await?;
    let session = Session::start(&server).await?;
    let project = session.project().await?;
    for k in 0..logins {
        session.post("/api/v1/users", json!({"username": format!("operator-{k}"), "password": PASSWORD})).await?;
    }
    let rss_before = peak_rss_mib(server.child.id());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (api, stop) = (session.api.anonymous(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let ok = api.send(reqwest::Method::GET, "/healthz", None).await.is_ok_and(|a| a.is_success());
                latencies.push((asked.elapsed().as_secs_f64() * 1000.0, ok));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies
        })
    };
    let started = Instant::now();
    let anonymous = session.api.anonymous();
    let sign_ins = futures::future::join_all((0..logins).map(|k| {
        let body = json!({"username": format!("operator-{k}"), "password": PASSWORD});
        let anonymous = anonymous.clone();
        async move {
            let answer = anonymous.send(reqwest::Method::POST, "/api/v1/auth/login", Some(&body)).await;
            answer.map(|a| a.status).unwrap_or(0)
        }
    }));
    let hostile = format!("{{\"id\": \"r1\", \"sql\": \"{}\"}}", "${".repeat(15 * 512 * 1024));
    let hostile_body = json!({"name": "hostile", "kind": "rule", "content": hostile});
    let template_path = format!("/api/v1/projects/{project}/templates");
    let template = session.api.send(reqwest::Method::POST, &template_path, Some(&hostile_body));
    let (statuses, template) = tokio::join!(sign_ins, template);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await?;
    let mut latencies: Vec<f64> = samples.iter().map(|(ms, _)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    Ok(json!({
        "sign_ins": logins,
        "signed_in": count(200),
        "busy_503": count(503),
        "throttled_429": count(429),
        "seconds": seconds,
        "hostile_template_bytes": hostile.len(),
        "hostile_template_status": template.map(|a| a.status).unwrap_or(0),
        "server_peak_rss_mib_before": rss_before,
        "server_peak_rss_mib": peak_rss_mib(server.child.id()),
        "healthz_samples": latencies.len(),
        "healthz_failed": samples.iter().filter(|(_, ok)| !ok).count(),
        "healthz_p50_ms": percentile(&latencies, 0.5),
        "healthz_p99_ms": percentile(&latencies, 0.99),
        "healthz_max_ms": latencies.last().copied().unwrap_or(0.0),
    }))
}

/// The run with the median `seconds`.
fn median_run(mut runs: Vec<Value>) -> Value {
    runs.sort_by(|a, b| a["seconds"].as_f64().unwrap_or(0.0).total_cmp(&b["seconds"].as_f64().unwrap_or(0.0)));
    runs.swap_remove(runs.len() / 2)
}

/// A line chart of delivery time against N, edgefleet and the raw limit, as SVG.
fn chart(results: &[Value]) -> String {
    let points: Vec<(f64, f64, f64)> = results
        .iter()
        .map(|r| {
            (
                r["targets"].as_f64().unwrap_or(0.0),
                r["delivery"]["seconds"].as_f64().unwrap_or(0.0),
                r["raw_seconds"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let max_n = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_t = points.iter().map(|p| p.1.max(p.2)).fold(0.1, f64::max) * 1.1;
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let x = |n: f64| pad + (w - 2.0 * pad) * n / max_n;
    let y = |t: f64| h - pad - (h - 2.0 * pad) * t / max_t;
    let line = |pick: fn(&(f64, f64, f64)) -> f64| {
        std::iter::once(format!("{},{}", x(0.0), y(0.0)))
            .chain(points.iter().map(|p| format!("{:.1},{:.1}", x(p.0), y(pick(p)))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let labels: String = points
        .iter()
        .map(|p| {
            format!(
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                x(p.0),
                h - pad + 16.0,
                p.0
            )
        })
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="24" font-size="14">Rule delivery time against targets (2 cores, SQLite)</text>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#333"/>
<text x="12" y="{pad}" font-size="11">{max_t:.1} s</text>{labels}
<polyline points="{edge}" fill="none" stroke="#0b6bcb" stroke-width="2"/>
<polyline points="{raw}" fill="none" stroke="#999" stroke-width="2" stroke-dasharray="5,4"/>
<text x="{lx}" y="60" font-size="12" fill="#0b6bcb">edgefleet</text><text x="{lx}" y="78" font-size="12" fill="#777">raw limit</text>
</svg>"##,
        b = h - pad,
        r = w - pad,
        edge = line(|p| p.1),
        raw = line(|p| p.2),
        lx = w - pad - 80.0,
    )
}

struct Session {
    api: ApiClient,
}

/// A simulated fleet registered in a project of a fresh server: where every measured delivery
/// starts.
struct Fleet {
    sim: neuronex_sim::RunningSim,
    /// The server's data folder, removed when the run ends.
    _data: tempfile::TempDir,
    server: ServerProcess,
    session: Session,
    project: String,
}

impl Fleet {
    async fn start(args: &Args, sim: neuronex_sim::RunningSim, postgres: Option<&str>) -> anyhow::Result<Fleet> {
        Fleet::start_with_drift(args, sim, postgres, NO_DRIFT_ROUNDS).await
    }

    async fn start_with_drift(
        args: &Args,
        sim: neuronex_sim::RunningSim,
        postgres: Option<&str>,
        drift_interval_secs: u64,
    ) -> anyhow::Result<Fleet> {
        let data = tempfile::tempdir()?;
        let server = start_server_on(&args.edgefleet, data.path(), postgres, drift_interval_secs, None).await?;
        let session = Session::start(&server).await?;
        let project = session.project().await?;
        session.register(&project, &sim).await?;
        Ok(Fleet { sim, _data: data, server, session, project })
    }
}

/// A delivery followed to its end by [`Session::deliver`].
struct Timed {
    accepted_seconds: f64,
    seconds: f64,
    finished: Value,
}

impl Session {
    async fn start(server: &ServerProcess) -> anyhow::Result<Session> {
        let (api, _) = ApiClient::new(&server.base).login("admin", PASSWORD).await?;
        Ok(Session { api })
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self.api.post(path, &body).await?)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.api.get(path).await?)
    }

    /// The server's Prometheus text (`GET /metrics`).
    async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.api.http().get(self.api.url("/metrics")).send().await?.text().await?)
    }

    async fn project(&self) -> anyhow::Result<String> {
        let org = self.post("/api/v1/orgs", json!({"name": "bench"})).await?;
        let project = self
            .post(
                &format!("/api/v1/orgs/{}/projects", org["id"].as_str().unwrap_or_default()),
                json!({"name": "bench"}),
            )
            .await?;
        Ok(project["id"].as_str().context("project")?.to_owned())
    }

    /// Registers the simulator's instances and waits for the first probe of each, so what is
    /// measured next does not share the machine with registration work.
    async fn register(&self, project: &str, sim: &neuronex_sim::RunningSim) -> anyhow::Result<()> {
        for chunk in sim.manifest.chunks(20_000) {
            let rows: Vec<Value> =
                chunk.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint, "tags": e.tags})).collect();
            self.post(&format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await?;
        }
        loop {
            let unknown = self.get(&format!("/api/v1/projects/{project}/edge-services?status=unknown&limit=1")).await?;
            if unknown["total"].as_i64() == Some(0) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The template every rule delivery sends: one stream, one rule.
    async fn rule_template(&self, project: &str) -> anyhow::Result<Value> {
        let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}).to_string();
        let doc = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": rule}});
        self.post(
            &format!("/api/v1/projects/{project}/templates"),
            json!({"name": "bench", "kind": "rule", "content": doc}),
        )
        .await
    }

    /// Starts a delivery and follows it to its end: how long the server took to accept it, how
    /// long until its `final` event, and the delivery as it ended.
    async fn deliver(&self, project: &str, body: Value) -> anyhow::Result<Timed> {
        let started = Instant::now();
        let delivery = self.post(&format!("/api/v1/projects/{project}/deliveries"), body).await?;
        let accepted_seconds = started.elapsed().as_secs_f64();
        let id = delivery["id"].as_str().context("delivery id")?.to_owned();
        self.watch(project, &id).await?;
        let seconds = started.elapsed().as_secs_f64();
        let finished = self.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await?;
        Ok(Timed { accepted_seconds, seconds, finished })
    }

    /// Follows a delivery's events to its end.
    async fn watch(&self, project: &str, id: &str) -> anyhow::Result<()> {
        let mut events = self.api.events(&format!("/api/v1/projects/{project}/deliveries/{id}/events"), None).await?;
        while let Some(event) = events.next().await {
            if event?.name == "final" {
                return Ok(());
            }
        }
        Ok(())
    }
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    sorted_ms[((sorted_ms.len() as f64 - 1.0) * p).round() as usize]
}

/// `n` registered (and probed) edge services on SQLite or on a fresh database of the PostgreSQL
/// server; latency of list requests per filter.
async fn registry_on(args: &Args, n: u32, postgres: Option<&str>) -> anyhow::Result<Value> {
    let versions =
        ["3.7.0", "3.6.0", "3.5.5", "3.4.0"].iter().filter_map(|v| neuronex_sim::versions::Version::parse(v)).collect();
    let config = SimConfig { count: n, exact_versions: versions, ..SimConfig::default() };
    let sim = neuronex_sim::start(config, "127.0.0.1:0".parse()?, false).await?;
    let Fleet { sim, _data, server: _server, session, project } = Fleet::start(args, sim, postgres).await?;
    // After the first probes of a big import the server tidies its indexes (a second or two of
    // one core); measuring through that would time the housekeeping, not the filters.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut out = serde_json::Map::new();
    for (label, query) in [
        ("name", "name=00042"),
        ("tag", "tag=zone-b"),
        ("version", "version=3.6"),
        ("free_text", "q=line-2"),
        ("tag_and_version", "tag=zone-b&version=3.6"),
    ] {
        let mut times = Vec::new();
        let (mut total, mut estimated) = (0, false);
        for _ in 0..200 {
            let started = Instant::now();
            let answer = session.get(&format!("/api/v1/projects/{project}/edge-services?{query}&limit=50")).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            total = answer["total"].as_i64().unwrap_or(0);
            estimated = answer["total_estimated"].as_bool().unwrap_or(false);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        out.insert(label.into(), json!({"query": query, "matches": total, "matches_estimated": estimated, "p50_ms": percentile(&times, 0.5), "p95_ms": percentile(&times, 0.95), "p99_ms": percentile(&times, 0.99)}));
    }
    sim.abort();
    Ok(json!({"edge_services": n, "filters": out}))
}

/// What `watchers` SSE clients cost a 10,000-target delivery: `--repeat` pairs of runs on fresh
/// fleets, alternating, one followed only by the bench's own stream and one by `watchers` more.
/// Besides the wall clock it reports the server's CPU time (what the watchers cost the server, the
/// figure that does not depend on where the clients run) and the bench process's (the simulator,
/// and the watcher clients, which here share the server's two cores).
async fn watched_delivery(args: &Args, n: u32, watchers: u32) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let alone = followed_delivery(args, n, 0).await?;
        let watched = followed_delivery(args, n, watchers).await?;
        eprintln!("N={n}: alone {alone}, with {watchers} watchers {watched}");
        runs.push(json!({"alone": alone, "watched": watched}));
    }
    let median = |side: &str, field: &str| {
        let mut values: Vec<f64> = runs.iter().filter_map(|run| run[side][field].as_f64()).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let slower = median("watched", "seconds") / median("alone", "seconds") - 1.0;
    let server_cost = median("watched", "server_cpu_seconds") / median("alone", "server_cpu_seconds") - 1.0;
    let clients = median("watched", "bench_cpu_seconds") - median("alone", "bench_cpu_seconds");
    Ok(json!({
        "targets": n, "watchers": watchers, "runs": runs,
        "slower_by": slower, "server_cpu_cost": server_cost, "watcher_clients_cpu_seconds": clients,
    }))
}

/// One delivery of `n` targets followed by the bench's own stream and `watchers` more.
async fn followed_delivery(args: &Args, n: u32, watchers: u32) -> anyhow::Result<Value> {
    let Fleet { sim, _data, server, session, project } =
        Fleet::start(args, start_sim(n, Faults::default()).await?, None).await?;
    let session = Arc::new(session);
    let template = session.rule_template(&project).await?;
    let cpu_before = cpu_seconds(server.child.id());
    let bench_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let body =
        json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": args.concurrency}});
    let delivery = session.post(&format!("/api/v1/projects/{project}/deliveries"), body).await?;
    let id = delivery["id"].as_str().context("delivery")?.to_owned();
    follow(&session, &project, &id, watchers + 1).await?;
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu_seconds = cpu_seconds(server.child.id()) - cpu_before;
    let bench_cpu_seconds = cpu_seconds(std::process::id()) - bench_cpu_before;
    let metrics = session.metrics().await?;
    let catch_ups =
        metrics.lines().find_map(|l| l.strip_prefix("edgefleet_sse_catch_ups_total ")).unwrap_or("?").to_owned();
    let result = json!({
        "seconds": seconds, "catch_ups": catch_ups,
        "server_cpu_seconds": server_cpu_seconds, "bench_cpu_seconds": bench_cpu_seconds,
        "server_peak_rss_mib": peak_rss_mib(server.child.id()),
    });
    sim.abort();
    Ok(result)
}

/// `watchers` SSE streams following a delivery at once, each to its end.
async fn follow(session: &Arc<Session>, project: &str, id: &str, watchers: u32) -> anyhow::Result<()> {
    let watching: Vec<_> = (0..watchers)
        .map(|_| {
            let (session, project, id) = (Arc::clone(session), project.to_owned(), id.to_owned());
            tokio::spawn(async move { session.watch(&project, &id).await })
        })
        .collect();
    for watcher in watching {
        watcher.await??;
    }
    Ok(())
}

/// Plans of `n` targets: one that finds every object absent (what a first delivery would do), its
/// summary read, the plan applied (every target re-read against the plan, snapshot, written),
/// and a plan again once everything is in place (every object `unchanged`).
async fn plan_and_apply(args: &Args, n: u32) -> anyhow::Result<Value> {
    let Fleet { sim, _data, server, session, project } =
        Fleet::start(args, start_sim(n, Faults::default()).await?, None).await?;
    let template = session.rule_template(&project).await?;
    let options = json!({"concurrency": args.concurrency, "timeout_secs": 5, "retries": 1});
    let deliveries = format!("/api/v1/projects/{project}/deliveries");
    let timed = |id: String| {
        let session = &session;
        let project = &project;
        async move {
            session.watch(project, &id).await?;
            session.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await
        }
    };
    let cpu_before = cpu_seconds(server.child.id());
    let started = Instant::now();
    let body = json!({"template_id": template["id"], "mode": "plan", "targets": {"all": true}, "options": options});
    let plan = session.post(&deliveries, body).await?;
    let plan_id = plan["id"].as_str().context("plan id")?.to_owned();
    let planned = timed(plan_id.clone()).await?;
    let plan_seconds = started.elapsed().as_secs_f64();
    let plan_cpu = cpu_seconds(server.child.id()) - cpu_before;
    let started = Instant::now();
    let summary = session.get(&format!("{deliveries}/{plan_id}/plan")).await?;
    let summary_seconds = started.elapsed().as_secs_f64();
    let cpu_before = cpu_seconds(server.child.id());
    let started = Instant::now();
    let applied = session.post(&format!("{deliveries}/{plan_id}/apply"), json!({})).await?;
    let applied = timed(applied["id"].as_str().context("apply id")?.to_owned()).await?;
    let apply_seconds = started.elapsed().as_secs_f64();
    let apply_cpu = cpu_seconds(server.child.id()) - cpu_before;
    let started = Instant::now();
    let body = json!({"template_id": template["id"], "mode": "plan", "targets": {"all": true}, "options": options});
    let again = session.post(&deliveries, body).await?;
    let again_id = again["id"].as_str().context("plan id")?.to_owned();
    timed(again_id.clone()).await?;
    let again_seconds = started.elapsed().as_secs_f64();
    let again_summary = session.get(&format!("{deliveries}/{again_id}/plan")).await?;
    sim.abort();
    Ok(json!({
        "targets": n,
        "plan_seconds": plan_seconds,
        "plan_server_cpu_seconds": plan_cpu,
        "plan_state": planned["state"],
        "summary_seconds": summary_seconds,
        "summary": summary["summary"],
        "groups": summary["groups"].as_array().map(Vec::len),
        "apply_of_plan_seconds": apply_seconds,
        "apply_of_plan_server_cpu_seconds": apply_cpu,
        "apply_state": applied["state"],
        "apply_counts": applied["counts"],
        "plan_when_in_place_seconds": again_seconds,
        "plan_when_in_place_summary": again_summary["summary"],
        "server_peak_rss_mib": peak_rss_mib(server.child.id()),
    }))
}

/// Cancel of a delivery whose targets all wait on gateways that never answer (registered while
/// they answered, so the prober knows them online): the time from `POST .../cancel` to the
/// `final` event, with every in-flight edge call abandoned.
async fn cancel_delivery(args: &Args, n: u32) -> anyhow::Result<Value> {
    let Fleet { sim, _data, server: _server, session, project } =
        Fleet::start(args, start_sim(n, Faults::default()).await?, None).await?;
    sim.sim.set_faults(None, Some(Faults { timeout_rate: 1.0, ..Faults::default() }));
    let template = session.rule_template(&project).await?;
    let body = json!({"template_id": template["id"], "targets": {"all": true},
                      "options": {"concurrency": args.concurrency, "timeout_secs": 600, "retries": 0}});
    let delivery = session.post(&format!("/api/v1/projects/{project}/deliveries"), body).await?;
    let id = delivery["id"].as_str().context("delivery")?.to_owned();
    // Until every slot holds a hung call (a minute at most: the gateways never answer).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "the cancel benchmark's targets did not all start within 60 s");
        let now: api_client::types::Delivery =
            session.api.get_as(&format!("/api/v1/projects/{project}/deliveries/{id}")).await?;
        if now.counts.running >= u64::from(args.concurrency.min(n)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    session.post(&format!("/api/v1/projects/{project}/deliveries/{id}/cancel"), json!({})).await?;
    let answered = started.elapsed();
    session.watch(&project, &id).await?;
    let ended = started.elapsed();
    let finished = session.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await?;
    sim.abort();
    Ok(json!({
        "targets": n, "in_flight_at_cancel": args.concurrency.min(n),
        "cancel_answered_seconds": answered.as_secs_f64(), "final_after_seconds": ended.as_secs_f64(),
        "state": finished["state"], "counts": finished["counts"],
    }))
}

/// A 20 MiB plugin package delivered to `n` targets, each downloading it from the server.
async fn plugin_delivery(args: &Args, n: u32) -> anyhow::Result<Value> {
    use std::io::Write;
    let Fleet { sim, _data, server, session, project } =
        Fleet::start(args, start_sim(n, Faults::default()).await?, None).await?;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let meta = br#"{"version":"1","language":"python","executable":"big.py","sinks":["s"]}"#;
    for (name, content) in [
        ("big.json", meta.to_vec()),
        ("big.py", b"print(1)".to_vec()),
        ("model.bin", (0..20 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()),
    ] {
        writer.start_file(name, stored)?;
        writer.write_all(&content)?;
    }
    let package = writer.finish()?.into_inner();
    let size = package.len();
    let form = reqwest::multipart::Form::new()
        .text("name", "big")
        .part("file", reqwest::multipart::Part::bytes(package).file_name("big.zip"));
    let plugin = session.api.send_form(&format!("/api/v1/projects/{project}/plugins"), form).await?.into_result()?;
    let cpu_before = cpu_seconds(server.child.id());
    let body = json!({"plugin_id": plugin["id"], "targets": {"all": true}, "options": {"concurrency": 64, "timeout_secs": 120}});
    let Timed { seconds, finished, .. } = session.deliver(&project, body).await?;
    let result = json!({
        "targets": n, "package_bytes": size, "seconds": seconds, "state": finished["state"], "counts": finished["counts"],
        "server_cpu_seconds": cpu_seconds(server.child.id()) - cpu_before, "server_peak_rss_mib": peak_rss_mib(server.child.id()),
    });
    sim.abort();
    Ok(result)
}

async fn start_sim(n: u32, faults: Faults) -> anyhow::Result<neuronex_sim::RunningSim> {
    let config = SimConfig { count: n, seed: 7, faults, ..SimConfig::default() };
    neuronex_sim::start(config, "127.0.0.1:0".parse()?, false).await
}

/// The raw limit of one size: how long the requests took, and the CPU the bench process (the
/// simulator and the raw client together) used meanwhile.
struct RawRun {
    elapsed: Duration,
    cpu_seconds: f64,
}

/// The same requests a rule delivery with the default options makes per target, through the same
/// edge client, with nothing around them: the version, the snapshot (a `GET` of the stream and
/// of the rule, and of the rule's status when it exists), the stream, the rule, the rule's status.
async fn raw_limit(n: u32, concurrency: u32) -> anyhow::Result<RawRun> {
    let sim = start_sim(n, Faults::default()).await?;
    let policy = NetworkPolicy::new(NetworkPolicy::parse_list("127.0.0.0/8").map_err(anyhow::Error::msg)?, None);
    let client = Arc::new(EdgeClient::new(ClientConfig { policy, ..ClientConfig::default() })?);
    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    let objects = [ObjectRef::Stream { name: "demo".into() }, ObjectRef::Rule { id: "r1".into() }];
    let cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    futures::stream::iter(sim.manifest.iter().map(|e| e.endpoint.clone()))
        .for_each_concurrent(concurrency as usize, |endpoint| {
            let client = Arc::clone(&client);
            let (rule, objects) = (rule.clone(), objects.clone());
            async move {
                let target = EdgeTarget::http(endpoint, EdgeAuth::None);
                let edge = client.edge(&target);
                let _ = edge.version().await;
                let _ = edge.take_snapshot(&objects).await;
                let _ = edge
                    .replace_stream(StreamKind::Stream, "demo", "CREATE STREAM demo () WITH (TYPE=\"memory\")")
                    .await;
                let _ = edge.upsert_rule("r1", &rule).await;
                let _ = edge.rule_status("r1").await;
            }
        })
        .await;
    let elapsed = started.elapsed();
    let cpu_seconds = cpu_seconds(std::process::id()) - cpu_before;
    sim.abort();
    Ok(RawRun { elapsed, cpu_seconds })
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

/// `edgefleet serve` on SQLite in `data`, or on a fresh database of the PostgreSQL server at
/// `postgres` (`postgres://user@host:port`).
/// A drift round every day: no round disturbs the other measurements.
const NO_DRIFT_ROUNDS: u64 = 86_400;

async fn start_server_on(
    binary: &Path,
    data: &Path,
    postgres: Option<&str>,
    drift_interval_secs: u64,
    mqtt_url: Option<&str>,
) -> anyhow::Result<ServerProcess> {
    start_server_with(Command::new(binary), data, postgres, drift_interval_secs, mqtt_url).await
}

/// `edgefleet serve` run by `command` (the binary itself, or a tool that runs it).
async fn start_server_with(
    mut command: Command,
    data: &Path,
    postgres: Option<&str>,
    drift_interval_secs: u64,
    mqtt_url: Option<&str>,
) -> anyhow::Result<ServerProcess> {
    let database_url = match postgres {
        Some(base) => Some(store::testing::fresh_postgres_database(base).await?),
        None => None,
    };
    use std::io::{BufRead, BufReader};
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--probe-interval-secs", "3600", "--edge-networks", "127.0.0.0/8"])
        .args(["--drift-interval-secs", &drift_interval_secs.to_string()])
        .arg("--data-dir")
        .arg(data);
    if let Some(url) = &database_url {
        command.args(["--database-url", url]);
    }
    if let Some(url) = mqtt_url {
        command.args(["--mqtt-url", url]);
    }
    let mut child = command
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

/// One drift check round over `n` edges: a rule delivered to all, the rule changed by hand on 1%
/// of them, then the first round that starts after that, timed by the server (its
/// `edgefleet_drift_last_round_seconds`), with the server's CPU over that round and its memory.
async fn drift_round(args: &Args, n: u32) -> anyhow::Result<Value> {
    let Fleet { sim, _data, server, session, project } =
        Fleet::start_with_drift(args, start_sim(n, Faults::default()).await?, None, args.drift_interval_secs).await?;
    let template = session.rule_template(&project).await?;
    let body = json!({"template_id": template["id"], "targets": {"all": true},
                      "options": {"concurrency": args.concurrency, "timeout_secs": 5, "retries": 1}});
    session.deliver(&project, body).await?;
    let changed = (n / 100).max(1);
    let edited = json!({"id": "r1", "sql": "SELECT a FROM demo", "actions": [{"log": {}}]});
    let http = reqwest::Client::new();
    for k in 0..changed {
        http.put(format!("{}/api/ekuiper/rules/r1", sim.endpoint(k * 100)))
            .json(&edited)
            .send()
            .await?
            .error_for_status()?;
    }
    let metric = |text: &str, name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let rounds = || async {
        let text = session.metrics().await?;
        anyhow::Ok((metric(&text, "edgefleet_drift_rounds_total "), text))
    };
    // A round under way now may have read some edges before the changes: the measured round is
    // the one after it.
    let (at_start, _) = rounds().await?;
    let mut cpu_before = None;
    let (round_seconds, drifted_gauge) = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (done, text) = rounds().await?;
        if done >= at_start + 1.0 && cpu_before.is_none() {
            cpu_before = Some((done, cpu_seconds(server.child.id())));
        }
        if let Some((first, _)) = cpu_before
            && done >= first + 1.0
        {
            break (metric(&text, "edgefleet_drift_last_round_seconds "), metric(&text, "edgefleet_edges_drifted "));
        }
    };
    let cpu = cpu_seconds(server.child.id()) - cpu_before.map(|(_, cpu)| cpu).unwrap_or(0.0);
    let drifted =
        session.get(&format!("/api/v1/projects/{project}/edge-services?config_state=drifted&limit=1")).await?;
    anyhow::ensure!(drifted["total"].as_u64() == Some(u64::from(changed)), "drifted edges: {}", drifted["total"]);
    Ok(json!({
        "edges": n,
        "changed_by_hand": changed,
        "drifted_found": drifted["total"],
        "drifted_gauge": drifted_gauge,
        "round_seconds": round_seconds,
        "edges_per_second": f64::from(n) / round_seconds.max(0.001),
        "server_cpu_seconds_over_the_round": cpu,
        "server_rss_mib": current_rss_mib(server.child.id()),
        "server_peak_rss_mib": peak_rss_mib(server.child.id()),
    }))
}

fn current_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// One rule delivery to `n` targets, on SQLite or on a fresh database of the PostgreSQL server.
async fn delivery_on(
    args: &Args,
    n: u32,
    faults: Faults,
    postgres: Option<&str>,
    rollout: Option<Value>,
) -> anyhow::Result<Value> {
    let Fleet { sim, _data: data, server, session, project } =
        Fleet::start(args, start_sim(n, Faults::default()).await?, postgres).await?;
    let template = session.rule_template(&project).await?;
    sim.sim.set_faults(None, Some(faults));
    // On PostgreSQL the database is not in the data folder; its growth is not measured.
    let on_sqlite = postgres.is_none();
    let db_before = dir_size(data.path());
    let mut body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": args.concurrency, "timeout_secs": 5, "retries": 1}});
    if let Some(rollout) = rollout {
        body["rollout"] = rollout;
    }
    let cpu_before = cpu_seconds(server.child.id());
    let registration_peak_rss_mib = peak_rss_mib(server.child.id());
    let requests_before = edge_requests(&sim);
    let sim_cpu_before = cpu_seconds(std::process::id());
    let database_cpu_before = postgres_cpu_seconds();
    eprintln!("N={n}: {} services registered; delivering", sim.manifest.len());
    let Timed { accepted_seconds, seconds, finished } = session.deliver(&project, body).await?;
    let sim_cpu_seconds = cpu_seconds(std::process::id()) - sim_cpu_before;
    let database_cpu_seconds = postgres_cpu_seconds() - database_cpu_before;
    let requests = edge_requests(&sim).saturating_sub(requests_before);
    let result = json!({
        "seconds": seconds,
        "accepted_seconds": accepted_seconds,
        "targets_per_second": f64::from(n) / seconds,
        "state": finished["state"],
        "counts": finished["counts"],
        "server_peak_rss_mib": peak_rss_mib(server.child.id()),
        "server_peak_rss_before_delivery_mib": registration_peak_rss_mib,
        "server_cpu_seconds": cpu_seconds(server.child.id()) - cpu_before,
        "server_cpu_ms_per_target": (cpu_seconds(server.child.id()) - cpu_before) * 1000.0 / f64::from(n),
        "edge_requests_per_target": requests as f64 / f64::from(n),
        "simulator_cpu_seconds": sim_cpu_seconds,
        "database_growth_bytes": on_sqlite.then(|| dir_size(data.path()).saturating_sub(db_before)),
        // PostgreSQL's processes share the two cores with the server and the simulator.
        "database_cpu_seconds": (!on_sqlite).then_some(database_cpu_seconds),
    });
    sim.abort();
    Ok(result)
}

/// The CPU time of every `postgres` process on this machine so far (whatever else uses the
/// server is counted too; the bench's runs are alone on it).
fn postgres_cpu_seconds() -> f64 {
    let Ok(processes) = std::fs::read_dir("/proc") else { return 0.0 };
    processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|name| name.trim() == "postgres"))
        .map(cpu_seconds)
        .sum()
}

/// Every request the simulator's instances have answered so far.
fn edge_requests(sim: &neuronex_sim::RunningSim) -> u64 {
    (0..sim.manifest.len() as u32)
        .filter_map(|k| sim.sim.snapshot(k))
        .flat_map(|s| s["requests"].as_object().map(|r| r.values().filter_map(Value::as_u64).sum::<u64>()))
        .sum()
}

/// One import of `n` services while another session creates a template every 20 ms: the import's
/// time, and the writes' latencies while it ran (the longest is how long it held writers back).
async fn import_beside_writers(args: &Args, n: u32) -> anyhow::Result<Value> {
    let sim = start_sim(n, Faults::default()).await?;
    let data = tempfile::tempdir()?;
    let server = start_server_on(&args.edgefleet, data.path(), None, NO_DRIFT_ROUNDS, None).await?;
    let session = Session::start(&server).await?;
    let project = session.project().await?;
    let writer = Session::start(&server).await?;
    let importing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writes_so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writes = {
        let (importing, project, writes_so_far) = (Arc::clone(&importing), project.clone(), Arc::clone(&writes_so_far));
        tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            let mut k = 0;
            while importing.load(std::sync::atomic::Ordering::Acquire) {
                k += 1;
                let doc = json!({"streams": {"s": "CREATE STREAM s () WITH (TYPE=\"memory\")"}});
                let body = json!({"name": format!("writer-{k}"), "kind": "rule", "content": doc});
                let started = Instant::now();
                let answer = writer.post(&format!("/api/v1/projects/{project}/templates"), body).await;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                writes_so_far.store(latencies.len(), std::sync::atomic::Ordering::Release);
                if let Err(err) = answer {
                    failures.push(err.to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok((latencies, failures))
        })
    };
    let rows: Vec<Value> =
        sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint, "tags": e.tags})).collect();
    let started = Instant::now();
    session.post(&format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await?;
    let import_seconds = started.elapsed().as_secs_f64();
    let peak_rss_after_import = peak_rss_mib(server.child.id());
    let writes_during_import = writes_so_far.load(std::sync::atomic::Ordering::Acquire);
    // The writes go on while the server probes the new services and then tidies its search index
    // (the housekeeping after a big import), and for a few seconds after.
    let path = format!("/api/v1/projects/{project}/edge-services?status=unknown&limit=1");
    while session.get(&path).await?["total"].as_i64().unwrap_or(0) > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    importing.store(false, std::sync::atomic::Ordering::Release);
    let (all, failures) = writes.await??;
    // The same writes as the server timed them (until its answer began), over the whole run: what
    // the client measured beyond these was spent outside the server (the bench process, which
    // also runs the simulator answering the probes, shares the two cores).
    let in_server = template_writes_by_bucket(&session.metrics().await?);
    let (mut during, mut after) =
        (all[..writes_during_import.min(all.len())].to_vec(), all[writes_during_import.min(all.len())..].to_vec());
    during.sort_by(|a, b| a.total_cmp(b));
    after.sort_by(|a, b| a.total_cmp(b));
    sim.abort();
    Ok(json!({
        "services": n,
        "import_seconds": import_seconds,
        "writes": during.len(),
        "write_p50_ms": percentile(&during, 0.5),
        "write_p99_ms": percentile(&during, 0.99),
        "write_max_ms": during.last().copied().unwrap_or(0.0),
        "writes_while_probing_and_tidying": after.len(),
        "write_p99_ms_while_probing_and_tidying": percentile(&after, 0.99),
        "write_max_ms_while_probing_and_tidying": after.last().copied().unwrap_or(0.0),
        "write_failures": failures,
        "server_side_writes_by_bucket": in_server,
        "server_peak_rss_after_import_mib": peak_rss_after_import,
        "server_peak_rss_after_probes_mib": peak_rss_mib(server.child.id()),
    }))
}

/// Template creations the server answered within each bucket of its request-duration histogram
/// (`le` in seconds, cumulative), read from its `/metrics` text.
fn template_writes_by_bucket(metrics: &str) -> Value {
    let prefix = r#"edgefleet_http_request_duration_seconds_bucket{method="POST",route="/api/v1/projects/{project_id}/templates",le=""#;
    let buckets: serde_json::Map<String, Value> = metrics
        .lines()
        .filter_map(|line| {
            let (le, count) = line.strip_prefix(prefix)?.split_once("\"} ")?;
            Some((le.to_owned(), json!(count.trim().parse::<u64>().ok()?)))
        })
        .collect();
    Value::Object(buckets)
}

/// The instruction count of a delivery, and of the same delivery with watchers when asked.
async fn counted_instructions(args: &Args) -> anyhow::Result<Value> {
    let mut counted = instructions(args, args.instruction_targets, 0).await?;
    if args.instruction_watchers > 0 {
        let watched = instructions(args, args.instruction_targets, args.instruction_watchers).await?;
        let per_target = |v: &Value| v["instructions_per_target"].as_f64().unwrap_or(f64::NAN);
        counted["watchers"] = json!(args.instruction_watchers);
        counted["instructions_per_target_with_watchers"] = watched["instructions_per_target"].clone();
        counted["watchers_cost"] = json!(per_target(&watched) / per_target(&counted) - 1.0);
    }
    Ok(counted)
}

/// Instructions the server runs to deliver the rule template to `n` targets while `watchers` SSE
/// clients follow it besides the bench's own: `valgrind --tool=callgrind` with instrumentation
/// off until the fleet is registered and probed, on for the delivery alone, then dumped.
async fn instructions(args: &Args, n: u32, watchers: u32) -> anyhow::Result<Value> {
    let sim = start_sim(n, Faults::default()).await?;
    let data = tempfile::tempdir()?;
    let out = data.path().join("callgrind.out");
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--instr-atstart=no", "--collect-atstart=yes"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&args.edgefleet)
        // The server would otherwise start itself again to tune glibc's allocator (ADR 13), out
        // of valgrind's sight; under valgrind the allocator is valgrind's anyway.
        .env("GLIBC_TUNABLES", "");
    let server = start_server_with(command, data.path(), None, NO_DRIFT_ROUNDS, None)
        .await
        .context("start edgefleet under valgrind (Debian package valgrind)")?;
    let session = Arc::new(Session::start(&server).await?);
    let project = session.project().await?;
    session.register(&project, &sim).await?;
    let template = session.rule_template(&project).await?;
    let pid = server.child.id().to_string();
    let control = |what: &str| -> anyhow::Result<()> {
        let status = Command::new("callgrind_control").args([what, &pid]).stdout(Stdio::null()).status()?;
        anyhow::ensure!(status.success(), "callgrind_control {what} failed");
        Ok(())
    };
    // Zero the counts of the registration, then count the delivery alone.
    control("--instr=on")?;
    control("--zero")?;
    let body = json!({"template_id": template["id"], "targets": {"all": true},
                      "options": {"concurrency": 16, "timeout_secs": 600, "retries": 1}});
    let delivery = session.post(&format!("/api/v1/projects/{project}/deliveries"), body).await?;
    let id = delivery["id"].as_str().context("delivery id")?.to_owned();
    // The bench's own stream, which waits for the end, and the watchers.
    follow(&session, &project, &id, watchers + 1).await?;
    control("--dump")?;
    let finished = session.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await?;
    let dump = last_dump(data.path())?;
    let total = dumped_instructions(&dump)?;
    // Kept for `callgrind_annotate --inclusive=yes`: where the instructions went.
    std::fs::create_dir_all(&args.out)?;
    let kept = if watchers > 0 { "callgrind.delivery-watched.out" } else { "callgrind.delivery.out" };
    std::fs::copy(&dump, args.out.join(kept))?;
    sim.abort();
    Ok(json!({
        "targets": n,
        "state": finished["state"],
        "instructions": total,
        "instructions_per_target": total as f64 / f64::from(n),
    }))
}

/// The newest callgrind dump in `folder`.
fn last_dump(folder: &Path) -> anyhow::Result<PathBuf> {
    let mut dumps: Vec<PathBuf> = std::fs::read_dir(folder)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("callgrind.out")))
        .collect();
    dumps.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    dumps.pop().context("callgrind wrote no dump")
}

/// The instruction count (`Ir`) of a callgrind dump.
fn dumped_instructions(dump: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(dump)?;
    let totals = text
        .lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .context("a callgrind dump without totals")?;
    Ok(totals.split_whitespace().next().context("empty totals")?.parse()?)
}

/// `--agents-only`: the clean HTTP delivery of `--agent-targets` and the agent-mode delivery of
/// the same size, alternating `--repeat` times (each agent run compared with the HTTP run just
/// before it, so a machine that slows down during the bench slows both sides of a ratio); the
/// median ratio and every run are written to `agents.json`.
async fn agents_only(args: &Args) -> anyhow::Result<()> {
    let n = args.agent_targets;
    let mut runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let http = delivery_on(args, n, Faults::default(), None, None).await?;
        println!("N={n} over HTTP: {http}");
        let agents = agent_delivery(args, n, http["seconds"].as_f64()).await?;
        println!("agents: {agents}");
        runs.push(agents);
    }
    let mut ratios: Vec<f64> = runs.iter().filter_map(|run| run["ratio_to_http"].as_f64()).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied();
    println!("agent mode: ratio to HTTP {ratios:?}, median {median:?}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("agents.json"),
        serde_json::to_string_pretty(&json!({"median_ratio_to_http": median, "runs": runs}))?,
    )?;
    Ok(())
}

/// A Mosquitto of the bench's own on a free port, allowed as many connections as the fleet needs.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> anyhow::Result<Broker> {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nmax_queued_messages 100000\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type information\n"
        ),
    )?;
    let binary = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .context("start mosquitto (scripts/ensure-services installs it)")?;
    let mut reader = BufReader::new(child.stderr.take().context("stderr")?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && !line.contains("running") {
        line.clear();
    }
    std::thread::spawn(move || for _ in reader.lines() {});
    Ok(Broker { child, port, _dir: dir })
}

/// The clean rule delivery to `n` agent-mode instances over the bench's own Mosquitto: time, the
/// ratio to the HTTP delivery of the same size, and what the server, the broker and the
/// simulator with its agents (this process) spent.
async fn agent_delivery(args: &Args, n: u32, http_seconds: Option<f64>) -> anyhow::Result<Value> {
    let broker = start_broker()?;
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let data = tempfile::tempdir()?;
    let server = start_server_on(&args.edgefleet, data.path(), None, NO_DRIFT_ROUNDS, Some(&url)).await?;
    let session = Session::start(&server).await?;
    let project = session.project().await?;
    let sim = start_sim(n, Faults::default()).await?;
    let key = session.get(&format!("/api/v1/projects/{project}/agents/command-key")).await?;
    let options = neuronex_sim::agents::SimAgents {
        id_prefix: "bench-".into(),
        ..neuronex_sim::agents::SimAgents::new(&url, key["command_key"].as_str().unwrap_or_default())
    };
    let connecting = Instant::now();
    let agents = neuronex_sim::agents::AgentFleet::start(&sim, options)?;
    agents.ready(Duration::from_secs(300)).await?;
    let connect_seconds = connecting.elapsed().as_secs_f64();
    eprintln!("N={n}: {n} agents connected in {connect_seconds:.1} s; registering");
    for chunk in (0..n as usize).collect::<Vec<_>>().chunks(20_000) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|k| json!({"name": format!("agent-gw-{k}"), "transport": "agent", "agent_id": agents.agent_id(*k)}))
            .collect();
        session.post(&format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await?;
    }
    loop {
        let unknown = session.get(&format!("/api/v1/projects/{project}/edge-services?status=unknown&limit=1")).await?;
        if unknown["total"].as_i64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let template = session.rule_template(&project).await?;
    let body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": args.concurrency, "timeout_secs": 30, "retries": 1}});
    let own = std::process::id();
    let (server_cpu, broker_cpu, sim_cpu) =
        (cpu_seconds(server.child.id()), cpu_seconds(broker.child.id()), cpu_seconds(own));
    eprintln!("N={n}: delivering through agents");
    let Timed { seconds, finished, .. } = session.deliver(&project, body).await?;
    let result = json!({
        "targets": n,
        "seconds": seconds,
        "targets_per_second": f64::from(n) / seconds,
        "http_seconds": http_seconds,
        "ratio_to_http": http_seconds.map(|http| http / seconds),
        "agents_connect_seconds": connect_seconds,
        "state": finished["state"],
        "counts": finished["counts"],
        "server_cpu_seconds": cpu_seconds(server.child.id()) - server_cpu,
        "server_peak_rss_mib": peak_rss_mib(server.child.id()),
        "broker_cpu_seconds": cpu_seconds(broker.child.id()) - broker_cpu,
        "broker_peak_rss_mib": peak_rss_mib(broker.child.id()),
        "sim_and_agents_cpu_seconds": cpu_seconds(own) - sim_cpu,
        "sim_and_agents_peak_rss_mib": peak_rss_mib(own),
    });
    drop(agents);
    sim.abort();
    Ok(result)
}
