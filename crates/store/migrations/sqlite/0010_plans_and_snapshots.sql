-- A delivery's mode: `apply` writes to its targets; `plan` only reads them and records, per target,
-- what applying would change (in the target's `items`); `rollback` puts targets back as another
-- delivery found them (`rollback_of`). `plan_id` names the plan an `apply` delivery carries out;
-- `force` applies or rolls back over objects changed since that plan or delivery.
ALTER TABLE deliveries ADD COLUMN mode TEXT NOT NULL DEFAULT 'apply';
ALTER TABLE deliveries ADD COLUMN plan_id TEXT;
ALTER TABLE deliveries ADD COLUMN rollback_of TEXT;
ALTER TABLE deliveries ADD COLUMN force INTEGER NOT NULL DEFAULT 0;
-- What a target held before its first write (`[{ref, live}]`, JSON), recorded before that write so
-- a restart resumes with it (a plan records what it read); and whether a failed target was put back
-- (`restored`, `restore_failed`, or '' when nothing was tried).
ALTER TABLE delivery_targets ADD COLUMN snapshot TEXT;
ALTER TABLE delivery_targets ADD COLUMN restore TEXT NOT NULL DEFAULT '';
