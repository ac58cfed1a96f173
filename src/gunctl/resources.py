"""Where the shipped firmware specs and profiles live.

An installed wheel carries them inside the package (``gunctl/_data``); a source
checkout or an editable install reads the top-level folders of the repository.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """The shipped data folder ``name`` (``firmware_specs`` or ``profiles``)."""
    packaged = _PACKAGE / "_data" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parents[1] / name
