"""The PASCAL VOC devkit's records in rssd: ground truth per image, detections per class, and their files.

What the devkit reads and writes, and what :mod:`rssd.voc_eval` scores:

* :class:`GTRecord` (and anything shaped like it, :class:`GroundTruthLike`: :class:`rssd.data.voc.VOCAnnotation`
  fits): the ground truth of one image in VOC's 1-based inclusive pixel coordinates, as in the XML files;
* :class:`ClassDetections`: every detection of one class, in the same coordinates, as in a result file;
* the devkit's result files, one ``<prefix><class>.txt`` per class with lines
  ``<image_id> <score> <xmin> <ymin> <xmax> <ymax>`` (:func:`write_voc_results`, :func:`read_voc_results`);
* conversions from rssd's own pixel boxes (``(x1, y1, x2, y2)`` continuous, 0-based; DEVELOPERS.md), with
  :func:`rssd.data.voc.pixel_xyxy_to_voc` (``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``):
  :func:`gt_from_targets` for dataset targets, :func:`detections_to_voc` for :func:`rssd.detect.detect` outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rssd.data.voc import pixel_xyxy_to_voc

__all__ = [
    "RESULT_PREFIX",
    "GroundTruthLike",
    "GTRecord",
    "ClassDetections",
    "as_numpy",
    "gt_from_targets",
    "detections_to_voc",
    "write_voc_results",
    "read_voc_results",
]

#: The devkit's file name prefix of detection results (competition 4: any training data): ``<prefix><class>.txt``.
RESULT_PREFIX = "comp4_det_test_"


class GroundTruthLike(Protocol):
    """What evaluation reads from a GT record (:class:`GTRecord` and :class:`rssd.data.voc.VOCAnnotation` fit)."""

    image_id: str
    boxes: np.ndarray  # (G, 4) 1-based VOC coordinates
    names: Sequence[str]  # (G,) class names
    difficult: np.ndarray  # (G,) bool


@dataclass(frozen=True)
class GTRecord:
    """The ground truth of one image, as evaluation needs it.

    Attributes:
        image_id: the image's id (the first column of the result files).
        boxes: ``(G, 4)`` float64 ``(xmin, ymin, xmax, ymax)``, VOC's 1-based inclusive pixel coordinates.
        names: ``G`` class names.
        difficult: ``(G,)`` bool.
        visible: ``(G,)`` float visible fraction of each object, or ``None`` when the dataset has none.
    """

    image_id: str
    boxes: np.ndarray
    names: tuple[str, ...]
    difficult: np.ndarray
    visible: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        names = tuple(self.names)
        if not (len(names) == boxes.shape[0] == difficult.shape[0]):
            raise ValueError(
                f"image {self.image_id}: {boxes.shape[0]} boxes, {len(names)} names, {difficult.shape[0]} difficult"
            )
        if self.visible is not None:
            visible = np.asarray(self.visible, dtype=np.float64).reshape(-1)
            if visible.shape[0] != boxes.shape[0]:
                raise ValueError(f"image {self.image_id}: {boxes.shape[0]} boxes, {visible.shape[0]} visible")
            object.__setattr__(self, "visible", visible)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "difficult", difficult)
        object.__setattr__(self, "names", names)


@dataclass(frozen=True)
class ClassDetections:
    """All detections of one class, in the devkit's result-file form.

    Attributes:
        image_ids: ``(D,)`` str image ids.
        scores: ``(D,)`` float64 confidences (higher is more confident).
        boxes: ``(D, 4)`` float64 ``(xmin, ymin, xmax, ymax)`` in VOC's 1-based pixel coordinates.
    """

    image_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.image_ids, dtype=str).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if not (ids.shape[0] == scores.shape[0] == boxes.shape[0]):
            raise ValueError(f"{ids.shape[0]} image ids, {scores.shape[0]} scores and {boxes.shape[0]} boxes")
        object.__setattr__(self, "image_ids", ids)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "boxes", boxes)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> ClassDetections:
        return cls(np.zeros(0, dtype=str), np.zeros(0), np.zeros((0, 4)))

    @classmethod
    def concatenate(cls, parts: Sequence[ClassDetections]) -> ClassDetections:
        """Join detections (in the given order, which is the tie order of equal scores)."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.image_ids for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.boxes for p in parts]),
        )


# ----------------------------------------------------------------------------------------------------------------
# Conversions from rssd's pixels


def as_numpy(x: Any) -> np.ndarray:
    """A tensor (tv_tensors included) or array-like as a numpy array."""
    if hasattr(x, "detach"):
        return np.asarray(x.detach().cpu().tolist() if x.dim() else x.item())
    return np.asarray(x)


def gt_from_targets(targets: Iterable[Mapping[str, Any]], classes: Sequence[str]) -> list[GTRecord]:
    """GT records from dataset targets (rssd's pixel convention) for datasets without VOC XML files.

    Args:
        targets: dicts with ``image_id``, ``boxes`` ``(G, 4)`` rssd pixels (continuous, 0-based), ``labels`` in
            ``1..len(classes)`` and optionally ``difficult`` and ``visible`` (synthetic scenes carry it).
        classes: the dataset's class names without background (label ``i + 1`` is ``classes[i]``).
    """
    out = []
    for t in targets:
        boxes = pixel_xyxy_to_voc(as_numpy(t["boxes"]).reshape(-1, 4))  # back to 1-based inclusive coordinates
        labels = as_numpy(t["labels"]).astype(np.int64).reshape(-1)
        difficult = as_numpy(t["difficult"]).astype(bool) if "difficult" in t else np.zeros(len(labels), bool)
        visible = as_numpy(t["visible"]).astype(np.float64) if "visible" in t else None
        names = tuple(classes[k - 1] for k in labels.tolist())
        out.append(GTRecord(str(t["image_id"]), boxes, names, difficult, visible))
    return out


