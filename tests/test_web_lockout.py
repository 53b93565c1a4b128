"""Failed attempts at a credential against a real ``doxa web`` (gunicorn, 2 processes, the
counters in the database): counted atomically before the work, so parallel requests cannot beat
a limit; counted per (credential, address), so one address cannot lock a customer or a staff
user out; and a gentler bound over all addresses, which never blocks the right credential from an
address that has not failed (issue 20, findings 8 and 9)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
from test_staff_helpers import PASSWORD, add_staff
from test_web_customer_cli import doxa_web
from test_web_customer_data import add_customer
from test_web_http_support import WebClient

pytestmark = pytest.mark.db

CODE, SERIAL = "PB0101000042", "SN-42"


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> Iterator[int]:
    with doxa_web(
        db_url, tmp_path, DOXA_WEB_PROXIES="1", DOXA_WEB_WORKERS="2", DOXA_WEB_THREADS="4"
    ) as (_, port):
        yield port


def test_parallel_wrong_serials_cannot_beat_the_per_code_limit(
    db: psycopg.Connection, site: int
) -> None:
    """14 wrong serials for one code at once from one address: exactly 5 are looked up (the
    limit is 5 failures per 15 minutes), the other 9 are refused without being tried."""
    add_customer(db, CODE, SERIAL)
    visitor = WebClient(site, address="198.51.100.7")
    token = visitor.csrf("/")
    cookie = "; ".join(f"{k}={v}" for k, v in visitor.cookies.items())
    start = threading.Barrier(14)

    def attempt(n: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", site, timeout=30)
        conn.connect()
        body = urlencode({"csrf_token": token, "customer_code": CODE, "meter_serial": f"G{n}"})
        start.wait()
        conn.request(
            "POST",
            "/",
            body=body,
            headers={
                "Cookie": cookie,
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-For": visitor.address,
            },
        )
        status = conn.getresponse().status
        conn.close()
        return status

    with ThreadPoolExecutor(14) as pool:
        statuses = sorted(pool.map(attempt, range(14)))
    assert statuses == [400] * 5 + [429] * 9


def test_wrong_serials_from_one_address_do_not_lock_the_customer_out(
    db: psycopg.Connection, site: int
) -> None:
    add_customer(db, CODE, SERIAL)
    attacker = WebClient(site, address="198.51.100.66")
    assert [attacker.lookup(CODE, f"GUESS{n}").status for n in range(5)] == [400] * 5
    refused = attacker.lookup(CODE, SERIAL)
    assert refused.status == 429  # that address has failed: it waits, even with the right one
    assert int(refused.headers["Retry-After"]) > 0
    customer = WebClient(site, address="203.0.113.20")
    reply = customer.lookup(CODE, SERIAL)
    assert (reply.status, reply.location) == (302, f"/meters/{SERIAL}")
    assert customer.get(f"/meters/{SERIAL}").status == 200
    # The customer's own typo counts for their address only.
    assert WebClient(site, address="203.0.113.21").lookup(CODE, "TYPO").status == 400


def test_a_spread_attack_on_one_code_gives_each_address_one_try(
    db: psycopg.Connection, site: int
) -> None:
    """30 failures for one code in 15 minutes (the bound over all addresses), from 7 addresses:
    from then on an address that has failed for this code is refused, a new address gets one
    try — and the right serial from an address that never failed still opens the page."""
    add_customer(db, CODE, SERIAL)
    early = WebClient(site, address="198.51.100.200")
    assert early.lookup(CODE, "WRONG").status == 400  # one failure, before the attack
    for host, tries in enumerate([5, 5, 5, 5, 5, 4]):
        bot = WebClient(site, address=f"198.51.100.{host + 1}")
        assert [bot.lookup(CODE, f"G{host}-{n}").status for n in range(tries)] == [400] * tries
    assert early.lookup(CODE, SERIAL).status == 429  # it has failed for this code
    fresh = WebClient(site, address="198.51.100.100")
    assert fresh.lookup(CODE, "STILL-WRONG").status == 400  # its one try
    assert fresh.lookup(CODE, "AGAIN-WRONG").status == 429
    customer = WebClient(site, address="203.0.113.30")
    assert customer.lookup(CODE, SERIAL).status == 302
    # Other customers' codes are not affected.
    add_customer(db, "PB0101000043", "SN-43")
    assert WebClient(site, address="198.51.100.1").lookup("PB0101000043", "SN-43").status == 302


def test_wrong_passwords_from_one_address_do_not_lock_a_staff_user_out(
    db: psycopg.Connection, site: int
) -> None:
    add_staff(db, "billing", "billing")
    attacker = WebClient(site, address="198.51.100.66")
    statuses = [attacker.sign_in("billing", f"guess-{n}").status for n in range(10)]
    assert statuses == [200] * 5 + [429] * 5
    assert attacker.sign_in("billing", PASSWORD).status == 429
    staff = WebClient(site, address="203.0.113.40")
    reply = staff.sign_in("billing", PASSWORD)
    assert (reply.status, reply.location) == (302, "/staff/")
    assert staff.get("/staff/").status == 200


def test_a_spread_attack_on_one_username_gives_each_address_one_try(
    db: psycopg.Connection, site: int
) -> None:
    add_staff(db, "billing", "billing")
    early = WebClient(site, address="198.51.100.200")
    assert early.sign_in("billing", "wrong-once").status == 200
    for host, tries in enumerate([5, 5, 5, 5, 5, 4]):  # 30 failures in all
        bot = WebClient(site, address=f"198.51.100.{host + 1}")
        statuses = [bot.sign_in("billing", f"g{host}-{n}").status for n in range(tries)]
        assert statuses == [200] * tries
    assert early.sign_in("billing", PASSWORD).status == 429
    fresh = WebClient(site, address="198.51.100.100")
    assert fresh.sign_in("billing", "still-wrong").status == 200
    assert fresh.sign_in("billing", "again-wrong").status == 429
    assert WebClient(site, address="203.0.113.50").sign_in("billing", PASSWORD).status == 302
    failed = db.execute("SELECT count(*) FROM audit_log WHERE action = 'login_failed'").fetchone()
    assert failed == (31,)  # every password tried was audited; the refused ones were not tried
