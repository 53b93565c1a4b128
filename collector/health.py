"""Health: poll outcomes buffered for the database, and the heartbeat.

Outcomes arrive from the pollers as they happen and are written in bulk at each heartbeat, with
the collector's row in ``collectors`` and one ``collector_heartbeats`` row holding what happened
since the previous successful heartbeat (deltas). While the database is away the deltas simply
grow, and outcomes wait in a bounded buffer (the oldest are dropped first: they are diagnostics,
not readings).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime

import psycopg

from collector.metrics import HEARTBEAT_FIELDS, Stats
from collector.modbus import PollOutcome
from collector.store import Heartbeat, Store

log = logging.getLogger(__name__)


class Health:
    def __init__(
        self,
        *,
        store: Store,
        stats: Stats,
        collector_id: str,
        host: str,
        version: str,
        started_at: datetime,
        poll_interval: float | None,
        spool_depth: Callable[[], int],
        max_outcomes: int = 100_000,
    ) -> None:
        self.store = store
        self.stats = stats
        self.collector_id = collector_id
        self.host = host
        self.version = version
        self.started_at = started_at
        self.poll_interval = poll_interval
        self.spool_depth = spool_depth
        self._outcomes: deque[PollOutcome] = deque()
        self._max_outcomes = max_outcomes
        self._lock = threading.Lock()
        self._sent: dict[str, int] = {}
        self._healthy = True

    def record(self, outcome: PollOutcome) -> None:
        """A poll's outcome (any thread)."""
        self.stats.polls.labels(outcome.outcome).inc()
        if outcome.outcome == "ok":
            self.stats.add(polls_ok=1)
            if outcome.latency_ms is not None:
                self.stats.poll_latency.observe(outcome.latency_ms / 1000)
        elif outcome.outcome == "backoff":
            self.stats.add(polls_skipped=1)
        else:
            self.stats.add(polls_failed=1)
        with self._lock:
            if len(self._outcomes) >= self._max_outcomes:
                self._outcomes.popleft()
                self.stats.add(outcomes_dropped=1)
            self._outcomes.append(outcome)

    def beat(self) -> bool:
        """Write pending outcomes and a heartbeat (blocking; run it off the event loop).
        Returns whether the database took them."""
        with self._lock:
            outcomes = list(self._outcomes)
            self._outcomes.clear()
        try:
            self.store.write_outcomes(outcomes)
        except psycopg.Error as exc:
            with self._lock:  # put them back, oldest first, within the bound
                self._outcomes.extendleft(reversed(outcomes))
                while len(self._outcomes) > self._max_outcomes:
                    self._outcomes.popleft()
            self._unhealthy(exc)
            return False
        counters = self.stats.snapshot()
        deltas = {k: counters.get(k, 0) - self._sent.get(k, 0) for k in HEARTBEAT_FIELDS}
        depth = self.spool_depth()
        beat = Heartbeat(
            collector_id=self.collector_id,
            host=self.host,
            version=self.version,
            pid=os.getpid(),
            started_at=self.started_at,
            poll_interval=self.poll_interval,
            spool_depth=depth,
            counters={**counters, "spool_depth": depth},
            deltas=deltas,
        )
        try:
            self.store.heartbeat(beat)
        except psycopg.Error as exc:
            self._unhealthy(exc)
            return False
        self._sent = {k: counters.get(k, 0) for k in HEARTBEAT_FIELDS}
        if not self._healthy:
            log.info("heartbeat written again")
            self._healthy = True
        return True

    def _unhealthy(self, exc: psycopg.Error) -> None:
        if self._healthy:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("heartbeat not written (%s); will retry", first)
            self._healthy = False
