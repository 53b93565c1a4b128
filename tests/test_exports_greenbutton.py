"""Green Button "Download My Data" (issue 18, contract §15): ``doxa export greenbutton``, the
customer page's download beside the CSV and the staff export write one ESPI Atom feed. Parsed
back with ``xml.etree``: the Green Button Alliance's structural rules hold, and the interval
values are the readings' use and add up to the CSV's kWh for a demo-like customer."""

from __future__ import annotations

import csv
import io
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_staff_helpers import add_staff, app_factory, signed_in_client
from test_staff_helpers import csrf_token as staff_csrf
from test_web_customer_data import NOW, ZONE, add_customer, add_readings, close, make_app, sign_in

pytestmark = pytest.mark.db

A = "{http://www.w3.org/2005/Atom}"
E = "{http://naesb.org/espi}"
CODE, SERIAL = "PB02020000001", "MQ-NAT-00001"
FIRST, LAST = date(2025, 6, 10), date(2025, 6, 19)


def demo_like_readings(start: datetime, end: datetime) -> list[tuple[datetime, float, str]]:
    """A household as the demo's MQTT meters report it: every 5 minutes, a day-shaped load with
    float registers, a 3-hour outage of the meter and one estimated reading."""
    out, ts, kwh = [], start, 1234.56789
    while ts < end:
        hour = ts.astimezone(ZONE).hour
        quality = "estimated" if ts == start + timedelta(days=13, hours=7) else "actual"
        if not (start + timedelta(days=11, hours=1) < ts < start + timedelta(days=11, hours=4)):
            out.append((ts, round(kwh, 6), quality))
        kwh += (0.35 if 18 <= hour < 23 else 0.08) * (1 + math.sin(ts.timestamp() / 997) / 3) / 12
        ts += timedelta(minutes=5)
    return out


@pytest.fixture
def customer(db: psycopg.Connection) -> list[tuple[datetime, float, str]]:
    _, meter = add_customer(db, CODE, SERIAL)
    rows = demo_like_readings(datetime(2025, 6, 1, tzinfo=ZONE), NOW)
    add_readings(db, meter, rows)
    return rows


def _kwh3(value: float | str) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.001"), ROUND_HALF_UP)


def parse(body: bytes) -> ET.Element:
    root = ET.fromstring(body)
    assert root.tag == f"{A}feed"
    return root


