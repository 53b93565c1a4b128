"""Green Button "Download My Data" (NAESB REQ.21 ESPI): a meter's interval use as an Atom feed
(contract §15). The same file for ``doxa export greenbutton``, the customer page and the staff
export.

What the feed holds, per meter (one ``UsagePoint`` each):

- ``UsagePoint`` (ServiceCategory kind 0, electricity) and ``LocalTimeParameters`` of the local
  zone (Asia/Ho_Chi_Minh: UTC+7, no daylight saving: ``dstOffset`` 0);
- one ``MeterReading`` with exactly one ``ReadingType``: Wh delivered per interval
  (accumulationBehaviour 4 *deltaData*, commodity 1, flowDirection 1, kind 12 *energy*,
  uom 72 *Wh*, powerOfTenMultiplier 0), ``intervalLength`` the meter's typical spacing of
  readings (the median, in seconds);
- one ``IntervalBlock`` per local day, one ``IntervalReading`` per interval between consecutive
  readings: ``value`` = the use of that interval in Wh (× 10^powerOfTenMultiplier), computed by
  the metering rule (``metering.usage.use_between``: resets, the multiplier, the 0.001 kWh index
  rounding), so the intervals add up to the same kWh as the register in the CSV; ``quality``
  (ESPI QualityOfReading) 0 *valid*, 7 *manually edited* when a reading it rests on is
  ``edited``, 9 *estimated* when the rule calls the use estimated. An interval the rule gives no
  use for (a glitch) is left out.

Ids: UsagePoint, MeterReading, ReadingType and LocalTimeParameters are UUID v5 of the customer
code and meter serial, the same in every download (the Green Button Alliance's rule); each
IntervalBlock and the feed get new ones. Links are ESPI resource paths (``self``, ``up``,
``related``), relative to the site.
"""

from __future__ import annotations

import statistics
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from doxa.errors import ExportError
from metering.calendar import local_midnight
from metering.register import Point, Register
from metering.usage import use_between
from schema.register_inputs import register_of_readings

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
MEDIA_TYPE = "application/atom+xml"
# UUID v5 namespace of Doxa's ESPI resources (fixed: ids must not change between downloads).
NAMESPACE = uuid.UUID("6f1d3c52-5a7e-5d2b-9c1e-0d0a0e5f7b18")
BASE = "/espi/1_1/resource"
# QualityOfReading codes.
VALID, MANUALLY_EDITED, ESTIMATED = "0", "7", "9"
# The ReadingType of every meter: Wh delivered per interval.
READING_TYPE = {
    "accumulationBehaviour": "4",
    "commodity": "1",
    "flowDirection": "1",
    "kind": "12",
    "phase": "769",
    "powerOfTenMultiplier": "0",
    "timeAttribute": "0",
    "uom": "72",
}
# The most meters one staff export puts in one file.
MAX_METERS = 100

ET.register_namespace("", ATOM)
ET.register_namespace("espi", ESPI)


@dataclass(frozen=True)
class Interval:
    start: datetime
    seconds: int
    wh: int
    quality: str


@dataclass(frozen=True)
class MeterData:
    """What one meter's part of the feed is made of."""

    customer_code: str
    serial: str
    intervals: tuple[Interval, ...]
    interval_length: int


def _id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def intervals(register: Register, points: Sequence[Point], multiplier: Decimal) -> list[Interval]:
    """The use between each two consecutive readings, by the metering rule (pure)."""
    out = []
    for a, b in pairwise(points):
        use = use_between(register, a.ts.date(), a.ts, b.ts, multiplier)
        if use.kwh is None:
            continue
        if "edited" in (a.quality, b.quality):
            quality = MANUALLY_EDITED
        else:
            quality = ESTIMATED if use.estimated else VALID
        seconds = int((b.ts - a.ts).total_seconds())
        out.append(Interval(a.ts, seconds, int(use.kwh * 1000), quality))
    return out


def typical_length(points: Sequence[Point]) -> int:
    """The median spacing of the readings in seconds (ReadingType.intervalLength)."""
    gaps = [int((b.ts - a.ts).total_seconds()) for a, b in pairwise(points)]
    return int(statistics.median(gaps)) if gaps else 0


