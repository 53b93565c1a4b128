"""Staff sign-in: argon2 users from ``doxa users add``, CSRF on the form, the rate limit, cookie
flags, session lifetime, and the audit log of sign-ins."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import psycopg
import pytest
from flask import Flask
from test_staff_helpers import PASSWORD, add_staff, app_factory, csrf_token, sign_in

from schema import users

pytestmark = pytest.mark.db


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def test_users_add_reads_the_password_from_stdin(doxa, db_url, db, monkeypatch) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-passphrase\n"))
    result = doxa("users", "add", "Lan.Nguyen", "--role", "engineer", "--role", "billing", env=env)
    assert result.code == 0, result.err
    assert result.out.strip() == "added lan.nguyen (billing, engineer)"
    stored = db.execute(
        "SELECT username, password_hash, role, extra_roles, active FROM staff_users"
    ).fetchone()
    assert stored is not None
    assert stored[0] == "lan.nguyen" and stored[2] == "engineer" and stored[3] == ["billing"]
    assert stored[1].startswith("$argon2id$") and "s3cret" not in stored[1]
    user = users.authenticate(db, "LAN.NGUYEN", "s3cret-passphrase")
    assert user is not None and user.roles == {"engineer", "billing"}
    assert users.authenticate(db, "lan.nguyen", "s3cret-passphras") is None
    assert users.authenticate(db, "nobody", "s3cret-passphrase") is None
    audit = db.execute("SELECT actor, action, detail->>'username' FROM audit_log").fetchall()
    assert audit == [("cli", "user.add", "lan.nguyen")]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("lan", "--role", "billing"), "", "no password on standard input"),
        (("lan", "--role", "billing"), "short\n", "at least 8 characters"),
        (("lan", "--role", "boss"), "long-enough-1\n", "Invalid value for '--role'"),
        (("lan",), "long-enough-1\n", "Missing option '--role'"),
        (("bad name", "--role", "admin"), "long-enough-1\n", "invalid username"),
        (("taken", "--role", "admin"), "long-enough-1\n", "user 'taken' already exists"),
    ],
)
def test_users_add_rejects_bad_input(doxa, db_url, db, monkeypatch, args, stdin, message) -> None:
    add_staff(db, "taken", "billing")
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    result = doxa("users", "add", *args, env={"DOXA_DATABASE_URL": db_url})
    assert result.code == 2, result.err
    assert message in result.err
    assert db.execute("SELECT count(*) FROM staff_users").fetchone() == (1,)


def test_sign_in_and_out_are_audited(db, make_app) -> None:
    add_staff(db, "lan", "billing")
    client = make_app().test_client()
    page = client.get("/staff/login")
    assert page.status_code == 200
    assert 'name="password"' in page.get_data(as_text=True)

    wrong = sign_in(client, "lan", "not the password")
    assert wrong.status_code == 200
    assert "Sai tên đăng nhập hoặc mật khẩu." in wrong.get_data(as_text=True)  # Vietnamese first
    assert client.get("/staff/").status_code == 302

    right = sign_in(client, "LAN")
    assert right.status_code == 302 and right.headers["Location"] == "/staff/"
    home = client.get("/staff/")
    assert home.status_code == 200 and "lan" in home.get_data(as_text=True)

    token = csrf_token(client, "/staff/")
    out = client.post("/staff/logout", data={"csrf_token": token})
    assert out.status_code == 302 and out.headers["Location"] == "/staff/login"
    assert client.get("/staff/").headers["Location"].startswith("/staff/login")

    entries = db.execute("SELECT actor, action FROM audit_log ORDER BY id").fetchall()
    assert entries == [("lan", "login_failed"), ("lan", "login"), ("lan", "logout")]
    assert db.execute("SELECT detail->>'ip' FROM audit_log LIMIT 1").fetchone() == ("127.0.0.1",)


def test_forms_without_a_csrf_token_are_refused(db, make_app) -> None:
    add_staff(db, "lan", "billing")
    client = make_app().test_client()
    response = client.post("/staff/login", data={"username": "lan", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/staff/").status_code == 302  # not signed in
    assert sign_in(client, "lan").status_code == 302
    # Signed in, a form posted without its token (as from another site) is refused too.
    no_token = client.post("/staff/tokens", data={"name": "x"})
    assert no_token.status_code == 400
    assert db.execute("SELECT count(*) FROM api_tokens").fetchone() == (0,)


def test_failed_sign_ins_are_limited_per_address_and_per_username(db, make_app) -> None:
    """In-process (memory counters) version of tests/test_web_lockout.py: failures count per
    address and per (username, address); successes do not count; another address is free."""
    add_staff(db, "lan", "billing")
    add_staff(db, "minh", "engineer")
    app = make_app(
        STAFF_LOGIN_LIMIT="3 per minute",
        STAFF_LOGIN_LIMIT_PER_USER="2 per minute",
        STAFF_LOGIN_LIMIT_PER_USER_ALL="1000 per minute",
    )
    first = app.test_client()
    assert [sign_in(first, "lan", "guess").status_code for _ in range(2)] == [200, 200]
    # The third try at lan from this address is refused, even with the right password.
    assert sign_in(first, "lan").status_code == 429
    assert sign_in(first, "minh", "guess").status_code == 200  # the address's third failure
    assert sign_in(first, "minh").status_code == 429  # the address has used up its failures
    # From another address both users sign in; successes use up nothing.
    for name in ("lan",) * 5 + ("minh",):
        other = app.test_client()
        other.environ_base["REMOTE_ADDR"] = "10.9.8.7"
        assert sign_in(other, name).status_code == 302
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'login'").fetchone() == (6,)
    failed = db.execute("SELECT count(*) FROM audit_log WHERE action = 'login_failed'").fetchone()
    assert failed == (3,)  # refused attempts are not tried


def session_cookie(response) -> str:
    found = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(found) == 1, response.headers
    return found[0]


def test_cookie_flags(db, make_app) -> None:
    add_staff(db, "lan", "billing")
    app = make_app()
    secure = app.test_client()
    token = csrf_token(secure, "https://doxa.example/staff/login")
    response = secure.post(
        "https://doxa.example/staff/login",
        data={"csrf_token": token, "username": "lan", "password": PASSWORD},
        headers={"Referer": "https://doxa.example/staff/login"},  # checked over HTTPS
    )
    assert response.status_code == 302
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie

    plain = app.test_client()
    cookie = session_cookie(sign_in(plain, "lan"))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie

    forced = make_app(SESSION_COOKIE_SECURE=True).test_client()
    assert "Secure" in session_cookie(forced.get("/staff/login"))


def test_sessions_end_after_their_lifetime(db, make_app) -> None:
    add_staff(db, "lan", "billing")
    client = make_app(STAFF_SESSION_SECONDS=3600).test_client()
    assert sign_in(client, "lan").status_code == 302
    assert client.get("/staff/").status_code == 200
    with client.session_transaction() as session:
        session["staff_signed_in_at"] -= 3601
    assert client.get("/staff/").headers["Location"].startswith("/staff/login")


def test_deactivated_users_are_signed_out(db: psycopg.Connection, make_app) -> None:
    add_staff(db, "lan", "billing")
    client = make_app().test_client()
    assert sign_in(client, "lan").status_code == 302
    db.execute("UPDATE staff_users SET active = false")
    assert client.get("/staff/").status_code == 302
    assert sign_in(client, "lan").status_code == 200  # wrong username or password


def test_next_only_leads_within_the_site(db, make_app) -> None:
    add_staff(db, "lan", "engineer")
    client = make_app().test_client()
    assert client.get("/ops").headers["Location"] == "/staff/login?next=%2Fops"
    token = csrf_token(client, "/staff/login?next=/ops")
    form = {"csrf_token": token, "username": "lan", "password": PASSWORD}
    assert client.post("/staff/login?next=/ops", data=form).headers["Location"] == "/ops"
    evil = make_app().test_client()
    token = csrf_token(evil)
    form["csrf_token"] = token
    response = evil.post("/staff/login?next=//evil.example/x", data=form)
    assert response.headers["Location"] == "/staff/"


def test_signing_in_replaces_a_customer_session(db, make_app) -> None:
    add_staff(db, "lan", "billing")
    client = make_app().test_client()
    with client.session_transaction() as session:
        session["customer_id"] = 1
        session["lang"] = "en"
    assert sign_in(client, "lan").status_code == 302
    with client.session_transaction() as session:
        assert "customer_id" not in session
        assert session["lang"] == "en"
