-- Planned outages (contract §13, issue 16) and the notices chosen for them.
--
-- An outage covers the customers of one province, optionally only those whose customer code starts
-- with `customer_prefix` (a branch: the code's unit part, e.g. PB0101) or only the customers listed
-- in `customer_codes` (never both). Times are instants; `state` is `planned` or `cancelled` (an
-- outage is never deleted). Every edit that changes what a customer would be told bumps `version`,
-- so customers already told are told again (servicedesk/outages.py, "notices").
CREATE TABLE planned_outages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    province         text NOT NULL CHECK (length(province) BETWEEN 1 AND 100),
    customer_prefix  text CHECK (customer_prefix ~ '^[A-Z0-9]{1,13}$'),
    customer_codes   text[] NOT NULL DEFAULT '{}' CHECK (cardinality(customer_codes) <= 1000),
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    state            text NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'cancelled')),
    version          integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    cancel_note      text CHECK (length(cancel_note) <= 1000),
    CHECK (ends_at > starts_at),
    CHECK (customer_prefix IS NULL OR cardinality(customer_codes) = 0)
);
CREATE INDEX planned_outages_province_idx ON planned_outages (province, ends_at);
CREATE INDEX planned_outages_upcoming_idx ON planned_outages (ends_at) WHERE state = 'planned';

-- One row per notice chosen for a customer about an outage: `planned` (24 hours ahead),
-- `changed` (the outage was edited after they were told), `cancelled` (cancelled, or no longer
-- covering them, after they were told). The primary key makes choosing idempotent: two runs at
-- once insert a notice once, and only the run that inserted it hands it to the outbox.
CREATE TABLE outage_notices (
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    outage_id       bigint NOT NULL REFERENCES planned_outages (id),
    customer_id     bigint NOT NULL REFERENCES customers (id),
    outage_version  integer NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('planned', 'changed', 'cancelled')),
    chosen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (outage_id, customer_id, outage_version, kind)
);
CREATE INDEX outage_notices_customer_idx ON outage_notices (customer_id);
