"""``/staff/exceptions``: the validation exception queue (contract §12).

Billing staff and admins (capability ``validate_readings``) see the open exceptions filtered by
rule, province and customer-code prefix; per exception, the meter's use around it as a chart,
its readings with every version, and three actions: accept (close with a reason), edit a
reading (quality ``edited``, the earlier value kept), estimate the meter's gaps around it
(quality ``estimated``). A rule's open exceptions in an area can be accepted at once. Every
action goes through ``vee.store`` and is audited there, with the user as actor.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

import exports
from lookup_web import auth, charts, clock, db
from lookup_web.formatting import kwh as format_kwh
from lookup_web.formatting import number
from vee import store
from vee.rules import RULES

bp = Blueprint("exceptions", __name__, url_prefix="/staff")
AROUND = timedelta(hours=12)  # the chart and readings shown on either side of an exception
MAX_SPAN = timedelta(days=3)


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def _filter(args: Any, open_only: bool = True) -> store.Filter:
    rule = args.get("rule", "")[:32] or None
    return store.Filter(
        rule=rule if rule in RULES else None,
        province=args.get("province", "")[:100] or None,
        customer_prefix=args.get("customer_prefix", "")[:13].strip() or None,
        open_only=open_only,
    )


def _back(form: Any) -> str:
    return url_for(
        "exceptions.queue",
        rule=form.get("rule") or None,
        province=form.get("province") or None,
        customer_prefix=form.get("customer_prefix") or None,
    )


@bp.get("/exceptions")
@auth.requires("validate_readings")
def queue() -> Any:
    which = _filter(request.args)
    try:
        with db.connection() as conn:
            found = store.list_exceptions(conn, which)
            provinces = exports.provinces(conn)
    except store.VeeError as exc:
        flash(str(exc), "error")
        return redirect(url_for("exceptions.queue"))
    return render_template(
        "staff/exceptions.html", exceptions=found, which=which, rules=RULES, provinces=provinces
    )


@bp.post("/exceptions/accept")
@auth.requires("validate_readings")
def accept_bulk() -> Any:
    which = _filter(request.form)
    try:
        with db.connection() as conn:
            n = store.accept_matching(
                conn, which, current_user.username, request.form.get("reason", ""), clock.now()
            )
    except store.VeeError as exc:
        flash(str(exc), "error")
        return redirect(_back(request.form))
    flash(_("%(n)d exception(s) accepted.", n=n), "info")
    return redirect(_back(request.form))


def _readings(
    conn: Any, meter_id: int, lo: datetime, hi: datetime, zone: ZoneInfo
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT r.ts, r.energy_import_kwh, r.quality,"
        " (SELECT json_agg(json_build_object('version', v.version, 'kwh', v.energy_import_kwh,"
        "   'quality', v.quality, 'actor', v.actor,"
        "   'changed_at', to_char(v.changed_at AT TIME ZONE %s, 'YYYY-MM-DD HH24:MI'),"
        "   'reason', v.reason) ORDER BY v.version)"
        "  FROM reading_versions v WHERE v.meter_id = r.meter_id AND v.ts = r.ts)"
        " FROM readings r WHERE r.meter_id = %s AND r.ts >= %s AND r.ts <= %s ORDER BY r.ts",
        (zone.key, meter_id, lo, hi),
    ).fetchall()
    return [{"ts": ts, "kwh": k, "quality": q, "versions": v or []} for ts, k, q, v in rows]


def _chart(readings: list[dict[str, Any]], zone: ZoneInfo) -> Any:
    bars = []
    for before, after in itertools.pairwise(readings):
        used = after["kwh"] - before["kwh"]
        when = after["ts"].astimezone(zone)
        value = used if math.isfinite(used) else None
        bars.append(
            charts.Bar(
                f"{when:%H:%M}",
                f"{before['ts'].astimezone(zone):%Y-%m-%d %H:%M}–{when:%H:%M}:"
                f" {format_kwh(used, 3)}",
                None if value is None else max(value, 0.0),
                estimated=after["quality"] != "actual",
            )
        )
    return charts.bar_chart(
        bars,
        chart_id="exception-chart",
        title=_("Use between readings around the exception"),
        description=_("kWh used in each interval between two readings."),
        axis_format=lambda v: number(v, 1),
    )


@bp.get("/exceptions/<int:exception_id>")
@auth.requires("validate_readings")
def one(exception_id: int) -> Any:
    if exception_id >= 2**63:
        return render_template("error.html", code=404, message=_("No such exception.")), 404
    zone = _zone()
    with db.connection() as conn:
        found = store.get_exception(conn, exception_id)
        if found is None:
            return render_template("error.html", code=404, message=_("No such exception.")), 404
        lo = found.ts_from - AROUND
        hi = min(found.ts_to, found.ts_from + MAX_SPAN) + AROUND
        readings = _readings(conn, found.meter_id, lo, hi, zone)
    return render_template(
        "staff/exception.html",
        e=found,
        readings=readings,
        chart=_chart(readings, zone),
        zone=zone,
        default_ts=found.ts_to.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
    )


@bp.post("/exceptions/<int:exception_id>/<action>")
@auth.requires("validate_readings")
def act(exception_id: int, action: str) -> Any:
    if exception_id >= 2**63 or action not in ("accept", "edit", "estimate"):
        return render_template("error.html", code=404, message=_("No such exception.")), 404
    back = url_for("exceptions.one", exception_id=exception_id)
    zone = _zone()
    user = current_user.username
    now = clock.now()
    form = request.form
    try:
        with db.connection() as conn:
            found = store.get_exception(conn, exception_id)
            if found is None:
                return render_template("error.html", code=404, message=_("No such exception.")), 404
            if action == "accept":
                store.accept(conn, [exception_id], user, form.get("reason", ""), now)
                flash(_("Exception accepted."), "info")
                return redirect(url_for("exceptions.queue"))
            if action == "edit":
                ts = _local_time(form.get("ts", ""), zone)
                value = _number(form.get("kwh", ""))
                edit = store.edit_reading(
                    conn, found.meter_serial, ts, value, form.get("reason", ""), user, now
                )
                flash(_("Reading edited (version %(v)d).", v=edit.version), "info")
            else:
                first = (found.ts_from - AROUND).astimezone(zone).date()
                last = (min(found.ts_to, found.ts_from + MAX_SPAN) + AROUND).astimezone(zone)
                report = store.estimate_range(
                    conn, first, last.date(), zone, user, now, [found.meter_serial]
                )
                flash(_("%(n)d reading(s) estimated.", n=report.rows), "info")
    except store.VeeError as exc:
        flash(str(exc), "error")
    return redirect(back)


def _local_time(text: str, zone: ZoneInfo) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise store.VeeError(_("Give the reading's time, e.g. 2026-11-03T10:30.")) from None
    return ts.replace(tzinfo=zone) if ts.tzinfo is None else ts


def _number(text: str) -> float:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        raise store.VeeError(_("The register must be a number of kWh.")) from None