def fetch(
    conn: psycopg.Connection[Any], serials: Sequence[str], first: date, last: date, zone: ZoneInfo
) -> list[MeterData]:
    """Each meter's intervals over local days ``first``..``last``, in the order asked."""
    rows = conn.execute(
        "SELECT m.id, m.serial, m.multiplier, c.code FROM meters m"
        " JOIN customers c ON c.id = m.customer_id WHERE m.serial = ANY(%s)",
        (list(serials),),
    ).fetchall()
    found = {r[1]: r for r in rows}
    missing = [s for s in serials if s not in found]
    if missing:
        raise ExportError(f"unknown meter serial {missing[0]!r}")
    start, end = local_midnight(first, zone), local_midnight(last + timedelta(days=1), zone)
    out = []
    for serial in serials:
        meter_id, _, multiplier, code = found[serial]
        points = [
            Point(ts, kwh, quality)
            for ts, kwh, quality in conn.execute(
                "SELECT ts, energy_import_kwh, quality FROM readings WHERE meter_id = %s"
                " AND ts >= %s AND ts < %s AND abs(energy_import_kwh) < 'Infinity'"
                " ORDER BY ts",
                (meter_id, start, end),
            )
        ]
        register = register_of_readings(conn, meter_id, points, serial)
        out.append(
            MeterData(
                code,
                serial,
                tuple(intervals(register, points, Decimal(multiplier))),
                typical_length(points),
            )
        )
    return out


# -- the feed (pure) ---------------------------------------------------------------------------


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = text
    return node


def _iso(ts: datetime) -> str:
    return ts.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(
    feed: ET.Element, entry_id: str, title: str, links: list[tuple[str, str]], now: datetime
) -> ET.Element:
    entry = _el(feed, f"{{{ATOM}}}entry")
    _el(entry, f"{{{ATOM}}}id", f"urn:uuid:{entry_id}")
    for rel, href in links:
        _el(entry, f"{{{ATOM}}}link", rel=rel, href=href)
    _el(entry, f"{{{ATOM}}}title", title)
    content = _el(entry, f"{{{ATOM}}}content")
    _el(entry, f"{{{ATOM}}}published", _iso(now))
    _el(entry, f"{{{ATOM}}}updated", _iso(now))
    return content


def _local_time(content: ET.Element, zone: ZoneInfo, at: datetime) -> None:
    node = _el(content, f"{{{ESPI}}}LocalTimeParameters")
    offset = at.astimezone(zone).utcoffset() or timedelta(0)
    dst = at.astimezone(zone).dst() or timedelta(0)
    _el(node, f"{{{ESPI}}}dstEndRule", "00000000")
    _el(node, f"{{{ESPI}}}dstOffset", str(int(dst.total_seconds())))
    _el(node, f"{{{ESPI}}}dstStartRule", "00000000")
    _el(node, f"{{{ESPI}}}tzOffset", str(int((offset - dst).total_seconds())))


