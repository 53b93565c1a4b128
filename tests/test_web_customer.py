"""The customer lookup: success and failure, CSRF, rate limits, privacy between customers, and
garbage input — through the Flask test client against a real database."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_web_customer_data import (
    NOW,
    add_bill,
    add_customer,
    add_readings,
    close,
    csrf_token,
    make_app,
    sign_in,
    steady_readings,
)

pytestmark = pytest.mark.db

CODE_A, SERIAL_A = "PB01010012345", "SN-A-0001"
CODE_B, SERIAL_B = "PE02020067890", "SN-B-0002"
FAILURE = "We could not find a meter with this customer code and serial number."


@pytest.fixture
def customers(db: psycopg.Connection) -> dict[str, tuple[int, int]]:
    a = add_customer(db, CODE_A, SERIAL_A, name="Khách A")
    b = add_customer(db, CODE_B, SERIAL_B, name="Khách B")
    from datetime import timedelta

    for _, meter_id in (a, b):
        add_readings(
            db, meter_id, steady_readings(NOW - timedelta(days=3), NOW, timedelta(hours=1), 500, 1)
        )
    return {"a": a, "b": b}


@pytest.fixture
def app(db_url: str, customers: dict[str, tuple[int, int]]) -> Iterator[Flask]:
    site = make_app(db_url)
    yield site
    close(site)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_lookup_form_is_vietnamese_with_labels(client: FlaskClient) -> None:
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<html lang="vi">' in html
    assert '<label for="customer_code">Mã khách hàng</label>' in html
    assert '<label for="meter_serial">Số sê-ri công tơ</label>' in html
    assert 'name="csrf_token"' in html


def test_lookup_success_opens_the_meter_page(client: FlaskClient) -> None:
    response = sign_in(client, CODE_A, SERIAL_A)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/meters/{SERIAL_A}"
    page = client.get(f"/meters/{SERIAL_A}")
    assert page.status_code == 200
    assert "Khách A" in page.get_data(as_text=True)
    with client.session_transaction() as session:
        assert isinstance(session["customer_id"], int)


def test_code_is_normalised(client: FlaskClient) -> None:
    response = sign_in(client, " pb0101 0012345 ", SERIAL_A)
    assert response.status_code == 302


def test_every_failure_gives_the_same_answer(app: Flask) -> None:
    answers = set()
    for code, serial in (
        (CODE_A, SERIAL_B),  # right code, another customer's serial
        (CODE_A, "SN-NOPE"),  # right code, unknown serial
        ("PB01019999999", SERIAL_A),  # unknown code, right serial
        ("not a code", SERIAL_A),  # malformed code
        (CODE_A, ""),  # missing serial
    ):
        client = app.test_client()
        response = sign_in(client, code, serial)
        body = response.get_data(as_text=True)
        assert response.status_code == 400
        assert "Không tìm thấy công tơ với mã khách hàng và số sê-ri này" in body
        # The same page apart from the echoed inputs and the per-session CSRF token.
        stripped = body.replace(code.strip(), "").replace(serial, "")
        stripped = stripped.split('name="csrf_token"')[0] + stripped.split("</form>")[-1]
        answers.add((response.status_code, stripped))
        with client.session_transaction() as session:
            assert "customer_id" not in session
        assert client.get(f"/meters/{SERIAL_A}").status_code == 302
    assert len(answers) == 1


def test_post_without_csrf_token_is_rejected(client: FlaskClient) -> None:
    client.get("/")
    response = client.post("/", data={"customer_code": CODE_A, "meter_serial": SERIAL_A})
    assert response.status_code == 400
    assert '<html lang="vi">' in response.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "customer_id" not in session
    forged = client.post(
        "/", data={"csrf_token": "forged", "customer_code": CODE_A, "meter_serial": SERIAL_A}
    )
    assert forged.status_code == 400


STORAGES = pytest.mark.parametrize("storage", ["memory", "database"])


def limit_storage(storage: str, db_url: str) -> str:
    """Where the counters live: in the process, or in the database (what ``doxa web`` uses, so
    that all its processes count together)."""
    return "memory://" if storage == "memory" else db_url


@STORAGES
def test_rate_limit_per_client_address(db_url: str, customers: object, storage: str) -> None:
    app = make_app(
        db_url,
        LOOKUP_LIMIT_PER_ADDRESS="4 per minute",
        RATELIMIT_STORAGE_URI=limit_storage(storage, db_url),
    )
    try:
        client = app.test_client()
        codes = [f"PB0101{n:07d}" for n in range(5)]  # different codes: enumeration
        statuses = [sign_in(client, code, "X1").status_code for code in codes]
        assert statuses == [400, 400, 400, 400, 429]
        blocked = sign_in(client, CODE_A, SERIAL_A)  # even the right answer now waits
        assert blocked.status_code == 429
        assert "Bạn đã thử quá nhiều lần" in blocked.get_data(as_text=True)
        # Another address is not affected.
        other = sign_in(client, CODE_A, SERIAL_A, REMOTE_ADDR="10.0.0.2")
        assert other.status_code == 302
    finally:
        close(app)


@STORAGES
def test_rate_limit_per_customer_code_counts_failures(
    db_url: str, customers: object, storage: str
) -> None:
    app = make_app(
        db_url,
        LOOKUP_LIMIT_PER_CODE="3 per 15 minutes",
        LOOKUP_LIMIT_PER_CODE_ALL="5 per 15 minutes",
        RATELIMIT_STORAGE_URI=limit_storage(storage, db_url),
    )
    try:
        client = app.test_client()
        # Successes do not use up the customer's allowance.
        for _ in range(4):
            assert sign_in(client, CODE_A, SERIAL_A, REMOTE_ADDR="10.1.0.1").status_code == 302
        # Guessing serials for one code from one address is stopped after 3 failures...
        statuses = [
            sign_in(client, CODE_A, f"GUESS{n}", REMOTE_ADDR="10.2.0.1").status_code
            for n in range(4)
        ]
        assert statuses == [400, 400, 400, 429]
        assert sign_in(client, CODE_A, SERIAL_A, REMOTE_ADDR="10.2.0.1").status_code == 429
        # ...but the customer at another address is not locked out.
        assert sign_in(client, CODE_A, SERIAL_A, REMOTE_ADDR="10.3.0.1").status_code == 302
        # Beyond 5 failures from all addresses, an address that failed once waits; a new one
        # gets one try, and the right serial from an address that never failed still works.
        assert sign_in(client, CODE_A, "G", REMOTE_ADDR="10.4.0.1").status_code == 400
        assert sign_in(client, CODE_A, "G", REMOTE_ADDR="10.4.0.2").status_code == 400
        assert sign_in(client, CODE_A, SERIAL_A, REMOTE_ADDR="10.4.0.1").status_code == 429
        assert sign_in(client, CODE_A, "G", REMOTE_ADDR="10.4.0.3").status_code == 400
        assert sign_in(client, CODE_A, "G", REMOTE_ADDR="10.4.0.3").status_code == 429
        assert sign_in(client, CODE_A, SERIAL_A, REMOTE_ADDR="10.4.0.4").status_code == 302
        # Other codes are not affected.
        assert sign_in(client, CODE_B, SERIAL_B, REMOTE_ADDR="10.4.0.1").status_code == 302
    finally:
        close(app)


def test_customer_cannot_open_another_customers_pages(
    client: FlaskClient, db: psycopg.Connection, customers: dict[str, tuple[int, int]]
) -> None:
    lines = [{"tier": 1, "width_kwh": 50, "kwh": 40, "price_vnd": 1984}]
    bill_a = add_bill(db, *customers["a"], "2025-06", lines=lines)
    bill_b = add_bill(db, *customers["b"], "2025-06", lines=lines)
    assert sign_in(client, CODE_A, SERIAL_A).status_code == 302
    assert client.get(f"/meters/{SERIAL_A}").status_code == 200
    assert client.get(f"/bills/{bill_a}").status_code == 200
    for path in (
        f"/meters/{SERIAL_B}",
        f"/meters/{SERIAL_B}?days=90",
        f"/meters/{SERIAL_B}/readings",
        f"/meters/{SERIAL_B}/readings.csv",
        f"/bills/{bill_b}",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Khách B" not in response.get_data(as_text=True)
    bills = client.get("/bills").get_data(as_text=True)
    assert f"/bills/{bill_a}" in bills and f"/bills/{bill_b}" not in bills
    # A nonexistent meter or bill looks exactly the same as another customer's.
    assert client.get("/meters/NO-SUCH-METER").status_code == 404
    assert client.get(f"/bills/{bill_b + 1000}").status_code == 404


def test_customer_pages_forbid_outside_resources(client: FlaskClient) -> None:
    sign_in(client, CODE_A, SERIAL_A)
    for path in ("/", f"/meters/{SERIAL_A}", "/bills"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["Content-Security-Policy"], path
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/meters/{SERIAL_A}").headers["Cache-Control"] == "no-store"


def test_a_customer_sees_all_of_their_own_meters(
    client: FlaskClient, db: psycopg.Connection
) -> None:
    add_customer(db, CODE_A, "SN-A-0002", name="Khách A")  # a second meter, same customer
    assert sign_in(client, CODE_A, SERIAL_A).status_code == 302
    page = client.get(f"/meters/{SERIAL_A}").get_data(as_text=True)
    assert 'href="/meters/SN-A-0002"' in page
    assert client.get("/meters/SN-A-0002").status_code == 200
    assert client.get(f"/meters/{SERIAL_B}").status_code == 404


def test_pages_need_a_lookup_first(client: FlaskClient) -> None:
    for path in (f"/meters/{SERIAL_A}", "/bills", "/bills/1", "/account"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/"


def test_session_cookie_is_signed(client: FlaskClient, customers: dict) -> None:
    """A session cookie forged without the secret key is ignored."""
    from flask.sessions import SecureCookieSessionInterface
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer(
        "wrong-key",
        salt="cookie-session",
        signer_kwargs={
            "key_derivation": "hmac",
            "digest_method": SecureCookieSessionInterface.digest_method,
        },
    ).dumps({"customer_id": customers["b"][0], "customer_at": 2_000_000_000})
    client.set_cookie("session", forged)
    assert client.get(f"/meters/{SERIAL_B}").status_code == 302


def test_sign_out(client: FlaskClient) -> None:
    sign_in(client, CODE_A, SERIAL_A)
    token = csrf_token(client, f"/meters/{SERIAL_A}")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get(f"/meters/{SERIAL_A}").status_code == 302


def test_session_expires(db_url: str, customers: object) -> None:
    app = make_app(db_url, CUSTOMER_SESSION_SECONDS=0)
    try:
        client = app.test_client()
        assert sign_in(client, CODE_A, SERIAL_A).status_code == 302
        with client.session_transaction() as session:
            session["customer_at"] -= 5
        assert client.get(f"/meters/{SERIAL_A}").status_code == 302
    finally:
        close(app)


GARBAGE = [
    "A" * 100_000,  # very long (over the 64 KiB request limit once encoded)
    "B" * 5_000,
    "' OR '1'='1",
    "PB0101'; DROP TABLE customers;--",
    "%' UNION SELECT * FROM staff_users --",
    "\x00\x01\x02",
    "Nguyễn 🙂 電気",
    "\u202eevil",
    "PB01010012345\x00",
    "../../etc/passwd",
    "<script>alert(1)</script>",
]


def test_garbage_lookup_gives_4xx_never_500(app: Flask) -> None:
    client = app.test_client()
    for n, value in enumerate(GARBAGE):
        for code, serial in ((value, SERIAL_A), (CODE_A, value), (value, value)):
            response = sign_in(client, code, serial, REMOTE_ADDR=f"10.9.{n}.1")
            assert 400 <= response.status_code < 500, (n, code[:20], serial[:20])
            assert "<script>alert(1)</script>" not in response.get_data(as_text=True)
            with client.session_transaction() as session:
                assert "customer_id" not in session


def test_garbage_in_urls_gives_4xx_never_500(client: FlaskClient) -> None:
    from urllib.parse import quote

    sign_in(client, CODE_A, SERIAL_A)
    for value in GARBAGE[1:]:
        q = quote(value, safe="")
        for path in (
            f"/meters/{q}",
            f"/meters/{q}/readings",
            f"/meters/{SERIAL_A}/readings?before={q}",
            f"/meters/{SERIAL_A}/readings?after={q}",
            f"/meters/{SERIAL_A}/readings.csv?from={q}",
            f"/meters/{SERIAL_A}/readings.csv?to={q}",
            f"/bills/{q}",
            f"/?lang={q}",
        ):
            response = client.get(path)
            assert response.status_code < 500, path[:60]
            assert response.status_code != 200 or path.startswith("/?lang"), path[:60]


def test_out_of_range_values_give_4xx(client: FlaskClient) -> None:
    sign_in(client, CODE_A, SERIAL_A)
    for path in (
        f"/bills/{2**70}",
        f"/meters/{SERIAL_A}/readings?before=9999-12-31T23:59:59%2B00:00",
        f"/meters/{SERIAL_A}/readings?after=0001-01-01T00:00:00%2B00:00",
        f"/meters/{SERIAL_A}/readings?before=2025-01-01T00:00:00",  # no offset
        f"/meters/{SERIAL_A}/readings.csv?from=0001-01-01",
        f"/meters/{SERIAL_A}/readings.csv?to=9999-12-31",
        f"/meters/{SERIAL_A}/readings.csv?from=2025-06-10&to=2025-06-01",  # reversed
        f"/meters/{SERIAL_A}/readings.csv?from=2020-01-01&to=2025-06-01",  # too long
    ):
        assert client.get(path).status_code in (400, 404), path


def test_oversized_post_is_rejected(client: FlaskClient) -> None:
    token = csrf_token(client)
    response = client.post(
        "/", data={"csrf_token": token, "customer_code": "A" * 200_000, "meter_serial": "x"}
    )
    assert response.status_code == 413


def test_database_down_gives_a_503_page(tmp_path: object) -> None:
    from doxa.services._proc import free_port
    from lookup_web import create_app

    url = f"postgresql://doxa@127.0.0.1:{free_port()}/doxa?connect_timeout=1"
    app = create_app({"DATABASE_URL": url, "TESTING": True, "DB_POOL_TIMEOUT": 1})
    try:
        client = app.test_client()
        response = sign_in(client, CODE_A, SERIAL_A)
        assert response.status_code == 503
        assert "Dịch vụ tạm thời gián đoạn" in response.get_data(as_text=True)
    finally:
        close(app)


def test_meter_pages_leave_the_session_cookie_alone(client: FlaskClient) -> None:
    """Signing in sets the session once; the pages after it do not rewrite it (no new cookie,
    no remember-me deletion), so a browser does not have to store one on every page."""
    response = sign_in(client, CODE_A, SERIAL_A)
    assert "session=" in response.headers.get("Set-Cookie", "")
    for path in (f"/meters/{SERIAL_A}", f"/meters/{SERIAL_A}/readings", f"/meters/{SERIAL_A}"):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers.getlist("Set-Cookie") == []


def test_a_connection_the_server_dropped_is_replaced(
    client: FlaskClient, db: psycopg.Connection
) -> None:
    """The pool checks a connection without a round trip; one whose backend was terminated
    (server restart, idle timeout) is noticed and replaced, not handed to a page."""
    import time

    sign_in(client, CODE_A, SERIAL_A)
    assert client.get(f"/meters/{SERIAL_A}").status_code == 200
    terminated = db.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE pid <> pg_backend_pid() AND datname = current_database()"
        " AND backend_type = 'client backend'"
    ).fetchone()
    assert terminated is not None and terminated[0] >= 1
    time.sleep(0.2)  # the terminated backends' farewells reach the pooled sockets
    for _ in range(3):
        page = client.get(f"/meters/{SERIAL_A}")
        assert page.status_code == 200
        assert "Khách A" in page.get_data(as_text=True)


def test_behind_a_trusted_proxy_the_limit_counts_each_client(
    db_url: str, customers: object
) -> None:
    """With one trusted proxy, every lookup comes from the proxy's address, and the client is
    the address the proxy put in X-Forwarded-For: each client has its own allowance."""
    app = make_app(db_url, LOOKUP_LIMIT_PER_ADDRESS="2 per minute", TRUSTED_PROXIES=1)
    try:
        client = app.test_client()

        def via_proxy(client_address: str) -> int:
            return sign_in(
                client,
                "PB01010000001",
                "X1",
                REMOTE_ADDR="10.9.9.9",  # the proxy
                HTTP_X_FORWARDED_FOR=client_address,
            ).status_code

        assert [via_proxy("203.0.113.5") for _ in range(3)] == [400, 400, 429]
        assert via_proxy("203.0.113.6") == 400  # another customer behind the same proxy
    finally:
        close(app)


def test_without_a_trusted_proxy_a_forwarded_header_is_ignored(
    db_url: str, customers: object
) -> None:
    """By default X-Forwarded-For is not believed: made-up addresses do not buy new attempts."""
    app = make_app(db_url, LOOKUP_LIMIT_PER_ADDRESS="2 per minute")
    try:
        client = app.test_client()
        statuses = [
            sign_in(
                client, "PB01010000001", "X1", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}"
            ).status_code
            for n in range(3)
        ]
        assert statuses == [400, 400, 429]
    finally:
        close(app)
