-- Substring filters (free text, name, endpoint) through trigram indexes when the pg_trgm extension
-- can be had. Creating an extension may need rights this database user lacks; then the filters
-- scan, as before, and nothing else changes.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm is not available (%); registry substring filters will scan', SQLERRM;
        RETURN;
    END;
    CREATE INDEX edge_services_name_trgm ON edge_services USING gin (LOWER(name) gin_trgm_ops);
    CREATE INDEX edge_services_endpoint_trgm ON edge_services USING gin (LOWER(endpoint) gin_trgm_ops);
    CREATE INDEX edge_services_description_trgm ON edge_services USING gin (LOWER(description) gin_trgm_ops);
    CREATE INDEX edge_services_version_trgm ON edge_services USING gin (LOWER(COALESCE(version, '')) gin_trgm_ops);
    CREATE INDEX edge_services_tags_trgm ON edge_services USING gin (LOWER(tags) gin_trgm_ops);
END
$$;
