"""Muscles with their safety envelope, and the protocols that treat them."""

from gunctl.profiles.loader import Catalogue, load_catalogue, validate_files
from gunctl.profiles.models import (
    MAX_HOLD_S,
    MAX_SESSION_S,
    Depth,
    ExpandedStep,
    HeadPolicy,
    HoldRange,
    Muscle,
    MuscleCatalogue,
    Protocol,
    Side,
    Step,
)

__all__ = [
    "MAX_HOLD_S",
    "MAX_SESSION_S",
    "Catalogue",
    "Depth",
    "ExpandedStep",
    "HeadPolicy",
    "HoldRange",
    "Muscle",
    "MuscleCatalogue",
    "Protocol",
    "Side",
    "Step",
    "load_catalogue",
    "validate_files",
]
