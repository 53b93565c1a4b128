"""A local mailbox behind a small SMTP server (aiosmtpd): where ``doxa demo`` delivers its demo
customers' email, and what the tests deliver to. I/O.

Messages are written to a Maildir (``new/`` holds one file per message: open it with
``mutt -f DIR``, any Maildir reader, or read the files). The store keeps a message once per
``Message-ID``: a second copy — which the notifier sends when it was killed after the server
accepted a message but before it marked the notice sent — is accepted (the sender must not try
yet again) and counted, but not stored, so the customer sees the notice once. That is the
guarantee SMTP allows: delivery is at least once, and a mail store or client that drops
duplicates by Message-ID shows it exactly once.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class MaildirStore:
    """An aiosmtpd handler writing each message once per Message-ID into a Maildir."""

    path: Path
    arrivals: int = 0  # every accepted DATA, duplicates included
    duplicates: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.maildir = mailbox.Maildir(self.path, create=True)
        self.seen_dir = self.path / "seen"  # Message-ID hashes, so restarts keep deduplicating
        self.seen_dir.mkdir(exist_ok=True)

    def store(self, data: bytes) -> bool:
        """Keep the message unless its Message-ID was stored before; True when stored."""
        message = email.message_from_bytes(data, policy=email.policy.default)
        message_id = str(message.get("Message-ID", "")).strip()
        with self._lock:
            self.arrivals += 1
            if message_id:
                marker = self.seen_dir / hashlib.sha256(message_id.encode()).hexdigest()
                try:
                    marker.touch(exist_ok=False)
                except FileExistsError:
                    self.duplicates += 1
                    return False
            self.maildir.add(data)
            return True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        stored = self.store(data)
        return "250 OK" if stored else "250 OK (already delivered; kept once)"

    def messages(self) -> list[email.message.EmailMessage]:
        """Every stored message, oldest first."""
        out = []
        for key in sorted(self.maildir.keys(), key=_arrival):
            with self.maildir.get_file(key) as fh:
                data = fh.read()
            out.append(email.message_from_bytes(data, policy=email.policy.default))
        return out


_MAILDIR_KEY = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)")


def _arrival(key: str) -> tuple[int, ...]:
    """Python's Maildir names a message ``SECONDS.MMICROSECONDSPpidQcount.host``, the
    microseconds not zero-padded: sorted as text, ``M99999`` would come after ``M100000``."""
    match = _MAILDIR_KEY.match(key)
    return tuple(int(g) for g in match.groups()) if match else (0, 0, 0)


def serve(handler: Any, host: str = "127.0.0.1", port: int = 0) -> Controller:
    """Start an SMTP server for ``handler`` in a thread (``port`` 0: a free one, see
    ``controller.port``); ``controller.stop()`` ends it."""
    controller = Controller(handler, hostname=host, port=port or _free_port(host))
    controller.start()
    return controller


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
