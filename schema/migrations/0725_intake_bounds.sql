-- Intake bounds (issue 20). A meter's installation time, when known: readings before it are
-- rejected at intake (collector/intake.py), whatever the path, back-fill included. NULL: unknown,
-- and only the configured horizon (DOXA_READING_HORIZON_DAYS, 400 days before receipt) bounds
-- its readings.
ALTER TABLE meters ADD COLUMN IF NOT EXISTS installed_at timestamptz;