def feed(
    meters: Sequence[MeterData], first: date, last: date, zone: ZoneInfo, now: datetime
) -> bytes:
    """The Atom feed of ``meters`` over local days ``first``..``last``."""
    root = ET.Element(f"{{{ATOM}}}feed")
    serials = ", ".join(m.serial for m in meters)
    _el(root, f"{{{ATOM}}}id", f"urn:uuid:{uuid.uuid4()}")
    _el(root, f"{{{ATOM}}}title", f"Doxa Green Button data: {serials}, {first} to {last}")
    _el(root, f"{{{ATOM}}}updated", _iso(now))
    _el(root, f"{{{ATOM}}}link", rel="self", href=f"{BASE}/Batch/RetailCustomer")
    ltp = _id("LocalTimeParameters", zone.key)
    ltp_href = f"{BASE}/LocalTimeParameters/{ltp}"
    content = _entry(
        root, ltp, f"Local time: {zone.key}",
        [("self", ltp_href), ("up", f"{BASE}/LocalTimeParameters"), ("related", ltp_href)], now,
    )  # fmt: skip
    _local_time(content, zone, now)
    for meter in meters:
        _meter(root, meter, zone, ltp_href, now)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _meter(root: ET.Element, m: MeterData, zone: ZoneInfo, ltp_href: str, now: datetime) -> None:
    customer = _id("RetailCustomer", m.customer_code)
    usage_point = _id("UsagePoint", m.customer_code, m.serial)
    reading = _id("MeterReading", m.customer_code, m.serial)
    reading_type = _id("ReadingType", m.customer_code, m.serial)
    up_base = f"{BASE}/RetailCustomer/{customer}/UsagePoint"
    up_href = f"{up_base}/{usage_point}"
    mr_base = f"{up_href}/MeterReading"
    mr_href = f"{mr_base}/{reading}"
    rt_href = f"{BASE}/ReadingType/{reading_type}"
    content = _entry(
        root, usage_point, f"Meter {m.serial}",
        [("self", up_href), ("up", up_base), ("related", mr_base), ("related", ltp_href)], now,
    )  # fmt: skip
    point = _el(content, f"{{{ESPI}}}UsagePoint")
    category = _el(point, f"{{{ESPI}}}ServiceCategory")
    _el(category, f"{{{ESPI}}}kind", "0")
    content = _entry(
        root, reading, f"Energy delivered, meter {m.serial}",
        [("self", mr_href), ("up", mr_base), ("related", f"{mr_href}/IntervalBlock"),
         ("related", rt_href)], now,
    )  # fmt: skip
    _el(content, f"{{{ESPI}}}MeterReading")
    content = _entry(
        root, reading_type, "Wh per interval",
        [("self", rt_href), ("up", f"{BASE}/ReadingType"), ("related", rt_href)], now,
    )  # fmt: skip
    rt = _el(content, f"{{{ESPI}}}ReadingType")
    for tag in ("accumulationBehaviour", "commodity", "flowDirection"):
        _el(rt, f"{{{ESPI}}}{tag}", READING_TYPE[tag])
    _el(rt, f"{{{ESPI}}}intervalLength", str(m.interval_length))
    for tag in ("kind", "phase", "powerOfTenMultiplier", "timeAttribute", "uom"):
        _el(rt, f"{{{ESPI}}}{tag}", READING_TYPE[tag])
    by_day: dict[date, list[Interval]] = {}
    for interval in m.intervals:
        by_day.setdefault(interval.start.astimezone(zone).date(), []).append(interval)
    for day, day_intervals in sorted(by_day.items()):
        block = str(uuid.uuid4())
        ib_href = f"{mr_href}/IntervalBlock/{block}"
        content = _entry(
            root, block, f"{m.serial} {day}",
            [("self", ib_href), ("up", f"{mr_href}/IntervalBlock"), ("related", mr_href)], now,
        )  # fmt: skip
        node = _el(content, f"{{{ESPI}}}IntervalBlock")
        start = local_midnight(day, zone)
        span = _el(node, f"{{{ESPI}}}interval")
        length = local_midnight(day + timedelta(days=1), zone) - start
        _el(span, f"{{{ESPI}}}duration", str(int(length.total_seconds())))
        _el(span, f"{{{ESPI}}}start", str(int(start.timestamp())))
        for interval in day_intervals:
            ir = _el(node, f"{{{ESPI}}}IntervalReading")
            quality = _el(ir, f"{{{ESPI}}}ReadingQuality")
            _el(quality, f"{{{ESPI}}}quality", interval.quality)
            period = _el(ir, f"{{{ESPI}}}timePeriod")
            _el(period, f"{{{ESPI}}}duration", str(interval.seconds))
            _el(period, f"{{{ESPI}}}start", str(int(interval.start.timestamp())))
            _el(ir, f"{{{ESPI}}}value", str(interval.wh))


def export(
    conn: psycopg.Connection[Any],
    serials: Sequence[str],
    first: date,
    last: date,
    zone: ZoneInfo,
    now: datetime,
    max_days: int | None = None,
) -> tuple[bytes, int]:
    """The feed of ``serials`` over ``first``..``last`` and its number of IntervalReadings."""
    from exports import check_days

    if not serials:
        raise ExportError("no meter given")
    if len(serials) > MAX_METERS:
        raise ExportError(f"at most {MAX_METERS} meters in one file")
    check_days(first, last, max_days)
    meters = fetch(conn, list(dict.fromkeys(serials)), first, last, zone)
    return feed(meters, first, last, zone, now), sum(len(m.intervals) for m in meters)
