"""Staff sign-in (Flask-Login) and what each role may do.

Customers and staff share Flask's session cookie but not its keys: the customers' pages keep
``session["customer_id"]``, Flask-Login keeps the staff session's token. A customer's session is
therefore anonymous here and opens no staff page. Signing in clears the session (keeping only
the language) and starts a staff session that ends after ``STAFF_SESSION_SECONDS``.

The cookie is not the session: each staff session is also a row of ``staff_sessions``
(``schema.users``) and the cookie only holds its random token. Every request looks the token up
(one indexed query, which also loads the user), so signing out, a password change
(``doxa users passwd``) or deactivating the user ends the session everywhere at once, even for a
copy of the cookie. Failed sign-ins are limited per address, per (username, address) and per
username overall (``lookup_web.attempts``): a wrong password from one address never locks the
user out from another.

What each role may do (tests/test_staff_matrix.py checks every route against it):

| capability        | what                                   | billing | engineer | admin |
|-------------------|----------------------------------------|---------|----------|-------|
| `export_readings` | readings export, readings API          | yes     | yes      | yes   |
| `export_billing`  | closing-index and bill exports         | yes     | no       | yes   |
| `view_ops`        | `/ops` and the health API              | yes     | yes      | yes   |
| `ops_admin`       | actions on `/ops` (forget a collector) | no      | no       | yes   |
| `view_audit`      | the audit log at `/staff/audit`        | no      | no       | yes   |
| `review_accounts` | customers' requests at `/staff/reviews` | yes    | no       | yes   |
| `manage_outages`  | plan, edit, cancel outages             | no      | yes      | yes   |
| `work_requests`   | service requests and on-time shares    | yes     | yes      | yes   |
| `manage_billing`  | `/staff/bills`, `/staff/meters`: holds, | yes     | no       | yes   |
|                   | corrections, replace, decommission, transfer |  |          |       |
| `validate_readings` | `/staff/exceptions` (accept, edit, estimate) | yes | no | yes |

A user may hold several roles (``doxa users add NAME --role engineer --role billing``).
Cookies: HttpOnly, SameSite=Lax, and Secure whenever the request came over HTTPS (or always,
with ``SESSION_COOKIE_SECURE``), so the plain-HTTP demo still works.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import psycopg
from flask import Flask, abort, current_app, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from psycopg_pool import PoolTimeout

from lookup_web import db
from lookup_web.attempts import FailureLimit
from schema import users

CAPABILITIES: dict[str, frozenset[str]] = {
    "export_readings": frozenset({"billing", "engineer", "admin"}),
    "export_billing": frozenset({"billing", "admin"}),
    "view_ops": frozenset({"billing", "engineer", "admin"}),
    "ops_admin": frozenset({"admin"}),
    "view_audit": frozenset({"admin"}),
    "review_accounts": frozenset({"billing", "admin"}),
    "manage_outages": frozenset({"engineer", "admin"}),
    "work_requests": frozenset({"billing", "engineer", "admin"}),
    "manage_billing": frozenset({"billing", "admin"}),
    "validate_readings": frozenset({"billing", "admin"}),
}
SIGNED_IN_AT = "staff_signed_in_at"
DEFAULTS: dict[str, Any] = {
    # Failed sign-ins: from one address (any username), at one username from one address, and
    # at one username from every address (beyond it, one try per address).
    "STAFF_LOGIN_LIMIT": "10 per minute;100 per day",
    "STAFF_LOGIN_LIMIT_PER_USER": "5 per 15 minutes;20 per day",
    "STAFF_LOGIN_LIMIT_PER_USER_ALL": "30 per 15 minutes;100 per day",
    "STAFF_SESSION_SECONDS": 8 * 3600,
}
LOGIN_FAILURES = FailureLimit(
    "staff-login",
    "STAFF_LOGIN_LIMIT",
    "STAFF_LOGIN_LIMIT_PER_USER",
    "STAFF_LOGIN_LIMIT_PER_USER_ALL",
)

login_manager = LoginManager()
login_manager.login_view = "staff.login"
login_manager.login_message = cast(str, _l("Please sign in to open this page."))
login_manager.login_message_category = "warning"
login_manager.session_protection = "strong"

F = TypeVar("F", bound=Callable[..., Any])


class StaffLogin(UserMixin):  # type: ignore[misc]
    """The signed-in staff user as Flask-Login sees it. Its Flask-Login id is the session's
    token (not the user id), so the cookie names a session the server can end."""

    def __init__(self, user: users.StaffUser, session_token: str = "") -> None:
        self.user = user
        self.id = user.id
        self.username = user.username
        self.roles = user.roles
        self.session_token = session_token

    def get_id(self) -> str:
        return self.session_token

    def can(self, capability: str) -> bool:
        return bool(self.roles & CAPABILITIES[capability])


def _can(capability: str) -> bool:
    """Whether the current visitor may use ``capability`` (Jinja: ``can('ops_admin')``)."""
    return bool(current_user.is_authenticated and current_user.can(capability))


@login_manager.user_loader
def _load_user(token: str) -> StaffLogin | None:
    signed_in_at = session.get(SIGNED_IN_AT)
    lifetime = current_app.config["STAFF_SESSION_SECONDS"]
    if not isinstance(signed_in_at, int | float) or time.time() - signed_in_at > lifetime:
        return None
    try:
        with db.connection() as conn:
            user = users.user_for_session(conn, token, lifetime)
    except (psycopg.Error, PoolTimeout):
        return None
    return StaffLogin(user, token) if user else None


def sign_in(conn: psycopg.Connection, user: users.StaffUser, address: str) -> None:
    """Start a fresh staff session (nothing of an earlier session survives but the language)."""
    token = users.start_session(conn, user.id, address)
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    login_user(StaffLogin(user, token))
    session[SIGNED_IN_AT] = int(time.time())


def sign_out(conn: psycopg.Connection) -> None:
    """End the current staff session, on the server and in the cookie."""
    if current_user.is_authenticated:
        users.end_session(conn, current_user.session_token, "sign-out")
    logout_user()
    session.pop(SIGNED_IN_AT, None)


def requires(capability: str) -> Callable[[F], F]:
    """View decorator: anonymous visitors go to the sign-in page, staff without the role get 403."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.can(capability):
                abort(403)
            return view(*args, **kwargs)

        wrapper.capability = capability  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate


def staff_required(view: F) -> F:
    """View decorator: any signed-in staff user."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        return view(*args, **kwargs)

    wrapper.capability = "staff"  # type: ignore[attr-defined]
    return cast(F, wrapper)


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the Secure flag whenever the request is HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        configured = bool(app.config["SESSION_COOKIE_SECURE"])
        return configured or (has_request_context() and request.is_secure)


def init_app(app: Flask) -> None:
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    app.config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    app.config.setdefault("REMEMBER_COOKIE_SECURE", True)
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    app.session_interface = _SessionInterface()
    # Templates get ``current_user`` as the lazy proxy, loaded only by the pages that show it
    # (the staff's). Flask-Login's context processor would load it for every page rendered,
    # running the "strong" session protection, which rewrites a customer's session (it holds no
    # staff user): every customer page would send a new session cookie.
    login_manager.init_app(app, add_context_processor=False)
    app.jinja_env.globals["current_user"] = current_user
    app.jinja_env.globals["can"] = _can
