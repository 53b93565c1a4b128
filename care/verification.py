"""Confirming a new phone number or email address with a one-time code. I/O around the pure
rules of ``care.otp``.

:func:`start` records the code's hash (a new code replaces any code still open for the same
customer and channel) and returns the code for the caller to send; :func:`confirm` checks an
entered code, counting the try, and on success writes the new value to ``customer_contacts``
with an audit entry holding the old value — all in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from care import otp
from schema import audit

CHANNEL_COLUMN = {"phone": "phone", "email": "email"}


@dataclass(frozen=True)
class Started:
    verification_id: int
    code: str


def start(
    conn: psycopg.Connection,
    key: bytes,
    customer_id: int,
    channel: str,
    value: str,
    now: datetime,
    client_addr: str = "",
    code: str | None = None,
) -> Started:
    """A new code for ``value`` (already normalised); earlier open codes of this customer and
    channel stop working."""
    code = code or otp.new_code()
    digest = otp.code_hash(key, customer_id, channel, value, code)
    with conn.transaction():
        conn.execute(
            "UPDATE contact_verifications SET consumed_at = %s"
            " WHERE customer_id = %s AND channel = %s AND consumed_at IS NULL",
            (now, customer_id, channel),
        )
        row = conn.execute(
            "INSERT INTO contact_verifications (customer_id, channel, value, code_hash,"
            " created_at, expires_at, client_addr) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (customer_id, channel, value, digest, now, now + otp.LIFETIME, client_addr[:64]),
        ).fetchone()
    assert row is not None
    return Started(int(row[0]), code)


def cancel(conn: psycopg.Connection, verification_id: int, now: datetime) -> None:
    """Withdraw a code that could not be sent."""
    conn.execute(
        "UPDATE contact_verifications SET consumed_at = %s WHERE id = %s AND consumed_at IS NULL",
        (now, verification_id),
    )


@dataclass(frozen=True)
class Open:
    """The customer's code waiting to be entered, for the page to ask for it."""

    id: int
    channel: str
    value: str
    expires_at: datetime
    tries_left: int


def open_code(
    conn: psycopg.Connection, customer_id: int, channel: str, now: datetime
) -> Open | None:
    row = conn.execute(
        "SELECT id, channel, value, expires_at, attempts FROM contact_verifications"
        " WHERE customer_id = %s AND channel = %s AND consumed_at IS NULL AND expires_at > %s"
        " AND attempts < %s ORDER BY created_at DESC LIMIT 1",
        (customer_id, channel, now, otp.MAX_TRIES),
    ).fetchone()
    if row is None:
        return None
    return Open(row[0], row[1], row[2], row[3], otp.MAX_TRIES - int(row[4]))


@dataclass(frozen=True)
class Confirmed:
    outcome: otp.Check
    tries_left: int = 0
    channel: str = ""
    value: str = ""


def confirm(
    conn: psycopg.Connection,
    key: bytes,
    customer_id: int,
    channel: str,
    entered: str,
    now: datetime,
    actor: str,
    client_addr: str = "",
) -> Confirmed:
    """Check ``entered`` against the customer's latest code for ``channel``; on success the new
    value takes effect (audited with the old one) and the code is used up."""
    with conn.transaction():
        row = conn.execute(
            "SELECT id, value, code_hash, expires_at, attempts, consumed_at IS NOT NULL"
            " FROM contact_verifications WHERE customer_id = %s AND channel = %s"
            " ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE",
            (customer_id, channel),
        ).fetchone()
        if row is None:
            return Confirmed(otp.Check.EXPIRED)
        verification_id, value = row[0], row[1]
        pending = otp.Pending(bytes(row[2]), row[3], int(row[4]), bool(row[5]))
        code = otp.clean_code(entered)
        candidate = otp.code_hash(key, customer_id, channel, value, code) if code else None
        outcome = otp.check(pending, candidate, now)
        if outcome is otp.Check.WRONG:
            conn.execute(
                "UPDATE contact_verifications SET attempts = attempts + 1 WHERE id = %s",
                (verification_id,),
            )
            left = otp.tries_left(otp.Pending(pending.code_hash, pending.expires_at,
                                              pending.attempts + 1, False))  # fmt: skip
            return Confirmed(outcome, left, channel, value)
        if outcome is not otp.Check.OK:
            return Confirmed(outcome, 0, channel, value)
        conn.execute(
            "UPDATE contact_verifications SET consumed_at = %s, attempts = attempts + 1"
            " WHERE id = %s",
            (now, verification_id),
        )
        column = CHANNEL_COLUMN[channel]
        old = conn.execute(
            f"SELECT {column} FROM customer_contacts WHERE customer_id = %s FOR UPDATE",
            (customer_id,),
        ).fetchone()
        conn.execute(
            f"INSERT INTO customer_contacts (customer_id, {column}, updated_at)"
            f" VALUES (%s, %s, %s) ON CONFLICT (customer_id)"
            f" DO UPDATE SET {column} = EXCLUDED.{column}, updated_at = EXCLUDED.updated_at",
            (customer_id, value, now),
        )
        audit.record(conn, actor, f"account.{channel}",
                     {"customer_id": customer_id, "old": old[0] if old else None, "new": value,
                      "verified_by": "one-time code", "ip": client_addr})  # fmt: skip
    return Confirmed(otp.Check.OK, 0, channel, value)
