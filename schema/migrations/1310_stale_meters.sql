-- /ops's stale-meter count and list as index range scans (issue 19): flat in the fleet's size.
--
-- A meter is stale when it has not been heard from (its last reading, else when it was added)
-- for more than two of its expected intervals. The interval is not stored: it depends on the
-- site's settings (DOXA_MQTT_INTERVAL, DOXA_POLL_INTERVAL) and on the collectors' poll
-- intervals, which change. What is stored is the meter's *cadence*, the key that decides which
-- interval applies (schema.rollup.INTERVAL_SQL): 'mqtt' for an MQTT meter, 'modbus' for a
-- Modbus meter polled by every collector, 'modbus:<collector id>' for one assigned to a
-- collector. /ops computes one cut-off instant per cadence from the current settings and counts,
-- per cadence, an index range: "heard before the cut-off". A settings change applies at once.
--
-- * Meters read at least once: meter_status carries the meter's cadence and active flag beside
--   last_reading_ts (the writer's upsert supplies them; the triggers below keep them in step
--   with meters); meter_status_stale_idx orders the active ones by (cadence, last reading).
-- * Meters never read: meters.ever_read is false until meter_status first gets a reading;
--   meters_unread_idx orders the active never-read ones by (cadence, created_at).

CREATE FUNCTION meter_cadence(protocol text, collector_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN protocol = 'mqtt' THEN 'mqtt'
                      WHEN collector_id IS NULL THEN protocol
                      ELSE protocol || ':' || collector_id END $$;

ALTER TABLE meter_status ADD COLUMN cadence text, ADD COLUMN active boolean;
UPDATE meter_status s SET cadence = meter_cadence(m.protocol, m.collector_id), active = m.active
  FROM meters m WHERE m.id = s.meter_id;

ALTER TABLE meters ADD COLUMN ever_read boolean NOT NULL DEFAULT false;
UPDATE meters m SET ever_read = true
 WHERE EXISTS (SELECT 1 FROM meter_status s WHERE s.meter_id = m.id
                AND s.last_reading_ts IS NOT NULL);

-- The stale list now walks meter_status_stale_idx (per cadence); this one is not used any more.
DROP INDEX meter_status_last_reading_idx;
CREATE INDEX meter_status_stale_idx ON meter_status (cadence, last_reading_ts, meter_id)
    WHERE active AND last_reading_ts IS NOT NULL;
CREATE INDEX meters_unread_idx ON meters (meter_cadence(protocol, collector_id), created_at, id)
    WHERE active AND NOT ever_read;

-- A row given a reading without its cadence (a hand-written INSERT; the writer supplies it, so
-- this does not fire for the writer's rows): take it from meters.
CREATE FUNCTION meter_status_fill_cadence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT meter_cadence(m.protocol, m.collector_id), m.active INTO NEW.cadence, NEW.active
      FROM meters m WHERE m.id = NEW.meter_id;
    RETURN NEW;
END $$;
CREATE TRIGGER meter_status_cadence BEFORE INSERT OR UPDATE OF last_reading_ts ON meter_status
    FOR EACH ROW WHEN (NEW.cadence IS NULL AND NEW.last_reading_ts IS NOT NULL)
    EXECUTE FUNCTION meter_status_fill_cadence();

-- meters.ever_read follows meter_status.last_reading_ts: set by a meter's first reading (once
-- in its life; later upserts do not fire these), cleared if its status goes.
CREATE FUNCTION meter_status_ever_read() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE meters SET ever_read = false WHERE id = OLD.meter_id AND ever_read;
        RETURN OLD;
    END IF;
    UPDATE meters SET ever_read = (NEW.last_reading_ts IS NOT NULL)
     WHERE id = NEW.meter_id AND ever_read IS DISTINCT FROM (NEW.last_reading_ts IS NOT NULL);
    RETURN NEW;
END $$;
CREATE TRIGGER meter_status_first_reading AFTER INSERT ON meter_status
    FOR EACH ROW WHEN (NEW.last_reading_ts IS NOT NULL) EXECUTE FUNCTION meter_status_ever_read();
CREATE TRIGGER meter_status_reading_change AFTER UPDATE OF last_reading_ts ON meter_status
    FOR EACH ROW WHEN ((OLD.last_reading_ts IS NULL) <> (NEW.last_reading_ts IS NULL))
    EXECUTE FUNCTION meter_status_ever_read();
CREATE TRIGGER meter_status_gone AFTER DELETE ON meter_status
    FOR EACH ROW WHEN (OLD.last_reading_ts IS NOT NULL) EXECUTE FUNCTION meter_status_ever_read();

CREATE FUNCTION meter_status_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meters SET ever_read = false WHERE ever_read;
    RETURN NULL;
END $$;
CREATE TRIGGER meter_status_truncate AFTER TRUNCATE ON meter_status
    FOR EACH STATEMENT EXECUTE FUNCTION meter_status_truncated();

-- A meter deactivated, reactivated, or moved to another collector or protocol: its status row
-- follows (one row per changed meter; imports that change nothing of these do not fire it).
CREATE FUNCTION meters_status_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meter_status SET cadence = meter_cadence(NEW.protocol, NEW.collector_id),
                            active = NEW.active
     WHERE meter_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER meters_status_follow AFTER UPDATE OF active, protocol, collector_id ON meters
    FOR EACH ROW WHEN (OLD.active IS DISTINCT FROM NEW.active
                       OR OLD.protocol IS DISTINCT FROM NEW.protocol
                       OR OLD.collector_id IS DISTINCT FROM NEW.collector_id)
    EXECUTE FUNCTION meters_status_follow();
