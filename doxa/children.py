"""Child processes of ``doxa demo``: each in its own session (Ctrl-C reaches only the demo, which
stops them in order), tied to the demo's life (the kernel sends SIGTERM if the demo dies), with
its output in a log file."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from doxa.errors import Failure

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One ``doxa`` subcommand running in the background."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "doxa", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def check(self) -> None:
        """Raise a one-line :class:`Failure` if the child has exited."""
        if not self.alive():
            raise Failure(
                f"{self.name} exited with status {self.proc.returncode}: {self.log_tail(3)} "
                f"(log: {self.log_path})"
            )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if not self.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float, children: Sequence[Child] = ()
) -> None:
    """Poll ``predicate`` until true; fail early with the reason if a child died meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in children:
            child.check()
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
