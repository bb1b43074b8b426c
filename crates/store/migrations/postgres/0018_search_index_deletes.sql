-- SQLite's 0018 rebuilds its FTS5 search index; PostgreSQL's search has no such index.
-- This file keeps the two migration sets numbered alike.
SELECT 1;
