"""CLI exit statuses and messages (contract §3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from doxa.services._proc import free_port
from doxa.services.postgres import EmbeddedPostgres


def test_help_lists_the_commands(doxa) -> None:
    result = doxa("--help")
    assert result.code == 0
    for name in ("db", "meters"):
        assert name in result.out


def test_bad_usage_exits_2(doxa) -> None:
    result = doxa("meters", "import")
    assert result.code == 2
    assert "Missing argument" in result.err


def test_bad_setting_exits_2_with_one_line(doxa) -> None:
    result = doxa("db", "migrate", env={"DOXA_TIMEZONE": "Mars/Olympus"})
    assert result.code == 2
    assert result.err.strip() == "doxa: error: DOXA_TIMEZONE: unknown time zone 'Mars/Olympus'"


def test_unreachable_database_exits_1_with_one_line(doxa) -> None:
    url = f"postgresql://doxa@127.0.0.1:{free_port()}/doxa?connect_timeout=2"
    result = doxa("db", "migrate", env={"DOXA_DATABASE_URL": url})
    assert result.code == 1
    assert result.err.startswith("doxa: database unreachable:")
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.db
def test_migrate_command_against_the_embedded_cluster(tmp_path: Path) -> None:
    """Without DOXA_DATABASE_URL the CLI starts its own cluster under DOXA_HOME."""
    home = tmp_path / "home"
    env = {"DOXA_HOME": str(home), "PATH": "/usr/bin:/bin"}
    doxa_bin = Path(sys.executable).with_name("doxa")
    try:
        first = subprocess.run([doxa_bin, "db", "migrate"], env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        assert "applied" in first.stdout
        second = subprocess.run(
            [doxa_bin, "db", "migrate"], env=env, capture_output=True, text=True
        )
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == "schema is up to date"
    finally:
        stopped = subprocess.run([doxa_bin, "services", "stop"], env=env, capture_output=True)
        assert stopped.returncode == 0, stopped.stderr
        EmbeddedPostgres(home / "pg").destroy()
