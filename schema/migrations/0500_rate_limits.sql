-- Rate-limit counters of the website (Flask-Limiter's fixed windows), shared by every process of
-- `doxa web`: the lookup form's limits per client address and per customer code must hold across
-- all of them, or each worker would allow the full limit again.
--
-- UNLOGGED: counters are worth nothing after a crash (PostgreSQL empties the table then), and
-- skipping the WAL keeps a sign-in attempt to one cheap write. Rows are keyed by the limiter's
-- key; an expired window is restarted by the next hit, and expired rows are swept now and then.
CREATE UNLOGGED TABLE rate_limits (
    key         text PRIMARY KEY,
    hits        integer NOT NULL,
    expires_at  timestamptz NOT NULL
);
