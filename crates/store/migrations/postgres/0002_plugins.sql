CREATE TABLE plugins (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    manifest TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name),
    UNIQUE (project_id, sha256)
);
CREATE INDEX plugins_sha256 ON plugins (sha256);
