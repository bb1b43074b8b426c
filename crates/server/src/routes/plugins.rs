//! Algorithm plugins: upload (streamed to disk, hashed while streaming, checked as eKuiper will
//! install it), list, read, download, delete; and the signed links edges download packages from.

use std::io::Write;

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::audit::AuditAction;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{NewPlugin, StoreError};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{CurrentUser, Project, Query};
use crate::routes::{audit_entry, created};
use crate::views;

/// Text fields of the upload form are short.
const MAX_FIELD_BYTES: usize = 4096;
/// The form has three fields; a few more are refused, not read (bounds the body with the file limit).
const MAX_FIELDS: usize = 8;

struct Upload {
    name: Option<String>,
    description: String,
    file: Option<(tempfile::NamedTempFile, String, u64)>,
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<impl IntoResponse> {
    let multipart = multipart.map_err(|e| {
        ApiError::new(ErrorCode::BadUpload, format!("expected a multipart form with name and file: {e}"))
    })?;
    let upload = read_upload(&state, multipart).await?;
    let name = upload.name.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidPlugin,
            "name: give the plugin's name (the name of the JSON file inside the zip)",
        )
    })?;
    let (temp, sha256, size) =
        upload.file.ok_or_else(|| ApiError::new(ErrorCode::InvalidPlugin, "file: attach the plugin's zip package"))?;
    if let Some(existing) = state.store.plugin_by_sha(&project_id, &sha256).await? {
        return Err(duplicate_content(&existing.name, &sha256));
    }
    let path = temp.path().to_owned();
    let checked_name = name.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| package::PackageError::NotZip(e.to_string()))?;
        package::inspect(std::io::BufReader::new(file), &checked_name, &package::Limits::default())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| {
        ApiError::new(ErrorCode::of_package(&e), format!("file: {e}")).with_details(json!({"field": "file"}))
    })?;
    let new = NewPlugin {
        project_id: project_id.clone(),
        name: name.clone(),
        description: upload.description,
        sha256: sha256.clone(),
        size: size as i64,
        manifest: json!(manifest),
        created_by: user.username.clone(),
    };
    let entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::PluginCreate,
        "plugin",
        &name,
        json!({"sha256": sha256, "size": size, "version": manifest.version, "language": manifest.language}),
    );
    let blob_existed = state.blobs.exists(&sha256);
    state.blobs.commit(temp, &sha256).map_err(ApiError::internal)?;
    let plugin = match state.store.create_plugin(&new, &entry).await {
        Ok(plugin) => plugin,
        Err(err) => {
            // Nothing stays behind for a refused upload: no row, and no blob nobody uses.
            if !blob_existed && !state.store.blob_in_use(&sha256).await.unwrap_or(true) {
                state.blobs.remove(&sha256);
            }
            return Err(match err {
                StoreError::Conflict { clash: store::Clash::PluginContent, name: existing } => {
                    duplicate_content(&existing, &sha256)
                }
                other => other.into(),
            });
        }
    };
    Ok(created(views::plugin(&plugin)))
}

fn duplicate_content(existing: &str, sha256: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PluginDuplicateContent,
        format!("this package is identical to plugin `{existing}` (same SHA-256)"),
    )
    .with_details(json!({"existing": existing, "sha256": sha256}))
}

