"""Instants and days typed on the command line, read in ``DOXA_TIMEZONE`` when they name no
offset (contract §11's ``--at``)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from doxa.errors import BadInput


def instant(text: str, zone: ZoneInfo, option: str = "--at") -> datetime:
    """``2026-11-20T15:00`` (local) or with an offset → an aware datetime."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{option}: {text!r} is not an ISO 8601 time (YYYY-MM-DDTHH:MM)") from None
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def day(text: str, option: str = "--at") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None
