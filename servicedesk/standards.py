"""Service standards as dated data: which one applies to a request, and its kinds and states.

A standard names a request kind, a customer class and an area (either may be ``any``), a number
of working days and the day it takes effect. For a request filed on day D, the standards in
force are those effective on or before D; among them the most specific wins (an exact class
before ``any``, then an exact area before ``any``), then the latest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from servicedesk.errors import ServiceDeskError

KINDS = ("new_supply", "meter_check", "contract_change", "complaint")
CLASSES = ("residential", "non_residential")
AREAS = ("town", "countryside")
STATES = ("received", "in_progress", "done", "rejected")
OPEN_STATES = ("received", "in_progress")
# received → in progress → done / rejected; a request may also be rejected on receipt.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("in_progress", "rejected"),
    "in_progress": ("done", "rejected"),
    "done": (),
    "rejected": (),
}
DEFAULT_AREA = "town"  # no service_areas row: the stricter standard


@dataclass(frozen=True)
class Standard:
    id: int
    kind: str
    customer_class: str  # residential, non_residential or any
    area: str  # town, countryside or any
    working_days: int
    effective_from: date


def customer_class(tariff_group: str) -> str:
    return "residential" if tariff_group == "residential" else "non_residential"


def area_for(code: str, areas: Iterable[tuple[str, str]]) -> str:
    """The area of the longest prefix of ``code`` among (prefix, area) rows, else the default."""
    best = ("", DEFAULT_AREA)
    for prefix, area in areas:
        if code.startswith(prefix) and len(prefix) > len(best[0]):
            best = (prefix, area)
    return best[1]


def pick(standards: Iterable[Standard], kind: str, klass: str, area: str, on: date) -> Standard:
    """The standard for a request of ``kind`` by a customer of class ``klass`` in ``area`` filed
    on day ``on``; :class:`ServiceDeskError` when none is in force."""
    candidates = [
        s
        for s in standards
        if s.kind == kind
        and s.customer_class in (klass, "any")
        and s.area in (area, "any")
        and s.effective_from <= on
    ]
    if not candidates:
        raise ServiceDeskError(
            "no service standard for %(kind)s (%(klass)s, %(area)s) on %(day)s",
            kind=kind,
            klass=klass,
            area=area,
            day=on.isoformat(),
        )
    return max(
        candidates,
        key=lambda s: (s.customer_class != "any", s.area != "any", s.effective_from),
    )


def check_transition(current: str, new: str) -> None:
    if new not in TRANSITIONS.get(current, ()):
        raise ServiceDeskError(
            "a request that is %(current)s cannot become %(new)s", current=current, new=new
        )
