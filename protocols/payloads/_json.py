"""Shared helpers of the payload codecs: strict JSON, numbers and timestamps, each turning bad
input into one :class:`PayloadError` sentence."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from protocols.errors import PayloadError


def _reject_constant(name: str) -> NoReturn:
    raise PayloadError(f"the payload contains {name}, which is not a number JSON allows")


# One decoder for the common case: ``json.loads`` with a keyword argument builds a new decoder
# (and its scanner) on every call, a third of the time of parsing a typical reading.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a payload may have (a native backlog needs 2, Tasmota 3).
Checked on the text before parsing: Python's parser and every later walk of the value (``describe``,
``json.dumps``) recurse, and a value ~1,000 levels deep raises ``RecursionError`` anywhere."""

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""Largest payload parsed (a week's backlog of one-minute readings is about 1.5 MB)."""

_STRING = re.compile(r'"[^"]*"')  # once escapes are gone (a string cannot hold a bare quote)
_NOT_BRACKET = re.compile(r"[^\[\]]+")
_ONE_KIND = str.maketrans("{}", "[]")


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Reject text whose arrays and objects nest deeper than ``limit``, without parsing it
    (brackets inside strings do not count). A few passes of C-level string operations: strings
    and everything but brackets are dropped, then innermost ``[]`` pairs are removed one level
    per pass; more than ``limit`` openers in a row is too deep at once. Other malformed
    bracketing is left to the parser to reject."""
    if text.count("[") + text.count("{") <= limit:  # (the common case)
        return
    bare = text.replace("\\\\", "").replace('\\"', "")  # escapes out, then strings
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", bare).translate(_ONE_KIND))
    too_deep = "[" * (limit + 1)
    for _ in range(limit + 1):
        if too_deep in brackets:  # (opened that deep: the parser would recurse so far)
            raise PayloadError(
                f"the payload is nested too deeply (more than {limit} levels of arrays and objects)"
            )
        inner = brackets.replace("[]", "")
        if inner == brackets or not inner:
            return  # all matched within the limit, or malformed (the parser says why)
        brackets = inner


def load_json(payload: bytes) -> Any:
    """Bytes → JSON value; rejects non-UTF-8, NaN/Infinity literals and absurd size or nesting."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"the payload is {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} allowed"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"the payload is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    text = text.removeprefix("\ufeff")
    check_depth(text)
    # The common case first: a document that is exactly one JSON value, which ``raw_decode``
    # returns as ``json.loads`` would. Anything else (whitespace around it, a second BOM, an error)
    # takes the full path below: the same value or the same reason, only slower.
    try:
        value, end = _DECODER.raw_decode(text)
        if end == len(text):
            return value
    except (ValueError, RecursionError, PayloadError):
        pass
    if not text.strip():
        raise PayloadError("the payload is empty")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"the payload is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise PayloadError("the payload is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        raise PayloadError(f"the payload is not valid JSON ({exc})") from None


def describe(value: Any) -> str:
    """A short rendering of a bad value for a reason sentence (never raises: a value too deep
    to render is named by its kind)."""
    try:
        text = json.dumps(value, ensure_ascii=False) if _jsonable(value) else repr(value)
    except (RecursionError, ValueError):
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def number(value: Any, where: str) -> float:
    """A JSON number (not a boolean, not a string) that is finite, as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{where} must be a number, not {describe(value)}")
    try:
        result = float(value)
    except OverflowError:
        raise PayloadError(f"{where} is too large") from None
    if not math.isfinite(result):
        raise PayloadError(f"{where} must be a finite number")
    return result


def non_negative(value: Any, where: str) -> float:
    result = number(value, where)
    if result < 0:
        raise PayloadError(f"{where} must not be negative ({describe(value)})")
    return result


def parse_time(text: str, where: str, *, local: ZoneInfo | None) -> datetime:
    """ISO 8601 text → aware UTC datetime. Without an offset the time is taken as local time in
    ``local``; when ``local`` is None an offset is required."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"{where} {describe(text)} is not an ISO 8601 time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        if local is None:
            raise PayloadError(f"{where} {describe(text)} has no UTC offset (e.g. +07:00)")
        parsed = parsed.replace(tzinfo=local)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise PayloadError(f"{where} {describe(text)} is out of range") from None


def epoch_time(value: float, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"{where} {describe(value)} is out of range for epoch seconds") from None


def check_not_future(ts: datetime, where: str, now: datetime, max_future: timedelta) -> None:
    if ts > now + max_future:
        ahead = ts - now
        minutes = ahead.total_seconds() / 60
        amount = (
            f"{minutes:.0f} minutes"
            if minutes < 120
            else f"{ahead.total_seconds() / 3600:.1f} hours"
        )
        raise PayloadError(
            f"{where} {ts.isoformat()} is {amount} in the future "
            f"(at most {max_future.total_seconds() / 60:g} minutes allowed)"
        )
