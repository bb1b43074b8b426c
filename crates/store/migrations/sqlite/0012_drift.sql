-- Drift and inventory. `config_state` says whether an edge holds what was last delivered to it
-- (in_sync, drifted, unknown: the last check could not read it, none: nothing delivered yet);
-- `config_checked_at` (ms) is the last check, `config_reason` why it could not read the edge.
ALTER TABLE edge_services ADD COLUMN config_state TEXT NOT NULL DEFAULT 'none';
ALTER TABLE edge_services ADD COLUMN config_checked_at BIGINT;
ALTER TABLE edge_services ADD COLUMN config_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX edge_services_config_state ON edge_services (project_id, config_state);
-- The last delivered normal form of every object per edge (`object`: the object reference as JSON;
-- `expected`: sealed, it may hold gateway passwords), with the delivery and template or plugin that
-- delivered it. The last check's finding: `drifted` (0/1), `live` (masked JSON, 'null' when the
-- object is gone; NULL before the first check) and `diff` (masked JSON Patch from expected to live).
CREATE TABLE edge_objects (
    edge_id TEXT NOT NULL,
    object TEXT NOT NULL,
    expected TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    template_id TEXT,
    plugin_id TEXT,
    delivered_at BIGINT NOT NULL,
    drifted INTEGER NOT NULL DEFAULT 0,
    live TEXT,
    diff TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (edge_id, object)
);
-- Which objects each edge held at its last check, whoever put them there.
-- Neither table references edge_services, like delivery_targets: a result or check that lands for
-- an edge deleted meanwhile must not fail its whole batch. Deleting an edge or a project deletes
-- their rows; the inventory and counts join edge_services, so a row left by that race is not seen.
CREATE TABLE edge_inventory (
    edge_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (edge_id, kind, name)
);
CREATE INDEX edge_inventory_by_name ON edge_inventory (kind, name);
