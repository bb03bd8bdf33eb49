"""Synthetic crowd scenes: rssd's embedded default dataset when no PASCAL VOC is present.

Each image is a small procedural scene on a ground plane (sky or wall above a horizon, ground or floor below):

* **people** (head, hair or hat, torso, arms, legs, shoes; varied skin, clothes, poses and sizes), standing in
  groups whose members overlap, so many belong to the crowd subset (:mod:`rssd.data.crowd`);
* **cars** (side view, parked in overlapping rows) and **dogs**, so that same-class repulsion is not the same as
  any-class repulsion;
* background clutter (buildings, trees, furniture-like blocks), drop shadows, sensor noise and a slight blur.

Objects are drawn back to front (by where they stand on the ground: farther first), so nearer objects occlude
farther ones. Every object has a **full-extent** box (its whole drawn body, occluded parts included, as in
CityPersons; clipped to the image when it leaves the frame, then flagged truncated) and a **visible fraction**
(the share of its pixels that no nearer object covers and that lie in the image). Objects less than
``difficult_below`` visible, or smaller than ``difficult_min_height`` pixels, are flagged difficult; objects
fully hidden are left out.

Scenes are deterministic: image ``i`` of seed ``s`` depends on ``(s, i)`` only (``numpy.random.default_rng([s, i])``),
so any image can be drawn on its own, in any order or process. :class:`SyntheticCrowds` draws them on the fly (no
files); :func:`write_synthetic_voc` (``rssd synth``) writes a VOC-layout folder that :class:`~rssd.data.voc.VOCDataset`
reads. Image ``i`` belongs to the ``test`` split when ``floor((i + 1) f) > floor(i f)`` for the test fraction ``f``
(every 5th image for 0.2), the rest to ``trainval``; both ways of getting the data agree on this.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset
from torchvision import tv_tensors

from rssd.data.common import Target, make_target

__all__ = [
    "SYNTH_CLASSES",
    "SynthConfig",
    "SYNTH_PRESETS",
    "SynthScene",
    "render_scene",
    "is_test_index",
    "split_indices",
    "SyntheticCrowds",
    "write_synthetic_voc",
    "scene_to_voc_xml",
]

#: Object classes of the synthetic scenes (label ``i + 1`` is ``SYNTH_CLASSES[i]``).
SYNTH_CLASSES: tuple[str, ...] = ("person", "car", "dog")


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the scene generator (defaults: what ``rssd synth`` and the notebooks use).

    Attributes:
        size: image side in pixels (square images).
        groups: ``(min, max)`` number of object groups per image.
        class_probs: probability that a group is of each class of :data:`SYNTH_CLASSES`.
        person_group_sizes: relative weights of person groups of 1, 2, 3... members.
        min_height, max_height: person height range as a fraction of ``size`` (log-uniform).
        spacing: ``(min, max)`` horizontal step between neighbours of a group, as a fraction of the width of
            a member (smaller = more overlap; a step ``s`` between equal boxes gives IoU ``(1 - s) / (1 + s)``).
        density: crowd density knob: the horizontal steps inside a group are ``spacing / density`` (2: twice as
            close, more overlap; 0.5: twice as far). ``SYNTH_PRESETS["voc-like"]`` sets it so that the share of
            people in the crowd subset matches PASCAL VOC's.
        difficult_below: objects less visible than this are flagged difficult.
        difficult_min_height: objects whose box is shorter than this many pixels are flagged difficult.
        drop_below: objects at most this visible are left out of the annotations (default 0: only those with no
            visible pixel, so every drawn pixel belongs to an annotated object).
        noise: ``(min, max)`` standard deviation of the Gaussian pixel noise (0-255 scale).
        blur_prob: probability of a 3x3 Gaussian blur of the finished image.
    """

    size: int = 300
    groups: tuple[int, int] = (1, 4)
    class_probs: tuple[float, ...] = (0.64, 0.2, 0.16)
    person_group_sizes: tuple[float, ...] = (0.3, 0.24, 0.18, 0.13, 0.09, 0.06)
    min_height: float = 0.2
    max_height: float = 0.72
    spacing: tuple[float, float] = (0.4, 1.2)
    density: float = 1.0
    difficult_below: float = 0.25
    difficult_min_height: float = 12.0
    drop_below: float = 0.0
    noise: tuple[float, float] = (0.0, 8.0)
    blur_prob: float = 0.5


