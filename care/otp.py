"""One-time codes that confirm a new phone number or email address. Pure (the random source and
the clock are the caller's).

A code is 6 digits, valid for :data:`LIFETIME`, allows :data:`MAX_TRIES` wrong entries, and is
kept only as an HMAC-SHA256 keyed with the site's secret and bound to the customer, channel and
value it confirms: a copy of the table gives no code away (10^6 guesses need the key), and a code
sent for one address cannot confirm another.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

DIGITS = 6
LIFETIME = timedelta(minutes=10)
MAX_TRIES = 5


def new_code(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """Six digits, leading zeros kept, from a cryptographic random source by default."""
    return f"{randbelow(10**DIGITS):0{DIGITS}d}"


def code_hash(key: bytes, customer_id: int, channel: str, value: str, code: str) -> bytes:
    message = f"{customer_id}\x1f{channel}\x1f{value}\x1f{code}".encode()
    return hmac.new(key, message, "sha256").digest()


def clean_code(text: str) -> str | None:
    """What the customer typed, as 6 digits (spaces allowed), else None."""
    digits = "".join(text.split())
    if len(digits) == DIGITS and digits.isascii() and digits.isdigit():
        return digits
    return None


class Check(Enum):
    OK = "ok"
    WRONG = "wrong"  # a try used up; more remain
    EXPIRED = "expired"
    NO_TRIES_LEFT = "no_tries_left"
    USED = "used"


@dataclass(frozen=True)
class Pending:
    """A code as stored: its hash, when it expires, tries used, whether already used."""

    code_hash: bytes
    expires_at: datetime
    attempts: int
    consumed: bool


def check(pending: Pending, candidate_hash: bytes | None, now: datetime) -> Check:
    """The outcome of entering a code whose hash is ``candidate_hash`` (None: not 6 digits)."""
    if pending.consumed:
        return Check.USED
    if now >= pending.expires_at:
        return Check.EXPIRED
    if pending.attempts >= MAX_TRIES:
        return Check.NO_TRIES_LEFT
    if candidate_hash is not None and hmac.compare_digest(pending.code_hash, candidate_hash):
        return Check.OK
    return Check.WRONG


def tries_left(pending: Pending) -> int:
    return max(0, MAX_TRIES - pending.attempts)
