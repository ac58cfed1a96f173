"""Quantities written for people, the same way in every command."""


def duration(seconds: float) -> str:
    """``45 s``, ``2 min``, ``7 min 46 s``."""
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
