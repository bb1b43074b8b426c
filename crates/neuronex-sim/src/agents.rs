//! Embedded agents (`--agents MQTT_URL`): one `edgefleet agent` per instance, with agent id
//! `sim-<k>`, running the real agent code against the instance, so agent mode is tested and
//! benchmarked end to end without thousands of processes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use agent::keys::CommandVerifier;
use agent::mqtt::BrokerUrl;
use agent::record::Record;
use agent::runner::AgentConfig;
use edge_client::{ClientConfig, EdgeAuth, EdgeClient, EdgeTarget};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{AuthMode, RunningSim};

#[derive(Debug, Clone)]
pub struct SimAgents {
    pub broker: String,
    /// The project's command key (PEM).
    pub command_key: String,
    /// Broker sign-in (anonymous when absent).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Where each agent keeps its record (`<dir>/sim-<k>/`) and packages; a record in memory and
    /// packages in a temporary folder when absent.
    pub state_dir: Option<PathBuf>,
    pub max_clock_skew: Duration,
    /// Agent `k` is `<id_prefix><k>` (`sim-` by default); tests sharing a broker use their own.
    pub id_prefix: String,
    /// The broker's CA (PEM) for `mqtts://`.
    pub ca_file: Option<PathBuf>,
}

impl SimAgents {
    pub fn new(broker: &str, command_key: &str) -> SimAgents {
        SimAgents {
            broker: broker.to_owned(),
            command_key: command_key.to_owned(),
            username: None,
            password: None,
            state_dir: None,
            max_clock_skew: Duration::from_secs(10),
            id_prefix: "sim-".to_owned(),
            ca_file: None,
        }
    }

    pub fn agent_id(&self, k: usize) -> String {
        format!("{}{k}", self.id_prefix)
    }
}

/// The running agents; each can be stopped (cleanly or killed) and started again.
/// One agent's stop switch and task.
type RunningAgent = (CancellationToken, JoinHandle<()>);

pub struct AgentFleet {
    options: SimAgents,
    verifier: CommandVerifier,
    endpoints: Vec<String>,
    auth: EdgeAuth,
    client: EdgeClient,
    packages: PathBuf,
    _temp: Option<tempfile::TempDir>,
    running: Mutex<Vec<Option<RunningAgent>>>,
    ready: Vec<tokio::sync::watch::Sender<bool>>,
}

impl AgentFleet {
    /// Starts one agent per instance of `sim`.
    pub fn start(sim: &RunningSim, options: SimAgents) -> anyhow::Result<AgentFleet> {
        BrokerUrl::parse(&options.broker)?;
        let verifier = CommandVerifier::from_pem(&options.command_key)?;
        let (packages, temp) = match &options.state_dir {
            Some(dir) => (dir.join("packages"), None),
            None => {
                let dir = tempfile::Builder::new().prefix("neuronex-sim-agents-").tempdir()?;
                (dir.path().to_owned(), Some(dir))
            }
        };
        let auth = match sim.sim.config.auth {
            AuthMode::Basic => {
                EdgeAuth::Basic { username: sim.sim.config.username.clone(), password: sim.sim.config.password.clone() }
            }
            _ => EdgeAuth::None,
        };
        let client = EdgeClient::new(ClientConfig {
            policy: domain::network::NetworkPolicy::allow_all(),
            ..ClientConfig::default()
        })?;
        let endpoints: Vec<String> = sim.manifest.iter().map(|m| m.endpoint.clone()).collect();
        let fleet = AgentFleet {
            options,
            verifier,
            running: Mutex::new((0..endpoints.len()).map(|_| None).collect()),
            ready: (0..endpoints.len()).map(|_| tokio::sync::watch::Sender::new(false)).collect(),
            endpoints,
            auth,
            client,
            packages,
            _temp: temp,
        };
        for k in 0..fleet.endpoints.len() {
            fleet.start_one(k)?;
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Starts agent `k` (again); its record is read back from its state folder when it has one.
    pub fn start_one(&self, k: usize) -> anyhow::Result<()> {
        let id = self.options.agent_id(k);
        self.ready[k].send_replace(false);
        let record = match &self.options.state_dir {
            Some(dir) => {
                let own = dir.join(&id);
                std::fs::create_dir_all(&own)?;
                Record::open(&own.join("commands.log"), agent::record::horizon(self.options.max_clock_skew))?
            }
            None => Record::in_memory(),
        };
        let config = AgentConfig {
            broker: BrokerUrl::parse(&self.options.broker)?,
            agent_id: id,
            username: self.options.username.clone(),
            password: self.options.password.clone(),
            ca_file: self.options.ca_file.clone(),
            verifier: self.verifier.clone(),
            neuronex: EdgeTarget::http(self.endpoints[k].clone(), self.auth.clone()),
            client: self.client.clone(),
            record,
            package_dir: self.packages.join(self.options.agent_id(k)),
            max_clock_skew: self.options.max_clock_skew,
            version: format!("sim-{}", env!("CARGO_PKG_VERSION")),
            ready: Some(self.ready[k].clone()),
        };
        let token = CancellationToken::new();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = agent::runner::run(config, stop).await {
                tracing::warn!("embedded agent stopped: {err}");
            }
        });
        if let Ok(mut running) = self.running.lock()
            && let Some(slot) = running.get_mut(k)
            && let Some((_, old)) = slot.replace((token, task))
        {
            old.abort();
        }
        Ok(())
    }

    /// Waits until every running agent listens for commands, at most `within`.
    pub async fn ready(&self, within: Duration) -> anyhow::Result<()> {
        let all = async {
            for ready in &self.ready {
                let _ = ready.subscribe().wait_for(|ready| *ready).await;
            }
        };
        tokio::time::timeout(within, all).await.map_err(|_| {
            anyhow::anyhow!("the agents did not all subscribe to {} within {within:?}", self.options.broker)
        })
    }

    /// Waits until agent `k` listens for commands, at most `within`.
    pub async fn ready_one(&self, k: usize, within: Duration) -> anyhow::Result<()> {
        let mut ready = self.ready[k].subscribe();
        tokio::time::timeout(within, ready.wait_for(|ready| *ready))
            .await
            .map(drop)
            .map_err(|_| anyhow::anyhow!("agent {} did not subscribe within {within:?}", self.agent_id(k)))
    }

    pub fn agent_id(&self, k: usize) -> String {
        self.options.agent_id(k)
    }

    /// Stops agent `k` cleanly: it publishes `offline` and disconnects.
    pub async fn stop(&self, k: usize) {
        let Some((token, task)) = self.running.lock().ok().and_then(|mut r| r.get_mut(k).and_then(Option::take)) else {
            return;
        };
        token.cancel();
        let _ = task.await;
    }

    /// Kills agent `k` as a crash would: its connection drops without a goodbye (the broker
    /// publishes its last will) and whatever it was running stops where it was.
    pub async fn kill(&self, k: usize) {
        let Some((_, task)) = self.running.lock().ok().and_then(|mut r| r.get_mut(k).and_then(Option::take)) else {
            return;
        };
        task.abort();
        let _ = task.await;
    }
}

impl Drop for AgentFleet {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            for (token, task) in running.iter().flatten() {
                token.cancel();
                task.abort();
            }
        }
    }
}
