-- Validation exceptions (contract §12): what a validation rule found on a meter's readings, open
-- until staff accept it or a later validation run no longer finds it. The table comes before the
-- rules themselves so that bill holds (contract §11: a draft whose meter has an open exception is
-- held) can rest on it; the validation migrations (09xx) extend it.
CREATE TABLE reading_exceptions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id      integer NOT NULL REFERENCES meters (id),
    rule          text NOT NULL,               -- rollback, spike, gap, high_use, low_use, zero_use, future…
    severity      text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'error')),
    ts_from       timestamptz NOT NULL,
    ts_to         timestamptz NOT NULL CHECK (ts_to >= ts_from),
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    reason        text NOT NULL,               -- one sentence naming the values
    opened_at     timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    closed_by     text,                        -- a staff username, 'cli', or 'validation' (no longer found)
    close_reason  text,
    CHECK ((state = 'open') = (closed_at IS NULL))
);
CREATE INDEX reading_exceptions_open_meter_idx ON reading_exceptions (meter_id) WHERE state = 'open';
CREATE INDEX reading_exceptions_meter_ts_idx ON reading_exceptions (meter_id, ts_from);
