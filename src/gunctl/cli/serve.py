"""``gunctl serve``: run the guns as a daemon, driven and watched over MQTT.

Settings come from ``--config FILE`` (TOML), ``GUNCTL_*`` variables and these
flags, strongest last; see :mod:`gunctl.config`. The process exits 0 after
SIGTERM or SIGINT once every motor is stopped and ``offline`` is published,
and 2 when the configuration is invalid.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from gunctl.cli.output import EXIT_INVALID

_file = click.Path(dir_okay=False, path_type=Path)
# GUNCTL_* variables are read by the settings (one name per setting), not by click:
# every option below has allow_from_autoenv=False.


def _global_logging() -> dict[str, Any]:
    """``gunctl --log-level/--log-json`` when given (flag or variable): they win over the file."""
    from click.core import ParameterSource

    root = click.get_current_context().find_root()
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {
        name: root.params[name]
        for name in ("log_level", "log_json")
        if root.get_parameter_source(name) in given
    }


@click.command()
@click.option(
    "--config", "config_file", type=_file, allow_from_autoenv=False, help="TOML settings file."
)
@click.option("--mqtt-host", allow_from_autoenv=False, help="Broker host [GUNCTL_MQTT_HOST].")
@click.option(
    "--mqtt-port", type=int, allow_from_autoenv=False, help="Broker port [GUNCTL_MQTT_PORT]."
)
@click.option("--mqtt-user", allow_from_autoenv=False, help="Broker user name [GUNCTL_MQTT_USER].")
@click.option(
    "--mqtt-password-file",
    type=_file,
    allow_from_autoenv=False,
    help="File whose first line is the broker password [GUNCTL_MQTT_PASSWORD_FILE].",
)
@click.option(
    "--mqtt-tls-ca",
    type=_file,
    allow_from_autoenv=False,
    help="CA certificate to verify the broker; turns TLS on [GUNCTL_MQTT_TLS_CA].",
)
@click.option(
    "--sim",
    type=int,
    allow_from_autoenv=False,
    help="Number of simulated guns [GUNCTL_DEVICES_SIM].",
)
@click.option(
    "--sim-spec",
    allow_from_autoenv=False,
    help="Firmware spec of the simulated guns [GUNCTL_DEVICES_SIM_SPEC].",
)
@click.option(
    "--device",
    "devices",
    multiple=True,
    allow_from_autoenv=False,
    help="BLE address of a gun; repeat for more [GUNCTL_DEVICES_BLE, JSON list].",
)
@click.option(
    "--proxy",
    "proxies",
    multiple=True,
    metavar="HOST[,KEY]",
    allow_from_autoenv=False,
    help="ESPHome Bluetooth proxy to reach the guns through; repeat for more [GUNCTL_PROXIES].",
)
@click.option(
    "--node-id", allow_from_autoenv=False, help="This instance's id in topics [GUNCTL_NODE_ID]."
)
@click.option(
    "--time-scale",
    type=float,
    allow_from_autoenv=False,
    help="Run simulated guns this many times faster than real time [GUNCTL_TIME_SCALE].",
)
def serve(
    config_file: Path | None,
    mqtt_host: str | None,
    mqtt_port: int | None,
    mqtt_user: str | None,
    mqtt_password_file: Path | None,
    mqtt_tls_ca: Path | None,
    sim: int | None,
    sim_spec: str | None,
    devices: tuple[str, ...],
    proxies: tuple[str, ...],
    node_id: str | None,
    time_scale: float | None,
) -> None:
    """Run the configured guns as a daemon with an MQTT interface and Home Assistant discovery.

    Starting a session over MQTT stays refused until the configuration sets
    red_flags_acknowledged = true, after reading the warning signs that call
    for a doctor instead. gunctl is not medical advice.
    """
    from gunctl.config import load_settings
    from gunctl.errors import ConfigError
    from gunctl.logs import configure

    try:
        settings = load_settings(
            config_file,
            node_id=node_id,
            time_scale=time_scale,
            **_global_logging(),
            mqtt={
                "host": mqtt_host,
                "port": mqtt_port,
                "user": mqtt_user,
                "password_file": mqtt_password_file,
                "tls_ca": mqtt_tls_ca,
            },
            devices={"sim": sim, "sim_spec": sim_spec, "ble": devices},
            proxies=proxies,
        )
    except ConfigError as exc:
        click.echo(f"gunctl serve: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    configure(json=settings.log_json, level=settings.log_level)
    from gunctl.mqtt.service import Service

    asyncio.run(Service(settings).run())
