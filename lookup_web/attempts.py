"""Limits on failed attempts at a credential — a customer code with its meter serial, a staff
username with its password, a one-time code — for every page that checks one.

A :class:`FailureLimit` keeps three counters, each a set of fixed windows in Flask-Limiter's
storage (the database under ``doxa web``, so every process counts together):

* **per address** — failures from one client address, whatever the credential;
* **per subject and address** — failures at one credential (the subject: a code, a username)
  from one address;
* **per subject** — failures at one credential from every address: the gentler bound.

Every attempt is counted as a failure *before* the work, by one atomic increment per window,
and given back when it succeeds; so parallel requests cannot all pass a check made before any of
them is counted. An attempt is refused (429, with ``Retry-After``) when

* its address has used up its per-address or its per-(subject, address) allowance, or
* the subject has used up its overall allowance *and* this address has failed at this subject
  before (within the longest per-(subject, address) window): once a credential is under attack
  from many addresses, each address gets one try at it.

So an address that has not failed is never refused the right credential, and no one can lock a
customer or a staff user out from their own address. A refused attempt is not tried, and its
increments are given back: the counters hold failures (and attempts in flight) only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from flask import current_app
from limits import RateLimitItem, parse_many
from limits.storage import Storage
from werkzeug.exceptions import TooManyRequests

from lookup_web.security import client_address, limiter


@lru_cache(maxsize=64)
def _windows(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))


@dataclass(frozen=True)
class _Counted:
    key: str
    expiry: int
    window: RateLimitItem
    hits: int

    @property
    def over(self) -> bool:
        return self.hits > self.window.amount


class Attempt:
    """One attempt, counted as a failure until :meth:`succeeded` gives its counts back."""

    def __init__(self, storage: Storage, counted: Iterable[_Counted]) -> None:
        self._storage = storage
        self._counted = list(counted)

    def succeeded(self) -> None:
        _give_back(self._storage, self._counted)
        self._counted = []


def _give_back(storage: Storage, counted: Iterable[_Counted]) -> None:
    decr = getattr(storage, "decr", None)
    for c in counted:
        if decr is not None:
            decr(c.key, 1)
        else:  # storages without decr (Redis): a negative increment
            storage.incr(c.key, c.expiry, amount=-1)


@dataclass(frozen=True)
class FailureLimit:
    """The failure counters of one kind of credential; the limits are app config keys holding
    Flask-Limiter strings such as ``"5 per 15 minutes;20 per day"``."""

    name: str  # names the counters: "lookup", "staff-login"
    per_address: str
    per_subject_address: str
    per_subject: str

    def begin(self, subject: str) -> Attempt:
        """Count an attempt at ``subject`` from the client's address; raises 429 when refused."""
        storage = limiter.storage
        address = client_address()
        config = current_app.config

        def count(setting: str, kind: str, *ids: str) -> list[_Counted]:
            found = []
            for window in _windows(str(config[setting])):
                key = window.key_for("failures", self.name, kind, *ids)
                expiry = window.get_expiry()
                found.append(_Counted(key, expiry, window, storage.incr(key, expiry, amount=1)))
            return found

        by_address = count(self.per_address, "address", address)
        here = count(self.per_subject_address, "subject-address", subject, address)
        everywhere = count(self.per_subject, "subject", subject)
        counted = by_address + here + everywhere
        refusing = [c for c in by_address + here if c.over]
        failed_here_before = max((c.hits for c in here), default=1) > 1
        if failed_here_before:
            refusing += [c for c in everywhere if c.over]
        if refusing:
            wait = max(storage.get_expiry(c.key) for c in refusing) - time.time()
            _give_back(storage, counted)
            raise TooManyRequests(retry_after=max(1, int(wait + 0.999)))
        return Attempt(storage, counted)
