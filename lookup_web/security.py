"""The site's shared web defences, set up once per app by ``init_app``:

- the client's address behind trusted reverse proxies (``TRUSTED_PROXIES``);
- CSRF tokens on every form (Flask-WTF);
- Flask-Limiter, whose storage also keeps the failed-attempt counters of ``lookup_web.attempts``;
- the security headers of every response (:func:`apply_headers`, one place for every blueprint);
- :func:`safe_redirect_target`, the only way a page should turn a ``next`` parameter into a
  redirect.

New pages get the headers without doing anything; see lookup_web/README.md ("Security").
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, urlsplit

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from lookup_web import ratelimit_storage  # registers postgresql:// for the limits

csrf = CSRFProtect()
# Blueprints may decorate views with limiter.limit(...); storage comes from the app config.
limiter = Limiter(key_func=get_remote_address, default_limits=[])

# The site needs nothing but itself: no script at all, styles and images from this server (charts
# are inline SVG, some as data: URLs), forms posting back here, never inside another site's frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Printable ASCII but space: what a redirect target may hold once normalised.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


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
    app.after_request(apply_headers)


def apply_headers(response: Response) -> Response:
    """Every response — customer, staff, ops, API, error pages — carries the same headers; a
    view that sets one itself keeps its own. Nothing but static files may be stored by a cache
    or the browser's back-forward cache: pages hold personal data or CSRF tokens."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def client_address() -> str:
    """The client's address as the rate limits and the audit log see it (after the proxies)."""
    return request.remote_addr or ""


def safe_redirect_target(target: str | None) -> str | None:
    """``target`` as a path on this site, or None when it is anything else.

    Browsers drop tabs and newlines from URLs and treat ``\\`` as ``/``, so ``/\\t/evil.example``
    would become ``//evil.example``: a target holding any control or format character, a line
    or paragraph separator, or a backslash is refused outright rather than cleaned. What remains
    must be a path without scheme or host that does not start with ``//``; characters outside
    printable ASCII (spaces included) are percent-encoded, so ``Location`` is plain ASCII.
    """
    if not target or len(target) > 2048 or "\\" in target:
        return None
    if any(_refused_character(ch) for ch in target):
        return None
    encoded = quote(target, safe=_URL_SAFE)
    parts = urlsplit(encoded)
    if parts.scheme or parts.netloc or not encoded.startswith("/") or encoded.startswith("//"):
        return None
    return encoded


def _refused_character(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def close_storage() -> None:
    """Close the rate-limit counters' connections, when they are in the database."""
    storage = getattr(limiter, "_storage", None)
    if isinstance(storage, ratelimit_storage.PostgresStorage):
        storage.close()
