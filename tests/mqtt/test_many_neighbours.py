"""A broker that keeps more retained availabilities than a daemon remembers.

The daemon keeps at most ``DEVICES_MAX`` other device ids, forgetting first
those whose availability is not ``online``; forgetting deletes nothing on the
broker and starts nothing, and is counted in the diagnostics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiomqtt
import pytest
from mqtthost import Broker, running, watching

from gunctl.config import ServeSettings
from gunctl.mqtt import neighbours
from gunctl.mqtt.neighbours import DEVICES_MAX, Neighbours
from gunctl.mqtt.topics import OFFLINE, ONLINE, Topics

pytestmark = pytest.mark.mqtt

EXTRA = 100  # retained availabilities past the bound
ONLINE_IDS = 50  # of them online, and published first: the least recently heard


async def retained_availabilities(broker: Broker, topics: Topics) -> dict[str, bytes]:
    """Every retained availability on the broker, by topic."""
    found: dict[str, bytes] = {}
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topics.availability("+"), qos=1)
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(1.0):
                    message = await anext(aiter(client.messages))
                if message.retain:
                    found[message.topic.value] = bytes(message.payload)  # type: ignore[arg-type]
    return found


async def test_retained_availabilities_past_the_bound_are_forgotten_offline_first(
    broker: Broker, make_settings: Callable[..., ServeSettings]
) -> None:
    settings = make_settings()
    topics = Topics(settings.node_id)
    ids = [f"far-{n:05d}" for n in range(DEVICES_MAX + EXTRA)]
    published = {
        topics.availability(d): (ONLINE if n < ONLINE_IDS else OFFLINE).encode()
        for n, d in enumerate(ids)
    }
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic, payload in published.items():
            await client.publish(topic, payload, qos=0, retain=True)
        await client.publish(topics.availability("far-done"), b"", qos=1)  # all of it is in
    async with running(settings) as service:
        known = service.bridge.neighbours
        async with asyncio.timeout(20):
            while known.forgotten < EXTRA + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert service.bridge.diagnostics()["neighbours"] == {
            "devices": DEVICES_MAX,
            "devices_max": DEVICES_MAX,
            "online": ONLINE_IDS + 1,  # and the daemon's own gun
            "forgotten": EXTRA + 1,
            "forgot_online": False,
            "bridges": 1,
        }
        assert all(known.knows(d) for d in ids[:ONLINE_IDS])  # no online one was forgotten
        forgotten = next(d for d in ids if not known.knows(d))
        async with watching(broker, topics, topics.result(forgotten)) as watcher:
            result = await watcher.command(forgotten, {"action": "start", "protocol": "long"})
        assert not result["ok"]
        assert result["reason"] == "unknown_device"
    on_broker = await retained_availabilities(broker, topics)
    assert {t: p for t, p in on_broker.items() if t in published} == published  # none deleted


def test_when_every_kept_id_is_online_the_oldest_goes_and_no_gun_is_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(neighbours, "DEVICES_MAX", 3)
    known = Neighbours("n1", "me")
    known.availability("gone", OFFLINE.encode())
    for device_id in ("a", "b", "c"):
        known.availability(device_id, ONLINE.encode())
    assert not known.knows("gone")  # the one not online goes first, though newer ones are online
    assert known.removable({"old", "a"}, set()) == {"old"}
    known.availability("b", ONLINE.encode())  # heard again: now the most recent
    known.availability("d", ONLINE.encode())
    assert [known.knows(d) for d in ("a", "b", "c", "d")] == [False, True, True, True]
    assert known.stats()["forgotten"] == 2
    # "a" may be the one listed: this daemon no longer removes anything
    assert known.removable({"old", "a"}, set()) == set()
