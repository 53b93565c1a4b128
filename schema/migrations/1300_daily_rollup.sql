-- The daily rollup (issue 19, contract §14): one row per meter and local day, maintained by
-- schema.rollup.rollup_days (the scheduler's job, `doxa rollup`). The Apache build of TimescaleDB
-- has no continuous aggregates, so this is a plain hypertable of ours.
--
-- use_kwh is the metering rule's use of the day (metering.usage.daily over the register, the
-- multiplier applied), never a SQL re-derivation; first/last/readings/buckets describe the raw
-- readings of the day (buckets: distinct expected intervals holding a reading, for completeness).
-- final: a known value after the day's end existed when it was computed, so the value stands
-- (until a late reading lands inside the day and the day is rolled up again). Rows stay when
-- raw chunks are dropped by retention (schema.retention).
CREATE TABLE meter_days (
    meter_id     integer NOT NULL,
    day          date NOT NULL,
    first_ts     timestamptz,
    first_kwh    double precision,
    last_ts      timestamptz,
    last_kwh     double precision,
    readings     integer NOT NULL DEFAULT 0,
    buckets      integer NOT NULL DEFAULT 0,
    interval_s   double precision NOT NULL,
    use_kwh      numeric(16, 3),
    estimated    boolean NOT NULL DEFAULT false,
    quality      text NOT NULL DEFAULT 'actual' CHECK (quality IN ('actual', 'estimated', 'edited')),
    final        boolean NOT NULL DEFAULT false,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, day)
);
SELECT create_hypertable('meter_days', by_range('day', INTERVAL '28 days'));

-- Read completeness per province and day, written by the rollup: /ops reads one day of it.
CREATE TABLE province_days (
    day          date NOT NULL,
    province     text NOT NULL,
    meters       integer NOT NULL,
    complete     integer NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, province)
);

-- /ops lists the stalest meters first: walk this index instead of sorting every meter.
CREATE INDEX meter_status_last_reading_idx ON meter_status (last_reading_ts NULLS FIRST, meter_id);
