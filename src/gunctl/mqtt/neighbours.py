"""The other daemons on the broker, as far as their retained and live messages tell.

Several ``gunctl serve`` may share a broker. Each owns only its own guns, and
this module keeps what one daemon needs to know to leave the others alone:

- which device ids have a retained availability (someone serves them), and
  which of those are ``online``: at most ``DEVICES_MAX`` ids, however many a
  broker keeps. Past that, the id heard from least recently whose
  availability is not ``online`` is forgotten first, and an ``online`` one
  only when every id kept is online. Forgetting publishes nothing and starts
  nothing: a command for a forgotten id is refused as for any id this daemon
  does not serve (at worst answered ``unknown_device`` beside its owner's
  answer), and once an ``online`` id has been forgotten this daemon removes no
  gun from Home Assistant, as it can no longer tell whose a listed id is.
  Both are counted in the diagnostics (``neighbours``);
- which bridges are online: the lowest node id among them and this one
  answers commands for devices nobody serves. Only the lowest counts, so past
  ``BRIDGES_MAX`` the highest node id is forgotten first: however many made-up
  nodes say they are online, the one that answers is still known (a made-up id
  lower than every real one silences the answers with or without a bound).
  Forgetting can only make this daemon answer where it would not have: if the
  bridges kept below it all go offline while a forgotten one below it is
  still online, both answer ``unknown_device`` (the same refusal twice); no
  command that would have been answered goes unanswered. Counted in the
  diagnostics;
- every node's retained device list, so that removing the guns that left this
  node's configuration never touches an id that another node lists, or that is
  online: a retained message from elsewhere cannot make this daemon delete
  another's discovery or availability. At most ``DEVICES_MAX`` ids in all are
  kept, the least recently heard lists forgotten first; once any list has
  been forgotten (counted in the diagnostics) this daemon removes no gun from
  Home Assistant, as the forgotten list may name it;
- nothing of an id no gunctl daemon could have (longer than
  :data:`~gunctl.config.ID_MAX`, or not one topic level of letters, digits,
  ``-`` and ``_``): a topic level may be 65,535 bytes, and thousands of such
  ids kept would hold hundreds of megabytes. Such messages are counted
  (``ignored``) and passed over;
- another daemon running with this daemon's node id: it publishes this node's
  diagnostics with another instance token. That is a configuration mistake,
  logged as an error (at most once a minute), never fought over: each daemon
  has its own MQTT client id, so neither takes the other's connection.
"""

from __future__ import annotations

import bisect
import json
import time
from collections import OrderedDict

import structlog

from gunctl.config import valid_id
from gunctl.mqtt.topics import ONLINE

log = structlog.get_logger("gunctl.mqtt")

DUPLICATE_LOG_EVERY_S = 60.0
# Other daemons' device ids kept at most: far more than the guns of every daemon on a broker.
DEVICES_MAX = 4096
# Other daemons' bridges kept at most (those online): far more than share a broker.
BRIDGES_MAX = 256


