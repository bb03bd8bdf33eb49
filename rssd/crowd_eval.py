"""Crowd and occlusion subsets, the log-average miss rate, and the error kinds of crowd detectors.

Subsets (``subset=`` of :func:`rssd.voc_eval.evaluate_voc`; :func:`subset_records`): ``"crowd"`` evaluates the crowd
objects (GUIDE; :func:`rssd.data.crowd.crowd_mask`) under one of two protocols, see :func:`crowd_subset`.
``"reasonable" | "bare" | "partial" | "heavy" | "heavy-cp"`` are the occlusion levels of CityPersons (and of
Repulsion Loss's Table 3), for datasets whose objects carry a visible fraction (:data:`OCCLUSION_SUBSETS`,
:func:`occlusion_subset`): objects outside the level are ignored, not deleted.

Miss rate: :func:`log_average_miss_rate` is MR^-2 of the pedestrian literature (Dollár et al., the Caltech
toolbox's ``bbGt('compRoc')``), on the devkit's matches of one class (:func:`rssd.voc_eval.match_class`): miss rate
``1 - recall`` against false positives per image (all images of the evaluation), sampled at 9 FPPI values
``10^-2, 10^-1.75, ..., 10^0``. At each value it takes the recall of the last detection whose FPPI does not exceed
it (recall 0 if even the first one does); the result is ``exp(mean(log(max(1e-10, miss))))``. Ignored detections
are dropped first, as in the toolbox.

Error kinds: :func:`classify_detections` sorts the detections of one image into true positives, duplicates, boxes
drifting *between* neighbours (what Repulsion Loss targets), poor localisations and background (Wang et al.,
Sec. 5). It is an analysis with plain IoU (:func:`rssd.data.crowd.box_iou_np`), not the devkit's scoring.

GT records and their coordinates: :mod:`rssd.voc_records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from rssd.data.crowd import CROWD_IOU, box_iou_np, crowd_mask
from rssd.voc_records import GroundTruthLike, GTRecord, as_numpy

__all__ = [
    "CrowdProtocol",
    "crowd_subset",
    "OCCLUSION_SUBSETS",
    "SUBSETS",
    "occlusion_subset",
    "subset_records",
    "MR_FPPI",
    "MissRate",
    "log_average_miss_rate",
    "ERROR_KINDS",
    "classify_detections",
]

# ----------------------------------------------------------------------------------------------------------------
# Subsets

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


def occlusion_subset(ground_truth: Sequence[GroundTruthLike], level: str, min_height: float = 50.0) -> list[GTRecord]:
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


def subset_records(
    ground_truth: Sequence[GroundTruthLike],
    subset: str,
    crowd_protocol: CrowdProtocol = "remove",
    min_height: float = 50.0,
) -> Sequence[GroundTruthLike]:
    """The GT records that ``subset`` (one of :data:`SUBSETS`) scores: ``"all"`` gives ``ground_truth`` itself.

    Raises:
        ValueError: an unknown subset.
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if subset == "crowd":
        return crowd_subset(ground_truth, crowd_protocol)
    if subset in OCCLUSION_SUBSETS:
        return occlusion_subset(ground_truth, subset, min_height)
    return ground_truth


# ----------------------------------------------------------------------------------------------------------------
# Miss rate


class MatchLike(Protocol):
    """What the miss rate reads from the devkit's matches of one class (:class:`rssd.voc_eval.ClassMatch`)."""

    class_name: str
    tp: np.ndarray  # (D,) bool, detections in decreasing score order
    fp: np.ndarray  # (D,) bool; neither tp nor fp: ignored
    npos: int
    num_images: int


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


def log_average_miss_rate(match: MatchLike, fppi_points: Sequence[float] = MR_FPPI) -> MissRate:
    """MR^-2 of a class from its matches, a :class:`rssd.voc_eval.ClassMatch` (the Caltech toolbox's protocol;
    module docstring).

    Args:
        match: the class's matches; ``match.num_images`` is the FPPI denominator.
        fppi_points: where the miss rate is sampled (default: 9 points from 1e-2 to 1).
    """
    counted = match.tp | match.fp  # ignored detections (neither) are dropped
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
    det = as_numpy(det_boxes).astype(np.float64).reshape(-1, 4)
    gt = as_numpy(gt_boxes).astype(np.float64).reshape(-1, 4)
    det_l = as_numpy(det_labels).reshape(-1)
    gt_l = as_numpy(gt_labels).reshape(-1)
    iou = box_iou_np(det, gt)  # (D, G)
    iou = np.where(det_l[:, None] == gt_l[None, :], iou, 0.0)  # (D, G), other classes never count
    kinds = ["background"] * len(det)
    taken = np.zeros(len(gt), bool)
    for d in np.argsort(-as_numpy(det_scores).astype(np.float64).reshape(-1), kind="stable"):
        row = iou[d]
        best = int(row.argmax()) if row.size else -1
        if best >= 0 and row[best] >= iou_threshold:
            kinds[d] = "duplicate" if taken[best] else "tp"
            taken[best] = True
        else:
            touching = int((row >= touch_iou).sum())
            kinds[d] = "between" if touching >= 2 else "poor-localisation" if touching == 1 else "background"
    return kinds