@dataclass
class SynthScene:
    """One rendered scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(G, 4)`` float64 full-extent boxes, XYXY in rssd's pixel convention (integer pixel edges:
            ``x1`` is the first column, ``x2`` one past the last), clipped to the image.
        names: ``G`` class names; ``labels`` ``(G,)`` int64 their labels ``1..len(SYNTH_CLASSES)``.
        difficult: ``(G,)`` bool; visible: ``(G,)`` float visible fraction; truncated: ``(G,)`` bool (box clipped).
        image_id: ``"%06d" % index``.
        owner: ``(H, W)`` uint8: ``k + 1`` where object ``k`` is the visible one, 0 for background (and for the
            pixels of objects left out of the annotations).
    """

    image: np.ndarray
    boxes: np.ndarray
    names: tuple[str, ...]
    labels: np.ndarray
    difficult: np.ndarray
    visible: np.ndarray
    truncated: np.ndarray
    image_id: str = ""
    owner: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)


#: Named generator settings. ``voc-like``: ``density`` 0.25, chosen so that the share of people in the crowd subset
#: matches PASCAL VOC2007 test's people (the default scenes are far more crowded); ``rssd experiment diagnose``
#: measures both, and ``doc/results/diagnosis`` holds the numbers.
SYNTH_PRESETS: dict[str, SynthConfig] = {"default": SynthConfig(), "voc-like": SynthConfig(density=0.25)}


# ------------------------------------------------------------------------------------------------ colours


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV (all 0-1) to an RGB colour tuple with every channel >= 1 (0 marks "nothing drawn" in object patches)."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (max(1, int(r * 255)), max(1, int(g * 255)), max(1, int(b * 255)))


_SKIN = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30))
_HAIR = ((20, 15, 10), (60, 40, 25), (110, 75, 40), (170, 130, 70), (200, 190, 170), (120, 40, 20))
_DOG = ((110, 70, 35), (160, 110, 60), (40, 30, 25), (230, 220, 200), (200, 150, 90), (120, 120, 120))


def _pick(rng: np.random.Generator, colours: tuple[tuple[int, int, int], ...], jitter: int = 12) -> tuple[int, ...]:
    c = np.array(colours[int(rng.integers(len(colours)))]) + rng.integers(-jitter, jitter + 1, 3)
    return tuple(int(v) for v in np.clip(c, 1, 255))


def _clothes(rng: np.random.Generator) -> tuple[int, int, int]:
    return _hsv(rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.25, 0.95))


def _shade(c: tuple[int, ...], f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(1, v * f))) for v in c)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ objects


def _pt(x: float, y: float) -> tuple[int, int]:
    return (int(round(x)), int(round(y)))


