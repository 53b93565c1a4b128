"""`doxa demo` end to end: it starts on free ports, a printed customer can be looked up in the
browser, readings arrive from both protocols while it runs, staff can sign in with the printed
passwords, Ctrl-C stops every process it started, a second run reuses the data and --fresh
starts from nothing.

The tour screenshots of the README (docs/tour/) are taken here, into test-artifacts/tour/."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from doxa.services._proc import pid_alive, process_command

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.db, pytest.mark.mqtt]

TOUR = Path(__file__).resolve().parent.parent / "test-artifacts" / "tour"
DOXA = Path(sys.executable).with_name("doxa")


@dataclass
class Running:
    proc: subprocess.Popen[str]
    lines: list[str]
    site: str
    database: str
    customers: list[tuple[str, str, str]]
    staff: dict[str, str]
    reader: threading.Thread


def _reader(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line.rstrip("\n"))


def start_demo(home: Path, *flags: str, timeout: float = 120) -> Running:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    env["DOXA_HOME"] = str(home)
    proc = subprocess.Popen(
        [DOXA, "demo", "--port", "0", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc, out), daemon=True)
    reader.start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(line.startswith("Press Ctrl-C") for line in lines):
        try:
            lines.append(out.get(timeout=0.5))
            continue
        except queue.Empty:
            pass
        if proc.poll() is not None:
            reader.join(timeout=5)
            while not out.empty():
                lines.append(out.get())
            assert proc.stdout is not None
            proc.stdout.close()
            pytest.fail(f"the demo exited with {proc.returncode}:\n" + "\n".join(lines))
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("the demo did not become ready:\n" + "\n".join(lines))
    text = "\n".join(lines)
    site = re.search(r"Website:\s+(http://\S+)", text)
    database = re.search(r"Database:\s+(postgresql://\S+)", text)
    customers = re.findall(r"^\s+([A-Z]{2}\w{4}\d+) · (\S+)\s+\((.+)\)$", text, re.M)
    staff = dict(re.findall(r"^\s+(\w+) / (\S+)\s+\(\w+\)$", text, re.M))
    assert site and database, text
    return Running(proc, lines, site[1], database[1], customers, staff, reader)


def child_pids(pid: int) -> set[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def stop_demo(running: Running) -> None:
    running.proc.send_signal(signal.SIGINT)
    try:
        assert running.proc.wait(timeout=60) == 0
    finally:
        running.reader.join(timeout=10)
        assert running.proc.stdout is not None
        running.proc.stdout.close()


def nobody_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def live_sources(database: str, since: Any) -> set[str]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT DISTINCT source FROM readings WHERE received_at > %s AND source <> 'backfill'",
            (since,),
        ).fetchall()
    return {r[0] for r in rows}


def count_live(database: str, before: datetime) -> int:
    """Readings a collector stored (not back-filled) that arrived before ``before``."""
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM readings WHERE source IN ('modbus', 'mqtt') AND received_at < %s",
            (before,),
        ).fetchone()
    return row[0] if row else 0


def failing_meters(database: str) -> int:
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM meter_status WHERE last_error IS NOT NULL"
        ).fetchone()
    return row[0] if row else 0


def test_demo_end_to_end(services_dir: Path, browser_page: Any) -> None:
    home = services_dir / f"demo-{uuid.uuid4().hex[:6]}"
    running = start_demo(home)
    try:
        kinds = [kind for _, _, kind in running.customers]
        assert kinds == ["Modbus sdm120", "MQTT native", "MQTT tasmota"]
        assert set(running.staff) == {"admin", "billing", "engineer"}
        with psycopg.connect(running.database) as conn:
            started = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
            history = conn.execute(
                "SELECT min(ts), count(*) FROM readings WHERE source = 'backfill'"
            ).fetchone()
            bills = conn.execute("SELECT count(*) FROM bills").fetchone()
        assert history is not None and history[1] > 0
        assert (started - history[0]).days >= 60  # 60+ days of history
        assert bills is not None and bills[0] > 0  # last period's bills
        # Readings arrive from each protocol while the demo runs.
        wait_for(lambda: live_sources(running.database, started) == {"modbus", "mqtt"},
                 "a live reading from each protocol")  # fmt: skip

        pids = child_pids(running.proc.pid)
        assert len(pids) >= 5  # broker, two simulators, collector, website
        postmaster = int((home / "pg" / "data" / "postmaster.pid").read_text().split()[0])
        ports = [int(m) for m in re.findall(r"127\.0\.0\.1:(\d+)", "\n".join(running.lines))]

        TOUR.mkdir(parents=True, exist_ok=True)
        page = browser_page
        code, serial, _ = running.customers[0]
        page.goto(running.site)
        page.get_by_label("Mã khách hàng").fill(code)
        page.get_by_label("Số sê-ri công tơ").fill(serial)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/meters/{serial}")
        assert "kWh" in page.locator("#latest-index").inner_text()
        assert page.locator("svg#daily-30 rect.bar").count() == 30
        page.screenshot(path=str(TOUR / "customer.png"), full_page=True)
        page.goto(running.site + "bills")
        page.locator("a", has_text="Chi tiết").first.click()
        assert page.locator("tr.tier-line").count() >= 6
        page.screenshot(path=str(TOUR / "bill.png"), full_page=True)

        page.goto(running.site + "staff/login")
        page.fill("#username", "admin")
        page.fill("#password", running.staff["admin"])
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/staff/**")
        page.goto(running.site + "staff/exports")
        page.screenshot(path=str(TOUR / "exports.png"), full_page=True)
        # The flaky gateway's two failing meters are on the engineers' page with their errors.
        wait_for(lambda: failing_meters(running.database) >= 2, "the flaky gateway's failures")
        page.goto(running.site + "ops")
        assert page.locator('#collectors tr[data-collector="demo"]').count() == 1
        page.screenshot(path=str(TOUR / "ops.png"), full_page=True)
        # The notifier delivers the sample customers' usage alerts to the local mailbox.
        inbox = home / "demo" / "mail" / "new"
        wait_for(lambda: inbox.is_dir() and len(list(inbox.iterdir())) >= 3,
                 "the demo customers' usage alerts in the mailbox")  # fmt: skip
        mail = next(inbox.iterdir()).read_text(encoding="utf-8", errors="replace")
        assert "@demo.doxa.invalid" in mail and "Message-ID:" in mail
    except BaseException:
        running.proc.kill()
        running.proc.wait()
        raise

    commands = {pid: process_command(pid) for pid in (*pids, postmaster)}
    stop_demo(running)
    # (A postmaster removes its pid file a moment before it is gone.)
    wait_for(lambda: not any(pid_alive(pid) for pid in commands), "every process to end", 10)
    for port in ports:
        assert nobody_listens(port), f"something still listens on port {port}"

    # A second run reuses the data directory: the live readings of the first are still there.
    second_start = datetime.now(UTC)
    again = start_demo(home)
    try:
        assert count_live(again.database, before=second_start) > 0
    finally:
        stop_demo(again)
    # --fresh starts from nothing.
    fresh_start = datetime.now(UTC)
    fresh = start_demo(home, "--fresh")
    try:
        assert count_live(fresh.database, before=fresh_start) == 0
    finally:
        stop_demo(fresh)
