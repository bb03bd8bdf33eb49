"""The crowd subset of a dataset: ground truths that overlap another ground truth of their own class.

An object is a *crowd object* when its IoU with at least one other ground truth of the same class in the same
image is strictly greater than ``iou_threshold`` (0.1). Difficult objects take part in the pairing. IoU is
computed on the annotation coordinates as written, with no ``+1`` on widths (a box's area is
``(x2 - x1) * (y2 - y1)``), so the result does not depend on 0- or 1-based pixel conventions.

:func:`crowd_mask` is the one function that decides; evaluation (crowd-subset AP), statistics
(:func:`crowd_stats`, ``rssd crowd-stats``) and the notebooks all call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["CROWD_IOU", "box_iou_np", "crowd_mask", "CrowdStats", "crowd_stats", "crowd_stats_per_class"]

#: IoU strictly above this with a same-class neighbour makes an object a crowd object.
CROWD_IOU: float = 0.1


def box_iou_np(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """All-pairs IoU without ``+1``: ``(A, 4)`` x ``(B, 4)`` -> ``(A, B)`` float64; empty boxes give 0.

    The data layer's IoU (numpy, as the annotations; :mod:`rssd.data` imports no other rssd module, so it cannot
    use :func:`rssd.boxes.box_iou`).
    """
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def crowd_mask(
    boxes_xyxy: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | Sequence[Any],
    iou_threshold: float = CROWD_IOU,
) -> np.ndarray | torch.Tensor:
    """Mark the crowd objects of one image.

    Args:
        boxes_xyxy: ``(G, 4)`` ground-truth corners in any one coordinate system (pixels, VOC 1-based, or
            normalised; IoU does not care).
        labels: ``(G,)`` class of each box: integer labels or class names (only equality is used).
        iou_threshold: an object is in the crowd when its IoU with another same-class box is ``> iou_threshold``.

    Returns:
        ``(G,)`` bool: a ``torch.Tensor`` (on the boxes' device) when ``boxes_xyxy`` is a tensor, else a numpy array.
    """
    is_tensor = isinstance(boxes_xyxy, torch.Tensor)
    boxes = boxes_xyxy.detach().cpu().numpy() if is_tensor else np.asarray(boxes_xyxy)
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    boxes = boxes.reshape(-1, 4)
    if lab.shape != (boxes.shape[0],):
        raise ValueError(f"labels have shape {lab.shape}, expected ({boxes.shape[0]},) to match the boxes")
    iou = box_iou_np(boxes, boxes)  # (G, G)
    same = lab[:, None] == lab[None, :]
    np.fill_diagonal(same, False)
    mask = ((iou > iou_threshold) & same).any(axis=1)
    if is_tensor:
        return torch.from_numpy(mask).to(boxes_xyxy.device)
    return mask


@dataclass(frozen=True)
class CrowdStats:
    """Counts over a set of annotations (the keys ``rssd crowd-stats --json`` prints)."""

    images: int
    objects: int
    crowd_objects: int
    crowd_images: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def crowd_fraction(self) -> float:
        """``crowd_objects / objects`` (0 for no objects)."""
        return self.crowd_objects / self.objects if self.objects else 0.0


def crowd_stats(annotations: Iterable[Any], iou_threshold: float = CROWD_IOU) -> CrowdStats:
    """Count images, objects, crowd objects and images holding at least one crowd object.

    Args:
        annotations: objects with ``boxes`` ``(G, 4)`` and ``names`` (e.g. :class:`rssd.data.voc.VOCAnnotation`),
            or ``labels`` instead of ``names``. Every object counts, difficult ones included.
        iou_threshold: see :func:`crowd_mask`.
    """
    images = objects = crowd_objects = crowd_images = 0
    for ann in annotations:
        names = ann.names if hasattr(ann, "names") else ann.labels
        mask = np.asarray(crowd_mask(ann.boxes, names, iou_threshold))
        images += 1
        objects += int(mask.size)
        crowd_objects += int(mask.sum())
        crowd_images += int(mask.any())
    return CrowdStats(images=images, objects=objects, crowd_objects=crowd_objects, crowd_images=crowd_images)


def crowd_stats_per_class(annotations: Iterable[Any], iou_threshold: float = CROWD_IOU) -> dict[str, tuple[int, int]]:
    """``{class name: (objects, crowd objects)}`` over ``annotations`` (with ``boxes``, ``names``), by name."""
    counts: dict[str, list[int]] = {}
    for ann in annotations:
        mask = np.asarray(crowd_mask(ann.boxes, ann.names, iou_threshold))
        for name, is_crowd in zip(ann.names, mask, strict=True):
            c = counts.setdefault(name, [0, 0])
            c[0] += 1
            c[1] += int(is_crowd)
    return {k: (v[0], v[1]) for k, v in sorted(counts.items())}
