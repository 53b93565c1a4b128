"""CSRF protection on every form and rate limits (Flask-Limiter), set up once per app."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from lookup_web import ratelimit_storage  # registers postgresql:// for the limits

csrf = CSRFProtect()
# Blueprints decorate their views with limiter.limit(...); storage comes from the app config.
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)


def close_storage() -> None:
    """Close the rate-limit counters' connections, when they are in the database."""
    storage = getattr(limiter, "_storage", None)
    if isinstance(storage, ratelimit_storage.PostgresStorage):
        storage.close()
