"""Which firmware spec an advertising device speaks.

The order is buttplug's: an exact name beats a wildcard name, which beats
manufacturer data, which beats an advertised service. A stronger kind of match
in any spec wins over a weaker kind in another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gunctl.specs.models import DeviceSpec, Identity


class MatchKind(StrEnum):
    EXACT_NAME = "exact_name"
    WILDCARD_NAME = "wildcard_name"
    MANUFACTURER_DATA = "manufacturer_data"
    SERVICE = "service"


@dataclass(frozen=True)
class Advertisement:
    name: str | None
    services: tuple[str, ...] = ()
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    spec: DeviceSpec
    kind: MatchKind


_TESTS: list[tuple[MatchKind, Callable[[Identity, Advertisement], bool]]] = [
    (MatchKind.EXACT_NAME, lambda i, ad: ad.name is not None and i.exact_name(ad.name)),
    (MatchKind.WILDCARD_NAME, lambda i, ad: ad.name is not None and i.wildcard_name(ad.name)),
    (
        MatchKind.MANUFACTURER_DATA,
        lambda i, ad: any(m.matches(dict(ad.manufacturer_data)) for m in i.manufacturer_data),
    ),
    (
        MatchKind.SERVICE,
        lambda i, ad: bool({s.lower() for s in ad.services} & set(i.services)),
    ),
]


def match(ad: Advertisement, specs: Iterable[DeviceSpec]) -> Match | None:
    candidates = list(specs)
    for kind, test in _TESTS:
        for spec in candidates:
            if test(spec.identity, ad):
                return Match(spec, kind)
    return None
