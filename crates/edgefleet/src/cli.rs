//! Client commands: they call a running server's REST API with a saved or given token.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use api_client::types::{Delivery, NewDelivery};
use api_client::{ApiClient, reqwest};
use serde_json::{Value, json};

/// Where `edgefleet login` keeps the server address and token.
fn credentials_path() -> PathBuf {
    if let Ok(dir) = std::env::var("EDGEFLEET_CONFIG_DIR") {
        return PathBuf::from(dir).join("credentials.json");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".config/edgefleet/credentials.json")
}

/// The CLI's view of the server: the shared API client, plus what only the CLI needs (the saved
/// login, following a delivery to its end).
pub struct Client {
    api: ApiClient,
}

impl Client {
    /// From `EDGEFLEET_SERVER` / `EDGEFLEET_TOKEN`, else the saved login.
    pub fn from_environment() -> anyhow::Result<Client> {
        let saved = saved_credentials();
        let server = std::env::var("EDGEFLEET_SERVER").ok().or_else(|| saved["server"].as_str().map(str::to_owned));
        let token = std::env::var("EDGEFLEET_TOKEN").ok().or_else(|| saved["token"].as_str().map(str::to_owned));
        match (server, token) {
            (Some(server), Some(token)) => Ok(Client { api: ApiClient::new(&server).with_token(&token) }),
            _ => bail!(
                "not signed in: run `edgefleet login --server URL --username NAME`, or set EDGEFLEET_SERVER and EDGEFLEET_TOKEN"
            ),
        }
    }

    pub fn signed_in(api: ApiClient) -> Client {
        Client { api }
    }

    /// The id of the project `given` names (see [`ProjectRef`]); none given: `EDGEFLEET_PROJECT`,
    /// then the one `edgefleet use` saved.
    pub async fn project(&self, given: Option<&str>) -> anyhow::Result<String> {
        let saved = saved_credentials();
        let given = given
            .map(str::to_owned)
            .or_else(|| std::env::var("EDGEFLEET_PROJECT").ok().filter(|p| !p.is_empty()))
            .or_else(|| saved["project"].as_str().map(str::to_owned))
            .context("no project: pass --project (an id or ORGANIZATION/PROJECT), or choose one with `edgefleet use PROJECT`")?;
        // An id (what `edgefleet use` saves) takes one request; only a name needs the lists.
        let by_id = format!("/api/v1/projects/{}", encode(&given));
        if let Ok(project) = self.api.call::<(), api_client::types::Project>(reqwest::Method::GET, &by_id, None).await {
            return Ok(project.id);
        }
        Ok(self.find_project(&given).await?.id)
    }

    /// A project by id, by `ORGANIZATION/PROJECT`, or by a name only one of the user's
    /// organizations has. An id is tried first: names are free text and could look like one.
    async fn find_project(&self, given: &str) -> anyhow::Result<ProjectRef> {
        let projects = self.projects().await?;
        if let Some(found) = projects.iter().find(|p| p.id == given || p.full_name() == given) {
            return Ok(found.clone());
        }
        let same_name: Vec<&ProjectRef> = projects.iter().filter(|p| p.name == given).collect();
        match same_name.as_slice() {
            [one] => Ok((*one).clone()),
            [] => bail!("no project {given:?} among yours (`edgefleet project list` shows them)"),
            many => {
                let names: Vec<String> = many.iter().map(|p| p.full_name()).collect();
                bail!("{given:?} names several projects; say which: {}", names.join(", "))
            }
        }
    }

    /// Every project the user can open, with its organization's name.
    async fn projects(&self) -> anyhow::Result<Vec<ProjectRef>> {
        let orgs: Vec<api_client::types::Org> = self.all("/api/v1/orgs").await?;
        let mut projects = Vec::new();
        for org in orgs {
            let listed: Vec<api_client::types::Project> =
                self.all(&format!("/api/v1/orgs/{}/projects", org.id)).await?;
            projects.extend(listed.into_iter().map(|p| ProjectRef { id: p.id, name: p.name, org: org.name.clone() }));
        }
        Ok(projects)
    }

    /// Every item of a list, page by page.
    async fn all<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<Vec<T>> {
        const PAGE: usize = 500;
        let mut items = Vec::new();
        loop {
            let page: api_client::types::List<T> = self
                .api
                .call(reqwest::Method::GET, &format!("{path}?limit={PAGE}&offset={}", items.len()), None::<&()>)
                .await?;
            // Lists that are not paged answer everything at once (and their total says so).
            let last = page.items.is_empty() || page.items.len() < PAGE;
            items.extend(page.items);
            if last || items.len() as i64 >= page.total {
                return Ok(items);
            }
        }
    }

    /// The id of a project's template or plugin (`kind`: `templates`, `plugins`) given by id or name.
    pub async fn named(&self, project: &str, kind: &str, given: &str) -> anyhow::Result<String> {
        let items: Vec<Value> = self.all(&format!("/api/v1/projects/{project}/{kind}")).await?;
        let by_id = items.iter().find(|item| item["id"] == given);
        let by_name = || items.iter().find(|item| item["name"] == given);
        match by_id.or_else(by_name).and_then(|item| item["id"].as_str()) {
            Some(id) => Ok(id.to_owned()),
            None => bail!("no {} {given:?} in this project", kind.trim_end_matches('s')),
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.api.get(path).await?)
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.api.post(path, body).await?)
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        Ok(self.api.send_raw(reqwest::Method::POST, path, content_type, body).await?.into_result()?)
    }

    pub async fn upload_plugin(
        &self,
        project: &str,
        name: &str,
        description: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let form = reqwest::multipart::Form::new()
            .text("name", name.to_owned())
            .text("description", description.to_owned())
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(format!("{name}.zip")));
        Ok(self.api.send_form(&format!("/api/v1/projects/{project}/plugins"), form).await?.into_result()?)
    }

    /// A file the server answers (template exports), as text.
    pub async fn text(&self, path: &str) -> anyhow::Result<String> {
        let answer = self.api.send(reqwest::Method::GET, path, None).await?;
        if !answer.is_success() {
            answer.into_result()?;
            bail!("GET {path} failed");
        }
        Ok(answer.text)
    }

    /// Follows a delivery's live events to its `final` event; `on_event(name, data)` sees each
    /// one. A stream that breaks off is opened again with `Last-Event-ID`, so no result is missed
    /// or shown twice.
    /// Reads a delivery's events until its `final` event, or until `on_event` answers `false`.
    pub async fn watch(&self, path: &str, mut on_event: impl FnMut(&str, &Value) -> bool) -> anyhow::Result<()> {
        let mut last_id: Option<String> = None;
        for attempt in 0..RECONNECTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt))).await;
            }
            let mut events = match self.api.events(path, last_id.as_deref()).await {
                Ok(events) => events,
                Err(api_client::ClientError::Unreachable { .. }) if attempt + 1 < RECONNECTS => continue,
                Err(err) => return Err(err.into()),
            };
            while let Some(Ok(event)) = events.next().await {
                last_id = event.id.clone().or(last_id);
                let Ok(value) = serde_json::from_str::<Value>(&event.data) else { continue };
                if !on_event(&event.name, &value) || event.name == "final" {
                    return Ok(());
                }
            }
        }
        bail!("the live results broke off {RECONNECTS} times; GET {path} without /events shows the stored results")
    }
}

