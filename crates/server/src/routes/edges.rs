//! The edge-service registry: create, import (JSON or CSV), list with filters, edit, delete, probe.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use domain::edge::{AuthKind, Reach, Transport};
use domain::endpoint::normalize_endpoint;
use domain::filter::EdgeFilter;
use domain::import::{self, AuthInput, EdgeInput};
use serde_json::{Value, json};
use store::{EdgeAuthRow, EdgeService, NewEdge, ProbeTarget};

use crate::AppState;
use crate::engine::probe;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CurrentUser, Project, Query, parse_json};
use crate::network::check_endpoint;
use crate::routes::{audit_entry, created};
use crate::views;

use domain::import::MAX_IMPORT_ROWS;

use api_types::EdgePatch;

/// A field-level problem: which field and why (and which row, for imports).
fn field_error(field: &str, message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidEdgeService, format!("{field}: {message}")).with_details(json!({"field": field}))
}

/// Checks the auth input; `keep` is the stored auth when editing (a missing password keeps it).
fn checked_auth(
    state: &AppState,
    input: Option<&AuthInput>,
    keep: Option<&EdgeAuthRow>,
) -> Result<EdgeAuthRow, (String, String)> {
    let Some(input) = input else {
        return Ok(keep.cloned().unwrap_or_default());
    };
    let kind: AuthKind = input.kind.parse().map_err(|e| ("auth.kind".to_owned(), e))?;
    match kind {
        AuthKind::None | AuthKind::Jwt => Ok(EdgeAuthRow { kind, ..EdgeAuthRow::default() }),
        AuthKind::Basic => {
            let username = input.username.clone().unwrap_or_default();
            if username.trim().is_empty() {
                return Err(("auth.username".into(), "basic auth needs the NeuronEX username".into()));
            }
            let secret = match (&input.password, keep) {
                (Some(password), _) if !password.is_empty() => state.secrets.seal(password),
                (_, Some(kept)) if kept.kind == AuthKind::Basic && !kept.secret.is_empty() => kept.secret.clone(),
                _ => return Err(("auth.password".into(), "basic auth needs the NeuronEX password".into())),
            };
            Ok(EdgeAuthRow { kind, username, secret })
        }
    }
}

fn new_edge(state: &AppState, input: &EdgeInput) -> Result<NewEdge, (String, String)> {
    let checked = import::check_edge(input).map_err(|(field, message)| (field.to_owned(), message))?;
    let auth = checked_auth(state, input.auth.as_ref(), None)?;
    Ok(NewEdge {
        name: checked.name,
        endpoint: checked.endpoint,
        description: checked.description,
        tags: checked.tags,
        auth,
        reach: checked.reach,
    })
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    ApiJson(input): ApiJson<EdgeInput>,
) -> ApiResult<impl IntoResponse> {
    let edge = new_edge(&state, &input).map_err(|(field, message)| field_error(&field, message))?;
    // An agent's endpoint is where the agent finds NeuronEX; the server never connects to it.
    if edge.reach == Reach::Http {
        check_endpoint(state.engine.client().policy(), &edge.endpoint).await?;
    }
    let entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::EdgeServiceCreate,
        "edge_service",
        &edge.name,
        json!({"endpoint": edge.endpoint}),
    );
    let created_edges = state.store.insert_edges(&project_id, std::slice::from_ref(&edge), &entry).await?;
    probe_in_background(&state, &created_edges);
    let first = created_edges.into_iter().next().ok_or_else(|| ApiError::internal("insert returned nothing"))?;
    Ok(created(views::edge(&first)))
}

