"""``doxa demo``: the whole system on one machine, with enough history that every page has real
numbers the moment it opens.

Order matters and is chosen so nothing is lost and nothing is shown half-made:
embedded TimescaleDB and Mosquitto → migrate → simulated Modbus gateways (their ports are in the
inventory they write) → import both fleets' inventories → back-fill history from the simulators'
own load model → last periods' bills → staff users → the collector's MQTT session exists → the
collector → the MQTT meters → the website → the notifier (``doxa notify run``), which delivers
the demo customers' email to a local mailbox (an SMTP server in this process writing a Maildir
under ``DOXA_HOME/demo/mail``) → the scheduler (``doxa scheduler``).
Ctrl-C stops them in the reverse order.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
import psycopg

from billing.periods import Period
from billing.run import run_bills
from doxa.children import Child, wait_until
from doxa.errors import Failure
from doxa.services._proc import free_port, port_is_free
from doxa.services.mosquitto import EmbeddedMosquitto
from doxa.services.postgres import EmbeddedPostgres
from schema.inventory import import_inventory, known_tariff_groups, parse_inventory
from schema.migrate import migrate
from schema.users import ROLES, set_password_or_add

if TYPE_CHECKING:  # the simulators are imported only when the demo runs
    from simulators.modbus import ModbusFleet
    from simulators.mqtt import MqttFleet

COLLECTOR_ID = "demo"


@dataclass(frozen=True)
class DemoPlan:
    """The demo fleet: sizes, seeds and intervals."""

    modbus_meters: int = 12
    gateways: int = 3
    modbus_seed: int = 1
    mqtt_meters: int = 12
    mqtt_seed: int = 2
    poll_interval: float = 15.0  # seconds between Modbus polls
    mqtt_interval: float = 30.0  # seconds between MQTT readings of a meter
    # A little bad input, so the engineers' page has rejections to show.
    mqtt_malformed: float = 0.005  # chance per meter and round
    mqtt_unknown: float = 0.05  # chance per round of a serial not in the inventory
    history_days: int = 100  # covers last month's billing periods and the 90-day chart
    history_step: float = 1800.0  # back-filled readings every 30 minutes
    # Gateway 3 (index 2) is the flaky one: meters 3 and 6 sit on it (meter i is on gateway
    # i % gateways); one does not answer, one answers exception 0x0B.
    faults: tuple[str, ...] = ("timeout:3", "exception:6:11")


@dataclass
class Demo:
    home: Path
    timezone: ZoneInfo
    web_port: int | None = None
    fresh: bool = False
    plan: DemoPlan = field(default_factory=DemoPlan)
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.home.absolute()
        self.demo_dir = self.home / "demo"
        self.log_dir = self.demo_dir / "logs"
        self.pg = EmbeddedPostgres(self.home / "pg")
        self.broker = EmbeddedMosquitto(self.home / "mqtt")
        self.secret_key = secrets.token_hex(32)
        self.mail_dir = self.demo_dir / "mail"
        self.mailbox: Any = None  # the local SMTP server (aiosmtpd controller)

    # -- the steps --------------------------------------------------------------------------

    def wipe(self) -> None:
        """--fresh: forget every previous run's data."""
        self.pg.stop()
        for path in (self.pg.root, self.broker.root, self.demo_dir, self.home / "spool"):
            shutil.rmtree(path, ignore_errors=True)

    def start_services(self) -> str:
        self.pg.start()
        self.broker.start()
        url = self.pg.url()
        migrate(url)
        return url

    def env(self, database_url: str) -> dict[str, str]:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
        env.update(
            DOXA_HOME=str(self.home),
            DOXA_DATABASE_URL=database_url,
            DOXA_MQTT_URL=self.broker.url,
            DOXA_TIMEZONE=self.timezone.key,
            DOXA_SECRET_KEY=self.secret_key,
            DOXA_POLL_INTERVAL=str(self.plan.poll_interval),
            DOXA_MQTT_INTERVAL=str(self.plan.mqtt_interval),
            PYTHONUNBUFFERED="1",
        )
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = Child(name, args, env, self.log_dir)
        self.children.append(child)
        return child

    def start_modbus(self, env: dict[str, str]) -> Path:
        plan = self.plan
        inventory = self.demo_dir / "modbus-inventory.csv"
        inventory.unlink(missing_ok=True)
        args = ["simulate", "modbus", "--meters", str(plan.modbus_meters), "--gateways",
                str(plan.gateways), "--seed", str(plan.modbus_seed), "--inventory-out",
                str(inventory)]  # fmt: skip
        for fault in plan.faults:
            args += ["--fault", fault]
        child = self.spawn("simulate-modbus", args, env)
        # (The simulator writes the file under another name and renames it: it is whole.)
        wait_until(inventory.exists, "the Modbus simulator", 30, [child])
        return inventory

    def mqtt_fleet(self) -> MqttFleet:
        from simulators.mqtt import MqttFleet

        return MqttFleet(self.broker.url, self.plan.mqtt_meters, seed=self.plan.mqtt_seed,
                         formats=("native", "tasmota"), interval=self.plan.mqtt_interval,
                         tz=self.timezone, record=False)  # fmt: skip

    def modbus_fleet(self) -> ModbusFleet:
        from simulators.modbus import ModbusFleet

        plan = self.plan
        return ModbusFleet(plan.modbus_meters, plan.gateways, seed=plan.modbus_seed)

    def import_inventories(self, url: str, modbus_csv: Path) -> list[tuple[str, str, str]]:
        """Import both fleets; returns (customer code, serial, how it reports) of three samples."""
        from protocols.modbus.models import MODEL_NAMES

        mqtt = self.mqtt_fleet()
        texts = [modbus_csv.read_text(encoding="utf-8"), mqtt.inventory_csv()]
        with psycopg.connect(url) as conn:
            groups = known_tariff_groups(conn)
            parsed = [parse_inventory(t, tariff_groups=groups, models=MODEL_NAMES) for t in texts]
            for rows in parsed:
                import_inventory(conn, rows)
        modbus_rows = parsed[0]
        samples = [(modbus_rows[0].customer_code, modbus_rows[0].meter_serial,
                    f"Modbus {modbus_rows[0].model}")]  # fmt: skip
        for fmt in ("native", "tasmota"):
            meter = next(m for m in mqtt.meters if m.format == fmt)
            samples.append((meter.customer.code, meter.serial, f"MQTT {fmt}"))
        return samples

    def back_fill(self, url: str, until: datetime) -> int:
        """History from the simulators' own load model, so it joins the live data seamlessly."""
        from collector.units import Unit
        from collector.writer import Writer

        plan = self.plan
        start = until - timedelta(days=plan.history_days)
        writer = Writer(url, "demo-backfill")
        written = 0
        try:
            for fleet in (self.modbus_fleet(), self.mqtt_fleet()):
                for meter in fleet.meters:
                    readings = tuple(fleet.history(meter.serial, start, until, plan.history_step))
                    result = writer.write([Unit(source="backfill", readings=readings)])
                    written += result.inserted
        finally:
            writer.close()
        return written

    def bills(self, url: str, now: datetime) -> int:
        """Bills of last month's and this month's periods (those already closed)."""
        local = now.astimezone(self.timezone)
        this = Period(local.year, local.month)
        written = 0
        with psycopg.connect(url) as conn:
            for period in (this.previous(), this):
                written += run_bills(conn, period, self.timezone).written
        return written

    def outage(self, url: str, now: datetime) -> None:
        """A planned outage tomorrow 08:00–12:00 for the first customer's branch, so the meter
        page, /outages and /staff/outages have one (unless one is already planned)."""
        from servicedesk import outage_store
        from servicedesk.outages import Area

        local = now.astimezone(self.timezone)
        tomorrow = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
        start = tomorrow.replace(tzinfo=self.timezone) + timedelta(hours=8)
        with psycopg.connect(url, autocommit=True) as conn:
            first = conn.execute("SELECT province, code FROM customers ORDER BY code LIMIT 1")
            row = first.fetchone()
            if row is None or outage_store.upcoming_in(conn, row[0], now):
                return
            area = Area(row[0], row[1][:6])
            reason = "Bảo trì định kỳ lưới điện hạ áp (demo)"
            outage_store.add(conn, area, start, start + timedelta(hours=4), reason, "demo", now)

    def staff(self, url: str) -> list[tuple[str, str, str]]:
        """One sign-in per role, with a fresh password each run."""
        users = []
        with psycopg.connect(url, autocommit=True) as conn:
            for role in ROLES:
                username, password = role, secrets.token_urlsafe(9)
                set_password_or_add(conn, username, password, [role])
                users.append((username, password, role))
        return users

    def start_collector(self, env: dict[str, str], url: str) -> tuple[Child, int]:
        metrics_port = free_port()
        child = self.spawn("collector", ["collect", "--collector-id", COLLECTOR_ID, "--interval",
                                         str(self.plan.poll_interval), "--metrics-port",
                                         str(metrics_port)], env)  # fmt: skip
        wait_until(lambda: _mqtt_subscribed(metrics_port), "the collector's MQTT subscription",
                   30, [child])  # fmt: skip
        return child, metrics_port

    def start_mqtt(self, env: dict[str, str]) -> Child:
        plan = self.plan
        args = ["simulate", "mqtt", "--meters", str(plan.mqtt_meters), "--format", "mix",
                "--seed", str(plan.mqtt_seed), "--interval", str(plan.mqtt_interval),
                "--malformed", str(plan.mqtt_malformed),
                "--unknown", str(plan.mqtt_unknown)]  # fmt: skip
        return self.spawn("simulate-mqtt", args, env)

    def start_web(self, env: dict[str, str]) -> tuple[Child, str]:
        if self.web_port is None:
            port = 8000 if port_is_free(8000) else free_port()
        else:
            port = self.web_port or free_port()
        if not port_is_free(port):
            raise Failure(f"port {port} is in use: give another with --port")
        child = self.spawn("web", ["web", "--host", "127.0.0.1", "--port", str(port)], env)
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: _http_ok(url + "healthz"), "the website", 30, [child])
        return child, url

    def start_mailbox(self, url: str, samples: list[tuple[str, str, str]]) -> str:
        """The local mailbox, and the sample customers as confirmed email contacts with a usage
        alert at 1 kWh, so the notifier has something to deliver at once. Returns the SMTP
        URL for the children."""
        from care.mailbox import MaildirStore, serve

        self.mailbox = serve(MaildirStore(self.mail_dir))
        with psycopg.connect(url, autocommit=True) as conn:
            for code, _serial, _kind in samples:
                conn.execute(
                    "INSERT INTO customer_contacts (customer_id, email, preferred_channel,"
                    " notify_threshold, threshold_kwh) SELECT id, %s, 'email', true, 1"
                    " FROM customers WHERE code = %s ON CONFLICT (customer_id) DO NOTHING",
                    (f"{code.lower()}@demo.doxa.invalid", code),
                )
        return f"smtp://127.0.0.1:{self.mailbox.port}"

    def start_notifier(self, env: dict[str, str]) -> Child:
        return self.spawn("notify", ["notify", "run", "--worker-id", "demo"], env)

    def start_scheduler(self, env: dict[str, str]) -> Child:
        """``doxa scheduler``: the daily bills of the customers whose reading day it is, the
        outage notices and the notices' delivery (beside the notifier: they share the outbox)."""
        return self.spawn("scheduler", ["scheduler"], env)

    def stop(self) -> None:
        """Children in reverse order (the collector flushes its batches), then the services."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.mailbox is not None:
            self.mailbox.stop()
            self.mailbox = None
        self.broker.stop()
        self.pg.stop()


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _mqtt_subscribed(metrics_port: int) -> bool:
    """The collector's Prometheus gauge says its MQTT subscriptions are in place."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return False
    return any(line.startswith("doxa_collector_mqtt_subscribed 1") for line in text.splitlines())


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set an event instead of raising in the middle of a step."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(demo: Demo, echo: Callable[[str], None] = click.echo) -> None:
    """Start everything, print how to use it, run until Ctrl-C, stop everything."""
    started = time.monotonic()
    with _stop_signals() as stop:
        try:
            if demo.fresh:
                echo("starting fresh: removing the previous demo's data")
                demo.wipe()
            demo.log_dir.mkdir(parents=True, exist_ok=True)
            echo("starting the embedded TimescaleDB and Mosquitto …")
            url = demo.start_services()
            env = demo.env(url)
            echo("starting simulated Modbus gateways …")
            modbus_csv = demo.start_modbus(env)
            samples = demo.import_inventories(url, modbus_csv)
            now = datetime.now(UTC)
            echo(f"back-filling {demo.plan.history_days} days of history …")
            rows = demo.back_fill(url, now)
            bills = demo.bills(url, now)
            echo(f"  {rows} readings back-filled, {bills} bills computed")
            users = demo.staff(url)
            demo.outage(url, now)
            env["DOXA_SMTP_URL"] = demo.start_mailbox(url, samples)
            echo("starting the collector, the MQTT meters and the website …")
            _, metrics_port = demo.start_collector(env, url)
            demo.start_mqtt(env)
            _, site = demo.start_web(env)
            demo.start_notifier(env)
            demo.start_scheduler(env)
            _banner(echo, site, url, samples, users, metrics_port, demo.log_dir,
                    time.monotonic() - started, demo.mail_dir)  # fmt: skip
            while not stop.wait(1.0):
                for child in demo.children:
                    child.check()
        finally:
            echo("stopping …")
            demo.stop()
            echo("stopped")


def _banner(
    echo: Callable[[str], None],
    site: str,
    db_url: str,
    samples: list[tuple[str, str, str]],
    users: list[tuple[str, str, str]],
    metrics_port: int,
    log_dir: Path,
    took: float,
    mail_dir: Path,
) -> None:
    lines = [
        "",
        f"Doxa demo is running (ready in {took:.0f} s).",
        f"  Website:           {site}",
        "  Customers (customer code · meter serial):",
        *[f"    {code} · {serial}   ({kind})" for code, serial, kind in samples],
        f"  Staff sign-in:     {site}staff/login",
        *[f"    {user} / {password}   ({role})" for user, password, role in users],
        f"  Engineers' page:   {site}ops",
        f"  Collector metrics: http://127.0.0.1:{metrics_port}/metrics",
        f"  Database:          {db_url}",
        f"  Logs:              {log_dir}",
        f"  Customers' email:  {mail_dir} (Maildir: mutt -f {mail_dir})",
        "Press Ctrl-C to stop.",
        "",
    ]
    echo("\n".join(lines))