/// A project as the CLI names it: `ORGANIZATION/PROJECT`.
#[derive(Debug, Clone)]
pub struct ProjectRef {
    pub id: String,
    pub name: String,
    pub org: String,
}

impl ProjectRef {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.org, self.name)
    }
}

/// How often `watch` opens a broken stream again.
const RECONNECTS: u32 = 5;

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The server's base URL.
    #[arg(long, env = "EDGEFLEET_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long, default_value = "admin")]
    username: String,
    /// The password; else EDGEFLEET_PASSWORD, else one line from standard input.
    #[arg(long, env = "EDGEFLEET_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let password = match args.password {
        Some(p) => p,
        None => read_password(&format!("password for {}: ", args.username))?,
    };
    // The device token of an earlier sign-in here keeps this machine signing in while someone
    // else is guessing the same account's password (it is counted on its own).
    let saved = saved_credentials();
    let headers: Vec<(&str, &str)> =
        saved["device_token"].as_str().map(|d| ("x-edgefleet-device", d)).into_iter().collect();
    let body = json!({"username": args.username, "password": password});
    let answer = ApiClient::new(&args.server)
        .send_with(reqwest::Method::POST, "/api/v1/auth/login", Some(&body), &headers)
        .await?
        .into_result()?;
    // The project chosen with `edgefleet use` stays for a new sign-in to the same server.
    let project = if saved["server"] == json!(args.server) { saved["project"].clone() } else { Value::Null };
    let mut saved = json!({"server": args.server, "token": answer["token"], "device_token": answer["device_token"]});
    if !project.is_null() {
        saved["project"] = project;
    }
    let path = credentials_path();
    write_private(&path, &saved.to_string()).with_context(|| format!("cannot save the login to {}", path.display()))?;
    println!("signed in to {} as {}", args.server, args.username);
    Ok(ExitCode::SUCCESS)
}

/// From the terminal without echo; from standard input when it is not a terminal (scripts).
fn read_password(prompt: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).context("cannot read the password from the terminal");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[derive(clap::Args)]
pub struct UseArgs {
    /// Its id, ORGANIZATION/PROJECT (`"Demo Plant/Line 1"`), or a project name no other
    /// organization of yours has.
    project: String,
}

/// Saves the project the other commands use when they get no --project (beside the login).
pub async fn use_project(args: UseArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    let project = client.find_project(&args.project).await?;
    let mut saved = saved_credentials();
    saved["project"] = json!(project.id);
    let path = credentials_path();
    write_private(&path, &saved.to_string()).with_context(|| format!("cannot save to {}", path.display()))?;
    println!("using project {} ({})", project.full_name(), project.id);
    Ok(ExitCode::SUCCESS)
}

fn saved_credentials() -> Value {
    std::fs::read_to_string(credentials_path()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}))
}

/// Writes a file only its owner can read (the token in it is as good as the password).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

