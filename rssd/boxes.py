"""Box formats, overlaps and the SSD box coder.

Conventions used across rssd:

* ``xyxy``: ``(x1, y1, x2, y2)``, corners. Boxes the loss sees are normalised to ``[0, 1]`` by the image size.
* ``cxcywh``: ``(cx, cy, w, h)``, centre and size. Priors (default boxes) are stored this way.
* Every function accepts any number of leading batch dimensions unless its docstring says otherwise.

Overlaps: :func:`box_iou` (torchvision's) for all pairs of two lists of boxes, :func:`elementwise_iou` and
:func:`elementwise_iog` element by element (broadcasting). rssd's torch code computes IoU with these only.

This module imports no other rssd module.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_area, box_convert, box_iou

__all__ = [
    "VARIANCES",
    "DECODE_CLAMP",
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "box_iou",
    "box_area",
    "elementwise_iou",
    "elementwise_iog",
    "iou_of_corners",
    "encode",
    "decode",
]

#: SSD's box-coder variances: centre offsets are divided by 0.1, log size ratios by 0.2. The one setting of the
#: coder: matching, the losses and detection all encode and decode with it (the default of :func:`encode` and
#: :func:`decode`), so a model's offsets always mean the same thing.
VARIANCES: tuple[float, float] = (0.1, 0.2)
#: Largest log-size offset :func:`decode` applies (torchvision's ``BoxCoder`` clamp): a box at most 62.5x its prior.
DECODE_CLAMP: float = math.log(1000.0 / 16)


def xyxy_to_cxcywh(boxes_xyxy: Tensor) -> Tensor:
    """``(..., 4)`` corners to ``(..., 4)`` centre-size."""
    return box_convert(boxes_xyxy, "xyxy", "cxcywh")


def cxcywh_to_xyxy(boxes_cxcywh: Tensor) -> Tensor:
    """``(..., 4)`` centre-size to ``(..., 4)`` corners."""
    return box_convert(boxes_cxcywh, "cxcywh", "xyxy")


def _intersection_and_areas(a: Sequence[Tensor], b: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Intersection areas of boxes paired element by element, and the two boxes' areas, from corner planes.

    ``a`` and ``b`` are ``(x1, y1, x2, y2)`` coordinate tensors whose shapes broadcast. The operations are those of
    torchvision's ``box_iou``, so an IoU from them without ``eps`` is bit-identical to it.
    """
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    w = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    h = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    return w * h, (ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1)


def iou_of_corners(a: Sequence[Tensor], b: Sequence[Tensor], eps: float = 1e-9) -> Tensor:
    """:func:`elementwise_iou` of boxes given as their four coordinate tensors ``(x1, y1, x2, y2)`` (broadcasting).

    For code that already holds coordinate columns (gathered pairs): no ``(..., 4)`` stack is built.
    """
    inter, area_a, area_b = _intersection_and_areas(a, b)
    union = area_a + area_b - inter
    return inter / (union + eps) if eps else inter / union


def elementwise_iou(a_xyxy: Tensor, b_xyxy: Tensor, eps: float = 1e-9) -> Tensor:
    """IoU of ``a[i]`` with ``b[i]``, element by element (for all pairs of two lists use :func:`box_iou`).

    Computed on coordinate planes, never on ``(..., 2)`` corner pairs: broadcasting ``(T, 1, 4)`` with ``(1, P, 4)``
    gives the ``(T, P)`` all-pairs IoU without ``(T, P, 2)`` intermediates.

    Args:
        a_xyxy, b_xyxy: ``(..., 4)`` boxes whose leading shapes broadcast.
        eps: added to the union, so two empty boxes give 0 rather than NaN. ``eps = 0`` gives ``box_iou``'s values
            bit for bit (what matching uses).

    Returns:
        ``(...)`` IoU in ``[0, 1]``.
    """
    return iou_of_corners(a_xyxy.unbind(-1), b_xyxy.unbind(-1), eps)


def elementwise_iog(boxes_xyxy: Tensor, gts_xyxy: Tensor, eps: float = 1e-9) -> Tensor:
    """Intersection over ground truth, ``area(B ∩ G) / area(G)``, element by element.

    IoG is what RepGT penalises: unlike IoU it cannot be lowered by a predicted box simply growing.

    Args:
        boxes_xyxy: ``(..., 4)`` predicted boxes ``B``.
        gts_xyxy: ``(..., 4)`` ground-truth boxes ``G`` (shapes broadcast with ``boxes_xyxy``).

    Returns:
        ``(...)`` IoG in ``[0, 1]``.
    """
    inter, _, area_g = _intersection_and_areas(boxes_xyxy.unbind(-1), gts_xyxy.unbind(-1))
    return inter / (area_g + eps)


_DEPRECATED = {"paired_iou": elementwise_iou, "paired_iog": elementwise_iog}


def __getattr__(name: str):
    """The old names ``paired_iou`` / ``paired_iog``, with a ``DeprecationWarning``."""
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(f"rssd.boxes.{name} is deprecated: use {new.__name__}", DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def encode(
    matched_xyxy: Tensor, priors_cxcywh: Tensor, variances: tuple[float, float] = VARIANCES
) -> Tensor:
    """Encode ground-truth boxes as SSD regression targets relative to their priors.

    ``t_cx = (g_cx - p_cx) / (v0 * p_w)``, ``t_w = log(g_w / p_w) / v1`` (and likewise for y, h).

    Args:
        matched_xyxy: ``(..., P, 4)`` the box each prior regresses to.
        priors_cxcywh: ``(P, 4)`` priors (broadcast over the leading dims).
        variances: ``(v0, v1)``, SSD's (0.1, 0.2).

    Returns:
        ``(..., P, 4)`` offsets ``(t_cx, t_cy, t_w, t_h)``.
    """
    g = xyxy_to_cxcywh(matched_xyxy)
    p = priors_cxcywh
    t_xy = (g[..., :2] - p[..., :2]) / (variances[0] * p[..., 2:])
    # A degenerate (zero-size) target would give log(0); it only happens for padded rows that no loss reads.
    t_wh = torch.log(g[..., 2:].clamp(min=1e-12) / p[..., 2:]) / variances[1]
    return torch.cat([t_xy, t_wh], dim=-1)


def decode(
    loc: Tensor, priors_cxcywh: Tensor, variances: tuple[float, float] = VARIANCES
) -> Tensor:
    """Invert :func:`encode`: predicted offsets back to ``xyxy`` boxes.

    Args:
        loc: ``(..., P, 4)`` offsets.
        priors_cxcywh: ``(P, 4)`` priors.
        variances: ``(v0, v1)``.

    Returns:
        ``(..., P, 4)`` boxes in the priors' coordinate system (normalised ``xyxy`` for SSD).

    The log-size offsets ``loc_wh * v1`` are clamped at :data:`DECODE_CLAMP` (``log(1000 / 16)``, as torchvision's
    box coder), so a diverging model gives large but finite boxes instead of ``inf`` and NaN downstream.
    """
    p = priors_cxcywh
    cxcy = p[..., :2] + loc[..., :2] * variances[0] * p[..., 2:]
    wh = p[..., 2:] * torch.exp((loc[..., 2:] * variances[1]).clamp(max=DECODE_CLAMP))
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=-1)
