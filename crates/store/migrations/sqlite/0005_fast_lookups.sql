-- Claims find a delivery's next targets by position.
CREATE UNIQUE INDEX delivery_targets_seq ON delivery_targets (delivery_id, seq);

-- Registry filters: tag and version lookups within a project without reading service rows.
ALTER TABLE edge_service_tags ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
UPDATE edge_service_tags SET project_id = (SELECT e.project_id FROM edge_services e WHERE e.id = edge_id);
CREATE INDEX edge_service_tags_project ON edge_service_tags (project_id, tag, edge_id);
CREATE INDEX edge_services_version ON edge_services (project_id, version, id);
CREATE INDEX edge_services_status ON edge_services (project_id, status);

-- Substring search (free text, name, endpoint) through a trigram index. Each project owns the
-- range of search ids [number * 2^32, number * 2^32 + 2^32), so a search is one range of the
-- index. The numbers are SQLite's own: triggers assign them, `db copy` leaves them out.
ALTER TABLE projects ADD COLUMN number INTEGER;
UPDATE projects SET number = rowid;
CREATE UNIQUE INDEX projects_number ON projects (number);
CREATE TRIGGER projects_number AFTER INSERT ON projects WHEN new.number IS NULL
BEGIN
    UPDATE projects SET number = (SELECT COALESCE(MAX(number), 0) + 1 FROM projects) WHERE id = new.id;
END;

ALTER TABLE edge_services ADD COLUMN search_id INTEGER;
UPDATE edge_services SET search_id =
    (SELECT p.number FROM projects p WHERE p.id = edge_services.project_id) * 4294967296 + rowid;
CREATE UNIQUE INDEX edge_services_search_id ON edge_services (search_id);

CREATE VIRTUAL TABLE edge_search USING fts5(
    name, endpoint, description, tags, version,
    tokenize = 'trigram', content = '', contentless_delete = 1
);
INSERT INTO edge_search (rowid, name, endpoint, description, tags, version)
    SELECT search_id, name, endpoint, description, tags, COALESCE(version, '') FROM edge_services;

CREATE TRIGGER edge_search_insert AFTER INSERT ON edge_services
BEGIN
    UPDATE edge_services SET search_id = 1 + COALESCE(
        (SELECT MAX(s.search_id) FROM edge_services s
          WHERE s.search_id BETWEEN (SELECT number FROM projects WHERE id = new.project_id) * 4294967296
                                AND (SELECT number FROM projects WHERE id = new.project_id) * 4294967296 + 4294967295),
        (SELECT number FROM projects WHERE id = new.project_id) * 4294967296)
     WHERE id = new.id AND search_id IS NULL;
    INSERT INTO edge_search (rowid, name, endpoint, description, tags, version)
        SELECT search_id, name, endpoint, description, tags, COALESCE(version, '') FROM edge_services WHERE id = new.id;
END;

CREATE TRIGGER edge_search_update AFTER UPDATE OF name, endpoint, description, tags, version ON edge_services
WHEN old.name IS NOT new.name OR old.endpoint IS NOT new.endpoint OR old.description IS NOT new.description
     OR old.tags IS NOT new.tags OR old.version IS NOT new.version
BEGIN
    DELETE FROM edge_search WHERE rowid = old.search_id;
    INSERT INTO edge_search (rowid, name, endpoint, description, tags, version)
        VALUES (new.search_id, new.name, new.endpoint, new.description, new.tags, COALESCE(new.version, ''));
END;

CREATE TRIGGER edge_search_delete AFTER DELETE ON edge_services
BEGIN
    DELETE FROM edge_search WHERE rowid = old.search_id;
END;
