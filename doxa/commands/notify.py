"""``doxa notify``: deliver the customers' notices from the outbox (contract §13)."""

from __future__ import annotations

import logging
import re
import signal
import socket
import threading
from datetime import datetime

import click

from doxa.app import App
from doxa.errors import BadInput, Failure

WORKER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
THRESHOLD_EVERY = 900.0  # seconds between usage-threshold checks


@click.group("notify")
def command() -> None:
    """Customers' notices: bill issued, usage threshold, planned outage (email and SMS)."""


def channels(app: App) -> dict[str, object]:
    """The configured channels; an unset URL means that channel is off."""
    from care.channels import ChannelConfigError, SmsChannel, SmtpChannel

    settings = app.settings
    out: dict[str, object] = {}
    try:
        if settings.smtp_url:
            out["email"] = SmtpChannel.from_url(settings.smtp_url, settings.mail_from)
        if settings.sms_url:
            out["sms"] = SmsChannel(settings.sms_url)
    except ChannelConfigError as exc:
        name = "DOXA_SMTP_URL" if "email" not in out and settings.smtp_url else "DOXA_SMS_URL"
        raise BadInput(f"{name}: {exc}") from exc
    return out


@command.command("run")
@click.option(
    "--worker-id",
    metavar="ID",
    help="Names this worker's claims; give each running worker its own (default: host name).",
)
@click.option(
    "--threshold-every",
    type=click.FloatRange(min=0),
    default=THRESHOLD_EVERY,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between usage-threshold checks (0: never; the scheduler may do them).",
)
@click.option("--batch", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Notices claimed at a time per channel.")  # fmt: skip
@click.pass_obj
def run_command(app: App, worker_id: str | None, threshold_every: float, batch: int) -> None:
    """Deliver due notices until SIGTERM or Ctrl-C.

    Email goes to DOXA_SMTP_URL, SMS to DOXA_SMS_URL (an unset URL leaves that channel's
    notices waiting). Several workers may run at once, each with its own --worker-id.
    """
    from care import notices
    from care.worker import Periodic, Worker, WorkerIdTaken

    worker_id = worker_id or socket.gethostname()
    if not WORKER_ID.match(worker_id):
        raise BadInput(f"worker id {worker_id!r} must be 1-64 letters, digits or _ . : -")
    configured = channels(app)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    zone = app.settings.timezone
    periodic = []
    if threshold_every > 0:

        def thresholds(conn: object, now: datetime) -> None:
            queued = notices.check_thresholds(conn, now, zone)  # type: ignore[arg-type]
            if queued:
                logging.getLogger("care").info("queued %d usage alert(s)", queued)

        periodic.append(Periodic("thresholds", threshold_every, thresholds))
    worker = Worker(app.database_url(), configured, worker_id,  # type: ignore[arg-type]
                    batch=batch, max_attempts=app.settings.notify_max_attempts,
                    periodic=periodic)  # fmt: skip
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    names = ", ".join(sorted(configured)) or "none (set DOXA_SMTP_URL / DOXA_SMS_URL)"
    try:
        worker.run(stop, ready=lambda: click.echo(
            f"notifier {worker_id} delivering; channels: {names}", err=True))  # fmt: skip
    except WorkerIdTaken as exc:
        raise Failure(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"notifier {worker_id} stopped after {worker.sent} notice(s) sent", err=True)