def entries(root: ET.Element, kind: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{A}entry") if e.find(f"{A}content/{E}{kind}") is not None]


def links(entry: ET.Element, rel: str) -> list[str]:
    return [link.get("href", "") for link in entry.findall(f"{A}link") if link.get("rel") == rel]


def check_structure(root: ET.Element) -> None:
    """The Green Button Alliance's rules (facts-wave2.md)."""
    for tag in ("id", "title", "updated"):
        assert (root.findtext(f"{A}{tag}") or "").strip(), f"feed has no {tag}"
    every = root.findall(f"{A}entry")
    assert len({e.findtext(f"{A}id") for e in every}) == len(every)
    for entry in every:
        assert entry.findtext(f"{A}id", "").startswith("urn:uuid:")
        assert len(links(entry, "self")) == 1 and len(links(entry, "up")) == 1
        assert links(entry, "related"), entry.findtext(f"{A}title")
    by_self = {links(e, "self")[0]: e for e in every}
    for reading in entries(root, "MeterReading"):
        types = [h for h in links(reading, "related") if h in by_self
                 and by_self[h].find(f"{A}content/{E}ReadingType") is not None]  # fmt: skip
        assert len(types) == 1, "a MeterReading must have exactly one ReadingType"
        blocks_href = [h for h in links(reading, "related") if h.endswith("/IntervalBlock")]
        assert blocks_href
        blocks = [e for e in every if links(e, "up") == blocks_href]
        assert blocks, "a MeterReading needs at least one IntervalBlock"
        starts = [int(s.text or "") for b in blocks for s in b.iter(f"{E}start")
                  if s is not None]  # fmt: skip
        reading_starts = [
            int(ir.findtext(f"{E}timePeriod/{E}start", ""))
            for b in blocks
            for ir in b.iter(f"{E}IntervalReading")
        ]
        assert len(reading_starts) == len(set(reading_starts)), "interval starts repeat"
        assert starts


def values(root: ET.Element) -> list[tuple[int, int, int, str]]:
    """(start, duration, Wh, quality) of every IntervalReading, in order."""
    out = []
    for ir in root.iter(f"{E}IntervalReading"):
        out.append(
            (
                int(ir.findtext(f"{E}timePeriod/{E}start", "")),
                int(ir.findtext(f"{E}timePeriod/{E}duration", "")),
                int(ir.findtext(f"{E}value", "")),
                ir.findtext(f"{E}ReadingQuality/{E}quality", ""),
            )
        )
    return out


def stable_ids(root: ET.Element) -> dict[str, str]:
    return {
        kind: entries(root, kind)[0].findtext(f"{A}id", "")
        for kind in ("UsagePoint", "MeterReading", "ReadingType", "LocalTimeParameters")
    }


def test_cli_file_parses_back_to_the_readings_and_the_csv_kwh(
    customer: list[tuple[datetime, float, str]],
    db_url: str,
    doxa: Callable[..., Any],
    tmp_path: Path,
) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    out = tmp_path / "gb.xml"
    result = doxa("export", "greenbutton", "--meter", SERIAL, "--from", FIRST, "--to", LAST,
                  "--out", out, env=env)  # fmt: skip
    assert result.code == 0, result.err
    root = parse(out.read_bytes())
    check_structure(root)
    # The resources' content.
    [usage_point] = entries(root, "UsagePoint")
    assert usage_point.findtext(f"{A}content/{E}UsagePoint/{E}ServiceCategory/{E}kind") == "0"
    [rt] = [e.find(f"{A}content/{E}ReadingType") for e in entries(root, "ReadingType")]
    assert rt is not None
    assert {c.tag.removeprefix(E): c.text for c in rt} == {
        "accumulationBehaviour": "4", "commodity": "1", "flowDirection": "1",
        "intervalLength": "300", "kind": "12", "phase": "769", "powerOfTenMultiplier": "0",
        "timeAttribute": "0", "uom": "72",
    }  # fmt: skip
    [ltp] = entries(root, "LocalTimeParameters")
    assert ltp.findtext(f"{A}content/{E}LocalTimeParameters/{E}tzOffset") == "25200"
    assert ltp.findtext(f"{A}content/{E}LocalTimeParameters/{E}dstOffset") == "0"
    blocks = entries(root, "IntervalBlock")
    assert len(blocks) == 10  # one per local day
    first_block = blocks[0].find(f"{A}content/{E}IntervalBlock/{E}interval")
    assert first_block is not None
    assert first_block.findtext(f"{E}start") == str(
        int(datetime(2025, 6, 10, tzinfo=ZONE).timestamp())
    )
    assert first_block.findtext(f"{E}duration") == "86400"

    # Each value is the use between two consecutive readings of the range, in Wh.
    start = datetime(2025, 6, 10, tzinfo=ZONE)
    end = datetime(2025, 6, 20, tzinfo=ZONE)
    inside = [r for r in customer if start <= r[0] < end]
    expected = [
        (int(a[0].timestamp()), int((b[0] - a[0]).total_seconds()),
         int((_kwh3(b[1]) - _kwh3(a[1])) * 1000))
        for a, b in pairwise(inside)
    ]  # fmt: skip
    got = values(root)
    assert [g[:3] for g in got] == expected
    # The meter's 3-hour outage is one interval, exact (both ends are readings); the two
    # intervals resting on the estimated reading are estimated (9), the others valid (0).
    assert [g[3] for g in got if g[1] == 3 * 3600] == ["0"]
    estimated_at = int(
        (datetime(2025, 6, 1, tzinfo=ZONE) + timedelta(days=13, hours=7)).timestamp()
    )
    assert [(g[0], g[3]) for g in got if g[3] != "0"] == [
        (estimated_at - 300, "9"),
        (estimated_at, "9"),
    ]

    # The CSV of the same range: its first and last registers give the same kWh.
    csv_out = tmp_path / "readings.csv"
    result = doxa("export", "readings", "--meter", SERIAL, "--from", FIRST, "--to", LAST,
                  "--out", csv_out, env=env)  # fmt: skip
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text())))
    csv_kwh = _kwh3(rows[-1]["energy_import_kwh"]) - _kwh3(rows[0]["energy_import_kwh"])
    assert Decimal(sum(g[2] for g in got)) / 1000 == csv_kwh
    assert csv_kwh > 10


