"""The ``--proxy`` option of ``run``, ``scan`` and ``probe``, and the proxies it opens.

Each ``--proxy HOST[,KEY]`` names an ESPHome Bluetooth proxy and, if its API is
encrypted, its key. Without the flag, ``GUNCTL_PROXIES`` is read: a JSON list of
the same strings or of ``{"address": ..., "key": ...}`` tables, the form
``gunctl serve`` reads from its settings too. A key on the command line shows in
the process list; the variable keeps it out of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import click

from gunctl.links.proxy_config import ENV

if TYPE_CHECKING:
    from gunctl.links.proxy import Proxies
    from gunctl.links.proxy_config import ProxyConfig


def _parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    from gunctl.errors import ConfigError
    from gunctl.links.proxy_config import proxy_configs

    try:
        return proxy_configs(values, where="--proxy")
    except ConfigError as exc:
        raise click.BadParameter(exc.what, param_hint="--proxy") from None


proxy_option = click.option(
    "--proxy",
    "proxies",
    multiple=True,
    metavar="HOST[,KEY]",
    allow_from_autoenv=False,
    callback=_parse,
    help=f"Reach guns through this ESPHome Bluetooth proxy; repeat for more [{ENV}, JSON list].",
)


@asynccontextmanager
async def opened(configs: Sequence[ProxyConfig]) -> AsyncIterator[Proxies | None]:
    """The proxies started for the ``async with``, or None when none is configured."""
    if not configs:
        yield None
        return
    from gunctl.links.proxy import Proxies

    async with Proxies(configs) as proxies:
        yield proxies
