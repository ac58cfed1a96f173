"""The attachment heads gunctl knows by name.

Profiles say which head a step needs, firmware specs say which heads a device
can detect, and the person says which heads they own; all three use these names.
"""

from enum import StrEnum


class Head(StrEnum):
    BALL = "ball"  # the large round general-purpose head
    FLAT = "flat"  # a flat disc for broad, dense muscle
    BULLET = "bullet"  # the small cone or tip for a deep, precise point
    THUMB = "thumb"  # a rounded tip shaped like a thumb
    FORK = "fork"  # two prongs that straddle a structure
    WEDGE = "wedge"  # a blade edge for scraping along a muscle
    CUSHION = "cushion"  # a soft, dampened ball for tender areas

    @property
    def is_tip(self) -> bool:
        """A small contact area that concentrates force on one point."""
        return self in (Head.BULLET, Head.THUMB)
