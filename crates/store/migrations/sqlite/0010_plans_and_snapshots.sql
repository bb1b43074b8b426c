-- A delivery's mode: `apply` writes to its targets; `plan` only reads them and records, per target,
-- what applying would change (in the target's `items`).
ALTER TABLE deliveries ADD COLUMN mode TEXT NOT NULL DEFAULT 'apply';
-- What an `apply` target held before its first write (`[{ref, live}]`, JSON), recorded before that
-- write so a restart resumes with it; and whether a failed target was put back (`restored`,
-- `restore_failed`, or '' when nothing was tried).
ALTER TABLE delivery_targets ADD COLUMN snapshot TEXT;
ALTER TABLE delivery_targets ADD COLUMN restore TEXT NOT NULL DEFAULT '';
