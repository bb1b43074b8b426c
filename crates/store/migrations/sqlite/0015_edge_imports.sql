-- Large imports commit in chunks so they never hold the only SQLite writer for long. An import in
-- progress has a row here; each service it stored names it in `import_id`. An import that fails
-- removes its services; one whose process died (no heartbeat for ten minutes) is removed by the
-- next sweep. `import_id` stays on the services afterwards: it says which import brought them.
CREATE TABLE edge_imports (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    rows_total BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
ALTER TABLE edge_services ADD COLUMN import_id TEXT;
CREATE INDEX edge_services_import ON edge_services (import_id) WHERE import_id IS NOT NULL;
