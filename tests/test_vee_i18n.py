"""Every string of the validation exception pages has a Vietnamese translation (contract §7:
the site is Vietnamese by default)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parent.parent / "lookup_web"
FILES = [
    WEB / "exceptions.py",
    WEB / "templates" / "staff" / "exceptions.html",
    WEB / "templates" / "staff" / "exception.html",
]
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}


def test_every_exception_page_string_has_a_vietnamese_translation() -> None:
    with (WEB / "translations" / "vi" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalogue = read_po(fh, locale="vi")
    found = set()
    for path in FILES:
        method = "python" if path.suffix == ".py" else "jinja2"
        for _line, message, _comments, _context in extract_from_file(
            method, str(path), keywords=KEYWORDS
        ):
            found.add(message if isinstance(message, str) else message[0])
    assert len(found) > 30
    missing = sorted(m for m in found if not (catalogue.get(m) and catalogue.get(m).string))
    assert missing == []
