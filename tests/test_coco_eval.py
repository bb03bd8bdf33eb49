"""COCO metrics (rssd.coco_eval over pycocotools' COCOeval): hand-computed cases, the box conversion, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rssd.cli import main
from rssd.coco_eval import (
    COCO_STATS,
    coco_ground_truth,
    coco_ground_truth_of,
    evaluate_coco,
    evaluate_predictions_coco,
    xyxy_to_coco,
)
from rssd.config import TrainConfig
from rssd.data.coco import COCODataset
from rssd.inference import Predictions
from rssd.model import build_ssd
from rssd.train import CHECKPOINT_FORMAT, save_checkpoint
from rssd.voc_eval import evaluate_voc, voc_iou
from rssd.voc_records import GTRecord, detections_to_voc, write_voc_results

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "VOCdevkit"


def _coco_json(tmp_path: Path, annotations: list, images: list, write_images: bool = False) -> tuple[Path, Path]:
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    if write_images:
        for im in images:
            cv2.imwrite(str(img_dir / im["file_name"]), np.full((im["height"], im["width"], 3), 90, np.uint8))
    ann = tmp_path / "ann.json"
    categories = [{"id": 3, "name": "cat"}, {"id": 1, "name": "person"}]
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann, img_dir


def test_xyxy_to_coco() -> None:
    # rssd pixels are continuous and 0-based like COCO's: [x, y, x2 - x, y2 - y], no +-1
    np.testing.assert_allclose(xyxy_to_coco(torch.tensor([[2.5, 4.0, 12.5, 10.0]])), [[2.5, 4.0, 10.0, 6.0]])
    # a VOC record (1-based inclusive, 10 pixels wide: 1..10) is [0, 0, 10, 10] in COCO, area 100
    gt = coco_ground_truth([GTRecord("a", np.array([[1.0, 1.0, 10.0, 10.0]]), ("cat",), np.array([False]))], ["cat"])
    (ann,) = gt.dataset["annotations"]
    assert ann["bbox"] == [0.0, 0.0, 10.0, 10.0] and ann["area"] == 100.0 and ann["iscrowd"] == 0


def test_perfect_detections_score_one() -> None:
    # GT records in VOC coordinates, fed back as detections in rssd pixels (x1 = xmin - 1): every AP and AR is 1
    # at every IoU up to 0.95. A one-pixel slip in either conversion (IoU 29^2 / (2 * 30^2 - 29^2) = 0.877 for a
    # 30-pixel box moved by 1 in x and y) would fail AP75 or AP@[.5:.95].
    rng = np.random.default_rng(0)
    records, ids, outputs = [], [], []
    for i in range(6):
        xy = rng.uniform(1, 200, (3, 2)).round()
        wh = rng.uniform(20, 150, (3, 2)).round()
        boxes = np.concatenate([xy, xy + wh - 1], 1)  # 1-based inclusive
        names = tuple(rng.choice(["cat", "person"], 3))
        records.append(GTRecord(f"im{i}", boxes, names, np.zeros(3, bool)))
        pixels = boxes.copy()
        pixels[:, :2] -= 1
        ids.append(f"im{i}")
        outputs.append({"boxes": torch.tensor(pixels), "scores": torch.rand(3),
                        "labels": torch.tensor([1 + ("cat", "person").index(n) for n in names])})  # fmt: skip
    result = evaluate_predictions_coco(
        Predictions(ids, outputs, ("cat", "person")), gt=coco_ground_truth(records, ("cat", "person"))
    )
    for name in ("AP", "AP50", "AP75", "AR10", "AR100"):  # (AR1 counts one detection per image and class)
        assert result.stats[name] == pytest.approx(1.0), (name, result.stats)
    assert all(v == pytest.approx(1.0) for v in result.ap_per_class.values())
    assert result.summary.splitlines()[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")


def test_hand_built_case_from_a_coco_json(tmp_path: Path) -> None:
    """Two people and a crowd region in one 64x32 image; three detections.

    GT1 = [0, 0, 10, 10], GT2 = [20, 0, 10, 10] (area 100 each: small), crowd = [40, 0, 20, 20] (iscrowd).
    d1 (0.9) = GT1 exactly; d2 (0.8) = [22, 0, 10, 10]: IoU with GT2 = 80 / 120 = 2/3; d3 (0.5) inside the crowd
    region: matched to it (intersection over the detection's area = 1), so ignored: neither TP nor FP.
    At the 4 IoU thresholds 0.50..0.65 both are TPs: precision 1 at recall 0.5 and 1, AP 1.
    At the 6 thresholds 0.70..0.95 d2 is an FP: recall reaches 0.5 only, with precision 1 there; of the 101
    recall points 0, 0.01, ..., 1, the 51 up to 0.5 have precision 1 and the rest 0: AP 51/101.
    AP = (4 * 1 + 6 * 51/101) / 10 = 710/1010; AP50 = 1; AP75 = 51/101; AP_small = AP, medium/large: no GT.
    AR100 = AR10 = (4 * 1 + 6 * 0.5) / 10 = 0.7; AR1 (d1 only, the best detection) = 0.5.
    """
    images = [{"id": 7, "file_name": "a.png", "width": 64, "height": 32}]
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [20, 0, 10, 10]},  # area and iscrowd filled in
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [40, 0, 20, 20], "area": 400, "iscrowd": 1},
    ]
    ann, img_dir = _coco_json(tmp_path, anns, images)
    ds = COCODataset(ann, img_dir, check_images=False)
    assert ds.classes == ("person", "cat")
    boxes_xyxy = torch.tensor([[0.0, 0, 10, 10], [22, 0, 32, 10], [42, 2, 52, 12]])
    out = {"boxes": boxes_xyxy, "scores": torch.tensor([0.9, 0.8, 0.5]), "labels": torch.tensor([1, 1, 1])}
    result = evaluate_predictions_coco(Predictions(["7"], [out], ds.classes), ds)
    s = result.stats
    assert s["AP"] == pytest.approx(710 / 1010) and s["AP_small"] == pytest.approx(710 / 1010)
    assert s["AP50"] == pytest.approx(1.0) and s["AP75"] == pytest.approx(51 / 101)
    assert s["AP_medium"] is None and s["AP_large"] is None and s["AR_medium"] is None
    assert s["AR1"] == pytest.approx(0.5) and s["AR10"] == pytest.approx(0.7) and s["AR100"] == pytest.approx(0.7)
    assert s["AR_small"] == pytest.approx(0.7)
    assert result.ap_per_class == {"person": pytest.approx(710 / 1010), "cat": None}
    doc = result.to_json()
    assert set(COCO_STATS) <= set(doc) and doc["mAP"] == doc["AP"] and doc["metric"] == "coco"
    assert " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.700" in result.summary
    assert "-1.000" in result.summary  # COCO prints -1 where there is nothing to measure; the JSON has null
    # no detections at all: zeros, not a crash (pycocotools' loadRes cannot take an empty list)
    empty = evaluate_coco(coco_ground_truth_of(ds), [], ds.classes)
    assert empty.stats["AP"] == 0.0 and empty.stats["AR100"] == 0.0 and empty.num_detections == 0
    with pytest.raises(ValueError, match="image '8'"):
        evaluate_predictions_coco(Predictions(["8"], [out], ds.classes), ds)


def _random_scene(rng: np.random.Generator, image_id: str, classes: tuple[str, ...]):
    """A 3x3 grid of separated GTs (VOC coordinates) and detections in rssd pixels: jittered copies, duplicates and
    false positives, none with an IoU in [0.4, 0.6] with a GT of its class under either IoU convention."""
    cells = np.array([(i, j) for i in range(3) for j in range(3)], np.float64) * 120
    wh = rng.uniform(25, 90, (9, 2)).round()
    xy = cells + rng.uniform(1, 25, (9, 2)).round()
    gt_voc = np.concatenate([xy, xy + wh - 1], 1)
    gt_labels = rng.integers(1, len(classes) + 1, 9)
    gt_px = gt_voc - np.array([1, 1, 0, 0])
    dets, labels = [], []
    for box, label in zip(gt_px, gt_labels, strict=True):
        for _ in range(rng.choice([0, 1, 1, 1, 2])):  # missed, found, or found twice (a duplicate)
            size = np.tile(box[2:] - box[:2], 2)
            dets.append(box + rng.normal(0, 0.12, 4) * size)
            labels.append(label)
    for _ in range(4):  # false positives anywhere, any class
        x, y = rng.uniform(0, 330, 2)
        w, h = rng.uniform(20, 80, 2)
        dets.append(np.array([x, y, x + w, y + h]))
        labels.append(int(rng.integers(1, len(classes) + 1)))
    dets, labels = np.array(dets), np.array(labels)
    dets[:, 2:] = np.maximum(dets[:, 2:], dets[:, :2] + 2)
    same = labels[:, None] == gt_labels[None, :]
    det_voc = dets + np.array([1, 1, 0, 0])
    iou_voc = np.where(same, np.maximum(voc_iou(det_voc[:, None], gt_voc[None]), 0), 0)
    iou_coco = np.where(same, _iou(dets, gt_px), 0)
    band = ((iou_voc >= 0.4) & (iou_voc <= 0.6)) | ((iou_coco >= 0.4) & (iou_coco <= 0.6))
    keep = ~band.any(1)
    record = GTRecord(image_id, gt_voc, tuple(classes[k - 1] for k in gt_labels), np.zeros(9, bool))
    out = {"boxes": torch.tensor(dets[keep]), "scores": torch.tensor(rng.random(int(keep.sum()))),
           "labels": torch.tensor(labels[keep])}  # fmt: skip
    return record, out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Continuous IoU (COCO's), all pairs: ``(A, 4)`` x ``(B, 4)`` -> ``(A, B)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def test_coco_ap50_agrees_with_voc_all_point_ap() -> None:
    """COCO's AP50 and the devkit's all-point AP on the same detections, through each one's box conversion.

    With no detection near the 0.5 IoU boundary (excluded under both conventions: VOC's +1 pixel widths make
    IoUs a little larger, and could flip such a detection), well-separated GTs (so that COCO's search for another
    unmatched GT finds none, as VOC never looks) and distinct scores, both metrics see the same TP/FP sequence and
    differ only in how they integrate the same precision envelope p(r) (non-increasing, in [0, 1]): VOC takes the
    exact area, COCO the mean of p at the 101 recalls k/100. For such a p the two differ by at most 1/100:
    sum_{k<100} p(k/100)/100 and sum_{k>=1} p(k/100)/100 bracket the area and differ by (p(0) - p(1))/100, and
    the 101-point mean lies within p(0)/100 above the lower sum and 1/101 below the upper one. So the tolerance is
    0.01 per class (measured here: |difference| 0.0012 and 0.0024). Detections passed as xyxy where COCO reads
    [x, y, w, h] score AP50 < 0.01 instead of ~0.46; a one-pixel slip is too small to show here (no IoU lies near
    0.5) and is what test_perfect_detections_score_one catches.
    """
    rng = np.random.default_rng(12)
    classes = ("cat", "person")
    records, ids, outputs = [], [], []
    for i in range(25):
        record, out = _random_scene(rng, f"{i:04d}", classes)
        records.append(record)
        ids.append(record.image_id)
        outputs.append(out)
    voc = evaluate_voc(records, detections_to_voc(ids, outputs, classes), classes, metric="all-point")
    coco = evaluate_predictions_coco(Predictions(ids, outputs, classes), gt=coco_ground_truth(records, classes))
    for c in classes:
        assert 0.3 < voc.ap[c] < 0.95, voc.ap  # a real curve, neither trivial nor empty
        assert coco.ap50_per_class[c] == pytest.approx(voc.ap[c], abs=0.01), (c, coco.ap50_per_class, voc.ap)
    assert coco.stats["AP50"] == pytest.approx(voc.mAP, abs=0.01)


@pytest.fixture()
def coco_checkpoint(tmp_path: Path) -> Path:
    """An untrained ssd-cpu checkpoint for the classes of the tiny COCO json below (person, cat)."""
    torch.manual_seed(0)
    model = build_ssd("ssd-cpu", 3)
    config = TrainConfig(name="untrained", model="ssd-cpu", data="synth", synth_images=10)
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "iteration": 0, "model": model.state_dict(), "model_name": "ssd-cpu",
        "num_classes": 3, "classes": ["person", "cat"], "normalization": model.normalization,
        "config": config.to_dict(),
    })  # fmt: skip
    return path


def test_evaluate_cli_coco_is_the_default_for_coco_data(coco_checkpoint: Path, tmp_path: Path, capsys) -> None:
    images = [{"id": i, "file_name": f"{i}.png", "width": 96, "height": 64} for i in (1, 2)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 30, 50], "area": 1500, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [40, 10, 40, 40], "area": 1600, "iscrowd": 0},
    ]
    ann, img_dir = _coco_json(tmp_path, anns, images, write_images=True)
    out_json, out_dir = tmp_path / "coco.json", tmp_path / "res"
    code = main(["evaluate", "--checkpoint", str(coco_checkpoint), "--data", f"coco:{ann}:{img_dir}",
                 "--json", str(out_json), "--out", str(out_dir), "--batch-size", "2"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in printed.out
    doc = json.loads(out_json.read_text())
    assert doc["metric"] == "coco" and set(COCO_STATS) <= set(doc) and set(doc["ap"]) == {"person", "cat"}
    assert doc["num_images"] == 2 and "images_per_s" in doc
    results = json.loads((out_dir / "coco_results.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} == set(results[0])
    code = main(["evaluate", "--checkpoint", str(coco_checkpoint), "--data", f"coco:{ann}:{img_dir}",
                 "--subset", "crowd"])  # fmt: skip
    assert code == 2 and "VOC metrics only" in capsys.readouterr().err


def test_evaluate_cli_coco_on_voc_result_files(tmp_path: Path, capsys) -> None:
    # The sample VOC annotations written back as result files (their non-difficult boxes): COCO AP 1, since
    # difficult boxes become crowd regions (ignored) and the round trip 1-based -> COCO -> 1-based is exact.
    from rssd.data.voc import load_voc_annotations
    from rssd.voc_records import ClassDetections

    anns = load_voc_annotations(SAMPLES, "2007", "test")
    dets: dict[str, list] = {}
    for a in anns:
        for box, name, difficult in zip(a.boxes, a.names, a.difficult, strict=True):
            if not difficult:
                dets.setdefault(name, []).append((a.image_id, 1.0 - 0.01 * len(dets.get(name, [])), box))
    detections = {
        n: ClassDetections([d[0] for d in v], [d[1] for d in v], np.array([d[2] for d in v])) for n, v in dets.items()
    }
    write_voc_results(detections, tmp_path / "res")
    out_json = tmp_path / "coco.json"
    code = main(["evaluate", "--voc-root", str(SAMPLES), "--results", str(tmp_path / "res"), "--metric", "coco",
                 "--json", str(out_json)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out_json.read_text())
    assert doc["AP"] == pytest.approx(1.0) and doc["AR100"] == pytest.approx(1.0), doc["summary"]
    assert doc["num_images"] == len(anns)
