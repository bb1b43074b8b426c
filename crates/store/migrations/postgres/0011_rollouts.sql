-- Rollouts. `rollout` is the delivery's rollout document (JSON, '' for none) and `wave_ends` where
-- each wave ends in target order (JSON list of positions, `seq` < end); `wave` is the index of the
-- wave targets may be claimed from (0-based). `start_at` (ms) schedules a delivery;
-- `approvals_required` is the project's setting when it was created. `abort_reason` is set when a
-- rollout is aborted (the delivery ends `aborted`), and `rollback_id` names the rollback delivery
-- its `on_abort: rollback` (or the first manual rollback) started.
ALTER TABLE deliveries ADD COLUMN rollout TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN wave_ends TEXT NOT NULL DEFAULT '[]';
ALTER TABLE deliveries ADD COLUMN wave INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN start_at BIGINT;
ALTER TABLE deliveries ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN abort_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN rollback_id TEXT;
-- The wave (1-based; 0 without a rollout) each target is in.
ALTER TABLE delivery_targets ADD COLUMN wave INTEGER NOT NULL DEFAULT 0;
-- A target that waits (offline, outside its maintenance windows) is not claimed before `not_before` (ms).
ALTER TABLE delivery_targets ADD COLUMN not_before BIGINT;
-- Waiting targets by edge, so an edge seen online again wakes its targets at once.
CREATE INDEX delivery_targets_waiting ON delivery_targets (edge_id) WHERE not_before IS NOT NULL;
-- Deliveries wait in `awaiting_approval` until this many other project admins approve them.
ALTER TABLE projects ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
-- One row per approval; an approval counts for 24 hours after `at`.
CREATE TABLE delivery_approvals (
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, user_id)
);
-- Maintenance windows: a delivery with `options.respect_windows` starts a target only while one of
-- the windows for its tags (or a window without a tag) is open: from each `cron` opening (five
-- fields, civil time in `timezone`) for `duration_minutes`.
CREATE TABLE maintenance_windows (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    cron TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL,
    timezone TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
