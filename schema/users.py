"""Staff users: argon2id password hashes, roles, and per-user API tokens.

Usernames are stored lower-case and matched lower-case. A user has a main ``role`` and may hold
``extra_roles`` (migration 0400). Passwords are hashed with argon2id (argon2-cffi's defaults) and
re-hashed on sign-in when those defaults grow. API tokens are random 256-bit strings; only their
SHA-256 is stored, so a token is shown once, when it is made.

Staff sessions (migration 0750) are kept here too: signing in starts one (a random token in the
signed cookie, its SHA-256 in ``staff_sessions``), signing out ends it, a password change ends
every session of the user, and a session is only good while its user is active.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from doxa.errors import UserError

ROLES = ("billing", "engineer", "admin")
USERNAME = re.compile(r"^[a-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
TOKEN_PREFIX = "doxa_"

_hasher = PasswordHasher()


@dataclass(frozen=True)
class StaffUser:
    id: int
    username: str
    role: str
    extra_roles: tuple[str, ...] = ()
    active: bool = True

    @property
    def roles(self) -> frozenset[str]:
        return frozenset((self.role, *self.extra_roles))


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_USER_COLUMNS = "id, username, role, extra_roles, active"


def _user(row: tuple | None) -> StaffUser | None:  # type: ignore[type-arg]
    if row is None:
        return None
    return StaffUser(row[0], row[1], row[2], tuple(row[3] or ()), row[4])


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_new_user(username: str, password: str, roles: Iterable[str]) -> tuple[str, list[str]]:
    """Validate before writing; returns the normalised username and the roles without repeats."""
    name = normalise_username(username)
    if not USERNAME.match(name):
        raise UserError(
            f"invalid username {username!r}: 1–64 letters, digits or _ . @ - (no spaces)"
        )
    wanted = list(dict.fromkeys(roles))
    if not wanted:
        raise UserError("give at least one role: billing, engineer or admin")
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise UserError(f"unknown role {unknown[0]!r}: billing, engineer or admin")
    check_password(password)
    return name, wanted


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def add_user(
    conn: psycopg.Connection, username: str, password: str, roles: Iterable[str]
) -> StaffUser:
    """Create an active staff user; the first role is the main one."""
    name, wanted = check_new_user(username, password, roles)
    try:
        row = conn.execute(
            "INSERT INTO staff_users (username, password_hash, role, extra_roles)"
            f" VALUES (%s, %s, %s, %s) RETURNING {_USER_COLUMNS}",
            (name, _hasher.hash(password), wanted[0], wanted[1:]),
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise UserError(f"user {name!r} already exists") from exc
    user = _user(row)
    assert user is not None
    return user


def set_password_or_add(
    conn: psycopg.Connection, username: str, password: str, roles: Iterable[str]
) -> StaffUser:
    """Give an existing user this password, these roles and an active account, or create it
    (``doxa demo`` prints fresh sign-ins on every run)."""
    name, wanted = check_new_user(username, password, roles)
    with conn.transaction():
        row = conn.execute(
            "UPDATE staff_users SET password_hash = %s, role = %s, extra_roles = %s, active = true"
            f" WHERE username = %s RETURNING {_USER_COLUMNS}",
            (_hasher.hash(password), wanted[0], wanted[1:], name),
        ).fetchone()
        user = _user(row)
        if user is not None:
            end_sessions(conn, user.id, "password")
    return user if user is not None else add_user(conn, name, password, wanted)


def set_password(conn: psycopg.Connection, username: str, password: str) -> tuple[StaffUser, int]:
    """Give an existing user a new password and end every session they have; returns the user
    and how many sessions were ended."""
    check_password(password)
    name = normalise_username(username)
    with conn.transaction():
        row = conn.execute(
            "UPDATE staff_users SET password_hash = %s WHERE username = %s"
            f" RETURNING {_USER_COLUMNS}",
            (_hasher.hash(password), name),
        ).fetchone()
        user = _user(row)
        if user is None:
            raise UserError(f"no user {username!r}")
        ended = end_sessions(conn, user.id, "password")
    return user, ended


def get_user(conn: psycopg.Connection, user_id: int) -> StaffUser | None:
    """The active user with this id, or None."""
    row = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM staff_users WHERE id = %s AND active", (user_id,)
    ).fetchone()
    return _user(row)


@cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def authenticate(conn: psycopg.Connection, username: str, password: str) -> StaffUser | None:
    """The active user with this username and password, or None.

    An unknown user costs one argon2 verification as a known one does, so the answer time does
    not tell which usernames exist.
    """
    row = conn.execute(
        f"SELECT {_USER_COLUMNS}, password_hash FROM staff_users WHERE username = %s",
        (normalise_username(username),),
    ).fetchone()
    if row is None or not row[4]:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password)
        return None
    stored = row[5]
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(stored):
        conn.execute(
            "UPDATE staff_users SET password_hash = %s WHERE id = %s",
            (_hasher.hash(password), row[0]),
        )
    return _user(row[:5])


# -- API tokens ------------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_token(conn: psycopg.Connection, user_id: int, name: str = "") -> str:
    """Make a token for this user and return it; it cannot be read back later."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (user_id, name, token_sha256, prefix) VALUES (%s, %s, %s, %s)",
        (user_id, name.strip()[:100], _digest(token), token[: len(TOKEN_PREFIX) + 6]),
    )
    return token


