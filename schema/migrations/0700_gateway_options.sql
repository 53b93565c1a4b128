-- Gateway quirks (contract §11b): how the collector talks to a meter's Modbus gateway. Held on
-- each Modbus meter row; the import refuses a file whose meters of one host:port disagree, or
-- that disagrees with the other meters of that gateway already stored.
--   framing           tcp (MBAP) or rtu-over-tcp (RTU frames with CRC over the TCP socket)
--   request_delay_ms  the pause between an answer and the next request on that gateway
--   timeout_ms        the per-request timeout on that gateway (NULL: the collector's default)
ALTER TABLE meters
    ADD COLUMN framing text NOT NULL DEFAULT 'tcp' CHECK (framing IN ('tcp', 'rtu-over-tcp')),
    ADD COLUMN request_delay_ms integer NOT NULL DEFAULT 0
        CHECK (request_delay_ms BETWEEN 0 AND 60000),
    ADD COLUMN timeout_ms integer CHECK (timeout_ms BETWEEN 1 AND 600000);
