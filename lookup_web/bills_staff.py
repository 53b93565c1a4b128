"""``/staff/bills`` and ``/staff/meters``: billing staff review held bills and record the life of
meters and accounts (contract §11, issue 13). Capability ``manage_billing`` (billing, admin).

- ``/staff/bills``: held drafts by province and reason (counts, then the list); a customer's
  bills by code. ``/staff/bills/<id>``: the bill, its versions, the daily use of its period as
  the metering rule gives it (the readings chart), and the actions: **release** a held draft
  (it is issued at once despite its holds) or **correct** an issued bill (a new version holding
  the difference) — each with a reason, audited (``billing.issue.release``,
  ``billing.correct.correct``).
- ``/staff/meters``: replace a meter, decommission one, change an account's owner — the same
  functions as ``doxa meters replace``, ``doxa meters decommission``, ``doxa customers
  transfer`` (``schema.lifecycle``), audited under the staff user's name.

A refused action (bad input, nothing to correct, a meter already retired…) comes back as a
message on the page, never an error page.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from billing import correct as correcting
from billing import issue as issuing
from billing.periods import Period
from doxa.errors import BadInput, LifecycleError
from lookup_web import auth, charts, clock, db, formatting
from lookup_web.i18n import gettext as _
from metering.calendar import local_midnight
from metering.usage import daily
from schema import lifecycle
from schema.register_inputs import Predecessor, registers

bp = Blueprint("bills_staff", __name__, url_prefix="/staff")
MAX_REASON = 500


def N_(message: str) -> str:
    """Marks a message for extraction (babel's ``N_`` keyword); the page translates it."""
    return message


REASON_LABELS = {
    issuing.HOLD_RISE: N_("More than 30 %% above the previous issued bill"),
    issuing.HOLD_ESTIMATED: N_("Estimated index at a boundary"),
    issuing.HOLD_EXCEPTION: N_("Open validation exception"),
}


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def _reason() -> str | None:
    reason = " ".join(request.form.get("reason", "").split())
    if not reason or len(reason) > MAX_REASON:
        flash(_("Give a reason (at most %(n)d characters).", n=MAX_REASON), "error")
        return None
    return reason


def _refused(exc: BadInput) -> None:
    flash(_("Not done: %(why)s", why=exc.message), "error")


@bp.get("/bills")
@auth.requires("manage_billing")
def bills() -> Any:
    province = request.args.get("province", "")[:100] or None
    reason = request.args.get("reason") or None
    reason = reason if reason in issuing.HOLD_REASONS else None
    code = request.args.get("code", "").strip().upper()[:13]
    with db.connection() as conn:
        held = issuing.held_bills(conn, province=province, reason=reason)
        counts = conn.execute(
            "SELECT c.province, r.reason, count(*) FROM bills b"
            " JOIN customers c ON c.id = b.customer_id"
            " CROSS JOIN LATERAL unnest(string_to_array(b.held_reason, ';')) AS r(reason)"
            " WHERE b.status = 'draft' AND b.held_reason IS NOT NULL"
            " GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        found = (
            conn.execute(
                "SELECT b.id, b.period, m.serial, b.version, b.status, b.held_reason,"
                " b.consumption_kwh, b.total_vnd FROM bills b"
                " JOIN customers c ON c.id = b.customer_id JOIN meters m ON m.id = b.meter_id"
                " WHERE c.code = %s ORDER BY b.period DESC, m.serial, b.version LIMIT 100",
                (code,),
            ).fetchall()
            if code
            else []
        )
    provinces = sorted({p for p, _r, _n in counts})
    return render_template(
        "staff/bills.html",
        held=held,
        counts=counts,
        provinces=provinces,
        province=province or "",
        reason=reason or "",
        reasons=REASON_LABELS,
        code=code,
        found=found,
    )


_BILL = (
    "SELECT b.id, b.period, b.period_start, b.period_end, b.days, b.start_index_kwh,"
    " b.end_index_kwh, b.consumption_kwh, b.amount_vnd, b.vat_vnd, b.total_vnd, b.estimated,"
    " b.status, b.version, b.held_reason, b.households, b.issued_at, b.issued_by,"
    " b.correction_reason, b.meter_id, m.serial, m.multiplier, c.code, c.province,"
    " coalesce(b.customer_name, customer_name_on(b.customer_id, b.period_end - 1)) AS name,"
    " m.replaces_meter_id, p.serial AS old_serial, m.installed_at"
    " FROM bills b JOIN meters m ON m.id = b.meter_id JOIN customers c ON c.id = b.customer_id"
    " LEFT JOIN meters p ON p.id = m.replaces_meter_id"
)


def _row(cur: Any) -> dict[str, Any] | None:
    row = cur.fetchone()
    return None if row is None else dict(zip([c.name for c in cur.description], row, strict=True))


@bp.get("/bills/<int:bill_id>")
@auth.requires("manage_billing")
def bill(bill_id: int) -> Any:
    if bill_id >= 2**63:
        abort(404)
    zone = _zone()
    with db.connection() as conn:
        found = _row(conn.execute(_BILL + " WHERE b.id = %s", (bill_id,)))
        if found is None:
            abort(404)
        versions = conn.execute(
            "SELECT id, version, status, consumption_kwh, total_vnd, correction_reason,"
            " issued_at, issued_by FROM bills WHERE meter_id = %s AND period = %s"
            " ORDER BY version",
            (found["meter_id"], found["period"]),
        ).fetchall()
        exceptions = conn.execute(
            "SELECT rule, ts_from, ts_to, reason FROM reading_exceptions WHERE state = 'open'"
            " AND meter_id IN (%s, %s) ORDER BY ts_from LIMIT 20",
            (found["meter_id"], found["replaces_meter_id"] or found["meter_id"]),
        ).fetchall()
        days = [
            found["period_start"] + timedelta(days=k)
            for k in range((found["period_end"] - found["period_start"]).days)
        ]
        predecessor = (
            {found["meter_id"]: Predecessor(found["replaces_meter_id"], found["old_serial"],
                                            found["installed_at"])}
            if found["replaces_meter_id"]
            else {}
        )  # fmt: skip
        register = registers(
            conn,
            {found["meter_id"]: [local_midnight(d, zone) for d in [*days, found["period_end"]]]},
            {found["meter_id"]: found["serial"]},
            predecessor,
        )[found["meter_id"]]
    uses = daily(register, days, zone, Decimal(found["multiplier"]), None)
    bars = [
        charts.Bar(
            f"{u.start:%d}",
            f"{u.start:%d/%m/%Y}: "
            + ("–" if u.kwh is None else formatting.kwh(u.kwh))
            + (f" ({_('estimated')})" if u.estimated else ""),
            None if u.kwh is None else float(u.kwh),
            u.estimated,
        )
        for u in uses
    ]
    chart = charts.bar_chart(
        bars,
        chart_id="bill-daily",
        title=_("Daily use in this period"),
        description=_("%(n)d days of the period, from the meter's readings.", n=len(days)),
        axis_format=lambda v: formatting.number(v, 0),
    )
    return render_template(
        "staff/bill.html",
        bill=found,
        versions=versions,
        exceptions=exceptions,
        chart=chart,
        reasons=REASON_LABELS,
        held=(found["held_reason"] or "").split(";") if found["held_reason"] else [],
    )


@bp.post("/bills/<int:bill_id>/release")
@auth.requires("manage_billing")
def release(bill_id: int) -> Any:
    back = (
        url_for("bills_staff.bill", bill_id=bill_id)
        if bill_id < 2**63
        else url_for("bills_staff.bills")
    )
    reason = _reason()
    if reason is None or bill_id >= 2**63:
        return redirect(back)
    try:
        with db.connection() as conn:
            issuing.release(conn, bill_id, current_user.username, reason, clock.now(), _zone())
    except BadInput as exc:
        _refused(exc)
        return redirect(url_for("bills_staff.bills"))
    flash(_("Bill %(id)d released and issued.", id=bill_id), "success")
    return redirect(back)


@bp.post("/bills/<int:bill_id>/correct")
@auth.requires("manage_billing")
def correct(bill_id: int) -> Any:
    reason = _reason()
    if reason is None or bill_id >= 2**63:
        return redirect(url_for("bills_staff.bills"))
    try:
        with db.connection() as conn:
            found = _row(conn.execute(_BILL + " WHERE b.id = %s", (bill_id,)))
            if found is None:
                raise LifecycleError(f"no bill {bill_id}")
            made = correcting.correct(
                conn, found["code"], Period.parse(found["period"]), reason,
                current_user.username, clock.now(), _zone(), found["serial"],
            )  # fmt: skip
    except BadInput as exc:
        _refused(exc)
        return redirect(url_for("bills_staff.bills"))
    flash(_("Correction issued as version %(v)d.", v=made[0].version), "success")
    return redirect(url_for("bills_staff.bill", bill_id=made[0].bill_id))


# -- meters and accounts -----------------------------------------------------------------------


@bp.get("/meters")
@auth.requires("manage_billing")
def meters() -> Any:
    with db.connection() as conn:
        recent = conn.execute(
            "SELECT ts, actor, action, detail FROM audit_log WHERE action IN"
            " ('meter.replace', 'meter.decommission', 'customer.transfer')"
            " ORDER BY id DESC LIMIT 20"
        ).fetchall()
    return render_template("staff/meters.html", recent=recent)


def _instant(name: str) -> datetime:
    text = request.form.get(name, "").strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise LifecycleError(_("the time must be YYYY-MM-DDTHH:MM")) from None
    return value.replace(tzinfo=_zone()) if value.tzinfo is None else value


def _number(name: str, default: float | None = None) -> float:
    text = request.form.get(name, "").strip().replace(",", ".")
    if not text and default is not None:
        return default
    try:
        return float(Decimal(text))
    except (InvalidOperation, ValueError):
        raise LifecycleError(_("%(field)s must be a number", field=name)) from None


def _done(message: str) -> Any:
    flash(message, "success")
    return redirect(url_for("bills_staff.meters"))


@bp.post("/meters/replace")
@auth.requires("manage_billing")
def replace() -> Any:
    form = request.form
    try:
        with db.connection() as conn:
            made = lifecycle.replace_meter(
                conn, form.get("old_serial", "").strip(), form.get("new_serial", "").strip(),
                _instant("at"), _number("old_final_kwh"),
                new_start_kwh=_number("new_start_kwh", 0.0), note=form.get("note", "")[:500],
                actor=current_user.username, now=clock.now(), zone=_zone(),
            )  # fmt: skip
    except BadInput as exc:
        _refused(exc)
        return redirect(url_for("bills_staff.meters"))
    return _done(_("Meter %(old)s replaced by %(new)s.", old=made.old_serial, new=made.new_serial))


@bp.post("/meters/decommission")
@auth.requires("manage_billing")
def decommission() -> Any:
    form = request.form
    serial = form.get("serial", "").strip()
    try:
        final = _number("final_kwh") if form.get("final_kwh", "").strip() else None
        with db.connection() as conn:
            lifecycle.decommission_meter(
                conn, serial, _instant("at"), final_kwh=final, note=form.get("note", "")[:500],
                actor=current_user.username, now=clock.now(), zone=_zone(),
            )  # fmt: skip
    except BadInput as exc:
        _refused(exc)
        return redirect(url_for("bills_staff.meters"))
    return _done(_("Meter %(serial)s decommissioned.", serial=serial))


@bp.post("/customers/transfer")
@auth.requires("manage_billing")
def transfer() -> Any:
    form = request.form
    code = form.get("code", "").strip().upper()
    try:
        try:
            on = date.fromisoformat(form.get("at", "").strip())
        except ValueError:
            raise LifecycleError(_("the date must be YYYY-MM-DD")) from None
        with db.connection() as conn:
            lifecycle.transfer_customer(
                conn, code, form.get("name", ""), on, actor=current_user.username,
                now=clock.now(), zone=_zone(), note=form.get("note", "")[:500],
            )  # fmt: skip
    except BadInput as exc:
        _refused(exc)
        return redirect(url_for("bills_staff.meters"))
    return _done(_("Account %(code)s has a new owner.", code=code))
