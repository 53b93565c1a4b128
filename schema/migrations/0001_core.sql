-- Doxa core schema: inventory, readings, ingestion health, billing, staff.
--
-- readings is a TimescaleDB hypertable partitioned on ts with 7-day chunks. The two questions the
-- customer pages ask are "latest reading of one meter" and "one meter over a year"; both are served
-- by the unique (meter_id, ts) index, which also makes re-delivered readings no-ops. With 7-day
-- chunks a year touches ~53 chunks (planning stays cheap when queries carry a time bound), and one
-- chunk of a 10,000-meter fleet at 30-minute readings is ~3.4 M rows whose indexes fit in memory.
-- For much larger fleets shrink the interval with set_chunk_time_interval(); nothing else changes.
-- Compression and continuous aggregates are not used: the Apache build of TimescaleDB lacks them.

-- schema.migrate checks beforehand that the extension is installed and preloaded, with a clear
-- message naming the fix.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE customers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE CHECK (code ~ '^[A-Z]{2}[A-Z0-9]{4}[0-9]{5,7}$'),
    name          text NOT NULL,
    address       text NOT NULL DEFAULT '',
    province      text NOT NULL DEFAULT '',
    tariff_group  text NOT NULL DEFAULT 'residential',
    reading_day   smallint NOT NULL CHECK (reading_day BETWEEN 1 AND 28),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_province_idx ON customers (province);

CREATE TABLE meters (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial        text NOT NULL UNIQUE,
    customer_id   bigint NOT NULL REFERENCES customers (id),
    protocol      text NOT NULL CHECK (protocol IN ('modbus', 'mqtt')),
    model         text,
    host          text,
    port          integer CHECK (port BETWEEN 1 AND 65535),
    unit_id       smallint CHECK (unit_id BETWEEN 1 AND 247),
    multiplier    numeric(10, 3) NOT NULL DEFAULT 1 CHECK (multiplier > 0),
    collector_id  text,            -- NULL: polled by every collector
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (protocol <> 'modbus'
           OR (model IS NOT NULL AND host IS NOT NULL AND port IS NOT NULL AND unit_id IS NOT NULL))
);
CREATE INDEX meters_customer_idx ON meters (customer_id);
-- One RS-485 address on one gateway belongs to one meter.
CREATE UNIQUE INDEX meters_bus_address_idx ON meters (host, port, unit_id) WHERE protocol = 'modbus';

-- Bumped by every inventory change so collectors notice without a restart.
CREATE TABLE inventory_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO inventory_version (version) VALUES (1);

-- No foreign key to meters: the writer resolves serials against meters itself, meters are
-- deactivated rather than deleted, and a per-row FK check would slow ingestion.
CREATE TABLE readings (
    meter_id           integer NOT NULL,
    ts                 timestamptz NOT NULL,
    energy_import_kwh  double precision NOT NULL,
    energy_export_kwh  double precision,
    power_w            double precision,
    voltage_v          double precision,
    current_a          double precision,
    frequency_hz       double precision,
    quality            text NOT NULL DEFAULT 'actual' CHECK (quality IN ('actual', 'estimated', 'edited')),
    source             text NOT NULL CHECK (source IN ('modbus', 'mqtt', 'backfill', 'manual')),
    received_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT readings_meter_ts_key UNIQUE (meter_id, ts)
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '7 days'));

-- Register resets (meter replaced or cleared): billing adds consumption on both sides.
CREATE TABLE meter_resets (
    meter_id        integer NOT NULL REFERENCES meters (id),
    ts              timestamptz NOT NULL,
    old_final_kwh   double precision,
    new_start_kwh   double precision NOT NULL DEFAULT 0,
    note            text NOT NULL DEFAULT '',
    PRIMARY KEY (meter_id, ts)
);

