-- The search index again, without `contentless_delete`. With it, FTS5 records each removed row
-- in per-segment tombstone tables that it rebuilds as they grow: the first probes after an
-- import of 100,000 services (each sets a version, so each removes and re-adds the service's
-- row) spent 60 to 340 ms in single-row updates, holding SQLite's one writer, about once in
-- two thousand. A plain contentless table is told the removed row's old values instead
-- ('delete' command), which the triggers have: the same probes then take at most 25 ms
-- (docs/BENCHMARKS.md, round eight). Every value indexed goes through these triggers, so the
-- old values are always the ones that were indexed.
DROP TRIGGER edge_search_update;
DROP TRIGGER edge_search_delete;
DROP TABLE edge_search;

CREATE VIRTUAL TABLE edge_search USING fts5(
    name, endpoint, description, tags, version,
    tokenize = 'trigram', content = ''
);
INSERT INTO edge_search (rowid, name, endpoint, description, tags, version)
    SELECT search_id, name, endpoint, description, tags, COALESCE(version, '') FROM edge_services;

CREATE TRIGGER edge_search_update AFTER UPDATE OF name, endpoint, description, tags, version ON edge_services
WHEN old.name IS NOT new.name OR old.endpoint IS NOT new.endpoint OR old.description IS NOT new.description
     OR old.tags IS NOT new.tags OR old.version IS NOT new.version
BEGIN
    INSERT INTO edge_search (edge_search, rowid, name, endpoint, description, tags, version)
        VALUES ('delete', old.search_id, old.name, old.endpoint, old.description, old.tags, COALESCE(old.version, ''));
    INSERT INTO edge_search (rowid, name, endpoint, description, tags, version)
        VALUES (new.search_id, new.name, new.endpoint, new.description, new.tags, COALESCE(new.version, ''));
END;

CREATE TRIGGER edge_search_delete AFTER DELETE ON edge_services
BEGIN
    INSERT INTO edge_search (edge_search, rowid, name, endpoint, description, tags, version)
        VALUES ('delete', old.search_id, old.name, old.endpoint, old.description, old.tags, COALESCE(old.version, ''));
END;
