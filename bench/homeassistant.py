"""A real Home Assistant core, driven through its own REST and websocket API.

Home Assistant runs as a separate process from the virtualenv that
``scripts/bootstrap-ha`` keeps (it needs Python 3.13 and is far too large to
share gunctl's venv). Each user gets a fresh configuration folder: a lean
``configuration.yaml`` (no default integrations that would reach the
internet), a user made through onboarding, and the MQTT integration pointed at
a broker through the same config flow a person clicks through. The MQTT
integration logs at debug level so that what it did with each discovery
message can be read back. The tests (tests/mqtt/test_homeassistant.py) and the
benchmark of a stop pressed in Home Assistant (bench/ha_stop.py) both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

BOOTSTRAP = Path(__file__).resolve().parents[1] / "scripts" / "bootstrap-ha"

CONFIGURATION = """\
homeassistant:
  name: gunctl test home
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
onboarding:
config:
automation: !include automations.yaml
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: debug
"""


class NotInstalled(RuntimeError):
    """Python 3.13 is here, but Home Assistant has not been installed with it yet."""


def find_python() -> Path | None:
    """Home Assistant's interpreter; None where no Python 3.13 could install it."""
    found = subprocess.run([str(BOOTSTRAP), "--path"], capture_output=True, text=True)
    if found.returncode != 0:
        raise NotInstalled(found.stderr.strip())
    return Path(found.stdout.strip()) / "bin" / "python" if found.stdout.strip() else None


@dataclass
class HomeAssistant:
    """One Home Assistant core on 127.0.0.1:``port`` with its configuration in ``directory``."""

    python: Path
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    token: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "home-assistant.log"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        (self.directory / "automations.yaml").write_text("[]\n")
        self.process = subprocess.Popen(
            [str(self.python), "-m", "homeassistant", "-c", str(self.directory), "--skip-pip"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def answering(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"Home Assistant exited:\n{self.log()[-4000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.url}/api/onboarding") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"Home Assistant did not answer in {timeout} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    async def setup(self, broker_host: str, broker_port: int) -> None:
        """Once started: wait for it, onboard and add MQTT on the given broker."""
        try:
            await self.answering()
            await self.onboard()
            await self.configure_mqtt(broker_host, broker_port)
        except BaseException:
            self.stop()
            raise

    async def onboard(self) -> None:
        """Create the owner through onboarding and keep an access token for the API."""
        client_id = f"{self.url}/"
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{self.url}/api/onboarding/users",
                json={
                    "client_id": client_id,
                    "name": "Test",
                    "username": "test",
                    "password": "test-password",
                    "language": "en",
                },
            ) as response:
                response.raise_for_status()
                code = (await response.json())["auth_code"]
            async with session.post(
                f"{self.url}/auth/token",
                data={"grant_type": "authorization_code", "code": code, "client_id": client_id},
            ) as response:
                response.raise_for_status()
                self.token = (await response.json())["access_token"]

    async def rest(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(method, f"{self.url}{path}", json=body) as response,
        ):
            text = await response.text()
            if response.status >= 400:
                raise AssertionError(f"{method} {path}: {response.status} {text}")
            return await response.json() if text and text[0] in "[{" else text

    async def configure_mqtt(self, host: str, port: int) -> None:
        """Add the MQTT integration through its config flow, as a person would in the UI."""
        flow = await self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        while flow.get("type") == "form":
            body = {"broker": host, "port": port} if flow["step_id"] == "broker" else {}
            flow = await self.rest(
                "POST", f"/api/config/config_entries/flow/{flow['flow_id']}", body
            )
        if flow.get("type") != "create_entry":
            raise AssertionError(f"MQTT config flow ended with {flow}")

    async def ws(self, message: dict[str, Any]) -> Any:
        """One websocket command, answered with its result."""
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{self.url}/api/websocket") as socket,
        ):
            await socket.receive_json()  # auth_required
            await socket.send_json({"type": "auth", "access_token": self.token})
            answer = await socket.receive_json()
            if answer.get("type") != "auth_ok":
                raise AssertionError(f"websocket auth: {answer}")
            ident = next(self._ids)
            await socket.send_json({"id": ident, **message})
            while True:
                reply = await socket.receive_json()
                if reply.get("id") == ident:
                    if not reply.get("success"):
                        raise AssertionError(f"{message['type']}: {reply}")
                    return reply["result"]

    async def entities(self, platform: str = "mqtt") -> dict[str, dict[str, Any]]:
        """The entity registry's entries of ``platform``, by unique id."""
        entries = await self.ws({"type": "config/entity_registry/list"})
        return {e["unique_id"]: e for e in entries if e["platform"] == platform}

    async def entity_ids(self, unique_ids: set[str], timeout: float = 20.0) -> dict[str, str]:
        """Wait for every unique id to be registered; map each to its entity id."""
        async with asyncio.timeout(timeout):
            while True:
                registered = await self.entities()
                if unique_ids <= set(registered):
                    return {u: str(registered[u]["entity_id"]) for u in unique_ids}
                await asyncio.sleep(0.1)

    async def devices(self) -> list[dict[str, Any]]:
        return list(await self.ws({"type": "config/device_registry/list"}))

    async def state(self, entity_id: str) -> dict[str, Any]:
        return dict(await self.rest("GET", f"/api/states/{entity_id}"))

    async def call(self, domain: str, service: str, **data: Any) -> None:
        await self.rest("POST", f"/api/services/{domain}/{service}", data)

    async def until_state(
        self, entity_id: str, wanted: str | Callable[[str], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """Poll ``entity_id`` until its state is (or matches) ``wanted``; REST has no push."""
        match = wanted if callable(wanted) else wanted.__eq__
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(AssertionError):
                    state = await self.state(entity_id)
                    if match(state["state"]):
                        return state
                await asyncio.sleep(0.05)
