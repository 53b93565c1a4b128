"""Service requests on the site. Customers (after the lookup) file one at ``/requests`` and follow
its state and deadline; staff at ``/staff/requests`` filter them by province, kind, state and
overdue, move each on with a note, and see the share handled on time per province and month at
``/staff/requests/on-time``. Deadlines, states and shares are ``servicedesk``'s rules.

Filing is rate-limited per customer (successful filings) and per client address (every
attempt): ``REQUEST_LIMIT_PER_CUSTOMER``, ``REQUEST_LIMIT_PER_ADDRESS``.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import ValidationError

from exports import provinces
from lookup_web import auth, clock, db
from lookup_web.customers import customer_required
from lookup_web.outages import free_text
from lookup_web.security import limiter
from lookup_web.service_desk_panel import describe, kind_labels, state_labels
from servicedesk import request_store, standards, text
from servicedesk.errors import ServiceDeskError

bp = Blueprint("requests", __name__)
DEFAULTS = {
    "REQUEST_LIMIT_PER_CUSTOMER": "5 per hour;20 per day",
    "REQUEST_LIMIT_PER_ADDRESS": "20 per hour;100 per day",
}


@bp.record_once
def _setup(state: Any) -> None:
    for key, value in DEFAULTS.items():
        state.app.config.setdefault(key, value)


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


# -- customers ---------------------------------------------------------------------------------


def _phone(form: FlaskForm, field: Any) -> None:
    found = text.phone_problem(field.data or "")
    if found is not None:
        raise ValidationError(_(found))


class RequestForm(FlaskForm):  # type: ignore[misc]
    kind = SelectField(_l("What do you need?"), choices=[])
    description = TextAreaField(
        _l("Details"),
        validators=[free_text(text.DESCRIPTION_MAX)],
        render_kw={"maxlength": text.DESCRIPTION_MAX, "rows": 5, "required": True},
    )
    contact_phone = StringField(
        _l("Contact phone"),
        validators=[_phone],
        render_kw={"maxlength": text.PHONE_MAX, "autocomplete": "tel", "inputmode": "tel"},
    )


def _request_form() -> RequestForm:
    form = RequestForm()
    form.kind.choices = [SelectChoice(k, label) for k, label in kind_labels().items()]
    return form


def _customer_key() -> str:
    return f"service-request-customer:{session.get('customer_id')}"


def _filed(response: Response) -> bool:
    return response.status_code == 302


def _render_mine(customer_id: int, form: RequestForm, status: int = 200) -> Any:
    with db.connection() as conn:
        mine = request_store.for_customer(conn, customer_id)
    return render_template(
        "requests/customer.html",
        form=form,
        requests=mine,
        now=clock.now(),
        kinds=kind_labels(),
        states=state_labels(),
        meter_serial=session.get("meter_serial", ""),
    ), status


@bp.get("/requests")
@customer_required
def mine(customer_id: int) -> Any:
    return _render_mine(customer_id, _request_form())


@bp.post("/requests")
@limiter.limit(lambda: current_app.config["REQUEST_LIMIT_PER_ADDRESS"])
@limiter.limit(
    lambda: current_app.config["REQUEST_LIMIT_PER_CUSTOMER"],
    key_func=_customer_key,
    deduct_when=_filed,
)
@customer_required
def file(customer_id: int) -> Any:
    form = _request_form()
    if not form.validate_on_submit():
        return _render_mine(customer_id, form, 400)
    try:
        with db.connection() as conn:
            made = request_store.file(
                conn,
                customer_id,
                form.kind.data,
                form.description.data,
                form.contact_phone.data,
                clock.now(),
                _zone(),
                request.remote_addr or "",
            )
    except ServiceDeskError as exc:
        form.form_errors.append(describe(exc))
        return _render_mine(customer_id, form, 400)
    flash(_("Request %(id)d received.", id=made.id), "success")
    return redirect(url_for("requests.one", request_id=made.id))


@bp.get("/requests/<int:request_id>")
@customer_required
def one(customer_id: int, request_id: int) -> Any:
    with db.connection() as conn:
        found = request_store.get(conn, request_id, customer_id)
        if found is None:
            abort(404)
        history = request_store.events(conn, request_id)
    return render_template(
        "requests/customer_one.html",
        r=found,
        events=history,
        now=clock.now(),
        kinds=kind_labels(),
        states=state_labels(),
    )


# -- staff -------------------------------------------------------------------------------------


class StateForm(FlaskForm):  # type: ignore[misc]
    state = SelectField(_l("New state"), choices=[])
    note = TextAreaField(
        _l("Note (kept with the change)"),
        validators=[free_text(text.NOTE_MAX)],
        render_kw={"maxlength": text.NOTE_MAX, "rows": 3, "required": True},
    )


def _state_form(current: str) -> StateForm:
    form = StateForm()
    labels = state_labels()
    form.state.choices = [SelectChoice(s, labels[s]) for s in standards.TRANSITIONS[current]]
    return form


@bp.get("/staff/requests")
@auth.requires("work_requests")
def staff_list() -> Any:
    args = request.args
    province = args.get("province") or None
    kind = args.get("kind") if args.get("kind") in standards.KINDS else None
    state = args.get("state") if args.get("state") in (*standards.STATES, "open") else None
    overdue = {"yes": True, "no": False}.get(args.get("overdue", ""))
    now = clock.now()
    with db.connection() as conn:
        known = provinces(conn)
        found = request_store.search(
            conn, now, province=province, kind=kind, state=state, overdue=overdue
        )
    return render_template(
        "requests/staff_list.html",
        requests=found,
        provinces=known,
        chosen={
            "province": province or "",
            "kind": kind or "",
            "state": state or "",
            "overdue": args.get("overdue", ""),
        },
        now=now,
        kinds=kind_labels(),
        states=state_labels(),
    )


@bp.route("/staff/requests/<int:request_id>", methods=["GET", "POST"])
@auth.requires("work_requests")
def staff_one(request_id: int) -> Any:
    with db.connection() as conn:
        found = request_store.get(conn, request_id)
    if found is None:
        abort(404)
    form = _state_form(found.state)
    status = 200
    if request.method == "POST":
        status = 400
        if form.validate_on_submit():
            try:
                with db.connection() as conn:
                    request_store.change_state(
                        conn,
                        request_id,
                        form.state.data,
                        form.note.data,
                        current_user.username,
                        clock.now(),
                    )
            except ServiceDeskError as exc:
                form.form_errors.append(describe(exc))
            else:
                flash(_("Request %(id)d updated.", id=request_id), "success")
                return redirect(url_for("requests.staff_one", request_id=request_id))
    with db.connection() as conn:
        history = request_store.events(conn, request_id)
    return render_template(
        "requests/staff_one.html",
        r=found,
        events=history,
        form=form,
        now=clock.now(),
        kinds=kind_labels(),
        states=state_labels(),
    ), status


def _month(name: str, default: date) -> date:
    raw = request.args.get(name, "")
    try:
        value = date.fromisoformat(f"{raw}-01") if raw else default
    except ValueError:
        abort(400)
    if not 2000 <= value.year <= 2200:
        abort(400)
    return value


@bp.get("/staff/requests/on-time")
@auth.requires("work_requests")
def on_time() -> Any:
    """The share handled on time per province and month of deadline (``servicedesk.ontime``)."""
    zone, now = _zone(), clock.now()
    this_month = now.astimezone(zone).date().replace(day=1)
    first = _month("from", (this_month - timedelta(days=335)).replace(day=1))
    last = _month("to", this_month)
    if last < first:
        abort(400)
    with db.connection() as conn:
        shares = request_store.on_time_shares(conn, now, zone, first, last)
    months = sorted({s.month for s in shares}, reverse=True)
    table: dict[str, dict[date, Any]] = {}
    for s in shares:
        table.setdefault(s.province, {})[s.month] = s
    return render_template(
        "requests/on_time.html",
        months=months,
        table=table,
        first=first,
        last=last,
    )
