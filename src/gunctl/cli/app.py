"""The ``gunctl`` command: a click group whose subcommands load on first use.

Heavy imports (bleak, pydantic models, rich) live in the subcommand modules, so
``gunctl --help`` and ``gunctl --version`` start without them.
"""

from __future__ import annotations

import importlib

import click

from gunctl import __version__
from gunctl.cli.boundary import Bounded

ENV_PREFIX = "GUNCTL"

# name -> ("module:attribute" of a click command, one-line help); imported only when used
_COMMANDS = {
    "run": ("gunctl.cli.run:run", "Run a protocol (e.g. glute) on a gun, with a live display."),
    "specs": ("gunctl.cli.specs:specs", "List, show, validate, draft and check firmware specs."),
    "capture": ("gunctl.cli.capture:capture", "Read Bluetooth captures (btsnoop, btmon)."),
    "history": ("gunctl.cli.history:history", "List past sessions, draw one, export as CSV."),
    "diary": ("gunctl.cli.diary:diary", "Pain scores week by week; record a score or a visit."),
    "profiles": ("gunctl.cli.profiles:profiles", "List, show and validate muscles and protocols."),
    "scan": ("gunctl.cli.ble:scan", "List BLE devices nearby and the spec each one matches."),
    "probe": ("gunctl.cli.ble:probe", "Dump a BLE device's GATT table and notifications."),
    "serve": ("gunctl.cli.serve:serve", "Run the guns as a daemon driven over MQTT."),
}


class LazyGroup(Bounded):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[cmd_name][0].split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        _name_variables(command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing the commands must not import them: that is what keeps --help fast.
        with formatter.section("Commands"):
            formatter.write_dl([(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)])


def _name_variables(command: click.Command) -> None:
    """One naming scheme: every option ``--some-name`` is also ``GUNCTL_SOME_NAME``.

    The same variable whatever the command (``GUNCTL_SIDE``, not click's
    ``GUNCTL_RUN_SIDE``), and every ``--help`` shows it. Options that must not
    come from the environment say so with ``allow_from_autoenv=False``.
    """
    command.context_settings.setdefault("auto_envvar_prefix", ENV_PREFIX)
    for param in command.params:
        if isinstance(param, click.Option) and (param.allow_from_autoenv or param.envvar):
            param.show_envvar = True
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _name_variables(sub)


@click.group(cls=LazyGroup, name="gunctl", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gunctl")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="How much to log on stderr.",
)
@click.option("--log-json", is_flag=True, help="Log JSON lines (for a daemon's journal).")
def cli(log_level: str, log_json: bool) -> None:
    """Drive percussive massage guns over Bluetooth LE, inside a safety envelope.

    gunctl is a device controller, not medical advice. Stop at once on sharp,
    shooting or electric pain, and see a professional for the warning signs
    that `gunctl run` lists before every session.
    """
    from gunctl.logs import configure

    configure(json=log_json, level=log_level)


_name_variables(cli)


def main() -> None:
    # click's exit code for a usage error is 2, the same as gunctl's invalid input.
    cli.main(auto_envvar_prefix=ENV_PREFIX)
