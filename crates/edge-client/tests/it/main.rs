//! Contract tests: the edge client against neuronex-sim, for every call and error path that a
//! delivery relies on. One binary (see docs/ARCHITECTURE.md, "Testing").

mod auth;
mod ekuiper_import;
mod ekuiper_plugins;
mod ekuiper_rules;
mod ekuiper_streams;
mod faults;
mod fixtures;
mod network;
mod neuron;
mod readback;
mod relay;
mod support;
mod upstream_ekuiper;
mod upstream_neuron;
mod versions;
