"""The Vietnamese catalogue (contract §7: the site is Vietnamese by default) covers every string
the site shows, the template ``messages.pot`` is what extraction gives today, and the compiled
catalogue is the current one (the bootstrap compiles it at install). Extraction is babel's own,
with ``lookup_web/babel.cfg`` and the keywords of the README's ``pybabel extract`` command."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from test_staff_helpers import add_customer, app_factory

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "lookup_web" / "translations"
CATALOGUE = TRANSLATIONS / "vi" / "LC_MESSAGES"
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
REFRESH = "regenerate it: see lookup_web/README.md, Translations"


@cache
def extracted() -> dict[str, str]:
    """Every message id of the site, with the first file it is in."""
    with (ROOT / "lookup_web" / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: dict[str, str] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        for msgid in (message,) if isinstance(message, str) else message:
            if msgid:
                found.setdefault(msgid, filename)
    return found


def _po() -> dict[str, str]:
    with (CATALOGUE / "messages.po").open("rb") as fh:
        return {m.id: m.string for m in read_po(fh, locale="vi") if isinstance(m.id, str) and m.id}


def test_every_string_of_the_site_has_a_vietnamese_translation() -> None:
    found = extracted()
    assert len(found) > 500  # the customer pages, staff pages, care notices, errors
    po = _po()
    missing = sorted(f"{path}: {msgid}" for msgid, path in found.items() if not po.get(msgid))
    assert missing == []


def test_the_template_holds_what_the_code_marks() -> None:
    with (TRANSLATIONS / "messages.pot").open("rb") as fh:
        template = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}
    assert sorted(set(extracted()) - template) == [], REFRESH
    assert sorted(template - set(extracted())) == [], REFRESH


def test_catalogue_is_compiled_from_the_current_po() -> None:
    mo_path = CATALOGUE / "messages.mo"
    assert mo_path.exists(), "run: .venv/bin/pybabel compile -d lookup_web/translations"
    with mo_path.open("rb") as fh:
        mo = {m.id: m.string for m in read_mo(fh) if isinstance(m.id, str) and m.id}
    wanted = {k: v for k, v in _po().items() if k in extracted()}
    assert wanted.items() <= mo.items()


@pytest.mark.db
def test_the_public_outage_schedule_is_vietnamese_first(db, db_url) -> None:
    add_customer(db, "PB0101000001")
    for build in app_factory(db_url):
        client = build().test_client()
        vi = client.get("/outages?province=Bình Dương").get_data(as_text=True)
        assert '<html lang="vi">' in vi and "Lịch ngừng cung cấp điện" in vi
        en = client.get("/outages?province=Bình Dương&lang=en").get_data(as_text=True)
        assert '<html lang="en">' in en and "No planned outage." in en
