"""Notifier benchmark: 10,000 queued email notices drained by the outbox worker through a local
SMTP server, beside a bare ``smtplib`` loop sending the same messages to the same server, in the
same run.

* **Server**: aiosmtpd in a process of its own (so it does not share this process's interpreter
  lock), accepting every message and counting them.
* **Ceiling**: one ``smtplib.SMTP`` connection and a loop of ``sendmail`` over the same
  10,000 messages, already built and serialised before the clock starts — what the SMTP
  exchange alone costs from Python. (The server is warmed up with 200 messages first.)
* **Doxa**: the notices queued in the outbox (``care.outbox.enqueue``, bill-issued texts
  rendered in Vietnamese), then ``care.worker.Worker.drain_once`` — the loop of
  ``doxa notify run`` — until nothing is due: claim 100 with ``FOR UPDATE SKIP LOCKED``, send
  over one kept-open SMTP connection, mark the batch; every notice ends ``sent``.

``--quick`` uses 1,000 notices. Run ``python -m bench.notify [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
WARM_UP = 200  # messages sent to the server before either path is timed


# -- the SMTP server, in its own process ------------------------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def _serve_smtp(port: int) -> None:
    from aiosmtpd.controller import Controller

    counter = _Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    while not stopped:
        time.sleep(0.1)
    controller.stop()
    print(counter.count, flush=True)


@contextmanager
def smtp_server() -> Iterator[tuple[int, list[int]]]:
    """The server's port; the list receives how many messages it accepted, once stopped."""
    from doxa.services._proc import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.notify", "--serve-smtp", str(port)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    counted: list[int] = []
    try:
        yield port, counted
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        counted.append(int(out.strip() or 0))


@contextmanager
def database() -> Iterator[str]:
    from doxa.services.postgres import EmbeddedPostgres
    from schema.migrate import migrate

    root = Path(tempfile.mkdtemp(prefix="doxa-bench-notify-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False, database="doxa")
    try:
        pg.start()
        migrate(pg.url())
        yield pg.url()
    finally:
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


# -- the two paths ------------------------------------------------------------------------------


def queue(url: str, n: int, now: datetime) -> tuple[list[Any], float]:
    """N customers with a confirmed email, one rendered bill notice each, queued; returns the
    notices and the seconds queueing took."""
    from care import outbox, render

    notices = []
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY customers (code, name, province, reading_day) FROM STDIN"
        ) as cp:
            for k in range(n):
                cp.write_row((f"PB0101{k:07d}", f"Khách hàng {k}", "Hồ Chí Minh", 15))
        ids = [r[0] for r in conn.execute("SELECT id FROM customers ORDER BY id")]
        for k, cid in enumerate(ids):
            code = f"PB0101{k:07d}"
            texts = render.bill_issued(
                "vi",
                customer_code=code,
                period="2026-01",
                period_start=date(2025, 12, 15),
                period_end=date(2026, 1, 15),
                consumption_kwh=150 + k % 300,
                total_vnd=400_000 + 37 * k,
                due=date(2026, 1, 27),
            )
            email = texts.email
            notices.append(outbox.Notice("bill_issued", cid, "email", f"c{k}@example.vn", "vi",
                                         email.subject, email.body, f"bench:{k}"))  # fmt: skip
        started = time.perf_counter()
        with conn.transaction():
            outbox.enqueue(conn, notices, now)
        return notices, time.perf_counter() - started


def bare_loop(port: int, notices: list[Any]) -> float:
    """Seconds for one smtplib connection to send every message."""
    from care.channels import Outgoing, SmtpChannel

    builder = SmtpChannel.from_url(f"smtp://127.0.0.1:{port}")
    messages = [builder.build(Outgoing(n.recipient, n.subject, n.body, n.dedupe_key + ":bare"))
                for n in notices]  # fmt: skip
    with smtplib.SMTP("127.0.0.1", port) as smtp:  # warm the server up first
        for message, notice in list(zip(messages, notices, strict=True))[:WARM_UP]:
            smtp.sendmail("no-reply@doxa.invalid", [notice.recipient], message)
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for message, notice in zip(messages, notices, strict=True):
            smtp.sendmail("no-reply@doxa.invalid", [notice.recipient], message)
    return time.perf_counter() - started


def doxa_drain(url: str, port: int) -> tuple[float, int]:
    """Seconds for the worker to drain the outbox, and how many notices ended sent."""
    from care.channels import SmtpChannel
    from care.worker import Worker

    worker = Worker(url, {"email": SmtpChannel.from_url(f"smtp://127.0.0.1:{port}")}, "bench")
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        while worker.drain_once(conn):
            pass
        took = time.perf_counter() - started
        worker.close()
        sent = conn.execute("SELECT count(*) FROM notices WHERE state = 'sent'").fetchone()
    return took, int(sent[0]) if sent else 0


def run(quick: bool = False, n: int | None = None) -> str:
    n = n or (1_000 if quick else 10_000)
    with database() as url, smtp_server() as (port, counted):
        notices, queue_s = queue(url, n, datetime.now(UTC))
        bare_s = bare_loop(port, notices)
        doxa_s, sent = doxa_drain(url, port)
    assert sent == n, f"only {sent} of {n} notices were sent"
    expected = 2 * n + min(WARM_UP, n)
    assert counted == [expected], f"the server accepted {counted} messages, not {expected}"
    bare_rate, doxa_rate = n / bare_s, n / doxa_s
    return "\n".join([
        "## Notices: the outbox drained through SMTP",
        "",
        f"{n:,} bill-issued email notices (Vietnamese, rendered when queued) through a local "
        "aiosmtpd server in its own process; both paths in the same run, one SMTP connection "
        f"each, after {WARM_UP} warm-up messages. Every notice ended `sent` and the server "
        "counted every message.",
        "",
        "| path | messages/s | ratio |",
        "|---|---|---|",
        f"| bare `smtplib` loop (ceiling) | {bare_rate:,.0f} | 1.00 |",
        f"| `doxa notify run`'s loop: claim 100 (SKIP LOCKED) → send → mark | {doxa_rate:,.0f} | "
        f"{doxa_rate / bare_rate:.2f} |",
        "",
        f"Queueing the {n:,} notices (`care.outbox.enqueue`, one transaction) took "
        f"{queue_s:.2f} s ({n / queue_s:,.0f} notices/s). Target: the drain at ≥ 0.50 of the bare "
        "loop.",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 notices")
    parser.add_argument("--notices", type=int)
    parser.add_argument("--serve-smtp", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_smtp:
        _serve_smtp(args.serve_smtp)
        return
    print(run(args.quick, args.notices))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
