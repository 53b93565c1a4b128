"""The Doxa website: customers look up their meter, billing staff export, engineers watch health.

``create_app(config)`` is the factory; one blueprint per audience (``customers``, ``staff``,
``ops``) plus ``/healthz``. The site reads only the database; it never imports the collector.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask

from lookup_web import (
    account,
    api,
    auth,
    bills_staff,
    customers,
    db,
    errors,
    exceptions,
    health,
    i18n,
    ops,
    outages,
    reviews,
    security,
    service_requests,
    staff,
)
from lookup_web.json_provider import FiniteJSONProvider


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` must give ``DATABASE_URL``; ``SECRET_KEY`` is random if absent
    (fine for one process of the demo or a test, not for production)."""
    app = Flask(__name__)
    app.json = FiniteJSONProvider(app)  # never NaN/Infinity tokens (issue 20)
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        TIMEZONE="Asia/Ho_Chi_Minh",
        RATELIMIT_STORAGE_URI="memory://",
        DB_POOL_MIN=1,
        DB_POOL_MAX=10,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.config.update(config or {})
    if not app.config.get("DATABASE_URL"):
        raise ValueError("create_app needs DATABASE_URL")

    db.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    auth.init_app(app)
    for blueprint in (health.bp, customers.bp, staff.bp, ops.bp, api.bp, account.bp, reviews.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(outages.bp)
    app.register_blueprint(service_requests.bp)
    app.register_blueprint(bills_staff.bp)
    app.register_blueprint(exceptions.bp)
    return app


def close(app: Flask) -> None:
    """Close the site's database connections: its pool and the rate-limit counters' pool.
    (gunicorn calls this as each worker exits; tests, for each app they made.)"""
    db.close(app)
    security.close_storage()