#[derive(clap::Subcommand)]
pub enum EdgeCommand {
    /// List edge services, with optional filters.
    List {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        tag: Vec<String>,
        /// NeuronEX version (exact, or a prefix like 3.6), as `deliver --edge-version`.
        /// (`--version` is the old spelling, still taken.)
        #[arg(long = "edge-version", alias = "version")]
        version: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// in_sync, drifted, unknown or none (never delivered to).
        #[arg(long)]
        config_state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Register one edge service: over HTTP (`--endpoint`) or through an agent (`--transport
    /// agent --agent-id ID`).
    Add {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        name: String,
        /// NeuronEX's URL; through an agent, as the agent sees it [default there: http://127.0.0.1:8085].
        #[arg(long, default_value = "")]
        endpoint: String,
        /// http or agent.
        #[arg(long, default_value = "http")]
        transport: String,
        #[arg(long)]
        agent_id: Option<String>,
        #[arg(long)]
        tag: Vec<String>,
    },
    /// Issue (or rotate) the broker credentials of an agent-mode service's agent; prints them once.
    AgentCredentials {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        /// Write the password to this file (mode 600) instead of printing it.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Write the project's command key (PEM) to this file.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Import edge services from a CSV (name,endpoint,tags,...,transport,agent_id) or JSON file.
    Import {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        file: PathBuf,
    },
    /// What the last check found of the objects last delivered to an edge service. Exit code 2
    /// when it drifted, 3 when it could not be read.
    Drift {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check an edge service for drift now (exit codes as `edge drift`).
    Check {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Deliver the last delivered objects again to an edge service that drifted.
    Reapply {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        /// Only show what re-applying would change.
        #[arg(long)]
        plan: bool,
        /// Follow the delivery to its end.
        #[arg(long)]
        watch: bool,
    },
}

pub async fn edge(command: EdgeCommand) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    match command {
        EdgeCommand::List { project, q, tag, version, status, config_state, limit } => {
            let project = client.project(project.as_deref()).await?;
            let mut query: Vec<(String, String)> = vec![("limit".into(), limit.to_string())];
            query.extend(q.map(|v| ("q".into(), v)));
            query.extend(version.map(|v| ("version".into(), v)));
            query.extend(status.map(|v| ("status".into(), v)));
            query.extend(config_state.map(|v| ("config_state".into(), v)));
            query.extend(tag.into_iter().map(|t| ("tag".into(), t)));
            let qs = serde_urlencoded_pairs(&query);
            let answer = client.get(&format!("/api/v1/projects/{project}/edge-services?{qs}")).await?;
            println!("{:<24} {:<8} {:<8} {:<40} TAGS", "NAME", "STATUS", "VERSION", "ENDPOINT");
            for item in answer["items"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<8} {:<8} {:<40} {}",
                    item["name"].as_str().unwrap_or_default(),
                    item["status"].as_str().unwrap_or_default(),
                    item["version"].as_str().unwrap_or("-"),
                    item["endpoint"].as_str().unwrap_or_default(),
                    item["tags"]
                        .as_array()
                        .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                        .unwrap_or_default()
                );
            }
            println!("{} of {} shown", answer["items"].as_array().map(Vec::len).unwrap_or(0), answer["total"]);
        }
        EdgeCommand::Add { project, name, endpoint, transport, agent_id, tag } => {
            let project = client.project(project.as_deref()).await?;
            let mut body = json!({"name": name, "endpoint": endpoint, "transport": transport, "tags": tag});
            if let Some(agent_id) = agent_id {
                body["agent_id"] = json!(agent_id);
            }
            let created = client.post(&format!("/api/v1/projects/{project}/edge-services"), &body).await?;
            println!("{} {}", created["id"].as_str().unwrap_or_default(), created["name"].as_str().unwrap_or_default());
        }
        EdgeCommand::AgentCredentials { project, id, password_file, key_file } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/edge-services/{id}/agent-credentials");
            let issued = client.post(&path, &json!({})).await?;
            let text = |key: &str| issued[key].as_str().unwrap_or_default().to_owned();
            println!("agent id:  {}", text("agent_id"));
            println!("broker:    {}", issued["mqtt_url"].as_str().unwrap_or("(the server runs without --mqtt-url)"));
            println!("username:  {}", text("username"));
            match &password_file {
                Some(file) => {
                    write_private_file(file, &text("password"))?;
                    println!("password:  written to {} (shown nowhere else)", file.display());
                }
                None => println!("password:  {} (shown once)", text("password")),
            }
            match &key_file {
                Some(file) => {
                    std::fs::write(file, text("command_key"))
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    println!("command key: written to {}", file.display());
                }
                None => print!("command key:\n{}", text("command_key")),
            }
        }
        EdgeCommand::Import { project, file } => {
            let project = client.project(project.as_deref()).await?;
            let mut bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let content_type =
                if file.extension().is_some_and(|e| e == "csv") { "text/csv" } else { "application/json" };
            if content_type == "application/json"
                && let Some(rows) = registry_rows_of_manifest(&bytes)
            {
                eprintln!("a simulator manifest: its `index` and `version` are left out (the version is probed)");
                bytes = rows;
            }
            let path = format!("/api/v1/projects/{project}/edge-services/import");
            let answer = client.api.send_raw(reqwest::Method::POST, &path, content_type, bytes).await?.into_result();
            if let Err(api_client::ClientError::Api { details, message, .. }) = &answer
                && let Some(problems) = details["problems"].as_array()
            {
                // Every problem at once, so a file is mended in one pass.
                for problem in problems {
                    eprintln!(
                        "row {} {}: {}",
                        problem["row"],
                        problem["field"].as_str().unwrap_or_default(),
                        problem["message"].as_str().unwrap_or_default()
                    );
                }
                bail!("{message}");
            }
            println!("imported {} edge services", answer?["total"]);
        }
        EdgeCommand::Drift { project, id, json } => {
            let project = client.project(project.as_deref()).await?;
            let report = client.get(&format!("/api/v1/projects/{project}/edge-services/{id}/drift")).await?;
            return Ok(print_drift(&report, json));
        }
        EdgeCommand::Check { project, id, json } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/edge-services/{id}/check");
            let report = client.post(&path, &json!({})).await?;
            return Ok(print_drift(&report, json));
        }
        EdgeCommand::Reapply { project, id, plan, watch } => {
            let project = client.project(project.as_deref()).await?;
            let mode = if plan { "plan" } else { "apply" };
            let path = format!("/api/v1/projects/{project}/edge-services/{id}/reapply");
            let started = client.post(&path, &json!({"mode": mode})).await?;
            let delivery = started["id"].as_str().unwrap_or_default().to_owned();
            println!("delivery {delivery} ({mode}) of {}", started["template_name"].as_str().unwrap_or_default());
            for also in started["also"].as_array().into_iter().flatten() {
                println!("also delivery {}", also.as_str().unwrap_or_default());
            }
            if watch || plan {
                return follow(&client, &project, &delivery, plan).await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` readable by its owner only and writes `text` to it.
fn write_private_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// A drift report as people read it (or as JSON): the state, then each drifted object with its
/// patch. Exit code 2 when drifted, 3 when the edge could not be read.
fn print_drift(report: &Value, as_json: bool) -> ExitCode {
    let state = report["state"].as_str().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
    } else {
        let reason = report["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
        println!("{state}{reason}");
        for object in report["objects"].as_array().into_iter().flatten() {
            let mark = if object["drifted"] == true {
                "✗"
            } else if object["checked"] == true {
                "✓"
            } else {
                "·"
            };
            println!("  {mark} {}", object["object"].as_str().unwrap_or_default());
            for op in object["diff"].as_array().into_iter().flatten() {
                let value = op.get("value").map(|v| format!(" {v}")).unwrap_or_default();
                println!(
                    "      {} {}{value}",
                    op["op"].as_str().unwrap_or_default(),
                    op["path"].as_str().unwrap_or_default()
                );
            }
        }
    }
    match state {
        "drifted" => ExitCode::from(2),
        "unknown" => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    }
}

/// Which objects the project's edge services held at their last check.
#[derive(clap::Args)]
pub struct InventoryArgs {
    /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
    /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
    #[arg(long)]
    project: Option<String>,
    /// rule, stream, table, node or plugin.
    #[arg(long)]
    kind: Option<String>,
    /// An exact object name ("which gateways run rule overheat?").
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub async fn inventory(args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    let mut query: Vec<(String, String)> = vec![("limit".into(), args.limit.to_string())];
    query.extend(args.kind.map(|v| ("kind".into(), v)));
    query.extend(args.name.map(|v| ("name".into(), v)));
    let qs = serde_urlencoded_pairs(&query);
    let project = client.project(args.project.as_deref()).await?;
    let answer = client.get(&format!("/api/v1/projects/{project}/inventory?{qs}")).await?;
    println!("{:<8} {:<32} {:>6}  EDGE IDS (first 50)", "KIND", "NAME", "EDGES");
    for item in answer["items"].as_array().into_iter().flatten() {
        let ids: Vec<&str> = item["edge_ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        println!(
            "{:<8} {:<32} {:>6}  {}",
            item["kind"].as_str().unwrap_or_default(),
            item["name"].as_str().unwrap_or_default(),
            item["edges"],
            ids.join(",")
        );
    }
    println!("{} of {} objects shown", answer["items"].as_array().map(Vec::len).unwrap_or(0), answer["total"]);
    Ok(ExitCode::SUCCESS)
}

fn serde_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(clap::Subcommand)]
pub enum TemplateCommand {
    List {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
    },
    /// Create a template from a file exported by NeuronEX (or edited by hand).
    Create {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        name: String,
        /// rule or driver
        #[arg(long)]
        kind: String,
        #[arg(long, default_value = "")]
        description: String,
        file: PathBuf,
    },
    /// A template (or, with --template, a new version of one) holding objects as a live edge
    /// service holds them now: rule objects (--stream, --table, --rule) or driver nodes (--node).
    FromEdge {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        /// The edge service to read.
        #[arg(long)]
        edge: String,
        /// The new template's name.
        #[arg(long)]
        name: Option<String>,
        /// Adopt into this template as its next version instead.
        #[arg(long)]
        template: Option<String>,
        #[arg(long)]
        stream: Vec<String>,
        #[arg(long)]
        table: Vec<String>,
        #[arg(long)]
        rule: Vec<String>,
        /// A southbound driver node, with its settings, groups, tags and the subscriptions to it.
        #[arg(long)]
        node: Vec<String>,
    },
    /// Write a template's content (current or given version) to standard output or a file.
    Export {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

pub async fn template(command: TemplateCommand) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    match command {
        TemplateCommand::List { project } => {
            let project = client.project(project.as_deref()).await?;
            let answer = client.get(&format!("/api/v1/projects/{project}/templates?limit=1000")).await?;
            println!("{:<38} {:<7} {:<4} NAME", "ID", "KIND", "VER");
            for item in answer["items"].as_array().into_iter().flatten() {
                println!(
                    "{:<38} {:<7} {:<4} {}",
                    item["id"].as_str().unwrap_or_default(),
                    item["kind"].as_str().unwrap_or_default(),
                    item["current_version"],
                    item["name"].as_str().unwrap_or_default()
                );
            }
        }
        TemplateCommand::Create { project, name, kind, description, file } => {
            let project = client.project(project.as_deref()).await?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let body = json!({"name": name, "kind": kind, "description": description, "content": text});
            let answer = client.post(&format!("/api/v1/projects/{project}/templates"), &body).await?;
            println!(
                "created template {} ({}), parameters: {}",
                answer["name"].as_str().unwrap_or_default(),
                answer["id"].as_str().unwrap_or_default(),
                answer["parameters"]
            );
            for warning in answer["warnings"].as_array().into_iter().flatten() {
                eprintln!(
                    "warning: {}: {}",
                    warning["path"].as_str().unwrap_or_default(),
                    warning["message"].as_str().unwrap_or_default()
                );
            }
        }
        TemplateCommand::FromEdge { project, edge, name, template, stream, table, rule, node } => {
            let project = client.project(project.as_deref()).await?;
            let body = json!({"edge_id": edge, "name": name, "template_id": template,
                              "objects": {"streams": stream, "tables": table, "rules": rule, "nodes": node}});
            let answer = client.post(&format!("/api/v1/projects/{project}/templates/from-edge"), &body).await?;
            println!(
                "template {} ({}) version {} holds the objects as the edge holds them",
                answer["name"].as_str().unwrap_or_default(),
                answer["id"].as_str().unwrap_or_default(),
                answer["current_version"]
            );
        }
        TemplateCommand::Export { project, id, version, output } => {
            let project = client.project(project.as_deref()).await?;
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let text = client.text(&format!("/api/v1/projects/{project}/templates/{id}/export{query}")).await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    List {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
    },
    /// Upload an eKuiper portable-plugin zip; NAME must match the JSON file inside it.
    Upload {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        file: PathBuf,
    },
}

pub async fn plugin(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    match command {
        PluginCommand::List { project } => {
            let project = client.project(project.as_deref()).await?;
            let answer = client.get(&format!("/api/v1/projects/{project}/plugins?limit=1000")).await?;
            println!("{:<38} {:<20} {:<8} {:<10} SHA-256", "ID", "NAME", "LANGUAGE", "VERSION");
            for item in answer["items"].as_array().into_iter().flatten() {
                println!(
                    "{:<38} {:<20} {:<8} {:<10} {}",
                    item["id"].as_str().unwrap_or_default(),
                    item["name"].as_str().unwrap_or_default(),
                    item["manifest"]["language"].as_str().unwrap_or_default(),
                    item["manifest"]["version"].as_str().unwrap_or_default(),
                    item["sha256"].as_str().unwrap_or_default()
                );
            }
        }
        PluginCommand::Upload { project, name, description, file } => {
            let project = client.project(project.as_deref()).await?;
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let answer = client.upload_plugin(&project, &name, &description, bytes).await?;
            println!(
                "uploaded plugin {} ({}), sha256 {}",
                name,
                answer["id"].as_str().unwrap_or_default(),
                answer["sha256"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct DeliverArgs {
    /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
    /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
    #[arg(long)]
    project: Option<String>,
    /// The template: its id or its name.
    #[arg(long, conflicts_with = "plugin")]
    template: Option<String>,
    /// The plugin (instead of a template): its id or its name.
    #[arg(long)]
    plugin: Option<String>,
    /// Template version [default: current]. (`--version` is the old spelling, still taken.)
    #[arg(long, alias = "version")]
    template_version: Option<i64>,
    /// Edge-service ids, comma separated.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<String>,
    /// Select by tag (repeatable; all must match).
    #[arg(long)]
    tag: Vec<String>,
    /// Select by NeuronEX version (exact, or a prefix like 3.6).
    #[arg(long)]
    edge_version: Option<String>,
    /// Select by name (substring).
    #[arg(long)]
    name: Option<String>,
    /// Select by free text.
    #[arg(long)]
    q: Option<String>,
    /// Every edge service of the project.
    #[arg(long)]
    all: bool,
    /// A JSON file `{"defaults": {...}, "targets": {"<edge id or name>": {...}}}`.
    #[arg(long)]
    params: Option<PathBuf>,
    #[arg(long)]
    concurrency: Option<u32>,
    #[arg(long)]
    timeout_secs: Option<u64>,
    #[arg(long)]
    retries: Option<u32>,
    /// overwrite, skip or fail
    #[arg(long)]
    on_conflict: Option<String>,
    /// Render, check and version-gate every target (each gateway's version is read), and send
    /// nothing. It reads no gateway's objects: to see what would change on each, use --plan.
    #[arg(long)]
    dry_run: bool,
    /// Read every target and print what applying would change (grouped, with JSON Patches);
    /// write nothing. Waits for the plan and exits non-zero when some target could not be read.
    #[arg(long, conflicts_with = "dry_run")]
    plan: bool,
    #[command(flatten)]
    rollout: RolloutArgs,
    /// Start each target only inside one of its maintenance windows (`edgefleet window`).
    #[arg(long)]
    respect_windows: bool,
    /// Targets of offline gateways wait until the gateway is seen online (instead of failing).
    #[arg(long)]
    offline_wait: bool,
    /// With --offline-wait: when waiting targets give up (RFC 3339) [default: 7 days].
    #[arg(long, requires = "offline_wait")]
    deadline: Option<String>,
    /// Watch each delivered rule this long before the target counts as succeeded.
    #[arg(long)]
    verify_secs: Option<u64>,
    /// With --verify-secs: exceptions a healthy rule may raise [default: 0].
    #[arg(long, requires = "verify_secs")]
    verify_max_exceptions: Option<u64>,
    /// With --verify-secs: records a healthy rule's sources must read [default: 0].
    #[arg(long, requires = "verify_secs")]
    verify_min_records_in: Option<u64>,
    /// Follow the results live and exit non-zero unless every target succeeded.
    #[arg(long)]
    watch: bool,
}

/// Waves, gate, abort rule and start time, for `deliver` and `delivery apply`.
#[derive(clap::Args)]
pub struct RolloutArgs {
    /// Deliver in waves: counts and percentages of all targets, the last taking the rest
    /// (`1%,10%,rest`, `5,50,rest`).
    #[arg(long, conflicts_with = "canary")]
    waves: Option<String>,
    /// Waves 1%, 10%, then the rest.
    #[arg(long)]
    canary: bool,
    /// auto: the next wave starts when one is done; manual: pause after each wave until
    /// `delivery resume`.
    #[arg(long, value_parser = ["auto", "manual"])]
    gate: Option<String>,
    /// Abort the rollout when this share of results failed (with --abort-min-results).
    #[arg(long)]
    abort_failed_percent: Option<f64>,
    /// Results needed before the abort rule is checked [default: 1].
    #[arg(long, requires = "abort_failed_percent")]
    abort_min_results: Option<u64>,
    /// stop: cancel targets not started; rollback: also put back every target changed.
    #[arg(long, value_parser = ["stop", "rollback"])]
    on_abort: Option<String>,
    /// Start at this time (RFC 3339, e.g. 2026-12-05T02:00:00+08:00).
    #[arg(long)]
    start_at: Option<String>,
}

/// The `rollout` of a delivery from the command line, if any flag asks for one.
fn rollout_of(args: &RolloutArgs) -> anyhow::Result<Option<domain::rollout::Rollout>> {
    let waves = match (&args.waves, args.canary) {
        (Some(text), _) => domain::rollout::parse_waves(text).map_err(anyhow::Error::msg)?,
        (None, true) => domain::rollout::canary(),
        (None, false) => {
            if args.gate.is_some() || args.abort_failed_percent.is_some() || args.on_abort.is_some() {
                bail!("--gate, --abort-failed-percent and --on-abort go with --waves or --canary");
            }
            return Ok(None);
        }
    };
    let gate = match args.gate.as_deref() {
        Some("manual") => domain::rollout::Gate::Manual,
        _ => domain::rollout::Gate::Auto,
    };
    let abort = args.abort_failed_percent.map(|failed_percent| domain::rollout::AbortRule {
        failed_percent,
        min_results: args.abort_min_results.unwrap_or(1),
    });
    let on_abort = match args.on_abort.as_deref() {
        Some("rollback") => domain::rollout::OnAbort::Rollback,
        _ => domain::rollout::OnAbort::Stop,
    };
    Ok(Some(domain::rollout::Rollout { waves, gate, abort, on_abort }))
}

pub async fn deliver(args: DeliverArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    let project = client.project(args.project.as_deref()).await?;
    let targets = if !args.ids.is_empty() {
        json!({"ids": args.ids})
    } else {
        let mut filter = serde_json::Map::new();
        if !args.tag.is_empty() {
            filter.insert("tag".into(), json!(args.tag));
        }
        for (key, value) in [("version", &args.edge_version), ("name", &args.name), ("q", &args.q)] {
            if let Some(value) = value {
                filter.insert(key.into(), json!(value));
            }
        }
        match (filter.is_empty(), args.all) {
            (true, false) => bail!("choose targets: --ids, a filter (--tag, --edge-version, --name, --q) or --all"),
            // The server refuses an empty filter (a typo must not reach the fleet): --all says so.
            (true, true) => json!({"all": true}),
            (false, _) => json!({"filter": filter}),
        }
    };
    let mut options = serde_json::Map::new();
    for (key, value) in [
        ("concurrency", args.concurrency.map(|v| json!(v))),
        ("timeout_secs", args.timeout_secs.map(|v| json!(v))),
        ("retries", args.retries.map(|v| json!(v))),
        ("on_conflict", args.on_conflict.as_ref().map(|v| json!(v))),
        ("respect_windows", args.respect_windows.then_some(json!(true))),
        ("offline", args.offline_wait.then_some(json!("wait"))),
        ("deadline", args.deadline.as_ref().map(|v| json!(v))),
        (
            "verify",
            args.verify_secs.map(|secs| {
                json!({"secs": secs, "max_exceptions": args.verify_max_exceptions.unwrap_or(0),
                       "min_records_in": args.verify_min_records_in.unwrap_or(0)})
            }),
        ),
    ] {
        if let Some(value) = value {
            options.insert(key.into(), value);
        }
    }
    let params = match &args.params {
        Some(path) => serde_json::from_str::<Value>(
            &std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", path.display()))?,
        None => json!({}),
    };
    let mut request =
        NewDelivery { targets, options: Some(Value::Object(options)), dry_run: args.dry_run, ..NewDelivery::default() };
    if args.plan {
        request.mode = Some(domain::delivery::DeliveryMode::Plan);
    }
    request.rollout = rollout_of(&args.rollout)?;
    request.start_at = args.rollout.start_at.clone();
    match (&args.template, &args.plugin) {
        (Some(template), _) => {
            request.template_id = Some(client.named(&project, "templates", template).await?);
            request.params = Some(params);
            request.version = args.template_version;
        }
        (None, Some(plugin)) => request.plugin_id = Some(client.named(&project, "plugins", plugin).await?),
        (None, None) => bail!("say what to deliver: --template ID|NAME or --plugin ID|NAME"),
    }
    let path = format!("/api/v1/projects/{project}/deliveries");
    let delivery: Delivery = client.api.call(reqwest::Method::POST, &path, Some(&request)).await?;
    println!("delivery {}: {} targets", delivery.id, delivery.counts.total);
    if let Some(note) = waiting_note(&delivery) {
        println!("{note}");
    }
    if !args.watch && !args.plan {
        return Ok(ExitCode::SUCCESS);
    }
    follow(&client, &project, &delivery.id, args.plan).await
}

/// Follows a delivery's results live to its end; prints its plan when it is one. Exits non-zero
/// unless it succeeded.
/// A delivery that stops for people (a pause, approvals, its start time) ends the watch with the
/// command that goes on, and exit code 3.
async fn follow(client: &Client, project: &str, id: &str, plan: bool) -> anyhow::Result<ExitCode> {
    let mut final_state = String::new();
    let mut waiting: Option<String> = None;
    client
        .watch(&format!("/api/v1/projects/{project}/deliveries/{id}/events"), |name, data| {
            if let Some(state @ ("paused" | "awaiting_approval" | "scheduled")) =
                data["state"].as_str().filter(|_| name == "state").or((name == "paused").then_some("paused"))
            {
                waiting = Some(state.to_owned());
            }
            match name {
                "counts" => progress(data, false),
                "target" if data["status"] == "failed" => {
                    clear_progress();
                    eprintln!(
                        "  ✗ {}: {}",
                        data["name"].as_str().unwrap_or_default(),
                        data["reason"].as_str().unwrap_or_default()
                    );
                }
                "final" => {
                    progress(&data["counts"], true);
                    final_state = data["state"].as_str().unwrap_or_default().to_owned();
                }
                "state" if data["waves"].as_u64().unwrap_or(0) > 0 || data["state"] != "running" => {
                    clear_progress();
                    eprintln!(
                        "  {} (wave {} of {})",
                        data["state"].as_str().unwrap_or_default(),
                        data["wave"],
                        data["waves"]
                    );
                }
                "wave_started" | "wave_finished" | "paused" | "resumed" | "aborted" | "approved" => {
                    clear_progress();
                    eprintln!("  {}", rollout_line(name, data));
                }
                _ => {}
            }
            waiting.is_none()
        })
        .await?;
    eprintln!();
    if let Some(state) = waiting {
        let next = match state.as_str() {
            "awaiting_approval" => "another project admin approves it: edgefleet delivery approve",
            "scheduled" => "its start time, or start it now: edgefleet delivery resume",
            _ => "someone resumes it: edgefleet delivery resume",
        };
        println!("delivery {id}: {state}; it goes on when {next} --project {project} {id} --watch");
        return Ok(ExitCode::from(3));
    }
    println!("delivery {id}: {final_state}");
    if plan {
        print_plan(&client.get(&format!("/api/v1/projects/{project}/deliveries/{id}/plan")).await?);
    }
    Ok(if final_state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// A rollout event as one line.
fn rollout_line(name: &str, data: &Value) -> String {
    let text = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
    match name {
        "wave_started" => format!("▶ wave {} of {} started", data["wave"], data["waves"]),
        "wave_finished" => format!(
            "■ wave {} of {} done: ✓ {} ✗ {}",
            data["wave"], data["waves"], data["counts"]["succeeded"], data["counts"]["failed"]
        ),
        "paused" => format!("⏸ paused at wave {} by {}: {}", data["wave"], text("by"), text("reason")),
        "resumed" => format!("▶ resumed at wave {} by {}", data["wave"], text("by")),
        "aborted" => format!("✗ {} ({})", text("reason"), text("by")),
        "approved" => format!(
            "✓ approved by {} ({} of {}); now {}",
            text("by"),
            data["approvals"],
            data["required"],
            text("state")
        ),
        other => other.to_owned(),
    }
}

/// What a delivery that does not start at once waits for.
fn waiting_note(delivery: &Delivery) -> Option<String> {
    use domain::delivery::DeliveryState;
    match delivery.state {
        DeliveryState::AwaitingApproval => Some(format!(
            "awaiting {} approval(s) by other project admins: edgefleet delivery approve --project {} {}",
            delivery.approvals_required, delivery.project_id, delivery.id
        )),
        DeliveryState::Scheduled => Some(format!(
            "scheduled for {}; start it now with: edgefleet delivery resume --project {} {}",
            delivery.start_at.as_deref().unwrap_or("later"),
            delivery.project_id,
            delivery.id
        )),
        _ => None,
    }
}

/// Plans, applying them, and rollbacks of earlier deliveries.
#[derive(clap::Subcommand)]
pub enum DeliveryCommand {
    /// Print a plan (a delivery started with `deliver --plan`).
    Plan {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// Carry a plan out: a new delivery of its content to its targets. Gateways changed since the
    /// plan read them fail with changed_since_plan unless --force.
    Apply {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        /// The plan's delivery id.
        plan: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        rollout: RolloutArgs,
        /// Follow the results live and exit non-zero unless every target succeeded.
        #[arg(long)]
        watch: bool,
    },
    /// Put the targets of a delivery back as it found them. Gateways changed since fail with
    /// changed_since_delivery unless --force.
    Rollback {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        /// all (default), succeeded, or edge-service ids, comma separated.
        #[arg(long, default_value = "all")]
        targets: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        watch: bool,
    },
    /// Approve a delivery awaiting approval (you cannot approve your own).
    Approve {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// Pause a running delivery: no target starts until it is resumed.
    Pause {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// Resume a paused delivery (the next wave, after a manual gate), or start a scheduled one now.
    Resume {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        #[arg(long)]
        watch: bool,
    },
    /// Abort a delivery: targets not started are canceled (and, with on_abort rollback, changed
    /// ones put back).
    Abort {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// The project's deliveries, newest first.
    List {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One delivery: what it sends, its state and counts, and why its failed targets failed.
    Show {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// Follow a delivery's results live to its end; exits 0 only when every target succeeded.
    Watch {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// Cancel a delivery: the edge calls under way are abandoned, targets not started are canceled.
    Cancel {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// Run a finished delivery's failed targets again (the same delivery).
    Retry {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        /// Follow the results live and exit non-zero unless every target succeeded.
        #[arg(long)]
        watch: bool,
    },
}

/// approve, pause, resume, abort: a control, then the delivery's state.
async fn control(client: &Client, project: &str, id: &str, action: &str) -> anyhow::Result<Delivery> {
    let path = format!("/api/v1/projects/{project}/deliveries/{id}/{action}");
    let delivery: Delivery = client.api.call(reqwest::Method::POST, &path, Some(&json!({}))).await?;
    let wave =
        if delivery.waves > 0 { format!(", wave {} of {}", delivery.wave, delivery.waves) } else { String::new() };
    println!("delivery {id}: {}{wave}", delivery.state);
    Ok(delivery)
}

/// A control (resume, retry, ...), then with `watch` the delivery's results live to its end.
async fn control_then_follow(
    client: &Client,
    project: &str,
    id: &str,
    action: &str,
    watch: bool,
) -> anyhow::Result<ExitCode> {
    control(client, project, id, action).await?;
    if !watch {
        return Ok(ExitCode::SUCCESS);
    }
    follow(client, project, id, false).await
}

pub async fn delivery(command: DeliveryCommand) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    let (project, path, body, watch) = match command {
        DeliveryCommand::Plan { project, id } => {
            let project = client.project(project.as_deref()).await?;
            print_plan(&client.get(&format!("/api/v1/projects/{project}/deliveries/{id}/plan")).await?);
            return Ok(ExitCode::SUCCESS);
        }
        DeliveryCommand::Approve { project, id } => {
            let project = client.project(project.as_deref()).await?;
            let delivery = control(&client, &project, &id, "approve").await?;
            if let Some(note) = waiting_note(&delivery) {
                println!("{note}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        DeliveryCommand::Pause { project, id } => {
            let project = client.project(project.as_deref()).await?;
            control(&client, &project, &id, "pause").await?;
            return Ok(ExitCode::SUCCESS);
        }
        DeliveryCommand::Abort { project, id } => {
            let project = client.project(project.as_deref()).await?;
            control(&client, &project, &id, "abort").await?;
            return Ok(ExitCode::SUCCESS);
        }
        DeliveryCommand::Cancel { project, id } => {
            let project = client.project(project.as_deref()).await?;
            control(&client, &project, &id, "cancel").await?;
            return Ok(ExitCode::SUCCESS);
        }
        DeliveryCommand::Retry { project, id, watch } => {
            let project = client.project(project.as_deref()).await?;
            return control_then_follow(&client, &project, &id, "retry", watch).await;
        }
        DeliveryCommand::Watch { project, id } => {
            let project = client.project(project.as_deref()).await?;
            return follow(&client, &project, &id, false).await;
        }
        DeliveryCommand::List { project, limit } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/deliveries?limit={limit}");
            let list: api_client::types::List<Delivery> =
                client.api.call(reqwest::Method::GET, &path, None::<&()>).await?;
            print_deliveries(&list);
            return Ok(ExitCode::SUCCESS);
        }
        DeliveryCommand::Show { project, id } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/deliveries/{id}");
            let delivery: Delivery = client.api.call(reqwest::Method::GET, &path, None::<&()>).await?;
            let failed_path = format!("{path}/targets?status=failed&limit=50");
            let failed: api_client::types::List<api_client::types::DeliveryTarget> =
                client.api.call(reqwest::Method::GET, &failed_path, None::<&()>).await?;
            print_delivery(&delivery, &failed);
            return Ok(ExitCode::SUCCESS);
        }
        DeliveryCommand::Resume { project, id, watch } => {
            let project = client.project(project.as_deref()).await?;
            return control_then_follow(&client, &project, &id, "resume", watch).await;
        }
        DeliveryCommand::Apply { project, plan, force, rollout, watch } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/deliveries/{plan}/apply");
            let body = json!({"force": force, "rollout": rollout_of(&rollout)?, "start_at": rollout.start_at});
            (project, path, body, watch)
        }
        DeliveryCommand::Rollback { project, id, targets, force, watch } => {
            let project = client.project(project.as_deref()).await?;
            let targets = match targets.as_str() {
                "all" | "succeeded" => json!(targets),
                ids => json!(ids.split(',').map(str::trim).filter(|id| !id.is_empty()).collect::<Vec<_>>()),
            };
            let path = format!("/api/v1/projects/{project}/deliveries/{id}/rollback");
            (project, path, json!({"targets": targets, "force": force}), watch)
        }
    };
    let started: Delivery = client.api.call(reqwest::Method::POST, &path, Some(&body)).await?;
    println!("delivery {} ({}): {} targets", started.id, started.mode, started.counts.total);
    if !watch {
        return Ok(ExitCode::SUCCESS);
    }
    follow(&client, &project, &started.id, false).await
}

/// What a delivery sends: `template NAME vN`, or the plugin.
fn delivered_thing(delivery: &Delivery) -> String {
    match (&delivery.plugin_id, delivery.template_version) {
        (Some(_), _) => format!("plugin {}", delivery.template_name),
        (None, Some(version)) => format!("{} v{version}", delivery.template_name),
        (None, None) => delivery.template_name.clone(),
    }
}

fn print_deliveries(list: &api_client::types::List<Delivery>) {
    println!(
        "{:<38} {:<20} {:<18} {:<8} {:<28} {:>7} {:>7} {:>7}",
        "ID", "CREATED (UTC)", "STATE", "MODE", "WHAT", "TARGETS", "OK", "FAILED"
    );
    for delivery in &list.items {
        println!(
            "{:<38} {:<20} {:<18} {:<8} {:<28} {:>7} {:>7} {:>7}",
            delivery.id,
            short_time(delivery.created_at),
            delivery.state.to_string(),
            delivery.mode.to_string(),
            delivered_thing(delivery),
            delivery.counts.total,
            delivery.counts.succeeded,
            delivery.counts.failed
        );
    }
    println!("{} of {} deliveries shown", list.items.len(), list.total);
}

fn print_delivery(delivery: &Delivery, failed: &api_client::types::List<api_client::types::DeliveryTarget>) {
    let counts = &delivery.counts;
    println!("delivery   {}", delivery.id);
    println!("sends      {} ({})", delivered_thing(delivery), delivery.mode);
    println!("state      {}", delivery.state);
    println!("created    {} by {}", short_time(delivery.created_at), delivery.created_by);
    if let Some(finished) = delivery.finished_at {
        println!("finished   {}", short_time(finished));
    }
    if delivery.waves > 0 {
        println!("rollout    wave {} of {}", delivery.wave, delivery.waves);
    }
    println!(
        "targets    {} total: {} succeeded, {} failed, {} skipped, {} canceled, {} pending, {} running",
        counts.total, counts.succeeded, counts.failed, counts.skipped, counts.canceled, counts.pending, counts.running
    );
    if let Some(note) = waiting_note(delivery) {
        println!("{note}");
    }
    if !failed.items.is_empty() {
        println!("\nfailed ({} of {} shown):", failed.items.len(), failed.total);
        for target in &failed.items {
            println!("  ✗ {}: {}", target.name, target.reason);
        }
    }
}

/// `2026-12-05 09:30:12` (UTC), for tables.
fn short_time(epoch_ms: i64) -> String {
    domain::edge::utc_text(epoch_ms).replace('T', " ").trim_end_matches('Z').to_owned()
}

/// A plan as people read it: the totals, each group of targets with its changes and patches, then
/// the targets that could not be read.
fn print_plan(plan: &Value) {
    let summary = &plan["summary"];
    println!(
        "plan: {} to create, {} to update, {} unchanged, {} in conflict, {} incompatible; {} targets unreachable",
        summary["create"],
        summary["update"],
        summary["unchanged"],
        summary["conflict"],
        summary["incompatible"],
        summary["unreachable"]
    );
    for group in plan["groups"].as_array().into_iter().flatten() {
        let ids: Vec<&str> = group["names"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let more = group["targets"].as_u64().unwrap_or(0).saturating_sub(ids.len() as u64);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        println!("\n{} targets ({}{more}):", group["targets"], ids.join(", "));
        for change in group["changes"].as_array().into_iter().flatten() {
            let action = change["action"].as_str().unwrap_or_default();
            let sign = match action {
                "create" => "+",
                "update" => "~",
                "unchanged" => "=",
                _ => "!",
            };
            let reason =
                change["reason"].as_str().filter(|r| !r.is_empty()).map(|r| format!(": {r}")).unwrap_or_default();
            println!("  {sign} {} ({action}){reason}", change["object"].as_str().unwrap_or_default());
            for op in change["diff"].as_array().into_iter().flatten().filter(|_| action != "create") {
                println!(
                    "      {} {} {}",
                    op["op"].as_str().unwrap_or_default(),
                    op["path"].as_str().unwrap_or_default(),
                    op.get("value").map(Value::to_string).unwrap_or_default()
                );
            }
        }
    }
    for group in plan["unreachable"].as_array().into_iter().flatten() {
        let names: Vec<&str> = group["names"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        println!(
            "\n{} targets not read ({}): {}",
            group["targets"],
            names.join(", "),
            group["reason"].as_str().unwrap_or_default()
        );
    }
}

/// `[#########-----------] 450/1000  ✓ 440  ✗ 10`, redrawn in place on a terminal; elsewhere (a
/// log file, a pipe) only the final counts are written, with no control characters.
fn progress(counts: &Value, last: bool) {
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !live && !last {
        return;
    }
    let total = counts["total"].as_u64().unwrap_or(0).max(1);
    let done = total - counts["pending"].as_u64().unwrap_or(0);
    let width = 30;
    let filled = (done * width / total) as usize;
    clear_progress();
    eprint!(
        "[{}{}] {done}/{total}  ✓ {}  ✗ {}",
        "#".repeat(filled),
        "-".repeat(width as usize - filled),
        counts["succeeded"],
        counts["failed"]
    );
    let _ = std::io::stderr().flush();
}

/// Clears the progress line before another line is written, on a terminal only.
fn clear_progress() {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r\x1b[K");
    }
}

/// Maintenance windows of a project.
#[derive(clap::Subcommand)]
pub enum WindowCommand {
    /// List the windows with their next opening.
    List {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
    },
    /// Add a window: from each cron opening (civil time in --timezone) for --minutes.
    Add {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        name: String,
        /// Five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * 6".
        #[arg(long)]
        cron: String,
        #[arg(long)]
        minutes: i64,
        /// IANA time zone [default: UTC].
        #[arg(long)]
        timezone: Option<String>,
        /// Only for edge services with this tag [default: every edge service].
        #[arg(long)]
        tag: Option<String>,
    },
    /// Delete a window.
    Delete {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
}

pub async fn window(command: WindowCommand) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    match command {
        WindowCommand::List { project } => {
            let project = client.project(project.as_deref()).await?;
            let listed = client.get(&format!("/api/v1/projects/{project}/maintenance-windows")).await?;
            for w in listed["items"].as_array().into_iter().flatten() {
                let text = |key: &str| w[key].as_str().unwrap_or_default().to_owned();
                let tag = if text("tag").is_empty() { "every edge".to_owned() } else { format!("tag {}", text("tag")) };
                let state = match w["open_until"].as_str() {
                    Some(until) => format!("open until {until}"),
                    None => format!("next opens {}", w["next_opening"].as_str().unwrap_or("never")),
                };
                println!(
                    "{}  {}  \"{}\" {} min {}  ({tag}; {state})",
                    text("id"),
                    text("name"),
                    text("cron"),
                    w["duration_minutes"],
                    text("timezone")
                );
            }
        }
        WindowCommand::Add { project, name, cron, minutes, timezone, tag } => {
            let project = client.project(project.as_deref()).await?;
            let body =
                json!({"name": name, "cron": cron, "duration_minutes": minutes, "timezone": timezone, "tag": tag});
            let path = format!("/api/v1/projects/{project}/maintenance-windows");
            let created: Value = client.api.call(reqwest::Method::POST, &path, Some(&body)).await?;
            println!(
                "window {}: next opens {}",
                created["id"].as_str().unwrap_or_default(),
                created["next_opening"].as_str().unwrap_or("never")
            );
        }
        WindowCommand::Delete { project, id } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/maintenance-windows/{id}");
            client.api.send(reqwest::Method::DELETE, &path, None).await?.into_result()?;
            println!("window {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `edgefleet project approvals --project P N`: other project admins who must approve each delivery.
#[derive(clap::Subcommand)]
pub enum ProjectCommand {
    /// Every project you can open, as ORGANIZATION/PROJECT; `*` marks the one `edgefleet use` chose.
    List,
    /// Set how many other project admins must approve each new delivery (0: none).
    Approvals {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        required: i64,
    },
}

pub async fn project(command: ProjectCommand) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    match command {
        ProjectCommand::List => {
            let current = saved_credentials()["project"].as_str().map(str::to_owned);
            let mut projects = client.projects().await?;
            projects.sort_by_key(ProjectRef::full_name);
            println!("  {:<38} PROJECT", "ID");
            for project in projects {
                let mark = if current.as_deref() == Some(project.id.as_str()) { "*" } else { " " };
                println!("{mark} {:<38} {}", project.id, project.full_name());
            }
        }
        ProjectCommand::Approvals { project, required } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}");
            let body = json!({"approvals_required": required});
            let updated: Value = client.api.call(reqwest::Method::PATCH, &path, Some(&body)).await?;
            println!(
                "project {}: {} approvals required",
                updated["name"].as_str().unwrap_or(&project),
                updated["approvals_required"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only this project's records: its id, ORGANIZATION/PROJECT or a unique name.
    #[arg(long)]
    project: Option<String>,
    /// One action (`delivery.create`), or every action under a prefix ending in `.`
    /// (`delivery.` matches delivery.create, delivery.cancel, ...).
    #[arg(long)]
    action: Option<String>,
    /// Only what this user did (a username).
    #[arg(long)]
    actor: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment()?;
    let mut query = vec![("limit".to_owned(), args.limit.to_string())];
    if let Some(given) = args.project.as_deref() {
        query.push(("project".to_owned(), client.project(Some(given)).await?));
    }
    query.extend(args.action.map(|v| ("action".to_owned(), v)));
    query.extend(args.actor.map(|v| ("actor".to_owned(), v)));
    let answer = client.get(&format!("/api/v1/audit?{}", serde_urlencoded_pairs(&query))).await?;
    println!("{:<19} {:<10} {:<22} {:<10} RESOURCE DETAILS", "AT (UTC)", "ACTOR", "ACTION", "OUTCOME");
    for event in answer["items"].as_array().into_iter().flatten() {
        println!(
            "{:<19} {:<10} {:<22} {:<10} {} {}",
            short_time(event["at"].as_i64().unwrap_or_default()),
            event["actor_name"].as_str().unwrap_or_default(),
            event["action"].as_str().unwrap_or_default(),
            event["outcome"].as_str().unwrap_or_default(),
            event["resource_name"].as_str().unwrap_or_default(),
            event["details"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Webhooks: receivers of delivery and drift events (docs/API.md, "Webhooks").
#[derive(clap::Subcommand)]
pub enum WebhookCommand {
    /// List the project's webhooks.
    List {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
    },
    /// Add a webhook; prints its secret, which is shown this once.
    Add {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        /// Where the calls go (http:// or https://).
        url: String,
        /// Events to send, comma-separated: delivery.created, delivery.approved, delivery.started,
        /// delivery.wave, delivery.finished, delivery.aborted, delivery.rolled_back, edge.drifted;
        /// or "*" for all.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        events: Vec<String>,
        /// A file holding the secret (16 to 256 characters) [default: the server makes one].
        #[arg(long)]
        secret_file: Option<std::path::PathBuf>,
    },
    /// Delete a webhook (calls not sent yet are dropped).
    Delete {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// Send a ping now and print how the receiver answered (exits non-zero unless 2xx).
    Test {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
    },
    /// The webhook's calls, newest first, with their tries.
    Log {
        /// The project: its id, ORGANIZATION/PROJECT, or a project name no other organization of yours
        /// has [default: EDGEFLEET_PROJECT, else the one `edgefleet use` saved].
        #[arg(long)]
        project: Option<String>,
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn webhook(command: WebhookCommand) -> anyhow::Result<ExitCode> {
    use api_client::types::{List, Webhook, WebhookCall};
    let client = Client::from_environment()?;
    match command {
        WebhookCommand::List { project } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/webhooks");
            let list: List<Webhook> = client.api.call(reqwest::Method::GET, &path, None::<&()>).await?;
            for hook in &list.items {
                println!("{}  {}  {}", hook.id, hook.url, hook.events.join(","));
            }
        }
        WebhookCommand::Add { project, url, events, secret_file } => {
            let project = client.project(project.as_deref()).await?;
            let secret = match secret_file {
                Some(file) => Some(
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?
                        .trim_end()
                        .to_owned(),
                ),
                None => None,
            };
            let body = api_client::types::NewWebhook { url, secret, events };
            let path = format!("/api/v1/projects/{project}/webhooks");
            let made: Webhook = client.api.call(reqwest::Method::POST, &path, Some(&body)).await?;
            println!("webhook {} for {}", made.id, made.events.join(","));
            println!("secret (shown once): {}", made.secret.unwrap_or_default());
        }
        WebhookCommand::Delete { project, id } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/webhooks/{id}");
            client.api.send(reqwest::Method::DELETE, &path, None).await?.into_result()?;
            println!("webhook {id} deleted");
        }
        WebhookCommand::Test { project, id } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/webhooks/{id}/test");
            let call: WebhookCall = client.api.call(reqwest::Method::POST, &path, Some(&json!({}))).await?;
            println!("{}", call_line(&call));
            if call.state != domain::webhook::CallState::Delivered {
                return Ok(ExitCode::FAILURE);
            }
        }
        WebhookCommand::Log { project, id, limit } => {
            let project = client.project(project.as_deref()).await?;
            let path = format!("/api/v1/projects/{project}/webhooks/{id}/deliveries?limit={limit}");
            let list: List<WebhookCall> = client.api.call(reqwest::Method::GET, &path, None::<&()>).await?;
            println!(
                "{} calls{}",
                list.total,
                if list.total > list.items.len() as i64 { " (newest shown)" } else { "" }
            );
            for call in &list.items {
                println!("{}", call_line(call));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-05 12:00:00  delivery.finished  delivered  1 try  HTTP 200  <id>`, with the error or
/// the next try when there is one.
fn call_line(call: &api_client::types::WebhookCall) -> String {
    let answer = call.status_code.map_or_else(|| "no answer".to_owned(), |code| format!("HTTP {code}"));
    let tries = if call.attempts == 1 { "1 try".to_owned() } else { format!("{} tries", call.attempts) };
    let mut line =
        format!("{}  {}  {}  {tries}  {answer}  {}", short_time(call.created_at), call.event, call.state, call.id);
    if !call.error.is_empty() {
        line.push_str(&format!("  ({})", call.error));
    }
    if let Some(next) = call.next_at {
        line.push_str(&format!("  next try {}", short_time(next)));
    }
    line
}

/// The rows to register from a `neuronex-sim --manifest` file (each entry has `index`, `name`,
/// `endpoint`, `version` and `tags`): the same without `index` and `version`, which are the
/// simulator's, not the registry's. `None` for anything else, which is sent as it is.
fn registry_rows_of_manifest(bytes: &[u8]) -> Option<Vec<u8>> {
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return None;
    };
    let is_manifest = !entries.is_empty()
        && entries.iter().all(|e| e.get("index").is_some_and(serde_json::Value::is_u64) && e.get("version").is_some());
    if !is_manifest {
        return None;
    }
    let rows: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|mut entry| {
            if let Some(fields) = entry.as_object_mut() {
                fields.remove("index");
                fields.remove("version");
            }
            entry
        })
        .collect();
    serde_json::to_vec(&rows).ok()
}
