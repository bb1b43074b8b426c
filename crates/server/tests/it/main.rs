//! The server through its HTTP interface, against neuronex-sim on loopback. One binary.

mod access;
mod agents;
mod audit;
mod deliveries;
mod drift;
mod edges;
mod events;
mod limits;
mod metrics;
mod plans;
mod plugins;
mod rollouts;
mod security;
mod support;
mod templates;
mod tidy;
mod webhooks;
