//! The simulator as a program: command line, manifest, thousands of instances, port per instance.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use neuronex_sim::ManifestEntry;

struct Running {
    child: Child,
    base_url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on an ephemeral port and reads the address it prints.
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_neuronex-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("simulator starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("first line");
    let base_url =
        line.split(" at ").nth(1).and_then(|rest| rest.split("/i/").next()).expect("address line").to_owned();
    Running { child, base_url }
}

/// A tiny blocking GET over std, so these tests need no runtime.
fn get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn ten_thousand_instances_answer_and_only_used_ones_cost_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("fleet.json");
    let sim = start(&[
        "--count",
        "10000",
        "--versions",
        "3.6.0=90,2.9.0=10",
        "--seed",
        "3",
        "--manifest",
        manifest.to_str().expect("path"),
    ]);
    let entries: Vec<ManifestEntry> =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("manifest")).expect("manifest json");
    assert_eq!(entries.len(), 10000);
    let old = entries.iter().filter(|e| e.version == "2.9.0").count();
    assert!((700..1300).contains(&old), "about 10% on 2.9.0, got {old}");
    for k in [0usize, 4242, 9999] {
        let (status, body) = get(&format!("{}/api/version", entries[k].endpoint));
        assert_eq!(status, 200);
        assert_eq!(body, format!("{{\"version\":\"{}\"}}", entries[k].version));
    }
    let (status, _) = get(&format!("{}/i/10000/api/version", sim.base_url));
    assert_eq!(status, 404, "instances past --count do not exist");
    let (_, health) = get(&format!("{}/__sim/health", sim.base_url));
    assert_eq!(health, r#"{"count":10000,"instances_in_use":3,"peak_in_flight":1}"#, "requests went one at a time");
}

#[test]
fn port_per_instance_serves_each_instance_at_its_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("fleet.json");
    let _sim = start(&["--count", "3", "--port-per-instance", "--manifest", manifest.to_str().expect("path")]);
    let entries: Vec<ManifestEntry> =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("manifest")).expect("json");
    let mut ports: Vec<&str> = entries.iter().map(|e| e.endpoint.as_str()).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for entry in &entries {
        assert!(!entry.endpoint.contains("/i/"));
        let (status, _) = get(&format!("{}/api/ekuiper/ping", entry.endpoint));
        assert_eq!(status, 200);
    }
}

#[test]
fn bad_command_lines_are_refused_with_a_reason() {
    for (args, reason) in [
        (vec!["--versions", "three"], "`three` is not a version like 3.6.0"),
        (vec!["--error-rate", "2"], "--error-rate must be between 0 and 1"),
        (vec!["--auth", "magic"], "unknown auth mode `magic`"),
        (vec!["--auth", "jwt"], "--auth jwt needs --jwt-key-dir"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_neuronex-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