class Neighbours:
    def __init__(self, node_id: str, instance: str) -> None:
        self.node_id = node_id
        self.instance = instance
        # devices with a retained availability, anyone's, least recently heard first:
        # those whose availability says online, and the others
        self.online: OrderedDict[str, None] = OrderedDict()
        self.offline: OrderedDict[str, None] = OrderedDict()
        self.forgotten = 0  # device ids forgotten to keep within DEVICES_MAX
        self.forgot_online = False  # one of them was online: remove no gun any more
        # nodes whose bridge state is online, sorted: the first decides who answers
        self.bridges: list[str] = []
        self.bridges_forgotten = 0  # the highest ones, to keep within BRIDGES_MAX
        # node -> the device ids it lists, least recently heard first; at most DEVICES_MAX ids
        self.lists: OrderedDict[str, set[str]] = OrderedDict()
        self.listed = 0  # ids in self.lists
        self.lists_forgotten = 0  # lists forgotten to keep within DEVICES_MAX: remove no gun
        self.ignored = 0  # messages about ids no gunctl daemon could have
        self.duplicate: str | None = None  # the instance token of a daemon with our node id
        self._duplicate_logged = -DUPLICATE_LOG_EVERY_S

    def knows(self, device_id: str) -> bool:
        """Whether ``device_id`` has a retained availability (someone serves it)."""
        return device_id in self.online or device_id in self.offline

    def availability(self, device_id: str, payload: bytes) -> None:
        if not self._possible(device_id):
            return
        self.online.pop(device_id, None)
        self.offline.pop(device_id, None)
        if not payload:
            return
        (self.online if payload == ONLINE.encode() else self.offline)[device_id] = None
        if len(self.online) + len(self.offline) > DEVICES_MAX:
            self._forget_one()

    def _forget_one(self) -> None:
        """Forget the id heard from least recently, one not online if there is any."""
        if self.offline:
            self.offline.popitem(last=False)
        else:
            self.online.popitem(last=False)
            self.forgot_online = True
        self.forgotten += 1

    def stats(self) -> dict[str, int | bool]:
        """What diagnostics publish: what is kept of each kind, the bound, what was forgotten."""
        return {
            "devices": len(self.online) + len(self.offline),
            "devices_max": DEVICES_MAX,
            "online": len(self.online),
            "forgotten": self.forgotten,
            "forgot_online": self.forgot_online,
            "bridges": len(self.bridges),
            "bridges_max": BRIDGES_MAX,
            "bridges_forgotten": self.bridges_forgotten,
            "lists": len(self.lists),
            "listed": self.listed,
            "lists_forgotten": self.lists_forgotten,
            "ignored": self.ignored,
        }

    def _possible(self, node_or_device: str) -> bool:
        """Whether a gunctl daemon could have this id; counted if not."""
        if valid_id(node_or_device):
            return True
        self.ignored += 1
        return False

    def bridge_state(self, node: str, payload: bytes) -> None:
        if not self._possible(node):
            return
        at = bisect.bisect_left(self.bridges, node)
        known = self.bridges[at : at + 1] == [node]
        if payload != ONLINE.encode():
            if known:
                del self.bridges[at]
        elif not known:
            self.bridges.insert(at, node)
            if len(self.bridges) > BRIDGES_MAX:
                self.bridges.pop()  # the highest, never the lowest: it answers (see module)
                self.bridges_forgotten += 1

    def device_list(self, node: str, payload: bytes) -> set[str]:
        """Note ``node``'s device list; return it (empty if it is not a list of ids), without
        any id no gunctl daemon could have."""
        if not self._possible(node):
            return set()
        try:
            listed = json.loads(payload) if payload else []
        except (ValueError, RecursionError):
            listed = []
        named = {d for d in listed if isinstance(d, str)} if isinstance(listed, list) else set()
        ids = {d for d in named if valid_id(d)}
        self.ignored += len(named) - len(ids)
        self.listed -= len(self.lists.pop(node, ()))
        if ids:  # an empty one lists nothing, and is not kept
            self.lists[node] = ids
            self.listed += len(ids)
        while self.listed > DEVICES_MAX:
            self.listed -= len(self.lists.popitem(last=False)[1])
            self.lists_forgotten += 1
        return ids

    def diagnostics(self, node: str, payload: bytes) -> None:
        """A live diagnostics message for ``node``: another instance if the token differs."""
        if node != self.node_id:
            return
        try:
            instance = json.loads(payload).get("instance")
        except (ValueError, AttributeError, RecursionError):
            return
        if not isinstance(instance, str) or instance == self.instance:
            return
        self.duplicate = instance
        now = time.monotonic()
        if now - self._duplicate_logged >= DUPLICATE_LOG_EVERY_S:
            self._duplicate_logged = now
            log.error(
                "duplicate_node_id",
                node=self.node_id,
                other_instance=instance,
                advice="give every gunctl serve on this broker its own node_id",
            )

    def answers_for(self, device_id: str) -> bool:
        """Whether this daemon answers for ``device_id``, which it does not serve."""
        if self.knows(device_id):
            return False  # someone's: they answer
        return not self.bridges or self.bridges[0] >= self.node_id

    def removable(self, previous: set[str], own: set[str]) -> set[str]:
        """Of the ids this node listed before, those that may be removed now.

        Not one it serves, not one whose availability says online, and not one
        another node lists; and nothing at all while another daemon runs with
        this node id (its list is this topic too), or once an online id or a
        list has been forgotten (it may be one of these, or name one).
        """
        if self.duplicate is not None or self.forgot_online or self.lists_forgotten:
            return set()
        others = set().union(*(ids for node, ids in self.lists.items() if node != self.node_id))
        return previous - own - self.online.keys() - others
