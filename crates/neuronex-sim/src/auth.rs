//! NeuronEX authentication: `POST /api/login` tokens, and RS256 JWTs whose `iss` names a public-key
//! file in the key folder and whose `aud` is `neuronex`.

use std::time::Instant;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng;
use serde_json::{Value, json};

use crate::reply::Reply;
use crate::{Instance, Request, Sim};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every call is allowed.
    None,
    /// Calls need a token from `POST /api/login`.
    Basic,
    /// Calls need a login token or an RS256 JWT signed by a key in the key folder.
    Jwt,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "none" => Ok(AuthMode::None),
            "basic" => Ok(AuthMode::Basic),
            "jwt" => Ok(AuthMode::Jwt),
            other => Err(format!("unknown auth mode `{other}`: use none, basic or jwt")),
        }
    }
}

/// Answers the login call itself, or refuses a call that lacks valid credentials; `None` lets
/// the request through.
pub fn check(sim: &Sim, inst: &mut Instance, req: &Request<'_>, authorization: Option<&str>) -> Option<Reply> {
    if req.path == "/api/login" && req.method == "POST" {
        return Some(login(sim, inst, req.body));
    }
    if sim.config.auth == AuthMode::None {
        return None;
    }
    let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
        return Some(unauthorized(1004, "missing token"));
    };
    if let Some(expiry) = inst.tokens.get(token) {
        if *expiry > Instant::now() {
            return None;
        }
        inst.tokens.remove(token);
        return Some(unauthorized(1006, "token expired"));
    }
    if sim.config.auth == AuthMode::Jwt {
        return match verify_jwt(sim, token) {
            Ok(()) => None,
            Err(reason) => Some(unauthorized(1005, &reason)),
        };
    }
    Some(unauthorized(1005, "invalid token"))
}

fn login(sim: &Sim, inst: &mut Instance, body: &[u8]) -> Reply {
    let Ok(credentials) = serde_json::from_slice::<Value>(body) else {
        return Reply::json(400, &json!({"error": 1002, "message": "invalid request body"}));
    };
    let name = credentials.get("name").and_then(Value::as_str);
    let password = credentials.get("password").and_then(Value::as_str);
    if name != Some(sim.config.username.as_str()) || password != Some(sim.config.password.as_str()) {
        return unauthorized(1009, "invalid username or password");
    }
    let token: String = (0..32).map(|_| format!("{:x}", inst.rng.gen_range(0..16u8))).collect();
    inst.tokens.insert(token.clone(), Instant::now() + sim.config.token_ttl);
    Reply::json(200, &json!({"token": token, "role": "Administrator"}))
}

fn unauthorized(code: u32, message: &str) -> Reply {
    Reply::json(401, &json!({"error": code, "message": message}))
}

fn verify_jwt(sim: &Sim, token: &str) -> Result<(), String> {
    let payload = token.split('.').nth(1).ok_or("malformed token")?;
    let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("malformed token")?;
    let issuer = claims.get("iss").and_then(Value::as_str).ok_or("token has no iss")?;
    // The issuer names a file in the key folder; anything that could leave the folder is refused.
    if issuer.is_empty() || issuer.contains(['/', '\\']) || issuer.starts_with('.') {
        return Err(format!("no public key for issuer {issuer}"));
    }
    let dir = sim.config.jwt_key_dir.as_ref().ok_or("no key folder configured")?;
    let pem = std::fs::read(dir.join(issuer)).map_err(|_| format!("no public key for issuer {issuer}"))?;
    let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| format!("bad public key {issuer}: {e}"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["neuronex"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|_| ()).map_err(|e| e.to_string())
}
