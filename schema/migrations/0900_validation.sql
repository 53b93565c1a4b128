-- Validation, estimation and editing (contract §12), on top of reading_exceptions (0790).
--
-- * validation_rules: each rule's name, severity and whether it runs (data, not code);
-- * validation_thresholds: every number a rule compares against, with its unit and why;
-- * meter_model_limits: the physical maximum of each meter model (the spike rule);
-- * meter_multiplier_changes: every change of meters.multiplier, written by a trigger (the
--   multiplier rule asks for a reading at each change);
-- * reading_daily_use: each meter's use per local day as validation last computed it (the
--   history the high/low use rules compare with, without rescanning eight weeks of readings);
-- * reading_versions: every version of a reading that was edited or estimated, with who, when
--   and why (the first version of an edited reading is its original value).

CREATE TABLE validation_rules (
    rule         text PRIMARY KEY,
    severity     text NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    enabled      boolean NOT NULL DEFAULT true,
    description  text NOT NULL
);
INSERT INTO validation_rules (rule, severity, description) VALUES
    ('rollback', 'error', 'the register fell between two readings and no replacement is recorded'),
    ('spike', 'error', 'the register climbed faster than the meter model''s rated maximum power'),
    ('high_use', 'warning', 'a day''s use far above the average of the same weekday over the last 4–8 weeks'),
    ('low_use', 'warning', 'a day''s use far below the average of the same weekday over the last 4–8 weeks'),
    ('zero_use', 'warning', 'the meter kept reading but its register did not move for N days'),
    ('gap', 'warning', 'expected readings are missing between two readings'),
    ('future', 'error', 'a reading time more than 10 minutes after it was received'),
    ('multiplier', 'error', 'the multiplier changed with no reading near the change');

CREATE TABLE validation_thresholds (
    name         text PRIMARY KEY,
    value        double precision NOT NULL,
    unit         text NOT NULL,
    description  text NOT NULL
);
INSERT INTO validation_thresholds (name, value, unit, description) VALUES
    ('expected_interval_s', 1800, 's',
     'how often a meter is expected to read: EVN collects remote meters every 30 minutes'),
    ('gap_missing_intervals', 1, 'intervals',
     'a gap is at least this many expected readings missing between two readings'),
    ('rollback_tolerance_kwh', 0.01, 'kWh',
     'a fall of the register up to this much is rounding, not a rollback'),
    ('spike_tolerance_pct', 0, '%',
     'a climb is a spike above the model''s maximum power plus this percentage'),
    ('history_weeks', 8, 'weeks', 'how many previous same weekdays the high/low use rules average'),
    ('history_min_days', 4, 'days', 'fewer same weekdays with use than this: no high/low judgement'),
    ('high_use_pct', 200, '%', 'high use: more than this percentage above the history average'),
    ('low_use_pct', 70, '%', 'low use: more than this percentage below the history average'),
    ('use_min_kwh_per_day', 1, 'kWh/day',
     'no high/low judgement on a history averaging less than this, nor for a smaller difference'),
    ('coverage_min_hours', 12, 'h',
     'a day is judged on its use only when readings cover at least this many hours of it'),
    ('zero_use_days', 3, 'days', 'zero use: the register did not move over this many days running'),
    ('zero_use_tolerance_kwh', 0.001, 'kWh', 'a day using no more than this counts as no use'),
    ('future_tolerance_s', 600, 's',
     'a reading time this far after its arrival (or the run''s clock) is in the future'),
    ('multiplier_window_s', 300, 's',
     'a multiplier change needs a reading at most this far from it'),
    ('estimate_linear_max_s', 3600, 's',
     'gaps up to this long are estimated linearly (IESO practice: an hour); longer ones from the profile'),
    ('estimate_profile_weeks', 3, 'weeks',
     'the profile of a long gap: the same weekday and time of this many previous weeks');

-- The physical maximum of a meter: the rated maximum current × nominal voltage × phases. The
-- 'default' row stands for any model not listed (MQTT meters name none).
CREATE TABLE meter_model_limits (
    model          text PRIMARY KEY,
    max_current_a  double precision NOT NULL CHECK (max_current_a > 0),
    voltage_v      double precision NOT NULL CHECK (voltage_v > 0),
    phases         smallint NOT NULL CHECK (phases IN (1, 3)),
    source         text NOT NULL
);
INSERT INTO meter_model_limits (model, max_current_a, voltage_v, phases, source) VALUES
    ('sdm120', 100, 230, 1, 'Eastron SDM120 data sheet: Imax 100 A, 230 V'),
    ('sdm630', 100, 230, 3, 'Eastron SDM630 data sheet: Imax 100 A per phase, 230 V L-N'),
    ('ddsu666', 80, 230, 1, 'CHINT DDSU666 data sheet: 5(80) A version, 230 V'),
    ('default', 100, 230, 3, 'assumed: a direct-connected three-phase 100 A meter');

CREATE TABLE meter_multiplier_changes (
    meter_id        integer NOT NULL REFERENCES meters (id),
    changed_at      timestamptz NOT NULL,
    old_multiplier  numeric(10, 3) NOT NULL,
    new_multiplier  numeric(10, 3) NOT NULL,
    PRIMARY KEY (meter_id, changed_at)
);

CREATE FUNCTION record_multiplier_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO meter_multiplier_changes (meter_id, changed_at, old_multiplier, new_multiplier)
    VALUES (NEW.id, now(), OLD.multiplier, NEW.multiplier)
    ON CONFLICT (meter_id, changed_at) DO UPDATE SET new_multiplier = EXCLUDED.new_multiplier;
    RETURN NEW;
END $$;
CREATE TRIGGER meters_multiplier_change AFTER UPDATE OF multiplier ON meters
    FOR EACH ROW WHEN (OLD.multiplier IS DISTINCT FROM NEW.multiplier)
    EXECUTE FUNCTION record_multiplier_change();

CREATE TABLE reading_daily_use (
    meter_id     integer NOT NULL,
    day          date NOT NULL,             -- local day (DOXA_TIMEZONE)
    use_kwh      double precision NOT NULL, -- register use over the clean intervals ending that day
    hours        double precision NOT NULL, -- hours those intervals cover
    first_ts     timestamptz NOT NULL,
    last_ts      timestamptz NOT NULL,
    last_kwh     double precision NOT NULL,  -- the register at last_ts
    readings     integer NOT NULL,
    PRIMARY KEY (meter_id, day)
);
CREATE INDEX reading_daily_use_day_idx ON reading_daily_use (day);

CREATE TABLE reading_versions (
    meter_id           integer NOT NULL,
    ts                 timestamptz NOT NULL,
    version            integer NOT NULL CHECK (version >= 1),
    energy_import_kwh  double precision NOT NULL,
    quality            text NOT NULL,
    source             text NOT NULL,
    actor              text NOT NULL,       -- a staff username, 'cli', or the source for an original
    changed_at         timestamptz NOT NULL,
    reason             text NOT NULL,
    PRIMARY KEY (meter_id, ts, version)
);

-- One exception per meter, rule and start: re-running validation updates it instead of adding
-- another, and an accepted one stays accepted.
CREATE UNIQUE INDEX reading_exceptions_key ON reading_exceptions (meter_id, rule, ts_from);
CREATE INDEX reading_exceptions_open_rule_idx ON reading_exceptions (rule) WHERE state = 'open';
