"""Staff pages at ``/staff``: sign-in and sign-out, exports (readings, closing indices, bills as
CSV or XLSX), API tokens and, for admins, the audit log.

Exports run the same code as ``doxa export`` (``exports``) and stream: the response starts
as soon as the first rows are found, and each export is written to the audit log with its row
count once it has ended (``complete`` is false when the download was cut short).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from psycopg_pool import ConnectionPool
from wtforms import (
    DateField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

import exports
from billing.periods import FIRST_YEAR, LAST_YEAR, PERIOD
from lookup_web import auth, clock, db
from lookup_web.security import client_address, safe_redirect_target
from schema import audit, users
from schema.identifiers import CUSTOMER_PREFIX

log = logging.getLogger(__name__)
bp = Blueprint("staff", __name__, url_prefix="/staff")
MAX_METERS = 1000


# -- forms -------------------------------------------------------------------------------------


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class _ExportForm(FlaskForm):  # type: ignore[misc]
    province = SelectField(_l("Province"), choices=[], validate_choice=False)
    customer_prefix = StringField(
        _l("Customer code prefix (branch)"),
        validators=[
            Optional(),
            Regexp(
                CUSTOMER_PREFIX.pattern,
                flags=re.IGNORECASE,
                message=_l("Letters and digits only, e.g. PB0101."),
            ),
        ],
    )
    fmt = RadioField(
        _l("Format"),
        choices=[SelectChoice("csv", "CSV"), SelectChoice("xlsx", "XLSX (Excel)")],
        default="csv",
    )

    def selection(self, meters: tuple[str, ...] = ()) -> exports.Selection:
        return exports.Selection(
            province=self.province.data or None,
            customer_prefix=(self.customer_prefix.data or "").upper() or None,
            meters=meters,
        )


def _check_day(day: Any) -> None:
    if day is not None and not exports.in_range(day):
        raise ValidationError(
            _("Days go from %(first)s to %(last)s.", first=exports.FIRST_DAY, last=exports.LAST_DAY)
        )


class ReadingsForm(_ExportForm):
    fmt = RadioField(
        _l("Format"),
        choices=[
            SelectChoice("csv", "CSV"),
            SelectChoice("xlsx", "XLSX (Excel)"),
            SelectChoice("greenbutton", _l("Green Button (ESPI XML; meter serials required)")),
        ],
        default="csv",
    )
    date_from = DateField(_l("From (local day)"), validators=[DataRequired()])
    date_to = DateField(_l("To (local day, included)"), validators=[DataRequired()])
    meters = TextAreaField(
        _l("Meter serials (optional; one per line or separated by commas)"),
        validators=[Optional(), Length(max=100_000)],
    )

    def validate_date_from(self, field: DateField) -> None:
        _check_day(field.data)

    def validate_date_to(self, field: DateField) -> None:
        _check_day(field.data)
        first = self.date_from.data
        if first and field.data and field.data < first:
            raise ValidationError(_("The end date is before the start date."))
        if first and field.data and (field.data - first).days >= exports.MAX_EXPORT_DAYS:
            raise ValidationError(_("At most %(days)d days at once.", days=exports.MAX_EXPORT_DAYS))

    def serials(self) -> tuple[str, ...]:
        text = (self.meters.data or "").replace(",", " ").replace(";", " ")
        return tuple(dict.fromkeys(text.split()))


class PeriodForm(_ExportForm):
    period = StringField(
        _l("Billing period (YYYY-MM)"),
        validators=[
            DataRequired(),
            Regexp(PERIOD, message=_l("Use the form YYYY-MM.")),
        ],
        render_kw={"type": "month", "placeholder": "YYYY-MM"},
    )

    def validate_period(self, field: StringField) -> None:
        year = int(str(field.data)[:4]) if str(field.data)[:4].isdigit() else None
        if year is not None and not FIRST_YEAR <= year <= LAST_YEAR:
            first, last = f"{FIRST_YEAR}-01", f"{LAST_YEAR}-12"
            raise ValidationError(
                _("Periods go from %(first)s to %(last)s.", first=first, last=last)
            )


def _forms(provinces: list[str]) -> dict[str, FlaskForm]:
    forms: dict[str, FlaskForm] = {
        "readings": ReadingsForm(prefix="readings"),
        "closing": PeriodForm(prefix="closing"),
        "bills": PeriodForm(prefix="bills"),
    }
    choices = [SelectChoice("", _("All provinces")), *(SelectChoice(p) for p in provinces)]
    for form in forms.values():
        form.province.choices = choices
    return forms


# -- sign-in -----------------------------------------------------------------------------------


def _next_page() -> str:
    return safe_redirect_target(request.args.get("next")) or url_for("staff.home")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(_next_page())
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        username = users.normalise_username(form.username.data)[:64]
        attempt = auth.LOGIN_FAILURES.begin(username)  # 429 when this address may not try now
        with db.connection() as conn:
            user = users.authenticate(conn, form.username.data, form.password.data)
            audit.record(
                conn,
                user.username if user else username,
                "login" if user else "login_failed",
                {"ip": client_address()},
            )
            if user is not None:
                attempt.succeeded()
                auth.sign_in(conn, user, client_address())
                return redirect(_next_page())
        error = _("Wrong username or password.")
    status = 400 if request.method == "POST" and form.errors else 200
    return render_template("staff/login.html", form=form, error=error), status


@bp.post("/logout")
@auth.staff_required
def logout() -> Any:
    with db.connection() as conn:
        audit.record(conn, current_user.username, "logout")
        auth.sign_out(conn)
    return redirect(url_for("staff.login"))


@bp.get("/")
@auth.staff_required
def home() -> Any:
    return render_template("staff/home.html")


# -- exports -----------------------------------------------------------------------------------


def _render_exports(forms: dict[str, FlaskForm], status: int = 200) -> Any:
    return render_template("staff/exports.html", forms=forms), status


@bp.get("/exports")
@auth.requires("export_readings")
def exports_page() -> Any:
    with db.connection() as conn:
        forms = _forms(exports.provinces(conn))
    return _render_exports(forms)


def _stream(spec: exports.ExportSpec, fmt: str) -> Response:
    """The streamed download; the audit entry is written when the stream ends."""
    pool: ConnectionPool = db.pool()
    actor = current_user.username
    detail = {**spec.detail, "format": fmt, "via": "web", "ip": client_address()}
    progress = exports.ExportProgress()

    def generate() -> Iterator[bytes]:
        with pool.connection() as conn:
            try:
                yield from exports.iter_export(conn, spec, fmt, progress)
            finally:
                try:
                    audit.record(
                        conn,
                        actor,
                        f"export.{spec.kind}",
                        {**detail, "complete": progress.complete},
                        progress.rows,
                    )
                except psycopg.Error:
                    log.exception("could not write the audit entry of an export")

    response = Response(generate(), mimetype=exports.MEDIA_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{spec.filename}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # reverse proxies: pass the stream on as it comes
    return response


def _export(which: str) -> Any:
    with db.connection() as conn:
        forms = _forms(exports.provinces(conn))
        form = forms[which]
        if not form.validate_on_submit():
            return _render_exports(forms, 400)
        tz = str(current_app.config["TIMEZONE"])
        try:
            if isinstance(form, ReadingsForm):
                serials = form.serials()
                if len(serials) > MAX_METERS:
                    form.meters.errors.append(_("At most %(n)d meters.", n=MAX_METERS))
                    return _render_exports(forms, 400)
                unknown = exports.unknown_meters(conn, serials)
                if unknown:
                    form.meters.errors.append(
                        _("Unknown meter serial: %(serials)s", serials=", ".join(unknown[:5]))
                    )
                    return _render_exports(forms, 400)
                if form.fmt.data == "greenbutton":
                    return _greenbutton(conn, forms, form, serials)
                spec = exports.readings(
                    form.date_from.data,
                    form.date_to.data,
                    tz,
                    form.selection(serials),
                    max_days=exports.MAX_EXPORT_DAYS,
                )
            elif which == "closing":
                spec = exports.closing_indices(form.period.data, tz, form.selection())
            else:
                spec = exports.bills(form.period.data, form.selection())
        except exports.ExportError as exc:
            form.form_errors.append(str(exc))
            return _render_exports(forms, 400)
    return _stream(spec, form.fmt.data)


def _greenbutton(
    conn: psycopg.Connection,
    forms: dict[str, FlaskForm],
    form: ReadingsForm,
    serials: tuple[str, ...],
) -> Any:
    """The Green Button feed of a list of meters (``exports.greenbutton``), audited."""
    from exports import greenbutton

    if not serials or len(serials) > greenbutton.MAX_METERS:
        form.meters.errors.append(
            _("Green Button needs meter serials (at most %(n)d).", n=greenbutton.MAX_METERS)
        )
        return _render_exports(forms, 400)
    zone = ZoneInfo(str(current_app.config["TIMEZONE"]))
    first, last = form.date_from.data, form.date_to.data
    body, intervals = greenbutton.export(
        conn, serials, first, last, zone, clock.now(), max_days=exports.MAX_EXPORT_DAYS
    )
    audit.record(
        conn,
        current_user.username,
        "export.greenbutton",
        {"meters": list(serials), "from": str(first), "to": str(last), "via": "web",
         "ip": client_address()},
        intervals,
    )  # fmt: skip
    response = Response(body, mimetype=greenbutton.MEDIA_TYPE)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="greenbutton_{first}_{last}.xml"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/exports/readings")
@auth.requires("export_readings")
def export_readings() -> Any:
    return _export("readings")


@bp.post("/exports/closing-indices")
@auth.requires("export_billing")
def export_closing_indices() -> Any:
    return _export("closing")


@bp.post("/exports/bills")
@auth.requires("export_billing")
def export_bills() -> Any:
    return _export("bills")


# -- password --------------------------------------------------------------------------------


class PasswordForm(FlaskForm):  # type: ignore[misc]
    current = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=users.MAX_PASSWORD_LENGTH)]
    )
    new = PasswordField(_l("New password"), validators=[DataRequired()])
    again = PasswordField(_l("New password again"), validators=[DataRequired()])

    def validate_new(self, field: PasswordField) -> None:
        if not users.MIN_PASSWORD_LENGTH <= len(field.data or "") <= users.MAX_PASSWORD_LENGTH:
            raise ValidationError(
                _(
                    "%(min)d to %(max)d characters.",
                    min=users.MIN_PASSWORD_LENGTH,
                    max=users.MAX_PASSWORD_LENGTH,
                )
            )

    def validate_again(self, field: PasswordField) -> None:
        if field.data != self.new.data:
            raise ValidationError(_("The two new passwords differ."))


@bp.route("/password", methods=["GET", "POST"])
@auth.staff_required
def password() -> Any:
    """Change one's own password: every session of the user ends, this browser gets a new one.
    A wrong current password counts as a failed sign-in (the same limits)."""
    form = PasswordForm()
    if form.validate_on_submit():
        attempt = auth.LOGIN_FAILURES.begin(current_user.username)
        with db.connection() as conn:
            if users.authenticate(conn, current_user.username, form.current.data) is None:
                audit.record(
                    conn, current_user.username, "password_failed", {"ip": client_address()}
                )
                form.current.errors.append(_("This is not your current password."))
            else:
                attempt.succeeded()
                user, ended = users.set_password(conn, current_user.username, form.new.data)
                audit.record(
                    conn,
                    user.username,
                    "user.passwd",
                    {
                        "username": user.username,
                        "sessions_ended": ended,
                        "via": "web",
                        "ip": client_address(),
                    },
                )
                auth.sign_in(conn, user, client_address())
                flash(_("Your password is changed. Your other sessions are signed out."), "ok")
                return redirect(url_for("staff.home"))
    status = 400 if form.errors else 200
    return render_template("staff/password.html", form=form), status


# -- API tokens --------------------------------------------------------------------------------


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField(_l("Label"), validators=[Optional(), Length(max=100)])


@bp.route("/tokens", methods=["GET", "POST"])
@auth.staff_required
def tokens() -> Any:
    form = TokenForm()
    new_token = None
    with db.connection() as conn:
        if form.validate_on_submit():
            new_token = users.create_token(conn, current_user.id, form.name.data or "")
            audit.record(conn, current_user.username, "token.create", {"name": form.name.data})
        listed = users.list_tokens(conn, current_user.id)
    status = 400 if form.errors else 200
    return render_template(
        "staff/tokens.html", form=form, tokens=listed, new_token=new_token
    ), status


@bp.post("/tokens/<int:token_id>/revoke")
@auth.staff_required
def revoke_token(token_id: int) -> Any:
    with db.connection() as conn:
        if not users.revoke_token(conn, current_user.id, token_id):
            return render_template("error.html", code=404, message=_("No such token.")), 404
        audit.record(conn, current_user.username, "token.revoke", {"token_id": token_id})
    return redirect(url_for("staff.tokens"))


# -- audit log ---------------------------------------------------------------------------------


@bp.get("/audit")
@auth.requires("view_audit")
def audit_log() -> Any:
    with db.connection() as conn:
        entries = audit.recent(conn, limit=200)
    return render_template("staff/audit.html", entries=entries)