def test_ids_are_stable_across_downloads(
    customer: list[tuple[datetime, float, str]],
    db_url: str,
    doxa: Callable[..., Any],
    tmp_path: Path,
) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    files = []
    for n, last in enumerate((LAST, LAST - timedelta(days=3))):
        out = tmp_path / f"gb{n}.xml"
        assert doxa("export", "greenbutton", "--meter", SERIAL, "--from", FIRST, "--to", last,
                    "--out", out, env=env).code == 0  # fmt: skip
        files.append(parse(out.read_bytes()))
    assert stable_ids(files[0]) == stable_ids(files[1])
    assert files[0].findtext(f"{A}id") != files[1].findtext(f"{A}id")
    blocks = [{e.findtext(f"{A}id") for e in entries(f, "IntervalBlock")} for f in files]
    assert not blocks[0] & blocks[1]  # each IntervalBlock gets a new id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--meter", "NOPE-1", "--from", "2025-06-01", "--to", "2025-06-02"],
            "unknown meter serial 'NOPE-1'",
        ),
        (
            ["--meter", SERIAL, "--from", "2025-06-05", "--to", "2025-06-01"],
            "before the start date",
        ),
    ],
)
def test_bad_requests_are_one_line(
    customer: Any, db_url: str, doxa: Callable[..., Any], args: list[str], message: str
) -> None:
    result = doxa("export", "greenbutton", *args, env={"DOXA_DATABASE_URL": db_url})
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1


def test_customer_download_is_the_same_file(
    customer: Any, db_url: str, doxa: Callable[..., Any], tmp_path: Path
) -> None:
    app = make_app(db_url)
    try:
        client = app.test_client()
        sign_in(client, CODE, SERIAL)
        page = client.get(f"/meters/{SERIAL}?lang=en").get_data(as_text=True)
        assert f"/meters/{SERIAL}/greenbutton.xml" in page
        response = client.get(f"/meters/{SERIAL}/greenbutton.xml?from={FIRST}&to={LAST}")
        assert response.status_code == 200
        assert response.mimetype == "application/atom+xml"
        assert "attachment" in response.headers["Content-Disposition"]
        web = parse(response.data)
        check_structure(web)
        assert (
            client.get(f"/meters/{SERIAL}/greenbutton.xml?from={LAST}&to={FIRST}").status_code
            == 400
        )
        assert client.get("/meters/OTHER-1/greenbutton.xml").status_code in (403, 404)
    finally:
        close(app)
    out = tmp_path / "cli.xml"
    assert doxa("export", "greenbutton", "--meter", SERIAL, "--from", FIRST, "--to", LAST,
                "--out", out, env={"DOXA_DATABASE_URL": db_url}).code == 0  # fmt: skip
    cli = parse(out.read_bytes())
    assert values(web) == values(cli)
    assert stable_ids(web) == stable_ids(cli)


def test_staff_export_a_list_of_meters(db: psycopg.Connection, db_url: str, customer: Any) -> None:
    _, other = add_customer(db, "PB02020000002", "MQ-TAS-00002")
    add_readings(db, other, demo_like_readings(datetime(2025, 6, 1, tzinfo=ZONE), NOW))
    add_staff(db, "lan", "billing")
    for make in app_factory(db_url):
        client = signed_in_client(make(), "lan")
        form = {
            "csrf_token": staff_csrf(client, "/staff/exports"),
            "readings-date_from": str(FIRST),
            "readings-date_to": str(LAST),
            "readings-meters": f"{SERIAL}\nMQ-TAS-00002",
            "readings-fmt": "greenbutton",
            "readings-province": "",
        }
        response = client.post("/staff/exports/readings", data=form)
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        root = parse(response.data)
        check_structure(root)
        points = entries(root, "UsagePoint")
        assert [p.findtext(f"{A}title") for p in points] == [
            f"Meter {SERIAL}",
            "Meter MQ-TAS-00002",
        ]
        assert len(entries(root, "ReadingType")) == 2
        # Without meters, a Green Button export is refused with a reason on the form.
        form["readings-meters"] = ""
        refused = client.post("/staff/exports/readings", data=form)
        assert refused.status_code == 400
        assert "Green Button" in refused.get_data(as_text=True)
        audit = db.execute(
            "SELECT actor, detail->'meters' FROM audit_log WHERE action = 'export.greenbutton'"
        ).fetchall()
        assert audit == [("lan", [SERIAL, "MQ-TAS-00002"])]


