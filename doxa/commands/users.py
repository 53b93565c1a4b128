"""``doxa users``: staff accounts of the website (contract §3) and their API tokens."""

from __future__ import annotations

import sys

import click
import psycopg

from doxa.app import App
from doxa.errors import BadInput
from schema import audit, users


@click.group("users")
def command() -> None:
    """Staff users of the website (billing, engineer, admin)."""


def _read_password() -> str:
    """One line from standard input; a terminal is asked twice, without echo."""
    if sys.stdin is None:
        raise BadInput("no password: pipe it on standard input")
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise BadInput("no password on standard input (one line expected)")
    return password


@command.command("add")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    type=click.Choice(users.ROLES),
    multiple=True,
    required=True,
    help="billing, engineer or admin; repeat for several roles (the first is the main one).",
)
@click.pass_obj
def add_command(app: App, username: str, roles: tuple[str, ...]) -> None:
    """Create a staff user; the password is read from standard input (one line).

    Example: printf '%s\\n' "$PASSWORD" | doxa users add lan --role billing
    """
    password = _read_password()
    try:
        users.check_new_user(username, password, roles)
    except users.UserError as exc:
        raise BadInput(str(exc)) from exc
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        try:
            user = users.add_user(conn, username, password, roles)
        except users.UserError as exc:
            raise BadInput(str(exc)) from exc
        audit.record(conn, "cli", "user.add", {"username": user.username, "roles": list(roles)})
    click.echo(f"added {user.username} ({', '.join(sorted(user.roles))})")


@command.command("token")
@click.argument("username")
@click.option("--name", default="", help="A label to tell the token apart later.")
@click.pass_obj
def token_command(app: App, username: str, name: str) -> None:
    """Make an API token for a staff user and print it (it cannot be shown again).

    Use it as 'Authorization: Bearer TOKEN' on /api/v1/.
    """
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT id FROM staff_users WHERE username = %s AND active",
            (users.normalise_username(username),),
        ).fetchone()
        if row is None:
            raise BadInput(f"no active user {username!r}")
        token = users.create_token(conn, row[0], name)
        audit.record(conn, "cli", "token.create", {"username": username, "name": name})
    click.echo(token)


@command.command("passwd")
@click.argument("username")
@click.pass_obj
def passwd_command(app: App, username: str) -> None:
    """Give a staff user a new password (read from standard input, one line) and end every
    session they have on the website.

    Example: printf '%s\\n' "$NEW_PASSWORD" | doxa users passwd lan
    """
    password = _read_password()
    try:
        users.check_password(password)
    except users.UserError as exc:
        raise BadInput(str(exc)) from exc
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        try:
            user, ended = users.set_password(conn, username, password)
        except users.UserError as exc:
            raise BadInput(str(exc)) from exc
        audit.record(
            conn, "cli", "user.passwd", {"username": user.username, "sessions_ended": ended}
        )
    click.echo(f"changed the password of {user.username}; ended {ended} session(s)")
