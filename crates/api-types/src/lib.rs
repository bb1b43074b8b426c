//! What the REST API answers. These types are the boundary: the server builds them from store
//! rows (which are never sent out as they are), clients read them, and the OpenAPI document
//! takes their JSON Schemas. A field added to a row does not reach the wire unless it is added
//! here too.

use domain::access::{Outcome, Role};
use domain::delivery::{Counts, DeliveryKind, DeliveryMode, DeliveryState, FailureCode, TargetStatus};
use domain::drift::{ConfigState, InventoryKind};
use domain::edge::{AuthKind, EdgeStatus};
use domain::template::TemplateKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Times are Unix milliseconds.
pub type Millis = i64;

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    /// How many match, over all pages.
    pub total: i64,
    /// Present and true when `total` is the database's estimate, not a count: the edge-service
    /// list on PostgreSQL answers an estimate past 5,000 matches.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub total_estimated: bool,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorAnswer {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// A stable snake_case code (docs/API.md lists them).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// For programs: `field`, `problems`, `retry_after_secs`, ...
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub is_system_admin: bool,
    pub disabled: bool,
    /// The console's language: `en` or `zh`.
    pub language: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    pub user_id: String,
    pub username: String,
    pub role: Role,
}

/// An API token or session, never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// `session` or `api`.
    pub kind: String,
    pub expires_at: Option<Millis>,
    pub created_at: Millis,
}

/// How edgefleet signs in to an edge service; the password is write-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EdgeAuth {
    pub kind: AuthKind,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EdgeService {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub endpoint: String,
    pub description: String,
    pub tags: Vec<String>,
    /// What the edge last reported (`GET /api/version`).
    pub version: Option<String>,
    pub status: EdgeStatus,
    /// Why the last probe failed.
    pub status_reason: String,
    pub probed_at: Option<Millis>,
    /// When the status last changed.
    pub status_since: Option<Millis>,
    /// Whether it holds what was last delivered to it (`none`: nothing was).
    pub config_state: ConfigState,
    /// The last drift check.
    pub config_checked_at: Option<Millis>,
    /// Why the last drift check could not read it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_reason: String,
    pub auth: EdgeAuth,
    /// `http`: edgefleet calls `endpoint`; `agent`: the agent `agent_id` makes the calls.
    pub transport: domain::edge::Transport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Whether broker credentials were issued to its agent (`POST .../agent-credentials`).
    #[serde(default)]
    pub agent_credentials_issued: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// `POST P/edge-services/{id}/agent-credentials`: what an agent needs, shown once (calling again
/// issues a new password, and the old one stops working once the broker's user list is updated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCredentials {
    pub agent_id: String,
    /// The broker URL for `--broker`, without credentials.
    pub mqtt_url: Option<String>,
    pub username: String,
    pub password: String,
    /// The project's command-signing public key (PEM) for `--command-key`.
    pub command_key: String,
}

/// `GET P/agents/command-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandKey {
    /// Ed25519 public key, PEM (SubjectPublicKeyInfo).
    pub command_key: String,
}

/// `GET .../edge-services/{id}/drift`: every object last delivered to the edge and what the last
/// check found of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DriftReport {
    pub state: ConfigState,
    pub checked_at: Option<Millis>,
    /// Why the last check could not read the edge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub objects: Vec<ObjectDrift>,
}

/// One delivered object: what was delivered, what the edge held at the last check, and the JSON
/// Patch from the first to the second (credentials masked in all three).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectDrift {
    /// `rule r1`, `tags plc/fast`: named as plans name objects.
    pub object: String,
    #[serde(rename = "ref")]
    pub object_ref: domain::plan::ObjectRef,
    pub expected: Value,
    /// `null` when the object is gone (or not checked since it was delivered: see `checked`).
    pub live: Option<Value>,
    pub diff: Vec<Value>,
    pub drifted: bool,
    /// Whether a check read it since it was delivered.
    pub checked: bool,
    /// The delivery that left it, and its template or plugin.
    pub delivery_id: String,
    pub template_id: Option<String>,
    pub plugin_id: Option<String>,
    pub delivered_at: Millis,
}

/// `POST .../edge-services/{id}/reapply` (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReapplyRequest {
    /// `apply` (the default) or `plan`, to see first what re-applying would change.
    #[serde(default)]
    pub mode: Option<DeliveryMode>,
    /// Delivery options, as for a new delivery.
    #[serde(default)]
    pub options: Option<Value>,
}