/// Newly registered gateways get their version and status without waiting for the next round;
/// an unreachable one is still registered and shows offline with the reason.
fn probe_in_background(state: &AppState, edges: &[EdgeService]) {
    if !state.config.worker {
        // API-only replicas leave probes to the workers' next round.
        return;
    }
    let targets: Vec<ProbeTarget> = edges
        .iter()
        .map(|e| ProbeTarget {
            id: e.id.clone(),
            project_id: e.project_id.clone(),
            endpoint: e.endpoint.clone(),
            auth: e.auth.clone(),
            reach: e.reach.clone(),
        })
        .collect();
    let state = state.clone();
    tokio::spawn(async move {
        for page in targets.chunks(500) {
            if let Err(err) = probe::probe_page(&state, page.to_vec()).await {
                tracing::warn!(error = %err, "cannot record probes of new edge services");
            }
        }
        probe::tidy(&state).await;
    });
}

pub async fn import(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let inputs: Vec<EdgeInput> = if content_type.starts_with("text/csv") {
        import::parse_csv(&body).map_err(|m| ApiError::new(ErrorCode::MalformedCsv, m))?
    } else {
        parse_json(&body)?
    };
    // A 100,000-row import holds a lot at once; what is no longer needed goes as soon as it can.
    drop(body);
    if inputs.is_empty() {
        return Err(ApiError::new(ErrorCode::EmptyImport, "the import holds no edge services"));
    }
    if inputs.len() > MAX_IMPORT_ROWS {
        return Err(ApiError::new(
            ErrorCode::ImportTooLarge,
            format!("{} rows; one import takes at most {MAX_IMPORT_ROWS}", inputs.len()),
        ));
    }
    let mut edges = Vec::with_capacity(inputs.len());
    let mut edge_rows = Vec::with_capacity(inputs.len());
    let mut problems = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut seen_agents = std::collections::HashMap::new();
    for (index, input) in inputs.iter().enumerate() {
        let row = index + 1;
        match new_edge(&state, input) {
            Ok(edge) => {
                if let Some(first) = seen.insert(edge.name.clone(), row) {
                    problems.push(json!({"row": row, "field": "name", "message": format!("`{}` is also in row {first}", edge.name)}));
                }
                if let Some(agent_id) = edge.reach.agent_id()
                    && let Some(first) = seen_agents.insert(agent_id.to_owned(), row)
                {
                    problems.push(json!({"row": row, "field": "agent_id", "message": format!("agent id `{agent_id}` is also in row {first}")}));
                }
                edges.push(edge);
                edge_rows.push(row);
            }
            Err((field, message)) => problems.push(json!({"row": row, "field": field, "message": message})),
        }
    }
    drop(inputs);
    problems.extend(network_problems(&state, &edges, &edge_rows).await);
    problems.extend(taken_names(&state, &project_id, &edges, &edge_rows).await?);
    problems.sort_by_key(|p| p["row"].as_u64());
    if !problems.is_empty() {
        let first = &problems[0];
        let message = format!(
            "row {} {}: {} ({} in all; nothing was imported)",
            first["row"],
            first["field"].as_str().unwrap_or_default(),
            first["message"].as_str().unwrap_or_default(),
            if problems.len() == 1 { "1 problem".to_owned() } else { format!("{} problems", problems.len()) }
        );
        // Clashes alone keep the answer a single create gives (409), with every clash listed.
        let taken = ErrorCode::EdgeServiceNameTaken.as_str();
        let code = if problems.iter().all(|p| p["code"] == taken) {
            ErrorCode::EdgeServiceNameTaken
        } else {
            ErrorCode::InvalidImport
        };
        return Err(ApiError::new(code, message).with_details(json!({"problems": problems})));
    }
    let entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::EdgeServiceImport,
        "edge_service",
        "",
        json!({"rows": edges.len()}),
    );
    // The import runs to its end (or its undoing) even if the client goes away: a half-done
    // chunked import would otherwise stay visible until the sweep finds it abandoned.
    let importing = {
        let store = state.store.clone();
        tokio::spawn(async move { store.import_edges(&project_id, &edges, &entry).await })
    };
    let created_edges = importing.await.map_err(|e| ApiError::internal(format!("the import stopped: {e}")))??;
    probe_in_background(&state, &created_edges);
    // Serialized a piece at a time as the client reads it: see `views::streamed_list`.
    let body = axum::body::Body::from_stream(views::streamed_list(created_edges, views::edge));
    Ok((StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], body))
}

