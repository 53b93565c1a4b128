"""Staff sessions live in the database as well as in the cookie: signing out, changing the
password (``doxa users passwd``) ends them, so a copied cookie stops
working at once (issue 20, finding 10). Against a real ``doxa web``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_staff_helpers import PASSWORD, add_staff
from test_web_customer_cli import doxa_web
from test_web_http_support import WebClient

from schema import users

pytestmark = pytest.mark.db
DOXA = str(Path(sys.executable).with_name("doxa"))


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> Iterator[int]:
    with doxa_web(db_url, tmp_path, DOXA_WEB_PROXIES="1", DOXA_WEB_WORKERS="2") as (_, port):
        yield port


def _copy(client: WebClient) -> WebClient:
    """Another browser holding the same cookies (a stolen or kept copy)."""
    other = WebClient(client.port, client.address, client.user_agent)
    other.cookies = dict(client.cookies)
    return other


def test_a_cookie_kept_after_sign_out_no_longer_works(db: psycopg.Connection, site: int) -> None:
    add_staff(db, "lan", "billing")
    browser = WebClient(site)
    assert browser.sign_in("lan", PASSWORD).status == 302
    kept = _copy(browser)
    assert kept.get("/staff/").status == 200
    assert kept.get("/api/v1/collectors").status == 200  # the API takes the session too
    out = browser.post("/staff/logout", {}, token_from="/staff/")
    assert (out.status, out.location) == (302, "/staff/login")
    replay = kept.get("/staff/")
    assert replay.status == 302 and replay.location.startswith("/staff/login")
    assert kept.get("/api/v1/collectors").status == 401
    assert kept.get("/staff/exports").status == 302
    ended = db.execute("SELECT ended_at IS NOT NULL, end_reason FROM staff_sessions").fetchall()
    assert ended == [(True, "sign-out")]
    # Signing in again gives a new session that works.
    assert browser.sign_in("lan", PASSWORD).status == 302
    assert browser.get("/staff/").status == 200


def _passwd(db_url: str, home: Path, username: str, password: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    environ.update(DOXA_DATABASE_URL=db_url, DOXA_HOME=str(home))
    return subprocess.run(
        [DOXA, "users", "passwd", username],
        input=f"{password}\n",
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_changing_the_password_ends_every_session_of_the_user(
    db: psycopg.Connection, db_url: str, site: int, tmp_path: Path
) -> None:
    add_staff(db, "lan", "billing")
    add_staff(db, "minh", "engineer")
    office, laptop = WebClient(site, "192.0.2.10"), WebClient(site, "192.0.2.11")
    colleague = WebClient(site, "192.0.2.12")
    for browser, name in ((office, "lan"), (laptop, "lan"), (colleague, "minh")):
        assert browser.sign_in(name, PASSWORD).status == 302
        assert browser.get("/staff/").status == 200
    done = _passwd(db_url, tmp_path, "LAN", "a brand new passphrase")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "changed the password of lan; ended 2 session(s)"
    assert office.get("/staff/").status == 302
    assert laptop.get("/staff/").status == 302
    assert colleague.get("/staff/").status == 200  # other users are not affected
    assert WebClient(site, "192.0.2.13").sign_in("lan", PASSWORD).status == 200  # old: refused
    assert WebClient(site, "192.0.2.14").sign_in("lan", "a brand new passphrase").status == 302
    audit = db.execute(
        "SELECT actor, detail->>'username', detail->>'sessions_ended' FROM audit_log"
        " WHERE action = 'user.passwd'"
    ).fetchall()
    assert audit == [("cli", "lan", "2")]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("nobody",), "long-enough-1\n", "no user 'nobody'"),
        (("lan",), "short\n", "at least 8 characters"),
        (("lan",), "", "no password on standard input"),
    ],
)
def test_users_passwd_rejects_bad_input(doxa, db_url, db, monkeypatch, args, stdin, message):
    add_staff(db, "lan", "billing")
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    result = doxa("users", "passwd", *args, env={"DOXA_DATABASE_URL": db_url})
    assert result.code == 2, result.err
    assert message in result.err and "Traceback" not in result.err
    assert users.authenticate(db, "lan", PASSWORD) is not None  # unchanged


def test_staff_change_their_own_password_on_the_site(db: psycopg.Connection, site: int) -> None:
    add_staff(db, "lan", "billing")
    here, elsewhere = WebClient(site, "192.0.2.20"), WebClient(site, "192.0.2.21")
    for browser in (here, elsewhere):
        assert browser.sign_in("lan", PASSWORD).status == 302
    page = here.get("/staff/password")
    assert page.status == 200 and 'autocomplete="new-password"' in page.text
    wrong = here.post(
        "/staff/password",
        {"current": "not it at all", "new": "n3w passphrase", "again": "n3w passphrase"},
    )
    assert wrong.status == 400 and "Đây không phải mật khẩu hiện tại của bạn." in wrong.text
    differ = here.post(
        "/staff/password", {"current": PASSWORD, "new": "n3w passphrase", "again": "n3w passphras"}
    )
    assert differ.status == 400
    done = here.post(
        "/staff/password", {"current": PASSWORD, "new": "n3w passphrase", "again": "n3w passphrase"}
    )
    assert (done.status, done.location) == (302, "/staff/")
    assert here.get("/staff/").status == 200  # this browser has a new session
    assert elsewhere.get("/staff/").status == 302  # the other one is signed out
    assert WebClient(site, "192.0.2.22").sign_in("lan", "n3w passphrase").status == 302
    audit = db.execute(
        "SELECT action, detail->>'via', detail->>'sessions_ended' FROM audit_log"
        " WHERE action IN ('user.passwd', 'password_failed') ORDER BY id"
    ).fetchall()
    assert audit == [("password_failed", None, None), ("user.passwd", "web", "2")]
