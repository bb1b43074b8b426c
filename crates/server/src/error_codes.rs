//! Every error code the API answers, with its HTTP status and what it means: the one table
//! (docs/API.md publishes it; a tidy test keeps the two equal). A handler names a variant, so a
//! code cannot be misspelt or answered with two statuses.

use axum::http::StatusCode;

macro_rules! error_codes {
    ($( $variant:ident = ($code:literal, $status:ident, $meaning:literal), )+) => {
        /// A stable, snake_case error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( #[doc = $meaning] $variant, )+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $code, )+
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $( ErrorCode::$variant => StatusCode::$status, )+
                }
            }

            /// What the code means, for the published table.
            pub fn meaning(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $meaning, )+
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
    BadBody = ("bad_body", BAD_REQUEST, "The request body cannot be read (not UTF-8, cut short)."),
    MalformedJson = ("malformed_json", BAD_REQUEST, "The body is not JSON of the expected shape; the message gives line and column."),
    MalformedCsv = ("malformed_csv", BAD_REQUEST, "An imported CSV cannot be read; the message gives the row."),
    BadQuery = ("bad_query", BAD_REQUEST, "A query parameter is unknown, repeated or out of range."),
    BadUpload = ("bad_upload", BAD_REQUEST, "A multipart upload is malformed or lacks its file."),
    BadLastEventId = ("bad_last_event_id", BAD_REQUEST, "`Last-Event-ID` is not a result number."),
    FieldTooLong = ("field_too_long", BAD_REQUEST, "A field is longer than its limit (docs/LIMITS.md)."),
    BodyTooLarge = ("body_too_large", PAYLOAD_TOO_LARGE, "The request body is larger than `max_body_bytes`."),
    DocumentTooLarge = ("document_too_large", PAYLOAD_TOO_LARGE, "The body or document is larger than its limit."),
    PluginTooLarge = ("plugin_too_large", PAYLOAD_TOO_LARGE, "The plugin package is larger than its limit."),
    UnsupportedMediaType = ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body's content type is not the one the route takes."),
    MethodNotAllowed = ("method_not_allowed", METHOD_NOT_ALLOWED, "The path exists but not with this method."),
    RouteNotFound = ("route_not_found", NOT_FOUND, "No route has this path."),
    // Who is asking.
    Unauthorized = ("unauthorized", UNAUTHORIZED, "No valid session or token."),
    CsrfCheckFailed = ("csrf_check_failed", FORBIDDEN, "A cookie-signed request came from another site (send `X-Edgefleet-Csrf` or a bearer token)."),
    Forbidden = ("forbidden", FORBIDDEN, "Visible, but the caller's role does not allow this (the refusal is audited)."),
    WrongCurrentPassword = ("wrong_current_password", FORBIDDEN, "A password change gave the wrong current password."),
    TooManyAttempts = ("too_many_attempts", TOO_MANY_REQUESTS, "Sign-in back-off: wait `retry_after_secs`."),
    // Names and fields.
    EmptyPatch = ("empty_patch", UNPROCESSABLE_ENTITY, "A change names no field to change."),
    InvalidName = ("invalid_name", UNPROCESSABLE_ENTITY, "A name is empty, too long or holds hidden characters."),
    InvalidDescription = ("invalid_description", UNPROCESSABLE_ENTITY, "A description is too long or holds control characters."),
    InvalidUsername = ("invalid_username", UNPROCESSABLE_ENTITY, "A user name breaks its rules."),
    WeakPassword = ("weak_password", UNPROCESSABLE_ENTITY, "A new password is too short or too common."),
    CurrentPasswordRequired = ("current_password_required", UNPROCESSABLE_ENTITY, "Changing one's own password needs the current one."),
    InvalidRole = ("invalid_role", UNPROCESSABLE_ENTITY, "The role is not one this membership takes."),
    InvalidLanguage = ("invalid_language", UNPROCESSABLE_ENTITY, "The console language is not `en` or `zh`."),
    InvalidTokenName = ("invalid_token_name", UNPROCESSABLE_ENTITY, "An API token's name breaks its rules."),
    CannotDeleteSelf = ("cannot_delete_self", UNPROCESSABLE_ENTITY, "A user cannot delete themselves."),
    CannotDisableSelf = ("cannot_disable_self", UNPROCESSABLE_ENTITY, "A user cannot disable themselves."),
    NotOrgMember = ("not_org_member", UNPROCESSABLE_ENTITY, "A project member must first be a member of the organization."),
    // Edge services.
    InvalidEdgeService = ("invalid_edge_service", UNPROCESSABLE_ENTITY, "An edge service field is invalid; `details.field` names it."),
    EdgeNetworkDenied = ("edge_network_denied", UNPROCESSABLE_ENTITY, "The endpoint is outside the allowed edge networks."),
    SecretRequired = ("secret_required", UNPROCESSABLE_ENTITY, "Changing the endpoint of a `basic` service needs its password again."),
    EmptyImport = ("empty_import", UNPROCESSABLE_ENTITY, "An import holds no rows."),
    ImportTooLarge = ("import_too_large", UNPROCESSABLE_ENTITY, "An import holds more rows than its limit."),
    InvalidImport = ("invalid_import", UNPROCESSABLE_ENTITY, "Import rows are invalid; `details.problems` lists each with its row, field and message."),
    // Templates.
    InvalidTemplate = ("invalid_template", UNPROCESSABLE_ENTITY, "The template content fails its checks; `details.problems` lists them with paths."),
    InvalidRenderedTemplate = ("invalid_rendered_template", UNPROCESSABLE_ENTITY, "The content with parameters filled in fails its checks."),
    InvalidKind = ("invalid_kind", UNPROCESSABLE_ENTITY, "The template kind is not `rule` or `driver`."),
    KindImmutable = ("kind_immutable", UNPROCESSABLE_ENTITY, "A template's kind cannot change."),
    TooManyPlaceholders = ("too_many_placeholders", UNPROCESSABLE_ENTITY, "The content has more `${...}` placeholders than the limit."),
    MissingParameters = ("missing_parameters", UNPROCESSABLE_ENTITY, "A preview lacks values for some parameters."),
    // Plugins.
    InvalidPlugin = ("invalid_plugin", UNPROCESSABLE_ENTITY, "The plugin package or its name is invalid."),
    NotAZip = ("not_a_zip", UNPROCESSABLE_ENTITY, "The plugin package is not a zip archive."),
    TooManyEntries = ("too_many_entries", UNPROCESSABLE_ENTITY, "The package has more entries than allowed."),
    UnsafePath = ("unsafe_path", UNPROCESSABLE_ENTITY, "A package entry's path is absolute or climbs out (`..`)."),
    SymlinkInPackage = ("symlink_in_package", UNPROCESSABLE_ENTITY, "The package holds a symbolic link."),
    EncryptedEntry = ("encrypted_entry", UNPROCESSABLE_ENTITY, "The package holds an encrypted entry."),
    DuplicateEntry = ("duplicate_entry", UNPROCESSABLE_ENTITY, "Two package entries have the same path."),
    ZipBomb = ("zip_bomb", UNPROCESSABLE_ENTITY, "The package unpacks to too much, or compresses suspiciously well."),
    UnreadableEntry = ("unreadable_entry", UNPROCESSABLE_ENTITY, "A package entry cannot be read."),
    InvalidPluginName = ("invalid_plugin_name", UNPROCESSABLE_ENTITY, "The plugin name breaks eKuiper's rules."),
    MissingMetadata = ("missing_metadata", UNPROCESSABLE_ENTITY, "The package lacks `<name>.json`."),
    InvalidMetadata = ("invalid_metadata", UNPROCESSABLE_ENTITY, "`<name>.json` is not what eKuiper needs."),
    PluginNameMismatch = ("plugin_name_mismatch", UNPROCESSABLE_ENTITY, "The package's name differs from the given name."),
    UnsupportedLanguage = ("unsupported_language", UNPROCESSABLE_ENTITY, "The plugin's language is not one eKuiper runs."),
    NoSymbols = ("no_symbols", UNPROCESSABLE_ENTITY, "The plugin declares no sources, sinks or functions."),
    MissingExecutable = ("missing_executable", UNPROCESSABLE_ENTITY, "The plugin's executable is not in the package."),
    MissingSourceConfig = ("missing_source_config", UNPROCESSABLE_ENTITY, "A declared source lacks its yaml."),
    // Deliveries.
    InvalidDelivery = ("invalid_delivery", UNPROCESSABLE_ENTITY, "The delivery request does not fit together (what to send, versions)."),
    MissingTemplate = ("missing_template", UNPROCESSABLE_ENTITY, "A delivery names neither a template nor a plugin."),
    InvalidTargets = ("invalid_targets", UNPROCESSABLE_ENTITY, "`targets` is not `ids`, `filter` or `all`."),
    EmptyFilter = ("empty_filter", UNPROCESSABLE_ENTITY, "An empty filter would select the whole project; say `all: true`."),
    NoTargets = ("no_targets", UNPROCESSABLE_ENTITY, "No target was named."),
    NoTargetsMatch = ("no_targets_match", UNPROCESSABLE_ENTITY, "The filter matches no edge service."),
    TooManyTargets = ("too_many_targets", UNPROCESSABLE_ENTITY, "More targets than the limit."),
    InvalidOptions = ("invalid_options", UNPROCESSABLE_ENTITY, "An option is unknown or out of range."),
    InvalidParams = ("invalid_params", UNPROCESSABLE_ENTITY, "Parameters are missing or invalid for some targets; nothing was sent."),
    DeliveryFinished = ("delivery_finished", CONFLICT, "The delivery already ended."),
    DeliveryRunning = ("delivery_running", CONFLICT, "The delivery is still running."),
    NothingToRetry = ("nothing_to_retry", CONFLICT, "No target of the delivery failed."),
    TargetNotFound = ("target_not_found", NOT_FOUND, "The delivery has no target for this edge service."),
    NotAPlan = ("not_a_plan", CONFLICT, "The delivery is not a plan (`mode: plan`): it has no plan to show or apply."),
    CannotRollBack = ("cannot_roll_back", CONFLICT, "A plan wrote nothing, so there is nothing to roll back."),
    NothingToRollBack = ("nothing_to_roll_back", CONFLICT, "No chosen target of the delivery recorded a snapshot (none got as far as writing)."),
    InvalidApprovals = ("invalid_approvals", UNPROCESSABLE_ENTITY, "`approvals_required` is out of range (0 to 10)."),
    InvalidRollout = ("invalid_rollout", UNPROCESSABLE_ENTITY, "`rollout` or `start_at` is malformed or out of range."),
    NotAwaitingApproval = ("not_awaiting_approval", CONFLICT, "The delivery does not wait for approvals."),
    CreatorCannotApprove = ("creator_cannot_approve", FORBIDDEN, "The creator of a delivery cannot approve it; another project admin must."),
    AlreadyApproved = ("already_approved", CONFLICT, "This user's approval of the delivery already counts."),
    NotPaused = ("not_paused", CONFLICT, "Only a paused or scheduled delivery can be resumed."),
    CannotPause = ("cannot_pause", CONFLICT, "Only a running delivery can be paused."),
    InvalidWindow = ("invalid_window", UNPROCESSABLE_ENTITY, "A maintenance window's cron, duration, time zone, name or tag is invalid."),
    TooManyWindows = ("too_many_windows", UNPROCESSABLE_ENTITY, "The project has as many maintenance windows as allowed (100)."),
    InvalidWebhook = ("invalid_webhook", UNPROCESSABLE_ENTITY, "A webhook's URL (http or https, at most 2,048 characters, allowed by the network policy), secret (16 to 256 characters) or events is invalid."),
    TooManyWebhooks = ("too_many_webhooks", UNPROCESSABLE_ENTITY, "The project has as many webhooks as allowed (20)."),
    AlreadyRolledBack = ("already_rolled_back", CONFLICT, "The delivery already has its rollback."),
    TooManyRunningDeliveries = ("too_many_running_deliveries", TOO_MANY_REQUESTS, "The project runs as many deliveries as allowed; retry later."),
    NothingDelivered = ("nothing_delivered", CONFLICT, "Nothing was delivered to the edge service yet, so there is nothing to re-apply."),
    ReapplyAfterRollback = ("reapply_after_rollback", CONFLICT, "The last delivery of these objects to the edge was a rollback; deliver the template or roll back again."),
    EdgeUnreadable = ("edge_unreadable", BAD_GATEWAY, "The edge service could not be read; the message says why."),
    InvalidFromEdge = ("invalid_from_edge", UNPROCESSABLE_ENTITY, "A template from an edge names no objects, both rule and driver objects, or neither `name` nor `template_id`."),
    ObjectNotOnEdge = ("object_not_on_edge", UNPROCESSABLE_ENTITY, "An object named for a template from an edge is not on the edge; `details.objects` lists them."),
    TooManyEventStreams = ("too_many_event_streams", SERVICE_UNAVAILABLE, "The server holds as many live streams as allowed; retry later."),
    // Things that exist, or do not.
    NotFound = ("not_found", NOT_FOUND, "Not found (a file or asset)."),
    OrgNotFound = ("org_not_found", NOT_FOUND, "No such organization, or not visible to the caller."),
    ProjectNotFound = ("project_not_found", NOT_FOUND, "No such project, or not visible to the caller."),
    UserNotFound = ("user_not_found", NOT_FOUND, "No such user."),
    EdgeServiceNotFound = ("edge_service_not_found", NOT_FOUND, "No such edge service in the project."),
    TemplateNotFound = ("template_not_found", NOT_FOUND, "No such template in the project."),
    TemplateVersionNotFound = ("template_version_not_found", NOT_FOUND, "The template has no such version."),
    DeliveryNotFound = ("delivery_not_found", NOT_FOUND, "No such delivery in the project."),
    PluginNotFound = ("plugin_not_found", NOT_FOUND, "No such plugin in the project."),
    MemberNotFound = ("member_not_found", NOT_FOUND, "The user is not a member there."),
    MaintenanceWindowNotFound = ("maintenance_window_not_found", NOT_FOUND, "No such maintenance window in the project."),
    WebhookNotFound = ("webhook_not_found", NOT_FOUND, "No such webhook in the project."),
    TokenNotFound = ("token_not_found", NOT_FOUND, "No such API token."),
    OrgNameTaken = ("org_name_taken", CONFLICT, "An organization has this name."),
    ProjectNameTaken = ("project_name_taken", CONFLICT, "The organization has a project of this name."),
    UsernameTaken = ("username_taken", CONFLICT, "A user has this name."),
    EdgeServiceNameTaken = ("edge_service_name_taken", CONFLICT, "The project has an edge service of this name; an import lists every clashing row in `details.problems`."),
    AgentIdTaken = ("agent_id_taken", CONFLICT, "An edge service (in any project) has this agent id; agent ids name broker topics and users, so they are unique on the server."),
    NotAgentMode = ("not_agent_mode", CONFLICT, "The edge service is reached over HTTP; agent credentials are for `transport: agent` services."),
    NoBroker = ("no_broker", CONFLICT, "Agent mode needs a broker: the server runs without `--mqtt-url`."),
    MaintenanceWindowNameTaken = ("maintenance_window_name_taken", CONFLICT, "The project has a maintenance window of this name."),
    TemplateNameTaken = ("template_name_taken", CONFLICT, "The project has a template of this name."),
    PluginNameTaken = ("plugin_name_taken", CONFLICT, "The project has a plugin of this name."),
    TemplateChanged = ("template_changed", CONFLICT, "The template was edited meanwhile; reload and edit again."),
    PluginDuplicateContent = ("plugin_duplicate_content", CONFLICT, "The same package is stored under another name."),
    PluginInUse = ("plugin_in_use", CONFLICT, "A delivery uses the plugin."),
    OrgHasProjects = ("org_has_projects", CONFLICT, "The organization still has projects."),
    ProjectNotEmpty = ("project_not_empty", CONFLICT, "The project still holds edge services, templates, plugins or deliveries."),
    JwtKeyRotationConflict = ("jwt_key_rotation_conflict", CONFLICT, "Another key rotation is under way."),
    // The server.
    ServerBusy = ("server_busy", SERVICE_UNAVAILABLE, "The server is busy (every password-hashing slot, or the database's one writer for longer than its wait); retry after `retry_after_secs`."),
    DatabaseUnavailable = ("database_unavailable", SERVICE_UNAVAILABLE, "The database does not answer."),
    InternalError = ("internal_error", INTERNAL_SERVER_ERROR, "A fault of the server; its log has the details."),
}

