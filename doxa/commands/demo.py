"""``doxa demo``: everything at once on the embedded defaults (contract §9)."""

from __future__ import annotations

import click

from doxa.app import App


@click.command("demo")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port of the website (default: 8000 when free, else any free port; 0: any free port).",
)
@click.option("--fresh", is_flag=True, help="Forget the previous demo's data and start anew.")
@click.pass_obj
def command(app: App, port: int | None, fresh: bool) -> None:
    """Run the whole system: embedded TimescaleDB and Mosquitto, simulated Modbus and MQTT
    meters, a collector and the website, with back-filled history and bills. Ctrl-C stops it.

    Data lives under DOXA_HOME and is reused by the next run unless --fresh is given. The demo
    always uses its embedded database and broker (DOXA_DATABASE_URL and DOXA_MQTT_URL are
    ignored).
    """
    from doxa.demo import Demo, run_demo

    demo = Demo(app.home, app.settings.timezone, web_port=port, fresh=fresh)
    run_demo(demo)
