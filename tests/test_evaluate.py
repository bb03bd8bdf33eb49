"""VOC evaluation: one hand-built case per devkit rule, both crowd protocols, MR^-2, result files, the CLI, and a
property test against a per-detection loop written the way the devkit's VOCevaldet.m reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rssd.cli import main
from rssd.crowd_eval import MR_FPPI, crowd_subset, log_average_miss_rate
from rssd.viz import plot_miss_rate, plot_pr_curves
from rssd.voc_eval import average_precision, default_metric, evaluate_voc, format_table, match_class, voc_iou
from rssd.voc_records import (
    ClassDetections,
    GTRecord,
    detections_to_voc,
    gt_from_targets,
    read_voc_results,
    write_voc_results,
)

# ------------------------------------------------------------------------------------------------------------------
# The reference: the devkit's loop, one detection at a time, plain Python floats.

#: MATLAB's 0:0.1:1 (colon operator: a + k*d for the first half, b - (n-k)*d for the second, (a+b)/2 in the middle).
DEVKIT_RECALLS = [k * 0.1 for k in range(5)] + [0.5] + [1.0 - k * 0.1 for k in (4, 3, 2, 1, 0)]


def devkit_reference(records, dets: ClassDetections, cls: str, metric: str = "voc07", thr: float = 0.5):
    """Returns ``(ap or None, tp list, fp list)`` with tp/fp in sorted order."""
    gt = {}
    npos = 0
    for r in records:
        idx = [k for k, n in enumerate(r.names) if n == cls]
        gt[r.image_id] = {
            "bb": [list(map(float, r.boxes[k])) for k in idx],
            "diff": [bool(r.difficult[k]) for k in idx],
            "det": [False] * len(idx),
        }
        npos += sum(1 for k in idx if not r.difficult[k])
    order = sorted(range(len(dets)), key=lambda i: -dets.scores[i])  # Python's sort is stable
    tp, fp = [], []
    for d in order:
        g = gt[str(dets.image_ids[d])]
        bb = [float(v) for v in dets.boxes[d]]
        ovmax, jmax = -math.inf, -1
        for j, bbgt in enumerate(g["bb"]):
            iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + 1.0
            ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + 1.0
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                    + (bbgt[2] - bbgt[0] + 1.0) * (bbgt[3] - bbgt[1] + 1.0)
                    - iw * ih
                )
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        t = f = 0
        if ovmax >= thr:
            if not g["diff"][jmax]:
                if not g["det"][jmax]:
                    t = 1
                    g["det"][jmax] = True
                else:
                    f = 1
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    if npos == 0:
        return None, tp, fp
    ctp = np.cumsum(tp)
    cfp = np.cumsum(fp)
    rec = [c / npos for c in ctp]
    prec = [c / max(c + e, np.finfo(float).eps) for c, e in zip(ctp, cfp, strict=True)]
    if metric == "voc07":
        ap = 0.0
        for t in DEVKIT_RECALLS:
            ps = [p for p, r in zip(prec, rec, strict=True) if r >= t]
            ap += (max(ps) if ps else 0.0) / 11
        return ap, tp, fp
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
    return ap, tp, fp


# ------------------------------------------------------------------------------------------------------------------
# Helpers for hand cases


def rec(image_id: str, boxes: list, names: list, difficult: list | None = None) -> GTRecord:
    return GTRecord(image_id, np.array(boxes, float).reshape(-1, 4), tuple(names), difficult or [False] * len(names))


def dets(rows: list[tuple[str, float, list]]) -> ClassDetections:
    return ClassDetections([r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows], float))


G1, G2, G3 = [1, 1, 10, 10], [101, 101, 150, 150], [201, 1, 260, 60]
FAR = [400, 400, 420, 420]


def ap_of(records, detections, cls="a", metric="voc07"):
    return evaluate_voc(records, {cls: detections}, metric=metric).ap[cls]


# ------------------------------------------------------------------------------------------------------------------
# IoU


def test_voc_iou_plus_one_and_no_overlap() -> None:
    # GT 10x10 pixels (1..10); detection 10x5 (1..5): inter 50, union 100 -> exactly 0.5 with +1 widths
    np.testing.assert_array_equal(voc_iou(np.array([1, 1, 10, 5.0]), np.array(G1, float)), 0.5)
    # touching in one pixel column: iw = 1 with +1 widths, so they overlap (1 * 10 / (100 + 100 - 10))
    np.testing.assert_allclose(voc_iou(np.array([10, 1, 19, 10.0]), np.array(G1, float)), 10 / 190)
    # disjoint: -inf (the devkit computes no overlap at all)
    assert voc_iou(np.array([11, 1, 20, 10.0]), np.array(G1, float)) == -np.inf


def test_iou_boundary_exactly_half_is_tp() -> None:
    records = [rec("i", [G1], ["a"])]
    m = match_class(records, dets([("i", 0.9, [1, 1, 10, 5])]), "a")
    assert m.tp.tolist() == [True]  # IoU 0.5 (with +1; 36/81 = 0.44 without) -> TP: the test is >=
    m = match_class(records, dets([("i", 0.9, [1, 1, 10, 4])]), "a")
    assert m.fp.tolist() == [True]  # 40/100


# ------------------------------------------------------------------------------------------------------------------
# One rule per test


def test_duplicates_are_false_positives_and_ap_by_hand() -> None:
    records = [rec("i", [G1, G2], ["a", "a"])]
    d = dets([("i", 0.9, G1), ("i", 0.8, G1), ("i", 0.7, G2)])
    m = match_class(records, d, "a")
    assert m.tp.tolist() == [True, False, True] and m.fp.tolist() == [False, True, False]
    # rec .5 .5 1, prec 1 .5 2/3: 11-point: t <= .5 -> 1 (6 points), t >= .6 -> 2/3 (5 points)
    assert ap_of(records, d) == pytest.approx((6 + 5 * 2 / 3) / 11)
    # all-point: .5 * 1 + .5 * 2/3
    assert ap_of(records, d, metric="all-point") == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_eleven_point_and_all_point_by_hand() -> None:
    records = [rec("i", [G1, G2, G3], ["a"] * 3)]
    d = dets([("i", 0.9, G1), ("i", 0.8, FAR), ("i", 0.7, G2), ("i", 0.6, FAR), ("i", 0.5, G3)])
    # tp 1 0 1 0 1: rec 1/3 1/3 2/3 2/3 1, prec 1 1/2 2/3 1/2 3/5
    # 11-point: t in {0,.1,.2,.3} -> 1; {.4,.5,.6} -> 2/3; {.7,.8,.9,1} -> 3/5
    assert ap_of(records, d) == pytest.approx((4 + 3 * 2 / 3 + 4 * 0.6) / 11)
    # all-point: envelope 1, 2/3, 3/5 on the three recall steps of 1/3
    assert ap_of(records, d, metric="all-point") == pytest.approx((1 + 2 / 3 + 0.6) / 3)


def test_score_ties_keep_input_order() -> None:
    records = [rec("i", [G1], ["a"])]
    tp_first = dets([("i", 0.5, G1), ("i", 0.5, FAR)])
    fp_first = dets([("i", 0.5, FAR), ("i", 0.5, G1)])
    assert ap_of(records, tp_first) == pytest.approx(1.0)  # prec 1, 1/2 -> 1 at every recall point
    assert ap_of(records, fp_first) == pytest.approx(0.5)  # prec 0, 1/2
    # two tied detections on the same GT: the first given is the TP
    m = match_class(records, dets([("i", 0.5, [1, 1, 10, 9]), ("i", 0.5, G1)]), "a")
    assert m.order.tolist() == [0, 1] and m.tp.tolist() == [True, False]


def test_difficult_is_neither_tp_nor_fp() -> None:
    records = [rec("i", [G1, G2], ["a", "a"], [False, True])]
    d = dets([("i", 0.9, G2), ("i", 0.8, G1)])
    m = match_class(records, d, "a")
    assert m.tp.tolist() == [False, True] and m.fp.tolist() == [False, False]
    assert m.ignored.tolist() == [True, False] and m.npos == 1
    assert ap_of(records, d) == pytest.approx(1.0)  # were it an FP, precision at full recall would be 1/2


def test_best_gt_is_taken_among_all_including_difficult() -> None:
    # The detection overlaps a normal GT (IoU 0.8) and a difficult one (IoU 1): the devkit compares it with the
    # difficult one only, so it is ignored and the normal GT stays missed.
    normal = [1, 1, 100, 100]
    difficult = [1, 1, 100, 80]
    records = [rec("i", [normal, difficult], ["a", "a"], [False, True])]
    m = match_class(records, dets([("i", 0.9, difficult)]), "a")
    assert m.ignored.tolist() == [True] and m.gt_index.tolist() == [1]
    assert ap_of(records, dets([("i", 0.9, difficult)])) == 0.0


def test_taken_best_gt_gives_fp_even_if_another_gt_is_free() -> None:
    a, b = [1, 1, 100, 100], [21, 1, 120, 100]  # IoU(a, b) = 0.67
    records = [rec("i", [a, b], ["a", "a"])]
    d = dets([("i", 0.9, a), ("i", 0.8, [6, 1, 105, 100])])  # second: IoU .9 with a (taken), .74 with b (free)
    m = match_class(records, d, "a")
    assert m.tp.tolist() == [True, False] and m.fp.tolist() == [False, True]


def test_equal_iou_goes_to_first_gt() -> None:
    # Two identical GTs (a duplicate annotation): every detection ties and is compared with the first one only,
    # so the second detection is a duplicate (FP) although the second GT is free.
    records = [rec("i", [G1, G1], ["a", "a"])]
    m = match_class(records, dets([("i", 0.9, G1), ("i", 0.8, G1)]), "a")
    assert m.gt_index.tolist() == [0, 0] and m.tp.tolist() == [True, False] and m.fp.tolist() == [False, True]
    assert m.recall.tolist() == [0.5, 0.5]


def test_class_without_gt_is_none_and_left_out_of_the_mean() -> None:
    records = [rec("i", [G1], ["a"]), rec("j", [G2], ["b"], [True])]  # b: only a difficult object
    detections = {"a": dets([("i", 0.9, G1)]), "b": dets([("j", 0.9, G2)]), "c": dets([("j", 0.3, G3)])}
    r = evaluate_voc(records, detections, ["a", "b", "c", "d"])
    assert r.ap == {"a": pytest.approx(1.0), "b": None, "c": None, "d": None}  # 11 * (1/11): 1 + 2e-16
    assert r.mAP == pytest.approx(1.0)
    js = json.loads(json.dumps(r.to_json()))
    assert js["ap"]["b"] is None and js["mAP"] == r.mAP and js["npos"] == {"a": 1, "b": 0, "c": 0, "d": 0}


def test_class_without_detections_scores_zero() -> None:
    records = [rec("i", [G1, G2], ["a", "b"])]
    r = evaluate_voc(records, {"a": dets([("i", 0.9, G1)])}, ["a", "b"])
    assert r.ap == {"a": pytest.approx(1.0), "b": 0.0} and r.mAP == pytest.approx(0.5)
    for metric in ("voc07", "all-point"):
        assert evaluate_voc(records, {}, ["b"], metric=metric).ap["b"] == 0.0


def test_images_without_detections_lower_recall() -> None:
    records = [rec("i", [G1], ["a"]), rec("j", [G1], ["a"]), rec("k", [], [])]
    m = match_class(records, dets([("i", 0.9, G1)]), "a")
    assert m.npos == 2 and m.recall.tolist() == [0.5]
    assert ap_of(records, dets([("i", 0.9, G1)])) == pytest.approx(6 / 11)  # recall points 0..0.5
    assert ap_of(records, dets([("i", 0.9, G1)]), metric="all-point") == pytest.approx(0.5)


def test_other_class_does_not_match() -> None:
    records = [rec("i", [G1, G2], ["a", "b"])]
    m = match_class(records, dets([("i", 0.9, G2)]), "a")
    assert m.fp.tolist() == [True]


def test_eleven_point_threshold_point_three_as_in_the_devkit() -> None:
    # npos = 10: recall exactly 3/10 does not reach MATLAB's third threshold 0.30000000000000004
    boxes = [[1 + 30 * k, 1, 20 + 30 * k, 20] for k in range(10)]
    records = [rec("i", boxes, ["a"] * 10)]
    d = dets([("i", 0.9, boxes[0]), ("i", 0.8, boxes[1]), ("i", 0.7, boxes[2]), ("i", 0.6, FAR), ("i", 0.5, boxes[3])])
    # prec 1 1 1 .75 .8, rec .1 .2 .3 .3 .4: t = 0, .1, .2 -> 1; t = .3 and .4 -> .8; t >= .5 -> 0
    assert ap_of(records, d) == pytest.approx((3 + 0.8 + 0.8) / 11)
    assert ap_of(records, d) == devkit_reference(records, d, "a")[0]


def test_unknown_image_and_unknown_class_are_errors() -> None:
    records = [rec("i", [G1], ["a"])]
    with pytest.raises(ValueError, match="not in the evaluated image set"):
        evaluate_voc(records, {"a": dets([("zzz", 0.9, G1)])})
    with pytest.raises(ValueError, match="not evaluated"):
        evaluate_voc(records, {"aa": dets([("i", 0.9, G1)])}, ["a"])
    with pytest.raises(ValueError, match="twice"):
        evaluate_voc([records[0], records[0]], {})
    with pytest.raises(ValueError, match="metric"):
        evaluate_voc(records, {}, metric="voc12")  # type: ignore[arg-type]


def test_average_precision_rejects_unknown_metric() -> None:
    m = match_class([rec("i", [G1], ["a"])], dets([]), "a")
    with pytest.raises(ValueError):
        average_precision(m, "coco")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------------
# Crowd subset


CROWD_A, CROWD_B, LONE = [1, 1, 50, 100], [31, 1, 80, 100], [301, 1, 350, 100]  # IoU(A, B) = 0.25 > 0.1


def crowd_case():
    records = [rec("i", [CROWD_A, CROWD_B, LONE], ["person"] * 3)]
    d = dets([("i", 0.9, LONE), ("i", 0.8, CROWD_A), ("i", 0.7, CROWD_B)])
    return records, d


def test_crowd_remove_protocol() -> None:
    records, d = crowd_case()
    sub = crowd_subset(records, "remove")
    assert sub[0].names == ("person", "person") and sub[0].boxes.tolist() == [CROWD_A, CROWD_B]
    r = evaluate_voc(records, {"person": d}, subset="crowd", crowd_protocol="remove")
    m = r.matches["person"]
    assert m.tp.tolist() == [False, True, True] and m.fp.tolist() == [True, False, False] and m.npos == 2
    # prec 0, 1/2, 2/3 at rec 0, .5, 1 -> 2/3 at every recall point
    assert r.ap["person"] == pytest.approx(2 / 3)
    assert r.to_json()["crowd_protocol"] == "remove"


def test_crowd_ignore_protocol() -> None:
    records, d = crowd_case()
    sub = crowd_subset(records, "ignore")
    assert sub[0].difficult.tolist() == [False, False, True]
    r = evaluate_voc(records, {"person": d}, subset="crowd", crowd_protocol="ignore")
    m = r.matches["person"]
    assert m.ignored.tolist() == [True, False, False] and m.npos == 2
    assert r.ap["person"] == pytest.approx(1.0)
    assert evaluate_voc(records, {"person": d}).ap["person"] == pytest.approx(1.0)  # all: 3 TPs of 3


def test_crowd_keeps_difficult_and_pairs_by_class() -> None:
    records = [rec("i", [CROWD_A, CROWD_B, CROWD_A], ["person", "person", "dog"], [True, False, False])]
    sub = crowd_subset(records, "remove")[0]
    assert sub.names == ("person", "person") and sub.difficult.tolist() == [True, False]
    with pytest.raises(ValueError, match="protocol"):
        crowd_subset(records, "drop")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------------
# Log-average miss rate


def test_mr_fppi_points() -> None:
    assert len(MR_FPPI) == 9 and MR_FPPI[0] == 0.01 and MR_FPPI[4] == 0.1 and MR_FPPI[-1] == 1.0
    np.testing.assert_allclose(np.diff(np.log10(MR_FPPI)), 0.25)


def test_log_average_miss_rate_by_hand() -> None:
    # 10 images, 4 people. Sorted: TP FP TP FP FP TP -> fppi 0 .1 .1 .2 .3 .3, recall .25 .25 .5 .5 .5 .75
    people = [[1 + 60 * k, 1, 50 + 60 * k, 100] for k in range(4)]
    records = [rec("0", people, ["person"] * 4)] + [rec(str(i), [], []) for i in range(1, 10)]
    d = dets(
        [
            ("0", 0.9, people[0]),
            ("1", 0.8, FAR),
            ("0", 0.7, people[1]),
            ("2", 0.6, FAR),
            ("3", 0.5, FAR),
            ("0", 0.4, people[2]),
        ]
    )
    mr = evaluate_voc(records, {"person": d}).miss_rate
    # fppi <= point: .01 .. .056 -> miss .75; .1 and .178 -> .5 (fppi .1 counts at 0.1); .316 .. 1 -> .25
    expected = [0.75] * 4 + [0.5] * 2 + [0.25] * 3
    np.testing.assert_allclose(mr.reference_miss_rate, expected)
    assert mr.lamr == pytest.approx(math.exp(np.mean(np.log(expected))))
    np.testing.assert_allclose(mr.fppi, [0, 0.1, 0.1, 0.2, 0.3, 0.3])


def test_miss_rate_first_detection_false_and_perfect() -> None:
    # one person in 10 images; an FP first (fppi .1): miss 1 below fppi .1, then 0 (clamped to 1e-10)
    records = [rec("0", [G1], ["person"])] + [rec(str(i), [], []) for i in range(1, 10)]
    m = match_class(records, dets([("1", 0.9, FAR), ("0", 0.8, G1)]), "person")
    mr = log_average_miss_rate(m)
    np.testing.assert_allclose(mr.reference_miss_rate, [1] * 4 + [0] * 5)
    assert mr.lamr == pytest.approx(math.exp(5 / 9 * math.log(1e-10)))
    # no detections at all: miss rate 1 everywhere
    assert log_average_miss_rate(match_class(records, dets([]), "person")).lamr == 1.0


def test_miss_rate_drops_ignored_and_handles_no_gt() -> None:
    records = [rec("0", [G1, G2], ["person", "person"], [False, True])]
    m = match_class(records, dets([("0", 0.9, G2), ("0", 0.8, G1)]), "person")
    mr = log_average_miss_rate(m)
    assert mr.fppi.tolist() == [0.0] and mr.lamr == pytest.approx(1e-10)
    none = log_average_miss_rate(match_class([rec("0", [], [])], dets([("0", 0.9, G1)]), "person"))
    assert none.lamr is None


# ------------------------------------------------------------------------------------------------------------------
# Result files and conversions


def test_result_files_round_trip(tmp_path: Path) -> None:
    d = {
        "cat": dets([("000001", 0.91234567, [1.5, 2.25, 30.0, 40.75]), ("000002", 0.5, [3, 4, 50, 60])]),
        "dog": ClassDetections.empty(),
    }
    paths = write_voc_results(d, tmp_path, ["cat", "dog"])
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt"]
    assert paths[0].read_text().splitlines()[0] == "000001 0.912346 1.50 2.25 30.00 40.75"
    assert paths[1].read_text() == ""
    back = read_voc_results(tmp_path)
    assert set(back) == {"cat", "dog"} and len(back["dog"]) == 0
    assert back["cat"].image_ids.tolist() == ["000001", "000002"]  # ids stay strings, leading zeros kept
    np.testing.assert_allclose(back["cat"].scores, [0.912346, 0.5])
    np.testing.assert_allclose(back["cat"].boxes, d["cat"].boxes)
    # a class listed without a file has no detections; no file at all is an error
    assert len(read_voc_results(tmp_path, ["cat", "bird"])["bird"]) == 0
    with pytest.raises(FileNotFoundError):
        read_voc_results(tmp_path, ["bird"])


def test_malformed_result_line(tmp_path: Path) -> None:
    (tmp_path / "comp4_det_test_cat.txt").write_text("000001 0.9 1 2 3 4\n000002 0.9 1 2 3\n")
    with pytest.raises(ValueError, match=r"comp4_det_test_cat.txt:2"):
        read_voc_results(tmp_path)
    (tmp_path / "comp4_det_test_cat.txt").write_text("000001 high 1 2 3 4\n")
    with pytest.raises(ValueError, match="not a number"):
        read_voc_results(tmp_path)


def test_detections_to_voc_converts_pixels() -> None:
    outputs = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 8.0, 9.0]]),
            "scores": torch.tensor([0.9, 0.4]),
            "labels": torch.tensor([2, 1]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    d = detections_to_voc(["a", "b"], outputs, ["cat", "dog", "cow"])
    assert set(d) == {"cat", "dog", "cow"} and len(d["cow"]) == 0
    np.testing.assert_allclose(d["dog"].boxes, [[1, 1, 10, 10]])  # rssd pixels (0, 0, 10, 10) = VOC pixels 1..10
    np.testing.assert_allclose(d["cat"].boxes, [[6, 6, 8, 9]])
    assert d["dog"].image_ids.tolist() == ["a"]
    # the same box, as a GT from a dataset target, matches at IoU 1
    gt = gt_from_targets(
        [{"image_id": "a", "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": [2]}], ["cat", "dog"]
    )
    assert gt[0].boxes.tolist() == [[1, 1, 10, 10]] and gt[0].names == ("dog",)
    assert voc_iou(d["dog"].boxes[0], gt[0].boxes[0]) == 1.0
    with pytest.raises(ValueError, match="labels"):
        detections_to_voc(["a"], [{"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": [4]}], ["x"])


def test_table_and_plots_headless() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, d = crowd_case()
    r = evaluate_voc(records, {"person": d, "dog": dets([])}, ["dog", "person"])
    text = format_table(r)
    assert "person" in text and "mAP" in text and "MR^-2 (person)" in text and text.count("\n") >= 5
    assert " - " in text.splitlines()[2]  # dog: no GT -> "-"
    ax = plot_pr_curves(r)
    assert len(ax.lines) == 1  # only the class with an AP
    ax2 = plot_miss_rate({"SSD": r.miss_rate})
    assert ax2.get_xscale() == "log" and len(ax2.lines) == 2
    plt.close("all")


# ------------------------------------------------------------------------------------------------------------------
# Property test against the reference

coords = st.integers(1, 40)


@st.composite
def scenes(draw):
    """A few images, classes a/b, boxes on a coarse grid (many exact IoU ties and boundaries), tied scores."""
    n_images = draw(st.integers(1, 4))
    records = []
    for i in range(n_images):
        g = draw(st.integers(0, 5))
        boxes, names, diff = [], [], []
        for _ in range(g):
            x, y = draw(coords), draw(coords)
            boxes.append([x, y, x + draw(st.integers(0, 12)), y + draw(st.integers(0, 12))])
            names.append(draw(st.sampled_from("ab")))
            diff.append(draw(st.booleans()))
        records.append(rec(f"{i:06d}", boxes, names, diff))
    rows = {"a": [], "b": []}
    for _ in range(draw(st.integers(0, 14))):
        r = records[draw(st.integers(0, n_images - 1))]
        cls = draw(st.sampled_from("ab"))
        score = draw(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]))
        if len(r.names) and draw(st.booleans()):
            base = r.boxes[draw(st.integers(0, len(r.names) - 1))]
            box = (base + np.array([draw(st.integers(-3, 3)) for _ in range(4)])).tolist()
        else:
            x, y = draw(coords), draw(coords)
            box = [x, y, x + draw(st.integers(0, 12)), y + draw(st.integers(0, 12))]
        rows[cls].append((r.image_id, score, box))
    return records, {c: dets(v) if v else ClassDetections.empty() for c, v in rows.items()}


@settings(max_examples=150)
@given(scenes(), st.sampled_from(["voc07", "all-point"]))
def test_matches_devkit_loop(scene, metric) -> None:
    records, detections = scene
    r = evaluate_voc(records, detections, ["a", "b"], metric=metric)
    for c in ("a", "b"):
        ap, tp, fp = devkit_reference(records, detections[c], c, metric)
        m = r.matches[c]
        assert m.tp.astype(int).tolist() == tp and m.fp.astype(int).tolist() == fp
        if ap is None:
            assert r.ap[c] is None
        else:
            assert r.ap[c] == pytest.approx(ap, abs=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# Real VOC2007 test annotations and the CLI


def jittered_detections(records, classes, seed: int = 0) -> dict[str, ClassDetections]:
    rng = np.random.default_rng(seed)
    ids, scores, boxes, names = [], [], [], []
    for r in records:
        for b, n in zip(r.boxes, r.names, strict=True):
            for _ in range(int(rng.integers(0, 3))):
                w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
                ids.append(r.image_id)
                scores.append(float(rng.random()))
                boxes.append(b + rng.normal(0, 0.1, 4) * [w, h, w, h])
                names.append(n)
        for _ in range(3):
            x, y = rng.random(2) * 400
            ids.append(r.image_id)
            scores.append(float(rng.random()) * 0.8)
            boxes.append([x, y, x + 60, y + 90])
            names.append(classes[int(rng.integers(len(classes)))])
    ids_a, s_a, b_a, n_a = np.array(ids), np.array(scores), np.array(boxes), np.array(names)
    return {c: ClassDetections(ids_a[n_a == c], s_a[n_a == c], b_a[n_a == c]) for c in classes}


def test_real_voc2007_subset_matches_reference(test_data: Path) -> None:
    from rssd.data.voc import VOC_CLASSES, read_voc_annotation

    ann_dir = test_data / "voc2007-test" / "VOCdevkit" / "VOC2007" / "Annotations"
    records = [read_voc_annotation(p) for p in sorted(ann_dir.glob("*.xml"))[:400]]
    detections = jittered_detections(records, VOC_CLASSES)
    for metric in ("voc07", "all-point"):
        r = evaluate_voc(records, detections, VOC_CLASSES, metric=metric)
        for c in ("person", "car", "chair"):
            assert r.ap[c] == pytest.approx(devkit_reference(records, detections[c], c, metric)[0], abs=1e-12)
    crowd = evaluate_voc(records, detections, VOC_CLASSES, subset="crowd", crowd_protocol="ignore")
    sub = crowd_subset(records, "ignore")
    assert crowd.ap["person"] == pytest.approx(devkit_reference(sub, detections["person"], "person")[0], abs=1e-12)


def test_cli_evaluate_sample(test_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rssd.data.voc import VOC_CLASSES, load_voc_annotations

    root = test_data / "voc2007-sample9" / "VOCdevkit"
    records = load_voc_annotations(root, "2007", "test")
    detections = jittered_detections(records, VOC_CLASSES, seed=1)
    write_voc_results(detections, tmp_path / "res", VOC_CLASSES)
    out = tmp_path / "out.json"
    args = [
        "evaluate",
        "--voc-root",
        str(root),
        "--year",
        "2007",
        "--split",
        "test",
        "--results",
        str(tmp_path / "res"),
    ]
    assert main([*args, "--json", str(out)]) == 0
    js = json.loads(out.read_text())
    expected = evaluate_voc(records, read_voc_results(tmp_path / "res", VOC_CLASSES), VOC_CLASSES)
    assert js["mAP"] == pytest.approx(expected.mAP) and set(js["ap"]) == set(VOC_CLASSES)
    assert js["metric"] == "voc07" and js["num_images"] == len(records)
    assert any(v is None for v in js["ap"].values())  # 9 images: some classes have no object
    assert "mAP" in capsys.readouterr().out
    assert (
        main([*args, "--metric", "all-point", "--subset", "crowd", "--crowd-protocol", "ignore", "--json", str(out)])
        == 0
    )
    js = json.loads(out.read_text())
    assert js["metric"] == "all-point" and js["subset"] == "crowd" and js["crowd_protocol"] == "ignore"


def test_cli_data_needs_a_checkpoint(tmp_path: Path) -> None:
    # --checkpoint mode itself is tested in test_inference.py
    with pytest.raises(SystemExit, match="--data goes with --checkpoint"):
        main(["evaluate", "--data", "synth"])


def test_default_metric_one_rule() -> None:
    """All-point AP from VOC2010 on (VOC2012), the 11-point metric for VOC2007, a mix with it, and other data."""
    for years in ("2012", "12", "VOC2012", "voc2010", "2012+2010"):
        assert default_metric(years) == "all-point", years
    for years in ("2007", "07", "VOC2007", "07+12", "2007+2012", "synth", "my_data", "", None):
        assert default_metric(years) == "voc07", years


def test_cli_results_default_metric_from_the_year_folder(tmp_path: Path) -> None:
    """``--year 12`` and a --voc-root that is the VOC2012 folder itself both mean VOC2012's all-point AP."""
    from rssd.data.synthetic import SynthConfig, write_synthetic_voc
    from rssd.data.voc import load_voc_annotations

    year_dir = write_synthetic_voc(tmp_path / "VOCdevkit" / "VOC2012", 6, seed=3, config=SynthConfig(size=120),
                                   progress=False)  # fmt: skip
    records = load_voc_annotations(year_dir, split="test")
    perfect = {c: dets([(r.image_id, 1.0, list(b)) for r in records for b, n in zip(r.boxes, r.names, strict=True)
                        if n == c]) for c in ("person", "car", "dog")}  # fmt: skip
    write_voc_results(perfect, tmp_path / "res", list(perfect))
    out = tmp_path / "out.json"
    for root, year, metric in ((year_dir.parent, "12", "all-point"), (year_dir, "2007", "all-point"),
                               (year_dir.parent, "2012", "all-point")):  # fmt: skip
        argv = ["evaluate", "--voc-root", str(root), "--year", year, "--split", "test", "--results",
                str(tmp_path / "res"), "--json", str(out)]  # fmt: skip
        assert main(argv) == 0
        assert json.loads(out.read_text())["metric"] == metric, (root, year)