impl ErrorCode {
    /// The code of a refused plugin package.
    pub fn of_package(err: &package::PackageError) -> ErrorCode {
        use package::PackageError as E;
        match err {
            E::NotZip(_) => ErrorCode::NotAZip,
            E::TooManyEntries { .. } => ErrorCode::TooManyEntries,
            E::UnsafePath(_) => ErrorCode::UnsafePath,
            E::Symlink(_) => ErrorCode::SymlinkInPackage,
            E::Encrypted(_) => ErrorCode::EncryptedEntry,
            E::Duplicate(_) => ErrorCode::DuplicateEntry,
            E::EntryTooLarge { .. } | E::TooLarge { .. } | E::SuspiciousRatio { .. } => ErrorCode::ZipBomb,
            E::Unreadable { .. } => ErrorCode::UnreadableEntry,
            E::BadName(_) => ErrorCode::InvalidPluginName,
            E::MissingMetadata(_) => ErrorCode::MissingMetadata,
            E::BadMetadata { .. } => ErrorCode::InvalidMetadata,
            E::NameMismatch { .. } => ErrorCode::PluginNameMismatch,
            E::Language(..) => ErrorCode::UnsupportedLanguage,
            E::NoSymbols { .. } => ErrorCode::NoSymbols,
            E::MissingExecutable(_) => ErrorCode::MissingExecutable,
            E::MissingSourceConfig { .. } => ErrorCode::MissingSourceConfig,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table as docs/API.md shows it.
pub fn markdown_table() -> String {
    let mut table = String::from("| code | HTTP | meaning |\n|---|---|---|\n");
    for code in ErrorCode::ALL {
        table.push_str(&format!("| `{}` | {} | {} |\n", code.as_str(), code.status().as_u16(), code.meaning()));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{code}");
        }
    }
}
