"""``doxa web``: serve the site with gunicorn, a production WSGI server.

DOXA_WEB_WORKERS processes of DOXA_WEB_THREADS threads each (gunicorn's ``gthread`` worker).
More than one process because a page is mostly Python and one process runs Python on one core
at a time: with 8 clients on 2 cores, the customer page's median was 2.14× its raw queries' when
one process of 8 threads (waitress) served it, 1.91× with two processes of 4 (bench/lookup.py).
Each worker builds its own app (after the fork), so each has its own connection pool, one
connection per thread; the rate-limit counters live in the database
(DOXA_RATELIMIT_STORAGE=database) so that every worker counts the same sign-in attempts.
"""

from __future__ import annotations

import socket
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from doxa.app import App
from doxa.errors import BadInput, Failure


def site_config(app: App, *, secret_key: str | None = None) -> dict[str, object]:
    """The Flask config of the site from the settings (``doxa demo`` passes its own secret)."""
    settings = app.settings
    secret = secret_key or settings.secret_key
    if not secret:
        raise BadInput("DOXA_SECRET_KEY is not set; the site needs a secret key (see the README)")
    threads = int(settings.web_threads)
    database_url = app.database_url()
    storage = settings.ratelimit_storage
    return {
        "DATABASE_URL": database_url,
        "READ_DATABASE_URL": settings.database_read_url,
        "SECRET_KEY": secret,
        "TIMEZONE": settings.timezone.key,
        "RATELIMIT_STORAGE_URI": database_url if storage == "database" else storage,
        "DB_POOL_MIN": min(2, threads),
        "DB_POOL_MAX": threads,
        "TRUSTED_PROXIES": settings.web_proxies,
        "OPS_POLL_INTERVAL": settings.poll_interval,
        "OPS_MQTT_INTERVAL": settings.mqtt_interval,
        "SMTP_URL": settings.smtp_url,
        "SMS_URL": settings.sms_url,
        "MAIL_FROM": settings.mail_from,
    }


def serve(config: dict[str, object], host: str, port: int, workers: int, threads: int) -> None:
    """Serve the site until interrupted: Ctrl-C or SIGTERM stop it gracefully (requests in
    flight finish), and ``doxa web`` exits 0."""
    listener = _listen(host, port)
    bound = listener.getsockname()[1]
    click.echo(
        f"serving the site on http://{_shown(host)}:{bound}/"
        f" ({workers} process(es) × {threads} thread(s))",
        err=True,
    )
    _Server(config, listener, workers, threads).run()


class _Server(BaseApplication):  # type: ignore[misc]
    """gunicorn's arbiter over our listening socket, building the site in each worker."""

    def __init__(
        self, config: dict[str, object], listener: socket.socket, workers: int, threads: int
    ) -> None:
        self.site_config = config
        self.listener = listener  # kept open: gunicorn serves its file descriptor
        self.options = {
            "bind": [f"fd://{listener.fileno()}"],
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "keepalive": 5,
            "graceful_timeout": 10,
            "timeout": 60,
            "loglevel": "warning",
            "accesslog": None,
            "proc_name": "doxa-web",
            "worker_exit": _close_pools,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from lookup_web import create_app

        return create_app(self.site_config)


def _close_pools(server: object, worker: Any) -> None:
    """gunicorn's worker_exit hook: close the worker's database connections cleanly."""
    from lookup_web import close

    site = getattr(worker, "wsgi", None)
    if site is not None:
        close(site)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket first, so a busy port is a one-line failure, not a traceback."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port, printed at start).",
)
@click.pass_obj
def command(app: App, host: str, port: int) -> None:
    """Serve the website with gunicorn until Ctrl-C or SIGTERM.

    Needs DOXA_SECRET_KEY. Processes: DOXA_WEB_WORKERS; threads of each: DOXA_WEB_THREADS.
    """
    config = site_config(app)
    serve(config, host, port, int(app.settings.web_workers), int(app.settings.web_threads))
