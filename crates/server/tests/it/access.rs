//! Authorization: every route of the router, for every role, in its own scope and in others.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};
use server::Access;

use crate::support::{TestApp, code};

const PASSWORD: &str = "a-strong-passphrase";
const ROLES: [&str; 6] = ["sysadmin", "orgadmin", "projadmin", "viewer", "orgviewer", "outsider"];

struct World {
    app: TestApp,
    tokens: HashMap<&'static str, String>,
    orgs: HashMap<&'static str, String>,
    projects: HashMap<&'static str, String>,
    users: HashMap<&'static str, String>,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let mut orgs = HashMap::new();
    let mut projects = HashMap::new();
    for org in ["A", "B"] {
        let answer = app.post("/api/v1/orgs", json!({"name": format!("org {org}")})).await;
        orgs.insert(org, answer.body["id"].as_str().expect("org").to_owned());
    }
    for (project, org) in [("A1", "A"), ("A2", "A"), ("B1", "B")] {
        let answer = app.post(&format!("/api/v1/orgs/{}/projects", orgs[org]), json!({"name": project})).await;
        let id = answer.body["id"].as_str().expect("project").to_owned();
        // Content, so that deleting a project is refused rather than done.
        app.post(
            &format!("/api/v1/projects/{id}/edge-services"),
            json!({"name": "gw", "endpoint": "http://127.0.0.1:1"}),
        )
        .await;
        projects.insert(project, id);
    }
    let mut users = HashMap::new();
    let mut tokens = HashMap::new();
    tokens.insert("sysadmin", app.token.clone());
    for name in &ROLES[1..] {
        let answer = app.post("/api/v1/users", json!({"username": name, "password": PASSWORD})).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        users.insert(*name, answer.body["id"].as_str().expect("user").to_owned());
    }
    // (user, organization, its role there, and a project with a role in it)
    type Membership<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a str)>);
    let memberships: [Membership<'_>; 4] = [
        ("orgadmin", "A", "admin", None),
        ("projadmin", "A", "member", Some(("A1", "admin"))),
        ("viewer", "A", "member", Some(("A1", "viewer"))),
        ("orgviewer", "A", "viewer", None),
    ];
    for (user, org, role, project) in memberships {
        let answer = app
            .call(
                Method::PUT,
                &format!("/api/v1/orgs/{}/members/{}", orgs[org], users[user]),
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        if let Some((project, role)) = project {
            let path = format!("/api/v1/projects/{}/members/{}", projects[project], users[user]);
            let answer = app.call(Method::PUT, &path, Some(json!({"role": role}))).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
        }
    }
    for name in &ROLES[1..] {
        let login = app.login(name, PASSWORD, &[]).await;
        tokens.insert(*name, login.body["token"].as_str().expect("token").to_owned());
    }
    World { app, tokens, orgs, projects, users }
}

/// A role's standing toward a project: admin, viewer, or nothing.
fn project_role(role: &str, project: &str) -> Option<&'static str> {
    match (role, project) {
        ("sysadmin", _) => Some("admin"),
        ("orgadmin", "A1" | "A2") => Some("admin"),
        ("projadmin", "A1") => Some("admin"),
        ("viewer", "A1") => Some("viewer"),
        ("orgviewer", "A1" | "A2") => Some("viewer"),
        _ => None,
    }
}