class _Sketch:
    """Drawing operations recorded in local integer coordinates, replayed onto any canvas at any offset.

    An object is replayed three times: into a local mask (its full silhouette: full-extent box and area), into the
    image (colours) and into the id map (which object owns each pixel), so no pixels need to be copied around.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.ops: list[tuple[Any, ...]] = []

    def line(self, p1: tuple[int, int], p2: tuple[int, int], colour: tuple[int, ...], thickness: int) -> None:
        self.ops.append(("line", p1, p2, colour, thickness))

    def circle(self, c: tuple[int, int], r: int, colour: tuple[int, ...], _fill: int = -1) -> None:
        self.ops.append(("circle", c, r, colour))

    def ellipse(self, c: tuple[int, int], axes: tuple[int, int], a0: float, a1: float, colour: tuple[int, ...]) -> None:
        self.ops.append(("ellipse", c, axes, a0, a1, colour))

    def rectangle(self, p1: tuple[int, int], p2: tuple[int, int], colour: tuple[int, ...], _fill: int = -1) -> None:
        self.ops.append(("rect", p1, p2, colour))

    def poly(self, pts: list[tuple[int, int]], colour: tuple[int, ...]) -> None:
        self.ops.append(("poly", np.array(pts, np.int32), colour))

    def replay(self, dst: np.ndarray, dx: int = 0, dy: int = 0, colour: int | None = None) -> None:
        """Draw every op onto ``dst`` shifted by ``(dx, dy)``, in its own colours or all in ``colour``."""
        for op in self.ops:
            kind = op[0]
            if kind == "line":
                (x1, y1), (x2, y2) = op[1], op[2]
                cv2.line(dst, (x1 + dx, y1 + dy), (x2 + dx, y2 + dy), op[3] if colour is None else colour, op[4])
                continue
            c = op[-1] if colour is None else colour
            if kind == "circle":
                cv2.circle(dst, (op[1][0] + dx, op[1][1] + dy), op[2], c, -1)
            elif kind == "ellipse":
                cv2.ellipse(dst, (op[1][0] + dx, op[1][1] + dy), op[2], 0, op[3], op[4], c, -1)
            elif kind == "rect":
                cv2.rectangle(dst, (op[1][0] + dx, op[1][1] + dy), (op[2][0] + dx, op[2][1] + dy), c, -1)
            else:
                cv2.fillConvexPoly(dst, op[1] + np.array([dx, dy], np.int32), c)


def _draw_person(rng: np.random.Generator, h: int) -> _Sketch:
    """A standing person of height ``h`` pixels, centred in a ``(h + 4, ~0.9 h)`` RGB patch (0 = empty)."""
    w = int(0.9 * h) + 4
    patch = _Sketch(w, h + 4)
    cx = w / 2 + rng.uniform(-0.03, 0.03) * h
    top = 2.0
    r = rng.uniform(0.062, 0.078) * h
    lean = rng.uniform(-0.035, 0.035) * h
    head = (cx + lean, top + r)
    shoulder_y = top + 2 * r + 0.025 * h
    hip_y = top + rng.uniform(0.5, 0.56) * h
    feet_y = top + h - 1
    sw, hw = rng.uniform(0.1, 0.135) * h, rng.uniform(0.08, 0.105) * h
    skin, shirt, pants = _pick(rng, _SKIN), _clothes(rng), _clothes(rng)
    if rng.random() < 0.5:
        pants = _shade(pants, 0.45)  # dark trousers are common
    lw = max(2, int(0.075 * h))  # leg thickness
    aw = max(2, int(0.055 * h))  # arm thickness
    # legs (behind the torso): hip to foot, stance or stride
    stride = rng.uniform(0.0, 0.13) * h
    for side in (-1, 1):
        hip = (cx + side * 0.45 * hw, hip_y)
        foot_x = cx + side * (0.3 * hw + stride * rng.uniform(0.3, 1.0))
        patch.line(_pt(*hip), _pt(foot_x, feet_y - 0.02 * h), pants, lw)
        patch.ellipse(_pt(foot_x + side * 0.02 * h, feet_y - 0.015 * h), _pt(0.05 * h, 0.018 * h), 0, 360,
                    (30, 25, 20))  # fmt: skip
    # torso (or a dress)
    if rng.random() < 0.18:
        hem_y, hem_w = top + rng.uniform(0.68, 0.8) * h, rng.uniform(0.14, 0.2) * h
        poly = [(cx - sw, shoulder_y), (cx + sw, shoulder_y), (cx + hem_w, hem_y), (cx - hem_w, hem_y)]
    else:
        poly = [(cx - sw, shoulder_y), (cx + sw, shoulder_y), (cx + hw, hip_y), (cx - hw, hip_y)]
    patch.poly([_pt(*p) for p in poly], shirt)
    # arms: mostly down and slightly out; sometimes one raised
    for side in (-1, 1):
        shoulder = (cx + side * (sw - 0.3 * aw), shoulder_y + 0.3 * aw)
        angle = math.radians(rng.uniform(4, 35) if rng.random() > 0.12 else rng.uniform(100, 160))
        length = rng.uniform(0.3, 0.36) * h
        hand = (shoulder[0] + side * length * math.sin(angle), shoulder[1] + length * math.cos(angle))
        patch.line(_pt(*shoulder), _pt(*hand), _shade(shirt, 0.85), aw)
        patch.circle(_pt(*hand), max(1, int(0.032 * h)), skin, -1)
    # neck, head, hair or hat
    patch.line(_pt(head[0], head[1] + r * 0.8), _pt(cx, shoulder_y + 1), skin, max(2, int(0.05 * h)))
    patch.circle(_pt(*head), max(2, int(r)), skin, -1)
    style = rng.random()
    if style < 0.65:
        patch.ellipse(_pt(head[0], head[1] - 0.15 * r), _pt(1.05 * r, 0.9 * r), 180, 360,
                    _pick(rng, _HAIR))  # fmt: skip
    elif style < 0.85:
        hat = _clothes(rng)
        patch.rectangle(_pt(head[0] - 1.4 * r, head[1] - 0.75 * r), _pt(head[0] + 1.4 * r, head[1] - 0.55 * r),
                      hat, -1)  # fmt: skip
        patch.rectangle(_pt(head[0] - 0.85 * r, head[1] - 1.6 * r), _pt(head[0] + 0.85 * r, head[1] - 0.6 * r),
                      hat, -1)  # fmt: skip
    return patch


def _draw_car(rng: np.random.Generator, h: int) -> _Sketch:
    """A car seen from the side, ``h`` pixels tall and 2.1-2.7 ``h`` long, in an RGB patch (0 = empty)."""
    w = int(h * rng.uniform(2.1, 2.7))
    patch = _Sketch(w + 4, h + 4)
    x0, x1, y0 = 2.0, w + 1.0, 2.0
    body = _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.3, 0.95))
    front_left = rng.random() < 0.5
    wheel_r = 0.19 * h
    body_top, body_bot = y0 + rng.uniform(0.36, 0.44) * h, y0 + h - 0.9 * wheel_r
    bevel = 0.1 * h
    poly = [(x0, body_top + bevel), (x0 + bevel, body_top), (x1 - bevel, body_top), (x1, body_top + bevel),
            (x1, body_bot), (x0, body_bot)]  # fmt: skip
    patch.poly([_pt(*p) for p in poly], body)
    a, b = (0.18, 0.72) if front_left else (0.28, 0.82)
    ca, cb = x0 + a * w, x0 + b * w
    cabin = [(ca, body_top + 1), (ca + 0.12 * w, y0), (cb - 0.1 * w, y0), (cb, body_top + 1)]
    patch.poly([_pt(*p) for p in cabin], body)
    glass = _hsv(rng.uniform(0.5, 0.62), rng.uniform(0.1, 0.4), rng.uniform(0.55, 0.9))
    m = 0.06 * h
    mid = (ca + cb) / 2
    for wa, wb in ((ca + m, mid - m / 2), (mid + m / 2, cb - m)):
        win = [(wa + 0.5 * m, body_top - 1), (max(wa + m, ca + 0.12 * w + m), y0 + m),
               (min(wb - m, cb - 0.1 * w - m), y0 + m), (wb, body_top - 1)]  # fmt: skip
        patch.poly([_pt(*p) for p in win], glass)
    lamp_y = body_top + 0.2 * (body_bot - body_top)
    front, back = (x0, x1) if front_left else (x1, x0)
    patch.circle(_pt(front + (0.03 * w if front_left else -0.03 * w), lamp_y), max(1, int(0.05 * h)),
               (250, 240, 170), -1)  # fmt: skip
    patch.circle(_pt(back + (0.025 * w if not front_left else -0.025 * w), lamp_y), max(1, int(0.045 * h)),
               (200, 30, 30), -1)  # fmt: skip
    for fx in (0.2, 0.8):
        c = _pt(x0 + fx * w, y0 + h - wheel_r - 1)
        patch.circle(c, max(2, int(wheel_r)), (25, 25, 25), -1)
        patch.circle(c, max(1, int(0.45 * wheel_r)), (170, 170, 175), -1)
    return patch


def _draw_dog(rng: np.random.Generator, h: int) -> _Sketch:
    """A dog seen from the side, ``h`` pixels tall (to the ears) and about 1.5 ``h`` long (0 = empty)."""
    w = int(h * rng.uniform(1.35, 1.7))
    patch = _Sketch(w + 4, h + 4)
    fur = _pick(rng, _DOG, 20)
    dark = _shade(fur, 0.6)
    right = rng.random() < 0.5
    x0, y0 = 2.0, 2.0

    def X(f: float) -> float:  # mirror for dogs facing left
        return x0 + (f if right else 1.0 - f) * w

    leg_w = max(2, int(0.1 * h))
    body_y = y0 + 0.5 * h
    for f, g in ((0.22, 0.0), (0.3, 0.05), (0.62, 0.0), (0.7, 0.05)):
        top_pt = _pt(X(f), body_y + 0.1 * h)
        patch.line(top_pt, _pt(X(f + g * rng.uniform(-1, 1)), y0 + h - 1.5), fur if g else dark, leg_w)
    patch.ellipse(_pt(X(0.45), body_y), _pt(0.3 * w, 0.17 * h), 0, 360, fur)
    patch.line(_pt(X(0.17), body_y - 0.05 * h), _pt(X(0.04), body_y - rng.uniform(0.1, 0.35) * h), fur,
             max(2, int(0.06 * h)))  # fmt: skip
    head = _pt(X(0.8), y0 + 0.32 * h)
    patch.line(_pt(X(0.68), body_y - 0.05 * h), head, fur, max(2, int(0.16 * h)))
    patch.circle(head, max(2, int(0.15 * h)), fur, -1)
    patch.ellipse(_pt(X(0.9), y0 + 0.37 * h), _pt(0.1 * w, 0.07 * h), 0, 360, fur)
    patch.circle(_pt(X(0.96), y0 + 0.34 * h), max(1, int(0.035 * h)), (20, 20, 20), -1)
    ear = [_pt(X(0.74), y0 + 0.22 * h), _pt(X(0.78), y0 + 1), _pt(X(0.82), y0 + 0.2 * h)]
    patch.poly(ear, dark)
    return patch


_DRAW: dict[str, Callable[[np.random.Generator, int], _Sketch]] = {
    "person": _draw_person,
    "car": _draw_car,
    "dog": _draw_dog,
}
#: Height of each class relative to a person standing at the same spot.
_REL_HEIGHT = {"person": (1.0, 1.0), "car": (0.5, 0.62), "dog": (0.3, 0.45)}


# ------------------------------------------------------------------------------------------------ background


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Unit Gaussian noise, ``(1024, 1024, 3)`` int8 (x16), drawn once from a fixed seed; scenes crop from it."""
    rng = np.random.default_rng(20160101)
    return np.clip(rng.standard_normal((1024, 1024, 3), dtype=np.float32) * 16, -127, 127).astype(np.int8)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """Sky/wall over ground/floor with clutter; returns ``(image (S, S, 3) uint8, horizon y)``."""
    horizon = rng.uniform(0.22, 0.5) * size
    indoor = rng.random() < 0.35
    if indoor:
        top_c = np.array(_hsv(rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.3), rng.uniform(0.55, 0.9)), np.float32)
        bot_c = top_c * rng.uniform(0.8, 1.0)
        g_top = np.array(_hsv(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6)), np.float32)
    else:
        top_c = np.array(_hsv(rng.uniform(0.55, 0.65), rng.uniform(0.1, 0.5), rng.uniform(0.6, 0.95)), np.float32)
        bot_c = np.array(_hsv(rng.uniform(0.5, 0.6), rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)), np.float32)
        g_top = np.array(_hsv(rng.uniform(0.08, 0.35), rng.uniform(0.1, 0.45), rng.uniform(0.3, 0.65)), np.float32)
    g_bot = g_top * rng.uniform(0.6, 1.1)
    ys = np.arange(size, dtype=np.float32)[:, None]
    hz = int(horizon)
    t_sky = ys[:hz] / max(hz, 1)
    t_gnd = (ys[hz:] - hz) / max(size - hz, 1)
    col = np.concatenate([top_c + (bot_c - top_c) * t_sky, g_top + (g_bot - g_top) * t_gnd])  # (S, 3)
    img = np.ascontiguousarray(np.broadcast_to(np.clip(col, 0, 255).astype(np.uint8)[:, None, :], (size, size, 3)))
    # clutter behind the horizon: buildings / trees outdoors, blocks (cupboards, doors) indoors
    for _ in range(int(rng.integers(0, 6))):
        bw = rng.uniform(0.05, 0.3) * size
        bh = rng.uniform(0.05, 0.35) * size
        bx = rng.uniform(-0.1, 1.0) * size
        if not indoor and rng.random() < 0.45:  # tree
            trunk = _hsv(rng.uniform(0.05, 0.1), 0.5, rng.uniform(0.2, 0.4))
            cv2.rectangle(img, _pt(bx - 0.04 * bw, horizon - 0.4 * bh), _pt(bx + 0.04 * bw, horizon + 2), trunk, -1)
            leaf = _hsv(rng.uniform(0.22, 0.38), rng.uniform(0.25, 0.6), rng.uniform(0.25, 0.55))
            cv2.ellipse(img, _pt(bx, horizon - 0.6 * bh), _pt(0.5 * bw, 0.45 * bh), 0, 0, 360, leaf, -1)
        else:
            c = _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.3, 0.8))
            cv2.rectangle(img, _pt(bx, horizon - bh), _pt(bx + bw, horizon + 1), c, -1)
            if rng.random() < 0.5:  # windows / panels
                wc = _shade(c, rng.uniform(0.6, 1.3))
                for k in range(int(rng.integers(1, 4))):
                    wy = horizon - bh + (k + 0.3) * bh / 3.5
                    cv2.rectangle(img, _pt(bx + 0.2 * bw, wy), _pt(bx + 0.8 * bw, wy + 0.15 * bh), wc, -1)
    # ground texture: a few low-contrast patches
    for _ in range(int(rng.integers(0, 4))):
        c = _shade(tuple(int(v) for v in g_top), rng.uniform(0.8, 1.2))
        center = _pt(rng.uniform(0, size), rng.uniform(horizon, size))
        axes = _pt(rng.uniform(0.05, 0.3) * size, rng.uniform(0.01, 0.05) * size)
        cv2.ellipse(img, center, axes, 0, 0, 360, c, -1)
    return img, horizon


