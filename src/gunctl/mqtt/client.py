"""The one place that builds aiomqtt clients and subscription options from the settings.

Keeping the MQTT library's types here (and in the modules that move messages)
makes the next aiomqtt upgrade a local change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from gunctl.config import ServeSettings

if TYPE_CHECKING:
    from aiomqtt.types import PayloadType
    from pydantic import SecretStr

Subscription = tuple[str, int | SubscribeOptions]


def payload_bytes(payload: PayloadType) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()


def make_client(
    settings: ServeSettings,
    identifier: str,
    will: aiomqtt.Will | None = None,
    *,
    password: SecretStr | None,
) -> aiomqtt.Client:
    """A client for the broker; ``password`` is read by the caller, off the event loop."""
    mqtt = settings.mqtt
    tls = aiomqtt.TLSParameters(ca_certs=str(mqtt.tls_ca)) if mqtt.tls_ca else None
    protocol = aiomqtt.ProtocolVersion.V5 if mqtt.protocol == "5" else aiomqtt.ProtocolVersion.V311
    return aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.user,
        password=password.get_secret_value() if password is not None else None,
        identifier=identifier,
        protocol=protocol,
        will=will,
        keepalive=mqtt.keepalive_s,
        tls_params=tls,
        timeout=10.0,
    )


def subscription(
    settings: ServeSettings, topic: str, *, commands: bool = False, others_only: bool = False
) -> Subscription:
    """A QoS 1 subscription to ``topic``.

    Under MQTT 5, ``commands`` keeps the retain flag as published (so that a
    retained command is recognised even when it arrives live) and
    ``others_only`` leaves out what this client published itself.
    """
    if settings.mqtt.protocol != "5":
        return (topic, 1)
    return (
        topic,
        SubscribeOptions(qos=1, retainAsPublished=commands, noLocal=others_only),
    )


async def subscribe(client: aiomqtt.Client, subscriptions: list[Subscription]) -> None:
    """Subscribe to all of ``subscriptions`` at once (QoS numbers or, under MQTT 5, options)."""
    await client.subscribe(subscriptions)  # type: ignore[arg-type]  # one kind per protocol
