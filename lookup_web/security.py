"""CSRF protection on every form, rate limits (Flask-Limiter) and the client's address behind
trusted reverse proxies, set up once per app."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from lookup_web import ratelimit_storage  # registers postgresql:// for the limits

csrf = CSRFProtect()
# Blueprints decorate their views with limiter.limit(...); storage comes from the app config.
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def init_app(app: Flask) -> None:
    # Behind N reverse proxies the client is the Nth address from the right of X-Forwarded-For
    # (and the scheme is X-Forwarded-Proto): the rate limits, the audit log and the Secure
    # cookie flag then see the client, not the proxy. With 0 (the default) those headers are
    # ignored, so a client cannot dodge its limit by sending a made-up one.
    proxies = int(app.config.setdefault("TRUSTED_PROXIES", 0))
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    csrf.init_app(app)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)


def close_storage() -> None:
    """Close the rate-limit counters' connections, when they are in the database."""
    storage = getattr(limiter, "_storage", None)
    if isinstance(storage, ratelimit_storage.PostgresStorage):
        storage.close()
