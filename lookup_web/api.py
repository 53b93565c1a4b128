"""The JSON API under ``/api/v1``: meters' readings and collector health, for staff scripts.

Authentication: a per-user API token (made on ``/staff/tokens`` or with ``doxa users token``)
sent as ``Authorization: Bearer TOKEN``, or a signed-in staff session. The token carries its
user's roles (see ``lookup_web.auth``). Errors are JSON: ``{"error": "..."}``; a parameter out
of range is a 400 naming the range. Reads of readings (personal data: they carry the customer
code) are written to the audit log with who, what and how many rows. The OpenAPI 3.1
description is public at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import wraps
from importlib import resources
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, jsonify, request, url_for
from flask_login import current_user
from werkzeug.exceptions import HTTPException

import exports
from lookup_web import auth, clock, db, ops
from lookup_web.security import client_address
from schema import audit, users
from servicedesk import outage_store

bp = Blueprint("api", __name__, url_prefix="/api/v1")
F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
READING_FIELDS = (
    "energy_import_kwh",
    "energy_export_kwh",
    "power_w",
    "voltage_v",
    "current_a",
    "frequency_hz",
    "quality",
)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Any:
    response = jsonify(error=exc.message)
    response.status_code = exc.status
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="doxa"'
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    response = jsonify(error=exc.description or exc.name)
    response.status_code = exc.code or 500
    return response


def _api_user() -> auth.StaffLogin | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with db.connection() as conn:
            user = users.user_for_token(conn, token.strip())
        return auth.StaffLogin(user) if user else None
    if current_user.is_authenticated:
        return cast(auth.StaffLogin, current_user._get_current_object())
    return None


def api_requires(capability: str) -> Callable[[F], F]:
    """401 without a valid token or staff session, 403 without the role."""
    if capability not in auth.CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = _api_user()
            if user is None:
                raise ApiError(401, "a valid API token (Authorization: Bearer …) is required")
            if not user.can(capability):
                raise ApiError(403, f"your roles do not allow this ({capability})")
            g.api_user = user
            return view(*args, **kwargs)

        wrapper.capability = capability  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate


def _limit(default: int = DEFAULT_LIMIT) -> int:
    text = request.args.get("limit", str(default))
    # ASCII digits only: "²".isdigit() is true, and int("²") fails.
    whole = text.isascii() and text.isdigit() and len(text) <= 6
    if not whole or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


_DAYS = f"from {exports.FIRST_DAY} to {exports.LAST_DAY}"


def _day(name: str) -> date:
    text = request.args.get(name)
    if not text:
        raise ApiError(400, f"{name} is required (YYYY-MM-DD, a local day {_DAYS})")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a date, YYYY-MM-DD, {_DAYS}") from None
    if not exports.in_range(day):
        raise ApiError(400, f"{name} is out of range: days go {_DAYS}")
    return day


def _audit_read(conn: Any, action: str, detail: dict[str, Any], rows: int) -> None:
    """Who read what through the API, from where, and how many rows it got."""
    via = "token" if request.headers.get("Authorization") else "session"
    audit.record(
        conn, g.api_user.username, action, {**detail, "via": via, "ip": client_address()}, rows
    )


def _timezone() -> str:
    return str(current_app.config["TIMEZONE"])


# -- readings ----------------------------------------------------------------------------------


@bp.get("/meters/<serial>/readings")
@api_requires("export_readings")
def meter_readings(serial: str) -> Any:
    """One meter's readings of local days from..to (inclusive), oldest first, paged by ``after``."""
    tz = _timezone()
    first, last = _day("from"), _day("to")
    if last < first:
        raise ApiError(400, "to is before from")
    limit = _limit()
    start = exports.local_day_start(first, tz)
    end = exports.local_day_start(last + timedelta(days=1), tz)
    after_text = request.args.get("after")
    after = start - timedelta(microseconds=1)
    if after_text:
        try:
            after = datetime.fromisoformat(after_text)
        except ValueError:
            raise ApiError(400, "after must be an ISO 8601 time with its offset") from None
        if after.tzinfo is None:
            raise ApiError(400, "after must carry its UTC offset")
        if not exports.in_range(after.date()):
            raise ApiError(400, f"after is out of range: days go {_DAYS}")
    zone = ZoneInfo(tz)
    with db.connection() as conn:
        meter = conn.execute(
            "SELECT m.id, c.code FROM meters m JOIN customers c ON c.id = m.customer_id"
            " WHERE m.serial = %s",
            (serial,),
        ).fetchone()
        if meter is None:
            raise ApiError(404, f"no meter {serial!r}")
        rows = conn.execute(
            f"SELECT ts, {', '.join(READING_FIELDS)} FROM readings"
            " WHERE meter_id = %s AND ts >= %s AND ts < %s AND ts > %s ORDER BY ts LIMIT %s",
            (meter[0], start, end, after, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        _audit_read(
            conn,
            "api.readings",
            {
                "meter_serial": serial,
                "customer_code": meter[1],
                "from": first.isoformat(),
                "to": last.isoformat(),
                "after": after_text or None,
                "limit": limit,
            },
            len(rows),
        )
    readings = [
        {
            "ts": row[0].astimezone(zone).isoformat(),
            **dict(zip(READING_FIELDS, row[1:], strict=True)),
        }
        for row in rows
    ]
    next_url = None
    if more:
        next_url = url_for(
            "api.meter_readings",
            serial=serial,
            **{"from": first.isoformat(), "to": last.isoformat()},
            limit=limit,
            after=readings[-1]["ts"],
        )
    return jsonify(
        meter_serial=serial,
        customer_code=meter[1],
        timezone=tz,
        readings=readings,
        next=next_url,
        **{"from": first.isoformat(), "to": last.isoformat()},
    )


# -- health ------------------------------------------------------------------------------------


@bp.get("/collectors")
@api_requires("view_ops")
def collectors() -> Any:
    thresholds = ops.Thresholds.from_config()
    with db.connection() as conn:
        found = ops.collectors(conn, thresholds, clock.now())
    return jsonify(
        collectors=[ops.as_json(c) for c in found],
        thresholds={"late_after_s": thresholds.late_after, "down_after_s": thresholds.down_after},
    )


@bp.get("/gateways")
@api_requires("view_ops")
def gateways() -> Any:
    with db.connection() as conn:
        found = ops.gateways(conn, clock.now())
    return jsonify(gateways=[ops.as_json(gw) for gw in found])


@bp.get("/metrics")
@api_requires("view_ops")
def metrics() -> Any:
    """The fleet's health as Prometheus gauges (``lookup_web.metrics``), for the alert rules."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from lookup_web.metrics import exposition

    with db.connection() as conn:
        body = exposition(conn, ops.Thresholds.from_config(), clock.now())
    return current_app.response_class(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


@bp.get("/meters/stale")
@api_requires("view_ops")
def stale_meters() -> Any:
    limit = _limit(ops.DEFAULTS["OPS_LIST_LIMIT"])
    with db.connection() as conn:
        total, found = ops.stale_meters(conn, ops.Thresholds.from_config(), limit, clock.now())
    return jsonify(count=total, meters=[ops.as_json(m) for m in found])


@bp.get("/rejected-messages")
@api_requires("view_ops")
def rejected_messages() -> Any:
    limit = _limit(50)
    with db.connection() as conn:
        found = ops.rejected_messages(conn, limit)
    return jsonify(messages=[ops.as_json(m) for m in found])


@bp.get("/completeness")
@api_requires("view_ops")
def completeness() -> Any:
    with db.connection() as conn:
        day, found = ops.cached_completeness(conn, _timezone())
    return jsonify(day=day.isoformat(), provinces=[ops.as_json(p) for p in found])


# -- planned outages (public) ------------------------------------------------------------------


@bp.get("/outages")
def outages() -> Any:
    """Planned outages that have not ended, soonest first; public, and naming no customer."""
    province = request.args.get("province") or None
    if province is not None and len(province) > 100:
        raise ApiError(400, "province is at most 100 characters")
    zone = ZoneInfo(_timezone())
    now = clock.now()
    with db.connection() as conn:
        found = outage_store.upcoming_in(conn, province, now, limit=_limit(500))
    return jsonify(
        outages=[
            {
                "id": o.id,
                "province": o.province,
                "customer_prefix": o.customer_prefix,
                "scope": o.scope,
                "start": o.starts_at.astimezone(zone).isoformat(),
                "end": o.ends_at.astimezone(zone).isoformat(),
                "reason": o.reason,
                "state": o.display_state(now),
            }
            for o in found
        ]
    )


# -- OpenAPI -----------------------------------------------------------------------------------

# The OpenAPI 3.1 description of every route of this blueprint is data, ``openapi.json`` beside
# this file; ``tests/test_api.py`` holds it to the routes, the limits and the reading fields.
OPENAPI = json.loads(resources.files("lookup_web").joinpath("openapi.json").read_text("utf-8"))


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route of this blueprint."""
    return OPENAPI  # type: ignore[no-any-return]


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document())