def user_for_token(conn: psycopg.Connection, token: str) -> StaffUser | None:
    """The active owner of a live token (noting its use), or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = conn.execute(
        f"UPDATE api_tokens t SET last_used_at = now() FROM staff_users u"
        f" WHERE t.token_sha256 = %s AND t.revoked_at IS NULL AND u.id = t.user_id AND u.active"
        f" RETURNING {', '.join('u.' + c for c in _USER_COLUMNS.split(', '))}",
        (_digest(token),),
    ).fetchone()
    return _user(row)


def list_tokens(conn: psycopg.Connection, user_id: int) -> list[ApiToken]:
    rows = conn.execute(
        "SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_tokens"
        " WHERE user_id = %s ORDER BY created_at DESC, id DESC",
        (user_id,),
    ).fetchall()
    return [ApiToken(*row) for row in rows]


def revoke_token(conn: psycopg.Connection, user_id: int, token_id: int) -> bool:
    """Revoke one of this user's live tokens; False when there is no such token."""
    cur = conn.execute(
        "UPDATE api_tokens SET revoked_at = now()"
        " WHERE id = %s AND user_id = %s AND revoked_at IS NULL",
        (token_id, user_id),
    )
    return cur.rowcount == 1


# -- sessions --------------------------------------------------------------------------------

SESSION_RETENTION = "90 days"  # ended and expired sessions are deleted after this


def start_session(conn: psycopg.Connection, user_id: int, address: str = "") -> str:
    """Start a session for this user and return its token (for the signed cookie)."""
    token = secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(
            "INSERT INTO staff_sessions (user_id, token_sha256, address) VALUES (%s, %s, %s)",
            (user_id, _digest(token), address[:64]),
        )
        conn.execute(
            f"DELETE FROM staff_sessions WHERE created_at < now() - interval '{SESSION_RETENTION}'"
        )
    return token


def user_for_session(conn: psycopg.Connection, token: str, lifetime_s: float) -> StaffUser | None:
    """The active user of a live session younger than ``lifetime_s``, or None."""
    if not token or len(token) > 100:
        return None
    row = conn.execute(
        f"SELECT {', '.join('u.' + c for c in _USER_COLUMNS.split(', '))}"
        " FROM staff_sessions s JOIN staff_users u ON u.id = s.user_id"
        " WHERE s.token_sha256 = %s AND s.ended_at IS NULL AND u.active"
        " AND s.created_at > now() - make_interval(secs => %s)",
        (_digest(token), lifetime_s),
    ).fetchone()
    return _user(row)


def end_session(conn: psycopg.Connection, token: str, reason: str = "sign-out") -> bool:
    """End one session; False when it was not live."""
    cur = conn.execute(
        "UPDATE staff_sessions SET ended_at = now(), end_reason = %s"
        " WHERE token_sha256 = %s AND ended_at IS NULL",
        (reason, _digest(token)),
    )
    return cur.rowcount == 1


def end_sessions(conn: psycopg.Connection, user_id: int, reason: str = "password") -> int:
    """End every live session of a user; returns how many."""
    cur = conn.execute(
        "UPDATE staff_sessions SET ended_at = now(), end_reason = %s"
        " WHERE user_id = %s AND ended_at IS NULL",
        (reason, user_id),
    )
    return cur.rowcount
