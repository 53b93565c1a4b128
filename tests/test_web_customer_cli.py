"""``doxa web`` serves the site with waitress: a real process on a free port, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from doxa.services._proc import free_port, wait_for_tcp

pytestmark = pytest.mark.db

DOXA = str(Path(sys.executable).with_name("doxa"))


@contextmanager
def doxa_web(db_url: str, home: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    environ.update(DOXA_DATABASE_URL=db_url, DOXA_HOME=str(home), DOXA_SECRET_KEY="s3cret", **env)
    proc = subprocess.Popen(
        [DOXA, "web", "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_tcp("127.0.0.1", port, timeout=20, proc=proc)
        # The socket listens before the app is built: the first answer means it is all up.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=20) as response:
            assert response.status == 200
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def test_doxa_web_serves_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    with doxa_web(db_url, tmp_path, DOXA_WEB_THREADS="2") as (proc, port):
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.status == 200 and response.read() == b'{"status":"ok"}\n'
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            page = response.read().decode()
            assert response.status == 200 and '<html lang="vi">' in page
            assert response.headers["Server"] == "doxa"  # waitress, named
        with urllib.request.urlopen(f"{base}/static/style.css", timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        assert f"serving the site on http://127.0.0.1:{port}/" in proc.stderr.read().decode()


def test_worker_threads_come_from_doxa_web_threads(db_url: str, tmp_path: Path) -> None:
    """The process running 6 waitress workers has 4 threads more than the one running 2."""
    counts = {}
    for threads in (2, 6):
        with doxa_web(db_url, tmp_path, DOXA_WEB_THREADS=str(threads)) as (proc, _port):
            counts[threads] = threads_of(proc.pid)
    assert counts[6] - counts[2] == 4


def test_doxa_web_needs_a_secret_key(doxa: Callable[..., object], db_url: str) -> None:
    result = doxa("web", "--port", "0", env={"DOXA_DATABASE_URL": db_url})
    assert result.code == 2  # type: ignore[attr-defined]
    assert "DOXA_SECRET_KEY" in result.err and "Traceback" not in result.err  # type: ignore[attr-defined]


def test_doxa_web_reports_a_busy_port(doxa: Callable[..., object], db_url: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = doxa(
            "web",
            "--port",
            str(port),
            env={"DOXA_DATABASE_URL": db_url, "DOXA_SECRET_KEY": "x"},
        )
    assert result.code == 1  # type: ignore[attr-defined]
    assert f"cannot listen on 127.0.0.1:{port}" in result.err  # type: ignore[attr-defined]