/// The delivery a re-apply started; when the edge's drifted objects came from several templates
/// or plugins, one delivery each, the others named in `also`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reapplied {
    #[serde(flatten)]
    pub delivery: Delivery,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

/// Objects of a live edge, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeObjects {
    pub streams: Vec<String>,
    pub tables: Vec<String>,
    pub rules: Vec<String>,
    /// Southbound driver nodes, each with its settings, groups, tags and the subscriptions to it.
    pub nodes: Vec<String>,
}

/// `POST .../templates/from-edge`: a new template (`name`) or a new version of `template_id`
/// holding these objects as the edge holds them now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateFromEdge {
    pub edge_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub objects: EdgeObjects,
}

/// `GET .../inventory`: an object and the edges that held it at their last check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryItem {
    pub name: String,
    pub kind: InventoryKind,
    /// How many edges hold it.
    pub edges: i64,
    /// The first 50 of them, by id.
    pub edge_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Template {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub kind: TemplateKind,
    pub description: String,
    pub current_version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The current version's document (credentials masked for viewers).
    pub content: Value,
    /// The `${...}` parameters it takes.
    pub parameters: Vec<String>,
    /// Those given as `${secret:...}`: sealed with a delivery, never shown again.
    pub secret_parameters: Vec<String>,
    /// What is valid but worth a look (a rule reading a stream the template does not define).
    pub warnings: Vec<domain::Problem>,
}

/// A template without its content, as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateSummary {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub kind: TemplateKind,
    pub description: String,
    pub current_version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plugin {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub sha256: String,
    pub size: i64,
    /// version, language, executable, sources, sinks, functions, files, unpacked_bytes.
    pub manifest: Value,
    pub created_by: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    pub id: String,
    pub project_id: String,
    pub kind: DeliveryKind,
    pub template_id: Option<String>,
    pub template_name: String,
    pub template_version: Option<i64>,
    /// `rule` or `driver`; `""` for a plugin delivery.
    pub template_kind: String,
    pub plugin_id: Option<String>,
    pub content_sha256: String,
    /// Whether this delivery sent its own edit of the template.
    pub content_edited: bool,
    /// `{defaults, targets}`; values of secret parameters are masked.
    pub params: Value,
    pub options: Value,
    pub dry_run: bool,
    pub mode: DeliveryMode,
    /// The plan an `apply` delivery carries out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// The delivery a `rollback` puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    pub force: bool,
    pub state: DeliveryState,
    pub cancel_requested: bool,
    pub total: i64,
    pub created_by: String,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    /// The stored counts.
    pub counts: Counts,
    /// The rollout as asked for; absent for a delivery to every target at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<domain::rollout::Rollout>,
    /// The wave targets are taken from now (1-based; 0 without a rollout).
    pub wave: u32,
    /// How many waves the rollout has (0 without a rollout).
    pub waves: u32,
    /// Where each wave ends in the delivery's target order (`[10, 110, 1000]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wave_ends: Vec<u64>,
    /// When a scheduled delivery starts (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// Approvals by other project admins it needed (the project's setting when it was made).
    pub approvals_required: i64,
    /// Who approved it, and when; an approval counts for 24 hours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// Why the rollout was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// The rollback delivery of this one (started by `on_abort: rollback`, or the first by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_id: Option<String>,
}

/// One approval of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Approval {
    pub user_id: String,
    pub username: String,
    pub at: Millis,
    /// Whether it still counts (younger than 24 hours).
    pub valid: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryTarget {
    pub edge_id: String,
    pub name: String,
    pub endpoint: String,
    pub version: Option<String>,
    pub tags: Vec<String>,
    pub status: TargetStatus,
    /// Why it failed, was canceled or skipped.
    pub reason: String,
    /// Why it failed, as a code (absent unless it failed while it ran); `reason` says the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<FailureCode>,
    /// Each object applied: `{object, action, detail}`.
    pub items: Value,
    pub attempts: i64,
    pub tries: i64,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The number of its latest result, the id of its live event (0 until it has one).
    pub result_seq: i64,
    /// A failed target that was put back exactly as it was before the delivery.
    pub restored: bool,
    /// Why a failed target could not be put back as it was (also at the end of `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_failed: Option<String>,
    /// The rollout wave it belongs to (1-based; 0 without a rollout).
    #[serde(default)]
    pub wave: i64,
}

