"""SMS texts that fit one GSM-7 segment (160 characters). Pure.

Doxa sends Vietnamese SMS **without accents** ("khong dau"), as Vietnamese operators' brand-name
SMS usually are: with accents a text needs UCS-2, whose single segment is only 70 characters,
and a bill notice (code, period, amount, due date) does not fit in 70. :func:`to_gsm7` removes
the accents (``Hóa đơn`` → ``Hoa don``) and :func:`fit` makes the text one segment, counting
the GSM-7 extension characters (``€ [ ] { } | ^ ~ \\``) as two.
"""

from __future__ import annotations

import unicodedata

SEGMENT = 160
# GSM 03.38 basic character set (one septet each) and the extension table (escape + septet).
BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = set("^{}\\[~]|€")
_SPECIAL = {"đ": "d", "Đ": "D", "₫": "d", "–": "-", "—": "-", "…": "...", "\u00a0": " ",
            "“": '"', "”": '"', "‘": "'", "’": "'", "•": "*"}  # fmt: skip


def to_gsm7(text: str) -> str:
    """Vietnamese (or any Latin) text with every accent removed, in the GSM-7 alphabet; a
    character with no GSM-7 form becomes ``?``."""
    out = []
    for ch in text:
        ch = _SPECIAL.get(ch, ch)
        if not ch.isascii():  # every accent goes, even those GSM-7 has (à, é): one style
            decomposed = unicodedata.normalize("NFD", ch)
            ch = "".join(c for c in decomposed if not unicodedata.combining(c))
        out.append("".join(c if c in BASIC or c in EXTENSION else "?" for c in ch) or "?")
    return "".join(out)


def septets(text: str) -> int:
    """The length of a GSM-7 text in septets (extension characters count twice)."""
    return sum(2 if ch in EXTENSION else 1 for ch in text)


def is_gsm7(text: str) -> bool:
    return all(ch in BASIC or ch in EXTENSION for ch in text)


def fit(text: str, limit: int = SEGMENT) -> str:
    """``text`` in GSM-7 within one segment, cut at a word with ``...`` if it is longer."""
    text = to_gsm7(" ".join(text.split()))
    if septets(text) <= limit:
        return text
    cut = text
    while septets(cut) > limit - 3:
        cut = cut[:-1]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return head.rstrip(" ,.;:") + "..."