# ------------------------------------------------------------------------------------------------------------------
# Occlusion levels (CityPersons-style subsets)


def occlusion_case():
    """Four people, visible 0.95 / 0.8 / 0.4 / 0.1, the last one only 30 px tall; one detection on each."""
    boxes = [[1, 1, 60, 100], [101, 1, 160, 100], [201, 1, 260, 100], [301, 1, 330, 30]]
    records = [GTRecord("i", np.array(boxes, float), ("person",) * 4, [False] * 4, [0.95, 0.8, 0.4, 0.1])]
    d = dets([("i", 0.9 - 0.1 * k, b) for k, b in enumerate(boxes)] + [("i", 0.1, [500, 500, 560, 600])])
    return records, d


def test_occlusion_subset_ignores_objects_outside_the_level() -> None:
    from rssd.crowd_eval import OCCLUSION_SUBSETS, occlusion_subset

    records, d = occlusion_case()
    diff = {lv: occlusion_subset(records, lv, min_height=50)[0].difficult.tolist() for lv in OCCLUSION_SUBSETS}
    assert diff["reasonable"] == [False, False, True, True]
    assert diff["bare"] == [False, True, True, True]
    assert diff["partial"] == [True, False, True, True]
    assert diff["heavy"] == [True, True, False, True]  # the 0.1-visible one is only 30 px tall
    assert occlusion_subset(records, "heavy", min_height=20)[0].difficult.tolist() == [True, True, False, False]
    assert occlusion_subset(records, "heavy-cp", min_height=20)[0].difficult.tolist() == [True, True, False, True]
    # partial: detections 0, 2, 3 land on ignored people (neither TP nor FP); 1 is the TP; the far one an FP
    r = evaluate_voc(records, {"person": d}, subset="partial", min_height=50)
    m = r.matches["person"]
    assert m.ignored.tolist() == [True, False, True, True, False] and m.npos == 1
    assert m.tp.tolist() == [False, True, False, False, False] and m.fp.tolist() == [False] * 4 + [True]
    assert r.ap["person"] == pytest.approx(1.0) and r.subset == "partial"
    # the false positive comes after full recall: at every FPPI point (1 image) recall is 1 -> MR^-2 = 1e-10 floor
    assert r.miss_rate is not None and r.miss_rate.lamr == pytest.approx(1e-10)


