-- Webhooks: a project's receivers of events. `secret_sealed` is the HMAC key sealed with the
-- server's secret box; `events` a JSON list of event names, or ["*"].
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    url TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    events TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_project ON webhooks (project_id);
-- One row per event per webhook, written in the transaction of the change that raised the event.
-- `id` is the call's `X-Edgefleet-Delivery`; `body` is sent as it is on every try. `state` is
-- pending (tried again at `next_at`), delivered or failed (given up); `last_status` is the
-- receiver's answer code on the last try (NULL when none came), `last_error` why it failed.
CREATE TABLE webhook_calls (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id),
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at BIGINT,
    last_status INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX webhook_calls_due ON webhook_calls (next_at) WHERE state = 'pending';
CREATE INDEX webhook_calls_webhook ON webhook_calls (webhook_id, created_at);
CREATE INDEX webhook_calls_created ON webhook_calls (created_at);
