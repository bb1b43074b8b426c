use std::time::Duration;

use edge_client::{ClientConfig, EdgeAuth, EdgeClient, EdgeTarget, Failure, JwtSigner, generate_rsa_keypair};
use neuronex_sim::{AuthMode, SimConfig};
use reqwest::Method;
use serde_json::json;

use crate::support::{request_count, sim_with};

fn basic(sim: &neuronex_sim::RunningSim, password: &str) -> EdgeTarget {
    EdgeTarget {
        endpoint: sim.endpoint(0).to_owned(),
        auth: EdgeAuth::Basic { username: "admin".into(), password: password.into() },
    }
}

#[tokio::test]
async fn basic_auth_logs_in_once_and_reuses_the_token() {
    let sim = sim_with(SimConfig { auth: AuthMode::Basic, ..SimConfig::default() }).await;
    let client = crate::support::client();
    let target = basic(&sim, "0000");
    for _ in 0..3 {
        assert_eq!(client.edge(&target).version().await.expect("version"), "3.6.0");
    }
    assert_eq!(request_count(&sim, 0, "POST /api/login").await, 1);
}

#[tokio::test]
async fn basic_auth_logs_in_again_after_a_401() {
    let sim = sim_with(SimConfig { auth: AuthMode::Basic, ..SimConfig::default() }).await;
    let client = crate::support::client();
    let target = basic(&sim, "0000");
    client.edge(&target).version().await.expect("first call");
    crate::support::control(&sim, Method::POST, "instances/0/expire-tokens", json!({})).await;
    client.edge(&target).version().await.expect("call after the token was expired");
    assert_eq!(request_count(&sim, 0, "POST /api/login").await, 2);
}

#[tokio::test]
async fn wrong_password_is_a_permanent_401() {
    let sim = sim_with(SimConfig { auth: AuthMode::Basic, ..SimConfig::default() }).await;
    let err = crate::support::client().edge(&basic(&sim, "wrong")).version().await.expect_err("must fail");
    assert_eq!(err.status, Some(401));
    assert_eq!(err.code, Some(1009));
    assert!(!err.is_transient());
    assert_eq!(err.step, "login");
}

#[tokio::test]
async fn calls_without_credentials_are_refused_when_auth_is_on() {
    let sim = sim_with(SimConfig { auth: AuthMode::Basic, ..SimConfig::default() }).await;
    let err = crate::support::client().edge(&crate::support::target(&sim, 0)).version().await.expect_err("must fail");
    assert_eq!((err.status, err.code), (Some(401), Some(1004)));
}

struct JwtSetup {
    sim: neuronex_sim::RunningSim,
    _keys: tempfile::TempDir,
    private_pem: String,
}

async fn jwt_sim() -> JwtSetup {
    let keys = tempfile::tempdir().expect("temp dir");
    let (private_pem, public_pem) = generate_rsa_keypair().expect("key pair");
    std::fs::write(keys.path().join("edgefleet.pub"), public_pem).expect("write public key");
    let sim =
        sim_with(SimConfig { auth: AuthMode::Jwt, jwt_key_dir: Some(keys.path().to_owned()), ..SimConfig::default() })
            .await;
    JwtSetup { sim, _keys: keys, private_pem }
}

fn jwt_client(key_name: &str, private_pem: &str) -> EdgeClient {
    let signer = JwtSigner::from_pem(key_name, private_pem.as_bytes()).expect("signer");
    EdgeClient::new(ClientConfig::default(), Some(signer))
}

#[tokio::test]
async fn jwt_signed_by_the_installed_key_is_accepted() {
    let setup = jwt_sim().await;
    let target = EdgeTarget { endpoint: setup.sim.endpoint(0).to_owned(), auth: EdgeAuth::Jwt };
    let client = jwt_client("edgefleet.pub", &setup.private_pem);
    assert_eq!(client.edge(&target).version().await.expect("version"), "3.6.0");
}

#[tokio::test]
async fn jwt_whose_issuer_has_no_key_file_is_refused() {
    let setup = jwt_sim().await;
    let target = EdgeTarget { endpoint: setup.sim.endpoint(0).to_owned(), auth: EdgeAuth::Jwt };
    let err = jwt_client("other.pub", &setup.private_pem).edge(&target).version().await.expect_err("must fail");
    assert_eq!(err.status, Some(401));
    assert!(err.message.contains("no public key for issuer other.pub"), "{err}");
}

#[tokio::test]
async fn jwt_signed_by_another_key_is_refused() {
    let setup = jwt_sim().await;
    let (other_private, _) = generate_rsa_keypair().expect("key pair");
    let target = EdgeTarget { endpoint: setup.sim.endpoint(0).to_owned(), auth: EdgeAuth::Jwt };
    let err = jwt_client("edgefleet.pub", &other_private).edge(&target).version().await.expect_err("must fail");
    assert_eq!(err.status, Some(401));
}

#[tokio::test]
async fn jwt_with_another_audience_is_refused() {
    let setup = jwt_sim().await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(setup.private_pem.as_bytes()).expect("key");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = json!({"iss": "edgefleet.pub", "aud": "eKuiper", "iat": now, "exp": now + 60});
    let token =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).expect("sign");
    let url = format!("{}/api/version", setup.sim.endpoint(0));
    let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("request");
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn jwt_issuer_cannot_escape_the_key_folder() {
    let setup = jwt_sim().await;
    let target = EdgeTarget { endpoint: setup.sim.endpoint(0).to_owned(), auth: EdgeAuth::Jwt };
    let err = jwt_client("../edgefleet.pub", &setup.private_pem).edge(&target).version().await.expect_err("must fail");
    assert_eq!(err.status, Some(401));
}

#[tokio::test]
async fn jwt_target_without_a_signer_is_refused_before_sending() {
    let setup = jwt_sim().await;
    let target = EdgeTarget { endpoint: setup.sim.endpoint(0).to_owned(), auth: EdgeAuth::Jwt };
    let err =
        EdgeClient::new(ClientConfig { request_timeout: Duration::from_secs(1), ..ClientConfig::default() }, None)
            .edge(&target)
            .version()
            .await
            .expect_err("must fail");
    assert!(matches!(err.failure, Failure::Refused { .. }));
    assert_eq!(request_count(&setup.sim, 0, "GET /api/version").await, 0);
}
