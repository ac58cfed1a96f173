"""A broker that keeps more of other daemons than a daemon remembers.

The daemon keeps at most ``DEVICES_MAX`` other device ids, forgetting first
those whose availability is not ``online``, at most ``BRIDGES_MAX`` bridges
online, the highest node ids first, and at most ``DEVICES_MAX`` ids listed in
device lists, the oldest lists first; forgetting deletes nothing on the
broker and starts nothing, and is counted in the diagnostics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import aiomqtt
import pytest
from mqtthost import Broker, running, watching

from gunctl.config import ID_MAX, ServeSettings
from gunctl.mqtt import neighbours
from gunctl.mqtt.neighbours import BRIDGES_MAX, DEVICES_MAX, Neighbours
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
            while known.forgotten < EXTRA + 1 or not known.lists:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert service.bridge.diagnostics()["neighbours"] == {
            "devices": DEVICES_MAX,
            "devices_max": DEVICES_MAX,
            "online": ONLINE_IDS + 1,  # and the daemon's own gun
            "forgotten": EXTRA + 1,
            "forgot_online": False,
            "bridges": 1,
            "bridges_max": BRIDGES_MAX,
            "bridges_forgotten": 0,
            "lists": 1,  # the daemon's own, a second after it connected
            "listed": 1,
            "lists_forgotten": 0,
            "ignored": 0,
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


def test_a_flood_of_made_up_bridges_leaves_the_same_daemon_answering() -> None:
    low, high = Neighbours("n3", "me"), Neighbours("n5", "me")
    for known in (low, high):
        for node in ("n3", "n5", *(f"zz{n:04d}" for n in range(1000))):
            known.bridge_state(node, ONLINE.encode())
        assert known.stats()["bridges"] == BRIDGES_MAX
        assert known.bridges_forgotten == 2 + 1000 - BRIDGES_MAX
    # heard first, yet neither real daemon was pushed out: the lower one answers, alone
    assert low.answers_for("stranger")
    assert not high.answers_for("stranger")


def test_a_forgotten_bridge_below_can_only_add_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neighbours, "BRIDGES_MAX", 2)
    known = Neighbours("n5", "me")
    for node in ("n1", "n2", "n3"):
        known.bridge_state(node, ONLINE.encode())
    assert known.bridges_forgotten == 1  # n3, still online and answering
    assert not known.answers_for("stranger")
    for node in ("n1", "n2"):
        known.bridge_state(node, OFFLINE.encode())
    assert known.answers_for("stranger")  # beside n3: the same refusal twice, not none


def test_once_a_device_list_is_forgotten_no_gun_is_removed() -> None:
    known = Neighbours("n1", "me")
    known.device_list("n2", b'["moved"]')  # n2 took over a gun this node listed before
    assert known.removable({"moved", "old"}, set()) == {"old"}
    for n in range(DEVICES_MAX):
        known.device_list(f"zz{n:04d}", json.dumps([f"zz{n:04d}-1"]).encode())
    assert "n2" not in known.lists
    assert (known.stats()["listed"], known.stats()["lists_forgotten"]) == (DEVICES_MAX, 1)
    assert known.removable({"moved", "old"}, set()) == set()  # "moved" may be n2's


def test_one_list_longer_than_the_bound_is_forgotten_with_the_rest() -> None:
    known = Neighbours("n1", "me")
    known.device_list("n2", b'["a"]')
    known.device_list("n3", b"")  # an empty list takes no room
    huge = json.dumps([f"x{n}" for n in range(DEVICES_MAX + 1)]).encode()
    assert len(known.device_list("zz", huge)) == DEVICES_MAX + 1
    assert known.stats()["lists"] == known.stats()["listed"] == 0
    assert known.lists_forgotten == 2
    assert known.removable({"a"}, set()) == set()


def test_ids_no_daemon_could_have_are_passed_over_and_counted() -> None:
    """A topic level may be 65,535 bytes: 4,096 such ids kept would hold 256 MiB."""
    known = Neighbours("n1", "me")
    long, odd = "x" * 60_000, "not an id"
    for made_up in (long, odd):
        known.availability(made_up, ONLINE.encode())
        known.bridge_state(made_up, ONLINE.encode())
        assert known.device_list(made_up, b'["a"]') == set()
    assert known.device_list("n2", json.dumps(["a", long, odd]).encode()) == {"a"}
    assert not known.knows(long)
    assert known.bridges == []
    stats = known.stats()
    assert (stats["devices"], stats["listed"], stats["ignored"]) == (0, 1, 8)
    assert known.answers_for("stranger")  # a made-up node below n1 cannot silence it either
    known.availability("x" * ID_MAX, ONLINE.encode())  # the longest a daemon may serve
    assert known.knows("x" * ID_MAX)
