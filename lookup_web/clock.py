"""The site's "now": ``CLOCK`` in the app config (a function returning an aware datetime; tests
set it so that nothing races the real clock), else the real time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app


def now() -> datetime:
    clock: Callable[[], datetime] | None = current_app.config.get("CLOCK")
    return clock() if clock is not None else datetime.now(UTC)
