"""The configuration of ``gunctl serve``: a TOML file, ``GUNCTL_*`` variables, and flags.

Sources, strongest first: command-line flags, environment variables, the TOML
file, the defaults below. Every setting has a variable: top-level ones are
``GUNCTL_<NAME>`` (``GUNCTL_NODE_ID``), those in a table are
``GUNCTL_<TABLE>_<NAME>`` (``GUNCTL_MQTT_PASSWORD_FILE``, ``GUNCTL_DEVICES_SIM``);
lists are JSON (``GUNCTL_DEVICES_BLE='["C4:5A:11:20:3B:7E"]'``,
``GUNCTL_PROXIES='["hall-proxy.local", "bedroom-proxy.local,KEY"]'``).

Example file::

    node_id = "living-room"
    red_flags_acknowledged = true   # after reading the warning signs (gunctl.redflags)
    intensity_cap = 0.6             # no session from MQTT goes above this
    heads = ["ball", "bullet"]      # the heads you own; unset: every head
    telemetry_hz = 5

    [mqtt]
    host = "broker.lan"
    port = 8883
    user = "gunctl"
    password_file = "/etc/gunctl/mqtt-password"
    tls_ca = "/etc/ssl/certs/home-ca.pem"

    [devices]
    ble = ["C4:5A:11:20:3B:7E"]

    [[proxies]]                     # ESPHome Bluetooth proxies the guns are reached through
    address = "hall-proxy.local"
    key = "base64 API encryption key from the proxy's YAML"   # leave out if it has none

    [diary]                         # the symptom diary's thresholds (docs/diary.md)
    weeks = 4

The ``[diary]`` table is the one part ``gunctl run`` and ``gunctl diary`` read
too (their ``--config``, ``load_diary``): the diary rules refuse a session the
same way whichever command starts it.

Everything is checked before anything connects; a bad value is reported with
the name of its setting, and with its line when it is in the file
(``FILE:LINE: SETTING: message``). The password is read from a file, so that it is
never on a command line or in the environment, and it is never logged.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gunctl.errors import ConfigError
from gunctl.heads import Head
from gunctl.links.proxy_config import ProxyConfig
from gunctl.store.diary import DiarySettings

S = TypeVar("S", bound="_Settings")
BRIDGE = "bridge"  # the reserved second level of the MQTT bridge topics: not a device id
SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")  # one topic level; what Home Assistant accepts as an id
BASE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


ID_MAX = 128  # characters in a node or device id: a topic level may be 65,535 bytes


def valid_id(value: str) -> bool:
    """A node or device id that is one MQTT topic level and a valid Home Assistant id,
    and not so long that remembering other daemons' ids could hold much memory."""
    return len(value) <= ID_MAX and bool(SEGMENT.match(value)) and value != BRIDGE


