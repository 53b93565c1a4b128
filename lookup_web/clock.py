"""The site's clock. ``CLOCK`` in the app's config, a function returning an aware "now", stands in
for the system clock (tests set it, so nothing races a real clock); every page that depends on
"now" (the customers' days and months, the engineers' late and stale) reads it here, never the
database's ``now()``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app


def now() -> datetime:
    clock: Callable[[], datetime] | None = current_app.config.get("CLOCK")
    return clock() if clock is not None else datetime.now(UTC)
