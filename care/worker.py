"""``doxa notify run``: deliver due notices until told to stop. I/O.

One loop per process: for each configured channel, claim a batch (``care.outbox.claim``), send
it over the channel (one SMTP connection for the whole batch), mark the outcomes; when nothing is
due, sleep until a ``NOTIFY doxa_outbox`` (sent by every enqueue) or ``idle`` seconds, whichever
comes first. Periodic jobs (the usage-threshold check) run every ``interval`` seconds.

The worker id is held as a PostgreSQL advisory lock for the worker's life: a second worker with
the same id refuses to start, so at start-up the rows this id left in ``sending`` belong to a dead
run and are released at once. The database going away is waited out (reconnect with back-off),
never a crash; SIGTERM ends the loop after the message in flight, and the claimed rows not yet
sent go back to ``pending``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from care import backoff, outbox
from care.channels import Channel, Outcome, Outgoing

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
PeriodicJob = Callable[[psycopg.Connection, datetime], object]
# Temporary failures in a row after which the rest of a batch is left for later: the server or
# gateway is down, and every message would wait out its timeout.
CHANNEL_DOWN_AFTER = 3


class WorkerIdTaken(RuntimeError):
    """Another live worker holds this id."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _lock_key(worker_id: str) -> int:
    digest = hashlib.sha256(b"doxa-notify\x1f" + worker_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class Periodic:
    """A job run every ``interval`` seconds (first at start-up)."""

    name: str
    interval: float
    job: PeriodicJob
    next_at: float = 0.0


@dataclass
class Worker:
    database_url: str
    channels: Mapping[str, Channel]
    worker_id: str
    clock: Clock = _utcnow
    batch: int = 100
    max_attempts: int = backoff.DEFAULT_MAX_ATTEMPTS
    lease: timedelta = outbox.DEFAULT_LEASE
    idle: float = 5.0
    periodic: Sequence[Periodic] = ()
    lock_wait: float = 10.0  # seconds to wait for the id of a run that is just dying
    sent: int = field(default=0, init=False)

    def drain_once(self, conn: psycopg.Connection, stop: threading.Event | None = None) -> int:
        """One batch per channel; returns how many rows were handled."""
        handled = 0
        for name, channel in self.channels.items():
            claimed = outbox.claim(conn, name, self.worker_id, self.clock(), self.batch,
                                   self.lease)  # fmt: skip
            results: list[tuple[outbox.Claimed, Outcome]] = []
            started = time.monotonic()
            budget = self.lease.total_seconds() / 2
            failing = 0
            for row in claimed:
                if (stop is not None and stop.is_set()) or failing >= CHANNEL_DOWN_AFTER:
                    break
                if time.monotonic() - started > budget:  # never near the end of the lease
                    break
                message = Outgoing(row.recipient, row.subject, row.body, row.dedupe_key)
                outcome = channel.send(message)
                results.append((row, outcome))
                failing = failing + 1 if outcome.status == "retry" else 0
            outbox.mark(conn, results, self.worker_id, self.clock(), self.max_attempts)
            untried = [row.id for row in claimed[len(results) :]]
            if untried:  # due again at once, their try not counted
                outbox.release(conn, self.worker_id, untried)
            handled += len(results)
            self.sent += sum(1 for _, o in results if o.status == "sent")
        return handled

    def close(self) -> None:
        """Close the channels' connections (an idle worker holds none open)."""
        for channel in self.channels.values():
            channel.close()

    def _run_periodic(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        for job in self.periodic:
            if now >= job.next_at:
                job.next_at = now + job.interval
                try:
                    job.job(conn, self.clock())
                except psycopg.OperationalError:
                    raise
                except Exception:  # one bad run of a periodic job must not stop delivery
                    log.exception("periodic job %s failed", job.name)

    def run(self, stop: threading.Event, ready: Callable[[], None] | None = None) -> None:
        """Deliver until ``stop`` is set; database outages are waited out."""
        delay = 0.5
        while not stop.is_set():
            try:
                self._serve(stop, ready)
                return
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying in %.0f s",
                            str(exc).strip().splitlines()[:1], delay)  # fmt: skip
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
            finally:
                self.close()

    def _lock_id(self, conn: psycopg.Connection, stop: threading.Event) -> None:
        """Hold this worker id; a run that just died may need a moment to let it go."""
        deadline = time.monotonic() + self.lock_wait
        while True:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s)", (_lock_key(self.worker_id),)
            ).fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline or stop.is_set():
                raise WorkerIdTaken(f"another notifier is running with id {self.worker_id!r}")
            stop.wait(0.2)

    def _serve(self, stop: threading.Event, ready: Callable[[], None] | None) -> None:
        with (
            psycopg.connect(self.database_url, autocommit=True) as conn,
            psycopg.connect(self.database_url, autocommit=True) as listener,
        ):
            self._lock_id(conn, stop)
            released = outbox.release(conn, self.worker_id)
            if released:
                log.info("%d notice(s) left in flight by a previous run are due again", released)
            listener.execute(f"LISTEN {outbox.WAKE_CHANNEL}")
            if ready is not None:
                ready()
                ready = None
            while not stop.is_set():
                self._run_periodic(conn)
                if self.drain_once(conn, stop):
                    continue
                self.close()  # SMTP servers drop idle sessions anyway
                # Idle: wait for an enqueue's NOTIFY, the next periodic job, or stop.
                deadline = time.monotonic() + self.idle
                while not stop.is_set() and time.monotonic() < deadline:
                    woke = False
                    for _ in listener.notifies(timeout=0.5, stop_after=1):
                        woke = True
                    if woke:
                        break
