//! The REST API. Paths are the contract of docs/API.md; `P` = `/api/v1/projects/{project_id}`.
//!
//! Every route is declared once in `table()` with the access rule it enforces; the router is built
//! from that table, and the authorization test walks the same table, so a route cannot exist
//! without a rule that is tested.

mod agents;
mod audit;
mod auth;
mod console;
mod deliveries;
mod drift;
mod edges;
mod ops;
mod orgs;
mod plans;
mod plugins;
mod rollouts;
mod templates;
mod users;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use domain::audit::AuditAction;
use serde_json::Value;
use store::{AuditEntry, ProjectScope, User};

use crate::AppState;
use crate::access;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Anyone holding a valid signed link (edges downloading packages).
    SignedLink,
    /// Any signed-in user.
    User,
    SystemAdmin,
    /// System admins and organization admins (creating user accounts).
    UserAdmin,
    /// Any admin of anything (finding users to add as members; reading the audit of their scope).
    AnyAdmin,
    OrgView,
    OrgAdmin,
    ProjectView,
    ProjectAdmin,
    /// Admins of the project's organization (deleting a project).
    ProjectOrgAdmin,
}

/// What a route answers on success, by the name of its `api_types` schema (the OpenAPI document
/// links them; schemathesis checks answers against them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One object of this schema.
    One(&'static str),
    /// `{items, total}` of this schema.
    List(&'static str),
    /// No body (204).
    Empty,
    /// Something else: a file, a stream, a page, or JSON without a schema yet.
    Other,
}

/// What a route takes as its body, by the name of its `api_types` schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    NoBody,
    Json(&'static str),
    /// A JSON array of this schema (or CSV rows of the same fields).
    JsonList(&'static str),
    /// A multipart form (plugin uploads).
    Form,
}

/// One route: method, path (as axum spells it, under `/api/v1` unless it starts with `/edge` or
/// is an operations path), its access rule, what it takes and what it answers.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub body: Body,
    pub shape: Shape,
}

type Entry = (&'static str, &'static str, MethodRouter<AppState>, Access, Body, Shape);

/// A path under `P`, made at compile time (a path made at run time would have to be leaked to
/// live as long as the table, once per request of the OpenAPI document).
macro_rules! p {
    ($rest:literal) => {
        concat!("/api/v1/projects/{project_id}", $rest)
    };
}

/// The sign-in body is two short strings; anything bigger is refused before it is read.
const LOGIN_BODY_LIMIT: usize = 8 * 1024;

fn table() -> Vec<Entry> {
    use Access::*;
    use Body::*;
    use Shape::*;
    vec![
        ("GET", "/", get(console::index), Public, NoBody, Other),
        ("GET", "/assets/{name}", get(console::asset), Public, NoBody, Other),
        ("GET", "/healthz", get(ops::healthz), Public, NoBody, Other),
        ("GET", "/metrics", get(ops::metrics), Public, NoBody, Other),
        ("GET", "/api/v1/openapi.json", get(ops::openapi), Public, NoBody, Other),
        (
            "GET",
            "/edge/packages/{sha256}/{expires}/{signature}/{file}",
            get(plugins::edge_download),
            SignedLink,
            NoBody,
            Other,
        ),
        (
            "POST",
            "/api/v1/auth/login",
            post(auth::login).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
            Public,
            Json("Login"),
            Other,
        ),
        ("POST", "/api/v1/auth/logout", post(auth::logout), User, NoBody, Empty),
        ("GET", "/api/v1/me", get(auth::me), User, NoBody, One("User")),
        ("PATCH", "/api/v1/me", patch(auth::update_me), User, Json("UserPatchSelf"), One("User")),
        ("GET", "/api/v1/me/tokens", get(auth::list_tokens), User, NoBody, List("TokenInfo")),
        ("POST", "/api/v1/me/tokens", post(auth::create_token), User, Json("NewToken"), Other),
        ("DELETE", "/api/v1/me/tokens/{id}", delete(auth::revoke_token), User, NoBody, Empty),
        ("GET", "/api/v1/jwt/public-key", get(ops::jwt_public_key), User, NoBody, Other),
        ("GET", "/api/v1/agents/mosquitto-passwd", get(agents::mosquitto_passwd), SystemAdmin, NoBody, Other),
        ("GET", "/api/v1/orgs", get(orgs::list), User, NoBody, List("Org")),
        ("POST", "/api/v1/orgs", post(orgs::create), SystemAdmin, Json("NewName"), One("Org")),
        ("GET", "/api/v1/orgs/{id}", get(orgs::get_one), OrgView, NoBody, Other),
        ("PATCH", "/api/v1/orgs/{id}", patch(orgs::rename), OrgAdmin, Json("NewName"), One("Org")),
        ("DELETE", "/api/v1/orgs/{id}", delete(orgs::delete), SystemAdmin, NoBody, Empty),
        ("GET", "/api/v1/orgs/{id}/projects", get(orgs::list_projects), OrgView, NoBody, List("Project")),
        ("POST", "/api/v1/orgs/{id}/projects", post(orgs::create_project), OrgAdmin, Json("NewName"), One("Project")),
        ("GET", "/api/v1/orgs/{id}/members", get(orgs::list_members), OrgView, NoBody, List("Member")),
        ("PUT", "/api/v1/orgs/{id}/members/{user_id}", put(orgs::set_member), OrgAdmin, Json("Membership"), Other),
        ("DELETE", "/api/v1/orgs/{id}/members/{user_id}", delete(orgs::remove_member), OrgAdmin, NoBody, Empty),
        ("GET", "/api/v1/projects/{project_id}", get(orgs::get_project), ProjectView, NoBody, Other),
        (
            "PATCH",
            "/api/v1/projects/{project_id}",
            patch(orgs::update_project),
            ProjectAdmin,
            Json("ProjectPatch"),
            Other,
        ),
        ("DELETE", "/api/v1/projects/{project_id}", delete(orgs::delete_project), ProjectOrgAdmin, NoBody, Empty),
        ("GET", p!("/members"), get(orgs::list_project_members), ProjectView, NoBody, List("Member")),
        ("PUT", p!("/members/{user_id}"), put(orgs::set_project_member), ProjectAdmin, Json("Membership"), Other),
        ("DELETE", p!("/members/{user_id}"), delete(orgs::remove_project_member), ProjectAdmin, NoBody, Empty),
        ("GET", "/api/v1/users", get(users::list), AnyAdmin, NoBody, List("User")),
        ("POST", "/api/v1/users", post(users::create), UserAdmin, Json("NewUser"), One("User")),
        ("PATCH", "/api/v1/users/{id}", patch(users::update), SystemAdmin, Json("UserPatch"), One("User")),
        ("DELETE", "/api/v1/users/{id}", delete(users::delete), SystemAdmin, NoBody, Empty),
        ("GET", p!("/jwt/public-key"), get(ops::project_jwt_public_key), ProjectView, NoBody, Other),
        ("POST", p!("/jwt/rotate"), post(ops::rotate_project_jwt_key), ProjectAdmin, NoBody, Other),
        ("GET", p!("/edge-services"), get(edges::list), ProjectView, NoBody, List("EdgeService")),
        ("POST", p!("/edge-services"), post(edges::create), ProjectAdmin, Json("EdgeInput"), One("EdgeService")),
        (
            "POST",
            p!("/edge-services/import"),
            post(edges::import),
            ProjectAdmin,
            JsonList("EdgeInput"),
            List("EdgeService"),
        ),
        ("GET", p!("/edge-services/{id}"), get(edges::get_one), ProjectView, NoBody, One("EdgeService")),
        ("PATCH", p!("/edge-services/{id}"), patch(edges::update), ProjectAdmin, Json("EdgePatch"), One("EdgeService")),
        ("DELETE", p!("/edge-services/{id}"), delete(edges::delete), ProjectAdmin, NoBody, Empty),
        ("POST", p!("/edge-services/{id}/probe"), post(edges::probe), ProjectAdmin, NoBody, One("EdgeService")),
        (
            "POST",
            p!("/edge-services/{id}/agent-credentials"),
            post(agents::issue_credentials),
            ProjectAdmin,
            NoBody,
            One("AgentCredentials"),
        ),
        ("GET", p!("/agents/command-key"), get(agents::command_key), ProjectView, NoBody, One("CommandKey")),
        ("GET", p!("/edge-services/{id}/drift"), get(drift::report), ProjectView, NoBody, One("DriftReport")),
        ("POST", p!("/edge-services/{id}/check"), post(drift::check), ProjectAdmin, NoBody, One("DriftReport")),
        (
            "POST",
            p!("/edge-services/{id}/reapply"),
            post(drift::reapply),
            ProjectAdmin,
            Json("ReapplyRequest"),
            One("Reapplied"),
        ),
        ("GET", p!("/inventory"), get(drift::inventory), ProjectView, NoBody, List("InventoryItem")),
        ("GET", p!("/templates"), get(templates::list), ProjectView, NoBody, List("TemplateSummary")),
        ("POST", p!("/templates"), post(templates::create), ProjectAdmin, Json("NewTemplate"), One("Template")),
        (
            "POST",
            p!("/templates/from-edge"),
            post(drift::from_edge),
            ProjectAdmin,
            Json("TemplateFromEdge"),
            One("Template"),
        ),
        ("GET", p!("/templates/{id}"), get(templates::get_one), ProjectView, NoBody, One("Template")),
        ("PUT", p!("/templates/{id}"), put(templates::update), ProjectAdmin, Json("TemplateEdit"), One("Template")),
        ("DELETE", p!("/templates/{id}"), delete(templates::delete), ProjectAdmin, NoBody, Empty),
        ("GET", p!("/templates/{id}/versions"), get(templates::versions), ProjectView, NoBody, Other),
        ("GET", p!("/templates/{id}/versions/{version}"), get(templates::version), ProjectView, NoBody, Other),
        ("GET", p!("/templates/{id}/export"), get(templates::export), ProjectView, NoBody, Other),
        ("POST", p!("/templates/{id}/preview"), post(templates::preview), ProjectView, Json("PreviewRequest"), Other),
        ("GET", p!("/plugins"), get(plugins::list), ProjectView, NoBody, List("Plugin")),
        (
            "POST",
            p!("/plugins"),
            post(plugins::create).layer(DefaultBodyLimit::disable()),
            ProjectAdmin,
            Form,
            One("Plugin"),
        ),
        ("GET", p!("/plugins/{id}"), get(plugins::get_one), ProjectView, NoBody, One("Plugin")),
        ("DELETE", p!("/plugins/{id}"), delete(plugins::delete), ProjectAdmin, NoBody, Empty),
        ("GET", p!("/plugins/{id}/package"), get(plugins::package), ProjectView, NoBody, Other),
        ("GET", p!("/deliveries"), get(deliveries::list), ProjectView, NoBody, List("Delivery")),
        ("POST", p!("/deliveries"), post(deliveries::create), ProjectAdmin, Json("NewDelivery"), One("Delivery")),
        ("GET", p!("/deliveries/{id}"), get(deliveries::get_one), ProjectView, NoBody, One("Delivery")),
        ("GET", p!("/deliveries/{id}/targets"), get(deliveries::targets), ProjectView, NoBody, List("DeliveryTarget")),
        (
            "GET",
            p!("/deliveries/{id}/targets/{edge_id}"),
            get(plans::target),
            ProjectView,
            NoBody,
            One("DeliveryTargetDetail"),
        ),
        ("GET", p!("/deliveries/{id}/plan"), get(plans::plan), ProjectView, NoBody, One("PlanView")),
        (
            "POST",
            p!("/deliveries/{id}/apply"),
            post(plans::apply_plan),
            ProjectAdmin,
            Json("ApplyPlan"),
            One("Delivery"),
        ),
        (
            "POST",
            p!("/deliveries/{id}/rollback"),
            post(plans::rollback),
            ProjectAdmin,
            Json("RollbackRequest"),
            One("Delivery"),
        ),
        ("GET", p!("/deliveries/{id}/events"), get(deliveries::events), ProjectView, NoBody, Other),
        ("POST", p!("/deliveries/{id}/cancel"), post(deliveries::cancel), ProjectAdmin, NoBody, One("Delivery")),
        ("POST", p!("/deliveries/{id}/retry"), post(deliveries::retry), ProjectAdmin, NoBody, One("Delivery")),
        ("POST", p!("/deliveries/{id}/approve"), post(rollouts::approve), ProjectAdmin, NoBody, One("Delivery")),
        ("POST", p!("/deliveries/{id}/pause"), post(rollouts::pause), ProjectAdmin, NoBody, One("Delivery")),
        ("POST", p!("/deliveries/{id}/resume"), post(rollouts::resume), ProjectAdmin, NoBody, One("Delivery")),
        ("POST", p!("/deliveries/{id}/abort"), post(rollouts::abort), ProjectAdmin, NoBody, One("Delivery")),
        (
            "GET",
            p!("/maintenance-windows"),
            get(rollouts::list_windows),
            ProjectView,
            NoBody,
            List("MaintenanceWindow"),
        ),
        (
            "POST",
            p!("/maintenance-windows"),
            post(rollouts::create_window),
            ProjectAdmin,
            Json("NewMaintenanceWindow"),
            One("MaintenanceWindow"),
        ),
        ("DELETE", p!("/maintenance-windows/{id}"), delete(rollouts::delete_window), ProjectAdmin, NoBody, Empty),
        ("GET", p!("/webhooks"), get(webhooks::list), ProjectAdmin, NoBody, List("Webhook")),
        ("POST", p!("/webhooks"), post(webhooks::create), ProjectAdmin, Json("NewWebhook"), One("Webhook")),
        ("DELETE", p!("/webhooks/{id}"), delete(webhooks::delete), ProjectAdmin, NoBody, Empty),
        ("POST", p!("/webhooks/{id}/test"), post(webhooks::test), ProjectAdmin, NoBody, One("WebhookCall")),
        ("GET", p!("/webhooks/{id}/deliveries"), get(webhooks::calls), ProjectAdmin, NoBody, List("WebhookCall")),
        ("GET", "/api/v1/audit", get(audit::list), AnyAdmin, NoBody, List("AuditEvent")),
    ]
}

/// Every route with its access rule.
pub fn catalog() -> Vec<RouteSpec> {
    table()
        .into_iter()
        .map(|(method, path, _, access, body, shape)| RouteSpec { method, path, access, body, shape })
        .collect()
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let mut router = Router::new();
    for (_, path, handler, rule, _, _) in table() {
        let guarded = handler.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            move |axum::extract::State(state): axum::extract::State<AppState>,
                  request: axum::extract::Request,
                  next: axum::middleware::Next| { access::guard(state, rule, request, next) },
        ));
        router = router.route(path, guarded);
    }
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_request))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// `edgefleet_http_requests_total` and `_duration_seconds`, by the route's template (never the
/// path itself: ids would make a series per resource); paths no route matches count as one.
async fn count_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| crate::metrics::label_value(path.as_str()));
    let method = crate::metrics::label_value(request.method().as_str());
    let began = std::time::Instant::now();
    let response = next.run(request).await;
    let labels = format!("method=\"{method}\",route=\"{route}\"");
    state.metrics.http_request_seconds.observe(labels.clone(), began.elapsed());
    state.metrics.http_requests.inc(format!("{labels},status=\"{}\"", response.status().as_u16()));
    response
}

pub fn audit_entry(
    user: &User,
    scope: Option<&ProjectScope>,
    action: AuditAction,
    resource_type: &str,
    resource_name: &str,
    details: Value,
) -> AuditEntry {
    AuditEntry {
        actor_id: user.id.clone(),
        actor_name: user.username.clone(),
        org_id: scope.map(|s| s.org_id.clone()).unwrap_or_default(),
        org_name: scope.map(|s| s.org_name.clone()).unwrap_or_default(),
        project_id: scope.map(|s| s.project_id.clone()).unwrap_or_default(),
        project_name: scope.map(|s| s.project_name.clone()).unwrap_or_default(),
        action,
        resource_type: resource_type.to_owned(),
        resource_id: String::new(),
        resource_name: resource_name.to_owned(),
        outcome: domain::access::Outcome::Success,
        details,
    }
}

pub fn created<T: serde::Serialize>(body: T) -> (StatusCode, axum::Json<T>) {
    (StatusCode::CREATED, axum::Json(body))
}
