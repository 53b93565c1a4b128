"""The ``doxa`` command line (contract §3).

Exit status: 0 success; 2 bad usage or bad input; 1 a runtime failure. Every failure is one line
on stderr; set ``DOXA_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

import click

from doxa.app import App
from doxa.errors import BadInput, DoxaError, InventoryError
from doxa.settings import load_settings


def _version() -> str:
    try:
        return version("doxa")
    except PackageNotFoundError:
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), prog_name="doxa")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Doxa: remote electricity meter reading (Modbus TCP and MQTT into TimescaleDB).

    Settings come from DOXA_* environment variables (see the README); DOXA_CONFIG may name a TOML
    file with the same keys.
    """
    ctx.obj = App(load_settings())


def _register_commands() -> None:
    from doxa.commands import (
        backfill,
        bills,
        collect,
        customers,
        db,
        demo,
        export,
        meters,
        notify,
        outages,
        readings,
        rollup,
        scheduler,
        services,
        simulate,
        users,
        web,
    )

    for module in (db, meters, services, collect, simulate, bills, export, users, web, demo,
                   notify, backfill):  # fmt: skip
        cli.add_command(module.command)
    cli.add_command(outages.command)
    cli.add_command(customers.command)
    cli.add_command(scheduler.command)
    cli.add_command(readings.command)
    cli.add_command(rollup.rollup_command)
    cli.add_command(rollup.retention_command)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn every failure into an exit status and one line on stderr: every error
    of ours is a :class:`DoxaError` (see ``doxa.errors``), carrying both."""
    import psycopg

    try:
        result = cli.main(args=argv, prog_name="doxa", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("doxa: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except InventoryError as exc:
        for problem in exc.problems:
            click.echo(f"doxa: error: {problem}", err=True)
        return exc.exit_code
    except DoxaError as exc:
        kind = "error" if isinstance(exc, BadInput) else "failed"
        click.echo(f"doxa: {kind}: {exc.message}", err=True)
        return exc.exit_code
    except psycopg.OperationalError as exc:
        click.echo(f"doxa: database unreachable: {_first_line(exc)}", err=True)
        return 1
    except OSError as exc:
        click.echo(f"doxa: failed: {_first_line(exc)}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the outermost boundary: never show a user a traceback
        if os.environ.get("DOXA_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"doxa: internal error: {type(exc).__name__}: {_first_line(exc)}"
            " (set DOXA_DEBUG=1 for details)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def entry_point() -> None:
    sys.exit(main())
