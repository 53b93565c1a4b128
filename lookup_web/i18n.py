"""Languages: Vietnamese by default, English on request (``?lang=en``, remembered in the session).

Every page's ``<html lang>`` comes from :func:`current_language`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

from flask import Flask, g, request, session
from flask_babel import Babel, get_translations
from jinja2 import pass_eval_context
from jinja2.nodes import EvalContext
from markupsafe import Markup

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
    """The request's language (worked out once: a page asks for it several times)."""
    try:
        return g._doxa_language  # type: ignore[no-any-return]
    except AttributeError:
        g._doxa_language = select_locale()
        return g._doxa_language


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


def gettext(message: str, **variables: Any) -> str:
    """Python code's ``_()``: Flask-Babel's gettext with the request's catalogue looked up once."""
    text: str = _translations().ugettext(message)
    return text % variables if variables else text


@pass_eval_context
def _template_gettext(eval_ctx: EvalContext, message: str, **variables: Any) -> str:
    """Templates' ``_()``: exactly what Jinja's new-style gettext does (mark the translation
    safe when autoescaping, then always ``%``-format it, escaping the values), in one call
    instead of three (Jinja's ``_`` resolves ``gettext`` and calls it, which calls ours). It
    takes the evaluation context, not the template context: Jinja copies the whole context for
    every call of a context function in a block that sets variables (the meter page's do)."""
    text = _translations().ugettext(message)
    if eval_ctx.autoescape:
        text = Markup(text)
    return text % variables  # type: ignore[no-any-return]


# Each catalogue's messages without variables, as templates show them (translated, safe,
# %-formatted): the same few dozen on every page.
_SAFE_MESSAGES: WeakKeyDictionary[Any, dict[str, Markup]] = WeakKeyDictionary()


def _request_gettext() -> dict[str, Any]:
    """Context processor: the templates' ``_`` bound to this request's catalogue, so a call
    is a dictionary look-up for most messages (``_template_gettext`` stays the global, for
    templates rendered without a request)."""
    translations = _translations()
    safe = _SAFE_MESSAGES.get(translations)
    if safe is None:
        safe = _SAFE_MESSAGES.setdefault(translations, {})

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, message: str, **variables: Any) -> str:
        if not eval_ctx.autoescape:
            return translations.ugettext(message) % variables  # type: ignore[no-any-return]
        if variables:
            return Markup(translations.ugettext(message)) % variables
        try:
            return safe[message]
        except KeyError:
            safe[message] = found = Markup(translations.ugettext(message)) % {}
            return found

    return {"_": gettext, "gettext": gettext}


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
    app.jinja_env.globals["_"] = app.jinja_env.globals["gettext"] = _template_gettext
    app.context_processor(_request_gettext)
    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["language_url"] = language_url