fn org_role(role: &str, org: &str) -> Option<&'static str> {
    match (role, org) {
        ("sysadmin", _) => Some("admin"),
        ("orgadmin", "A") => Some("admin"),
        ("orgviewer", "A") => Some("viewer"),
        ("projadmin" | "viewer", "A") => Some("member"),
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
enum Expect {
    Allowed,
    Forbidden,
    Hidden,
}

fn expect(access: Access, role: &str, scope: &str) -> Expect {
    use Expect::*;
    let admin_anywhere = matches!(role, "sysadmin" | "orgadmin" | "projadmin");
    match access {
        Access::Public | Access::User | Access::SignedLink => Allowed,
        Access::SystemAdmin => {
            if role == "sysadmin" {
                Allowed
            } else {
                Forbidden
            }
        }
        Access::UserAdmin => {
            if matches!(role, "sysadmin" | "orgadmin") {
                Allowed
            } else {
                Forbidden
            }
        }
        Access::AnyAdmin => {
            if admin_anywhere {
                Allowed
            } else {
                Forbidden
            }
        }
        Access::OrgView => {
            if org_role(role, scope).is_some() {
                Allowed
            } else {
                Hidden
            }
        }
        Access::OrgAdmin => match org_role(role, scope) {
            Some("admin") => Allowed,
            Some(_) => Forbidden,
            None => Hidden,
        },
        Access::ProjectView => {
            if project_role(role, scope).is_some() {
                Allowed
            } else {
                Hidden
            }
        }
        Access::ProjectAdmin => match project_role(role, scope) {
            Some("admin") => Allowed,
            Some(_) => Forbidden,
            None => Hidden,
        },
        Access::ProjectOrgAdmin => match (project_role(role, scope), role) {
            (Some(_), "sysadmin" | "orgadmin") => Allowed,
            (Some(_), _) => Forbidden,
            (None, _) => Hidden,
        },
    }
}

#[tokio::test]
async fn every_route_every_role_own_and_other_scope() {
    let world = world().await;
    let catalog = server::routes_catalog();
    assert!(catalog.len() >= 50, "the catalog is the router's table");
    let mut checked = 0;
    let mut failures = Vec::new();
    for route in &catalog {
        if route.access == Access::SignedLink || route.path == "/api/v1/auth/logout" {
            continue; // covered by their own tests (a link needs a signature; logout ends the token)
        }
        let scopes: Vec<&str> = if route.path.contains("{project_id}") {
            vec!["A1", "A2", "B1"]
        } else if route.path.starts_with("/api/v1/orgs/{id}") {
            vec!["A", "B"]
        } else {
            vec!["-"]
        };
        for scope in scopes {
            let path = route
                .path
                .replace("{project_id}", world.projects.get(scope).map(String::as_str).unwrap_or(""))
                .replace("/orgs/{id}", &format!("/orgs/{}", world.orgs.get(scope).map(String::as_str).unwrap_or("")))
                .replace("{user_id}", &world.users["outsider"])
                .replace("{version}", "1")
                .replace("{id}", "nonexistent");
            for role in ROLES {
                let method = Method::from_bytes(route.method.as_bytes()).expect("method");
                let mut request = world
                    .app
                    .http
                    .request(method.clone(), format!("{}{path}", world.app.base))
                    .bearer_auth(&world.tokens[role]);
                if matches!(route.method, "POST" | "PUT" | "PATCH") {
                    request = request.json(&json!({}));
                }
                let response = request.send().await.expect("request");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let error_code = body["error"]["code"].as_str().unwrap_or("").to_owned();
                let got = match (status, error_code.as_str()) {
                    (403, "forbidden") => Expect::Forbidden,
                    (404, "project_not_found" | "org_not_found") => Expect::Hidden,
                    (401, _) => Expect::Forbidden,
                    _ => Expect::Allowed,
                };
                let wanted = expect(route.access, role, scope);
                checked += 1;
                if got != wanted {
                    failures.push(format!(
                        "{} {} as {role} in {scope}: wanted {wanted:?}, got {status} {error_code}",
                        route.method, route.path
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} checks failed:\n{}", failures.len(), failures.join("\n"));
    assert!(checked > 600, "{checked}");
}

#[tokio::test]
async fn a_project_admin_cannot_reach_another_projects_edges_by_id_or_by_filter() {
    let world = world().await;
    let app = &world.app;
    let b_edges = app.get(&format!("/api/v1/projects/{}/edge-services", world.projects["A2"])).await;
    let b_edge = b_edges.body["items"][0]["id"].as_str().expect("edge").to_owned();
    let template = app.post(&format!("/api/v1/projects/{}/templates", world.projects["A1"]), json!({"name": "t", "kind": "rule", "content": {"id": "r", "sql": "SELECT * FROM s", "actions": [{"log": {}}]}})).await;
    let token = &world.tokens["projadmin"];
    let deliver = |body: Value| {
        let request = app
            .http
            .post(format!("{}/api/v1/projects/{}/deliveries", app.base, world.projects["A1"]))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = deliver(json!({"template_id": template.body["id"], "targets": {"ids": [b_edge]}})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("edge_service_not_found")));
    // A filter matches within the project only: A1's own `gw`, never A2's.
    let (status, body) =
        deliver(json!({"template_id": template.body["id"], "targets": {"filter": {"name": "gw"}}, "dry_run": true}))
            .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["counts"]["total"], 1);
    let response = app
        .http
        .get(format!("{}/api/v1/projects/{}/edge-services/{b_edge}", app.base, world.projects["A2"]))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn membership_rules_and_bad_input() {
    let world = world().await;
    let app = &world.app;
    let outsider = &world.users["outsider"];
    let answer = app
        .call(
            Method::PUT,
            &format!("/api/v1/projects/{}/members/{outsider}", world.projects["A1"]),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!((answer.status, code(&answer)), (422, "not_org_member"));
    let answer = app
        .call(
            Method::PUT,
            &format!("/api/v1/orgs/{}/members/{outsider}", world.orgs["A"]),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!((answer.status, code(&answer)), (422, "invalid_role"));
    for (password, why) in [
        ("", "at least 10"),
        ("short", "at least 10"),
        ("aaaaaaaaaaaa", "repeated"),
        ("newperson1", "must not be the username"),
    ] {
        let answer = app.post("/api/v1/users", json!({"username": "newperson1", "password": password})).await;
        assert_eq!((answer.status, code(&answer)), (422, "weak_password"), "{password}");
        assert!(answer.body["error"]["message"].as_str().expect("msg").contains(why));
    }
    let answer = app.post("/api/v1/users", json!({"username": "viewer", "password": PASSWORD})).await;
    assert_eq!((answer.status, code(&answer)), (409, "username_taken"));
    let answer = app.call(Method::DELETE, &format!("/api/v1/orgs/{}", world.orgs["B"]), None).await;
    assert_eq!((answer.status, code(&answer)), (409, "org_has_projects"));
    let answer = app.call(Method::DELETE, &format!("/api/v1/projects/{}", world.projects["B1"]), None).await;
    assert_eq!((answer.status, code(&answer)), (409, "project_not_empty"));
    let answer = app.call(Method::DELETE, &format!("/api/v1/orgs/{}?force=true", world.orgs["B"]), None).await;
    assert_eq!(answer.status, 204);
    assert_eq!(app.get(&format!("/api/v1/projects/{}", world.projects["B1"])).await.status, 404);
}

#[tokio::test]
async fn sessions_and_tokens_end_when_they_should() {
    let world = world().await;
    let app = &world.app;
    let me = |token: String| {
        let request = app.http.get(format!("{}/api/v1/me", app.base)).bearer_auth(token);
        async move { request.send().await.expect("me").status().as_u16() }
    };
    // An API token works until revoked.
    let created = app.post("/api/v1/me/tokens", json!({"name": "ci"})).await;
    let token = created.body["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("efp_"));
    assert_eq!(me(token.clone()).await, 200);
    let id = created.body["id"].as_str().expect("id");
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/me/tokens/{id}"), None).await.status, 204);
    assert_eq!(me(token).await, 401);
    // Disabling a user ends their sessions; malformed tokens are refused.
    let viewer = world.tokens["viewer"].clone();
    assert_eq!(me(viewer.clone()).await, 200);
    let answer = app
        .call(Method::PATCH, &format!("/api/v1/users/{}", world.users["viewer"]), Some(json!({"disabled": true})))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(me(viewer).await, 401);
    assert_eq!(me("not-a-token".into()).await, 401);
    // Logout ends the session.
    let outsider = world.tokens["outsider"].clone();
    let logout =
        app.http.post(format!("{}/api/v1/auth/logout", app.base)).bearer_auth(&outsider).send().await.expect("logout");
    assert_eq!(logout.status(), 204);
    assert_eq!(me(outsider).await, 401);
}

#[tokio::test]
async fn login_attempts_are_throttled_and_audited() {
    let world = world().await;
    let app = &world.app;
    let attempt = |password: &'static str| async move { app.login("orgviewer", password, &[]).await.status };
    for _ in 0..5 {
        assert_eq!(attempt("wrong-password").await, 401);
    }
    assert_eq!(attempt("wrong-password").await, 429);
    assert_eq!(attempt(PASSWORD).await, 429, "from an unknown client even the right password waits out the back-off");
    let audit = app.get("/api/v1/audit?action=auth.login&actor=orgviewer").await;
    let items = audit.body["items"].as_array().expect("items");
    let outcomes: Vec<&str> = items.iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "failure").count(), 5);
    // Refused attempts are one row per window, counted in its details.
    let throttled: Vec<&Value> = items.iter().filter(|e| e["outcome"] == "throttled").collect();
    assert_eq!(throttled.len(), 1, "{}", audit.text);
    assert_eq!(throttled[0]["details"]["attempts"], 1);
}

#[tokio::test]
async fn denied_actions_are_audited_and_each_admin_sees_only_their_scope() {
    let world = world().await;
    let app = &world.app;
    let viewer = &world.tokens["viewer"];
    let response = app
        .http
        .post(format!("{}/api/v1/projects/{}/templates", app.base, world.projects["A1"]))
        .bearer_auth(viewer)
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 403);
    let denied = app.get("/api/v1/audit?action=access.denied&actor=viewer").await;
    assert_eq!(denied.body["total"], 1);
    assert_eq!(denied.body["items"][0]["project_name"], "A1");
    // The A1 project admin sees A1's records, not A2's or B1's.
    let audit = app
        .http
        .get(format!("{}/api/v1/audit?limit=1000", app.base))
        .bearer_auth(&world.tokens["projadmin"])
        .send()
        .await
        .expect("audit");
    let audit: Value = audit.json().await.expect("json");
    let projects: std::collections::BTreeSet<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["project_name"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(projects.into_iter().collect::<Vec<_>>(), ["A1"]);
    let csrf = app
        .http
        .post(format!("{}/api/v1/me/tokens", app.base))
        .header("cookie", format!("edgefleet_session={}", world.tokens["orgadmin"]))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(csrf.status(), 403, "a cookie session without the console's header or origin is refused");
    let with_header = app
        .http
        .post(format!("{}/api/v1/me/tokens", app.base))
        .header("cookie", format!("edgefleet_session={}", world.tokens["orgadmin"]))
        .header("x-edgefleet-csrf", "1")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(with_header.status(), 201);
}