/// Rows whose name a service of the project already has (found before anything is stored, so every
/// clash is reported at once).
async fn taken_names(
    state: &AppState,
    project_id: &str,
    edges: &[NewEdge],
    rows: &[usize],
) -> Result<Vec<Value>, ApiError> {
    let names: Vec<String> = edges.iter().map(|e| e.name.clone()).collect();
    let taken: std::collections::HashSet<String> =
        state.store.taken_edge_names(project_id, &names).await?.into_iter().collect();
    Ok(edges
        .iter()
        .zip(rows)
        .filter(|(edge, _)| taken.contains(&edge.name))
        .map(|(edge, row)| {
            json!({"row": row, "field": "name", "code": ErrorCode::EdgeServiceNameTaken.as_str(),
                   "message": format!("a service named `{}` is already registered in this project", edge.name)})
        })
        .collect())
}

/// Rows whose endpoint the network policy refuses. Each distinct host is resolved once, a few at
/// a time, so an import of many gateways behind one name costs one lookup.
async fn network_problems(state: &AppState, edges: &[NewEdge], rows: &[usize]) -> Vec<Value> {
    use futures::StreamExt;
    let mut endpoints: Vec<String> =
        edges.iter().filter(|e| e.reach == Reach::Http).map(|e| e.endpoint.clone()).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let checks = endpoints.into_iter().map(|endpoint| refusal(state, endpoint));
    let refused: std::collections::HashMap<String, String> =
        futures::stream::iter(checks).buffer_unordered(32).filter_map(std::future::ready).collect().await;
    if refused.is_empty() {
        return Vec::new();
    }
    edges
        .iter()
        .zip(rows)
        .filter(|(edge, _)| edge.reach == Reach::Http)
        .filter_map(|(edge, row)| {
            let message = refused.get(&edge.endpoint)?;
            let message = message.strip_prefix("endpoint: ").unwrap_or(message);
            Some(json!({"row": row, "field": "endpoint", "code": "edge_network_denied", "message": message}))
        })
        .collect()
}

/// The policy's refusal of one endpoint, as (endpoint, message).
async fn refusal(state: &AppState, endpoint: String) -> Option<(String, String)> {
    let refused = check_endpoint(state.engine.client().policy(), &endpoint).await.err()?;
    Some((endpoint, refused.message))
}

pub fn filter_from(query: &Query) -> Result<EdgeFilter, ApiError> {
    let filter = EdgeFilter {
        q: query.one("q"),
        name: query.one("name"),
        endpoint: query.one("endpoint"),
        version: query.one("version"),
        tag: query.all("tag"),
        status: query.one("status"),
        config_state: query
            .one("config_state")
            .filter(|text| !text.trim().is_empty())
            .map(|text| text.parse())
            .transpose()
            .map_err(|m: String| ApiError::new(ErrorCode::BadQuery, format!("config_state: {m}")))?,
    }
    .cleaned();
    filter.check().map_err(|m| ApiError::new(ErrorCode::BadQuery, m))?;
    Ok(filter)
}

