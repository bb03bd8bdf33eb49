"""Class colours, one palette for every picture rssd draws: matplotlib figures (:mod:`rssd.viz`) and the OpenCV
frames of ``rssd detect`` (:func:`rssd.inference.draw_detections`).

Imports nothing (no matplotlib, no OpenCV), so the command line can colour its frames without loading a plotting
library.
"""

from __future__ import annotations

__all__ = ["COLORS", "class_color", "to_bgr"]

#: A colour cycle that stays readable on photos (hex RGB, as matplotlib takes it).
COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990")


def class_color(k: int) -> str:
    """The colour of class label (or box index) ``k``: :data:`COLORS`, cycled."""
    return COLORS[int(k) % len(COLORS)]


def to_bgr(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as OpenCV's ``(blue, green, red)`` in 0..255."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return b, g, r