def _shadow(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, strength: float = 0.6) -> None:
    """Darken an elliptic patch of ground in place (multiply by ``strength``)."""
    s_h, s_w = img.shape[:2]
    x0, x1 = max(int(cx - ax) - 1, 0), min(int(cx + ax) + 2, s_w)
    y0, y1 = max(int(cy - ay) - 1, 0), min(int(cy + ay) + 2, s_h)
    if x1 <= x0 or y1 <= y0:
        return
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(m, _pt(cx - x0, cy - y0), _pt(ax, ay), 0, 0, 360, 1, -1)
    region = img[y0:y1, x0:x1]
    sel = m.astype(bool)
    region[sel] = (region[sel] * strength).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ scenes


@dataclass
class _Obj:
    name: str
    foot_y: float
    cx: float
    height: int


def _plan_objects(rng: np.random.Generator, cfg: SynthConfig, horizon: float) -> list[_Obj]:
    """Place groups of objects on the ground plane, with perspective: a person ``h`` tall stands at ``y = horizon +
    h / k`` (``k`` per image), so nearer (lower) people are taller; members of a group stand side by side."""
    s = cfg.size
    # perspective: a person standing on the bottom edge is k * (s - horizon) tall
    k = rng.uniform(cfg.max_height * 0.75, cfg.max_height * 1.15) * s / (s - horizon)
    objs: list[_Obj] = []
    n_groups = int(rng.integers(cfg.groups[0], cfg.groups[1] + 1))
    probs = np.asarray(cfg.class_probs, float) / sum(cfg.class_probs)
    sizes_p = np.asarray(cfg.person_group_sizes, float) / sum(cfg.person_group_sizes)
    for _ in range(n_groups):
        name = SYNTH_CLASSES[int(rng.choice(len(SYNTH_CLASSES), p=probs))]
        if name == "person":
            n = 1 + int(rng.choice(len(sizes_p), p=sizes_p))
        else:
            n = int(rng.integers(1, 4))
        # person height at the group's spot, log-uniform, then where that spot is
        h_person = math.exp(rng.uniform(math.log(cfg.min_height * s), math.log(cfg.max_height * s)))
        foot = horizon + h_person / k
        foot = min(foot, s + 0.08 * h_person)
        lo, hi = _REL_HEIGHT[name]
        rel = rng.uniform(lo, hi)
        width_ratio = {"person": 0.42, "car": 2.4, "dog": 1.5}[name]
        direction = 1 if rng.random() < 0.5 else -1
        x = rng.uniform(0.05, 0.95) * s
        for _m in range(n):
            f = foot + rng.uniform(-0.06, 0.06) * h_person  # small depth jitter inside the group
            h = max(8, int(round(k * max(f - horizon, 1.0) * rel * rng.uniform(0.93, 1.07))))
            objs.append(_Obj(name, f, x, h))
            x += direction * h * width_ratio * rng.uniform(*cfg.spacing) / cfg.density
    objs.sort(key=lambda o: o.foot_y)  # back to front
    return objs