def default_node_id() -> str:
    """The host name, made fit for a topic level."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-")
    return name if name and name != "bridge" else "gunctl"


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    user: str | None = None
    password_file: Path | None = None  # its first line is the password
    tls_ca: Path | None = None  # CA certificate(s) to verify the broker; turns TLS on
    base_topic: str = "gunctl"
    discovery_prefix: str = "homeassistant"
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5, le=3600)
    # Listen to <base>/+/set to answer commands for devices nobody serves. Off: subscribe
    # to this node's own devices' topics only (for a broker ACL that allows no more).
    answer_unknown_devices: bool = True

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not BASE.match(value):
            raise ValueError(
                "must be topic levels of letters, digits, '-' and '_' separated by '/', "
                "with no wildcards"
            )
        return value

    @field_validator("password_file", "tls_ca")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            value.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{value} is not a text file (UTF-8)") from None
        except OSError as exc:
            raise ValueError(f"{value} is not a readable file ({exc.strerror})") from None
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttSettings:
        if self.password_file is not None and self.user is None:
            raise ValueError("password_file is set but user is not")
        return self

    def password(self) -> SecretStr | None:
        """The password from ``password_file``; read on demand, kept out of reprs and logs."""
        if self.password_file is None:
            return None
        lines = self.password_file.read_text(encoding="utf-8").splitlines()
        return SecretStr(lines[0] if lines else "")


class DevicesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sim: int = Field(0, ge=0, le=64)  # how many simulated guns to run
    sim_spec: str = "gunctl-open"  # the firmware spec the simulated guns speak
    ble: list[str] = []  # BLE addresses (or advertised names) of real guns

    @field_validator("sim_spec")
    @classmethod
    def _known_spec(cls, value: str) -> str:
        from gunctl.specs.loader import load_specs

        known = sorted(load_specs())
        if value not in known:
            raise ValueError(f"unknown firmware spec {value!r}; known: {', '.join(known)}")
        return value

    @field_validator("ble")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any(not a.strip() for a in value):
            raise ValueError("an empty address or name; give a gun's address or advertised name")
        seen = [ble_device_id(a) for a in value]
        if len(set(seen)) != len(seen):
            raise ValueError("the same device is listed twice")
        return value


def ble_device_id(address_or_name: str) -> str:
    """The MQTT device id of a BLE gun: ``ble-`` and its address (or name) as a topic level."""
    slug = re.sub(r"[^a-z0-9]+", "", address_or_name.lower())
    return f"ble-{slug or 'unnamed'}"


def sim_device_id(node_id: str, n: int) -> str:
    """The MQTT device id of simulated gun ``n`` (from 1) on node ``node_id``."""
    return f"sim-{node_id}-{n}"


class _Settings(BaseSettings):
    """Settings read from flags, ``GUNCTL_*`` variables, then a TOML file, in that order."""

    model_config = SettingsConfigDict(
        env_prefix="GUNCTL_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        validate_default=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class ServeSettings(_Settings):
    node_id: str = Field(default_factory=default_node_id)
    mqtt: MqttSettings = MqttSettings()
    devices: DevicesSettings = DevicesSettings()
    proxies: list[ProxyConfig] = []  # with any, BLE guns are reached through them
    telemetry_hz: float = Field(5.0, ge=0.1, le=25.0)
    state_interval_s: float = Field(2.0, ge=0.1, le=60.0)  # state while a session runs
    intensity_cap: float = Field(1.0, gt=0.0, le=1.0)  # the most any MQTT start may ask for
    heads: list[Head] | None = None  # the heads owned; None: a protocol may use any head
    red_flags_acknowledged: bool = False
    # how long a person's "none of the warning signs apply" allows one start
    red_flags_confirmation_s: float = Field(600.0, ge=30.0, le=3600.0)
    time_scale: float = Field(1.0, ge=0.01, le=1000.0)  # simulated devices only
    # what Home Assistant calls each gun, by device id; else its advertised name, else its id
    names: dict[str, Annotated[str, Field(min_length=1, max_length=64)]] = {}
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    diary: DiarySettings = DiarySettings()  # GUNCTL_DIARY_<NAME>, as before the table

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not valid_id(value):
            raise ValueError(
                f"{value[:ID_MAX]!r} must be one topic level of at most {ID_MAX} letters, "
                "digits, '-' and '_' (and not 'bridge')"
            )
        return value

    @model_validator(mode="after")
    def _devices(self) -> ServeSettings:
        if self.devices.sim == 0 and not self.devices.ble:
            raise ValueError(
                "devices: none configured; set devices.sim (simulated guns) "
                "or devices.ble (addresses)"
            )
        if self.devices.ble and self.time_scale != 1.0:
            raise ValueError("time_scale: only for simulated devices; a real gun runs in real time")
        served = self.device_ids()
        for device_id in served:
            if not valid_id(device_id):
                raise ValueError(
                    f"devices: id {device_id[:ID_MAX]!r} is not one topic level of at most "
                    f"{ID_MAX} letters, digits, '-' and '_'"
                )
        unknown = sorted(set(self.names) - set(served))
        if unknown:
            raise ValueError(
                f"names: {', '.join(map(repr, unknown))} is not a gun served here "
                f"(the ids are: {', '.join(served)})"
            )
        return self

    def device_ids(self) -> list[str]:
        sims = [sim_device_id(self.node_id, n) for n in range(1, self.devices.sim + 1)]
        return sims + [ble_device_id(a) for a in self.devices.ble]


class DiaryConfig(_Settings):
    """Only the ``[diary]`` table of a ``gunctl serve`` file: what the other commands read."""

    model_config = SettingsConfigDict(extra="ignore")  # the file's other tables are serve's

    diary: DiarySettings = DiarySettings()


def load_settings(config_file: Path | None = None, **overrides: Any) -> ServeSettings:
    """Read the settings; raise ConfigError naming every bad setting.

    ``overrides`` are the command-line flags (None means "not given"), with the
    tables as nested dicts: ``load_settings(path, mqtt={"host": "broker"})``.
    """
    return _load(ServeSettings, config_file, _drop_none(overrides))


def load_diary(config_file: Path | None = None) -> DiarySettings:
    """The diary rules' thresholds: ``GUNCTL_DIARY_*``, then the file's ``[diary]`` table.

    The same sources and checks as ``gunctl serve``'s, so every command refuses
    a session on the same thresholds. Raises ConfigError naming a bad one.
    """
    return _load(DiaryConfig, config_file, {}).diary


def _load(kind: type[S], config_file: Path | None, given: dict[str, Any]) -> S:
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file}: not a readable file")
    settings_cls = kind
    if config_file is not None:
        config = SettingsConfigDict(**{**kind.model_config, "toml_file": config_file})
        settings_cls = type(f"{kind.__name__}FromFile", (kind,), {"model_config": config})
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from None
    except ValueError as exc:  # a TOML syntax error, or a GUNCTL_* variable that is not JSON
        where = f"config file {config_file}" if config_file else "the GUNCTL_* variables"
        raise ConfigError(
            f"invalid configuration in {where}: {exc}",
            "a table's variable is JSON, e.g. GUNCTL_DEVICES_BLE='[\"C4:5A:11:20:3B:7E\"]'",
        ) from None


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if value:
                kept[key] = value
        elif value is not None and value != ():
            kept[key] = list(value) if isinstance(value, tuple) else value
    return kept


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        field = ".".join(loc)
        variable = "_".join(("GUNCTL", *loc)).upper()
        line = _line(config_file, loc) if config_file is not None else None
        if variable in os.environ:  # stronger than the file: the value came from there
            field = f"{field} ({variable})"
        elif line is not None:
            field = f"{config_file}:{line}: {field}"
        lines.append(f"{field}: {message}" if loc else message)
    where = f" in {config_file} or the environment" if config_file else ""
    return f"invalid configuration{where}:\n  " + "\n  ".join(lines)


_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
_ARRAY = re.compile(r"^\s*\[\[")


def _line(config_file: Path, loc: tuple[str, ...]) -> int | None:
    """The line of the file that sets ``loc`` (``("diary", "weeks")``), if the file sets it.

    TOML readers keep no line numbers; settings are one ``key = value`` per line
    under a ``[table]`` header, which is what this finds. None when the value
    came from a variable, a default, or a form it does not follow (a list of tables).
    """
    if not loc or len(loc) > 2:
        return None
    *table, key = loc
    wanted = table[0] if table else None
    key_at = re.compile(rf"^\s*{re.escape(key)}\s*=")
    current: str | None = None
    try:
        text = config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for number, row in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(row)
        if header or _ARRAY.match(row):
            current = header.group(1) if header else ""
            if wanted is None and current == key:  # the error is about a whole table
                return number
            continue
        if current == wanted and key_at.match(row):
            return number
    return None
