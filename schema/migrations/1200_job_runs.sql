-- Runs of the scheduler's jobs (issue 18, contract §15): one row per run, shown on /ops.
-- A run is owed for one scheduled instant; at most one run per (job, instant) ends 'ok'
-- (the partial unique index), so two schedulers on two hosts run each job once.
CREATE TABLE job_runs (
    id             bigserial PRIMARY KEY,
    job            text NOT NULL CHECK (job ~ '^[a-z][a-z0-9_]{0,63}$'),
    scheduled_for  timestamptz NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    outcome        text NOT NULL CHECK (outcome IN ('running', 'ok', 'failed', 'interrupted')),
    counts         jsonb NOT NULL DEFAULT '{}',
    error          text,
    host           text,
    pid            integer,
    CHECK ((outcome = 'running') = (ended_at IS NULL))
);
CREATE UNIQUE INDEX job_runs_once ON job_runs (job, scheduled_for) WHERE outcome = 'ok';
CREATE INDEX job_runs_job_idx ON job_runs (job, scheduled_for DESC);
CREATE INDEX job_runs_started_idx ON job_runs (started_at);
