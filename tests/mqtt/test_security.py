"""A locked-down broker: TLS, user names and passwords, and the example ACL in docs/."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest
from mqtthost import Broker, free_port, password_file, running

from gunctl.config import ServeSettings

pytestmark = pytest.mark.mqtt

ACL = Path(__file__).parents[2] / "docs" / "mosquitto.acl"
Settings = Callable[..., ServeSettings]


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a certificate it signed for 127.0.0.1."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "1",
        "-subj",
        "/CN=gunctl test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "1",
        "-extfile",
        str(ext),
    )
    return ca, cert, key  # fmt: skip


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path]]:
    """A broker that wants TLS, a user name and a password, and applies docs/mosquitto.acl."""
    directory = tmp_path_factory.mktemp("secure")
    ca, cert, key = _certificates(directory)
    passwords = password_file(directory, ("gunctl", "controller"))
    server = Broker(
        directory,
        free_port(),
        anonymous=False,
        extra=(
            f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
            f"password_file {passwords}\nacl_file {ACL}\n"
        ),
    )
    server.start()
    try:
        yield server, ca
    finally:
        server.kill()


def _client(server: Broker, ca: Path, user: str, password: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        server.host,
        server.port,
        username=user,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_params=aiomqtt.TLSParameters(ca_certs=str(ca)),
    )


async def test_tls_password_and_the_example_acl(
    secure: tuple[Broker, Path], make_settings: Settings, tmp_path: Path
) -> None:
    server, ca = secure
    password_file = tmp_path / "password"
    password_file.write_text("gunctl-pw\n")
    settings = make_settings(
        mqtt={
            "host": server.host,
            "port": server.port,
            "user": "gunctl",
            "password_file": password_file,
            "tls_ca": ca,
        }
    )
    async with running(settings) as service:
        topics = service.bridge.topics
        (device_id,) = service.daemon.slots
        async with _client(server, ca, "controller", "controller-pw") as client:
            await client.subscribe(f"{topics.base}/#", qos=1)
            await client.publish(
                topics.set(device_id),
                json.dumps({"action": "start", "protocol": "tiny", "id": 1}),
                qos=1,
            )
            async for message in client.messages:
                if message.topic.value == topics.result(device_id):
                    break
            assert json.loads(bytes(message.payload))["ok"]
            # the ACL keeps a controller from forging state: the broker drops the message
            await client.publish(topics.state(device_id), b'{"running": false}', qos=1, retain=True)
            await client.publish(
                topics.set(device_id), json.dumps({"action": "stop", "id": 2}), qos=1
            )
            forged = False
            async for message in client.messages:
                if message.topic.value == topics.state(device_id) and b'"device"' not in bytes(
                    message.payload
                ):
                    forged = True
                if message.topic.value == topics.result(device_id):
                    break
            assert not forged

    # no password, a wrong password, or no TLS: no way in
    for user, password in ((None, None), ("controller", "guess")):
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                server.host,
                server.port,
                username=user,
                password=password,
                tls_params=aiomqtt.TLSParameters(ca_certs=str(ca)),
            ):
                pass  # fmt: skip
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            server.host, server.port, username="controller", password="controller-pw", timeout=2
        ):
            pass
