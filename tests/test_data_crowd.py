"""Crowd subset: hand-computed IoUs, the strict threshold, no +1, and the real VOC2007 test counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rssd.cli import main
from rssd.data.crowd import CrowdStats, box_iou_np, crowd_mask, crowd_stats
from rssd.data.voc import VOCAnnotation, load_voc_annotations

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "VOCdevkit"


def test_box_iou_np_hand_computed() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 0, 5], [20, 20, 30, 30]])
    # inter 50, union 150 -> 1/3; an empty box -> 0 (not NaN); disjoint -> 0
    np.testing.assert_allclose(box_iou_np(a, b), [[1 / 3, 0.0, 0.0]])


def test_crowd_mask_hand_computed() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: IoU 1/3 with 1 (same class)          -> crowd
            [5, 0, 15, 10],  # 1                                       -> crowd
            [100, 100, 110, 110],  # 2: alone                          -> no
            [0, 0, 10, 10],  # 3: same box as 0 but another class      -> no (no same-class neighbour)
        ]
    )
    np.testing.assert_array_equal(crowd_mask(boxes, ["person", "person", "person", "dog"]), [1, 1, 0, 0])
    np.testing.assert_array_equal(crowd_mask(boxes, np.array([15, 15, 15, 12])), [1, 1, 0, 0])
    # with labels all equal, 3 duplicates 0 (IoU 1) and overlaps 1
    np.testing.assert_array_equal(crowd_mask(boxes, [1, 1, 1, 1]), [1, 1, 0, 1])


def test_threshold_is_strict() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 1]])  # inter 10 / union 100 = 0.1 exactly
    np.testing.assert_array_equal(crowd_mask(boxes, [1, 1]), [False, False])
    np.testing.assert_array_equal(crowd_mask(boxes, [1, 1], iou_threshold=0.099), [True, True])


def test_no_plus_one() -> None:
    # VOC boxes touching at column 10: with +1 widths they would share a column; without, IoU is 0.
    boxes = np.array([[1, 1, 10, 10], [10, 1, 20, 10]])
    np.testing.assert_array_equal(crowd_mask(boxes, [1, 1], iou_threshold=0.0), [False, False])


def test_tensor_in_tensor_out_and_empty() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5]])
    out = crowd_mask(boxes, torch.tensor([3, 3]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bool
    assert out.tolist() == [True, True]
    assert crowd_mask(np.zeros((0, 4)), []).shape == (0,)
    with pytest.raises(ValueError, match="labels have shape"):
        crowd_mask(boxes, [1])


def _ann(boxes: list, names: tuple, difficult: list) -> VOCAnnotation:
    return VOCAnnotation("x", 100, 100, np.array(boxes, float).reshape(-1, 4), names, np.array(difficult), Path("x"))


def test_stats_difficult_take_part() -> None:
    anns = [
        _ann([[0, 0, 10, 10], [5, 0, 15, 10]], ("person", "person"), [False, True]),  # both crowd
        _ann([[0, 0, 10, 10]], ("dog",), [False]),
        _ann([], (), []),
    ]
    stats = crowd_stats(anns)
    assert stats == CrowdStats(images=3, objects=3, crowd_objects=2, crowd_images=1)
    assert stats.crowd_fraction == pytest.approx(2 / 3)


def test_sample_dinner_table_has_12_crowd_people() -> None:
    ann = {a.image_id: a for a in load_voc_annotations(SAMPLES, "2007", "test")}["003123"]
    mask = crowd_mask(ann.boxes, ann.names)
    people = np.array([n == "person" for n in ann.names])
    assert people.sum() == 14 and (mask & people).sum() == 12


def _naive_counts(anns: list[VOCAnnotation]) -> tuple[int, int]:
    """Plain Python loops, independent of crowd_mask."""
    crowd_objects = crowd_images = 0
    for a in anns:
        n_crowd = 0
        for i, bi in enumerate(a.boxes):
            for j, bj in enumerate(a.boxes):
                if i == j or a.names[i] != a.names[j]:
                    continue
                iw = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
                ih = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
                union = (bi[2] - bi[0]) * (bi[3] - bi[1]) + (bj[2] - bj[0]) * (bj[3] - bj[1]) - iw * ih
                if union > 0 and iw * ih / union > 0.1:
                    n_crowd += 1
                    break
        crowd_objects += n_crowd
        crowd_images += n_crowd > 0
    return crowd_objects, crowd_images


def test_real_voc2007_test_crowd_stats(test_data: Path, capsys: pytest.CaptureFixture) -> None:
    root = test_data / "voc2007-test" / "VOCdevkit"
    anns = load_voc_annotations(root, "2007", "test")
    stats = crowd_stats(anns)
    assert (stats.crowd_objects, stats.crowd_images) == _naive_counts(anns)
    assert stats == CrowdStats(images=4952, objects=14976, crowd_objects=3421, crowd_images=1051)
    assert main(["crowd-stats", "--voc-root", str(root), "--year", "2007", "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stats.as_dict()


def test_cli_text_output(capsys: pytest.CaptureFixture) -> None:
    assert main(["crowd-stats", "--voc-root", str(SAMPLES), "--split", "test", "--iou", "0.1"]) == 0
    out = capsys.readouterr().out
    anns = load_voc_annotations(SAMPLES, "2007", "test")
    s = crowd_stats(anns)
    for key, value in s.as_dict().items():
        assert f"{key}" in out and str(value) in out
    assert "person" in out  # per-class breakdown


def test_cli_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["crowd-stats", "--voc-root", str(tmp_path), "--split", "test"]) == 2
    assert "not found" in capsys.readouterr().err
