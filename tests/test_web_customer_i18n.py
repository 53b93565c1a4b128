"""The Vietnamese catalogue covers every string of the customer pages and the site's frame, and
is compiled (the bootstrap compiles it at install)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_file
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "lookup_web"
CATALOGUE = WEB / "translations" / "vi" / "LC_MESSAGES"
# The files whose strings the customer-site engineer keeps translated.
OURS = ("customers.py", "errors.py", "templates/base.html", "templates/error.html")


def _our_messages() -> set[str]:
    files = [WEB / f for f in OURS] + sorted((WEB / "templates" / "customer").glob("*.html"))
    found = set()
    for path in files:
        method = "python" if path.suffix == ".py" else "jinja2"
        for _lineno, message, _comments, _context in extract_from_file(method, str(path)):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_customer_string_has_a_vietnamese_translation() -> None:
    with (CATALOGUE / "messages.po").open("rb") as fh:
        catalogue = read_po(fh, locale="vi")
    ours = _our_messages()
    assert len(ours) > 80
    untranslated = sorted(m for m in ours if not (catalogue.get(m) and catalogue.get(m).string))
    assert untranslated == []


def test_catalogue_is_compiled_from_the_current_po() -> None:
    with (CATALOGUE / "messages.po").open("rb") as fh:
        po = {m.id: m.string for m in read_po(fh, locale="vi") if m.id and m.string}
    mo_path = CATALOGUE / "messages.mo"
    assert mo_path.exists(), "run: .venv/bin/pybabel compile -d lookup_web/translations"
    with mo_path.open("rb") as fh:
        mo = {m.id: m.string for m in read_mo(fh) if m.id}
    ours = _our_messages()
    assert {k: v for k, v in po.items() if k in ours}.items() <= mo.items()
