"""``doxa notify run`` killed with SIGKILL at the two worst moments — after it claimed a notice
but before the server got it, and after the server stored it but before the notice was marked
sent — then started again: the notice arrives at least once, and the customer's mailbox (which
keeps one message per Message-ID) or phone (one per Idempotency-Key) shows it once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from test_care_support import (  # noqa: F401 - fixtures
    SmsGateway,
    SmtpServer,
    add_contact,
    sms_gateway,
    smtp_server,
)
from test_web_customer_data import NOW, ZONE, add_bill, add_customer

from care import notices

pytestmark = [pytest.mark.db, pytest.mark.slow]

LINES = [{"tier": 1, "width_kwh": 50, "kwh": 42, "price_vnd": 1984}]


@pytest.fixture
def notifier(
    db_url: str, tmp_path: Path
) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
        full.update(DOXA_DATABASE_URL=db_url, DOXA_HOME=str(tmp_path / "home"), **env)
        with (tmp_path / f"notify-{len(started)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "doxa", "notify", "run", "--worker-id", "w1",
                 "--threshold-every", "0"],
                env=full, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _row(db: psycopg.Connection) -> tuple[str, str | None, int]:
    row = db.execute("SELECT state, claimed_by, attempts FROM notices").fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _queue_bill(db: psycopg.Connection, **contact: str) -> None:
    cid, meter = add_customer(db, "PB01010012345", "SN-1")
    add_contact(db, cid, **contact)  # type: ignore[arg-type]
    bill = add_bill(db, cid, meter, "2025-06", lines=LINES)
    assert notices.enqueue_bill_issued(db, [bill], NOW, ZONE) == 1


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.parametrize("moment", ["between claim and send", "between send and mark"])
def test_email_survives_sigkill(
    moment: str,
    db: psycopg.Connection,
    smtp_server: SmtpServer,
    notifier: Callable[..., subprocess.Popen[bytes]],
) -> None:
    _queue_bill(db, email="an@example.vn")
    store = smtp_server.store
    # RCPT: the worker has claimed the notice and is talking to the server, nothing delivered.
    # DATA: the server has stored the message, the worker waits for its 250.
    store.hold_at = "rcpt" if moment == "between claim and send" else "data"
    first = notifier({"DOXA_SMTP_URL": smtp_server.url})
    _wait(store.held.is_set, "the worker to be held by the server")
    assert _row(db) == ("sending", "w1", 1)
    _kill(first)
    delivered_before_restart = len(store.messages())
    assert delivered_before_restart == (0 if store.hold_at == "rcpt" else 1)

    store.hold_at = None
    store.release.set()
    second = notifier({"DOXA_SMTP_URL": smtp_server.url})
    _wait(lambda: _row(db)[0] == "sent", "the notice to be sent after the restart")
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0

    assert _row(db) == ("sent", "w1", 2)  # the crash counted as a try
    (mail,) = store.messages()  # the customer sees it once
    assert mail["To"] == "an@example.vn"
    if moment == "between send and mark":
        assert (store.arrivals, store.duplicates) == (2, 1)  # sent twice, kept once
    else:
        assert (store.arrivals, store.duplicates) == (1, 0)


def test_sms_survives_sigkill_between_send_and_mark(
    db: psycopg.Connection,
    sms_gateway: SmsGateway,
    notifier: Callable[..., subprocess.Popen[bytes]],
) -> None:
    import threading

    _queue_bill(db, phone="+84912345678", channel="sms")
    sms_gateway.hold = threading.Event()
    first = notifier({"DOXA_SMS_URL": sms_gateway.url})
    _wait(sms_gateway.held.is_set, "the gateway to have the SMS")
    assert _row(db) == ("sending", "w1", 1)
    _kill(first)
    sms_gateway.hold.set()
    sms_gateway.hold = None

    second = notifier({"DOXA_SMS_URL": sms_gateway.url})
    _wait(lambda: _row(db)[0] == "sent", "the SMS to be sent after the restart")
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0
    assert len(sms_gateway.received) == 2  # at least once: here twice
    assert len(set(sms_gateway.keys)) == 1  # with one Idempotency-Key
    (shown,) = sms_gateway.shown()
    assert shown["to"] == "+84912345678" and "Hoa don" in shown["text"]
