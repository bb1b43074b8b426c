-- Why a failed target failed, as a code (`domain::delivery::FailureCode`; empty when it did not
-- fail, or failed before it ran); the `reason` text keeps the details.
ALTER TABLE delivery_targets ADD COLUMN failure_code TEXT NOT NULL DEFAULT '';
