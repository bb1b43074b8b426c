//! The HTTP side: instance routing (`/i/<k>/...` or one port per instance), the `/__sim/` control
//! API, and a connection loop that can drop a connection without answering.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::reply::Reply;
use crate::{Faults, ManifestEntry, Sim, SimConfig};

const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long a "hanging" request waits before it is dropped; far beyond any client timeout.
const HANG: Duration = Duration::from_secs(600);

/// Marks a response that must not be sent: the connection is closed instead.
#[derive(Clone, Copy)]
struct DropConnection;

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}
impl std::error::Error for Dropped {}

/// A simulator serving on loopback; dropping it does not stop the servers (they live as long
/// as the runtime).
pub struct RunningSim {
    pub sim: Arc<Sim>,
    /// Where `/__sim/` and (without port-per-instance) `/i/<k>` are served.
    pub base_url: String,
    pub manifest: Vec<ManifestEntry>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSim {
    pub fn endpoint(&self, k: u32) -> &str {
        &self.manifest[k as usize].endpoint
    }

    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds and serves. With `port_per_instance`, instance `k` listens on `listen.port() + 1 + k`
/// (or an ephemeral port when `listen` has port 0) and is served at its root.
pub async fn start(config: SimConfig, listen: SocketAddr, port_per_instance: bool) -> anyhow::Result<RunningSim> {
    let sim = Arc::new(Sim::new(config));
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let base_url = format!("http://{local}");
    let mut tasks = vec![tokio::spawn(serve_loop(listener, Arc::clone(&sim), None))];
    let mut endpoints = Vec::new();
    for k in 0..sim.config().count {
        if port_per_instance {
            let port = if listen.port() == 0 { 0 } else { local.port() + 1 + k as u16 };
            let listener = TcpListener::bind(SocketAddr::new(local.ip(), port)).await?;
            endpoints.push(format!("http://{}", listener.local_addr()?));
            tasks.push(tokio::spawn(serve_loop(listener, Arc::clone(&sim), Some(k))));
        } else {
            endpoints.push(format!("{base_url}/i/{k}"));
        }
    }
    let manifest = endpoints
        .into_iter()
        .enumerate()
        .map(|(k, endpoint)| {
            let k = k as u32;
            ManifestEntry {
                index: k,
                name: format!("neuronex-{k:05}"),
                endpoint,
                version: sim.version_of(k).to_string(),
                tags: sim.tags_of(k),
            }
        })
        .collect();
    Ok(RunningSim { sim, base_url, manifest, tasks })
}

async fn serve_loop(listener: TcpListener, sim: Arc<Sim>, fixed: Option<u32>) {
    let router = axum::Router::new().fallback(move |request: Request<Body>| {
        let sim = Arc::clone(&sim);
        async move { dispatch(sim, fixed, request).await }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(Body::new)).await.unwrap_or_else(|never| match never {});
                    if response.extensions().get::<DropConnection>().is_some() {
                        return Err(Dropped);
                    }
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn dispatch(sim: Arc<Sim>, fixed: Option<u32>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return plain(413, "request body too large");
    };
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default()).unwrap_or_default();
    let path = parts.uri.path();
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    if let Some(control) = path.strip_prefix("/__sim") {
        return control_api(&sim, parts.method.as_str(), control, &body);
    }
    let (k, rest) = match fixed {
        Some(k) => (k, path.to_owned()),
        None => match instance_path(path) {
            Some((k, rest)) => (k, rest),
            None => return plain(404, "use /i/<instance>/api/... or /__sim/"),
        },
    };
    let _in_flight = sim.enter();
    let reply = sim.serve(k, parts.method.as_str(), &rest, &query, authorization, &body).await;
    into_response(reply).await
}

fn instance_path(path: &str) -> Option<(u32, String)> {
    let rest = path.strip_prefix("/i/")?;
    let (k, rest) = rest.split_once('/').unwrap_or((rest, ""));
    Some((k.parse().ok()?, format!("/{rest}")))
}

async fn into_response(reply: Reply) -> Response<Body> {
    match reply {
        Reply::Http { status, content_type, body } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Reply::Reset => dropped(),
        Reply::Hang => {
            tokio::time::sleep(HANG).await;
            dropped()
        }
    }
}

fn dropped() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}

fn plain(status: u16, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    let mut response = plain(status, &value.to_string());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `/__sim/`: test-only steering. Not part of NeuronEX.
fn control_api(sim: &Sim, method: &str, path: &str, body: &[u8]) -> Response<Body> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || json_response(404, &json!({"error": "no such instance or control path"}));
    let parse_faults =
        || serde_json::from_slice::<Faults>(body).map_err(|e| json_response(400, &json!({"error": e.to_string()})));
    match (method, segments.as_slice()) {
        ("GET", ["health"]) => json_response(
            200,
            &json!({"count": sim.config().count, "instances_in_use": sim.instances_in_use(), "peak_in_flight": sim.peak_in_flight()}),
        ),
        ("PUT", ["faults"]) => match parse_faults() {
            Ok(faults) => {
                sim.set_faults(None, Some(faults));
                json_response(200, &json!({"ok": true}))
            }
            Err(response) => response,
        },
        ("GET", ["instances", k]) => match k.parse().ok().and_then(|k| sim.snapshot(k)) {
            Some(snapshot) => json_response(200, &snapshot),
            None => not_found(),
        },
        ("GET", ["instances", k, "requests"]) => match k.parse().ok().and_then(|k| sim.snapshot(k)) {
            Some(snapshot) => json_response(200, &snapshot["requests"]),
            None => not_found(),
        },
        ("PUT", ["instances", k, "faults"]) => match (k.parse().ok(), parse_faults()) {
            (Some(k), Ok(faults)) if sim.set_faults(Some(k), Some(faults.clone())) => {
                json_response(200, &json!({"ok": true}))
            }
            (_, Err(response)) => response,
            _ => not_found(),
        },
        ("DELETE", ["instances", k, "faults"]) => match k.parse().ok() {
            Some(k) if sim.set_faults(Some(k), None) => json_response(200, &json!({"ok": true})),
            _ => not_found(),
        },
        ("POST", ["instances", k, "reset"]) => match k.parse().ok() {
            Some(k) if sim.reset_instance(k) => json_response(200, &json!({"ok": true})),
            _ => not_found(),
        },
        ("POST", ["instances", k, "restart"]) => match k.parse().ok() {
            Some(k) if sim.restart_instance(k) => json_response(200, &json!({"ok": true})),
            _ => not_found(),
        },
        ("PUT", ["instances", k, "ekuiper-config"]) => {
            match (k.parse().ok(), serde_json::from_slice::<crate::EkuiperConfig>(body)) {
                (Some(k), Ok(config)) if sim.set_ekuiper_config(k, &config) => json_response(200, &json!({"ok": true})),
                (_, Err(e)) => json_response(400, &json!({"error": e.to_string()})),
                _ => not_found(),
            }
        }
        ("POST", ["instances", k, "expire-tokens"]) => match k.parse().ok() {
            Some(k) if sim.expire_tokens(k) => json_response(200, &json!({"ok": true})),
            _ => not_found(),
        },
        _ => not_found(),
    }
}
