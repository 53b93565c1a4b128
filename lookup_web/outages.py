"""Planned outages on the site: the public schedule ``/outages?province=…`` (no customer data)
and the staff pages ``/staff/outages`` where engineers and admins plan, edit and cancel them
(``servicedesk.outage_store``: the same code as ``doxa outages``, every change audited).
Customers see the outages covering them on their meter page (``servicedesk_panel``)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import ValidationError

from exports import provinces
from lookup_web import auth, clock, db
from lookup_web.service_desk_panel import describe
from servicedesk import outage_store, outages, text
from servicedesk.errors import ServiceDeskError

bp = Blueprint("outages", __name__)


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def state_labels() -> dict[str, str]:
    return {
        "planned": _("planned"),
        "ongoing": _("ongoing"),
        "ended": _("ended"),
        "cancelled": _("cancelled"),
    }


def free_text(limit: int, *, required: bool = True) -> Any:
    """A WTForms validator: ``servicedesk.text.problem`` with its message translated."""

    def validate(form: FlaskForm, field: Any) -> None:
        found = text.problem(field.data or "", limit, required=required)
        if found is not None:
            raise ValidationError(_(found, n=limit) if "%(n)" in found else _(found))

    return validate


# -- public ------------------------------------------------------------------------------------


@bp.get("/outages")
def public() -> Any:
    """The planned outages of a province that have not ended, soonest first."""
    province = request.args.get("province", "")
    now = clock.now()
    with db.connection() as conn:
        known = provinces(conn)
        found = outage_store.upcoming_in(conn, province, now) if province in known else []
    status = 404 if province and province not in known else 200
    return render_template(
        "outages/public.html",
        provinces=known,
        province=province if province in known else "",
        unknown=province if status == 404 else "",
        outages=found,
        now=now,
        states=state_labels(),
    ), status


# -- staff -------------------------------------------------------------------------------------


class OutageForm(FlaskForm):  # type: ignore[misc]
    province = SelectField(_l("Province"), choices=[], validate_choice=True)
    customer_prefix = StringField(_l("Customer code prefix (branch, optional)"))
    customer_codes = TextAreaField(
        _l("Or these customers only (codes, one per line or separated by commas)"),
        render_kw={"maxlength": 20_000, "rows": 3},
    )
    starts_at = StringField(
        _l("Start (local time)"), render_kw={"type": "datetime-local", "required": True}
    )
    ends_at = StringField(
        _l("End (local time)"), render_kw={"type": "datetime-local", "required": True}
    )
    reason = TextAreaField(
        _l("Reason, as customers will read it"),
        validators=[free_text(text.REASON_MAX)],
        render_kw={"maxlength": text.REASON_MAX, "rows": 3, "required": True},
    )

    def fill(self, o: outage_store.Outage, zone: ZoneInfo) -> None:
        self.province.data = o.province
        self.customer_prefix.data = o.customer_prefix or ""
        self.customer_codes.data = "\n".join(o.customer_codes)
        self.starts_at.data = o.starts_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
        self.ends_at.data = o.ends_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
        self.reason.data = o.reason


class CancelForm(FlaskForm):  # type: ignore[misc]
    note = TextAreaField(
        _l("Why it is cancelled"),
        validators=[free_text(text.NOTE_MAX)],
        render_kw={"maxlength": text.NOTE_MAX, "rows": 2, "required": True},
    )


def _outage_form(known: list[str]) -> OutageForm:
    form = OutageForm()
    form.province.choices = [SelectChoice(p) for p in known]
    return form


def _save(form: OutageForm, outage_id: int | None) -> outage_store.Outage | None:
    """Validate and save; on a problem the form carries the message and None is returned."""
    if not form.validate_on_submit():
        return None
    zone, now = _zone(), clock.now()
    try:
        area = outages.make_area(
            form.province.data,
            form.customer_prefix.data,
            outages.parse_codes(form.customer_codes.data or ""),
        )
        starts_at = outages.parse_time(form.starts_at.data or "", zone)
        ends_at = outages.parse_time(form.ends_at.data or "", zone)
        with db.connection() as conn:
            if outage_id is None:
                return outage_store.add(
                    conn, area, starts_at, ends_at, form.reason.data, current_user.username, now
                )
            return outage_store.edit(
                conn,
                outage_id,
                area,
                starts_at,
                ends_at,
                form.reason.data,
                current_user.username,
                now,
            )
    except ServiceDeskError as exc:
        form.form_errors.append(describe(exc))
        return None


@bp.route("/staff/outages", methods=["GET", "POST"])
@auth.requires("manage_outages")
def staff_list() -> Any:
    with db.connection() as conn:
        known = provinces(conn)
    form = _outage_form(known)
    if request.method == "POST":
        made = _save(form, None)
        if made is not None:
            flash(_("Outage %(id)d planned.", id=made.id), "success")
            return redirect(url_for("outages.staff_list"))
    with db.connection() as conn:
        listed = outage_store.listing(conn, request.args.get("province") or None, limit=200)
    status = 400 if request.method == "POST" else 200
    return render_template(
        "outages/staff_list.html",
        form=form,
        outages=listed,
        now=clock.now(),
        states=state_labels(),
    ), status


def _get_or_404(outage_id: int) -> outage_store.Outage:
    with db.connection() as conn:
        found = outage_store.get(conn, outage_id)
    if found is None:
        abort(404)
    return found


@bp.route("/staff/outages/<int:outage_id>", methods=["GET", "POST"])
@auth.requires("manage_outages")
def staff_edit(outage_id: int) -> Any:
    outage = _get_or_404(outage_id)
    with db.connection() as conn:
        known = provinces(conn)
        covered = outage_store.covered_customers(conn, outage_id)
    form = _outage_form(sorted({*known, outage.province}))
    if request.method == "GET":
        form.fill(outage, _zone())
    elif _save(form, outage_id) is not None:
        flash(_("Outage %(id)d saved.", id=outage_id), "success")
        return redirect(url_for("outages.staff_edit", outage_id=outage_id))
    now = clock.now()
    return render_template(
        "outages/staff_edit.html",
        form=form,
        cancel_form=CancelForm(),
        outage=outage,
        covered=covered,
        now=now,
        states=state_labels(),
        editable=outage.display_state(now) in ("planned", "ongoing"),
    ), (400 if request.method == "POST" else 200)


@bp.post("/staff/outages/<int:outage_id>/cancel")
@auth.requires("manage_outages")
def staff_cancel(outage_id: int) -> Any:
    outage = _get_or_404(outage_id)
    form = CancelForm()
    if form.validate_on_submit():
        try:
            with db.connection() as conn:
                outage_store.cancel(
                    conn, outage_id, form.note.data, current_user.username, clock.now()
                )
        except ServiceDeskError as exc:
            form.form_errors.append(describe(exc))
        else:
            flash(_("Outage %(id)d cancelled.", id=outage_id), "success")
            return redirect(url_for("outages.staff_edit", outage_id=outage_id))
    edit_form = _outage_form([outage.province])
    edit_form.fill(outage, _zone())
    now = clock.now()
    return render_template(
        "outages/staff_edit.html",
        form=edit_form,
        cancel_form=form,
        outage=outage,
        covered=None,
        now=now,
        states=state_labels(),
        editable=outage.display_state(now) in ("planned", "ongoing"),
    ), 400
