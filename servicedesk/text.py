"""Checks on free text typed by customers and staff: length-limited, no control characters.

Text is stored exactly as given (never escaped or trimmed on the way in: the pages escape it on
the way out); only text that cannot be stored or shown sensibly is refused: NUL bytes (PostgreSQL
text cannot hold them) and other control characters except tab and line breaks.
"""

from __future__ import annotations

import re

from servicedesk.errors import ServiceDeskError

REASON_MAX = 500  # an outage's reason
DESCRIPTION_MAX = 2000  # a service request's description
NOTE_MAX = 1000  # a note on a state change or a cancellation
PHONE_MAX = 32

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PHONE = re.compile(r"\+?[0-9 .()-]{8,31}")


def problem(text: str, limit: int, *, required: bool = True) -> str | None:
    """Why ``text`` cannot be stored (an English message to translate), or None."""
    if required and not text.strip():
        return "This field is required."
    if len(text) > limit:
        return "At most %(n)d characters."
    if _CONTROL.search(text):
        return "Control characters (such as NUL) are not allowed."
    return None


def check(text: str, limit: int, what: str, *, required: bool = True) -> str:
    """``text`` itself when it may be stored, else :class:`ServiceDeskError` naming ``what``."""
    found = problem(text, limit, required=required)
    if found is not None:
        message = found % {"n": limit}
        raise ServiceDeskError(
            "%(what)s: %(problem)s", what=what, problem=message[0].lower() + message[1:-1]
        )
    return text


def phone_problem(text: str) -> str | None:
    """A contact phone: 8–31 characters of digits, spaces, dots, dashes, brackets, a leading +,
    with 9 to 15 digits (Vietnamese numbers have 10, or 11 with +84)."""
    if not text.strip():
        return "This field is required."
    digits = sum(c.isdigit() for c in text)
    if len(text) > PHONE_MAX or not _PHONE.fullmatch(text) or not 9 <= digits <= 15:
        return "A phone number, e.g. 0912 345 678 or +84 912 345 678."
    return None
