"""The rssd.viz views behind notebooks 07, 08 and 11 work headless and return the numbers they draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from rssd.boxes import encode, xyxy_to_cxcywh  # noqa: E402
from rssd.detect import DetectConfig  # noqa: E402
from rssd.losses import RepulsionLoss  # noqa: E402
from rssd.priors import PRIOR_SPECS, make_priors  # noqa: E402
from rssd.viz import nms_view, prior_cell_view, repgt_per_prior, repulsion_crowd_view  # noqa: E402


def test_prior_cell_view_rows_are_the_priors_of_that_cell() -> None:
    spec = PRIOR_SPECS["ssd300"]
    rows = prior_cell_view(spec, 2, 3, 4, ax=False)
    assert rows == [38 * 38 * 4 + 19 * 19 * 6 + (3 * 10 + 4) * 6 + a for a in range(6)]
    priors = make_priors(spec)[rows]
    assert torch.allclose(priors[:, :2], torch.tensor([[4.5 * 32 / 300, 3.5 * 32 / 300]]).expand(6, 2))
    fig, ax = plt.subplots()
    assert prior_cell_view(spec, 5, 0, 0, image=np.zeros((40, 60, 3), np.uint8), ax=ax) == [8728, 8729, 8730, 8731]
    plt.close(fig)


def test_nms_view_counts_duplicates_by_threshold() -> None:
    a = torch.tensor([[0.1, 0.1, 0.5, 0.9]])
    boxes = torch.cat([a, a + 0.02])  # two boxes on one object, IoU ~0.8
    priors = xyxy_to_cxcywh(boxes)
    loc = torch.zeros(2, 4)
    conf = torch.tensor([[0.0, 5.0], [0.0, 4.0]])
    gt = a * 100
    high = nms_view(np.zeros((100, 100, 3), np.uint8), gt, torch.tensor([1]), loc, conf, priors,
                    DetectConfig(nms_iou=0.9, score_threshold=0.5), ax=False)  # fmt: skip
    low = nms_view(np.zeros((100, 100, 3), np.uint8), gt, torch.tensor([1]), loc, conf, priors,
                   DetectConfig(nms_iou=0.45, score_threshold=0.5), ax=False)  # fmt: skip
    assert (high["tp"], high["duplicate"], low["tp"], low["duplicate"]) == (1, 1, 1, 0)
    fig, ax = plt.subplots()
    drawn = nms_view(np.zeros((100, 100, 3), np.uint8), gt, torch.tensor([1]), loc, conf, priors, ax=ax)
    assert drawn["tp"] == 1
    plt.close(fig)


def test_repgt_per_prior_equals_the_loss_and_the_view() -> None:
    priors = make_priors("ssd300")
    boxes = torch.tensor([[0.30, 0.25, 0.50, 0.85], [0.42, 0.22, 0.62, 0.84]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 1])}
    torch.manual_seed(0)
    loc = 0.3 * torch.randn(priors.shape[0], 4)
    loc[:200] = encode(target["boxes"][:1].expand(200, 4), priors[:200])
    r = repgt_per_prior(loc, priors, target)
    loss = RepulsionLoss(2, alpha=1.0, beta=0.0)(loc[None], torch.zeros(1, priors.shape[0], 2), priors, [target])
    torch.testing.assert_close(r["total"], loss["rep_gt"])
    assert (r["value"][~r["positive"]] == 0).all() and r["grad"].shape == (priors.shape[0], 4)
    fig, ax = plt.subplots()
    numbers = repulsion_crowd_view(np.zeros((60, 80, 3), np.uint8), loc, priors, target, 0, ax=ax)
    plt.close(fig)
    assert numbers == repulsion_crowd_view(None, loc, priors, target, 0, ax=False)
    assert numbers["positives"] == int((r["positive"] & (r["matched"] == 0)).sum()) and numbers["with_rep"] > 0
