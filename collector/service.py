"""The collector process: wires intake, pipeline, polling and health, and stops gracefully.

Threads: the asyncio loop (APScheduler, the Modbus pollers, the periodic jobs), paho's network
thread (MQTT intake), the flusher (batches → database or spool → acks), one database thread for
inventory and health, and prometheus-client's ``/metrics`` server.

Graceful stop (SIGTERM/SIGINT): polls finish the meter they are reading, new MQTT messages are no
longer taken (the broker keeps them for the next session), everything received is flushed and
acknowledged, a last heartbeat is written, then the MQTT connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.config import CollectorConfig
from collector.health import Health
from collector.metrics import Stats
from collector.mqtt import MqttIntake
from collector.pipeline import Pipeline
from collector.polling import Polling
from collector.spool import Spool, SpoolLocked
from collector.store import Store
from collector.writer import Writer
from protocols.broker_url import redact_url
from protocols.modbus import ModelCatalog

log = logging.getLogger(__name__)

T = TypeVar("T")


class CollectorError(RuntimeError):
    """The collector cannot start; the message says why and what to do."""


class Collector:
    """One collector. ``await start()``, then ``await stop()``; or ``await run(stop_event)``."""

    def __init__(self, config: CollectorConfig, catalog: ModelCatalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or ModelCatalog()
        self.stats = Stats()
        self.started_at = datetime.now(UTC)
        self.spool = Spool(config.spool_dir, config.spool_max_bytes, config.spool_segment_bytes)
        self.stats.spool_max_bytes.set(config.spool_max_bytes)
        self.writer = Writer(config.database_url, config.collector_id)
        self.pipeline = Pipeline(
            writer=self.writer,
            spool=self.spool,
            stats=self.stats,
            timezone=config.timezone,
            batch_size=config.batch_size,
            max_batch=config.max_batch,
            batch_interval=config.batch_interval,
            db_retry_interval=config.db_retry_interval,
            max_pending_readings=config.max_pending_readings,
            fatal_after=config.fatal_after,
            on_fatal=self._on_fatal,
        )
        self.store = Store(config.database_url, config.collector_id)
        self.writer.limits = config.limits  # the intake bounds (collector/intake.py)
        self.health = Health(
            store=self.store,
            stats=self.stats,
            collector_id=config.collector_id,
            host=config.host,
            version=config.version,
            started_at=self.started_at,
            poll_interval=config.poll_interval if config.polling else None,
            spool_depth=lambda: self.spool.depth,
        )
        self.mqtt: MqttIntake | None = None
        if config.mqtt_url:
            self.mqtt = MqttIntake(
                url=config.mqtt_url,
                client_id=config.collector_id,
                subscriptions=config.subscriptions,
                share_group=config.share_group,
                pipeline=self.pipeline,
                stats=self.stats,
                reconnect_min_delay=config.mqtt_reconnect_min_delay,
            )
            self.pipeline.ack = self.mqtt.ack
        self._db = ThreadPoolExecutor(1, thread_name_prefix="doxa-health-db")
        self._scheduler: AsyncIOScheduler | None = None
        self.polling: Polling | None = None
        self._metrics: Any = None
        self._inventory_version: int | None = None
        self._inventory_ok = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fatal = asyncio.Event()

    @property
    def metrics_port(self) -> int | None:
        return None if self._metrics is None else int(self._metrics.server_port)

    async def _in_db_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn)

    # -- start ------------------------------------------------------------------------------------

    def _on_fatal(self, cause: str) -> None:
        """The flusher gave up (its thread): wake :meth:`run`, which stops and exits 1."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fatal.set)

    async def start(self) -> None:
        config = self.config
        self._loop = asyncio.get_running_loop()
        try:
            self.spool.open()
        except SpoolLocked as exc:
            raise CollectorError(str(exc)) from exc
        self.stats.spool_depth.set(self.spool.depth)
        self.stats.spool_bytes.set(self.spool.size_bytes)
        await self._check_schema()
        if config.metrics_port is not None:
            try:
                self._metrics = self.stats.serve(config.metrics_port, config.metrics_host)
            except OSError as exc:
                raise CollectorError(
                    f"cannot serve metrics on {config.metrics_host}:{config.metrics_port}: "
                    f"{exc.strerror}"
                ) from exc
        self.pipeline.start()
        if self.mqtt is not None:
            self.mqtt.start()
        scheduler = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        )
        self._scheduler = scheduler
        scheduler.start()
        if config.polling:
            self.polling = Polling(
                scheduler=scheduler,
                pipeline=self.pipeline,
                health=self.health,
                stats=self.stats,
                catalog=self.catalog,
                interval=config.poll_interval,
                timeout=config.modbus_timeout,
                retries=config.modbus_retries,
                max_in_flight=config.max_gateways_in_flight,
                backoff_after=config.backoff_after,
                backoff_max_cycles=config.backoff_max_cycles,
            )
            scheduler.add_job(
                self._refresh_inventory,
                IntervalTrigger(seconds=config.inventory_interval),
                id="inventory",
                next_run_time=datetime.now(UTC),
            )
        scheduler.add_job(
            self._heartbeat,
            IntervalTrigger(seconds=config.heartbeat_interval),
            id="heartbeat",
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self._retention,
            IntervalTrigger(seconds=config.retention_interval),
            id="retention",
            next_run_time=datetime.now(UTC),
        )
        log.info(
            "collector %s started (MQTT %s, polling %s, spool %s)",
            config.collector_id,
            redact_url(config.mqtt_url) if config.mqtt_url else "off",
            f"every {config.poll_interval:g} s" if config.polling else "off",
            config.spool_dir,
        )

    async def _check_schema(self) -> None:
        """Refuse to start on a database without our schema; start anyway if it is down (the
        spool takes the readings until it answers)."""
        try:
            await self._in_db_thread(self.store.inventory_version)
        except psycopg.errors.UndefinedTable as exc:
            raise CollectorError(
                "the database has no Doxa schema: run `doxa db migrate` first"
            ) from exc
        except psycopg.OperationalError as exc:
            self.stats.database_up.set(0)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
            log.error("database unreachable at start (%s); spooling until it answers", first)
        else:
            self.stats.database_up.set(1)

    # -- periodic jobs ----------------------------------------------------------------------------

    async def _refresh_inventory(self) -> None:
        assert self.polling is not None
        try:
            version = await self._in_db_thread(self.store.inventory_version)
            if version == self._inventory_version:
                return
            meters = await self._in_db_thread(self.store.modbus_meters)
        except psycopg.Error as exc:
            if self._inventory_ok:
                log.warning("inventory not read (%s); will retry", type(exc).__name__)
                self._inventory_ok = False
            return
        self._inventory_ok = True
        self._inventory_version = version
        self.polling.apply_inventory(meters)

    async def _heartbeat(self) -> None:
        await self._in_db_thread(self.health.beat)

    async def _retention(self) -> None:
        config = self.config
        try:
            dropped = await self._in_db_thread(
                lambda: self.store.drop_old_chunks(
                    config.outcome_retention_days, config.heartbeat_retention_days
                )
            )
        except psycopg.Error as exc:
            log.warning("old health chunks not dropped (%s); will retry", type(exc).__name__)
            return
        if dropped:
            log.info("dropped %d old chunk(s) of poll outcomes and heartbeats", dropped)
        try:
            deleted = await self._in_db_thread(
                lambda: self.store.delete_old_rejections(
                    config.rejected_retention_days, datetime.now(UTC)
                )
            )
        except psycopg.Error as exc:
            log.warning("old rejected messages not deleted (%s); will retry", type(exc).__name__)
            return
        if deleted:
            log.info(
                "deleted %d rejected message(s) older than %d days",
                deleted,
                config.rejected_retention_days,
            )

    # -- stop -------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Graceful stop: finish polls in flight, flush and acknowledge, last heartbeat."""
        if self.polling is not None:
            await self.polling.stop(self.config.stop_grace)
        await self._close(final_heartbeat=True)
        log.info("collector %s stopped", self.config.collector_id)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.start()
        except BaseException:
            await self._close(final_heartbeat=False)  # what a failed start took
            raise
        try:
            stopped = asyncio.ensure_future(stop.wait())
            fatal = asyncio.ensure_future(self._fatal.wait())
            try:
                await asyncio.wait({stopped, fatal}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                fatal.cancel()
        finally:
            await self.stop()
        if self.pipeline.fatal is not None:
            raise CollectorError(self.pipeline.fatal)

    async def _close(self, *, final_heartbeat: bool) -> None:
        loop = asyncio.get_running_loop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self.mqtt is not None:
            self.mqtt.stop_intake()  # later messages stay with the broker for the next session
        await loop.run_in_executor(None, self.pipeline.stop)  # flush and acknowledge
        if self.mqtt is not None:
            await loop.run_in_executor(None, self.mqtt.stop)
        if final_heartbeat:
            await self._in_db_thread(self.health.beat)
        await self._in_db_thread(self.store.close)
        self._db.shutdown(wait=True)
        self.spool.close()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
            self._metrics = None


def run(config: CollectorConfig, catalog: ModelCatalog | None = None) -> None:
    """Run a collector in the foreground until SIGINT or SIGTERM (the ``doxa collect`` body)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Collector(config, catalog).run(stop)

    asyncio.run(main())
