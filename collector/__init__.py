"""The collector: Modbus polling and MQTT ingestion into TimescaleDB, exactly once.

The I/O shell around :mod:`protocols`: readings from both sources go through one batched,
idempotent write path (``writer.py``), a durable spool while the database is away (``spool.py``),
and MQTT acknowledgements only once a reading is durable (``pipeline.py``, ``mqtt.py``). Health
goes to the database for the engineers' page and to Prometheus (``health.py``, ``metrics.py``).
See ``collector/README.md``. Settings arrive as one :class:`CollectorConfig`; nothing here reads
the environment.
"""

from collector.config import CollectorConfig
from collector.service import Collector, CollectorError, run

__all__ = ["Collector", "CollectorConfig", "CollectorError", "run"]
