"""Phone numbers and email addresses as customers type them: checked and normalised. Pure.

Every error is a :class:`ContactError` whose message is one sentence for the customer, in
English source text (the site translates it). Input is refused, never repaired, when it holds
control characters (a CR/LF would let a value add mail headers: ``\\r\\nBcc: …``) or is longer
than any real value could be.
"""

from __future__ import annotations

import re
import unicodedata

MAX_INPUT = 320  # characters; longer input is refused before any parsing
MAX_EMAIL = 254  # RFC 5321 path limit

# Vietnamese mobile numbers since the 2018 renumbering: 0 + 9 digits with a mobile prefix
# 3, 5, 7, 8 or 9; written +84…, 84… or 0…, with spaces, dots, dashes or brackets.
_MOBILE = re.compile(r"[35789][0-9]{8}")
# The 11-digit numbers retired in 2018 (Circular 22/2017/TT-BTTTT): old prefix → new prefix.
LEGACY_PREFIXES = {
    "162": "32", "163": "33", "164": "34", "165": "35", "166": "36", "167": "37", "168": "38",
    "169": "39",
    "120": "70", "121": "79", "122": "77", "126": "76", "128": "78",
    "123": "83", "124": "84", "125": "85", "127": "81", "129": "82",
    "186": "56", "188": "58", "199": "59",
}  # fmt: skip
_SEPARATORS = re.compile(r"[\s.\-()/]")
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class ContactError(ValueError):
    """The value cannot be a phone number or an email address; the message says why."""


def N_(message: str) -> str:
    """Marks a message for the catalogue (``pybabel extract`` finds ``N_``); the site
    translates ``str(error)`` when it shows it."""
    return message


def _check_text(text: str, too_long: str, control: str) -> str:
    if len(text) > MAX_INPUT:
        raise ContactError(too_long)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise ContactError(control)
    return text.strip()


def normalise_phone(text: str) -> str:
    """A Vietnamese mobile number as ``+84`` and 9 digits: ``0912 345 678`` → ``+84912345678``."""
    text = _check_text(
        text,
        N_("The phone number is too long."),
        N_("The phone number contains control characters (such as a line break)."),
    )
    digits = _SEPARATORS.sub("", text)
    if digits.startswith("+"):
        digits = digits[1:]
        if not digits.startswith("84"):
            raise ContactError(N_("Only Vietnamese mobile numbers (+84) can receive our SMS."))
        national = digits[2:]
    elif digits.startswith("84") and len(digits) in (11, 12):
        national = digits[2:]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        national = digits
    if not national.isascii() or not national.isdigit():
        raise ContactError(N_("A phone number has only digits, spaces, dots and dashes."))
    if len(national) == 10 and national[:3] in LEGACY_PREFIXES:
        national = LEGACY_PREFIXES[national[:3]] + national[3:]
    if not _MOBILE.fullmatch(national):
        raise ContactError(
            N_("This is not a Vietnamese mobile number (10 digits starting 03, 05, 07, 08 or 09).")
        )
    return "+84" + national


def normalise_email(text: str) -> str:
    """An email address, its domain in lower case (IDN domains as ASCII), or ContactError."""
    text = _check_text(
        text,
        N_("The email address is too long."),
        N_("The email address contains control characters (such as a line break)."),
    )
    if any(ch.isspace() for ch in text):
        raise ContactError(N_("An email address has no spaces."))
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ContactError(N_("An email address looks like name@example.vn."))
    if len(local) > 64:
        raise ContactError(N_("The part before @ is too long (at most 64 characters)."))
    if not _LOCAL.fullmatch(local):
        raise ContactError(N_("The part before @ has characters an email address cannot have."))
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ContactError(N_("The part after @ is not a valid domain name.")) from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ContactError(N_("The part after @ is not a valid domain name."))
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_EMAIL:
        raise ContactError(N_("The email address is too long."))
    return address


def mask_phone(phone: str) -> str:
    """``+84912345678`` → ``+84 91•••••78`` for pages that only remind the customer."""
    return f"{phone[:3]} {phone[3:5]}{'•' * 5}{phone[-2:]}" if len(phone) == 12 else phone


def mask_email(email: str) -> str:
    """``an.nguyen@example.vn`` → ``a•••n@example.vn``."""
    local, _, domain = email.partition("@")
    if len(local) <= 2:
        return f"{local[:1]}•••@{domain}"
    return f"{local[0]}•••{local[-1]}@{domain}"
