"""How often a meter is expected to report: the defaults of ``DOXA_POLL_INTERVAL`` and
``DOXA_MQTT_INTERVAL``, by which the engineers' page calls a meter stale (after two intervals) and
counts a day's read completeness, defined once for the settings and the site."""

from __future__ import annotations

POLL_INTERVAL_S = 60.0  # Modbus: seconds between two polls of a gateway
MQTT_INTERVAL_S = 300.0  # MQTT: seconds between two readings (Tasmota's default TelePeriod)