/// A live `target` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TargetEvent {
    pub seq: i64,
    pub edge_id: String,
    pub name: String,
    pub endpoint: String,
    pub version: Option<String>,
    pub status: TargetStatus,
    pub reason: String,
    /// Why it failed, as a code (absent unless it failed while it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<FailureCode>,
}

/// A rollout's live events: `wave_started`, `wave_finished`, `paused`, `resumed`, `aborted`,
/// `approved` (the SSE event name is the `event` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RolloutEvent {
    WaveStarted {
        wave: u32,
        waves: u32,
    },
    WaveFinished {
        wave: u32,
        waves: u32,
        counts: Counts,
    },
    /// `by` is a user, or `gate` for a manual gate between waves.
    Paused {
        wave: u32,
        by: String,
        reason: String,
    },
    Resumed {
        wave: u32,
        by: String,
    },
    Aborted {
        wave: u32,
        reason: String,
        by: String,
    },
    Approved {
        by: String,
        approvals: i64,
        required: i64,
        state: DeliveryState,
    },
}

impl RolloutEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            RolloutEvent::WaveStarted { .. } => "wave_started",
            RolloutEvent::WaveFinished { .. } => "wave_finished",
            RolloutEvent::Paused { .. } => "paused",
            RolloutEvent::Resumed { .. } => "resumed",
            RolloutEvent::Aborted { .. } => "aborted",
            RolloutEvent::Approved { .. } => "approved",
        }
    }
}

/// The `state` event that starts every stream (after the counts): where the delivery stands, so
/// a watcher that arrives while it is paused, scheduled or awaiting approval knows without a read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateEvent {
    pub state: DeliveryState,
    /// 1-based; 0 without a rollout.
    pub wave: u32,
    pub waves: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// Targets waiting (`pending` until their edge is seen online or a window opens).
    pub waiting: u64,
}

/// The live `waiting` event: a target went back to wait, and why (`waiting: offline since ...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WaitingEvent {
    pub edge_id: String,
    pub name: String,
    pub reason: String,
}

/// The live `final` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FinalEvent {
    pub state: DeliveryState,
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: Millis,
    pub actor_id: String,
    pub actor_name: String,
    pub org_id: String,
    pub org_name: String,
    pub project_id: String,
    pub project_name: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_name: String,
    pub outcome: Outcome,
    pub details: Value,
}

// ----- What requests carry -----

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// `POST /api/v1/me/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// Days until it expires; none means it lasts until revoked.
    pub expires_in_days: Option<u32>,
}

/// A name for a new or renamed organization or project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewName {
    pub name: String,
}

/// A role for a member: `admin`, `viewer`, or (organizations only) `member`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub system_admin: bool,
}

/// What a system admin may change of an account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub password: Option<String>,
    pub disabled: Option<bool>,
    pub language: Option<String>,
}

/// What users may change of their own account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchSelf {
    pub password: Option<String>,
    /// Required with `password`.
    pub current_password: Option<String>,
    pub language: Option<String>,
}

impl From<UserPatchSelf> for UserPatch {
    fn from(own: UserPatchSelf) -> UserPatch {
        UserPatch { password: own.password, disabled: None, language: own.language }
    }
}

pub use domain::import::{AuthInput, EdgeInput};

/// `PATCH P/edge-services/{id}`: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgePatch {
    pub name: Option<String>,
    pub endpoint: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub auth: Option<AuthInput>,
    /// Moving a service between `http` and `agent`; `agent` needs `agent_id` (given or kept).
    pub transport: Option<domain::edge::Transport>,
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    pub name: String,
    /// `rule` or `driver`.
    pub kind: String,
    /// The document, or a string holding it as NeuronEX exports it.
    pub content: Value,
    #[serde(default)]
    pub description: String,
}

/// `PUT P/templates/{id}`: a new content is a new version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateEdit {
    pub name: Option<String>,
    /// Must be the template's own kind when given.
    pub kind: Option<String>,
    pub content: Option<Value>,
    pub description: Option<String>,
}

/// `POST P/templates/{id}/preview`: the document one edge would get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub edge_id: String,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub params: Option<Value>,
}

