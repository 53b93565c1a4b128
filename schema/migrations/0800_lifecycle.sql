-- Meter and bill lifecycle (contract §11, issue 13): replacements, decommissioning, changes of
-- owner, issued and corrected bills, holds, shared meters.

-- Meters: shared by several households (tier widths × households, Circular 16/2014 Art. 10 as
-- amended by Circular 09/2023), and retired (replaced or decommissioned) rather than deleted,
-- with their history kept. A replacement is a new meter row naming the one it replaces and the
-- instant of the swap; the swap itself is a meter_resets row of the new meter (the old
-- register's final value and the new one's start), read by the one register rule.
ALTER TABLE meters
    ADD COLUMN households        smallint NOT NULL DEFAULT 1 CHECK (households BETWEEN 1 AND 999),
    ADD COLUMN retired_at        timestamptz,
    ADD COLUMN retired_reason    text CHECK (retired_reason IN ('replaced', 'decommissioned')),
    ADD COLUMN replaces_meter_id integer REFERENCES meters (id),
    ADD COLUMN installed_at      timestamptz,
    ADD CONSTRAINT meters_retired_check CHECK ((retired_at IS NULL) = (retired_reason IS NULL)),
    ADD CONSTRAINT meters_replaces_check
        CHECK ((replaces_meter_id IS NULL) = (installed_at IS NULL));
CREATE UNIQUE INDEX meters_replaces_idx ON meters (replaces_meter_id)
    WHERE replaces_meter_id IS NOT NULL;
-- A new meter takes the old one's RS-485 address: only meters in service hold an address.
DROP INDEX meters_bus_address_idx;
CREATE UNIQUE INDEX meters_bus_address_idx ON meters (host, port, unit_id)
    WHERE protocol = 'modbus' AND retired_at IS NULL;

-- Changes of owner: the account's name from a date on. customers.name is the name in force now;
-- a bill carries the name in force on its last day (frozen when it is issued).
CREATE TABLE customer_names (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    bigint NOT NULL REFERENCES customers (id),
    effective_from date NOT NULL,
    name           text NOT NULL CHECK (name <> ''),
    previous_name  text NOT NULL,
    actor          text NOT NULL,
    note           text NOT NULL DEFAULT '',
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_names_idx ON customer_names (customer_id, effective_from);

-- The name of a customer's account on a day: the latest change on or before it, else the name
-- the first later change replaced, else the current name.
CREATE FUNCTION customer_name_on(customer bigint, day date) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT n.name FROM customer_names n WHERE n.customer_id = customer
            AND n.effective_from <= day ORDER BY n.effective_from DESC, n.id DESC LIMIT 1),
        (SELECT n.previous_name FROM customer_names n WHERE n.customer_id = customer
            AND n.effective_from > day ORDER BY n.effective_from, n.id LIMIT 1),
        (SELECT c.name FROM customers c WHERE c.id = customer))
$$;

-- Bills: versioned. Version 1 is the period's bill (draft until issued); a correction is a
-- further version, issued at once, holding the difference to the version before it (so the sum
-- of a meter's versions of a period is its corrected bill) and linked to it.
ALTER TABLE bills DROP CONSTRAINT bills_meter_id_period_key;
ALTER TABLE bills
    ADD COLUMN version           smallint NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN corrects_bill_id  bigint REFERENCES bills (id),
    ADD COLUMN correction_reason text,
    ADD COLUMN households        smallint NOT NULL DEFAULT 1 CHECK (households >= 1),
    ADD COLUMN held_reason       text,
    ADD COLUMN customer_name     text,
    ADD COLUMN issued_at         timestamptz,
    ADD COLUMN issued_by         text,
    ADD CONSTRAINT bills_version_link_check CHECK ((version = 1) = (corrects_bill_id IS NULL)),
    ADD CONSTRAINT bills_meter_period_version_key UNIQUE (meter_id, period, version);
-- The period's bill of a meter, as `doxa bills run` upserts it.
CREATE UNIQUE INDEX bills_meter_period_v1_key ON bills (meter_id, period) WHERE version = 1;
CREATE INDEX bills_held_idx ON bills (period) WHERE status = 'draft' AND held_reason IS NOT NULL;

-- An issued bill never changes: the database refuses, whatever the code does.
CREATE FUNCTION bills_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bill % (period %, version %) is issued and cannot change; issue a correction',
        OLD.id, OLD.period, OLD.version
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER bills_issued_are_final BEFORE UPDATE OR DELETE ON bills
    FOR EACH ROW WHEN (OLD.status = 'issued') EXECUTE FUNCTION bills_refuse_change();

CREATE FUNCTION bills_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM bills WHERE status = 'issued') THEN
        RAISE EXCEPTION 'bills holds issued bills and cannot be truncated'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER bills_no_truncate BEFORE TRUNCATE ON bills
    FOR EACH STATEMENT EXECUTE FUNCTION bills_refuse_truncate();
