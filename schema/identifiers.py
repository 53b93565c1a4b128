"""The shapes of the identifiers users type and the database keeps, defined once: the inventory
import, the customer lookup form, the staff forms and ``doxa collect`` all check against these
(the migrations' CHECK constraints say the same of what is stored)."""

from __future__ import annotations

import re

# EVN style, e.g. PB01010012345: 2 letters, a 4-character unit code, 5–7 digits (contract §6).
CUSTOMER_CODE = re.compile(r"^[A-Z]{2}[A-Z0-9]{4}[0-9]{5,7}$")
# A serial is one MQTT topic level, so no '/', '+' or '#'.
SERIAL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# Names a collector's heartbeat row, its MQTT client id and its spool directory.
COLLECTOR_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The start of a customer code (a branch, e.g. PB0101), as the exports filter on it.
CUSTOMER_PREFIX = re.compile(r"^[A-Z0-9]{1,13}$")
