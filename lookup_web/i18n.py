"""Languages: Vietnamese by default, English on request (``?lang=en``, remembered in the session).

Every page's ``<html lang>`` comes from :func:`current_language`."""

from __future__ import annotations

from flask import Flask, request, session
from flask_babel import Babel

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"


def select_locale() -> str:
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        session["lang"] = asked
        return asked
    remembered = session.get("lang")
    return remembered if remembered in LANGUAGES else DEFAULT_LANGUAGE


def current_language() -> str:
    return select_locale()


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", app.config["TIMEZONE"])
    Babel(app, locale_selector=select_locale, timezone_selector=lambda: app.config["TIMEZONE"])
    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