CREATE TABLE rejected_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    collector_id  text,
    source        text NOT NULL,          -- 'mqtt' or 'modbus'
    topic         text,
    meter_serial  text,
    reason        text NOT NULL,
    payload       bytea                   -- the raw message, cut at 64 KiB
);
CREATE INDEX rejected_messages_received_idx ON rejected_messages (received_at DESC);

CREATE TABLE collectors (
    id             text PRIMARY KEY,
    host           text NOT NULL,
    version        text NOT NULL,
    pid            integer,
    started_at     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    poll_interval  double precision,
    spool_depth    bigint NOT NULL DEFAULT 0,
    counters       jsonb NOT NULL DEFAULT '{}'
);

-- Every Modbus poll's outcome; kept for the engineers' page, old chunks dropped by the collector.
CREATE TABLE poll_outcomes (
    ts              timestamptz NOT NULL,
    collector_id    text NOT NULL,
    meter_id        integer NOT NULL,
    gateway         text NOT NULL,          -- host:port
    outcome         text NOT NULL CHECK (outcome IN ('ok', 'timeout', 'exception', 'decode_error',
                                                     'transport_error', 'backoff')),
    exception_code  smallint,
    latency_ms      real,
    detail          text
);
SELECT create_hypertable('poll_outcomes', by_range('ts', INTERVAL '1 day'));
CREATE INDEX poll_outcomes_meter_idx ON poll_outcomes (meter_id, ts DESC);

-- Per-meter health, upserted by collectors: cheaper for the engineers' page than scanning readings.
CREATE TABLE meter_status (
    meter_id              integer PRIMARY KEY REFERENCES meters (id),
    last_reading_ts       timestamptz,
    last_ok_at            timestamptz,
    last_error            text,
    last_error_at         timestamptz,
    consecutive_failures  integer NOT NULL DEFAULT 0
);

-- Tariffs are dated data: a new price table is an insert, not a code change.
CREATE TABLE tariff_tables (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tariff_group    text NOT NULL,
    effective_from  date NOT NULL,
    source          text NOT NULL,
    UNIQUE (tariff_group, effective_from)
);
CREATE TABLE tariff_tiers (
    tariff_id   integer NOT NULL REFERENCES tariff_tables (id) ON DELETE CASCADE,
    tier        smallint NOT NULL CHECK (tier >= 1),
    width_kwh   integer CHECK (width_kwh > 0),       -- NULL: unbounded (last tier)
    price_vnd   integer NOT NULL CHECK (price_vnd >= 0),
    PRIMARY KEY (tariff_id, tier)
);
CREATE TABLE vat_rates (
    effective_from  date PRIMARY KEY,
    rate            numeric(5, 4) NOT NULL CHECK (rate >= 0 AND rate < 1),
    source          text NOT NULL
);

CREATE TABLE bills (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id       bigint NOT NULL REFERENCES customers (id),
    meter_id          integer NOT NULL REFERENCES meters (id),
    period            text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    period_start      date NOT NULL,
    period_end        date NOT NULL,
    days              integer NOT NULL,
    start_index_kwh   numeric(14, 3) NOT NULL,
    end_index_kwh     numeric(14, 3) NOT NULL,
    consumption_kwh   bigint NOT NULL,
    amount_vnd        bigint NOT NULL,
    vat_vnd           bigint NOT NULL,
    total_vnd         bigint NOT NULL,
    estimated         boolean NOT NULL DEFAULT false,
    status            text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'issued')),
    breakdown         jsonb NOT NULL,
    computed_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (meter_id, period)
);
CREATE INDEX bills_customer_idx ON bills (customer_id, period DESC);
CREATE INDEX bills_period_idx ON bills (period);

CREATE TABLE staff_users (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('billing', 'engineer', 'admin')),
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,            -- staff username, 'cli', or a collector id
    action    text NOT NULL,            -- e.g. 'login', 'login_failed', 'export.readings'
    detail    jsonb NOT NULL DEFAULT '{}',
    row_count bigint
);
CREATE INDEX audit_log_ts_idx ON audit_log (ts DESC);
