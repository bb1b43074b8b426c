-- Times are unix milliseconds, ids are UUIDv7 text, JSON is text, booleans are 0/1:
-- the same column types on SQLite and PostgreSQL, so one query text serves both.

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_system_admin INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    language TEXT NOT NULL DEFAULT 'en',
    created_at BIGINT NOT NULL
);

CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE edge_services (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    version TEXT,
    status TEXT NOT NULL DEFAULT 'unknown',
    status_reason TEXT NOT NULL DEFAULT '',
    probed_at BIGINT,
    auth_kind TEXT NOT NULL DEFAULT 'none',
    auth_username TEXT NOT NULL DEFAULT '',
    auth_secret TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX edge_services_project ON edge_services (project_id, name);

CREATE TABLE edge_service_tags (
    edge_id TEXT NOT NULL REFERENCES edge_services(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (edge_id, tag)
);
CREATE INDEX edge_service_tags_tag ON edge_service_tags (tag, edge_id);

CREATE TABLE templates (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    current_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE template_versions (
    template_id TEXT NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    content TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (template_id, version)
);

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    kind TEXT NOT NULL,
    template_id TEXT,
    template_name TEXT NOT NULL DEFAULT '',
    template_version BIGINT,
    template_kind TEXT NOT NULL DEFAULT '',
    plugin_id TEXT,
    content TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    content_edited INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    total BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deliveries_project ON deliveries (project_id, created_at);
CREATE INDEX deliveries_state ON deliveries (state);

CREATE TABLE delivery_targets (
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    edge_id TEXT NOT NULL,
    edge_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    edge_version TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    auth_kind TEXT NOT NULL DEFAULT 'none',
    auth_username TEXT NOT NULL DEFAULT '',
    auth_secret TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    items TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    tries INTEGER NOT NULL DEFAULT 0,
    lease_until BIGINT,
    worker TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (delivery_id, edge_id)
);
CREATE INDEX delivery_targets_status ON delivery_targets (delivery_id, status, seq);

CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT NOT NULL DEFAULT '',
    actor_name TEXT NOT NULL DEFAULT '',
    org_id TEXT NOT NULL DEFAULT '',
    org_name TEXT NOT NULL DEFAULT '',
    project_id TEXT NOT NULL DEFAULT '',
    project_name TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL DEFAULT '',
    resource_name TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_project ON audit_events (project_id, at);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
