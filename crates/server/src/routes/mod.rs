//! The REST API. Paths are the contract of docs/API.md; `P` = `/api/v1/projects/{project_id}`.
//!
//! Every route is declared once in `table()` with the access rule it enforces; the router is built
//! from that table, and the authorization test walks the same table, so a route cannot exist
//! without a rule that is tested.

mod audit;
mod auth;
mod console;
mod deliveries;
mod edges;
mod ops;
mod orgs;
mod plugins;
mod templates;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
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

/// One route: method, path (as axum spells it, under `/api/v1` unless it starts with `/edge` or
/// is an operations path) and its access rule.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

type Entry = (&'static str, &'static str, MethodRouter<AppState>, Access);

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
    vec![
        ("GET", "/", get(console::index), Public),
        ("GET", "/assets/{name}", get(console::asset), Public),
        ("GET", "/healthz", get(ops::healthz), Public),
        ("GET", "/metrics", get(ops::metrics), Public),
        ("GET", "/api/v1/openapi.json", get(ops::openapi), Public),
        ("GET", "/edge/packages/{sha256}/{expires}/{signature}/{file}", get(plugins::edge_download), SignedLink),
        ("POST", "/api/v1/auth/login", post(auth::login).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)), Public),
        ("POST", "/api/v1/auth/logout", post(auth::logout), User),
        ("GET", "/api/v1/me", get(auth::me), User),
        ("PATCH", "/api/v1/me", patch(auth::update_me), User),
        ("GET", "/api/v1/me/tokens", get(auth::list_tokens), User),
        ("POST", "/api/v1/me/tokens", post(auth::create_token), User),
        ("DELETE", "/api/v1/me/tokens/{id}", delete(auth::revoke_token), User),
        ("GET", "/api/v1/jwt/public-key", get(ops::jwt_public_key), User),
        ("GET", "/api/v1/orgs", get(orgs::list), User),
        ("POST", "/api/v1/orgs", post(orgs::create), SystemAdmin),
        ("GET", "/api/v1/orgs/{id}", get(orgs::get_one), OrgView),
        ("PATCH", "/api/v1/orgs/{id}", patch(orgs::rename), OrgAdmin),
        ("DELETE", "/api/v1/orgs/{id}", delete(orgs::delete), SystemAdmin),
        ("GET", "/api/v1/orgs/{id}/projects", get(orgs::list_projects), OrgView),
        ("POST", "/api/v1/orgs/{id}/projects", post(orgs::create_project), OrgAdmin),
        ("GET", "/api/v1/orgs/{id}/members", get(orgs::list_members), OrgView),
        ("PUT", "/api/v1/orgs/{id}/members/{user_id}", put(orgs::set_member), OrgAdmin),
        ("DELETE", "/api/v1/orgs/{id}/members/{user_id}", delete(orgs::remove_member), OrgAdmin),
        ("GET", "/api/v1/projects/{project_id}", get(orgs::get_project), ProjectView),
        ("PATCH", "/api/v1/projects/{project_id}", patch(orgs::rename_project), ProjectAdmin),
        ("DELETE", "/api/v1/projects/{project_id}", delete(orgs::delete_project), ProjectOrgAdmin),
        ("GET", p!("/members"), get(orgs::list_project_members), ProjectView),
        ("PUT", p!("/members/{user_id}"), put(orgs::set_project_member), ProjectAdmin),
        ("DELETE", p!("/members/{user_id}"), delete(orgs::remove_project_member), ProjectAdmin),
        ("GET", "/api/v1/users", get(users::list), AnyAdmin),
        ("POST", "/api/v1/users", post(users::create), UserAdmin),
        ("PATCH", "/api/v1/users/{id}", patch(users::update), SystemAdmin),
        ("DELETE", "/api/v1/users/{id}", delete(users::delete), SystemAdmin),
        ("GET", p!("/jwt/public-key"), get(ops::project_jwt_public_key), ProjectView),
        ("POST", p!("/jwt/rotate"), post(ops::rotate_project_jwt_key), ProjectAdmin),
        ("GET", p!("/edge-services"), get(edges::list), ProjectView),
        ("POST", p!("/edge-services"), post(edges::create), ProjectAdmin),
        ("POST", p!("/edge-services/import"), post(edges::import), ProjectAdmin),
        ("GET", p!("/edge-services/{id}"), get(edges::get_one), ProjectView),
        ("PATCH", p!("/edge-services/{id}"), patch(edges::update), ProjectAdmin),
        ("DELETE", p!("/edge-services/{id}"), delete(edges::delete), ProjectAdmin),
        ("POST", p!("/edge-services/{id}/probe"), post(edges::probe), ProjectAdmin),
        ("GET", p!("/templates"), get(templates::list), ProjectView),
        ("POST", p!("/templates"), post(templates::create), ProjectAdmin),
        ("GET", p!("/templates/{id}"), get(templates::get_one), ProjectView),
        ("PUT", p!("/templates/{id}"), put(templates::update), ProjectAdmin),
        ("DELETE", p!("/templates/{id}"), delete(templates::delete), ProjectAdmin),
        ("GET", p!("/templates/{id}/versions"), get(templates::versions), ProjectView),
        ("GET", p!("/templates/{id}/versions/{version}"), get(templates::version), ProjectView),
        ("GET", p!("/templates/{id}/export"), get(templates::export), ProjectView),
        ("POST", p!("/templates/{id}/preview"), post(templates::preview), ProjectView),
        ("GET", p!("/plugins"), get(plugins::list), ProjectView),
        ("POST", p!("/plugins"), post(plugins::create).layer(DefaultBodyLimit::disable()), ProjectAdmin),
        ("GET", p!("/plugins/{id}"), get(plugins::get_one), ProjectView),
        ("DELETE", p!("/plugins/{id}"), delete(plugins::delete), ProjectAdmin),
        ("GET", p!("/plugins/{id}/package"), get(plugins::package), ProjectView),
        ("GET", p!("/deliveries"), get(deliveries::list), ProjectView),
        ("POST", p!("/deliveries"), post(deliveries::create), ProjectAdmin),
        ("GET", p!("/deliveries/{id}"), get(deliveries::get_one), ProjectView),
        ("GET", p!("/deliveries/{id}/targets"), get(deliveries::targets), ProjectView),
        ("GET", p!("/deliveries/{id}/events"), get(deliveries::events), ProjectView),
        ("POST", p!("/deliveries/{id}/cancel"), post(deliveries::cancel), ProjectAdmin),
        ("POST", p!("/deliveries/{id}/retry"), post(deliveries::retry), ProjectAdmin),
        ("GET", "/api/v1/audit", get(audit::list), AnyAdmin),
    ]
}

/// Every route with its access rule.
pub fn catalog() -> Vec<RouteSpec> {
    table().into_iter().map(|(method, path, _, access)| RouteSpec { method, path, access }).collect()
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let mut router = Router::new();
    for (_, path, handler, rule) in table() {
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
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

pub fn audit_entry(
    user: &User,
    scope: Option<&ProjectScope>,
    action: &str,
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
        action: action.to_owned(),
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
