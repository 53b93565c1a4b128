"""Helpers for tests that talk HTTP to a real ``doxa web`` (gunicorn) — no tests here.

``WebClient`` is a browser reduced to what the site needs: a cookie jar, the CSRF token of the
page it read last, and a client address. ``doxa web`` is started with ``DOXA_WEB_PROXIES=1`` by
these tests, so the address a client sends as ``X-Forwarded-For`` is the one the site sees (the
way a reverse proxy reports its clients): several "addresses" on one machine.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlencode

CSRF = re.compile(r'name="(?:[a-z]+-)?csrf_token"[^>]*?value="([^"]+)"')


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")


class WebClient:
    """One visitor of the site at ``127.0.0.1:port``, coming from ``address``."""

    def __init__(self, port: int, address: str = "192.0.2.1", user_agent: str = "doxa-tests"):
        self.port = port
        self.address = address
        self.user_agent = user_agent
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"X-Forwarded-For": self.address, "User-Agent": self.user_agent}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        sent.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if not value or "01 Jan 1970" in cookie:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value
        return Reply(response.status, response.headers, data)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def csrf(self, path: str) -> str:
        page = self.get(path)
        match = CSRF.search(page.text)
        assert match, f"no CSRF token on {path} ({page.status})"
        return match[1]

    def post(self, path: str, form: dict[str, str], token_from: str | None = None) -> Reply:
        """Post a form with the CSRF token of the page ``token_from`` (default: ``path``)."""
        token = self.csrf(token_from or path)
        return self.request("POST", path, form={"csrf_token": token, **form})

    def sign_in(self, username: str, password: str, next_url: str | None = None) -> Reply:
        path = "/staff/login" + (f"?{urlencode({'next': next_url})}" if next_url else "")
        token = self.csrf("/staff/login")
        return self.request(
            "POST", path, form={"csrf_token": token, "username": username, "password": password}
        )

    def lookup(self, code: str, serial: str) -> Reply:
        return self.post("/", {"customer_code": code, "meter_serial": serial})
