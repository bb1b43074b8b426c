//! Agent mode: gateways behind NAT and firewalls, reached through an MQTT broker.
//!
//! The server publishes signed commands to `edgefleet/v1/agents/{agent_id}/commands`; the agent
//! beside NeuronEX verifies each one, runs it through the edge client on its local NeuronEX and
//! publishes the answer to `.../results`; `.../status` holds the agent's retained status, with a
//! last will that says `offline`. Everything a delivery means stays in the server: a command is
//! one NeuronEX call (or bringing a plugin package over), so plans, snapshots, rollbacks, drift
//! checks and probes work through an agent exactly as over HTTP.
//!
//! - [`protocol`]: topics, commands, replies, the status document.
//! - [`keys`]: Ed25519 command signing (server) and verification (agent).
//! - [`mqtt`]: one session over MQTT 3.1.1 or 5, TCP or TLS.
//! - [`record`]: the agent's durable record of command ids it has run.
//! - [`runner`]: the agent.
//! - [`link`]: the server's end, an [`edge_client::Relay`].

pub mod keys;
pub mod link;
pub mod mqtt;
pub mod protocol;
pub mod record;
pub mod runner;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
