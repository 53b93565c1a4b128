-- Billing (contract §8): the residential tariff tables and the VAT periods as dated data, and the
-- list of bills that could not be computed.
--
-- A new tariff is one statement, no code change, e.g. a five-tier table (Decision
-- 14/2025/QĐ-TTg: 0–100, 101–200, 201–400, 401–700, 701+ kWh) once its prices are published:
--   WITH t AS (INSERT INTO tariff_tables (tariff_group, effective_from, source)
--              VALUES ('residential', 'YYYY-MM-DD', 'Decision …') RETURNING id)
--   INSERT INTO tariff_tiers (tariff_id, tier, width_kwh, price_vnd)
--   SELECT t.id, v.tier, v.width, v.price FROM t,
--     (VALUES (1, 100, …), (2, 100, …), (3, 200, …), (4, 300, …), (5, NULL, …)) v(tier, width, price);

-- Residential retail prices, VND/kWh before VAT, tiers 0–50, 51–100, 101–200, 201–300, 301–400, 401+.
WITH t AS (
    INSERT INTO tariff_tables (tariff_group, effective_from, source)
    VALUES ('residential', '2024-10-11',
            'Ministry of Industry and Trade, Decision 2699/QĐ-BCT of 2024-10-11 (in force 2024-10-11)')
    RETURNING id
)
INSERT INTO tariff_tiers (tariff_id, tier, width_kwh, price_vnd)
SELECT t.id, v.tier, v.width, v.price
FROM t, (VALUES (1, 50, 1893), (2, 50, 1956), (3, 100, 2271),
                (4, 100, 2860), (5, 100, 3197), (6, NULL, 3302)) AS v (tier, width, price);

WITH t AS (
    INSERT INTO tariff_tables (tariff_group, effective_from, source)
    VALUES ('residential', '2025-05-10',
            'Ministry of Industry and Trade, Decision 1279/QĐ-BCT of 2025-05-09 (in force 2025-05-10)')
    RETURNING id
)
INSERT INTO tariff_tiers (tariff_id, tier, width_kwh, price_vnd)
SELECT t.id, v.tier, v.width, v.price
FROM t, (VALUES (1, 50, 1984), (2, 50, 2050), (3, 100, 2380),
                (4, 100, 2998), (5, 100, 3350), (6, NULL, 3460)) AS v (tier, width, price);

-- VAT on electricity: 10 %, except 8 % from 2025-07-01 to 2026-12-31. The first row starts with
-- the first seeded tariff table; earlier periods are not billed by Doxa.
INSERT INTO vat_rates (effective_from, rate, source) VALUES
    ('2024-10-11', 0.10,
     'Law on Value-Added Tax 13/2008/QH12 of 2008-06-03, standard rate 10 %'),
    ('2025-07-01', 0.08,
     'Resolution 204/2025/QH15 of 2025-06-17 and Decree 174/2025/NĐ-CP of 2025-06-30: '
     'rate cut from 10 % to 8 % from 2025-07-01 to 2026-12-31'),
    ('2027-01-01', 0.10,
     'End of the cut of Resolution 204/2025/QH15; Law on Value-Added Tax 48/2024/QH15 of '
     '2024-11-26, standard rate 10 %');

-- Meters whose bill could not be computed for a period, and why (no reading on one side of a
-- boundary, no tariff in force…). Rewritten by every `doxa bills run` of the period; a row
-- disappears once the bill is computed.
CREATE TABLE bill_skips (
    meter_id     integer NOT NULL REFERENCES meters (id),
    period       text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    customer_id  bigint NOT NULL REFERENCES customers (id),
    reason       text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, period)
);
CREATE INDEX bill_skips_period_idx ON bill_skips (period);
