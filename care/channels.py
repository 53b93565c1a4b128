"""The two delivery channels: email over SMTP (``DOXA_SMTP_URL``) and SMS through an HTTP gateway
(``DOXA_SMS_URL``). I/O.

Each send returns an :class:`Outcome`: ``sent``, ``retry`` (a temporary failure: connection
refused or cut, a timeout, an SMTP 4xx, an HTTP 5xx, and anything that is the session's or the
configuration's fault rather than the message's: sign-in failed, STARTTLS required, sender
refused) or ``permanent`` (the recipient or message is refused for good: an SMTP 5xx on the
recipient or the data, an HTTP 4xx). No exception leaves
a channel for a failed delivery.

SMTP URL forms (user and password optional, URL-quoted):

- ``smtp://user:pass@host:25`` — plain SMTP (port 25 by default);
- ``smtp+starttls://user:pass@host:587`` — STARTTLS before anything else (port 587 by default),
  the server's certificate checked against the system's CAs, or ``?cafile=/path/ca.pem``;
  ``smtp://…?starttls=true`` means the same;
- ``smtps://user:pass@host:465`` — TLS from the first byte (port 465 by default).

``?from=`` overrides the sender (``DOXA_MAIL_FROM``), ``?timeout=`` the seconds per command.

Every message carries a stable ``Message-ID`` made from the notice's dedupe key and channel:
a re-send after a crash (the worker killed after the server accepted the message but before the
outbox row was marked) carries the same Message-ID, which mail stores and clients use to drop
the duplicate. The SMS gateway likewise gets an ``Idempotency-Key`` header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_FROM = "Doxa <no-reply@doxa.invalid>"
DEFAULT_TIMEOUT = 30.0
MAX_ERROR = 500  # characters of an error kept on the outbox row


class ChannelConfigError(ValueError):
    """A channel URL cannot be used; the message names what is wrong."""


@dataclass(frozen=True)
class Outcome:
    status: Literal["sent", "retry", "permanent"]
    error: str = ""

    @classmethod
    def sent(cls) -> Outcome:
        return cls("sent")

    @classmethod
    def retry(cls, error: str) -> Outcome:
        return cls("retry", error[:MAX_ERROR])

    @classmethod
    def permanent(cls, error: str) -> Outcome:
        return cls("permanent", error[:MAX_ERROR])


@dataclass(frozen=True)
class Outgoing:
    """One message to deliver: who to, what, and the key that names it for good."""

    recipient: str
    subject: str
    body: str
    dedupe_key: str
    sent_at: object = None  # datetime for the Date header; now when None


class Channel(Protocol):
    name: str

    def send(self, message: Outgoing) -> Outcome: ...

    def close(self) -> None: ...


def message_id(dedupe_key: str, channel: str, domain: str = "doxa.invalid") -> str:
    """The one Message-ID of a notice on a channel, the same for every try."""
    digest = hashlib.sha256(f"{channel}\x1f{dedupe_key}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


# -- SMTP --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Literal["plain", "starttls", "tls"]
    username: str | None
    password: str | None
    sender: str
    timeout: float
    cafile: str | None

    @property
    def domain(self) -> str:
        address = parseaddr(self.sender)[1]
        return address.rpartition("@")[2] or "doxa.invalid"


def parse_smtp_url(url: str, default_sender: str = DEFAULT_FROM) -> SmtpConfig:
    parts = urlsplit(url)
    schemes = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
    if parts.scheme not in schemes:
        raise ChannelConfigError(
            f"unknown scheme {parts.scheme!r}: use smtp://, smtp+starttls:// or smtps://"
        )
    if not parts.hostname:
        raise ChannelConfigError("no host in the SMTP URL")
    security, default_port = schemes[parts.scheme]
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if query.get("starttls", "").lower() in ("1", "true", "yes"):
        security = "starttls"
    try:
        port = parts.port or default_port
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
    except ValueError as exc:
        raise ChannelConfigError(f"bad port or timeout in the SMTP URL: {exc}") from exc
    sender = query.get("from", default_sender)
    if "@" not in parseaddr(sender)[1] or any(ch in sender for ch in "\r\n"):
        raise ChannelConfigError(f"bad sender address {sender!r}")
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        security=security,  # type: ignore[arg-type]
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        sender=sender,
        timeout=timeout,
        cafile=query.get("cafile"),
    )


class SmtpChannel:
    """Email over one SMTP connection, kept open between messages and reopened after an
    error (a worker sends a batch over one connection)."""

    name = "email"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None
        name, address = parseaddr(config.sender)
        self._from_header = formataddr((name, address), charset="utf-8")

    @classmethod
    def from_url(cls, url: str, default_sender: str = DEFAULT_FROM) -> SmtpChannel:
        return cls(parse_smtp_url(url, default_sender))

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.cafile)

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        smtp: smtplib.SMTP
        if c.security == "tls":
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self._context())
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            smtp.ehlo()
            if c.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if c.username:
                smtp.login(c.username, c.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def build(self, message: Outgoing) -> bytes:
        """The message as sent: UTF-8 text in base64, the subject RFC 2047-encoded.

        Written out directly (a fixed set of headers, one text part) rather than through
        ``EmailMessage``, whose header machinery was most of a send's cost. Header values are
        checked here: a CR or LF never reaches the wire, whatever the outbox holds."""
        for value in (message.recipient, message.subject):
            if "\r" in value or "\n" in value:
                raise ValueError("a header value holds a line break")
        when = message.sent_at
        headers = (
            f"From: {self._from_header}\r\n"
            f"To: {message.recipient}\r\n"
            f"Subject: {_encoded(message.subject)}\r\n"
            f"Message-ID: {message_id(message.dedupe_key, self.name, self.config.domain)}\r\n"
            f"Date: {format_datetime(when) if isinstance(when, datetime) else _now_header()}\r\n"
            "Auto-Submitted: auto-generated\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        )
        body = base64.encodebytes(message.body.encode()).replace(b"\n", b"\r\n")
        return headers.encode("ascii") + body

    def send(self, message: Outgoing) -> Outcome:
        try:
            msg = self.build(message)
        except (ValueError, TypeError) as exc:  # e.g. a header with a line break
            return Outcome.permanent(f"message cannot be built: {exc}")
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            self._smtp.sendmail(parseaddr(self.config.sender)[1], [message.recipient], msg)
            return Outcome.sent()
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._reset()
            return _smtp_outcome(code, text)
        except smtplib.SMTPSenderRefused as exc:
            # Our sender or session is refused (STARTTLS or sign-in required, sender not
            # allowed): the configuration's fault, never the message's. Try again later.
            self.close()
            return Outcome.retry(f"SMTP sender refused: {exc.smtp_code} {_text(exc)}")
        except smtplib.SMTPDataError as exc:
            self._reset()
            return _smtp_outcome(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPAuthenticationError as exc:
            self.close()  # the server's or our configuration's fault, not the message's
            return Outcome.retry(f"SMTP authentication failed: {exc.smtp_code} {_text(exc)}")
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            self.close()
            return Outcome.retry(f"SMTP: {type(exc).__name__}: {exc}")

    def _reset(self) -> None:
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def _encoded(text: str) -> str:
    """A header value: as it is when printable ASCII, else RFC 2047 (UTF-8, base64)."""
    if text.isascii() and text.isprintable():
        return text
    return Header(text, "utf-8").encode(linesep="\r\n")


def _text(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    return error.decode(errors="replace") if isinstance(error, bytes) else str(error)


def _smtp_outcome(code: int, text: bytes | str) -> Outcome:
    detail = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    error = f"SMTP {code} {detail}".strip()
    session_refusal = code in (530, 535)  # "authenticate / STARTTLS first": not the message
    permanent = 500 <= code < 600 and not session_refusal
    return Outcome.permanent(error) if permanent else Outcome.retry(error)


def _now_header() -> str:
    from email.utils import formatdate

    return formatdate(localtime=False, usegmt=True)


# -- SMS ---------------------------------------------------------------------------------------


class SmsChannel:
    """SMS through an HTTP gateway: ``POST {"to": "+84…", "text": "…"}`` as JSON to
    ``DOXA_SMS_URL``. 2xx = sent, 4xx = refused for good, anything else (5xx, a timeout, no
    connection) = try again later."""

    name = "sms"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChannelConfigError("DOXA_SMS_URL must be an http:// or https:// URL")
        self.url = url
        self.timeout = timeout

    def send(self, message: Outgoing) -> Outcome:
        data = json.dumps({"to": message.recipient, "text": message.body}).encode()
        request = urllib.request.Request(
            self.url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": message_id(message.dedupe_key, self.name).strip("<>"),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(4096)
                return Outcome.sent()
        except urllib.error.HTTPError as exc:
            body = exc.read(300).decode(errors="replace").strip()
            error = f"SMS gateway answered {exc.code}: {body}".strip()
            return Outcome.permanent(error) if 400 <= exc.code < 500 else Outcome.retry(error)
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Outcome.retry(f"SMS gateway unreachable: {reason}")

    def close(self) -> None:
        pass
