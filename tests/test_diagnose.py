"""RepGT at the perfect prediction and crowd density, on hand-built boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rssd.boxes import xyxy_to_cxcywh
from rssd.experiments.diagnose import crowd_density, diagnose_annotations, normalised_targets, repgt_at_truth

A = [0.1, 0.1, 0.5, 0.9]
B = [0.3, 0.1, 0.7, 0.9]  # IoU(A, B) = 0.16 / 0.48 = 1/3; IoG(A, B) = 0.16 / 0.32 = 1/2
C = [0.8, 0.0, 1.0, 0.2]


def two_people():
    targets = [{"boxes": torch.tensor([A, B]), "labels": torch.tensor([1, 1])}]
    priors = xyxy_to_cxcywh(torch.tensor([A, B]))  # one prior exactly on each person
    return targets, priors


def test_overlapping_pair_is_penalised_at_the_truth():
    targets, priors = two_people()
    r1 = repgt_at_truth(targets, priors, sigma=1.0, alpha=0.5, steps=300)
    assert int(r1["positives"]) == 2 and int(r1["with_rep"]) == 2  # each repelled by the other
    np.testing.assert_allclose(r1["iog"], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(r1["value"], [math.log(2), math.log(2)], atol=1e-5)  # -ln(1 - 1/2)
    assert (r1["grad"] > 0.01).all()  # the truth is not a stationary point of attraction + repulsion
    assert (r1["optimum_iou"] < 0.999).all() and (r1["optimum_iou"] > 0.8).all()
    r0 = repgt_at_truth(targets, priors, sigma=0.0, optimum=False)
    np.testing.assert_allclose(r0["value"], [0.5, 0.5], atol=1e-6)  # sigma 0: IoG itself
    assert "optimum_iou" not in r0


def test_lonely_or_other_class_objects_have_no_repulsion_target():
    priors = xyxy_to_cxcywh(torch.tensor([A, B]))
    alone = [{"boxes": torch.tensor([A]), "labels": torch.tensor([1])}]
    r = repgt_at_truth(alone, priors)
    assert int(r["positives"]) == 1 and int(r["with_rep"]) == 0 and r["iog"].size == 0
    mixed = [{"boxes": torch.tensor([A, B]), "labels": torch.tensor([1, 2])}]
    assert int(repgt_at_truth(mixed, priors, same_class=True)["with_rep"]) == 0
    assert int(repgt_at_truth(mixed, priors, same_class=False, optimum=False)["with_rep"]) == 2


def test_crowd_density_by_hand():
    targets = [
        {"boxes": torch.tensor([A, B, C]), "labels": torch.tensor([1, 1, 1])},
        {"boxes": torch.tensor([A, B]), "labels": torch.tensor([1, 2])},  # different classes: no pair
    ]
    d = crowd_density(targets, 1)
    assert d["images"] == 2 and d["objects_per_image"] == pytest.approx(2.0)
    assert d["crowd_fraction"] == pytest.approx(2 / 4)
    assert d["pairs_iou_0.3_per_image"] == pytest.approx(0.5) and d["pairs_iou_0.5_per_image"] == 0.0
    assert d["images_with_crowd_pair"] == pytest.approx(0.5)


def test_diagnose_annotations_and_voc_records():
    class Ann:  # a VOCAnnotation-like record: 1-based pixels of a 100 x 100 image
        width = height = 100
        names = ("person", "person", "dog")
        difficult = np.zeros(3, bool)
        boxes = np.array([[11, 11, 50, 90], [31, 11, 70, 90], [81, 1, 100, 20]], float)

    (t,) = normalised_targets([Ann()], classes=["person"])
    torch.testing.assert_close(t["boxes"], torch.tensor([A, B]))
    out = diagnose_annotations("hand", [t], xyxy_to_cxcywh(torch.tensor([A, B])), person_label=1)
    s1 = out["repgt"]["sigma=1"]
    assert s1["with_rep_fraction"] == 1.0 and s1["penalised_at_truth_fraction"] == 1.0
    assert s1["iog"]["q50"] == pytest.approx(0.5, abs=1e-6) and "optimum_iou" in s1
    assert "optimum_iou" not in out["repgt"]["sigma=0"]
    assert out["person_density"]["crowd_fraction"] == 1.0


def test_cli_diagnose_writes_the_report(tmp_path, capsys):
    from rssd.cli import main

    assert main(["experiment", "diagnose", "--images", "12", "--results", str(tmp_path)]) == 0
    assert "diagnosis.md" in capsys.readouterr().out
    import json

    report = json.loads((tmp_path / "diagnosis.json").read_text())
    names = [d["dataset"] for d in report["datasets"]]
    assert names[0].startswith("synthetic crowd-cpu") and len(names) == 2  # no VOC root given
    assert report["datasets"][0]["images"] == 12 and report["datasets"][0]["prior_layout"] == "ssd-mini"
    md = (tmp_path / "diagnosis.md").read_text()
    assert "| synthetic crowd-cpu" in md and (tmp_path / "iog.png").is_file()
    # the sigma table: one row per dataset, the ratio of the mean gradients as the JSON gives it
    g1, g0 = (report["datasets"][0]["repgt"][f"sigma={s}"]["grad"]["mean"] for s in (1, 0))
    table = md.split("gradient median, sigma 1 / 0")[1].splitlines()
    row = next(line for line in table if "synthetic crowd-cpu" in line)
    assert f"| {g1 / g0:.1f}x |" in row and g1 > g0
