"""``doxa collect``: run a collector in the foreground (contract §3)."""

from __future__ import annotations

import logging
import socket
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from doxa.app import App
from doxa.errors import BadInput, Failure
from schema.identifiers import COLLECTOR_ID


def _version() -> str:
    try:
        return version("doxa")
    except PackageNotFoundError:
        return "unknown"


class _RedactCredentials(logging.Filter):
    """Masks ``scheme://user:password@`` in every record's message, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from protocols.broker_url import redact_text

        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:  # a traceback may quote a URL too
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def intake_limits(settings: Any) -> Any:
    """The collector's intake bounds from the settings (collector/intake.py)."""
    from collector.intake import IntakeLimits

    return IntakeLimits(
        max_register_kwh=settings.max_register_kwh,
        max_power_w=settings.max_power_w,
        horizon_days=settings.reading_horizon_days,
    )


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_RedactCredentials())
    # The collector records every poll's outcome itself; these libraries would repeat each one.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


@click.command("collect")
@click.option(
    "--collector-id",
    metavar="ID",
    help="Names the heartbeat row, the MQTT client id (persistent session) and the spool; "
    "default: the host name.",
)
@click.option(
    "--interval",
    type=float,
    metavar="SECONDS",
    help="Seconds between Modbus polls of a gateway (default: DOXA_POLL_INTERVAL).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve Prometheus metrics on this port at /metrics (default: none).",
)
@click.pass_obj
def command(
    app: App, collector_id: str | None, interval: float | None, metrics_port: int | None
) -> None:
    """Run a collector until SIGINT/SIGTERM: poll its Modbus meters, subscribe to MQTT.

    Meters whose inventory row names this collector, or names none, are polled. Readings are
    written in batches; while the database is unreachable they go to a spool under DOXA_HOME.
    """
    from collector import CollectorConfig, CollectorError, run
    from protocols.broker_url import BrokerUrlError, parse_broker_url

    settings = app.settings
    collector_id = collector_id or socket.gethostname()
    if not COLLECTOR_ID.match(collector_id):
        raise BadInput(
            f"collector id {collector_id!r} must be 1-64 letters, digits or _ . - characters"
        )
    if interval is not None and not interval > 0:
        raise BadInput(f"--interval must be a positive number of seconds, not {interval}")
    try:
        parse_broker_url(settings.mqtt_url)
    except BrokerUrlError as exc:
        raise BadInput(f"DOXA_MQTT_URL: {exc}") from exc
    catalog = app.model_catalog()
    _configure_logging()
    config = CollectorConfig(
        collector_id=collector_id,
        database_url=app.database_url(),
        spool_dir=app.home.absolute() / "spool" / collector_id,
        mqtt_url=settings.mqtt_url,
        subscriptions=settings.mqtt_subscriptions,
        share_group=settings.mqtt_share_group,
        poll_interval=interval or settings.poll_interval,
        spool_max_bytes=settings.spool_max_mb * 1024 * 1024,
        timezone=settings.timezone,
        metrics_port=metrics_port,
        metrics_host=settings.metrics_host,
        rejected_retention_days=settings.rejected_retention_days,
        limits=intake_limits(settings),
        version=_version(),
        modbus_timeout=settings.modbus_timeout,
    )
    try:
        run(config, catalog)
    except CollectorError as exc:
        raise Failure(str(exc)) from exc
