"""The customers' pages: look a meter up by customer code and meter serial, then see its index,
consumption, readings and bills.

A successful lookup stores ``session["customer_id"]`` in Flask's signed session cookie; every
customer page reads only rows of that customer, and answers 404 for anything else (another
customer's meter or bill looks exactly like one that does not exist). Every failed lookup gives
the same page, status and message, whether the code is malformed, unknown, or right with a wrong
serial. Failed lookups are limited per client address, per (customer code, address) and per
customer code overall (``lookup_web.attempts``); the right code and serial from an address that
has not failed always gets in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_wtf.csrf import generate_csrf

import exports
from billing.periods import Period
from lookup_web import charts, clock, db, formatting, service_desk_panel
from lookup_web import customer_queries as q
from lookup_web.attempts import FailureLimit
from lookup_web.customer_dashboard import build
from lookup_web.i18n import gettext as _
from metering.usage import Use
from schema.identifiers import CUSTOMER_CODE, SERIAL

bp = Blueprint("customers", __name__)

CODE_RE = CUSTOMER_CODE
SERIAL_RE = SERIAL
PAGE_SIZE = 48
CSV_MAX_DAYS = exports.MAX_EXPORT_DAYS
CSV_DEFAULT_DAYS = 90
# Dates a visitor may ask for; outside, arithmetic on them could overflow.
EARLIEST, LATEST = exports.FIRST_DAY, exports.LAST_DAY
DEFAULTS = {
    # Failed lookups (lookup_web/attempts.py): from one address, whatever the code; at one code
    # from one address; at one code from every address (beyond it, one try per address).
    "LOOKUP_LIMIT_PER_ADDRESS": "20 per minute;300 per day",
    "LOOKUP_LIMIT_PER_CODE": "5 per 15 minutes;20 per day",
    "LOOKUP_LIMIT_PER_CODE_ALL": "30 per 15 minutes;100 per day",
    "CUSTOMER_SESSION_SECONDS": 4 * 3600,
}
LOOKUP_FAILURES = FailureLimit(
    "lookup", "LOOKUP_LIMIT_PER_ADDRESS", "LOOKUP_LIMIT_PER_CODE", "LOOKUP_LIMIT_PER_CODE_ALL"
)


@bp.record_once
def _setup(state: Any) -> None:
    app = state.app
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    formatting.init_app(app)
    app.jinja_env.filters["period_month"] = _period_month


def _period_month(period: str) -> str:
    """``2025-05`` → ``05/2025`` (vi) or ``May 2025`` (en)."""
    try:
        return formatting.month(date.fromisoformat(f"{period}-01"))
    except ValueError:
        return period


def _now() -> datetime:
    return clock.now()


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def normalize_code(text: str) -> str:
    """Customer codes are printed with spaces sometimes and typed in any case."""
    return "".join(text.split()).upper()


# ---- lookup ------------------------------------------------------------------------------------


@bp.get("/")
def index() -> str:
    return render_template("customer/lookup.html", failed=False, code="", serial="")


@bp.post("/")
def lookup() -> Any:
    code = normalize_code(request.form.get("customer_code", ""))
    serial = request.form.get("meter_serial", "").strip()
    attempt = LOOKUP_FAILURES.begin(code[:32])  # 429 when this address may not try now
    customer_id = None
    if CODE_RE.fullmatch(code) and SERIAL_RE.fullmatch(serial):
        with db.connection() as conn:
            customer_id = q.find_customer_id(conn, code, serial)
    if customer_id is None:
        # One answer for every failure: nothing tells a wrong code from a wrong serial.
        shown_code = code if len(code) <= 32 else ""
        shown_serial = serial if len(serial) <= 64 else ""
        page = render_template(
            "customer/lookup.html", failed=True, code=shown_code, serial=shown_serial
        )
        return page, 400
    attempt.succeeded()
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    session["customer_id"] = customer_id
    session["meter_serial"] = serial
    session["customer_at"] = int(time.time())
    # A fresh CSRF secret for the signed-in session's forms (sign out), set now with the rest, so
    # that the pages after this one leave the session cookie as it is.
    generate_csrf()
    return redirect(url_for("customers.meter", serial=serial))


@bp.post("/logout")
def logout() -> Any:
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    return redirect(url_for("customers.index"))


def customer_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Lets through only a visitor whose signed session holds a recent successful lookup."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        customer_id = session.get("customer_id")
        since = session.get("customer_at", 0)
        max_age = current_app.config["CUSTOMER_SESSION_SECONDS"]
        if not isinstance(customer_id, int) or time.time() - since > max_age:
            session.pop("customer_id", None)
            return redirect(url_for("customers.index"))
        return view(customer_id, *args, **kwargs)

    return wrapped


def _customer_and_meter(
    conn: Any, customer_id: int, serial: str
) -> tuple[q.Customer, q.Meter, list[q.Meter]]:
    """The customer, the meter of theirs with this serial (else 404) and all their meters."""
    if not SERIAL_RE.fullmatch(serial):
        abort(404)
    customer, meters = q.customer_and_meters(conn, customer_id)
    meter = next((m for m in meters if m.serial == serial), None)
    if meter is None or customer is None:
        abort(404)
    return customer, meter, meters


# ---- the customer's pages ----------------------------------------------------------------------


@bp.get("/my-meter")
@customer_required
def account(customer_id: int) -> Any:
    serial = session.get("meter_serial", "")
    return redirect(url_for("customers.meter", serial=serial))


@bp.get("/meters/<serial>")
@customer_required
def meter(customer_id: int, serial: str) -> str:
    days = 90 if request.args.get("days") == "90" else 30
    zone = _zone()
    now = _now()
    with db.read_connection() as conn:
        customer, m, all_meters = _customer_and_meter(conn, customer_id, serial)
        board = build(conn, customer, m, now=now, zone=zone, days=days)
        service_desk = service_desk_panel.panel(conn, customer_id)
    today = now.astimezone(zone).date()
    fmt = formatting.formatter()
    day_rows = [
        Row(fmt.day(a.start), fmt.short_day(a.start), fmt.kwh(a.kwh), a) for a in board.days
    ]
    month_rows = []
    for a in board.months:
        ends = Period.ending_after(a.start)  # a period is named after the month it ends in
        name = fmt.month(date(ends.year, ends.month, 1))
        month_rows.append(Row(name, name, fmt.kwh(a.kwh), a))
    return render_template(
        "customer/meter.html",
        customer=customer,
        meter=m,
        meters=all_meters,
        board=board,
        days=days,
        day_rows=day_rows,
        month_rows=month_rows,
        daily_chart=_chart(
            day_rows,
            f"daily-{days}",
            _("Daily consumption, last %(days)d days", days=days),
            lambda total, n: _(
                "Total %(total)s over %(count)d days with data.", total=total, count=n
            ),
        ),
        monthly_chart=_chart(
            month_rows,
            "monthly",
            _("Consumption per billing period, last 12 periods"),
            lambda total, n: _(
                "Total %(total)s over %(count)d periods with data.", total=total, count=n
            ),
        ),
        csv_from=today - timedelta(days=CSV_DEFAULT_DAYS - 1),
        csv_to=today,
        **service_desk,
    )


class Row(NamedTuple):
    """One day or billing month, formatted once for both its chart bar and its table row."""

    label: str  # 20/06/2025 or 07/2025
    short: str  # the label under the bar
    kwh: str  # 6,00 kWh
    amount: Use


def _chart(
    rows: list[Row], chart_id: str, title: str, description: Callable[[str, int], str]
) -> Any:
    estimated, so_far = _("estimated"), _("so far")
    bars = []
    for row in rows:
        a = row.amount
        tooltip = f"{row.label}: {row.kwh}"
        if a.estimated:
            tooltip += f" ({estimated})"
        if a.partial:
            tooltip += f" ({so_far})"
        value = None if a.kwh is None else float(a.kwh)
        bars.append(charts.Bar(row.short, tooltip, value, a.estimated, a.partial))
    known = [row.amount.kwh for row in rows if row.amount.kwh is not None]
    return charts.bar_chart(
        bars,
        chart_id=chart_id,
        title=title,
        description=description(formatting.kwh(sum(known)), len(known)),
        axis_format=lambda v: formatting.number(v, 0),
    )


def _parse_ts(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        abort(400)
    if value.tzinfo is None or not EARLIEST.year <= value.year <= LATEST.year:
        abort(400)
    return value


@bp.get("/meters/<serial>/readings")
@customer_required
def readings(customer_id: int, serial: str) -> str:
    before, after = _parse_ts("before"), _parse_ts("after")
    with db.read_connection() as conn:
        customer, m, _meters = _customer_and_meter(conn, customer_id, serial)
        rows, more = q.readings_page(
            conn, m.id, before=before, after=after, now=_now(), size=PAGE_SIZE
        )
    # Going older, "more" means an older page exists; going newer, a newer one.
    if after is not None:
        older = rows[-1].ts.isoformat() if rows else None
        newer = rows[0].ts.isoformat() if rows and more else None
    else:
        older = rows[-1].ts.isoformat() if rows and more else None
        newer = rows[0].ts.isoformat() if rows and before is not None else None
    return render_template(
        "customer/readings.html",
        customer=customer,
        meter=m,
        rows=rows,
        older=older,
        newer=newer,
        first_page=before is None and after is None,
    )


def _parse_day(name: str, default: date) -> date:
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        abort(400)
    if not EARLIEST <= value <= LATEST:
        abort(400)
    return value


@bp.get("/meters/<serial>/readings.csv")
@customer_required
def readings_csv(customer_id: int, serial: str) -> Response:
    """The customer's own readings for local days ``from``..``to`` (inclusive), in the column
    order of ``doxa export readings``."""
    zone = _zone()
    today = _now().astimezone(zone).date()
    last = _parse_day("to", today)
    first = _parse_day("from", last - timedelta(days=CSV_DEFAULT_DAYS - 1))
    if first > last or (last - first).days >= CSV_MAX_DAYS:
        abort(400)
    with db.connection() as conn:
        _customer, m, _meters = _customer_and_meter(conn, customer_id, serial)
    # The same export as the staff's and `doxa export readings`, limited to this meter.
    spec = exports.readings(first, last, zone.key, exports.Selection(meters=(m.serial,)))

    def rows() -> Iterator[bytes]:
        with db.read_connection() as conn:
            yield from exports.iter_csv(conn, spec)

    filename = f"doxa-{m.serial}-{first.isoformat()}-{last.isoformat()}.csv"
    return Response(
        stream_with_context(rows()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/meters/<serial>/greenbutton.xml")
@customer_required
def greenbutton_xml(customer_id: int, serial: str) -> Response:
    """The customer's own interval use as a Green Button (ESPI) feed for local days
    ``from``..``to``: the same range rules and file as the CSV beside it and
    ``doxa export greenbutton`` (``exports.greenbutton``)."""
    from exports import greenbutton

    zone = _zone()
    today = _now().astimezone(zone).date()
    last = _parse_day("to", today)
    first = _parse_day("from", last - timedelta(days=CSV_DEFAULT_DAYS - 1))
    if first > last or (last - first).days >= CSV_MAX_DAYS:
        abort(400)
    with db.connection() as conn:
        _customer, m, _meters = _customer_and_meter(conn, customer_id, serial)
        body, _count = greenbutton.export(conn, [m.serial], first, last, zone, _now())
    filename = f"doxa-{m.serial}-{first.isoformat()}-{last.isoformat()}-greenbutton.xml"
    return Response(
        body,
        mimetype=greenbutton.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/bills")
@customer_required
def bills(customer_id: int) -> str:
    with db.read_connection() as conn:
        customer, all_meters = q.customer_and_meters(conn, customer_id)
        if customer is None:
            abort(404)
        rows = q.bills(conn, customer_id)
    chosen = [m for m in all_meters if m.serial == session.get("meter_serial")] or all_meters
    return render_template(
        "customer/bills.html", customer=customer, bills=rows, meter=chosen[0] if chosen else None
    )


@bp.get("/bills/<int:bill_id>")
@customer_required
def bill(customer_id: int, bill_id: int) -> str:
    with db.connection() as conn:
        customer = q.customer(conn, customer_id)
        row = q.bill(conn, customer_id, bill_id) if bill_id < 2**63 else None
        versions = q.bill_versions(conn, row) if row is not None else []
    if customer is None or row is None:
        abort(404)
    return render_template(
        "customer/bill.html",
        customer=customer,
        bill=row,
        parts=_bill_parts(row.breakdown),
        versions=versions,
        corrected_total=sum(v.total_vnd for v in versions),
    )


def _bill_parts(breakdown: dict[str, Any]) -> list[dict[str, Any]]:
    """The breakdown's parts with each tier line's kWh range worked out for display."""
    parts = []
    for part in breakdown.get("parts", []):
        lower = 0
        lines = []
        for line in part.get("lines", []):
            width = line.get("width_kwh")
            upper = None if width is None else lower + int(width)
            lines.append({**line, "from_kwh": lower + 1, "to_kwh": upper})
            lower = upper if upper is not None else lower
        parts.append({**part, "lines": lines, **_part_dates(part)})
    return parts


def _part_dates(part: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("start", "end", "tariff_effective_from"):
        try:
            out[f"{key}_date"] = date.fromisoformat(str(part.get(key)))
        except ValueError:
            out[f"{key}_date"] = None
    try:
        out["vat_percent"] = float(part.get("vat_rate", 0)) * 100
    except (TypeError, ValueError):
        out["vat_percent"] = None
    return out
