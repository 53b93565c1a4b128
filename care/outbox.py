"""The durable outbox of notices (table ``notices``). I/O.

**Queueing** (:func:`enqueue`) inserts one row per notice and channel with its rendered text;
``(dedupe_key, channel)`` is unique, so queueing the same notice again is a no-op and a notice
goes out once per channel. Each insert ends with ``NOTIFY doxa_outbox`` so idle workers wake up.

**Delivery** is claim → send → mark:

1. :func:`claim` takes up to ``limit`` due rows of one channel with ``FOR UPDATE SKIP LOCKED``
   (several workers never take the same row), sets them ``sending`` with the worker's id and a
   lease, counts the try, and commits — before anything is sent.
2. The worker sends each row.
3. :func:`mark` records each outcome: ``sent``; or back to ``pending`` with an exponential
   back-off (``care.backoff``); or ``dead`` with the last error after ``max_attempts`` tries or
   a permanent refusal.

A worker killed between 1 and 3 leaves rows in ``sending``. When it starts again with the same
id (``doxa notify run --worker-id``; an advisory lock makes the id unique among live workers)
:func:`release` puts them back at once; rows of a worker that never comes back are taken again
when their lease ends. Either way the row is sent again: delivery is *at least once*. A row is
never lost, and a crash counts as a try, so a notice that crashes the worker every time still
ends up dead rather than looping. The duplicate a crash after the send can cause carries the
same Message-ID (email) or Idempotency-Key (SMS), which lets the receiving side show it once
(see care/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from care import backoff
from care.channels import Outcome

CHANNELS = ("email", "sms")
KINDS = ("bill_issued", "threshold", "outage")
STATES = ("pending", "sending", "sent", "dead", "expired")
DEFAULT_LEASE = timedelta(minutes=5)  # longer than any one send can take (timeouts ≤ 30 s)
WAKE_CHANNEL = "doxa_outbox"


@dataclass(frozen=True)
class Notice:
    """A notice to queue: one row per channel it goes out on."""

    kind: str
    customer_id: int
    channel: str
    recipient: str
    language: str
    subject: str
    body: str
    dedupe_key: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    channel: str
    recipient: str
    subject: str
    body: str
    dedupe_key: str
    attempts: int  # including this one


def enqueue(conn: psycopg.Connection, notices: Iterable[Notice], now: datetime) -> int:
    """Queue ``notices`` (in the caller's transaction); returns how many were new."""
    rows = [
        (n.kind, n.customer_id, n.channel, n.recipient, n.language, n.subject, n.body,
         n.dedupe_key, now, n.expires_at, now)
        for n in notices
    ]  # fmt: skip
    if not rows:
        return 0
    added = 0
    with conn.cursor() as cur:
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            cur.execute(
                "INSERT INTO notices (kind, customer_id, channel, recipient, language, subject,"
                " body, dedupe_key, next_attempt_at, expires_at, created_at)"
                f" VALUES {values} ON CONFLICT (dedupe_key, channel) DO NOTHING",
                [value for row in chunk for value in row],
            )
            added += cur.rowcount
        cur.execute(f"NOTIFY {WAKE_CHANNEL}")
    return added


# Rows whose worker died without coming back, then rows due; each locked with SKIP LOCKED so
# concurrent workers take disjoint sets (the partial indexes notices_leased_idx/notices_due_idx).
_EXPIRED_LEASES = """
    SELECT id FROM notices
    WHERE state = 'sending' AND channel = %(channel)s AND lease_until <= %(now)s
    ORDER BY lease_until LIMIT %(limit)s FOR UPDATE SKIP LOCKED"""
_DUE = """
    SELECT id FROM notices
    WHERE state = 'pending' AND channel = %(channel)s AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"""
_CLAIM = """
    UPDATE notices n
    SET state = 'sending', claimed_by = %(worker)s, lease_until = %(lease_until)s,
        attempts = n.attempts + 1
    FROM ({due}) d
    WHERE n.id = d.id
    RETURNING n.id, n.kind, n.channel, n.recipient, n.subject, n.body, n.dedupe_key, n.attempts"""


def claim(
    conn: psycopg.Connection,
    channel: str,
    worker_id: str,
    now: datetime,
    limit: int = 100,
    lease: timedelta = DEFAULT_LEASE,
) -> list[Claimed]:
    """Take up to ``limit`` due rows of ``channel`` for this worker and commit the claim."""
    with conn.transaction():
        # Past their expiry: never sent (an outage notice after the outage is noise).
        conn.execute(
            "UPDATE notices SET state = 'expired', lease_until = NULL"
            " WHERE state = 'pending' AND channel = %s AND expires_at <= %s",
            (channel, now),
        )
        params = {"channel": channel, "now": now, "limit": limit, "worker": worker_id,
                  "lease_until": now + lease}  # fmt: skip
        rows: list[tuple[Any, ...]] = []
        for due in (_EXPIRED_LEASES, _DUE):
            if len(rows) >= limit:
                break
            params["limit"] = limit - len(rows)
            rows += conn.execute(_CLAIM.format(due=due), params).fetchall()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def mark(
    conn: psycopg.Connection,
    results: Sequence[tuple[Claimed, Outcome]],
    worker_id: str,
    now: datetime,
    max_attempts: int = backoff.DEFAULT_MAX_ATTEMPTS,
) -> None:
    """Record the outcomes of claimed rows in one transaction. A row another worker has taken
    over meanwhile (its lease ran out) is left to that worker."""
    sent = [c.id for c, o in results if o.status == "sent"]
    dead = [(c.id, o.error) for c, o in results if o.status == "permanent"]
    retry = []
    for c, o in results:
        if o.status != "retry":
            continue
        if backoff.is_dead(c.attempts, max_attempts):
            dead.append((c.id, f"gave up after {c.attempts} tries: {o.error}"))
        else:
            retry.append((c.id, o.error, now + backoff.delay(c.attempts)))
    with conn.transaction(), conn.cursor() as cur:
        if sent:
            cur.execute(
                "UPDATE notices SET state = 'sent', sent_at = %s, lease_until = NULL,"
                " last_error = NULL WHERE id = ANY(%s) AND state = 'sending' AND claimed_by = %s",
                (now, sent, worker_id),
            )
        if dead:
            cur.executemany(
                "UPDATE notices SET state = 'dead', lease_until = NULL, last_error = %s"
                " WHERE id = %s AND state = 'sending' AND claimed_by = %s",
                [(error, notice_id, worker_id) for notice_id, error in dead],
            )
        if retry:
            cur.executemany(
                "UPDATE notices SET state = 'pending', lease_until = NULL, last_error = %s,"
                " next_attempt_at = %s WHERE id = %s AND state = 'sending' AND claimed_by = %s",
                [(error, at, notice_id, worker_id) for notice_id, error, at in retry],
            )


def release(conn: psycopg.Connection, worker_id: str, ids: Sequence[int] | None = None) -> int:
    """Back to ``pending``, due now. Without ``ids``: every row this worker id holds — what a
    previous run of it left when it died (that try counts). With ``ids``: claimed rows this run
    did not try after all (stopping, out of time, channel down), their try not counted."""
    if ids is None:
        cur = conn.execute(
            "UPDATE notices SET state = 'pending', lease_until = NULL,"
            " last_error = coalesce(last_error, 'worker stopped during the send')"
            " WHERE state = 'sending' AND claimed_by = %s",
            (worker_id,),
        )
    else:
        cur = conn.execute(
            "UPDATE notices SET state = 'pending', lease_until = NULL,"
            " attempts = greatest(attempts - 1, 0)"
            " WHERE state = 'sending' AND claimed_by = %s AND id = ANY(%s)",
            (worker_id, list(ids)),
        )
    return cur.rowcount


@dataclass(frozen=True)
class KindSummary:
    """The outbox state of one kind of notice, for /ops."""

    kind: str
    pending: int
    sending: int
    sent: int
    dead: int
    expired: int
    oldest_pending: datetime | None
    last_error: str | None


def summary(conn: psycopg.Connection) -> list[KindSummary]:
    """Per kind: rows in each state, the oldest still waiting, the latest error."""
    rows = conn.execute(
        """
        SELECT kind,
               count(*) FILTER (WHERE state = 'pending'),
               count(*) FILTER (WHERE state = 'sending'),
               count(*) FILTER (WHERE state = 'sent'),
               count(*) FILTER (WHERE state = 'dead'),
               count(*) FILTER (WHERE state = 'expired'),
               min(created_at) FILTER (WHERE state IN ('pending', 'sending')),
               (array_agg(last_error ORDER BY id DESC)
                   FILTER (WHERE last_error IS NOT NULL AND state IN ('pending', 'dead')))[1]
        FROM notices GROUP BY kind ORDER BY kind"""
    ).fetchall()
    return [
        KindSummary(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6], r[7])
        for r in rows
    ]
