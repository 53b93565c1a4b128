"""From intake to durable: batching, parsing, writing or spooling, then acknowledging.

Both sources hand their input to :class:`Pipeline` from their own threads (paho's network
thread, the asyncio loop of the pollers). One flusher thread takes a batch when ``batch_size``
items wait or the oldest is ``batch_interval`` old — everything waiting, up to ``max_batch``, so
a writer that fell behind catches up with fewer, larger commits — parses the MQTT payloads, and
makes the batch durable:

* the spool first, if it holds anything (so batches reach the database in arrival order), then
  the batch itself, through the :class:`~collector.writer.Writer`;
* if the database is unavailable, the batch is appended to the spool (fsync'd) instead, and the
  database is tried again every ``db_retry_interval``;
* if the spool is full too (or the disk refuses the write), the batch waits, unacknowledged:
  the broker keeps those messages (and stops sending more once its in-flight window is used), so
  nothing is lost. Modbus readings beyond ``max_pending_readings`` are dropped and counted (a
  meter's register is cumulative: a missed poll costs resolution, not energy).

Only then are the batch's MQTT messages acknowledged, in arrival order.

**A batch the flusher took is never dropped.** A writer failure of any other kind than an
unreachable database (a bug, an unexpected driver error) sends the batch to the spool like an
outage does, and the database is tried again later; any other failure of the flusher puts the
batch back at the head of the inbox, in order, and it is tried again after ``db_retry_interval``.
Both are counted (``batches_requeued``) and logged once per transition (first failure, recovery).
Only when the same failure repeats ``fatal_after`` times in a row does the flusher give up: it
stops with :attr:`Pipeline.fatal` set to a one-line cause, acknowledges nothing more (the broker
keeps those messages), and the collector exits with status 1.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from collector.metrics import Stats
from collector.spool import Spool, SpoolFull, SpoolWriteError
from collector.units import Unit
from collector.writer import DatabaseUnavailable, Writer, WriteResult
from protocols.errors import PayloadError
from protocols.payloads import parse_payload
from protocols.reading import Reading

log = logging.getLogger(__name__)

AckFn = Callable[[Sequence[Any]], None]


class _Message:
    """An MQTT message as received (parsed later, in the flusher)."""

    __slots__ = ("fmt", "payload", "reason", "serial", "token", "topic")

    def __init__(
        self,
        topic: str,
        serial: str | None,
        fmt: str | None,
        payload: bytes,
        token: Any,
        reason: str | None,
    ) -> None:
        self.topic = topic
        self.serial = serial
        self.fmt = fmt
        self.payload = payload
        self.token = token
        self.reason = reason


class _Fatal(Exception):
    """The same failure repeated ``fatal_after`` times: the flusher gives up (one-line cause)."""


class Pipeline:
    """Batches intake into durable writes; see the module docstring."""

    def __init__(
        self,
        *,
        writer: Writer,
        spool: Spool,
        stats: Stats,
        timezone: ZoneInfo,
        batch_size: int,
        max_batch: int,
        batch_interval: float,
        db_retry_interval: float,
        max_pending_readings: int,
        ack: AckFn | None = None,
        fatal_after: int = 20,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.writer = writer
        self.spool = spool
        self.stats = stats
        self.timezone = timezone
        self.batch_size = batch_size
        self.max_batch = max(batch_size, max_batch)
        self.batch_interval = batch_interval
        self.db_retry_interval = db_retry_interval
        self.max_pending_readings = max_pending_readings
        self.ack: AckFn = ack or (lambda tokens: None)
        self._cond = threading.Condition()
        self._inbox: list[_Message | Reading] = []
        self._oldest = 0.0  # monotonic time the oldest inbox item arrived
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._db_retry_at = 0.0  # monotonic; 0: the database is believed up
        self._db_down = False  # for logging the transitions once
        self._spool_full_since: float | None = None
        self._dropping = False
        self.fatal_after = max(1, fatal_after)
        self.on_fatal: Callable[[str], None] = on_fatal or (lambda cause: None)
        self.fatal: str | None = None  # set once the flusher gave up: the one-line cause
        self._failures = 0  # flusher failures in a row (not outages: those spool)
        self._writer_failing = False  # the writer raised something other than an outage
        self._writer_failures = 0  # such failures in a row
        # A test hook: called with each batch the flusher took, before it is built; an exception
        # from it is a flusher failure (the batch goes back to the head of the inbox).
        self.fault_hook: Callable[[list[_Message | Reading]], None] | None = None

    # -- intake (any thread) -------------------------------------------------------------------

    def submit_message(
        self,
        topic: str,
        serial: str | None,
        fmt: str | None,
        payload: bytes,
        token: Any,
        reason: str | None = None,
    ) -> None:
        """An MQTT message; ``reason`` set means it is already known to be unusable."""
        self._put(_Message(topic, serial, fmt, payload, token, reason))

    def submit_readings(self, readings: Sequence[Reading]) -> bool:
        """Modbus readings; False (and counted as dropped) when too much is already waiting."""
        with self._cond:
            if len(self._inbox) + len(readings) > self.max_pending_readings:
                dropped = True
            else:
                dropped = False
                for reading in readings:
                    self._put_locked(reading)
        if dropped:
            self.stats.dropped.inc(len(readings))
            self.stats.add(readings_dropped=len(readings))
            if not self._dropping:
                self._dropping = True
                log.error(
                    "dropping Modbus readings: %d wait already and neither the database nor the "
                    "spool takes them (counted in readings_dropped)",
                    self.max_pending_readings,
                )
        elif self._dropping:
            self._dropping = False
            log.warning("Modbus readings are accepted again")
        return not dropped

    def _put(self, item: _Message | Reading) -> None:
        with self._cond:
            self._put_locked(item)

    def _put_locked(self, item: _Message | Reading) -> None:
        if not self._inbox:
            self._oldest = time.monotonic()
            self._inbox.append(item)
            self._cond.notify()
            return
        self._inbox.append(item)
        if len(self._inbox) == self.batch_size:
            self._cond.notify()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="doxa-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Flush everything received so far, acknowledge it, and end the flusher thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the flusher did not finish within %.0f s", timeout)
        self.writer.close()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._inbox)

    # -- the flusher thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                if batch:
                    self._deliver(batch)
                elif self.spool and self._db_due():
                    self._replay_only()
            except _Fatal as exc:
                if batch:
                    self._requeue(batch)
                self.fatal = str(exc)
                self._give_up()
                return
            except Exception as exc:  # the outermost loop of the flusher: nothing taken is lost
                if batch:
                    self._requeue(batch)
                if not self._flusher_failed(exc):
                    return
                continue
            if self._failures:
                log.warning("the flusher works again after %d failure(s)", self._failures)
                self._failures = 0

    def _requeue(self, batch: list[_Message | Reading]) -> None:
        """Put a taken batch back at the head of the inbox (arrival order kept)."""
        with self._cond:
            self._inbox[:0] = batch
            self._oldest = time.monotonic()
        self.stats.batches_requeued.inc()
        self.stats.add(batches_requeued=1)

    def _flusher_failed(self, exc: Exception) -> bool:
        """Count and log (once per transition) a failure; False when it is fatal."""
        self._failures += 1
        self.stats.add(flusher_errors=1)
        cause = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        if self._failures == 1:
            log.exception(
                "flusher error; the batch was put back and is tried again in %.1f s",
                self.db_retry_interval,
            )
        if self._failures >= self.fatal_after:
            self.fatal = f"the flusher failed {self._failures} times in a row ({cause})"
            self._give_up()
            return False
        with self._cond:
            if not self._stopping:
                self._cond.wait(self.db_retry_interval)
        return True

    def _give_up(self) -> None:
        """A fatal error: acknowledge nothing more. MQTT messages not yet acknowledged stay with
        the broker; Modbus readings still in memory go to the spool if it takes them."""
        cause = self.fatal or "the flusher stopped"
        with self._cond:
            waiting = list(self._inbox)
            self._inbox.clear()
            self._stopping = True
        readings = [item for item in waiting if isinstance(item, Reading)]
        lost = 0
        if readings:
            try:
                self.spool.append(
                    [Unit("modbus", (r,), serial=r.serial, received_at=datetime.now(UTC))
                     for r in readings]
                )  # fmt: skip
            except Exception:
                lost = len(readings)
        log.critical(
            "%s; stopping: %d MQTT message(s) stay with the broker, %d Modbus reading(s) lost",
            cause,
            len(waiting) - len(readings),
            lost,
        )
        self.on_fatal(cause)

    def _next_batch(self) -> list[_Message | Reading] | None:
        """The next batch; [] when it is time to retry the spool with nothing new to write; None
        when stopping and everything received has been taken."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._inbox:
                    age = now - self._oldest
                    if (
                        len(self._inbox) >= self.batch_size
                        or age >= self.batch_interval
                        or self._stopping
                    ):
                        batch = self._inbox[: self.max_batch]
                        del self._inbox[: self.max_batch]
                        self._oldest = now
                        return batch
                    timeout: float | None = self.batch_interval - age
                else:
                    if self._stopping:
                        return None
                    if self.spool and self._db_due():
                        return []
                    timeout = self.db_retry_interval if self.spool else None
                self._cond.wait(timeout)

    def _build(self, batch: list[_Message | Reading]) -> tuple[list[Unit], list[Any]]:
        now = datetime.now(UTC)
        units: list[Unit] = []
        tokens: list[Any] = []
        received = 0
        tz = self.timezone
        for item in batch:
            if isinstance(item, Reading):
                units.append(Unit("modbus", (item,), serial=item.serial, received_at=now))
                continue
            received += 1
            tokens.append(item.token)
            if item.reason is not None or item.fmt is None or item.serial is None:
                reason = item.reason or "the topic matches no subscription"
                units.append(Unit("mqtt", (), item.topic, item.serial, item.payload, reason, now))
                continue
            try:
                readings = parse_payload(item.fmt, item.serial, item.payload, tz=tz, now=now)
            except PayloadError as exc:
                units.append(
                    Unit("mqtt", (), item.topic, item.serial, item.payload, exc.reason, now)
                )
                continue
            except Exception as exc:  # a parser bug must not hold the batch: reject the message
                log.exception("the %s parser failed on a message from %s", item.fmt, item.topic)
                reason = f"the {item.fmt} parser failed ({type(exc).__name__})"
                units.append(Unit("mqtt", (), item.topic, item.serial, item.payload, reason, now))
                continue
            units.append(Unit("mqtt", readings, item.topic, item.serial, item.payload, None, now))
        if received:
            self.stats.add(mqtt_received=received)
        return units, tokens

    def _deliver(self, batch: list[_Message | Reading]) -> None:
        if self.fault_hook is not None:
            self.fault_hook(batch)
        units, tokens = self._build(batch)
        while True:
            try:
                self._make_durable(units)
                break
            except SpoolFull as exc:
                if isinstance(exc, SpoolWriteError):
                    self.stats.spool_write_errors.inc()
                    self.stats.add(spool_write_errors=1)
                if self._spool_full_since is None:
                    self._spool_full_since = time.monotonic()
                    self.stats.spool_full.set(1)
                    self.stats.add(spool_full_events=1)
                    log.error(
                        "%s: MQTT messages are no longer acknowledged (the broker keeps them) "
                        "and Modbus readings wait in memory until the database answers",
                        exc,
                    )
                with self._cond:
                    if self._stopping:
                        log.error(
                            "stopping with %d message(s) and poll(s) not durable; the MQTT ones "
                            "stay with the broker, the Modbus readings are lost",
                            len(units) + len(self._inbox),
                        )
                        self._inbox.clear()
                        return
                    self._cond.wait(self.db_retry_interval)
        if self._spool_full_since is not None:
            log.warning(
                "spool accepts again after %.0f s", time.monotonic() - self._spool_full_since
            )
            self._spool_full_since = None
            self.stats.spool_full.set(0)
        if tokens:
            try:
                self.ack(tokens)
            except Exception:  # durable already: the broker delivers them again, stored once
                log.exception("could not acknowledge %d MQTT message(s)", len(tokens))

    def _db_due(self) -> bool:
        return time.monotonic() >= self._db_retry_at

    def _make_durable(self, units: list[Unit]) -> None:
        """Into the database (after the spool), else into the spool; raises SpoolFull."""
        if self._db_due():
            try:
                if self.spool:
                    self._replay()
                if not self.spool:  # (a graceful stop may cut a replay short: keep the order)
                    self._write(units)
                    return
            except DatabaseUnavailable as exc:
                self._database_down(exc)
            except Exception as exc:
                self._writer_failed(exc)
        self.spool.append(units)
        self.stats.add(batches_spooled=1)
        self._spool_gauges()

    def _replay_only(self) -> None:
        try:
            self._replay()
        except DatabaseUnavailable as exc:
            self._database_down(exc)
        except Exception as exc:
            self._writer_failed(exc)

    def _writer_failed(self, exc: Exception) -> None:
        """The writer raised something other than an outage: the batch goes to the spool (it is
        acknowledged once fsync'd) and the database is tried again after ``db_retry_interval``."""
        if not self._writer_failing:
            self._writer_failing = True
            log.error(
                "the writer failed (%s: %s); batches go to the spool and the database is tried "
                "again in %.1f s",
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                self.db_retry_interval,
                exc_info=exc,
            )
        self._writer_failures += 1
        if self._writer_failures >= self.fatal_after:
            raise _Fatal(
                f"the writer failed {self._writer_failures} times in a row "
                f"({type(exc).__name__}: {exc})".splitlines()[0]
            ) from exc
        self.stats.batches_requeued.inc()
        self.stats.add(batches_requeued=1, writer_errors=1)
        self._db_retry_at = time.monotonic() + self.db_retry_interval

    def _replay(self) -> None:
        depth = self.spool.depth
        started = time.monotonic()
        log.info("replaying %d spooled message(s) and poll(s)", depth)
        done = self.spool.replay(self._write, should_stop=lambda: self._stopping)
        self._spool_gauges()
        log.info(
            "replayed %d spooled message(s) and poll(s) in %.1f s",
            done,
            time.monotonic() - started,
        )

    def _write(self, units: list[Unit]) -> None:
        started = time.monotonic()
        result = self.writer.write(units)
        self.stats.batch_write.observe(time.monotonic() - started)
        self._count(units, result)
        self.stats.database_up.set(1)  # (also after a start with the database down)
        self._writer_failures = 0
        if self._writer_failing:
            self._writer_failing = False
            log.warning("the writer works again")
        if self._db_down:
            self._db_down = False
            log.warning("database answers again")
        self._db_retry_at = 0.0

    def _database_down(self, exc: DatabaseUnavailable) -> None:
        self.stats.database_up.set(0)
        if not self._db_down:
            self._db_down = True
            log.error("database unavailable (%s); batches go to the spool", exc)
        self.stats.add(database_errors=1)
        self._db_retry_at = time.monotonic() + self.db_retry_interval

    def _spool_gauges(self) -> None:
        self.stats.spool_depth.set(self.spool.depth)
        self.stats.spool_bytes.set(self.spool.size_bytes)

    def _count(self, units: list[Unit], result: WriteResult) -> None:
        mqtt_units = sum(1 for unit in units if unit.source == "mqtt")
        rejected_mqtt = sum(1 for source, _ in result.rejected if source == "mqtt")
        self.stats.readings_written.inc(result.inserted)
        self.stats.duplicates.inc(result.duplicates)
        if mqtt_units:
            self.stats.mqtt_messages.labels("accepted").inc(mqtt_units - rejected_mqtt)
            self.stats.mqtt_messages.labels("rejected").inc(rejected_mqtt)
        self.stats.add(
            readings_written=result.inserted,
            duplicates=result.duplicates,
            mqtt_rejected=rejected_mqtt,
        )