@pytest.mark.browser
def test_customer_downloads_green_button_in_chromium(
    customer: list[tuple[datetime, float, str]],
    db_url: str,
    live_server: Callable[..., str],
    browser_page: Any,
    external_requests: list[str],
) -> None:
    app = make_app(db_url)
    try:
        site = live_server(app)
        page = browser_page
        page.goto(site + "/")
        page.get_by_label("Mã khách hàng").fill(CODE)
        page.get_by_label("Số sê-ri công tơ").fill(SERIAL)
        page.get_by_role("button", name="Tra cứu").click()
        page.wait_for_url(f"**/meters/{SERIAL}")
        page.locator("#from").fill(str(FIRST))
        page.locator("#to").fill(str(LAST))
        button = page.get_by_role("button", name="Tải về Green Button (XML)")
        assert button.is_visible()
        with page.expect_download() as download_info:
            button.click()
        download = download_info.value
        assert download.suggested_filename == f"doxa-{SERIAL}-{FIRST}-{LAST}-greenbutton.xml"
        root = parse(Path(download.path()).read_bytes())
        check_structure(root)
        start, end = datetime(2025, 6, 10, tzinfo=ZONE), datetime(2025, 6, 20, tzinfo=ZONE)
        inside = [r for r in customer if start <= r[0] < end]
        total = _kwh3(inside[-1][1]) - _kwh3(inside[0][1])
        assert Decimal(sum(v[2] for v in values(root))) / 1000 == total
        # The CSV beside it still downloads the readings.
        with page.expect_download() as csv_info:
            page.get_by_role("button", name="Tải về CSV").click()
        assert csv_info.value.suggested_filename.endswith(".csv")
        assert external_requests == []
    finally:
        close(app)


def test_a_meter_replacement_is_counted_as_the_bill_counts_it(
    db: psycopg.Connection, db_url: str, doxa: Callable[..., Any], tmp_path: Path
) -> None:
    """A replacement recorded at 12:02 between readings of 12:00 (old register 499.600, its
    final value 499.700) and 12:05 (new register 0.300): the interval holds the old register's
    last 0.100 kWh and the new one's first 0.300 kWh — the metering rule's, not a difference of
    registers."""
    _, meter = add_customer(db, "PB01010000007", "SN-SWAP", multiplier=2)
    day = datetime(2025, 6, 12, tzinfo=ZONE)
    rows = [
        (day + timedelta(hours=11, minutes=5 * k), 499.0 + 0.05 * k, "actual") for k in range(13)
    ]
    rows += [
        (day + timedelta(hours=12, minutes=5), 0.3, "actual"),
        (day + timedelta(hours=12, minutes=10), 0.5, "actual"),
    ]
    add_readings(db, meter, rows)
    db.execute(
        "INSERT INTO meter_resets (meter_id, ts, old_final_kwh, new_start_kwh) VALUES (%s, %s, 499.7, 0)",
        (meter, day + timedelta(hours=12, minutes=2)),
    )
    out = tmp_path / "swap.xml"
    result = doxa("export", "greenbutton", "--meter", "SN-SWAP", "--from", "2025-06-12", "--to", "2025-06-12",
                  "--out", out, env={"DOXA_DATABASE_URL": db_url})  # fmt: skip
    assert result.code == 0, result.err
    got = values(parse(out.read_bytes()))
    across = [g for g in got if g[0] == int((day + timedelta(hours=12)).timestamp())]
    assert [g[2] for g in across] == [(100 + 300) * 2]  # Wh, × the multiplier
    assert sum(g[2] for g in got) == (12 * 50 + 100 + 300 + 200) * 2
