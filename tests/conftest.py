"""Shared fixtures: real TimescaleDB and Mosquitto processes, started once per test session.

- ``pg_cluster``: the session's embedded TimescaleDB (fsync off); ``db_url``: a fresh, migrated
  database per test, cloned from a template in a few tens of milliseconds.
- ``private_pg``: a cluster of the test's own, for tests that stop or crash PostgreSQL.
- ``mqtt_url``: the session's Mosquitto; ``private_broker``: a broker of the test's own.
- ``doxa``: runs the CLI in-process with the test's environment and returns its exit status and
  output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from doxa.services.mosquitto import EmbeddedMosquitto
from doxa.services.postgres import EmbeddedPostgres
from schema.migrate import migrate

TEMPLATE_DB = "doxa_template"


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is private to root, and the cluster runs as 'postgres'.
    path = Path(tempfile.mkdtemp(prefix="doxa-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(services_dir: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(services_dir / "pg", durable=False, database=TEMPLATE_DB)
    pg.start()
    migrate(pg.url(TEMPLATE_DB))
    yield pg
    pg.destroy()


def _drop_database(pg: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


@pytest.fixture
def db_url(pg_cluster: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database with the full schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    pg_cluster.ensure_database(name, template=TEMPLATE_DB)
    yield pg_cluster.url(name)
    _drop_database(pg_cluster, name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def private_pg(services_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A migrated cluster of this test's own, free to stop, crash and restart."""
    pg = EmbeddedPostgres(services_dir / f"pg-{uuid.uuid4().hex[:8]}", durable=False)
    pg.start()
    migrate(pg.url())
    yield pg
    pg.destroy()


@pytest.fixture(scope="session")
def mqtt_broker(services_dir: Path) -> Iterator[EmbeddedMosquitto]:
    broker = EmbeddedMosquitto(services_dir / "mqtt")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_url(mqtt_broker: EmbeddedMosquitto) -> str:
    return mqtt_broker.url


@pytest.fixture
def private_broker(services_dir: Path) -> Iterator[EmbeddedMosquitto]:
    """A broker of this test's own, free to stop and restart."""
    broker = EmbeddedMosquitto(services_dir / f"mqtt-{uuid.uuid4().hex[:8]}")
    broker.start()
    yield broker
    broker.stop()


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def doxa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """Run ``doxa ARGS`` in-process; ``env`` adds variables (DOXA_HOME defaults to tmp_path)."""
    from doxa.cli import main

    for key in list(os.environ):
        if key.startswith("DOXA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DOXA_HOME", str(tmp_path / "home"))

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            capsys.readouterr()
            code = main([str(a) for a in args])
            captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# ---- Web: a live server and a headless Chromium page (shared by the customer and staff tests) --

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """``live_server(app)`` serves a created Flask app with waitress on a free port of 127.0.0.1
    in a thread and returns its base URL (``http://127.0.0.1:PORT``); stopped after the test."""
    import threading

    from waitress import create_server
    from waitress.wasyncore import close_all

    started: list[tuple[object, threading.Thread]] = []

    def serve(app: object, threads: int = 4) -> str:
        server = create_server(
            app, host="127.0.0.1", port=0, threads=threads, asyncore_loop_timeout=0.2
        )
        thread = threading.Thread(target=server.run, name="live-server", daemon=True)
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.effective_port}"

    yield serve
    for server, thread in started:
        # Closing every dispatcher in the server's map (from its own loop) ends server.run().
        server.trigger.pull_trigger(lambda s=server: close_all(s._map))  # type: ignore[attr-defined]
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def _chromium() -> Iterator[object]:
    """One headless Chromium (Debian's, driven by Playwright, nothing downloaded) per module.

    Not per session: while Playwright's sync API is running, the main thread has an event loop,
    so later in-process ``asyncio.run`` calls (the collector and simulator CLIs) would fail."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/bootstrap.sh installs it)")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def external_requests() -> list[str]:
    """URLs the test's browser page tried to load from anywhere but the local server (blocked)."""
    return []


@pytest.fixture
def browser_page(
    _chromium: object, external_requests: list[str], request: pytest.FixtureRequest
) -> Iterator[object]:
    """A fresh Playwright page (Vietnamese browser locale) in its own context. Requests to any
    host but 127.0.0.1/localhost are aborted and listed in ``external_requests``. The page's last
    state is saved as ``test-artifacts/<test name>.png``; tests may save more screenshots there."""
    from urllib.parse import urlsplit

    context = _chromium.new_context(locale="vi-VN", viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    context.set_default_timeout(15_000)

    def guard(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urlsplit(url).hostname in ("127.0.0.1", "localhost") or url.startswith(
            ("data:", "about:")
        ):
            route.continue_()  # type: ignore[attr-defined]
        else:
            external_requests.append(url)
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", guard)
    page = context.new_page()
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
