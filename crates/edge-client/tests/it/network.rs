//! The network policy at connect time, and what a reason may quote of an answer.

use std::time::Duration;

use domain::network::NetworkPolicy;
use edge_client::{ClientConfig, EdgeAuth, EdgeClient, EdgeTarget, Failure};

use crate::support::{client, request_count, sim};

fn default_policy_client() -> EdgeClient {
    let config = ClientConfig { request_timeout: Duration::from_secs(2), ..ClientConfig::default() };
    EdgeClient::new(config).expect("client")
}

fn at(endpoint: String) -> EdgeTarget {
    EdgeTarget::http(endpoint, EdgeAuth::None)
}

#[tokio::test]
async fn the_default_policy_refuses_loopback_in_every_spelling_before_sending() {
    let sim = sim("3.6.0").await;
    let port = sim.base_url.rsplit(':').next().expect("port").to_owned();
    let path = sim.endpoint(0).split_once(&port).expect("path").1.to_owned();
    // (endpoint, what the refusal names)
    let spellings = [
        (format!("http://127.0.0.1:{port}{path}"), "127.0.0.1 is a loopback address"),
        (format!("http://2130706433:{port}{path}"), "127.0.0.1 is a loopback address"),
        (format!("http://0x7f.1:{port}{path}"), "127.0.0.1 is a loopback address"),
        (format!("http://[::ffff:127.0.0.1]:{port}{path}"), "127.0.0.1 is a loopback address"),
        (format!("http://localhost:{port}{path}"), "localhost ("),
        (format!("http://169.254.169.254:{port}/"), "link-local"),
    ];
    let client = default_policy_client();
    for (endpoint, named) in spellings {
        let err = client.edge(&at(endpoint.clone())).version().await.expect_err(&endpoint);
        assert!(matches!(err.failure, Failure::Refused { .. }), "{endpoint}: {err:?}");
        assert!(!err.is_transient(), "{endpoint}: a refusal is not retried");
        let text = err.to_string();
        assert!(text.contains("edge_network_denied") && text.contains(named), "{endpoint}: {text}");
    }
    assert_eq!(request_count(&sim, 0, "GET /api/version").await, 0, "nothing reached the simulator");
}

#[tokio::test]
async fn configured_networks_are_reached() {
    let sim = sim("3.6.0").await;
    let version = client().edge(&at(sim.endpoint(0).to_owned())).version().await.expect("allowed");
    assert_eq!(version, "3.6.0");
}

#[tokio::test]
async fn the_servers_own_address_is_never_an_edge() {
    let sim = sim("3.6.0").await;
    let own: std::net::SocketAddr = sim.base_url.trim_start_matches("http://").parse().expect("address");
    let policy = NetworkPolicy::new(NetworkPolicy::parse_list("127.0.0.0/8").expect("networks"), Some(own));
    let client = EdgeClient::new(ClientConfig { policy, ..ClientConfig::default() }).expect("client");
    let err = client.edge(&at(sim.endpoint(0).to_owned())).version().await.expect_err("own address");
    assert!(err.to_string().contains("this server's own address"), "{err}");
}

/// Something that is not NeuronEX answered: its page must not show up in the reason.
#[tokio::test]
async fn a_reason_never_quotes_a_page_that_is_not_a_neuronex_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let secret_page = "<html>internal admin console: db password hunter2</html>";
    let app = axum::Router::new().fallback(move || async move { (axum::http::StatusCode::NOT_FOUND, secret_page) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let err = client().edge(&at(format!("http://{address}"))).version().await.expect_err("not neuronex");
    let text = err.to_string();
    assert_eq!(text, "read version: HTTP 404, not a NeuronEX answer");
    let ok_page = axum::Router::new().fallback(move || async move { "plain text, not JSON: hunter2" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, ok_page).await });
    let err = client().edge(&at(format!("http://{address}"))).version().await.expect_err("not json");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// An answer past `MAX_ANSWER_BYTES` is refused while it is read, with a reason, not kept.
#[tokio::test]
async fn an_oversized_answer_is_refused_while_it_is_read() {
    let files = crate::support::FileServer::start().await;
    files.put("/api/version", vec![b'x'; edge_client::MAX_ANSWER_BYTES + 1]);
    let target = edge_client::EdgeTarget::http(files.base_url.clone(), edge_client::EdgeAuth::None);
    let err = crate::support::client().edge(&target).version().await.expect_err("too large");
    assert_eq!(
        err.to_string(),
        "read version: edge answered HTTP 200 \"an answer larger than 32 MiB; not a NeuronEX answer\""
    );
}