pub async fn list(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    query: Query,
) -> ApiResult<Json<api_types::List<api_types::EdgeService>>> {
    let query =
        query.only(&["q", "name", "endpoint", "version", "tag", "status", "config_state", "limit", "offset"])?;
    let filter = filter_from(query)?;
    let page = query.page()?;
    let (items, count) = state.store.list_edges(&project_id, &filter, page.limit, page.offset).await?;
    let list = api_types::List { total_estimated: count.estimated, ..views::list(&items, count.n, views::edge) };
    Ok(Json(list))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(views::edge(&state.store.get_edge(&project_id, &id).await?))))
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<EdgePatch>,
) -> ApiResult<Json<Value>> {
    let mut edge = state.store.get_edge(&project_id, &id).await?;
    if let Some(name) = &patch.name {
        edge.name = import::checked_name(name).map_err(|m| field_error("name", m))?;
    }
    if patch.transport.is_some() || patch.agent_id.is_some() {
        edge.reach = patched_reach(&edge, &patch).map_err(|m| field_error("agent_id", m))?;
        if edge.reach != Reach::Http && edge.auth.kind != AuthKind::None {
            // The agent signs in with its own NeuronEX credentials; the stored ones would go unused.
            edge.auth = EdgeAuthRow::default();
        }
    }
    if let Some(endpoint) = &patch.endpoint {
        let endpoint = normalize_endpoint(endpoint).map_err(|m| field_error("endpoint", m))?;
        if edge.reach == Reach::Http {
            check_endpoint(state.engine.client().policy(), &endpoint).await?;
        }
        // A stored password goes only where it was given for: moving the endpoint needs it again,
        // or anyone with the admin role could send it to a server of their own and read it.
        let password_given = patch.auth.as_ref().is_some_and(|a| a.password.as_deref().is_some_and(|p| !p.is_empty()));
        if endpoint != edge.endpoint && edge.auth.kind == AuthKind::Basic && !password_given {
            return Err(ApiError::new(
                ErrorCode::SecretRequired,
                "auth.password: give the NeuronEX password again when changing the endpoint",
            )
            .with_details(json!({"field": "auth.password"})));
        }
        edge.endpoint = endpoint;
    }
    if let Some(description) = &patch.description {
        edge.description = import::checked_description(description).map_err(|m| field_error("description", m))?;
    }
    if let Some(tags) = &patch.tags {
        edge.tags = import::checked_tags(tags).map_err(|m| field_error("tags", m))?;
    }
    if patch.auth.is_some() {
        edge.auth = checked_auth(&state, patch.auth.as_ref(), Some(&edge.auth)).map_err(|(f, m)| field_error(&f, m))?;
        if edge.reach != Reach::Http && edge.auth.kind != AuthKind::None {
            let why =
                "an agent-mode service signs in to NeuronEX with the agent's own credentials (edgefleet agent --auth)";
            return Err(field_error("auth", why.to_owned()));
        }
    }
    let changed: Vec<&str> = [
        ("name", patch.name.is_some()),
        ("endpoint", patch.endpoint.is_some()),
        ("description", patch.description.is_some()),
        ("tags", patch.tags.is_some()),
        ("auth", patch.auth.is_some()),
        ("transport", patch.transport.is_some()),
        ("agent_id", patch.agent_id.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    let mut entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::EdgeServiceUpdate,
        "edge_service",
        &edge.name,
        json!({"changed": changed}),
    );
    entry.resource_id = edge.id.clone();
    let updated = state.store.update_edge(&edge, &entry).await?;
    Ok(Json(json!(views::edge(&updated))))
}

/// The service's transport after a patch: `transport` and `agent_id` as given, the rest kept.
fn patched_reach(edge: &EdgeService, patch: &EdgePatch) -> Result<Reach, String> {
    let transport = patch.transport.unwrap_or(edge.reach.transport());
    let agent_id = match (transport, &patch.agent_id) {
        (Transport::Http, _) => None,
        (Transport::Agent, Some(given)) => Some(given.clone()),
        (Transport::Agent, None) => edge.reach.agent_id().map(str::to_owned),
    };
    Reach::from_parts(transport, agent_id)
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let edge = state.store.get_edge(&project_id, &id).await?;
    let mut entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::EdgeServiceDelete,
        "edge_service",
        &edge.name,
        json!({"endpoint": edge.endpoint}),
    );
    entry.resource_id = edge.id.clone();
    state.store.delete_edge(&project_id, &id, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn probe(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let edge = state.store.get_edge(&project_id, &id).await?;
    let target = ProbeTarget {
        id: edge.id.clone(),
        project_id: edge.project_id.clone(),
        endpoint: edge.endpoint.clone(),
        auth: edge.auth.clone(),
        reach: edge.reach.clone(),
    };
    probe::probe_and_record(&state, &target).await?;
    Ok(Json(json!(views::edge(&state.store.get_edge(&project_id, &id).await?))))
}
