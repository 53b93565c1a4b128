"""The embedded PostgreSQL asks for a password: a generated one, kept with the cluster under
DOXA_HOME and put in the URLs doxa builds; a cluster made before (trusting every local
connection) is given one on its next start (issue 20, "Also")."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from doxa.services.postgres import EmbeddedPostgres

pytestmark = pytest.mark.db


@pytest.fixture
def cluster(services_dir: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(services_dir / f"auth-{uuid.uuid4().hex[:6]}", durable=False)
    pg.start()
    yield pg
    pg.destroy()


def _refused(url: str) -> str:
    with pytest.raises(psycopg.OperationalError) as failure:
        psycopg.connect(url, connect_timeout=5).close()
    return str(failure.value)


def _assert_needs_the_password(pg: EmbeddedPostgres) -> None:
    assert "password authentication failed" in _refused(
        f"postgresql://doxa:wrong@127.0.0.1:{pg.port}/doxa"
    )
    assert "password" in _refused(f"postgresql://doxa@127.0.0.1:{pg.port}/doxa?password=")
    assert "password" in _refused(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres?password=")
    # Over the Unix socket as well.
    assert "password" in _refused(f"postgresql://doxa@/doxa?host={pg.socket_dir}&port={pg.port}")
    with psycopg.connect(pg.url()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("doxa",)


def test_the_embedded_cluster_needs_its_generated_password(
    cluster: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    password_file = cluster.root / "password"
    password = password_file.read_text().strip()
    assert len(password) >= 32
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert cluster.url() == f"postgresql://doxa:{password}@127.0.0.1:{cluster.port}/doxa"
    _assert_needs_the_password(cluster)
    # Another handle on the same cluster (another command) finds the same password.
    again = EmbeddedPostgres(cluster.root, durable=False)
    again.start()
    assert again.url() == cluster.url()


def test_a_cluster_that_trusted_everyone_gets_a_password(
    cluster: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an earlier doxa made: initdb -A trust, no password file."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    cluster.stop()
    hba = cluster.data_dir / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    (cluster.root / "password").unlink()
    old = EmbeddedPostgres(cluster.root, durable=False)
    old.start()
    assert (cluster.root / "password").exists()
    assert "trust" not in "".join(
        line for line in hba.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    _assert_needs_the_password(old)
