-- When an edge's probed status last changed: a delivery fails an edge the prober has found offline
-- with "offline since ...", after one quick check, instead of spending its retries on it.
ALTER TABLE edge_services ADD COLUMN status_since BIGINT;
UPDATE edge_services SET status_since = probed_at;
