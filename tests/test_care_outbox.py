"""The outbox end to end against real parts: notices queued in the test database, delivered by
the worker to a real SMTP server (aiosmtpd) and the tests' own HTTP SMS gateway, and read there.
Back-off, dead letters, leases and concurrent workers run on an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from test_care_support import (  # noqa: F401 - fixtures
    SmsGateway,
    SmtpServer,
    add_contact,
    notice_states,
    sms_gateway,
    smtp_server,
)
from test_web_customer_data import NOW, ZONE, add_bill, add_customer, add_readings, steady_readings

from care import backoff, notices, outbox
from care.channels import SmsChannel, SmtpChannel
from care.worker import Worker

pytestmark = pytest.mark.db

LINES = [{"tier": 1, "width_kwh": 50, "kwh": 50, "price_vnd": 1984},
         {"tier": 2, "width_kwh": 50, "kwh": 36, "price_vnd": 2050}]  # fmt: skip


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


_NODE: list[pytest.Item] = []


@pytest.fixture(autouse=True)
def _test_node(request: pytest.FixtureRequest) -> Iterator[None]:
    _NODE.append(request.node)
    yield
    _NODE.clear()


class _Workers:
    @staticmethod
    def append(worker: Worker) -> None:
        # Closed before the servers stop (node finalizers run last-registered first).
        _NODE[-1].addfinalizer(worker.close)


_WORKERS = _Workers()


def _worker(db_url: str, channels: dict, clock: Clock | None = None, wid: str = "w1") -> Worker:
    worker = Worker(db_url, channels, wid, clock=clock or Clock(NOW), max_attempts=4)
    _WORKERS.append(worker)
    return worker


def test_bill_issued_notice_arrives_by_email_and_sms_in_the_customers_language(
    db: psycopg.Connection, db_url: str, smtp_server: SmtpServer, sms_gateway: SmsGateway
) -> None:
    vi_id, vi_meter = add_customer(db, "PB01010012345", "SN-1")
    en_id, en_meter = add_customer(db, "PB01010012346", "SN-2")
    add_contact(db, vi_id, phone="+84912345678", email="an@example.vn", channel="both")
    add_contact(db, en_id, email="binh@example.vn", channel="email", language="en")
    issued = [add_bill(db, vi_id, vi_meter, "2025-06", lines=LINES),
              add_bill(db, en_id, en_meter, "2025-06", lines=LINES)]  # fmt: skip
    draft = add_bill(db, en_id, en_meter, "2025-05", lines=LINES, status="draft")

    assert notices.enqueue_bill_issued(db, [*issued, draft], NOW, ZONE) == 3
    assert notices.enqueue_bill_issued(db, issued, NOW, ZONE) == 0  # once per channel

    channels = {"email": SmtpChannel.from_url(smtp_server.url), "sms": SmsChannel(sms_gateway.url)}
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert _worker(db_url, channels).drain_once(conn) == 3
    assert [s for _, s, _ in notice_states(db)] == ["sent"] * 3

    mails = {m["To"]: m for m in smtp_server.messages()}
    assert set(mails) == {"an@example.vn", "binh@example.vn"}
    # amount 50 × 1984 + 36 × 2050 = 173,000 ₫; VAT 8 % = 13,840; total 186,840 ₫
    vi = mails["an@example.vn"]
    assert vi["Subject"] == "Hóa đơn tiền điện kỳ 06/2025"
    body = vi.get_content()
    assert "186.840\u00a0₫" in body, body[90:200]
    assert "27/06/2025" in body  # due 7 days after 20/06
    en = mails["binh@example.vn"].get_content()
    assert "₫186,840" in en and "27 Jun 2025" in en
    (sms,) = sms_gateway.received
    assert sms["to"] == "+84912345678"
    assert sms["text"].isascii() and len(sms["text"]) <= 160
    assert "186.840 VND" in sms["text"] and "27/06/2025" in sms["text"]
    assert "Hoa don" in sms["text"]  # Vietnamese without accents (GSM-7)


def test_failures_back_off_exponentially_then_go_dead_with_the_last_error(
    db: psycopg.Connection, db_url: str, sms_gateway: SmsGateway
) -> None:
    cid, meter = add_customer(db, "PB01010012345", "SN-1")
    add_contact(db, cid, phone="+84912345678", channel="sms")
    notices.enqueue_bill_issued(db, [add_bill(db, cid, meter, "2025-06", lines=LINES)], NOW, ZONE)
    sms_gateway.status = 503
    clock = Clock(NOW)
    worker = _worker(db_url, {"sms": SmsChannel(sms_gateway.url)}, clock)
    waits = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _attempt in range(1, 4):
            assert worker.drain_once(conn) == 1
            state, due, error = db.execute(
                "SELECT state, next_attempt_at, last_error FROM notices"
            ).fetchone()
            assert state == "pending" and "503" in error
            waits.append(due - clock.at)
            assert worker.drain_once(conn) == 0  # not due yet
            clock.at = due
        assert worker.drain_once(conn) == 1  # the 4th and last try
    assert waits == [backoff.delay(1), backoff.delay(2), backoff.delay(3)]
    assert waits == [timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=2)]
    state, attempts, error = db.execute(
        "SELECT state, attempts, last_error FROM notices"
    ).fetchone()
    assert (state, attempts) == ("dead", 4)
    assert error.startswith("gave up after 4 tries: SMS gateway answered 503")


def test_a_4xx_from_the_gateway_is_permanent_at_once(
    db: psycopg.Connection, db_url: str, sms_gateway: SmsGateway
) -> None:
    cid, meter = add_customer(db, "PB01010012345", "SN-1")
    add_contact(db, cid, phone="+84912345678", channel="sms")
    notices.enqueue_bill_issued(db, [add_bill(db, cid, meter, "2025-06", lines=LINES)], NOW, ZONE)
    sms_gateway.status = 422
    with psycopg.connect(db_url, autocommit=True) as conn:
        _worker(db_url, {"sms": SmsChannel(sms_gateway.url)}).drain_once(conn)
    assert notice_states(db) == [("sms", "dead", 1)]
    assert "422" in db.execute("SELECT last_error FROM notices").fetchone()[0]


def test_unreachable_smtp_server_is_retried(db: psycopg.Connection, db_url: str) -> None:
    cid, meter = add_customer(db, "PB01010012345", "SN-1")
    add_contact(db, cid, email="an@example.vn")
    notices.enqueue_bill_issued(db, [add_bill(db, cid, meter, "2025-06", lines=LINES)], NOW, ZONE)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with psycopg.connect(db_url, autocommit=True) as conn:
        _worker(db_url, {"email": SmtpChannel.from_url(f"smtp://127.0.0.1:{port}?timeout=2")}
                ).drain_once(conn)  # fmt: skip
    assert notice_states(db) == [("email", "pending", 1)]
    assert "SMTP" in db.execute("SELECT last_error FROM notices").fetchone()[0]


def test_a_lapsed_lease_is_taken_over_and_the_old_claim_cannot_mark(
    db: psycopg.Connection, db_url: str, smtp_server: SmtpServer
) -> None:
    cid, meter = add_customer(db, "PB01010012345", "SN-1")
    add_contact(db, cid, email="an@example.vn")
    notices.enqueue_bill_issued(db, [add_bill(db, cid, meter, "2025-06", lines=LINES)], NOW, ZONE)
    (first,) = outbox.claim(db, "email", "gone", NOW)  # a worker that claims, then vanishes
    assert outbox.claim(db, "email", "w2", NOW + timedelta(minutes=4)) == []  # lease holds
    later = Clock(NOW + outbox.DEFAULT_LEASE + timedelta(seconds=1))
    with psycopg.connect(db_url, autocommit=True) as conn:
        worker = _worker(db_url, {"email": SmtpChannel.from_url(smtp_server.url)}, later, "w2")
        assert worker.drain_once(conn) == 1
    from care.channels import Outcome

    outbox.mark(db, [(first, Outcome.retry("late"))], "gone", later.at)  # ignored: not its row
    assert notice_states(db) == [("email", "sent", 2)]
    assert len(smtp_server.messages()) == 1


def test_concurrent_workers_send_each_notice_once(
    db: psycopg.Connection, db_url: str, smtp_server: SmtpServer
) -> None:
    ids = []
    for k in range(60):
        cid, meter = add_customer(db, f"PB0101{k:07d}", f"SN-{k}")
        add_contact(db, cid, email=f"c{k}@example.vn")
        ids.append(add_bill(db, cid, meter, "2025-06", lines=LINES))
    assert notices.enqueue_bill_issued(db, ids, NOW, ZONE) == 60
    barrier = threading.Barrier(3)
    counts: list[int] = []

    def run(wid: str) -> None:
        worker = Worker(db_url, {"email": SmtpChannel.from_url(smtp_server.url)}, wid,
                        clock=Clock(NOW), batch=7)  # fmt: skip
        _WORKERS.append(worker)
        with psycopg.connect(db_url, autocommit=True) as conn:
            barrier.wait()
            total = 0
            while handled := worker.drain_once(conn):
                total += handled
            counts.append(total)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 60
    assert smtp_server.store.arrivals == 60 and smtp_server.store.duplicates == 0
    assert sorted(m["To"] for m in smtp_server.messages()) == sorted(
        f"c{k}@example.vn" for k in range(60)
    )


def test_usage_threshold_alert_once_per_billing_month(
    db: psycopg.Connection, db_url: str, smtp_server: SmtpServer
) -> None:
    # Reading day 15: the billing month started 15 June 00:00; 0.5 kWh/h since 1 June.
    cid, meter = add_customer(db, "PB01010012345", "SN-1")
    start = datetime(2025, 6, 1, tzinfo=ZONE)
    add_readings(db, meter, steady_readings(start, NOW, timedelta(minutes=30), 1000, 0.5))
    # 15 June 00:00 → 20 June 09:30 (the latest reading) = 129.5 h × 0.5 = 64.75 kWh
    add_contact(db, cid, email="an@example.vn", threshold_kwh=60, language="en")
    other, _ = add_customer(db, "PB01010012346", "SN-2")
    add_contact(db, other, email="b@example.vn", threshold_kwh=10)  # no readings: no alert
    assert notices.check_thresholds(db, NOW, ZONE) == 1
    assert notices.check_thresholds(db, NOW + timedelta(hours=1), ZONE) == 0  # once per month
    with psycopg.connect(db_url, autocommit=True) as conn:
        _worker(db_url, {"email": SmtpChannel.from_url(smtp_server.url)}).drain_once(conn)
    (mail,) = smtp_server.messages()
    assert "65 kWh" in mail.get_content() and "60 kWh" in mail.get_content()
    assert "15 Jun 2025" in mail.get_content()
    # the next billing month is a new period: a new alert is possible
    key = db.execute("SELECT dedupe_key FROM notices").fetchone()[0]
    assert key == f"threshold:{cid}:2025-06-15"


def test_threshold_as_percent_over_the_last_issued_bill(db: psycopg.Connection) -> None:
    cid, meter = add_customer(db, "PB01010012345", "SN-1")
    start = datetime(2025, 6, 1, tzinfo=ZONE)
    readings = steady_readings(start, NOW + timedelta(hours=3), timedelta(minutes=30), 1000, 0.5)
    add_readings(db, meter, [r for r in readings if r[0] < NOW])
    add_bill(db, cid, meter, "2025-06", lines=[{"tier": 1, "width_kwh": 50, "kwh": 50,
                                                 "price_vnd": 1984}])  # fmt: skip
    add_contact(db, cid, phone="+84912345678", channel="sms", threshold_pct=30)
    # last bill 50 kWh, +30 % = 65 kWh; 64.75 so far: not yet
    assert notices.check_thresholds(db, NOW, ZONE) == 0
    add_readings(db, meter, [r for r in readings if r[0] >= NOW])  # two hours later
    assert notices.check_thresholds(db, NOW + timedelta(hours=2), ZONE, [cid]) == 1
    (text,) = db.execute("SELECT body FROM notices").fetchone()
    assert "30% " in text and len(text) <= 160 and text.isascii()


def test_outage_notice_reaches_the_area_and_expires_with_the_outage(db: psycopg.Connection) -> None:
    inside, _ = add_customer(db, "PB01010012345", "SN-1")
    other_branch, _ = add_customer(db, "PB02020012345", "SN-2")
    add_contact(db, inside, phone="+84912345678", channel="sms")
    add_contact(db, other_branch, phone="+84912345679", channel="sms")
    start, end = NOW + timedelta(days=2), NOW + timedelta(days=2, hours=4)
    queued = notices.enqueue_outage(db, 7, province="Hồ Chí Minh", customer_prefix="PB0101",
                                    start=start, end=end, reason="Bảo trì lưới điện",
                                    now=NOW, zone=ZONE)  # fmt: skip
    assert queued == 1
    body, recipient, expires = db.execute(
        "SELECT body, recipient, expires_at FROM notices"
    ).fetchone()
    assert recipient == "+84912345678" and expires == end
    assert (
        body
        == "Doxa: cat dien theo ke hoach Ho Chi Minh (PB0101) tu 10:00 22/06/2025 den 14:00 22/06/2025. Bao tri luoi dien"
    )
    (claimed,) = [] or outbox.claim(db, "sms", "w", end + timedelta(seconds=1))[:1] or [None]
    assert claimed is None  # past the outage: expired, never sent
    assert notice_states(db) == [("sms", "expired", 0)]


def test_smtp_starttls_when_the_url_asks(
    db: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    import ssl
    import subprocess

    from care.mailbox import MaildirStore

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    store = MaildirStore(tmp_path / "tls-mail")
    from aiosmtpd.controller import Controller

    from care.mailbox import _free_port

    controller = Controller(store, hostname="127.0.0.1", port=_free_port("127.0.0.1"),
                            tls_context=context, require_starttls=True)  # fmt: skip
    controller.start()
    try:
        cid, meter = add_customer(db, "PB01010012345", "SN-1")
        add_contact(db, cid, email="an@example.vn")
        notices.enqueue_bill_issued(db, [add_bill(db, cid, meter, "2025-06", lines=LINES)],
                                    NOW, ZONE)  # fmt: skip
        plain = SmtpChannel.from_url(f"smtp://127.0.0.1:{controller.port}")
        with psycopg.connect(db_url, autocommit=True) as conn:
            _worker(db_url, {"email": plain}).drain_once(conn)
            plain.close()
            assert notice_states(db) == [("email", "pending", 1)]  # 530: STARTTLS first
            assert "530" in db.execute("SELECT last_error FROM notices").fetchone()[0]
            tls = SmtpChannel.from_url(f"smtp+starttls://127.0.0.1:{controller.port}?cafile={cert}")
            _worker(db_url, {"email": tls}, Clock(NOW + timedelta(minutes=1))).drain_once(conn)
            tls.close()
        assert notice_states(db) == [("email", "sent", 2)]
        assert len(store.messages()) == 1
    finally:
        controller.stop()


def test_ops_summary_counts_each_state_per_kind(db: psycopg.Connection) -> None:
    now = datetime(2025, 6, 20, tzinfo=UTC)
    cid, _ = add_customer(db, "PB01010012345", "SN-1")
    rows = [outbox.Notice("outage", cid, "sms", "+84912345678", "vi", "", "t", f"k{k}")
            for k in range(3)]  # fmt: skip
    outbox.enqueue(db, rows, now)
    db.execute("UPDATE notices SET state = 'dead', last_error = 'boom' WHERE dedupe_key = 'k0'")
    (summary,) = outbox.summary(db)
    assert (summary.kind, summary.pending, summary.dead, summary.last_error) == (
        "outage", 2, 1, "boom")  # fmt: skip


def test_a_channel_that_is_down_stops_the_batch_without_using_up_tries(
    db: psycopg.Connection, db_url: str, sms_gateway: SmsGateway
) -> None:
    ids = []
    for k in range(10):
        cid, meter = add_customer(db, f"PB0101{k:07d}", f"SN-{k}")
        add_contact(db, cid, phone=f"+8491234567{k}", channel="sms")
        ids.append(add_bill(db, cid, meter, "2025-06", lines=LINES))
    notices.enqueue_bill_issued(db, ids, NOW, ZONE)
    sms_gateway.status = 503
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert _worker(db_url, {"sms": SmsChannel(sms_gateway.url)}).drain_once(conn) == 3
    assert len(sms_gateway.keys) == 0  # (a 503 is not recorded as received)
    states = notice_states(db)
    assert sorted(states).count(("sms", "pending", 1)) == 3  # tried, backing off
    assert sorted(states).count(("sms", "pending", 0)) == 7  # not tried: no try used up
