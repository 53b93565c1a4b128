"""Small process and port helpers shared by the embedded services."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from doxa.errors import ServiceError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_tcp(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts TCP connections on host:port; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise ServiceError(
                f"process exited with status {proc.returncode} before listening on {port}"
            )
        if time.monotonic() > deadline:
            raise ServiceError(
                f"nothing accepted connections on {host}:{port} within {timeout:.0f} s"
            )
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_command(pid: int) -> str:
    """The command line of a running process, or '' when it is gone."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def is_root() -> bool:
    return os.geteuid() == 0


class RunAs:
    """Runs commands as an OS user: PostgreSQL refuses to run as root, so root uses ``postgres``."""

    def __init__(self, user: str | None) -> None:
        self.user = user
        if user is not None:
            try:
                entry = pwd.getpwnam(user)
            except KeyError as exc:
                raise ServiceError(f"OS user {user!r} does not exist (install postgresql)") from exc
            self.uid, self.gid = entry.pw_uid, entry.pw_gid
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()

    def argv(self, args: Sequence[str]) -> list[str]:
        return ["/usr/sbin/runuser", "-u", self.user, "--", *args] if self.user else list(args)

    def run(self, args: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ServiceError(
                f"{Path(args[0]).name} failed: {detail[-1] if detail else proc.returncode}"
            )
        return proc

    def chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.uid, self.gid)

    def can_reach(self, path: Path) -> bool:
        """Whether this user may traverse every directory down to ``path``."""
        if self.user is None:
            return True
        probe = subprocess.run(
            self.argv(["test", "-x", str(path)]), check=False, capture_output=True
        )
        return probe.returncode == 0
