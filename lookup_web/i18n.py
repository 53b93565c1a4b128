"""Languages: Vietnamese by default, English on request (``?lang=en``, remembered in the session).

Every page's ``<html lang>`` comes from :func:`current_language`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Flask, g, request, session
from flask_babel import Babel, get_translations

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


def language_url(code: str) -> str:
    """The current page in another language: same path and query, ``lang`` replaced. After a
    form post (no page to show again) it is the start page in that language."""
    if request.method != "GET":
        return f"/?lang={code}"
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    return request.path + "?" + urlencode([*args, ("lang", code)])


def _translations() -> Any:
    """The request's catalogue, looked up once per request (a page calls _() dozens of times;
    Flask-Babel's own template callables look it up again on every call)."""
    try:
        return g._doxa_translations
    except AttributeError:
        g._doxa_translations = get_translations()
        return g._doxa_translations


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", app.config["TIMEZONE"])
    Babel(app, locale_selector=select_locale, timezone_selector=lambda: app.config["TIMEZONE"])
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: _translations().ugettext(s),
        ngettext=lambda s, p, n: _translations().ungettext(s, p, n),
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
        newstyle=True,
    )
    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["language_url"] = language_url
