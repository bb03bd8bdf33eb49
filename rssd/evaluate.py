"""PASCAL VOC evaluation as the official devkit computes it, the crowd subset, and the log-average miss rate.

What is scored (the devkit's ``VOCevaldet``, also py-faster-rcnn's ``voc_eval``), for each class separately:

* The detections of the class, over all images, are sorted by decreasing score. The sort is stable: tied scores
  keep the order in which they were given (the order of the lines of the result file).
* Each detection is compared with the ground truths (GTs) of its image and class, difficult ones included, and
  takes the GT of maximal IoU (the first one, in annotation order, on a tie). IoU uses the devkit's ``+1``
  pixel widths on the 1-based inclusive coordinates: ``w = x2 - x1 + 1``; a GT that does not overlap (``iw <= 0``
  or ``ih <= 0``) is never taken.
* If that IoU is ``>= 0.5``: a difficult GT makes the detection *ignored* (neither TP nor FP); otherwise the
  detection is a TP if the GT was not matched yet (the GT is then matched), and an FP if it was (duplicate).
  Note that the devkit does not look for another GT when the best one is taken or difficult. IoU ``< 0.5``: FP.
* ``npos`` is the number of non-difficult GTs. Precision ``tp / (tp + fp)`` and recall ``tp / npos`` are
  cumulative over the sorted detections (ignored ones included, where nothing changes; ``0 / 0`` precision is 0).
* AP: ``"voc07"`` (VOC2007's default, ``use_07_metric``) averages, over the 11 recall thresholds ``t`` of the
  devkit's loop ``for t=0:0.1:1``, the best precision at recall ``>= t`` (0 when none). ``"all-point"`` (VOC2010+)
  is the area under the precision envelope, taken at every recall change.
* A class with no non-difficult GT has AP ``None`` (JSON ``null``) and is left out of the mean (mAP).

The recall thresholds are the ``double`` values MATLAB's colon operator produces for ``0:0.1:1`` (first half
``k * 0.1``, second half ``1 - (10 - k) * 0.1``): ``0.30000000000000004`` for 0.3, so a recall of exactly 3/10
does not reach that threshold, as in the devkit. py-faster-rcnn's ``np.arange(0., 1.1, 0.1)`` overshoots 0.6 and
0.7 as well, so it can differ from the devkit (by at most one point's precision / 11) when a class's recall is
exactly 0.6 or 0.7 at some detection.

Everything is vectorised per class with numpy: detection-GT pairs within an image are enumerated at once, the best
GT of each detection is a segmented arg-max, and "first detection of each GT" is one ``np.unique`` (the devkit's
greedy loop reduces to that, since a detection's best GT does not depend on which GTs are matched already).

Coordinates: GT records and :class:`ClassDetections` hold boxes in VOC's 1-based inclusive pixel coordinates,
as in the XML files and the result files. :func:`detections_to_voc` converts rssd's pixel boxes
(``(x1, y1, x2, y2)`` continuous, 0-based; DEVELOPERS.md) with ``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``.

Subsets: ``subset="crowd"`` evaluates the crowd objects (GUIDE; :func:`rssd.data.crowd.crowd_mask`) under one of two
protocols, see :func:`crowd_subset`. ``subset="reasonable" | "bare" | "partial" | "heavy"`` are the occlusion levels
of CityPersons (and of Repulsion Loss's Table 3), for datasets whose objects carry a visible fraction
(:data:`OCCLUSION_SUBSETS`, :func:`occlusion_subset`): objects outside the level are ignored, not deleted.

Miss rate: :func:`log_average_miss_rate` is MR^-2 of the pedestrian literature (Dollár et al., the Caltech
toolbox's ``bbGt('compRoc')``), on the matches above: miss rate ``1 - recall`` against false positives per image
(all images of the evaluation), sampled at 9 FPPI values ``10^-2, 10^-1.75, ..., 10^0``. At each value it takes the
recall of the last detection whose FPPI does not exceed it (recall 0 if even the first one does); the result is
``exp(mean(log(max(1e-10, miss))))``. Ignored detections are dropped first, as in the toolbox.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "METRICS",
    "RESULT_PREFIX",
    "GTRecord",
    "ClassDetections",
    "ClassMatch",
    "MR_FPPI",
    "MissRate",
    "VOCResult",
    "voc_iou",
    "match_class",
    "average_precision",
    "crowd_subset",
    "SUBSETS",
    "OCCLUSION_SUBSETS",
    "occlusion_subset",
    "log_average_miss_rate",
    "evaluate_voc",
    "gt_from_targets",
    "detections_to_voc",
    "write_voc_results",
    "read_voc_results",
    "format_table",
    "plot_pr_curves",
    "plot_miss_rate",
    "Predictions",
    "predict",
    "predict_many",
    "ground_truth_of",
    "evaluate_predictions",
    "ERROR_KINDS",
    "classify_detections",
]

Metric = Literal["voc07", "all-point"]
#: AP variants: ``"voc07"`` (11-point, VOC2007's default) and ``"all-point"`` (VOC2010 and later).
METRICS: tuple[str, ...] = ("voc07", "all-point")
#: The devkit's file name prefix of detection results (competition 4: any training data): ``<prefix><class>.txt``.
RESULT_PREFIX = "comp4_det_test_"

#: ``for t=0:0.1:1`` in the devkit, as MATLAB's colon operator computes it (see the module docstring).
_VOC07_RECALLS: tuple[float, ...] = tuple(
    k * 0.1 if k < 5 else (0.5 if k == 5 else 1.0 - (10 - k) * 0.1) for k in range(11)
)


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
# Matching and AP


def voc_iou(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """The devkit's IoU of boxes paired element by element (shapes broadcast), ``+1`` pixel widths.

    Args:
        det_boxes, gt_boxes: ``(..., 4)`` 1-based inclusive ``(xmin, ymin, xmax, ymax)``.

    Returns:
        ``(...)`` float64: ``iw * ih / ua``; ``-inf`` where the boxes do not overlap (``iw <= 0`` or ``ih <= 0``),
        where the devkit computes no overlap at all.
    """
    b = np.asarray(det_boxes, dtype=np.float64)
    g = np.asarray(gt_boxes, dtype=np.float64)
    iw = np.minimum(b[..., 2], g[..., 2]) - np.maximum(b[..., 0], g[..., 0]) + 1.0
    ih = np.minimum(b[..., 3], g[..., 3]) - np.maximum(b[..., 1], g[..., 1]) + 1.0
    inter = iw * ih
    ua = (
        (b[..., 2] - b[..., 0] + 1.0) * (b[..., 3] - b[..., 1] + 1.0)
        + (g[..., 2] - g[..., 0] + 1.0) * (g[..., 3] - g[..., 1] + 1.0)
        - inter
    )
    overlap = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, ua, 1.0), -np.inf)


@dataclass(frozen=True)
class ClassMatch:
    """The devkit's verdict on every detection of one class, in evaluation order (decreasing score).

    Attributes:
        class_name: the class.
        scores: ``(D,)`` sorted decreasing (stable).
        tp, fp: ``(D,)`` bool; a detection that is neither was matched to a difficult (or ignored) GT.
        gt_index: ``(D,)`` int64 index of the GT the detection was compared with, among the class's GTs in image
            order, ``-1`` when it overlaps none.
        image_index: ``(D,)`` int64 position of the detection's image in the evaluated image list.
        order: ``(D,)`` int64 position of each sorted detection in the input :class:`ClassDetections`.
        npos: number of non-difficult GTs of the class.
        num_images: number of images evaluated (for false positives per image).
    """

    class_name: str
    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    gt_index: np.ndarray
    image_index: np.ndarray
    order: np.ndarray
    npos: int
    num_images: int

    @property
    def ignored(self) -> np.ndarray:
        """``(D,)`` bool: detections counted neither way."""
        return ~(self.tp | self.fp)

    @property
    def tp_cumsum(self) -> np.ndarray:
        return np.cumsum(self.tp, dtype=np.int64)

    @property
    def fp_cumsum(self) -> np.ndarray:
        return np.cumsum(self.fp, dtype=np.int64)

    @property
    def recall(self) -> np.ndarray:
        """``(D,)`` cumulative recall ``tp / npos`` (NaN when ``npos == 0``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.tp_cumsum / np.float64(self.npos)

    @property
    def precision(self) -> np.ndarray:
        """``(D,)`` cumulative precision ``tp / (tp + fp)``; 0 while nothing is counted yet."""
        tp, fp = self.tp_cumsum, self.fp_cumsum
        return tp / np.maximum(tp + fp, np.finfo(np.float64).eps)


class _ClassGT:
    """GTs of one class, grouped by image: ``boxes (G, 4)``, ``difficult (G,)``, ``starts, counts (I,)``."""

    __slots__ = ("boxes", "difficult", "starts", "counts")

    def __init__(self, boxes: np.ndarray, difficult: np.ndarray, image_of: np.ndarray, num_images: int) -> None:
        # ``image_of`` is sorted (GTs come image by image), so a class's GTs of one image are contiguous.
        self.boxes = boxes
        self.difficult = difficult
        self.counts = np.bincount(image_of, minlength=num_images).astype(np.int64)
        self.starts = np.cumsum(self.counts) - self.counts


class _GTIndex:
    """All GT records flattened once, with a per-class view built on demand."""

    def __init__(self, records: Sequence[GroundTruthLike]) -> None:
        self.image_ids = [str(r.image_id) for r in records]
        self.position = {image_id: i for i, image_id in enumerate(self.image_ids)}
        if len(self.position) != len(self.image_ids):
            seen: set[str] = set()
            dup = next(i for i in self.image_ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise ValueError(f"image id {dup!r} appears twice in the ground truth")
        self.num_images = len(self.image_ids)
        counts = [len(r.names) for r in records]
        self.image_of = np.repeat(np.arange(self.num_images, dtype=np.int64), counts)
        self.names = np.array([n for r in records for n in r.names], dtype=str)
        self.boxes = (
            np.concatenate([np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4) for r in records])
            if records
            else np.zeros((0, 4))
        )
        self.difficult = (
            np.concatenate([np.asarray(r.difficult, dtype=bool).reshape(-1) for r in records])
            if records
            else np.zeros(0, dtype=bool)
        )
        if self.boxes.shape[0] != self.names.shape[0] or self.difficult.shape[0] != self.names.shape[0]:
            raise ValueError("every GT record needs as many boxes and difficult flags as names")

    def class_names(self) -> list[str]:
        return sorted(set(self.names.tolist()))

    def for_class(self, class_name: str) -> _ClassGT:
        sel = np.flatnonzero(self.names == class_name)
        return _ClassGT(self.boxes[sel], self.difficult[sel], self.image_of[sel], self.num_images)

    def image_positions(self, image_ids: np.ndarray, class_name: str) -> np.ndarray:
        pos = self.position
        out = np.fromiter((pos.get(i, -1) for i in image_ids.tolist()), dtype=np.int64, count=image_ids.shape[0])
        if out.size and out.min() < 0:
            unknown = sorted({i for i, p in zip(image_ids.tolist(), out.tolist(), strict=True) if p < 0})
            raise ValueError(
                f"{class_name}: {len(unknown)} detected image id(s) are not in the evaluated image set, "
                f"e.g. {unknown[:3]}"
            )
        return out


def _match(gt: _ClassGT, det_image: np.ndarray, det_boxes: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, ...]:
    """Devkit matching of detections already sorted by decreasing score. Returns ``tp, fp, gt_index``."""
    d = det_image.shape[0]
    pairs_per_det = gt.counts[det_image]  # (D,) GTs of the class in each detection's image
    first_pair = np.cumsum(pairs_per_det) - pairs_per_det  # (D,)
    det_of_pair = np.repeat(np.arange(d, dtype=np.int64), pairs_per_det)  # (Q,) pairs grouped by detection
    gt_of_pair = gt.starts[det_image][det_of_pair] + (np.arange(det_of_pair.shape[0]) - first_pair[det_of_pair])
    iou = voc_iou(det_boxes[det_of_pair], gt.boxes[gt_of_pair])  # (Q,)

    # Best GT of each detection: the maximal IoU, the first GT (annotation order) on a tie.
    ovmax = np.full(d, -np.inf)
    has = pairs_per_det > 0
    if has.any():
        ovmax[has] = np.maximum.reduceat(iou, first_pair[has])
    gt_index = np.full(d, -1, dtype=np.int64)
    at_max = np.flatnonzero((iou == ovmax[det_of_pair]) & np.isfinite(iou))
    dets_at_max, first = np.unique(det_of_pair[at_max], return_index=True)
    gt_index[dets_at_max] = gt_of_pair[at_max[first]]

    matched = ovmax >= iou_threshold  # (D,)
    difficult = np.zeros(d, dtype=bool)
    difficult[matched] = gt.difficult[gt_index[matched]]
    candidates = np.flatnonzero(matched & ~difficult)  # in score order
    _, first_of_gt = np.unique(gt_index[candidates], return_index=True)  # first detection of each GT -> TP
    tp = np.zeros(d, dtype=bool)
    tp[candidates[first_of_gt]] = True
    fp = ~matched | (matched & ~difficult & ~tp)
    return tp, fp, gt_index


def match_class(
    ground_truth: Sequence[GroundTruthLike] | _GTIndex,
    detections: ClassDetections,
    class_name: str,
    iou_threshold: float = 0.5,
) -> ClassMatch:
    """Label every detection of ``class_name`` TP, FP or ignored, as the devkit does (module docstring).

    Args:
        ground_truth: one record per evaluated image (:class:`GTRecord`, :class:`rssd.data.voc.VOCAnnotation`).
        detections: the class's detections; their image ids must all be in ``ground_truth``.
        class_name: the class, as spelled in the records' ``names``.
        iou_threshold: the devkit's ``minoverlap`` (0.5).

    Returns:
        The :class:`ClassMatch`, detections in evaluation order.
    """
    index = ground_truth if isinstance(ground_truth, _GTIndex) else _GTIndex(ground_truth)
    gt = index.for_class(class_name)
    order = np.argsort(-detections.scores, kind="stable")  # the devkit's stable sort(-confidence)
    det_image = index.image_positions(detections.image_ids, class_name)[order]
    tp, fp, gt_index = _match(gt, det_image, detections.boxes[order], iou_threshold)
    return ClassMatch(
        class_name=class_name,
        scores=detections.scores[order],
        tp=tp,
        fp=fp,
        gt_index=gt_index,
        image_index=det_image,
        order=order,
        npos=int((~gt.difficult).sum()),
        num_images=index.num_images,
    )


def average_precision(match: ClassMatch, metric: Metric = "voc07") -> float | None:
    """AP of one class from its :class:`ClassMatch`: ``"voc07"`` (11-point) or ``"all-point"``.

    Returns ``None`` when the class has no non-difficult GT (``npos == 0``); 0.0 when it has no detection.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if match.npos == 0:
        return None
    rec, prec = match.recall, match.precision
    if metric == "voc07":
        ap = 0.0
        for t in _VOC07_RECALLS:
            above = prec[rec >= t]
            ap += (float(above.max()) if above.size else 0.0) / 11.0
        return ap
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, from the right
    i = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


# ----------------------------------------------------------------------------------------------------------------
# Subsets and miss rate

CrowdProtocol = Literal["remove", "ignore"]


def crowd_subset(
    ground_truth: Sequence[GroundTruthLike], protocol: CrowdProtocol = "remove", iou_threshold: float | None = None
) -> list[GTRecord]:
    """GT records restricted to the crowd objects (:func:`rssd.data.crowd.crowd_mask`, per image and by class).

    Protocols:
        ``"remove"``: the non-crowd objects are deleted; a detection on one of them is then a false positive
            (unless it also overlaps a crowd object). Crowd objects keep their difficult flag.
        ``"ignore"``: the non-crowd objects become difficult, so detections on them count neither way and they
            are not in ``npos``.

    Every image stays in the evaluation (images without crowd objects still collect false positives).
    ``iou_threshold`` defaults to the GUIDE's 0.1 (:data:`rssd.data.crowd.CROWD_IOU`).
    """
    from rssd.data.crowd import CROWD_IOU, crowd_mask

    if protocol not in ("remove", "ignore"):
        raise ValueError(f"unknown crowd protocol {protocol!r}; expected 'remove' or 'ignore'")
    thr = CROWD_IOU if iou_threshold is None else iou_threshold
    out = []
    for r in ground_truth:
        boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
        difficult = np.asarray(r.difficult, dtype=bool).reshape(-1)
        names = tuple(r.names)
        crowd = np.asarray(crowd_mask(boxes, list(names), thr), dtype=bool).reshape(-1)
        if protocol == "remove":
            keep = np.flatnonzero(crowd)
            out.append(GTRecord(str(r.image_id), boxes[keep], tuple(names[k] for k in keep), difficult[keep]))
        else:
            out.append(GTRecord(str(r.image_id), boxes, names, difficult | ~crowd))
    return out


#: Occlusion levels: name -> ``(lowest, highest)`` visible fraction, ``lo <= v < hi`` (Repulsion Loss Table 3, after
#: CityPersons). ``heavy`` is ``v < 0.65``; CityPersons' official heavy setup also needs ``v >= 0.2``, which
#: ``heavy-cp`` is. Every level also requires a box height of at least ``min_height`` pixels (CityPersons: 50).
OCCLUSION_SUBSETS: dict[str, tuple[float, float]] = {
    "reasonable": (0.65, np.inf),
    "bare": (0.9, np.inf),
    "partial": (0.65, 0.9),
    "heavy": (0.0, 0.65),
    "heavy-cp": (0.2, 0.65),
}
#: Every ``subset=`` that :func:`evaluate_voc` takes.
SUBSETS: tuple[str, ...] = ("all", "crowd", *OCCLUSION_SUBSETS)


def occlusion_subset(
    ground_truth: Sequence[GroundTruthLike], level: str, min_height: float = 50.0
) -> list[GTRecord]:
    """GT records in which the objects outside an occlusion level are ignored (made difficult), as in CityPersons.

    An object is in level ``level`` (:data:`OCCLUSION_SUBSETS`) when its visible fraction ``v`` satisfies
    ``lo <= v < hi`` and its box is at least ``min_height`` pixels tall (``ymax - ymin + 1`` in the 1-based
    coordinates); objects already difficult stay difficult. Objects outside the level are neither TP nor FP: a
    detection on one is ignored, as the Caltech / CityPersons tools treat their "ignore" objects. Every image
    stays in the evaluation, so false positives on the background still count.

    Raises:
        ValueError: ``level`` is unknown, or a record carries no visible fractions (name the image).
    """
    if level not in OCCLUSION_SUBSETS:
        raise ValueError(f"unknown occlusion level {level!r}; expected one of {', '.join(OCCLUSION_SUBSETS)}")
    lo, hi = OCCLUSION_SUBSETS[level]
    out = []
    for r in ground_truth:
        boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
        visible = getattr(r, "visible", None)
        if visible is None:
            where = getattr(r, "path", None) or f"image {r.image_id}"
            raise ValueError(
                f"{where}: no visible fraction per object, so occlusion level {level!r} cannot be evaluated "
                f"(CityPersons-style data carry one; VOC XML needs a <visible> element in every object)"
            )
        visible = np.asarray(visible, dtype=np.float64).reshape(-1)
        height = boxes[:, 3] - boxes[:, 1] + 1.0
        inside = (visible >= lo) & (visible < hi) & (height >= min_height)
        difficult = np.asarray(r.difficult, dtype=bool).reshape(-1) | ~inside
        out.append(GTRecord(str(r.image_id), boxes, tuple(r.names), difficult, visible))
    return out


#: FPPI sample points of MR^-2: 9 values evenly spaced in log space from 1e-2 to 1e0 (MATLAB ``10.^(-2:.25:0)``).
MR_FPPI: tuple[float, ...] = tuple(float(10.0**e) for e in np.arange(-2.0, 0.01, 0.25))


@dataclass(frozen=True)
class MissRate:
    """Miss rate against false positives per image for one class.

    Attributes:
        class_name: the class.
        lamr: log-average miss rate MR^-2 in ``[0, 1]`` (``None`` when the class has no non-difficult GT).
        fppi: ``(D',)`` false positives per image after each counted (non-ignored) detection.
        miss_rate: ``(D',)`` ``1 - recall`` after each counted detection.
        reference_fppi: the 9 sample points.
        reference_miss_rate: ``(9,)`` the miss rate at each sample point.
    """

    class_name: str
    lamr: float | None
    fppi: np.ndarray
    miss_rate: np.ndarray
    reference_fppi: np.ndarray
    reference_miss_rate: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "lamr": self.lamr,
            "fppi": [float(x) for x in self.reference_fppi],
            "miss_rate": [float(x) for x in self.reference_miss_rate],
        }


def log_average_miss_rate(match: ClassMatch, fppi_points: Sequence[float] = MR_FPPI) -> MissRate:
    """MR^-2 of a class from its :class:`ClassMatch` (the Caltech toolbox's protocol; module docstring).

    Args:
        match: the class's matches; ``match.num_images`` is the FPPI denominator.
        fppi_points: where the miss rate is sampled (default: 9 points from 1e-2 to 1).
    """
    counted = ~match.ignored
    tp = np.cumsum(match.tp[counted], dtype=np.int64)
    fp = np.cumsum(match.fp[counted], dtype=np.int64)
    ref = np.asarray(fppi_points, dtype=np.float64)
    fppi = fp / max(match.num_images, 1)
    if match.npos == 0:
        nan = np.full(ref.shape, np.nan)
        return MissRate(match.class_name, None, fppi, np.full(fppi.shape, np.nan), ref, nan)
    recall = tp / match.npos
    # xs1 = [-inf, fppi], ys1 = [0, recall]; at each point the last index with xs1 <= point.
    last = np.searchsorted(fppi, ref, side="right")  # number of detections with fppi <= point
    recall_at = np.concatenate([[0.0], recall])[last]
    miss_at = 1.0 - recall_at
    lamr = float(np.exp(np.mean(np.log(np.maximum(1e-10, miss_at)))))
    return MissRate(match.class_name, lamr, fppi, 1.0 - recall, ref, miss_at)


# ----------------------------------------------------------------------------------------------------------------
# The evaluation


@dataclass
class VOCResult:
    """Everything :func:`evaluate_voc` computed.

    Attributes:
        classes: the evaluated classes, in table order.
        ap: class -> AP, ``None`` for a class without non-difficult GT.
        mAP: mean of the non-``None`` APs (``None`` if there is none).
        metric, iou_threshold, subset, crowd_protocol: how it was scored.
        num_images: images evaluated.
        matches: class -> :class:`ClassMatch` (precision/recall curves, TP/FP counts).
        miss_rate: MR^-2 of ``mr_class`` when asked for and present.
        seconds: time spent scoring (matching + AP + miss rate), not loading.
    """

    classes: tuple[str, ...]
    ap: dict[str, float | None]
    mAP: float | None
    metric: str
    iou_threshold: float
    subset: str
    crowd_protocol: str | None
    num_images: int
    matches: dict[str, ClassMatch] = field(repr=False)
    miss_rate: MissRate | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``mAP``, ``ap`` (class -> AP or ``None``), counts, settings, miss rate, seconds."""
        return {
            "mAP": self.mAP,
            "ap": dict(self.ap),
            "metric": self.metric,
            "iou_threshold": self.iou_threshold,
            "subset": self.subset,
            "crowd_protocol": self.crowd_protocol,
            "num_images": self.num_images,
            "npos": {c: self.matches[c].npos for c in self.classes},
            "num_detections": {c: int(self.matches[c].scores.shape[0]) for c in self.classes},
            "miss_rate": self.miss_rate.as_dict() if self.miss_rate is not None else None,
            "seconds": self.seconds,
        }

    def table(self) -> str:
        return format_table(self)


def evaluate_voc(
    ground_truth: Sequence[GroundTruthLike],
    detections: Mapping[str, ClassDetections],
    classes: Sequence[str] | None = None,
    *,
    metric: Metric = "voc07",
    iou_threshold: float = 0.5,
    subset: str = "all",
    crowd_protocol: CrowdProtocol = "remove",
    mr_class: str | None = "person",
    min_height: float = 50.0,
) -> VOCResult:
    """Score detections against GT records, class by class, as the VOC devkit does.

    Args:
        ground_truth: one record per image of the evaluated set (``image_id``, ``boxes`` 1-based ``(G, 4)``,
            ``names``, ``difficult``): :class:`GTRecord`, or :class:`rssd.data.voc.VOCAnnotation` as
            :func:`rssd.data.voc.load_voc_annotations` returns them.
        detections: class name -> :class:`ClassDetections` (e.g. :func:`read_voc_results`); a class that is
            missing has no detections.
        classes: the classes to score, in table order (default: every class named in the GT or the detections,
            sorted). Detections of a class outside ``classes`` are an error (a misspelt class would score 0).
        metric: ``"voc07"`` (11-point) or ``"all-point"``.
        iou_threshold: minimum IoU of a TP (0.5).
        subset: ``"all"``, ``"crowd"`` (the crowd objects only, under ``crowd_protocol``; :func:`crowd_subset`) or an
            occlusion level of :data:`OCCLUSION_SUBSETS` (the others ignored; :func:`occlusion_subset`).
        crowd_protocol: ``"remove"`` or ``"ignore"``, for ``subset="crowd"``.
        min_height: for the occlusion levels, the smallest box height (pixels) in the level.
        mr_class: the class whose log-average miss rate is computed too (``None``: none). Skipped silently
            when the class is not among ``classes``.

    Returns:
        A :class:`VOCResult`.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    t0 = time.perf_counter()
    if subset == "crowd":
        records = crowd_subset(ground_truth, crowd_protocol)
    elif subset in OCCLUSION_SUBSETS:
        records = occlusion_subset(ground_truth, subset, min_height)
    else:
        records = ground_truth
    index = _GTIndex(records)
    if classes is None:
        classes = sorted(set(index.class_names()) | set(detections))
    classes = tuple(classes)
    unknown = sorted(set(detections) - set(classes))
    if unknown:
        raise ValueError(f"detections for classes that are not evaluated: {unknown} (evaluated: {list(classes)})")

    matches: dict[str, ClassMatch] = {}
    ap: dict[str, float | None] = {}
    for c in classes:
        matches[c] = match_class(index, detections.get(c, ClassDetections.empty()), c, iou_threshold)
        ap[c] = average_precision(matches[c], metric)
    valid = [v for v in ap.values() if v is not None]
    mean_ap = float(np.mean(valid)) if valid else None
    mr = log_average_miss_rate(matches[mr_class]) if mr_class is not None and mr_class in matches else None
    return VOCResult(
        classes=classes,
        ap=ap,
        mAP=mean_ap,
        metric=metric,
        iou_threshold=iou_threshold,
        subset=subset,
        crowd_protocol=crowd_protocol if subset == "crowd" else None,
        num_images=index.num_images,
        matches=matches,
        miss_rate=mr,
        seconds=time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------------------------------------------
# Conversions and the devkit's result files


def gt_from_targets(targets: Iterable[Mapping[str, Any]], classes: Sequence[str]) -> list[GTRecord]:
    """GT records from dataset targets (rssd's pixel convention) for datasets without VOC XML files.

    Args:
        targets: dicts with ``image_id``, ``boxes`` ``(G, 4)`` rssd pixels (continuous, 0-based), ``labels`` in
            ``1..len(classes)`` and optionally ``difficult`` and ``visible`` (synthetic scenes carry it).
        classes: the dataset's class names without background (label ``i + 1`` is ``classes[i]``).
    """
    out = []
    for t in targets:
        boxes = np.array(_numpy(t["boxes"]), dtype=np.float64).reshape(-1, 4)
        boxes[:, :2] += 1.0  # x1 + 1, y1 + 1: back to 1-based inclusive coordinates
        labels = _numpy(t["labels"]).astype(np.int64).reshape(-1)
        difficult = _numpy(t["difficult"]).astype(bool) if "difficult" in t else np.zeros(len(labels), bool)
        visible = _numpy(t["visible"]).astype(np.float64) if "visible" in t else None
        names = tuple(classes[k - 1] for k in labels.tolist())
        out.append(GTRecord(str(t["image_id"]), boxes, names, difficult, visible))
    return out


def _numpy(x: Any) -> np.ndarray:
    """A tensor (tv_tensors included) or array-like as a numpy array."""
    if hasattr(x, "detach"):
        return np.asarray(x.detach().cpu().tolist() if x.dim() else x.item())
    return np.asarray(x)


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
        s = _numpy(out["scores"]).astype(np.float64).reshape(-1)
        ids.append(np.full(s.shape[0], str(image_id), dtype=object))
        scores.append(s)
        boxes.append(_numpy(out["boxes"]).astype(np.float64).reshape(-1, 4))
        labels.append(_numpy(out["labels"]).astype(np.int64).reshape(-1))
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=object)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    all_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    if all_labels.size and (all_labels.min() < 1 or all_labels.max() > len(classes)):
        raise ValueError(f"labels must be in 1..{len(classes)}, got {all_labels.min()}..{all_labels.max()}")
    all_boxes[:, :2] += 1.0
    out_dets = {}
    for k, name in enumerate(classes, start=1):
        sel = np.flatnonzero(all_labels == k)
        out_dets[name] = ClassDetections(all_ids[sel].astype(str), all_scores[sel], all_boxes[sel])
    return out_dets


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


# ----------------------------------------------------------------------------------------------------------------
# Reporting


def format_table(result: VOCResult) -> str:
    """A plain-text per-class table: AP, non-difficult GTs, detections, TP, FP; then mAP and MR^-2."""
    name_w = max([len(c) for c in result.classes] + [5])
    head = f"{'class':<{name_w}} {'AP':>7} {'npos':>6} {'dets':>8} {'TP':>6} {'FP':>8}"
    rows = [head, "-" * len(head)]
    for c in result.classes:
        m, a = result.matches[c], result.ap[c]
        ap_s = "-" if a is None else f"{a:.4f}"
        rows.append(
            f"{c:<{name_w}} {ap_s:>7} {m.npos:>6} {m.scores.shape[0]:>8} {int(m.tp.sum()):>6} {int(m.fp.sum()):>8}"
        )
    rows.append("-" * len(head))
    subset = result.subset + (f" ({result.crowd_protocol})" if result.crowd_protocol else "")
    map_s = "-" if result.mAP is None else f"{result.mAP:.4f}"
    rows.append(
        f"{'mAP':<{name_w}} {map_s:>7}   metric {result.metric}, IoU >= {result.iou_threshold:g}, subset {subset}"
    )
    if result.miss_rate is not None:
        lamr = result.miss_rate.lamr
        rows.append(f"MR^-2 ({result.miss_rate.class_name}): {'-' if lamr is None else f'{100 * lamr:.2f}%'}")
    rows.append(f"{result.num_images} images, scored in {result.seconds:.2f} s")
    return "\n".join(rows)


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 5))
    return ax


def plot_pr_curves(result: VOCResult, classes: Sequence[str] | None = None, ax: Axes | None = None) -> Axes:
    """Precision-recall curves of ``classes`` (default: all with an AP), AP in the legend. Works headless.

    Returns:
        The axes drawn on (a new figure's when ``ax`` is ``None``).
    """
    ax = _axes(ax)
    for c in classes if classes is not None else result.classes:
        a = result.ap[c]
        if a is None:
            continue
        m = result.matches[c]
        rec = np.concatenate([[0.0], m.recall])
        prec = np.concatenate([[1.0 if m.scores.size else 0.0], m.precision])
        ax.plot(rec, prec, lw=1.2, label=f"{c} {a:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    title = f"{result.metric} mAP {result.mAP:.4f}" if result.mAP is not None else result.metric
    ax.set_title(title + (f" ({result.subset})" if result.subset != "all" else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2, loc="lower left")
    return ax


def plot_miss_rate(curves: MissRate | Mapping[str, MissRate], ax: Axes | None = None) -> Axes:
    """Miss rate against false positives per image (log-log), one curve per entry, MR^-2 in the legend.

    Args:
        curves: a :class:`MissRate` or ``{label: MissRate}`` (e.g. ``{"SSD": ..., "SSD+Rep": ...}``).
        ax: axes to draw on (default: a new figure).
    """
    ax = _axes(ax)
    items = {curves.class_name: curves} if isinstance(curves, MissRate) else dict(curves)
    for label, mr in items.items():
        if mr.lamr is None:
            continue
        x = np.concatenate([[mr.reference_fppi[0] / 10], np.maximum(mr.fppi, 1e-4)])
        y = np.concatenate([[1.0], mr.miss_rate])
        ax.step(x, y, where="post", lw=1.2, label=f"{label} MR$^{{-2}}$ {100 * mr.lamr:.1f}%")
        ax.plot(mr.reference_fppi, mr.reference_miss_rate, "o", ms=3, color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-3, 10)
    ax.set_ylim(0.02, 1.05)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("miss rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="lower left")
    return ax


# ----------------------------------------------------------------------------------------------------------------
# Running a model over a dataset


@dataclass
class Predictions:
    """A model's detections over a dataset, in rssd pixels, with what scoring needs.

    Attributes:
        image_ids: one per image, in dataset order.
        outputs: per image ``{"boxes" (D, 4), "scores" (D,), "labels" (D,)}`` (:func:`rssd.detect.detect`).
        classes: the dataset's class names (label ``i + 1`` is ``classes[i]``).
        seconds: wall time of the whole pass; ``images_per_s`` follows.
    """

    image_ids: list[str]
    outputs: list[dict[str, Any]]
    classes: tuple[str, ...]
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.image_ids) / max(self.seconds, 1e-9)

    def to_voc(self) -> dict[str, ClassDetections]:
        """Per-class detections in the devkit's 1-based coordinates (:func:`detections_to_voc`)."""
        return detections_to_voc(self.image_ids, self.outputs, self.classes)


class _EvalItems:
    """Dataset items for inference: the model input and the original size and id (the GT is read elsewhere)."""

    def __init__(self, dataset: Any, transform: Any) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, str, tuple[int, int]]:
        image, target = self.dataset[i]
        x, _ = self.transform(image, target)
        return x, str(target["image_id"]), tuple(int(v) for v in target["orig_size"])


def _collate_eval(batch: list[tuple[Any, str, tuple[int, int]]]):
    import torch

    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]


def predict(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    config: Any = None,
    workers: int = 0,
    progress: bool = True,
) -> Predictions:
    """Run ``model`` over an *untransformed* dataset (``rssd.data`` items) and post-process the outputs.

    Images are resized and normalised as the model expects (:class:`rssd.data.SSDEvalTransform` with the model's
    size and input convention); detections come back in each image's original pixels.

    Args:
        model: an :class:`rssd.model.SSD` (put in eval mode and channels_last here; its device is used).
        dataset: items ``(image, target)`` with ``target["image_id"]`` and ``target["orig_size"]``.
        batch_size, workers: of the DataLoader.
        config: :class:`rssd.detect.DetectConfig` (default: the VOC protocol, score > 0.01).
        progress: a tqdm bar over the images.
    """
    return predict_many(
        model, dataset, [config], batch_size=batch_size, workers=workers, progress=progress
    )[0]


def predict_many(
    model: Any,
    dataset: Any,
    configs: Sequence[Any],
    *,
    batch_size: int = 16,
    workers: int = 0,
    progress: bool = True,
) -> list[Predictions]:
    """:func:`predict` under several post-processing settings at the cost of one forward pass per image.

    ``configs`` are :class:`rssd.detect.DetectConfig` (``None`` for the default); one :class:`Predictions` comes
    back per config, in order (each one's ``seconds`` is the shared forward time plus its own post-processing).
    Used for sweeps such as the NMS threshold of :mod:`rssd.experiments.crowd`.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from rssd.data import SSDEvalTransform
    from rssd.detect import detect

    model.eval().to(memory_format=torch.channels_last)  # NHWC: about 1.6x faster on CPU, same detections
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    loader = DataLoader(
        _EvalItems(dataset, SSDEvalTransform(model.image_size, model.normalization)), batch_size=batch_size,
        num_workers=workers, collate_fn=_collate_eval, pin_memory=cuda,
    )  # fmt: skip
    priors = model.priors.to(device)
    ids: list[str] = []
    outputs: list[list[dict[str, Any]]] = [[] for _ in configs]
    post = [0.0] * len(configs)
    t0 = time.perf_counter()
    with torch.inference_mode(), tqdm(total=len(dataset), desc="detect", unit="img", disable=not progress) as bar:
        for images, batch_ids, sizes in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loc, conf = model(images)
            loc, conf = loc.float(), conf.float()
            for k, config in enumerate(configs):
                t1 = time.perf_counter()
                dets = detect(loc, conf, priors, sizes, config)
                outputs[k].extend({key: v.cpu() for key, v in d.items()} for d in dets)
                post[k] += time.perf_counter() - t1
            ids.extend(batch_ids)
            bar.update(len(batch_ids))
    forward = time.perf_counter() - t0 - sum(post)
    classes = tuple(dataset.classes)
    return [Predictions(list(ids), out, classes, forward + p) for out, p in zip(outputs, post, strict=True)]


def ground_truth_of(dataset: Any) -> list[GroundTruthLike]:
    """GT records of every image of a dataset, difficult objects included.

    VOC-layout datasets give their parsed XML (the devkit's own coordinates); others (synthetic, COCO) give their
    targets converted back to 1-based pixels (:func:`gt_from_targets`). Build the dataset with
    ``keep_difficult=True`` so that difficult objects are ignored rather than counted as missing.
    """
    annotations = getattr(dataset, "annotations", None)
    if annotations is not None:
        return list(annotations)
    targets = (dataset[i][1] for i in range(len(dataset)))
    return gt_from_targets(targets, dataset.classes)


def evaluate_predictions(
    predictions: Predictions,
    ground_truth: Sequence[GroundTruthLike],
    **kwargs: Any,
) -> VOCResult:
    """Score :class:`Predictions` against GT records (``kwargs`` go to :func:`evaluate_voc`)."""
    return evaluate_voc(ground_truth, predictions.to_voc(), predictions.classes, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Crowd error analysis

#: What :func:`classify_detections` calls each detection.
ERROR_KINDS = ("tp", "duplicate", "between", "poor-localisation", "background")


def classify_detections(
    det_boxes: Any, det_scores: Any, det_labels: Any, gt_boxes: Any, gt_labels: Any,
    iou_threshold: float = 0.5, touch_iou: float = 0.1,
) -> list[str]:  # fmt: skip
    """Sort each detection of one image into the error kinds crowd detectors are judged on (Wang et al., Sec. 5).

    Detections are taken by decreasing score; each looks at the GTs of its class:

    * ``"tp"``: IoU ``>= iou_threshold`` with its best GT, which no better detection took;
    * ``"duplicate"``: the same, but the GT was taken already (NMS left two boxes on one object);
    * ``"between"``: a false positive touching (IoU ``>= touch_iou``) two or more GTs: the box that drifts
      between neighbours, which Repulsion Loss targets;
    * ``"poor-localisation"``: a false positive touching exactly one GT;
    * ``"background"``: a false positive touching none.

    Boxes in the same pixel coordinates (rssd's); plain IoU (this is an analysis, not the devkit's scoring).

    Returns:
        One kind per detection, in the input order.
    """
    import torch

    from rssd.boxes import box_iou

    det = torch.as_tensor(np.asarray(_numpy(det_boxes), np.float64).reshape(-1, 4))
    gt = torch.as_tensor(np.asarray(_numpy(gt_boxes), np.float64).reshape(-1, 4))
    det_l = np.asarray(_numpy(det_labels)).reshape(-1)
    gt_l = np.asarray(_numpy(gt_labels)).reshape(-1)
    iou = box_iou(det, gt).numpy() if len(det) and len(gt) else np.zeros((len(det), len(gt)))
    iou = np.where(det_l[:, None] == gt_l[None, :], iou, 0.0)  # (D, G), other classes never count
    kinds = ["background"] * len(det)
    taken = np.zeros(len(gt), bool)
    for d in np.argsort(-np.asarray(_numpy(det_scores), np.float64).reshape(-1), kind="stable"):
        row = iou[d]
        best = int(row.argmax()) if row.size else -1
        if best >= 0 and row[best] >= iou_threshold:
            kinds[d] = "duplicate" if taken[best] else "tp"
            taken[best] = True
        else:
            touching = int((row >= touch_iou).sum())
            kinds[d] = "between" if touching >= 2 else "poor-localisation" if touching == 1 else "background"
    return kinds
