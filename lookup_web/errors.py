"""Error pages: every 4xx/5xx is a page in the visitor's language, never a traceback."""

from __future__ import annotations

import psycopg
from flask import Flask, render_template
from flask_babel import gettext as _
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable


def _messages() -> dict[int, str]:
    return {
        400: _("The request could not be understood."),
        403: _("You do not have access to this page."),
        404: _("This page does not exist."),
        405: _("This page cannot be used that way."),
        413: _("The request is too large."),
        429: _("Too many attempts. Please wait a minute and try again."),
        500: _("Something went wrong on our side. Please try again later."),
        503: _("The service is temporarily unavailable. Please try again later."),
    }


def _render(exc: HTTPException):  # type: ignore[no-untyped-def]
    code = exc.code or 500
    message = _messages().get(code, exc.description or "")
    # Keep what the exception says beyond its page, e.g. Retry-After on a 429.
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return render_template("error.html", code=code, message=message), code, headers


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _render)

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: Exception):  # type: ignore[no-untyped-def]
        # Logged once per request without a traceback: the cause is outside the site.
        app.logger.warning("database unavailable: %s", str(exc).strip().splitlines()[0:1])
        return _render(ServiceUnavailable())

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error")
        return _render(InternalServerError())
