"""Where an ESPHome Bluetooth proxy is and how to talk to it: one setting, kept light.

The settings of every command read it, so it imports nothing of the proxy
machinery (``gunctl.links.proxy``), which loads only when a proxy is used.
A proxy is described one way everywhere: ``"HOST"`` or ``"HOST,KEY"``, given to
``--proxy``, to ``gunctl.connect(proxy=...)``, or in a ``GUNCTL_PROXIES`` list
(which also takes ``{"address": ..., "key": ...}`` tables, as ``[[proxies]]``).
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Sequence
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from gunctl.errors import ConfigError

ENV = "GUNCTL_PROXIES"


class ProxyConfig(BaseModel):
    """One ESPHome Bluetooth proxy: where it is, and its API encryption key if it has one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(min_length=1)  # host name or IP; ESPHome's API port is 6053
    key: SecretStr | None = None  # api: encryption: key: from the proxy's YAML (base64)

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = binascii.a2b_base64(value.get_secret_value(), strict_mode=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    "must be the proxy's API encryption key: 32 bytes in base64, "
                    "as in its YAML (api: encryption: key:)"
                )
        return value

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        """``"HOST"`` or ``"HOST,KEY"`` (a flag, or an entry of a list) for the table form."""
        if isinstance(value, str):
            address, _, key = value.partition(",")
            return {"address": address.strip(), "key": key.strip() or None}
        return value


def proxy_configs(given: Sequence[str], *, where: str) -> list[ProxyConfig]:
    """The proxies ``given`` (each ``HOST[,KEY]``), else those of ``GUNCTL_PROXIES``, else none.

    Raises ConfigError naming the setting (``where``, or the variable) and each
    bad entry, before anything connects.
    """
    adapter = TypeAdapter(list[ProxyConfig])
    try:
        if given:
            return adapter.validate_python(list(given))
        text = os.environ.get(ENV, "").strip()
        return adapter.validate_json(text) if text else []
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(
            f"{where if given else ENV}: {problems}",
            "each proxy is HOST or HOST,KEY (KEY: the base64 key of its YAML, api: encryption:)",
        ) from None
