-- PostgreSQL's 0006 adds optional pg_trgm indexes; SQLite's search index came with 0005.
-- This file keeps the two migration sets numbered alike.
SELECT 1;
