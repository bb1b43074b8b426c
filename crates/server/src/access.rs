//! Who may do what. Roles: system admin (everything), organization admin / viewer / member, project
//! admin / viewer. Something a user cannot see answers 404 like something missing; something they
//! can see but not change answers 403, and the refusal is audited.

use domain::access::Outcome;
pub use domain::access::Role;
use domain::audit::AuditAction;
use serde_json::json;
use store::{Org, ProjectScope, User};

use crate::AppState;
use crate::error::ApiError;

/// A project the user can see, with their role in it. The route guard puts it in the request for
/// project routes; handlers take it with the `Project` extractor instead of checking again.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    pub scope: ProjectScope,
    pub role: Role,
    /// Whether the user may administer the project's organization (create or delete projects).
    pub org_admin: bool,
}

impl ProjectAccess {
    /// Only admins change things or deliver.
    pub async fn require_admin(&self, state: &AppState, user: &User) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            return Ok(());
        }
        deny(state, user, Some(&self.scope), "this needs the admin role in the project").await
    }

    pub async fn require_org_admin(&self, state: &AppState, user: &User) -> Result<(), ApiError> {
        if self.org_admin {
            return Ok(());
        }
        deny(state, user, Some(&self.scope), "this needs the admin role in the project's organization").await
    }
}

/// Records the refusal in the audit and answers 403.
pub async fn deny<T>(state: &AppState, user: &User, scope: Option<&ProjectScope>, why: &str) -> Result<T, ApiError> {
    let mut entry =
        crate::routes::audit_entry(user, scope, AuditAction::AccessDenied, "access", "", json!({"reason": why}));
    entry.outcome = Outcome::Denied;
    if let Err(err) = state.store.append_audit(&entry).await {
        tracing::warn!(error = %err, "cannot audit a denied request");
    }
    Err(ApiError::forbidden(why))
}

pub async fn project_access(state: &AppState, user: &User, project_id: &str) -> Result<ProjectAccess, ApiError> {
    let scope = state.store.project_scope(project_id).await?;
    if user.is_system_admin {
        return Ok(ProjectAccess { scope, role: Role::Admin, org_admin: true });
    }
    let roles = state.store.project_roles(project_id, &user.id).await?;
    let org_role = roles.org;
    let project_role = roles.project;
    // An organization member without a project role sees nothing of the project.
    let through_org = org_role.filter(|r| *r >= Role::Viewer);
    let role = through_org.max(project_role).ok_or_else(|| ApiError::not_found(store::Resource::Project))?;
    Ok(ProjectAccess { scope, role, org_admin: org_role == Some(Role::Admin) })
}

/// An organization the user can see (any role in it or in one of its projects), with their role.
pub async fn org_access(state: &AppState, user: &User, org_id: &str) -> Result<(Org, Role), ApiError> {
    let org = state.store.get_org(org_id).await?;
    if user.is_system_admin {
        return Ok((org, Role::Admin));
    }
    if let Some(role) = state.store.org_role(org_id, &user.id).await? {
        return Ok((org, role));
    }
    Err(ApiError::not_found(store::Resource::Organization))
}

/// Whether the user administers anything: an organization or a project.
pub async fn is_any_admin(state: &AppState, user: &User) -> Result<bool, ApiError> {
    Ok(user.is_system_admin || state.store.admin_anywhere(&user.id).await?)
}

/// Checks a route's access rule before its handler (and before its body is read), so refusals do
/// not depend on what the request carries.
pub async fn guard(
    state: AppState,
    rule: crate::routes::Access,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::{FromRequestParts, RawPathParams};
    use axum::response::IntoResponse;

    use crate::routes::Access;

    if matches!(rule, Access::Public | Access::SignedLink) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let user = match crate::extract::CurrentUser::from_request_parts(&mut parts, &state).await {
        Ok(crate::extract::CurrentUser(user)) => user,
        Err(err) => return err.into_response(),
    };
    let params: Vec<(String, String)> = match RawPathParams::from_request_parts(&mut parts, &state).await {
        Ok(raw) => raw.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        Err(err) => return err.into_response(),
    };
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let verdict = match rule {
        Access::Public | Access::SignedLink | Access::User => Ok(()),
        Access::SystemAdmin => {
            if user.is_system_admin {
                Ok(())
            } else {
                deny(&state, &user, None, "this needs the system admin role").await
            }
        }
        Access::UserAdmin => match state.store.org_admin_anywhere(&user.id).await {
            Ok(admin) if admin || user.is_system_admin => Ok(()),
            Ok(_) => deny(&state, &user, None, "this needs the system admin or an organization admin role").await,
            Err(err) => Err(err.into()),
        },
        Access::AnyAdmin => match is_any_admin(&state, &user).await {
            Ok(true) => Ok(()),
            Ok(false) => deny(&state, &user, None, "this needs an admin role").await,
            Err(err) => Err(err),
        },
        Access::OrgView => match org_visible(&state, &user, &param("id")).await {
            Ok(access) => {
                parts.extensions.insert(access);
                Ok(())
            }
            Err(err) => Err(err),
        },
        Access::OrgAdmin => match org_visible(&state, &user, &param("id")).await {
            Ok(access) if access.role == Role::Admin => {
                parts.extensions.insert(access);
                Ok(())
            }
            Ok(_) => deny(&state, &user, None, "this needs the admin role in the organization").await,
            Err(err) => Err(err),
        },
        Access::ProjectView => match project_access(&state, &user, &param("project_id")).await {
            Ok(access) => {
                parts.extensions.insert(access);
                Ok(())
            }
            Err(err) => Err(err),
        },
        Access::ProjectAdmin => match project_access(&state, &user, &param("project_id")).await {
            Ok(access) => {
                let verdict = access.require_admin(&state, &user).await;
                parts.extensions.insert(access);
                verdict
            }
            Err(err) => Err(err),
        },
        Access::ProjectOrgAdmin => match project_access(&state, &user, &param("project_id")).await {
            Ok(access) => {
                let verdict = access.require_org_admin(&state, &user).await;
                parts.extensions.insert(access);
                verdict
            }
            Err(err) => Err(err),
        },
    };
    match verdict {
        Ok(()) => {
            // Handlers read who is asking from here instead of looking the credential up again.
            parts.extensions.insert(crate::extract::Authenticated(user));
            next.run(axum::extract::Request::from_parts(parts, body)).await
        }
        Err(err) => err.into_response(),
    }
}

/// An organization the user can see, with their role toward it (project members see it as
/// `Member`). The route guard puts it in the request for organization routes; handlers take it
/// with the `OrgOf` extractor.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub org: Org,
    pub role: Role,
}

pub async fn org_visible(state: &AppState, user: &User, org_id: &str) -> Result<OrgAccess, ApiError> {
    match org_access(state, user, org_id).await {
        Ok((org, role)) => Ok(OrgAccess { org, role }),
        Err(not_found) => {
            let visible = state.store.visible_orgs(&user.id).await?;
            match visible.into_iter().find(|o| o.id == org_id) {
                Some(org) => Ok(OrgAccess { org, role: Role::Member }),
                None => Err(not_found),
            }
        }
    }
}