/// `POST P/deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDelivery {
    /// A template to send (or `plugin_id`).
    #[serde(default)]
    pub template_id: Option<String>,
    /// The template version; the current one when absent.
    #[serde(default)]
    pub version: Option<i64>,
    /// This delivery's own edit of the content; never written back to the template.
    #[serde(default)]
    pub content: Option<Value>,
    /// `{defaults: {...}, targets: {<edge id or name>: {...}}}`.
    #[serde(default)]
    pub params: Option<Value>,
    /// A plugin to install (or `template_id`).
    #[serde(default)]
    pub plugin_id: Option<String>,
    /// `{ids: [...]}`, `{filter: {...}}` or `{all: true}`; the last two may add `exclude: [ids]`
    /// (at most 10,000) to leave those edge services out.
    pub targets: Value,
    /// `{concurrency, timeout_secs, retries, on_conflict}`.
    #[serde(default)]
    pub options: Option<Value>,
    #[serde(default)]
    pub dry_run: bool,
    /// `apply` (the default) writes; `plan` reads every target and records what applying would
    /// change, writing nothing (`GET .../deliveries/{id}/plan`).
    #[serde(default)]
    pub mode: Option<DeliveryMode>,
    /// Waves, gate and abort rule (`apply` deliveries only).
    #[serde(default)]
    pub rollout: Option<domain::rollout::Rollout>,
    /// When to start (RFC 3339); the delivery is `scheduled` until then.
    #[serde(default)]
    pub start_at: Option<String>,
}

/// A maintenance window: from each `cron` opening (civil time in `timezone`) for
/// `duration_minutes`, targets with `tag` (every target when empty) may start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MaintenanceWindow {
    pub id: String,
    pub name: String,
    pub tag: String,
    pub cron: String,
    pub duration_minutes: i64,
    pub timezone: String,
    pub created_by: String,
    pub created_at: Millis,
    /// The next opening (RFC 3339, UTC), or when the current one closes if it is open now.
    pub next_opening: Option<String>,
    pub open_until: Option<String>,
}

/// `POST .../maintenance-windows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMaintenanceWindow {
    pub name: String,
    /// Targets with this tag; every target when absent.
    #[serde(default)]
    pub tag: Option<String>,
    /// Five fields: minute hour day-of-month month day-of-week (`0 2 * * 6`).
    pub cron: String,
    pub duration_minutes: i64,
    /// IANA time zone, e.g. `Asia/Shanghai`; `UTC` when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A project's webhook. Its secret is shown once, in the answer that created it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Event names, or `["*"]` for every event.
    pub events: Vec<String>,
    pub created_by: String,
    pub created_at: Millis,
    /// The HMAC-SHA256 key calls are signed with: only in the answer to the `POST` that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `POST .../webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://`, allowed by the server's network policy.
    pub url: String,
    /// 16 to 256 characters; when absent the server makes one (shown once in the answer).
    #[serde(default)]
    pub secret: Option<String>,
    /// `delivery.created`, `delivery.approved`, `delivery.started`, `delivery.wave`,
    /// `delivery.finished`, `delivery.aborted`, `delivery.rolled_back`, `edge.drifted`, or `["*"]`.
    pub events: Vec<String>,
}

/// One event's call to a webhook and how its tries went (`GET .../webhooks/{id}/deliveries`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookCall {
    /// The `X-Edgefleet-Delivery` header: the same on every try.
    pub id: String,
    pub event: domain::webhook::WebhookEvent,
    pub state: domain::webhook::CallState,
    pub attempts: i64,
    /// The receiver's answer code on the last try; absent when none came (the error says why).
    pub status_code: Option<i64>,
    pub error: String,
    pub created_at: Millis,
    /// When the next try is due (pending calls).
    pub next_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// What was sent (the JSON body).
    pub body: Value,
}

/// `PATCH /api/v1/projects/{id}`: a new name, the number of approvals deliveries need, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    #[serde(default)]
    pub name: Option<String>,
    /// Other project admins who must approve each new delivery (0: none, at most 10).
    #[serde(default)]
    pub approvals_required: Option<i64>,
}

/// `GET .../deliveries/{id}/targets/{edge_id}`: one target with what it read before writing
/// (secret values masked) and, for a plan, its changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryTargetDetail {
    #[serde(flatten)]
    pub target: DeliveryTarget,
    /// `[{ref, live}]`: what the gateway held of each object before the first write (for a plan,
    /// what it read); absent when the target never got that far.
    pub snapshot: Option<Value>,
    /// A plan target's changes (its items); empty for other deliveries.
    pub changes: Vec<domain::plan::Change>,
}

