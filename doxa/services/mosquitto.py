"""An embedded Mosquitto broker with a configuration that never drops a persistent client's
queued QoS 1 messages.

Mosquitto's defaults drop QoS 1 messages beyond ``max_queued_messages`` (1000) for an offline
client: a collector that is down for a few minutes would lose readings. Here the count limit is
removed and memory is bounded instead by ``max_queued_bytes`` per client, generous enough for days
of a large fleet. The broker runs as a child process in its own session, so Ctrl-C reaches only
the process that owns it, which stops it after the collector has flushed.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from doxa.services._proc import (
    ServiceError,
    free_port,
    pid_alive,
    port_is_free,
    process_command,
    wait_for_tcp,
)
from protocols.payloads import MAX_PAYLOAD_BYTES


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceError("mosquitto is not installed: run scripts/bootstrap.sh")


@dataclass
class EmbeddedMosquitto:
    """A broker whose config, persistence file and log live under ``root``."""

    root: Path
    port: int | None = None
    host: str = "127.0.0.1"
    # Per offline client; 0 would mean unlimited. 2 GiB holds days of a 10,000-meter fleet.
    max_queued_bytes: int = 2 * 1024**3
    # A packet larger than this closes its client's connection (Mosquitto's default is 256 MiB,
    # all held in memory). Twice the payloads the collector accepts: one between the two still
    # reaches the collector, which records its rejection with the reason.
    max_packet_size: int = 2 * MAX_PAYLOAD_BYTES
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServiceError("the embedded broker has not been started")
        return f"mqtt://{self.host}:{self.port}"

    @property
    def conf_file(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def pid_file(self) -> Path:
        return self.root / "mosquitto.pid"

    def _config(self, port: int) -> str:
        return "\n".join(
            [
                f"listener {port} {self.host}",
                "allow_anonymous true",
                # Keep the running user (mosquitto would otherwise switch from root to 'mosquitto').
                f"user {getpass.getuser()}",
                f"pid_file {self.pid_file}",
                "persistence true",
                f"persistence_location {self.root}/",
                "autosave_interval 30",
                # The no-loss promise: no count limit on an offline client's queue...
                "max_queued_messages 0",
                f"max_queued_bytes {self.max_queued_bytes}",
                # ...and enough messages in flight that a batching collector is not throttled.
                "max_inflight_messages 2000",
                f"max_packet_size {self.max_packet_size}",
                "persistent_client_expiration 14d",
                f"log_dest file {self.root}/mosquitto.log",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "connection_messages false",
                "",
            ]
        )

    def _clear_stale(self) -> None:
        """Stop a broker orphaned by a crashed run of ours; forget a dead one's pid file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if pid_alive(pid) and str(self.conf_file) in process_command(pid):
            os.kill(pid, signal.SIGTERM)
        self.pid_file.unlink(missing_ok=True)

    def start(self, timeout: float = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._clear_stale()
        if self.port is None:
            saved = self.root / "port"
            text = saved.read_text().strip() if saved.exists() else ""
            self.port = int(text) if text.isdigit() and port_is_free(int(text)) else free_port()
        self.conf_file.write_text(self._config(self.port))
        log = open(self.root / "mosquitto.stderr", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_tcp(self.host, self.port, timeout, self.proc)
        except ServiceError as exc:
            detail = (self.root / "mosquitto.log").read_text(errors="replace").strip()[-300:]
            raise ServiceError(f"mosquitto did not start: {exc}; {detail}") from exc
        (self.root / "port").write_text(f"{self.port}\n")

    def stop(self, timeout: float = 10) -> None:
        """Stop gracefully (the broker saves its persistence file on SIGTERM)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker (tests of broker loss)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