def test_occlusion_subset_needs_visibility_and_known_levels() -> None:
    from rssd.crowd_eval import occlusion_subset

    records = [rec("img7", [G1], ["person"])]
    with pytest.raises(ValueError, match=r"image img7: no visible fraction"):
        occlusion_subset(records, "heavy")
    with pytest.raises(ValueError, match="unknown occlusion level"):
        occlusion_subset(occlusion_case()[0], "moderate")
    with pytest.raises(ValueError, match="unknown subset"):
        evaluate_voc(records, {}, subset="moderate")
    with pytest.raises(ValueError, match="1 boxes, 2 visible"):
        GTRecord("x", np.array([G1], float), ("a",), [False], [0.5, 0.5])


def test_gt_from_targets_carries_visibility() -> None:
    targets = [{"image_id": "a", "boxes": torch.tensor([[0.0, 0.0, 10.0, 20.0]]), "labels": torch.tensor([1]),
                "visible": np.array([0.5], np.float32)}]  # fmt: skip
    (r,) = gt_from_targets(targets, ["person"])
    assert r.visible.tolist() == [0.5] and r.boxes.tolist() == [[1.0, 1.0, 10.0, 20.0]]


def test_cli_occlusion_level_on_synthetic_voc_layout(tmp_path: Path) -> None:
    from rssd.data.synthetic import SynthConfig, write_synthetic_voc
    from rssd.data.voc import load_voc_annotations

    root = write_synthetic_voc(tmp_path / "synth", 15, seed=2, config=SynthConfig(size=160), progress=False)
    records = load_voc_annotations(root, "synth", "test")
    assert all(r.visible is not None for r in records)  # <visible> is read back from the XML
    classes = ("person", "car", "dog")
    perfect = {c: dets([(r.image_id, 1.0, list(b)) for r in records for b, n in zip(r.boxes, r.names, strict=True)
                        if n == c]) for c in classes}  # fmt: skip
    write_voc_results(perfect, tmp_path / "res", classes)
    out = tmp_path / "out.json"
    args = ["evaluate", "--voc-root", str(root), "--year", "synth", "--split", "test", "--results",
            str(tmp_path / "res"), "--metric", "all-point", "--json", str(out)]  # fmt: skip
    assert main([*args, "--subset", "partial", "--min-height", "8"]) == 0
    js = json.loads(out.read_text())
    assert js["subset"] == "partial" and all(v in (None, 1.0) for v in js["ap"].values())
    partial = evaluate_voc(records, perfect, classes, subset="partial", min_height=8)
    assert js["npos"] == partial.to_json()["npos"] and sum(js["npos"].values()) > 0
    # fewer objects count in a level than in all
    assert sum(js["npos"].values()) < sum(evaluate_voc(records, perfect, classes).to_json()["npos"].values())