/// `POST .../deliveries/{plan_id}/apply`: carries a plan out as a new `apply` delivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyPlan {
    /// The apply's options; the plan's when absent.
    #[serde(default)]
    pub options: Option<Value>,
    /// Write even to targets whose objects changed since the plan read them.
    #[serde(default)]
    pub force: bool,
    /// Carry the plan out in waves (as `POST .../deliveries` takes it).
    #[serde(default)]
    pub rollout: Option<domain::rollout::Rollout>,
    /// When to start (RFC 3339).
    #[serde(default)]
    pub start_at: Option<String>,
}

/// `POST .../deliveries/{id}/rollback`: puts targets back as the delivery found them, as a new
/// `rollback` delivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// `"all"` (default: every target the delivery recorded a snapshot for), `"succeeded"`, or a
    /// list of edge-service ids.
    #[serde(default)]
    pub targets: Option<Value>,
    /// Put back even targets whose objects changed since the delivery.
    #[serde(default)]
    pub force: bool,
}

/// `GET .../deliveries/{id}/plan`: what applying would change, targets with the same change set
/// grouped (largest group first), and targets that could not be read grouped by reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanView {
    pub delivery_id: String,
    pub state: DeliveryState,
    /// Targets not read yet (the plan is still running).
    pub pending: u64,
    pub summary: domain::plan::PlanSummary,
    pub groups: Vec<domain::plan::PlanGroup>,
    pub unreachable: Vec<domain::plan::UnreachableGroup>,
}

/// The JSON Schemas of every request and answer type, by name, for the OpenAPI document's components
/// (`Error` is the error answer).
pub fn schemas() -> serde_json::Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    // Asking for each type registers it (and what it holds) under its name.
    generator.subschema_for::<ErrorAnswer>();
    generator.subschema_for::<User>();
    generator.subschema_for::<Org>();
    generator.subschema_for::<Project>();
    generator.subschema_for::<Member>();
    generator.subschema_for::<TokenInfo>();
    generator.subschema_for::<EdgeService>();
    generator.subschema_for::<Template>();
    generator.subschema_for::<TemplateSummary>();
    generator.subschema_for::<Plugin>();
    generator.subschema_for::<Delivery>();
    generator.subschema_for::<DeliveryTarget>();
    generator.subschema_for::<PlanView>();
    generator.subschema_for::<DeliveryTargetDetail>();
    generator.subschema_for::<ApplyPlan>();
    generator.subschema_for::<RollbackRequest>();
    generator.subschema_for::<AuditEvent>();
    generator.subschema_for::<Login>();
    generator.subschema_for::<NewToken>();
    generator.subschema_for::<NewName>();
    generator.subschema_for::<ProjectPatch>();
    generator.subschema_for::<MaintenanceWindow>();
    generator.subschema_for::<NewMaintenanceWindow>();
    generator.subschema_for::<Webhook>();
    generator.subschema_for::<NewWebhook>();
    generator.subschema_for::<WebhookCall>();
    generator.subschema_for::<RolloutEvent>();
    generator.subschema_for::<StateEvent>();
    generator.subschema_for::<WaitingEvent>();
    generator.subschema_for::<Membership>();
    generator.subschema_for::<NewUser>();
    generator.subschema_for::<UserPatch>();
    generator.subschema_for::<UserPatchSelf>();
    generator.subschema_for::<EdgeInput>();
    generator.subschema_for::<EdgePatch>();
    generator.subschema_for::<NewTemplate>();
    generator.subschema_for::<TemplateEdit>();
    generator.subschema_for::<PreviewRequest>();
    generator.subschema_for::<NewDelivery>();
    generator.subschema_for::<DriftReport>();
    generator.subschema_for::<ReapplyRequest>();
    generator.subschema_for::<Reapplied>();
    generator.subschema_for::<AgentCredentials>();
    generator.subschema_for::<CommandKey>();
    generator.subschema_for::<TemplateFromEdge>();
    generator.subschema_for::<InventoryItem>();
    let mut schemas = generator.take_definitions(true);
    schemas.insert("Error".into(), serde_json::json!({"$ref": "#/components/schemas/ErrorAnswer"}));
    schemas
}
