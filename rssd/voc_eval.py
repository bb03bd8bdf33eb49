"""PASCAL VOC evaluation as the official devkit computes it: per-class matching, AP, mAP and the scoring table.

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

Which AP a dataset gets by default (:func:`default_metric`, the CLI's one rule): ``"all-point"`` for VOC2010 and
later (VOC2012), the 11-point ``"voc07"`` for VOC2007 and for data that names no VOC year (synthetic scenes, custom
VOC-layout folders: the metric of rssd's reported tables).

Coordinates: GT records and :class:`rssd.voc_records.ClassDetections` hold boxes in VOC's 1-based inclusive pixel
coordinates, as in the XML files and the result files; :mod:`rssd.voc_records` holds them, the result files and the
conversions from rssd's pixel boxes (``(x1, y1, x2, y2)`` continuous, 0-based; DEVELOPERS.md).

Subsets and miss rate: ``subset="crowd"`` (the crowd objects, GUIDE) and the CityPersons occlusion levels
(``"reasonable"``, ``"bare"``, ``"partial"``, ``"heavy"``, ``"heavy-cp"``) change which GTs count, before the
matching above (:func:`rssd.crowd_eval.subset_records`); ``mr_class`` adds MR^-2, the log-average miss rate of the
pedestrian literature, on the same matches (:func:`rssd.crowd_eval.log_average_miss_rate`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rssd.crowd_eval import CrowdProtocol, MissRate, log_average_miss_rate, subset_records
from rssd.voc_records import ClassDetections, GroundTruthLike

__all__ = [
    "METRICS",
    "Metric",
    "default_metric",
    "ClassMatch",
    "VOCResult",
    "voc_iou",
    "match_class",
    "average_precision",
    "evaluate_voc",
    "format_table",
]

Metric = Literal["voc07", "all-point"]
#: AP variants: ``"voc07"`` (11-point, VOC2007's default) and ``"all-point"`` (VOC2010 and later).
METRICS: tuple[str, ...] = ("voc07", "all-point")


def default_metric(years: str | None) -> Metric:
    """The devkit's AP for the VOC year(s) a dataset names: ``"all-point"`` from VOC2010 on, else ``"voc07"``.

    Args:
        years: as ``--year`` and ``voc:`` specs name them, parts joined by ``+``: ``"2007"``, ``"12"``,
            ``"07+12"``, ``"VOC2012"``, or a folder name (``"synth"``); ``None`` for data without one.

    Returns:
        ``"all-point"`` when every part is a VOC year from 2010 on (VOC2012's metric); ``"voc07"`` (11-point) for
        VOC2007, for a mix with it, and for data that names no VOC year (rssd's synthetic and custom data).
    """
    found = []
    for part in str(years or "").split("+"):
        part = part.strip().upper().removeprefix("VOC")
        found.append(int(part) + (2000 if len(part) == 2 else 0) if part.isdigit() and len(part) in (2, 4) else None)
    return "all-point" if all(y is not None and y >= 2010 for y in found) else "voc07"


#: ``for t=0:0.1:1`` in the devkit, as MATLAB's colon operator computes it (see the module docstring).
_VOC07_RECALLS: tuple[float, ...] = tuple(
    k * 0.1 if k < 5 else (0.5 if k == 5 else 1.0 - (10 - k) * 0.1) for k in range(11)
)


# ----------------------------------------------------------------------------------------------------------------
# Matching and AP


def voc_iou(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """The devkit's IoU of boxes paired element by element (shapes broadcast), ``+1`` pixel widths.

    Why not :func:`rssd.boxes.box_iou` (continuous coordinates, no ``+1``, which rssd uses everywhere else): the
    devkit treats its 1-based coordinates as inclusive pixel indices, so a box ``(1, 1, 10, 10)`` is 10 pixels wide,
    and it tests ``iw > 0`` on those widths. Scores are only comparable with published VOC numbers when a
    detection's IoU with a GT, hence TP or FP at the 0.5 boundary, is computed exactly as the devkit does.

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
        ground_truth: one record per evaluated image (:class:`rssd.voc_records.GTRecord`,
            :class:`rssd.data.voc.VOCAnnotation`).
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
            ``names``, ``difficult``): :class:`rssd.voc_records.GTRecord`, or :class:`rssd.data.voc.VOCAnnotation`
            as :func:`rssd.data.voc.load_voc_annotations` returns them.
        detections: class name -> :class:`ClassDetections` (e.g. :func:`rssd.voc_records.read_voc_results`); a
            class that is missing has no detections.
        classes: the classes to score, in table order (default: every class named in the GT or the detections,
            sorted). Detections of a class outside ``classes`` are an error (a misspelt class would score 0).
        metric: ``"voc07"`` (11-point) or ``"all-point"``.
        iou_threshold: minimum IoU of a TP (0.5).
        subset: one of :data:`rssd.crowd_eval.SUBSETS`: ``"all"``, ``"crowd"`` (the crowd objects only, under
            ``crowd_protocol``; :func:`rssd.crowd_eval.crowd_subset`) or an occlusion level of
            :data:`rssd.crowd_eval.OCCLUSION_SUBSETS` (the others ignored; :func:`rssd.crowd_eval.occlusion_subset`).
        crowd_protocol: ``"remove"`` or ``"ignore"``, for ``subset="crowd"``.
        min_height: for the occlusion levels, the smallest box height (pixels) in the level.
        mr_class: the class whose log-average miss rate is computed too (``None``: none). Skipped silently
            when the class is not among ``classes``.

    Returns:
        A :class:`VOCResult`.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    t0 = time.perf_counter()
    index = _GTIndex(subset_records(ground_truth, subset, crowd_protocol, min_height))
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
