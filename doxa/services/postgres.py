"""An embedded PostgreSQL + TimescaleDB cluster under a directory of ours.

Used by commands when ``DOXA_DATABASE_URL`` is unset, by ``doxa demo`` and by the test fixtures.
PostgreSQL refuses to run as root, so when we are root the cluster runs as the ``postgres`` OS
user and its directories are owned by it. The server is started with ``pg_ctl`` (it detaches into
its own session, so a Ctrl-C in the terminal does not reach it) and left running until ``stop()``.

Every connection needs a password, generated when the cluster is made and kept beside it in
``root/password`` (readable by its owner only); :meth:`EmbeddedPostgres.url` puts it in the URL.
A cluster made by an earlier doxa, which trusted every local connection, is given one on its
next start. The cluster is still for the demo and development only (see the README).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from doxa.services._proc import (
    RunAs,
    ServiceError,
    free_port,
    is_root,
    pid_alive,
    port_is_free,
    process_command,
)

_PG_LIB = Path("/usr/lib/postgresql")
_PG_SHARE = Path("/usr/share/postgresql")
# Where the cluster lives when root runs doxa from a directory the postgres user cannot enter.
_FALLBACK_ROOT = Path("/var/lib/doxa/clusters")
_HBA_MARKER = "# doxa: every connection needs the password"
_HBA = f"""{_HBA_MARKER} (the file 'password' beside the cluster's data)
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    all          all   ::1/128        scram-sha-256
local   replication  all                  scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
host    replication  all   ::1/128        scram-sha-256
"""


def find_pg_bin() -> Path:
    """The bin directory of the newest PostgreSQL that has TimescaleDB installed."""
    versions = sorted(
        (p.name for p in _PG_LIB.glob("*") if (p / "bin" / "pg_ctl").exists()),
        key=lambda v: float(v),
        reverse=True,
    )
    if not versions:
        raise ServiceError(
            "PostgreSQL server is not installed: run `make test` or scripts/bootstrap.sh"
        )
    for version in versions:
        if (_PG_SHARE / version / "extension" / "timescaledb.control").exists():
            return _PG_LIB / version / "bin"
    raise ServiceError(
        f"TimescaleDB is not installed for PostgreSQL {', '.join(versions)}: "
        "run scripts/bootstrap.sh (it builds or installs it)"
    )


@dataclass
class EmbeddedPostgres:
    """A private cluster: ``root/data`` (PGDATA), ``root/run`` (socket), ``root/postgres.log``."""

    root: Path
    port: int | None = None
    database: str = "doxa"
    user: str = "doxa"
    durable: bool = True  # tests turn fsync off: a crashed test cluster is simply thrown away
    preload_timescaledb: bool = True  # off only to test the message for a misconfigured server
    runner: RunAs = field(init=False)
    _password: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()
        self.runner = RunAs("postgres" if is_root() else None)
        if is_root() and not self._reachable_by_postgres(self.root):
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
            self.root = _FALLBACK_ROOT / digest
        self.bin = find_pg_bin()

    def _reachable_by_postgres(self, path: Path) -> bool:
        existing = path
        while not existing.exists():
            existing = existing.parent
        return self.runner.can_reach(existing)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    def password(self) -> str:
        """The cluster's password: read from :attr:`password_file`, made there on first use
        (URL-safe characters, mode 0600)."""
        if self._password is None:
            try:
                text = self.password_file.read_text().strip()
            except FileNotFoundError:
                text = ""
            if not text:
                self.root.mkdir(parents=True, exist_ok=True)
                text = secrets.token_urlsafe(32)
                try:
                    fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:  # another process made it meanwhile
                    return self.password()
                with os.fdopen(fd, "w") as fh:
                    fh.write(text + "\n")
            self._password = text
        return self._password

    def url(self, database: str | None = None) -> str:
        if self.port is None:
            raise ServiceError("the embedded cluster has not been started")
        return (
            f"postgresql://{self.user}:{self.password()}@127.0.0.1:{self.port}"
            f"/{database or self.database}"
        )

    # -- lifecycle --------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The postmaster's pid when this cluster is up; clears a stale lock file otherwise."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            return None
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else 0
        if pid and pid_alive(pid) and "postgres" in process_command(pid):
            if len(lines) > 3 and lines[3].strip().isdigit():
                self.port = int(lines[3])
            return pid
        # A crashed run left its lock behind (possibly with a pid now used by something else).
        pid_file.unlink(missing_ok=True)
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
        return None

    def _initialise(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.runner.chown(self.root)
        self.socket_dir.mkdir(exist_ok=True)
        self.runner.chown(self.socket_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists():  # a half-made cluster from an interrupted initdb
            shutil.rmtree(self.data_dir)
        # initdb (run as the postgres user) reads the password from a file of its own.
        pwfile = self.root / f".initdb-password-{secrets.token_hex(4)}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.password() + "\n")
        self.runner.chown(pwfile)
        try:
            self.runner.run(
                [
                    str(self.bin / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", self.user,
                    "-A", "scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E", "UTF8",
                    "--locale=C",
                    *([] if self.durable else ["--no-sync"]),
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write("\ninclude_if_exists = 'doxa.conf'\n")
        self._write_hba()

    @property
    def _hba_file(self) -> Path:
        return self.data_dir / "pg_hba.conf"

    def _write_hba(self) -> None:
        self._hba_file.write_text(_HBA)
        self.runner.chown(self._hba_file)

    def _hba_is_ours(self) -> bool:
        try:
            return self._hba_file.read_text().startswith(_HBA_MARKER)
        except FileNotFoundError:
            return False

    def _require_password(self) -> None:
        """A cluster from before passwords trusts local connections: give its user the password,
        then ask for it from every connection (a reload; connections already open stay)."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psycopg.sql.Identifier(self.user), psycopg.sql.Literal(self.password())
                )
            )
            self._write_hba()
            conn.execute("SELECT pg_reload_conf()")

    def _choose_port(self) -> int:
        if self.port is not None:
            return self.port
        saved = self.root / "port"
        if saved.exists():
            text = saved.read_text().strip()
            if text.isdigit() and port_is_free(int(text)):
                return int(text)
        return free_port()

    def _write_conf(self, port: int) -> None:
        lines = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "shared_preload_libraries": "'timescaledb'" if self.preload_timescaledb else "''",
            "timescaledb.telemetry_level": "off",
            # The Apache build has no background jobs we use; without workers, cloning a
            # template database never races with them.
            "timescaledb.max_background_workers": "0",
            "max_connections": "200",
            "max_locks_per_transaction": "256",
            "shared_buffers": "'256MB'" if self.durable else "'128MB'",
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
        }
        text = "".join(f"{k} = {v}\n" for k, v in lines.items())
        path = self.data_dir / "doxa.conf"
        path.write_text(text)
        self.runner.chown(path)

    def start(self, timeout: float = 60) -> None:
        """Start the cluster (initialising it first if needed) and wait until it answers."""
        if self.running_pid() is None:
            self._initialise()
            port = self._choose_port()
            self._write_conf(port)
            self.port = port
            self.runner.run(
                [
                    str(self.bin / "pg_ctl"),
                    "-D", str(self.data_dir),
                    "-l", str(self.log_file),
                    "-w", "-t", str(int(timeout)),
                    "start",
                ],
                timeout=timeout + 10,
            )  # fmt: skip
            (self.root / "port").write_text(f"{port}\n")
        self._wait_ready(timeout)
        if not self._hba_is_ours():
            self._require_password()
        self.ensure_database(self.database)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if "password authentication failed" in str(exc):
                    raise ServiceError(
                        f"the embedded PostgreSQL under {self.root} refuses the password in"
                        f" {self.password_file}; delete {self.root} to start a fresh cluster"
                    ) from exc
                if time.monotonic() > deadline:
                    raise ServiceError(f"embedded PostgreSQL does not answer: {exc}") from exc
                time.sleep(0.1)

    def ensure_database(self, name: str, template: str | None = None) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                ident = psycopg.sql.Identifier(name)
                if template:
                    stmt = psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        ident, psycopg.sql.Identifier(template)
                    )
                else:
                    stmt = psycopg.sql.SQL("CREATE DATABASE {}").format(ident)
                # Another process may have created it meanwhile.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(stmt)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the cluster; ``mode='immediate'`` simulates a crash (tests)."""
        if self.running_pid() is None:
            return
        self.runner.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t",
             str(int(timeout)), "stop"],
            timeout=timeout + 10,
        )  # fmt: skip

    def destroy(self) -> None:
        """Stop and delete everything under root (test clusters)."""
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:  # the runner and paths are noise in test output
        return f"EmbeddedPostgres(root={str(self.root)!r}, port={self.port})"
