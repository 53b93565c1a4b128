"""Every string of the bill and meter lifecycle pages (/staff/bills, /staff/meters, the
customer's final / provisional / correction marks) has a Vietnamese translation (contract §7)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from lookup_web.bills_staff import REASON_LABELS

WEB = Path(__file__).resolve().parent.parent / "lookup_web"
FILES = [
    WEB / "bills_staff.py",
    WEB / "templates" / "staff" / "bills.html",
    WEB / "templates" / "staff" / "bill.html",
    WEB / "templates" / "staff" / "meters.html",
    WEB / "templates" / "customer" / "bills.html",
    WEB / "templates" / "customer" / "bill.html",
]
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}


def test_every_lifecycle_string_has_a_vietnamese_translation() -> None:
    with (WEB / "translations" / "vi" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalogue = read_po(fh, locale="vi")
    found = set(REASON_LABELS.values())
    for path in FILES:
        method = "python" if path.suffix == ".py" else "jinja2"
        for _line, message, _comments, _context in extract_from_file(
            method, str(path), keywords=KEYWORDS
        ):
            found.add(message if isinstance(message, str) else message[0])
    assert len(found) > 60
    missing = sorted(m for m in found if not (catalogue.get(m) and catalogue.get(m).string))
    assert missing == []
