"""``doxa web``: serve the site with waitress, a production WSGI server (threads, no fork).

Threads come from DOXA_WEB_THREADS; the connection pool is sized to match, so every thread can
hold a connection. The rate limits live in DOXA_RATELIMIT_STORAGE (in-process memory by default,
which is right for the single process this command runs).
"""

from __future__ import annotations

import socket

import click

from doxa.app import App
from doxa.errors import BadInput, Failure


def site_config(app: App, *, secret_key: str | None = None) -> dict[str, object]:
    """The Flask config of the site from the settings (``doxa demo`` passes its own secret)."""
    settings = app.settings
    secret = secret_key or settings.secret_key
    if not secret:
        raise BadInput("DOXA_SECRET_KEY is not set; the site needs a secret key (see the README)")
    threads = int(settings.web_threads)
    return {
        "DATABASE_URL": app.database_url(),
        "SECRET_KEY": secret,
        "TIMEZONE": settings.timezone.key,
        "RATELIMIT_STORAGE_URI": settings.ratelimit_storage,
        "DB_POOL_MIN": min(2, threads),
        "DB_POOL_MAX": threads,
        "OPS_POLL_INTERVAL": settings.poll_interval,
        "OPS_MQTT_INTERVAL": settings.mqtt_interval,
    }


def serve(config: dict[str, object], host: str, port: int, threads: int) -> None:
    """Build the site and serve it until interrupted (Ctrl-C or SIGTERM)."""
    import signal

    from waitress import create_server

    from lookup_web import create_app

    listener = _listen(host, port)
    site = create_app(config)
    server = create_server(site, sockets=[listener], threads=threads, ident="doxa")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    click.echo(f"serving the site on http://{_shown(host)}:{server.effective_port}/", err=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        site.extensions["doxa_pool"].close()


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
    """Serve the website with waitress until Ctrl-C or SIGTERM.

    Needs DOXA_SECRET_KEY. Threads: DOXA_WEB_THREADS.
    """
    config = site_config(app)
    serve(config, host, port, int(app.settings.web_threads))