def _draw_objects(
    rng: np.random.Generator, img: np.ndarray, objs: list[_Obj]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``objs`` (back to front) with their shadows into ``img`` ``(S, S, 3)``, in place.

    Returns:
        ``ids (S, S) uint8``: which object owns each pixel (``n + 1`` for ``objs[n]``, 0: background);
        ``boxes (G, 4)``: each full silhouette's box clipped to the image (zeros for a silhouette with no pixel);
        ``visible (G,)``: the fraction of each silhouette left in view (occlusion and the image border);
        ``truncated (G,)``: the silhouette reaches past the border.
    """
    s = img.shape[0]
    ids = np.zeros((s, s), np.uint8)
    full_area = np.zeros(len(objs) + 1, np.int64)
    boxes = np.zeros((len(objs), 4), np.float64)
    truncated = np.zeros(len(objs), bool)
    for n, o in enumerate(objs, start=1):
        # drop shadow on the ground, drawn before the object itself
        _shadow(img, o.cx, o.foot_y, o.height * (0.25 if o.name == "person" else 1.0 if o.name == "car" else 0.6),
                0.045 * o.height)  # fmt: skip
        sketch = _DRAW[o.name](rng, o.height)
        # the full silhouette, occluded and out-of-image parts included; a margin catches limbs (raised arms, hats,
        # tails) that reach outside the sketch's nominal canvas
        margin = max(sketch.width, sketch.height) // 2 + 2
        mask = np.zeros((sketch.height + 2 * margin, sketch.width + 2 * margin), np.uint8)
        sketch.replay(mask, margin, margin, colour=1)
        lx, ly, lw, lh = cv2.boundingRect(mask)
        if lw == 0 or lh == 0:
            continue
        lx, ly = lx - margin, ly - margin
        full_area[n] = cv2.countNonZero(mask)
        # place it: bottom of the silhouette on the foot line, patch centre on cx
        dy = int(round(o.foot_y)) - (ly + lh)
        dx = int(round(o.cx - sketch.width / 2))
        bx1, by1, bx2, by2 = dx + lx, dy + ly, dx + lx + lw, dy + ly + lh
        boxes[n - 1] = (max(bx1, 0), max(by1, 0), min(bx2, s), min(by2, s))
        truncated[n - 1] = bx1 < 0 or by1 < 0 or bx2 > s or by2 > s
        sketch.replay(img, dx, dy)
        sketch.replay(ids, dx, dy, colour=n)
    visible_px = np.bincount(ids.ravel(), minlength=len(objs) + 1)
    visible = np.divide(visible_px, full_area, out=np.zeros(len(visible_px)), where=full_area > 0)[1:]
    return ids, boxes, visible, truncated


def _camera(rng: np.random.Generator, img: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """Sensor noise (a crop of a fixed noise bank, scaled to a sigma drawn from ``cfg.noise``), then a blur with
    probability ``cfg.blur_prob``."""
    s = img.shape[0]
    sigma = int(round(rng.uniform(*cfg.noise)))
    if sigma > 0:
        bank = _noise_bank()
        oy, ox = int(rng.integers(0, bank.shape[0] - s + 1)), int(rng.integers(0, bank.shape[1] - s + 1))
        noisy = img.astype(np.int16)
        noisy += (bank[oy : oy + s, ox : ox + s].astype(np.int16) * sigma) >> 4
        img = np.clip(noisy, 0, 255).astype(np.uint8)
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img


def render_scene(seed: int, index: int = 0, config: SynthConfig | None = None) -> SynthScene:
    """Draw scene ``index`` of ``seed`` (deterministic; independent of every other index).

    Returns:
        A :class:`SynthScene` with a ``(S, S, 3)`` RGB image and ``G`` annotated objects.
    """
    cfg = config or SynthConfig()
    s = cfg.size
    rng = np.random.default_rng([int(seed), int(index)])
    img, horizon = _background(rng, s)
    objs = _plan_objects(rng, cfg, horizon)[:254]  # ids must fit in uint8
    ids, boxes, visible, truncated = _draw_objects(rng, img, objs)
    img = _camera(rng, img, cfg)

    keep = (visible > cfg.drop_below) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    names = tuple(o.name for o, k_ in zip(objs, keep, strict=True) if k_)
    lut = np.zeros(256, np.uint8)  # id in the drawing -> index + 1 among the kept objects
    lut[1 : len(objs) + 1][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint8)
    heights = boxes[:, 3] - boxes[:, 1]
    difficult = (visible < cfg.difficult_below) | (heights < cfg.difficult_min_height)
    return SynthScene(
        image=img,
        boxes=boxes[keep],
        names=names,
        labels=np.array([SYNTH_CLASSES.index(n) + 1 for n in names], np.int64),
        difficult=difficult[keep],
        visible=visible[keep],
        truncated=truncated[keep],
        image_id=f"{index:06d}",
        owner=lut[ids],
    )


# ------------------------------------------------------------------------------------------------ splits


def is_test_index(index: int, test_fraction: float = 0.2) -> bool:
    """Whether image ``index`` is in the test split: ``floor((i + 1) f) > floor(i f)`` (every 5th for 0.2)."""
    return math.floor((index + 1) * test_fraction + 1e-9) > math.floor(index * test_fraction + 1e-9)


def split_indices(num_images: int, split: str, test_fraction: float = 0.2) -> list[int]:
    """Indices ``0..num_images-1`` of a split: ``"trainval"``, ``"test"``, ``"train"``, ``"val"`` or ``"all"``.

    ``train``/``val`` divide ``trainval`` with the same rule (every 5th trainval image is ``val``).
    """
    every = list(range(num_images))
    if split == "all":
        return every
    test = [i for i in every if is_test_index(i, test_fraction)]
    trainval = [i for i in every if not is_test_index(i, test_fraction)]
    if split == "test":
        return test
    if split == "trainval":
        return trainval
    if split in ("train", "val"):
        val = [i for j, i in enumerate(trainval) if is_test_index(j, 0.2)]
        return val if split == "val" else [i for j, i in enumerate(trainval) if not is_test_index(j, 0.2)]
    raise ValueError(f"unknown split {split!r}: use trainval, test, train, val or all")


# ------------------------------------------------------------------------------------------------ datasets


class SyntheticCrowds(Dataset):
    """Synthetic crowd scenes drawn on the fly: the same items as the VOC-layout folder ``rssd synth`` writes.

    Items are ``(image, target)`` as in :mod:`rssd.data.common`; targets also carry ``"visible"`` ``(G,)``.

    Args:
        num_images: size of the whole set (all splits together).
        seed: scene seed.
        split: ``"trainval"``, ``"test"``, ``"train"``, ``"val"`` or ``"all"`` (see :func:`split_indices`).
        config: generator settings (image size...).
        keep_difficult: keep objects flagged difficult (as in :class:`~rssd.data.voc.VOCDataset`).
        transform: ``callable(image, target) -> (image, target)``.
        test_fraction: share of images in ``test``.
    """

    classes: tuple[str, ...] = SYNTH_CLASSES

    def __init__(
        self,
        num_images: int = 1000,
        seed: int = 0,
        split: str = "trainval",
        *,
        config: SynthConfig | None = None,
        keep_difficult: bool = False,
        transform: Callable[[Any, Target], tuple[Any, Target]] | None = None,
        test_fraction: float = 0.2,
    ) -> None:
        self.num_images = int(num_images)
        self.seed = int(seed)
        self.split = split
        self.config = config or SynthConfig()
        self.keep_difficult = keep_difficult
        self.transform = transform
        self.indices = split_indices(self.num_images, split, test_fraction)

    @property
    def num_classes(self) -> int:
        return len(self.classes) + 1

    def __len__(self) -> int:
        return len(self.indices)

    def scene(self, i: int) -> SynthScene:
        """The full :class:`SynthScene` of item ``i`` (difficult objects included)."""
        return render_scene(self.seed, self.indices[i], self.config)

    def scenes(self) -> Iterator[SynthScene]:
        for i in range(len(self)):
            yield self.scene(i)

    def __getitem__(self, i: int) -> tuple[Any, Target]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        sc = self.scene(i)
        keep = np.ones(len(sc), bool) if self.keep_difficult else ~sc.difficult
        image = tv_tensors.Image(np.ascontiguousarray(sc.image.transpose(2, 0, 1)))
        target = make_target(sc.boxes[keep], sc.labels[keep], sc.difficult[keep], sc.image_id, sc.image.shape[:2])
        target["visible"] = np.asarray(sc.visible[keep], np.float32)
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"SyntheticCrowds(num_images={self.num_images}, seed={self.seed}, split={self.split!r}, n={len(self)})"


def scene_to_voc_xml(scene: SynthScene) -> str:
    """The VOC annotation of a scene: 1-based inclusive boxes, plus ``<visible>`` per object."""
    h, w = scene.image.shape[:2]
    objs = []
    for (x1, y1, x2, y2), name, diff, vis, trunc in zip(
        scene.boxes, scene.names, scene.difficult, scene.visible, scene.truncated, strict=True
    ):
        objs.append(
            f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>{int(trunc)}</truncated>\n"
            f"\t\t<difficult>{int(diff)}</difficult>\n\t\t<visible>{vis:.4f}</visible>\n\t\t<bndbox>\n"
            f"\t\t\t<xmin>{int(x1) + 1}</xmin>\n\t\t\t<ymin>{int(y1) + 1}</ymin>\n"
            f"\t\t\t<xmax>{int(x2)}</xmax>\n\t\t\t<ymax>{int(y2)}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        )
    return (
        f"<annotation>\n\t<folder>synth</folder>\n\t<filename>{scene.image_id}.jpg</filename>\n"
        f"\t<source><database>rssd synthetic crowd scenes</database></source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n{''.join(objs)}</annotation>\n"
    )


def _write_one(args: tuple[Path, int, int, SynthConfig, int]) -> int:
    out, seed, index, cfg, quality = args
    scene = render_scene(seed, index, cfg)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"could not encode image {scene.image_id}")
    (out / "JPEGImages" / f"{scene.image_id}.jpg").write_bytes(buf.tobytes())
    (out / "Annotations" / f"{scene.image_id}.xml").write_text(scene_to_voc_xml(scene))
    return len(scene)


def write_synthetic_voc(
    out: str | os.PathLike,
    num_images: int,
    seed: int = 0,
    *,
    config: SynthConfig | None = None,
    test_fraction: float = 0.2,
    jpeg_quality: int = 92,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write ``num_images`` scenes in VOC layout under ``out``.

    Layout: ``out/Annotations/*.xml``, ``out/JPEGImages/*.jpg``, ``out/ImageSets/Main/{trainval,test,train,val,
    all}.txt``, ``out/classes.txt`` (one class per line) and ``out/synth.json`` (the settings). Read it back with
    ``VOCDataset(out, split=...)`` or the spec ``synth:out`` / ``vocfmt:out``.

    Args:
        workers: processes drawing scenes (each image is independent, so the output does not depend on it).

    Returns:
        ``out`` as a Path.
    """
    cfg = config or SynthConfig()
    out = Path(out).expanduser()
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(out, int(seed), i, cfg, int(jpeg_quality)) for i in range(int(num_images))]
    it: Any
    if workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn" if os.name == "nt" else "fork").Pool(workers)
        it = pool.imap(_write_one, jobs, chunksize=16)
    else:
        pool = None
        it = map(_write_one, jobs)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(jobs), desc=f"synth -> {out}", unit="img")
    try:
        for _ in it:
            pass
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for split in ("trainval", "test", "train", "val", "all"):
        ids = "".join(f"{i:06d}\n" for i in split_indices(int(num_images), split, test_fraction))
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in SYNTH_CLASSES))
    meta = {"num_images": int(num_images), "seed": int(seed), "test_fraction": test_fraction, "config": asdict(cfg)}
    (out / "synth.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out
