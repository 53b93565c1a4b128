-- A collector's heartbeat history: one row per heartbeat with what happened since the previous
-- one (deltas, so restarts need no special handling). The engineers' page sums the last hour.
CREATE TABLE collector_heartbeats (
    ts                timestamptz NOT NULL,
    collector_id      text NOT NULL,
    readings_written  bigint NOT NULL DEFAULT 0,
    mqtt_received     bigint NOT NULL DEFAULT 0,
    mqtt_rejected     bigint NOT NULL DEFAULT 0,
    polls_ok          bigint NOT NULL DEFAULT 0,
    polls_failed      bigint NOT NULL DEFAULT 0,
    spool_depth       bigint NOT NULL DEFAULT 0
);
SELECT create_hypertable('collector_heartbeats', by_range('ts', INTERVAL '1 day'));
CREATE INDEX collector_heartbeats_collector_idx ON collector_heartbeats (collector_id, ts DESC);
