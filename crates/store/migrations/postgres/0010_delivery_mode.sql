-- A delivery's mode: `apply` writes to its targets; `plan` only reads them and records, per target,
-- what applying would change (in the target's `items`).
ALTER TABLE deliveries ADD COLUMN mode TEXT NOT NULL DEFAULT 'apply';
