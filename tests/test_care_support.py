"""Helpers for the customer-care tests (no tests here): a real SMTP server (aiosmtpd, storing
into a Maildir through ``care.mailbox``) that can hold a session at a chosen step, a small HTTP
SMS gateway of the tests' own, and customers with confirmed contacts."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from care.mailbox import MaildirStore, serve


class HoldingStore(MaildirStore):
    """The Maildir store, able to stall a session at RCPT (nothing delivered yet) or after it
    stored the DATA (delivered, but the client has not got its 250)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hold_at: str | None = None  # "rcpt" or "data"
        self.held = threading.Event()  # set when a session is being held
        self.release = threading.Event()
        self.rcpts: list[str] = []

    async def _hold(self, step: str) -> None:
        if self.hold_at == step:
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.rcpts.append(address)
        await self._hold("rcpt")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        await self._hold("data")
        return answer


@dataclass
class SmtpServer:
    store: HoldingStore
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def messages(self) -> list[Any]:
        return self.store.messages()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    store = HoldingStore(tmp_path / "maildir")
    controller = serve(store)
    yield SmtpServer(store, controller.port)
    store.release.set()
    controller.stop()


@dataclass
class SmsGateway:
    """Records every POST; answers ``status`` (changeable); keeps one message per
    Idempotency-Key as the customer's phone would show them."""

    port: int = 0
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    hold: threading.Event | None = None
    held: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/send"

    def shown(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for key, message in zip(self.keys, self.received, strict=True):
            seen.setdefault(key, message)
        return list(seen.values())


@pytest.fixture
def sms_gateway() -> Iterator[SmsGateway]:
    gateway = SmsGateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            if gateway.status < 300:
                gateway.received.append(body)
                gateway.keys.append(self.headers.get("Idempotency-Key", ""))
            if gateway.hold is not None:
                gateway.held.set()
                gateway.hold.wait(30)
            self.send_response(gateway.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}' if gateway.status < 300 else b'{"error": "no"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gateway.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield gateway
    if gateway.hold is not None:
        gateway.hold.set()
    server.shutdown()
    server.server_close()


def add_contact(
    db: psycopg.Connection,
    customer_id: int,
    *,
    phone: str | None = None,
    email: str | None = None,
    channel: str = "email",
    language: str = "vi",
    threshold_kwh: int | None = None,
    threshold_pct: int | None = None,
) -> None:
    db.execute(
        "INSERT INTO customer_contacts (customer_id, phone, email, preferred_channel, language,"
        " notify_threshold, threshold_kwh, threshold_pct) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (customer_id, phone, email, channel, language,
         threshold_kwh is not None or threshold_pct is not None, threshold_kwh, threshold_pct),
    )  # fmt: skip


def notice_states(db: psycopg.Connection) -> list[tuple[str, str, int]]:
    return [
        (r[0], r[1], r[2])
        for r in db.execute("SELECT channel, state, attempts FROM notices ORDER BY id").fetchall()
    ]