def detections_to_voc(
    image_ids: Sequence[str], outputs: Sequence[Mapping[str, Any]], classes: Sequence[str]
) -> dict[str, ClassDetections]:
    """Convert :func:`rssd.detect.detect` outputs (rssd pixels) to the devkit's per-class 1-based form.

    Args:
        image_ids: one id per output.
        outputs: dicts with ``boxes`` ``(D, 4)`` rssd pixel ``xyxy``, ``scores`` ``(D,)``, ``labels`` ``(D,)`` in
            ``1..len(classes)`` (tensors or arrays).
        classes: class names without background.

    Returns:
        ``{class: ClassDetections}`` for every class (empty ones included), boxes ``(x1 + 1, y1 + 1, x2, y2)``.
    """
    if len(image_ids) != len(outputs):
        raise ValueError(f"{len(image_ids)} image ids for {len(outputs)} outputs")
    ids, scores, boxes, labels = [], [], [], []
    for image_id, out in zip(image_ids, outputs, strict=True):
        s = as_numpy(out["scores"]).astype(np.float64).reshape(-1)
        ids.append(np.full(s.shape[0], str(image_id), dtype=object))
        scores.append(s)
        boxes.append(as_numpy(out["boxes"]).astype(np.float64).reshape(-1, 4))
        labels.append(as_numpy(out["labels"]).astype(np.int64).reshape(-1))
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=object)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    all_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    if all_labels.size and (all_labels.min() < 1 or all_labels.max() > len(classes)):
        raise ValueError(f"labels must be in 1..{len(classes)}, got {all_labels.min()}..{all_labels.max()}")
    all_boxes = pixel_xyxy_to_voc(all_boxes)
    out_dets = {}
    for k, name in enumerate(classes, start=1):
        sel = np.flatnonzero(all_labels == k)
        out_dets[name] = ClassDetections(all_ids[sel].astype(str), all_scores[sel], all_boxes[sel])
    return out_dets


# ----------------------------------------------------------------------------------------------------------------
# The devkit's result files


def write_voc_results(
    detections: Mapping[str, ClassDetections],
    out_dir: str | os.PathLike,
    classes: Sequence[str] | None = None,
    prefix: str = RESULT_PREFIX,
) -> list[Path]:
    """Write one devkit result file per class: ``<out_dir>/<prefix><class>.txt``.

    Lines are ``<image_id> <score> <xmin> <ymin> <xmax> <ymax>`` (score with 6 decimals, coordinates with 2),
    1-based pixels as :class:`ClassDetections` holds them. ``classes`` (default: the keys of ``detections``)
    get a file each, empty when a class has no detection, so that a reader sees the class was scored.

    Returns:
        The written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in classes if classes is not None else list(detections):
        det = detections.get(c, ClassDetections.empty())
        lines = [
            f"{i} {s:.6f} {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f}\n"
            for i, s, b in zip(det.image_ids.tolist(), det.scores.tolist(), det.boxes.tolist(), strict=True)
        ]
        path = out / f"{prefix}{c}.txt"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(lines))
        tmp.replace(path)
        paths.append(path)
    return paths


def _read_result_file(path: Path) -> ClassDetections:
    text = path.read_text()
    tokens = text.split()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(tokens) != 6 * len(lines):
        for n, ln in enumerate(text.splitlines(), start=1):
            if ln.strip() and len(ln.split()) != 6:
                raise ValueError(f"{path}:{n}: expected '<image_id> <score> <xmin> <ymin> <xmax> <ymax>', got {ln!r}")
    try:
        values = np.array(tokens, dtype=object).reshape(-1, 6)
        scores = values[:, 1].astype(np.float64)
        boxes = values[:, 2:].astype(np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: a score or coordinate is not a number ({e})") from None
    if not (np.isfinite(scores).all() and np.isfinite(boxes).all()):
        raise ValueError(f"{path}: non-finite score or coordinate")
    return ClassDetections(values[:, 0].astype(str), scores, boxes)


def read_voc_results(
    results_dir: str | os.PathLike, classes: Sequence[str] | None = None, prefix: str = RESULT_PREFIX
) -> dict[str, ClassDetections]:
    """Read devkit result files ``<results_dir>/<prefix><class>.txt``.

    Args:
        results_dir: the folder holding the files.
        classes: the classes to read (default: every ``<prefix>*.txt`` present). A listed class without a
            file gets no detections.
        prefix: the file name prefix (``comp4_det_test_``).

    Raises:
        FileNotFoundError: the folder holds no result file with that prefix (for the listed classes).
        ValueError: a malformed line (the message names the file and line).
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: results folder not found")
    if classes is None:
        classes = sorted(p.name[len(prefix) : -4] for p in root.glob(f"{prefix}*.txt"))
    found = {c: root / f"{prefix}{c}.txt" for c in classes if (root / f"{prefix}{c}.txt").is_file()}
    if not found:
        raise FileNotFoundError(
            f"{root}: no {prefix}<class>.txt result files" + (f" for {list(classes)}" if classes else "")
        )
    return {c: _read_result_file(found[c]) if c in found else ClassDetections.empty() for c in classes}
