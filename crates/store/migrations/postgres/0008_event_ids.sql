-- Every written target result gets a number, increasing per delivery in the order results are
-- committed: live-event streams name events by it, resume after it (`Last-Event-ID`) and fetch
-- whatever they missed from the store. `results_written` hands out the numbers.
ALTER TABLE delivery_targets ADD COLUMN result_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN results_written BIGINT NOT NULL DEFAULT 0;
CREATE INDEX delivery_targets_results ON delivery_targets (delivery_id, result_seq);
