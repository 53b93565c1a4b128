"""``/account``: a customer's contact details and notice choices (contract §13).

After the lookup (``customers.customer_required``), the customer sees their phone, email,
preferred channel, language and notice choices. A new phone or email takes effect only once the
6-digit code sent to it is entered (``care.verification``): the code goes out at once over the
channel being confirmed (SMS for a phone, email for an address), straight from this request, so
the page can say when it could not be sent, and it is never stored in clear. Sending a code is
rate-limited per account and per client address, and so is entering one (besides the code's own
5 tries). Name, address and "I am the new owner" are requests for staff review
(``/staff/reviews``). Every change is audited with the old value, the actor being
``customer:<code>``.

Forms (fixed names): ``phone`` and ``email``; the code is entered in ``code``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from care import accounts, render, verification
from care.channels import ChannelConfigError, Outgoing, SmsChannel, SmtpChannel
from care.contacts import ContactError, mask_email, mask_phone, normalise_email, normalise_phone
from care.otp import Check
from lookup_web import db
from lookup_web.customers import _now, customer_required
from lookup_web.i18n import current_language
from lookup_web.i18n import gettext as _
from lookup_web.security import limiter

log = logging.getLogger(__name__)
bp = Blueprint("account", __name__)

DEFAULTS: dict[str, Any] = {
    "SMTP_URL": None,  # DOXA_SMTP_URL; None: no email can be sent
    "SMS_URL": None,  # DOXA_SMS_URL; None: no SMS can be sent
    "MAIL_FROM": "Doxa <no-reply@doxa.invalid>",
    "CODE_SEND_LIMIT_PER_ACCOUNT": "5 per hour;10 per day",
    "CODE_SEND_LIMIT_PER_ADDRESS": "20 per hour",
    "CODE_ENTRY_LIMIT_PER_ACCOUNT": "10 per 10 minutes",
    "CODE_ENTRY_LIMIT_PER_ADDRESS": "30 per 10 minutes",
}
MAX_TEXT = 300  # characters of a requested name or address
MAX_NOTE = 1000


@bp.record_once
def _setup(state: Any) -> None:
    for key, value in DEFAULTS.items():
        state.app.config.setdefault(key, value)


def _config(key: str) -> Any:
    return current_app.config[key]


def _account_key() -> str:
    return f"account:{session.get('customer_id')}"


def _actor(account: accounts.Account) -> str:
    return f"customer:{account.code}"


def _addr() -> str:
    return request.remote_addr or ""


def _load(customer_id: int) -> accounts.Account:
    with db.connection() as conn:
        account = accounts.account(conn, customer_id)
    if account is None:
        session.pop("customer_id", None)
        raise _Gone()
    return account


class _Gone(Exception):
    pass


@bp.errorhandler(_Gone)
def _gone(_exc: _Gone) -> Any:
    return redirect(url_for("customers.index"))


# -- the page ----------------------------------------------------------------------------------


def _page(customer_id: int, status: int = 200, **errors: Any) -> Any:
    now = _now()
    with db.connection() as conn:
        account = accounts.account(conn, customer_id)
        if account is None:
            raise _Gone()
        codes = {c: verification.open_code(conn, customer_id, c, now) for c in ("phone", "email")}
        requests = accounts.customer_requests(conn, customer_id)
    return render_template(
        "customer/account.html",
        account=account,
        codes=codes,
        requests=requests,
        masked_phone=mask_phone(account.phone) if account.phone else None,
        masked_email=mask_email(account.email) if account.email else None,
        errors=errors,
        form=_echo() if request.method == "POST" else {},
        sms_on=bool(_config("SMS_URL")),
        email_on=bool(_config("SMTP_URL")),
    ), status


def _echo() -> dict[str, str]:
    """The contact fields as typed, to show again with their error: only values short and
    printable enough to be a phone or an email (a 10 kB paste or a NUL is not echoed)."""
    out = {}
    for name, limit in (("phone", 32), ("email", 254)):
        value = request.form.get(name, "")
        if len(value) <= limit and value.isprintable():
            out[name] = value
    return out


@bp.get("/account")
@customer_required
def page(customer_id: int) -> Any:
    return _page(customer_id)


# -- a new phone or email ----------------------------------------------------------------------


def _send_code(channel: str, recipient: str, customer_code: str, code: str) -> bool:
    """Send the code over ``channel`` now; False when it could not be sent."""
    texts = render.verification_code(current_language(), customer_code=customer_code, code=code)
    try:
        if channel == "phone":
            if not _config("SMS_URL"):
                return False
            sender: Any = SmsChannel(_config("SMS_URL"))
            message = Outgoing(recipient, "", texts.sms, f"code:{customer_code}:{code}")
        else:
            if not _config("SMTP_URL"):
                return False
            sender = SmtpChannel.from_url(_config("SMTP_URL"), _config("MAIL_FROM"))
            message = Outgoing(recipient, texts.email.subject, texts.email.body,
                               f"code:{customer_code}:{code}:{recipient}")  # fmt: skip
    except ChannelConfigError:
        log.exception("the %s channel is misconfigured", channel)
        return False
    try:
        outcome = sender.send(message)
    finally:
        sender.close()
    if outcome.status != "sent":
        log.warning("could not send a confirmation code by %s: %s", channel, outcome.error)
    return outcome.status == "sent"


def _start(customer_id: int, channel: str) -> Any:
    raw = request.form.get(channel, "")
    try:
        value = normalise_phone(raw) if channel == "phone" else normalise_email(raw)
    except ContactError as exc:
        return _page(customer_id, 400, **{channel: _(str(exc))})
    account = _load(customer_id)
    if value == (account.phone if channel == "phone" else account.email):
        flash(_("This is already your confirmed contact."), "info")
        return redirect(url_for("account.page"))
    now = _now()
    key = current_app.secret_key
    assert isinstance(key, str | bytes)
    secret = key.encode() if isinstance(key, str) else key
    with db.connection() as conn:
        started = verification.start(conn, secret, customer_id, channel, value, now, _addr())
    if not _send_code(channel, value, account.code, started.code):
        with db.connection() as conn:
            verification.cancel(conn, started.verification_id, now)
        message = (
            _("We could not send an SMS to this number just now. Please try again later.")
            if channel == "phone"
            else _("We could not send an email to this address just now. Please try again later.")
        )
        return _page(customer_id, 503, **{channel: message})
    flash(
        _("We sent a 6-digit code to %(to)s. Enter it below within 10 minutes.", to=value),
        "info",
    )
    return redirect(url_for("account.page") + f"#code-{channel}")


def _per_account(prefix: str) -> Any:
    return lambda: prefix + _account_key()


def _limit(setting: str, key_prefix: str | None = None) -> Any:
    """A Flask-Limiter limit from the app config, per client address or per account, shared by
    the routes that use the same setting (a phone code and an email code count together)."""
    if key_prefix is None:
        return limiter.shared_limit(lambda: _config(setting), scope=setting, methods=["POST"])
    return limiter.shared_limit(lambda: _config(setting), scope=setting, methods=["POST"],
                                key_func=_per_account(key_prefix))  # fmt: skip


@bp.post("/account/phone")
@_limit("CODE_SEND_LIMIT_PER_ADDRESS")
@_limit("CODE_SEND_LIMIT_PER_ACCOUNT", "code-send:")
@customer_required
def new_phone(customer_id: int) -> Any:
    return _start(customer_id, "phone")


@bp.post("/account/email")
@_limit("CODE_SEND_LIMIT_PER_ADDRESS")
@_limit("CODE_SEND_LIMIT_PER_ACCOUNT", "code-send:")
@customer_required
def new_email(customer_id: int) -> Any:
    return _start(customer_id, "email")


@bp.post("/account/verify")
@_limit("CODE_ENTRY_LIMIT_PER_ADDRESS")
@_limit("CODE_ENTRY_LIMIT_PER_ACCOUNT", "code-entry:")
@customer_required
def verify(customer_id: int) -> Any:
    channel = request.form.get("channel", "")
    if channel not in ("phone", "email"):
        return _page(customer_id, 400)
    account = _load(customer_id)
    key = current_app.secret_key
    secret = key.encode() if isinstance(key, str) else bytes(key or b"")
    with db.connection() as conn:
        result = verification.confirm(conn, secret, customer_id, channel,
                                      request.form.get("code", "")[:32], _now(),
                                      _actor(account), _addr())  # fmt: skip
    field = f"code_{channel}"
    if result.outcome is Check.OK:
        flash(
            _("Your phone number is confirmed: %(value)s.", value=result.value)
            if channel == "phone"
            else _("Your email address is confirmed: %(value)s.", value=result.value),
            "info",
        )
        return redirect(url_for("account.page"))
    if result.outcome is Check.WRONG and result.tries_left:
        message = _("This code is not right. %(n)d tries left.", n=result.tries_left)
    elif result.outcome is Check.WRONG or result.outcome is Check.NO_TRIES_LEFT:
        message = _("Too many wrong codes. Ask for a new code.")
    else:
        message = _("This code has expired or was already used. Ask for a new code.")
    return _page(customer_id, 400, **{field: message})


@bp.post("/account/remove")
@customer_required
def remove(customer_id: int) -> Any:
    channel = request.form.get("channel", "")
    if channel not in ("phone", "email"):
        return _page(customer_id, 400)
    account = _load(customer_id)
    with db.connection() as conn:
        accounts.remove_contact(conn, customer_id, channel, _actor(account), _now())
    flash(_("Removed."), "info")
    return redirect(url_for("account.page"))


# -- notice choices ----------------------------------------------------------------------------


def _whole(name: str, low: int, high: int) -> int | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    if len(raw) > 8 or not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(name)
    return int(raw)


@bp.post("/account/preferences")
@customer_required
def preferences(customer_id: int) -> Any:
    form = request.form
    channel, language = form.get("preferred_channel", ""), form.get("language", "")
    errors: dict[str, str] = {}
    if channel not in accounts.CHANNELS:
        errors["preferred_channel"] = _("Choose how we reach you.")
    if language not in accounts.LANGUAGES:
        errors["language"] = _("Choose a language.")
    try:
        threshold_kwh = _whole("threshold_kwh", 1, 1_000_000)
    except ValueError:
        errors["threshold_kwh"] = _("A whole number of kWh, from 1 to 1000000.")
    try:
        threshold_pct = _whole("threshold_pct", 1, 1000)
    except ValueError:
        errors["threshold_pct"] = _("A whole percentage, from 1 to 1000.")
    if errors:
        return _page(customer_id, 400, **errors)
    values = {
        "preferred_channel": channel,
        "language": language,
        "notify_bill": "notify_bill" in form,
        "notify_threshold": "notify_threshold" in form,
        "notify_outage": "notify_outage" in form,
        "threshold_kwh": threshold_kwh,
        "threshold_pct": threshold_pct,
    }
    account = _load(customer_id)
    with db.connection() as conn:
        changed = accounts.save_preferences(conn, customer_id, values, _now(), _actor(account),
                                            _addr())  # fmt: skip
    flash(_("Your choices are saved.") if changed else _("Nothing changed."), "info")
    return redirect(url_for("account.page"))


# -- requests for staff review ----------------------------------------------------------------


def _clean_text(raw: str, limit: int) -> str | None:
    text = " ".join(raw.split())
    if not text or len(raw) > limit * 2 or len(text) > limit:
        return None
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in raw if ch not in "\t\r\n"):
        return None
    return text


@bp.post("/account/requests")
@customer_required
def file_request(customer_id: int) -> Any:
    kind = request.form.get("kind", "")
    if kind not in accounts.REQUEST_KINDS:
        return _page(customer_id, 400)
    value = _clean_text(request.form.get("requested_value", ""), MAX_TEXT)
    if value is None:
        return _page(
            customer_id,
            400,
            request=_(
                "Write the new value (at most %(n)d characters, no control characters).", n=MAX_TEXT
            ),
        )
    note = _clean_text(request.form.get("note", "") or "-", MAX_NOTE)
    if note is None:
        return _page(
            customer_id,
            400,
            request=_("The note is too long (at most %(n)d characters).", n=MAX_NOTE),
        )
    if kind == "new_owner" and request.form.get("confirm_owner") != "yes":
        return _page(
            customer_id, 400, request=_("Tick the box to confirm that you are the new owner.")
        )
    account = _load(customer_id)
    with db.connection() as conn:
        accounts.file_request(conn, customer_id, kind, value, "" if note == "-" else note,
                              _actor(account), _now())  # fmt: skip
    flash(_("Your request is sent. Our staff will review it and you will see the answer here."),
          "info")  # fmt: skip
    return redirect(url_for("account.page") + "#requests")


# The customers' pages' headers (Content-Security-Policy, no-store): the same rule here.
