"""Scheduled Modbus polling: one APScheduler job per gateway, reconciled with the inventory.

Each gateway job runs every ``poll_interval`` seconds with a little jitter (so gateways do not
all fire at once), ``max_instances=1`` (a slow cycle is never overlapped by the next one),
``coalesce`` (missed runs collapse into one) and a misfire grace of one interval. At most
``max_gateways_in_flight`` gateways are polled at once. When ``inventory_version`` changes the
meter list is reloaded: new gateways get a job, gone ones lose it, changed ones get their new
meters from the next cycle on — without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.backoff import Backoff
from collector.health import Health
from collector.metrics import Stats
from collector.modbus import GatewayOptions, GatewayPoller, MeterTarget
from collector.pipeline import Pipeline
from collector.store import ModbusMeter
from protocols.modbus import ModelCatalog, ModelConfigError
from protocols.reading import Reading

log = logging.getLogger(__name__)

JOB_PREFIX = "gateway "


class Polling:
    def __init__(
        self,
        *,
        scheduler: AsyncIOScheduler,
        pipeline: Pipeline,
        health: Health,
        stats: Stats,
        catalog: ModelCatalog,
        interval: float,
        timeout: float,
        retries: int,
        max_in_flight: int,
        backoff_after: int,
        backoff_max_cycles: int,
    ) -> None:
        self.scheduler = scheduler
        self.pipeline = pipeline
        self.health = health
        self.stats = stats
        self.catalog = catalog
        self.interval = interval
        self.timeout = timeout
        self.retries = retries
        self.backoff_after = backoff_after
        self.backoff_max_cycles = backoff_max_cycles
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self._pollers: dict[str, GatewayPoller] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._bad_models: set[str] = set()
        self._overrun: set[str] = set()
        scheduler.add_listener(self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)

    @property
    def gateways(self) -> dict[str, tuple[MeterTarget, ...]]:
        return {key: p.targets for key, p in self._pollers.items()}

    @property
    def gateway_options(self) -> dict[str, GatewayOptions]:
        return {key: p.options for key, p in self._pollers.items()}

    # -- inventory -------------------------------------------------------------------------------

    def apply_inventory(self, meters: list[ModbusMeter]) -> None:
        """Make the jobs match the meters (called on start and when the inventory changes)."""
        groups: dict[str, list[MeterTarget]] = defaultdict(list)
        hosts: dict[str, tuple[str, int]] = {}
        options: dict[str, GatewayOptions] = {}
        for m in meters:
            try:
                model = self.catalog.get(m.model)
            except ModelConfigError as exc:
                if m.model not in self._bad_models:
                    log.error("meters of model %r are not polled: %s", m.model, exc)
                    self._bad_models.add(m.model)
                continue
            key = f"{m.host}:{m.port}"
            hosts[key] = (m.host, m.port)
            options.setdefault(
                key,
                GatewayOptions(
                    m.framing,
                    m.request_delay_ms / 1000,
                    self.timeout if m.timeout_ms is None else m.timeout_ms / 1000,
                ),
            )
            groups[key].append(MeterTarget(m.meter_id, m.serial, m.unit_id, model))
        for key in list(self._pollers):
            if key not in groups:
                if self.scheduler.get_job(JOB_PREFIX + key):
                    self.scheduler.remove_job(JOB_PREFIX + key)
                self._pollers.pop(key).close()
        jitter = min(self.interval * 0.1, 5.0)
        for key, targets in groups.items():
            poller = self._pollers.get(key)
            if poller is not None and poller.options != options[key]:
                poller.reconfigure(options[key])  # takes effect from its next connection
            if poller is None:
                host, port = hosts[key]
                poller = GatewayPoller(
                    host,
                    port,
                    timeout=self.timeout,
                    retries=self.retries,
                    backoff=Backoff(self.backoff_after, self.backoff_max_cycles),
                    options=options[key],
                )
                self._pollers[key] = poller
                self.scheduler.add_job(
                    self._poll,
                    IntervalTrigger(seconds=self.interval, jitter=jitter or None),
                    args=[key],
                    id=JOB_PREFIX + key,
                    name=JOB_PREFIX + key,
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, int(self.interval)),
                    next_run_time=datetime.now(UTC),
                )
            poller.set_targets(targets)
        log.info(
            "polling %d Modbus meter(s) on %d gateway(s) every %g s",
            sum(len(t) for t in groups.values()),
            len(groups),
            self.interval,
        )

    # -- jobs ------------------------------------------------------------------------------------

    async def _poll(self, key: str) -> None:
        poller = self._pollers.get(key)
        task = asyncio.current_task()
        if poller is None or task is None or self._stopping:
            return
        self._running.add(task)
        try:
            async with self._semaphore:
                if self._stopping:
                    return
                await poller.poll(self._on_reading, self.health.record, self._should_stop)
        except Exception:  # the outermost level of a recurring job: record, keep polling
            log.exception("poll cycle of gateway %s failed", key)
            self.stats.add(poll_cycle_errors=1)
            poller.close()
        finally:
            self._running.discard(task)

    def _on_reading(self, reading: Reading) -> None:
        self.pipeline.submit_readings((reading,))

    def _should_stop(self) -> bool:
        return self._stopping

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES and event.job_id.startswith(JOB_PREFIX):
            # The previous cycle still runs: this one is skipped, never overlapped.
            self.stats.add(poll_cycles_overrun=1)
            if event.job_id not in self._overrun:
                self._overrun.add(event.job_id)
                log.warning(
                    "a poll cycle of %s takes longer than the %g s interval; cycles are skipped "
                    "(counted as poll_cycles_overrun)",
                    event.job_id.removeprefix(JOB_PREFIX),
                    self.interval,
                )
        elif event.code == EVENT_JOB_ERROR and not isinstance(
            event.exception, asyncio.CancelledError
        ):
            log.error("job %s failed: %r", event.job_id, event.exception)

    # -- stopping --------------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Let in-flight polls finish their current meter (at most ``grace`` seconds)."""
        self._stopping = True
        for key in self._pollers:
            if self.scheduler.get_job(JOB_PREFIX + key):
                self.scheduler.remove_job(JOB_PREFIX + key)
        running = set(self._running)
        if running:
            _done, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cancelled %d poll cycle(s) that did not finish in time", len(pending))
                await asyncio.wait(pending, timeout=1)
        for poller in self._pollers.values():
            poller.close()
