-- Claims find a delivery's next targets by position.
CREATE UNIQUE INDEX delivery_targets_seq ON delivery_targets (delivery_id, seq);

-- Registry filters: tag and version lookups within a project without reading service rows.
ALTER TABLE edge_service_tags ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
UPDATE edge_service_tags t SET project_id = e.project_id FROM edge_services e WHERE e.id = t.edge_id;
CREATE INDEX edge_service_tags_project ON edge_service_tags (project_id, tag, edge_id);
CREATE INDEX edge_services_version ON edge_services (project_id, version text_pattern_ops);
CREATE INDEX edge_services_status ON edge_services (project_id, status);
