use std::sync::Arc;

use edge_client::{EdgeAuth, EdgeTarget, JwtGrant, JwtSigner, generate_rsa_keypair};
use neuronex_sim::{AuthMode, SimConfig};
use reqwest::Method;
use serde_json::json;

use crate::support::{client, request_count, sim_with};

fn basic(sim: &neuronex_sim::RunningSim, password: &str) -> EdgeTarget {
    EdgeTarget::http(
        sim.endpoint(0).to_owned(),
        EdgeAuth::Basic { username: "admin".into(), password: password.into() },
    )
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

/// A target whose tokens are signed by `private_pem` under `key_name`, for edge `gw-1`.
fn jwt_target(setup: &JwtSetup, key_name: &str, private_pem: &str) -> EdgeTarget {
    let signer = Arc::new(JwtSigner::from_pem(key_name, private_pem.as_bytes()).expect("signer"));
    EdgeTarget::http(setup.sim.endpoint(0).to_owned(), EdgeAuth::Jwt(JwtGrant::new(signer, "gw-1", "delivery:d1")))
}

#[tokio::test]
async fn jwt_signed_by_the_installed_key_is_accepted() {
    let setup = jwt_sim().await;
    let target = jwt_target(&setup, "edgefleet.pub", &setup.private_pem);
    assert_eq!(client().edge(&target).version().await.expect("version"), "3.6.0");
}

#[tokio::test]
async fn jwt_tokens_name_the_edge_and_the_work_and_live_five_minutes_at_most() {
    let setup = jwt_sim().await;
    let signer = Arc::new(JwtSigner::from_pem("edgefleet.pub", setup.private_pem.as_bytes()).expect("signer"));
    let grant = JwtGrant::new(signer, "gw-1", "delivery:d1");
    let token = grant.token().expect("token");
    assert_eq!(grant.token().expect("again"), token, "reused while fresh");
    let payload = token.split('.').nth(1).expect("payload");
    use base64::Engine as _;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64"))
            .expect("claims");
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str(), claims["sub"].as_str()),
        (Some("edgefleet.pub"), Some("neuronex"), Some("gw-1"))
    );
    assert!(claims["jti"].as_str().expect("jti").starts_with("delivery:d1:"));
    let life = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert!(life <= 300, "lives {life} s");
}

#[tokio::test]
async fn jwt_whose_issuer_has_no_key_file_is_refused() {
    let setup = jwt_sim().await;
    let err =
        client().edge(&jwt_target(&setup, "other.pub", &setup.private_pem)).version().await.expect_err("must fail");
    assert_eq!(err.status, Some(401));
    assert!(err.message.contains("no public key for issuer other.pub"), "{err}");
}

#[tokio::test]
async fn jwt_signed_by_another_key_is_refused() {
    let setup = jwt_sim().await;
    let (other_private, _) = generate_rsa_keypair().expect("key pair");
    let err =
        client().edge(&jwt_target(&setup, "edgefleet.pub", &other_private)).version().await.expect_err("must fail");
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
    let target = jwt_target(&setup, "../edgefleet.pub", &setup.private_pem);
    let err = client().edge(&target).version().await.expect_err("must fail");
    assert_eq!(err.status, Some(401));
}
