"""Box formats, overlaps and the SSD box coder.

Conventions used across rssd:

* ``xyxy``: ``(x1, y1, x2, y2)``, corners. Boxes the loss sees are normalised to ``[0, 1]`` by the image size.
* ``cxcywh``: ``(cx, cy, w, h)``, centre and size. Priors (default boxes) are stored this way.
* Every function accepts any number of leading batch dimensions unless its docstring says otherwise.

This module imports no other rssd module.
"""

from __future__ import annotations

import math

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
    "paired_iou",
    "paired_iog",
    "encode",
    "decode",
]

#: SSD's encoding variances: centre offsets are divided by 0.1, log size ratios by 0.2.
VARIANCES: tuple[float, float] = (0.1, 0.2)
#: Largest log-size offset :func:`decode` applies (torchvision's ``BoxCoder`` clamp): a box at most 62.5x its prior.
DECODE_CLAMP: float = math.log(1000.0 / 16)


def xyxy_to_cxcywh(boxes_xyxy: Tensor) -> Tensor:
    """``(..., 4)`` corners to ``(..., 4)`` centre-size."""
    return box_convert(boxes_xyxy, "xyxy", "cxcywh")


def cxcywh_to_xyxy(boxes_cxcywh: Tensor) -> Tensor:
    """``(..., 4)`` centre-size to ``(..., 4)`` corners."""
    return box_convert(boxes_cxcywh, "cxcywh", "xyxy")


def _paired_intersection(a_xyxy: Tensor, b_xyxy: Tensor) -> Tensor:
    """Intersection areas of boxes paired element by element (shapes broadcast), ``(...)``."""
    lt = torch.maximum(a_xyxy[..., :2], b_xyxy[..., :2])
    rb = torch.minimum(a_xyxy[..., 2:], b_xyxy[..., 2:])
    wh = (rb - lt).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def _area(boxes_xyxy: Tensor) -> Tensor:
    return (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1])


def paired_iou(a_xyxy: Tensor, b_xyxy: Tensor, eps: float = 1e-9) -> Tensor:
    """IoU of ``a[i]`` with ``b[i]`` (not all pairs: for that use :func:`box_iou`).

    Args:
        a_xyxy, b_xyxy: ``(..., 4)`` boxes whose leading shapes broadcast.
        eps: added to the union, so two empty boxes give 0 rather than NaN.

    Returns:
        ``(...)`` IoU in ``[0, 1]``.
    """
    inter = _paired_intersection(a_xyxy, b_xyxy)
    union = _area(a_xyxy) + _area(b_xyxy) - inter
    return inter / (union + eps)


def paired_iog(boxes_xyxy: Tensor, gts_xyxy: Tensor, eps: float = 1e-9) -> Tensor:
    """Intersection over ground truth, ``area(B ∩ G) / area(G)``, element by element.

    IoG is what RepGT penalises: unlike IoU it cannot be lowered by a predicted box simply growing.

    Args:
        boxes_xyxy: ``(..., 4)`` predicted boxes ``B``.
        gts_xyxy: ``(..., 4)`` ground-truth boxes ``G`` (shapes broadcast with ``boxes_xyxy``).

    Returns:
        ``(...)`` IoG in ``[0, 1]``.
    """
    return _paired_intersection(boxes_xyxy, gts_xyxy) / (_area(gts_xyxy) + eps)


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
