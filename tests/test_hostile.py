"""A diverging model (|loc| in the thousands) gives finite boxes, losses, detections and scores, never NaN."""

from __future__ import annotations

import math

import numpy as np
import torch

from rssd.boxes import DECODE_CLAMP, decode
from rssd.detect import DetectConfig, detect
from rssd.losses import RepulsionLoss
from rssd.priors import make_priors
from rssd.voc_eval import evaluate_voc
from rssd.voc_records import GTRecord, detections_to_voc


def hostile(n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    priors = make_priors("ssd-mini")
    loc = (torch.rand(n, priors.shape[0], 4, generator=g) - 0.5) * 6000.0  # offsets up to +-3000
    conf = torch.randn(n, priors.shape[0], 4, generator=g) * 50.0
    return priors, loc, conf


def test_decode_clamps_the_log_size():
    priors = torch.tensor([[0.5, 0.5, 0.1, 0.2]])
    boxes = decode(torch.tensor([[0.0, 0.0, 5000.0, -5000.0]]), priors)
    assert torch.isfinite(boxes).all()
    w, h = float(boxes[0, 2] - boxes[0, 0]), float(boxes[0, 3] - boxes[0, 1])
    assert math.isclose(w, 0.1 * math.exp(DECODE_CLAMP), rel_tol=1e-5)  # clamped: 62.5x the prior
    assert h < 1e-30  # shrinking is not clamped: a tiny box is finite
    # inside the clamp nothing changes: encode/decode round trips stay exact
    small = torch.tensor([[0.3, -0.2, 1.5, -2.0]])
    expected = torch.tensor([[0.5 + 0.3 * 0.1 * 0.1, 0.5 - 0.2 * 0.1 * 0.2, 0.1 * math.exp(0.3), 0.2 * math.exp(-0.4)]])
    cxcywh = torch.cat([(decode(small, priors)[:, :2] + decode(small, priors)[:, 2:]) / 2,
                        decode(small, priors)[:, 2:] - decode(small, priors)[:, :2]], 1)  # fmt: skip
    torch.testing.assert_close(cxcywh, expected)


def test_hostile_predictions_through_loss_detect_and_evaluation():
    priors, loc, conf = hostile()
    targets = [
        {"boxes": torch.tensor([[0.1, 0.1, 0.4, 0.9], [0.3, 0.1, 0.6, 0.9]]), "labels": torch.tensor([1, 1])},
        {"boxes": torch.tensor([[0.5, 0.5, 0.7, 0.8]]), "labels": torch.tensor([2])},
    ]
    loc.requires_grad_(True)
    terms = RepulsionLoss(4, alpha=0.5, beta=0.5)(loc, conf, priors, targets)
    for k, v in terms.items():
        assert torch.isfinite(v), k
    terms["total"].backward()
    assert torch.isfinite(loc.grad).all()

    dets = detect(loc.detach(), conf, priors, [(160, 160), (120, 200)], DetectConfig())
    for d in dets:
        assert torch.isfinite(d["boxes"]).all() and torch.isfinite(d["scores"]).all()
        assert (d["boxes"] >= 0).all() and (d["boxes"][:, 0::2] <= 200).all()  # clipped to the image
    gt = [GTRecord("a", np.array([[17, 17, 64, 144]], float), ("person",), [False]),
          GTRecord("b", np.array([[101, 61, 140, 96]], float), ("car",), [False])]  # fmt: skip
    classes = ("person", "car", "dog")
    result = evaluate_voc(gt, detections_to_voc(["a", "b"], dets, classes), classes)
    assert all(v is None or 0.0 <= v <= 1.0 for v in result.ap.values()) and result.mAP is not None
