"""Every string of the service-desk pages has a Vietnamese translation, and the pages are
Vietnamese by default with ``?lang=en`` switching to English (contract §7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from test_staff_helpers import add_customer, app_factory

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "lookup_web"
FILES = [
    WEB / "outages.py",
    WEB / "service_requests.py",
    WEB / "service_desk_panel.py",
    WEB / "templates" / "customer" / "_servicedesk.html",
    WEB / "templates" / "staff" / "_servicedesk_nav.html",
    *sorted((WEB / "templates" / "outages").glob("*.html")),
    *sorted((WEB / "templates" / "requests").glob("*.html")),
]
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}


def test_every_service_desk_string_has_a_vietnamese_translation() -> None:
    with (WEB / "translations" / "vi" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalogue = read_po(fh, locale="vi")
    found = set()
    for path in FILES:
        method = "python" if path.suffix == ".py" else "jinja2"
        for _line, message, _comments, _context in extract_from_file(
            method, str(path), keywords=KEYWORDS
        ):
            found.add(message if isinstance(message, str) else message[0])
    assert len(found) > 100
    missing = sorted(m for m in found if not (catalogue.get(m) and catalogue.get(m).string))
    assert missing == []


@pytest.mark.db
def test_the_public_schedule_is_vietnamese_first(db, db_url) -> None:
    add_customer(db, "PB0101000001")
    for build in app_factory(db_url):
        client = build().test_client()
        vi = client.get("/outages?province=Bình Dương").get_data(as_text=True)
        assert '<html lang="vi">' in vi and "Lịch ngừng cung cấp điện" in vi
        en = client.get("/outages?province=Bình Dương&lang=en").get_data(as_text=True)
        assert '<html lang="en">' in en and "No planned outage." in en
