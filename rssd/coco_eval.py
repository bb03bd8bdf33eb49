"""COCO detection metrics through pycocotools' ``COCOeval``: AP@[.5:.95], AP50, AP75, AP and AR by object size.

What is scored is exactly what ``COCOeval(gt, dt, "bbox")`` scores (the official COCO detection evaluation): per
class and image, detections sorted by score (at most 100 per image), greedily matched to the best still unmatched
GT at each IoU threshold ``0.50, 0.55, ..., 0.95``; precision interpolated at the 101 recall points
``0, 0.01, ..., 1``; AP averaged over classes, thresholds and recall points; AR is the best recall with at most
1, 10 or 100 detections per image. Sizes: small ``area < 32^2``, medium ``< 96^2``, large above (the GT's
``area``). A metric with no GT to measure is ``-1`` in COCO's printout and ``None`` (JSON ``null``) here.

Coordinates: rssd's pixel boxes are continuous and 0-based (DEVELOPERS.md), as COCO's are, so a box
``(x1, y1, x2, y2)`` is COCO's ``[x1, y1, x2 - x1, y2 - y1]`` with no ``±1``. GT records in VOC's 1-based inclusive
coordinates (:class:`rssd.voc_records.GTRecord`, VOC annotations, the devkit's result files) become
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]`` first, so both metrics see the same boxes.

Ground truth: a COCO-format dataset (:class:`rssd.data.coco.COCODataset`) is scored against its own json (its
``iscrowd`` regions and ``area`` values included; a missing ``area`` is the box's). Other datasets (VOC, synthetic)
are converted from their GT records; their *difficult* objects become ``iscrowd`` regions, the only kind of GT that
``COCOeval`` ignores (a detection on one is neither TP nor FP; unlike VOC's difficult boxes, a crowd region can
absorb several detections, and it is matched by the intersection over the *detection's* area).
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pycocotools.coco import COCO

    from rssd.inference import Predictions
    from rssd.voc_records import ClassDetections, GroundTruthLike

__all__ = [
    "COCO_STATS",
    "COCOResult",
    "xyxy_to_coco",
    "coco_ground_truth",
    "coco_ground_truth_of",
    "coco_results",
    "voc_results_to_coco",
    "evaluate_coco",
    "evaluate_predictions_coco",
]

#: The 12 numbers of ``COCOeval.stats``, in its order.
COCO_STATS: tuple[str, ...] = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip


def _array(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def xyxy_to_coco(boxes_xyxy: Any) -> np.ndarray:
    """``(D, 4)`` rssd pixel boxes ``(x1, y1, x2, y2)`` (continuous, 0-based) -> ``(D, 4)`` COCO ``[x, y, w, h]``."""
    b = _array(boxes_xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress; keep it off the console."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _make_coco(dataset: dict[str, Any]) -> COCO:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def coco_ground_truth(records: Sequence[GroundTruthLike], classes: Sequence[str]) -> COCO:
    """A COCO ground truth from GT records in VOC's 1-based inclusive coordinates.

    Args:
        records: one per image (``image_id``, ``boxes`` ``(G, 4)`` 1-based, ``names``, ``difficult``), e.g.
            :func:`rssd.inference.ground_truth_of` or :func:`rssd.data.voc.load_voc_annotations`.
        classes: class names; category ``k + 1`` is ``classes[k]``. Objects of other classes are an error.

    Returns:
        A ``pycocotools.coco.COCO`` with images ``1..N`` (``rssd_image_id`` keeps each record's id), boxes
        ``[xmin - 1, ymin - 1, w + 1, h + 1]``, ``area = w * h`` of that box, difficult objects as ``iscrowd``.
    """
    cat_of = {name: k for k, name in enumerate(classes, start=1)}
    images, annotations = [], []
    for i, rec in enumerate(records, start=1):
        images.append({"id": i, "rssd_image_id": str(rec.image_id)})
        boxes = np.asarray(rec.boxes, np.float64).reshape(-1, 4).copy()
        boxes[:, :2] -= 1.0  # back to rssd's continuous 0-based pixels
        for box, name, difficult in zip(xyxy_to_coco(boxes), rec.names, np.asarray(rec.difficult), strict=True):
            if name not in cat_of:
                raise ValueError(f"image {rec.image_id}: class {name!r} is not among the evaluated {list(classes)}")
            w, h = float(box[2]), float(box[3])
            annotations.append({
                "id": len(annotations) + 1, "image_id": i, "category_id": cat_of[name],
                "bbox": [float(v) for v in box], "area": w * h, "iscrowd": int(bool(difficult)),
            })  # fmt: skip
    categories = [{"id": k, "name": name} for name, k in cat_of.items()]
    return _make_coco({"images": images, "annotations": annotations, "categories": categories})


def coco_ground_truth_of(dataset: Any) -> COCO:
    """The COCO ground truth of a dataset: a COCO-format dataset's own json, any other one's GT records.

    For a :class:`rssd.data.coco.COCODataset`, the json's images and the annotations of the dataset's classes,
    ``iscrowd`` regions included; a missing ``area`` becomes the box's, a missing ``iscrowd`` 0, and annotation ids
    are renumbered ``1..`` when they are not unique positive numbers (``COCOeval`` needs that). Otherwise
    :func:`coco_ground_truth` of :func:`rssd.inference.ground_truth_of` (build the dataset with
    ``keep_difficult=True`` so that difficult objects are ignored rather than counted as missed).
    """
    from rssd.data.coco import COCODataset

    if not isinstance(dataset, COCODataset):
        from rssd.inference import ground_truth_of

        return coco_ground_truth(ground_truth_of(dataset), dataset.classes)
    src = dataset.coco.dataset
    cats = [c for c in src["categories"] if c["name"] in dataset.classes]
    names = [c["name"] for c in cats]
    if len(set(names)) != len(names):
        raise ValueError(f"{dataset.annotation_file}: category names are not unique: {sorted(names)}")
    cat_ids = {c["id"] for c in cats}
    anns = [copy.deepcopy(a) for a in src.get("annotations", []) if a.get("category_id") in cat_ids]
    ids = [a.get("id") for a in anns]
    renumber = len(set(ids)) != len(ids) or not all(isinstance(v, int) and v > 0 for v in ids)
    for k, a in enumerate(anns, start=1):
        x, y, w, h = (float(v) for v in a["bbox"])
        a["bbox"] = [x, y, w, h]
        a.setdefault("area", w * h)
        a.setdefault("iscrowd", 0)
        if renumber:
            a["id"] = k
    images = [dict(im, rssd_image_id=str(im["id"])) for im in src["images"]]
    return _make_coco({"images": images, "annotations": anns, "categories": copy.deepcopy(cats)})


def _image_ids(gt: COCO) -> dict[str, int]:
    """rssd image id (str) -> COCO image id."""
    return {str(im.get("rssd_image_id", im["id"])): im["id"] for im in gt.dataset["images"]}


def _category_ids(gt: COCO, classes: Sequence[str]) -> list[int]:
    by_name = {c["name"]: c["id"] for c in gt.dataset["categories"]}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(f"classes {missing} are not categories of the ground truth ({sorted(by_name)})")
    return [by_name[c] for c in classes]


def _result(image_id: int, category_id: int, box: np.ndarray, score: float) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": category_id, "bbox": [float(v) for v in box], "score": float(score)}


def coco_results(
    image_ids: Sequence[str], outputs: Sequence[Mapping[str, Any]], classes: Sequence[str], gt: COCO
) -> list[dict[str, Any]]:
    """:func:`rssd.detect.detect` outputs (rssd pixels) as a COCO results list.

    Args:
        image_ids: the rssd id of each output's image (``target["image_id"]``).
        outputs: per image ``{"boxes" (D, 4) xyxy pixels, "scores" (D,), "labels" (D,) in 1..len(classes)}``.
        classes: the class names of the labels (label ``k`` is ``classes[k - 1]``).
        gt: the ground truth (:func:`coco_ground_truth_of`), for its image and category ids.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``: COCO's results format.
    """
    if len(image_ids) != len(outputs):
        raise ValueError(f"{len(image_ids)} image ids for {len(outputs)} outputs")
    id_of = _image_ids(gt)
    cat_of = _category_ids(gt, classes)
    results = []
    for image_id, out in zip(image_ids, outputs, strict=True):
        if str(image_id) not in id_of:
            raise ValueError(f"detections for image {image_id!r}, which the ground truth does not have")
        labels = _array(out["labels"], np.int64).reshape(-1)
        if labels.size and (labels.min() < 1 or labels.max() > len(classes)):
            got = f"{labels.min()}..{labels.max()}"
            raise ValueError(f"image {image_id}: labels must be in 1..{len(classes)}, got {got}")
        boxes = xyxy_to_coco(out["boxes"])
        scores = _array(out["scores"], np.float64).reshape(-1)
        for box, score, label in zip(boxes, scores, labels, strict=True):
            results.append(_result(id_of[str(image_id)], cat_of[label - 1], box, score))
    return results


def voc_results_to_coco(detections: Mapping[str, ClassDetections], gt: COCO) -> list[dict[str, Any]]:
    """Per-class detections in the devkit's 1-based form (:func:`rssd.voc_records.read_voc_results`) as COCO results."""
    id_of = _image_ids(gt)
    results = []
    for name, dets in detections.items():
        (cat,) = _category_ids(gt, [name])
        boxes = np.asarray(dets.boxes, np.float64).reshape(-1, 4).copy()
        boxes[:, :2] -= 1.0  # the devkit's xmin = x1 + 1, ymin = y1 + 1, back to rssd pixels
        for image_id, box, score in zip(dets.image_ids, xyxy_to_coco(boxes), dets.scores, strict=True):
            if str(image_id) not in id_of:
                raise ValueError(f"{name}: detections for image {image_id!r}, which the ground truth does not have")
            results.append(_result(id_of[str(image_id)], cat, box, score))
    return results


@dataclass
class COCOResult:
    """What :func:`evaluate_coco` computed.

    Attributes:
        stats: :data:`COCO_STATS` name -> value (``None`` where COCO prints -1: nothing to measure).
        ap_per_class: class -> AP@[.5:.95] (all sizes, 100 detections; ``None``: no GT of the class).
        ap50_per_class: class -> AP at IoU 0.5 (101-point interpolation).
        classes: the evaluated classes, in table order.
        num_images, num_detections: what was scored.
        summary: the 12 lines ``COCOeval.summarize()`` prints.
        seconds: time of evaluate + accumulate + summarize.
    """

    stats: dict[str, float | None]
    ap_per_class: dict[str, float | None]
    ap50_per_class: dict[str, float | None]
    classes: tuple[str, ...]
    num_images: int
    num_detections: int
    summary: str = field(repr=False)
    seconds: float = 0.0

    @property
    def AP(self) -> float | None:  # noqa: N802 (COCO's name)
        return self.stats["AP"]

    def to_json(self) -> dict[str, Any]:
        """``metric: "coco"``, the 12 stats as top-level keys, ``mAP`` (= ``AP``, as VOC's JSON names its headline),
        per-class APs, counts, COCO's printed summary and the time."""
        return {
            "metric": "coco",
            **self.stats,
            "mAP": self.stats["AP"],
            "ap": dict(self.ap_per_class),
            "ap50": dict(self.ap50_per_class),
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "summary": self.summary.splitlines(),
            "seconds": self.seconds,
        }

    def table(self) -> str:
        """COCO's own printout, then AP and AP50 per class."""
        width = max([5, *(len(c) for c in self.classes)])
        lines = [self.summary, "", f"{'class':<{width}}  {'AP':>6}  {'AP50':>6}"]

        def fmt(v: float | None) -> str:
            return f"{v:6.3f}" if v is not None else f"{'-':>6}"

        for c in self.classes:
            lines.append(f"{c:<{width}}  {fmt(self.ap_per_class[c])}  {fmt(self.ap50_per_class[c])}")
        return "\n".join(lines)


def _mean_valid(x: np.ndarray) -> float | None:
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else None


def evaluate_coco(gt: COCO, results: Sequence[Mapping[str, Any]], classes: Sequence[str] | None = None) -> COCOResult:
    """Score COCO results against a COCO ground truth with ``COCOeval`` (bbox, default parameters).

    Args:
        gt: the ground truth (:func:`coco_ground_truth_of`, :func:`coco_ground_truth`); every image is evaluated.
        results: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` (:func:`coco_results`).
        classes: the categories to score, by name, in table order (default: all of ``gt``'s, by id).

    Returns:
        A :class:`COCOResult`.
    """
    from pycocotools.cocoeval import COCOeval

    t0 = time.perf_counter()
    if classes is None:
        classes = [c["name"] for c in sorted(gt.dataset["categories"], key=lambda c: c["id"])]
    classes = tuple(classes)
    cat_ids = _category_ids(gt, classes)
    results = [dict(r) for r in results]
    known = set(gt.getImgIds())
    unknown = sorted({r["image_id"] for r in results} - known)
    if unknown:
        raise ValueError(f"results for image ids {unknown[:5]} that the ground truth does not have")
    if results:
        with _quiet():
            dt = gt.loadRes(results)
    else:  # loadRes cannot take an empty list: an empty result set with the same images and categories
        dt = _make_coco({"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []})
    ev = COCOeval(gt, dt, "bbox")
    ev.params.imgIds = sorted(known)
    ev.params.catIds = cat_ids
    with _quiet():
        ev.evaluate()
        ev.accumulate()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    stats = {name: (float(v) if v > -1 else None) for name, v in zip(COCO_STATS, ev.stats, strict=True)}
    # precision: (T IoUs, R recall points, K classes, A areas, M max-dets); area 0 = all, max-dets -1 = 100
    precision = ev.eval["precision"]
    order = {cid: k for k, cid in enumerate(ev.params.catIds)}
    ap = {c: _mean_valid(precision[:, :, order[cid], 0, -1]) for c, cid in zip(classes, cat_ids, strict=True)}
    ap50 = {c: _mean_valid(precision[0, :, order[cid], 0, -1]) for c, cid in zip(classes, cat_ids, strict=True)}
    return COCOResult(
        stats=stats, ap_per_class=ap, ap50_per_class=ap50, classes=classes, num_images=len(known),
        num_detections=len(results), summary=out.getvalue().rstrip("\n"), seconds=time.perf_counter() - t0,
    )  # fmt: skip


def evaluate_predictions_coco(predictions: Predictions, dataset: Any = None, *, gt: COCO | None = None) -> COCOResult:
    """Score :class:`rssd.inference.Predictions` with COCO's metrics, against ``dataset``'s GT (or ``gt``)."""
    if gt is None:
        if dataset is None:
            raise ValueError("evaluate_predictions_coco needs the dataset or its COCO ground truth (gt=)")
        gt = coco_ground_truth_of(dataset)
    results = coco_results(predictions.image_ids, predictions.outputs, predictions.classes, gt)
    return evaluate_coco(gt, results, predictions.classes)