/// Streams the `file` field to a temporary file beside the blobs, hashing and counting as it goes.
async fn read_upload(state: &AppState, mut multipart: Multipart) -> Result<Upload, ApiError> {
    let mut upload = Upload { name: None, description: String::new(), file: None };
    let limit = state.config.max_plugin_bytes;
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(ErrorCode::BadUpload, format!("the upload broke off or is malformed: {e}"))
    };
    let mut fields = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(ApiError::new(ErrorCode::BadUpload, format!("the form has more than {MAX_FIELDS} fields")));
        }
        match field.name().unwrap_or_default() {
            "file" if upload.file.is_some() => {
                return Err(ApiError::new(ErrorCode::BadUpload, "the form has two `file` fields; send one package"));
            }
            "file" => {
                let mut temp = state.blobs.temp_file().map_err(ApiError::internal)?;
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    size += chunk.len() as u64;
                    if size > limit {
                        return Err(ApiError::new(
                            ErrorCode::PluginTooLarge,
                            format!("file: the package is larger than {limit} bytes"),
                        ));
                    }
                    hasher.update(&chunk);
                    temp.write_all(&chunk).map_err(ApiError::internal)?;
                }
                temp.flush().map_err(ApiError::internal)?;
                upload.file = Some((temp, hex::encode(hasher.finalize()), size));
            }
            other => {
                let key: String = other.chars().take(64).collect();
                // Read piece by piece: a huge text field is refused at the limit, not held whole.
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
                        return Err(ApiError::new(
                            ErrorCode::InvalidPlugin,
                            format!("{key}: at most {MAX_FIELD_BYTES} bytes"),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| ApiError::new(ErrorCode::InvalidPlugin, format!("{key}: not UTF-8 text")))?;
                match key.as_str() {
                    "name" if text.trim().is_empty() => upload.name = None,
                    "name" => {
                        let name = domain::text::check_name("name: a plugin name", &text, 100)
                            .map_err(|m| ApiError::new(ErrorCode::InvalidPlugin, m))?;
                        upload.name = Some(name);
                    }
                    "description" => upload.description = text.trim().to_owned(),
                    _ => {
                        return Err(ApiError::new(
                            ErrorCode::BadUpload,
                            format!("unknown form field `{key}`; send name, file and description"),
                        ));
                    }
                }
            }
        }
    }
    Ok(upload)
}

pub async fn list(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    query: Query,
) -> ApiResult<Json<Value>> {
    let page = query.only(&["limit", "offset"])?.page()?;
    let (items, total) = state.store.list_plugins(&project_id, page.limit, page.offset).await?;
    Ok(Json(json!(views::list(&items, total, views::plugin))))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(views::plugin(&state.store.get_plugin(&project_id, &id).await?))))
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let plugin = state.store.get_plugin(&project_id, &id).await?;
    let mut entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::PluginDelete,
        "plugin",
        &plugin.name,
        json!({"sha256": plugin.sha256}),
    );
    entry.resource_id = id.clone();
    let still_used = state.store.delete_plugin(&project_id, &id, &entry).await.map_err(|err| match err {
        StoreError::Conflict { clash: store::Clash::PluginInUse, name } => ApiError::new(
            ErrorCode::PluginInUse,
            format!("plugin `{name}` is being delivered; wait for the delivery to end or cancel it"),
        ),
        other => other.into(),
    })?;
    if !still_used {
        state.blobs.remove(&plugin.sha256);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The package, for users who can see the project.
pub async fn package(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let plugin = state.store.get_plugin(&project_id, &id).await?;
    stream_package(&state, &plugin.sha256, &plugin.name).await
}

/// The package, for an edge holding a signed link that has not expired. 403 otherwise.
pub async fn edge_download(
    State(state): State<AppState>,
    Path((sha256, expires, signature, file)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let forbidden = |reason: &str| ApiError::forbidden(format!("package link refused: {reason}"));
    let name = file.strip_suffix(".zip").ok_or_else(|| forbidden("not a package"))?;
    state.links.verify(&sha256, &expires, &signature, name).map_err(forbidden)?;
    stream_package(&state, &sha256, name).await
}

async fn stream_package(state: &AppState, sha256: &str, name: &str) -> ApiResult<Response> {
    let file = tokio::fs::File::open(state.blobs.path(sha256))
        .await
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "plugin package not found"))?;
    let length = file.metadata().await.map_err(ApiError::internal)?.len();
    // Large reads: one package goes to thousands of edges.
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.zip\"")),
        ],
        body,
    )
        .into_response())
}
