"""Post-processing: thresholds, per-class NMS, top-k and per-image limits, pixel scaling, batching, and agreement
with an obvious per-image, per-class loop over torchvision's nms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close
from torchvision.ops import nms

from rssd.boxes import decode, encode, xyxy_to_cxcywh
from rssd.detect import DetectConfig, detect

from .helpers import tiny_priors

NEG = -30.0  # a logit whose softmax share is ~1e-13: never a candidate


def outputs_for(boxes_xyxy: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image whose priors decode exactly to ``boxes_xyxy`` (B, 4) with class probabilities ``scores`` (B, C).

    ``scores[:, 0]`` is the background; rows must sum to <= 1 (the rest goes to the background).
    """
    priors = xyxy_to_cxcywh(boxes_xyxy)  # priors equal to the boxes: zero offsets
    loc = torch.zeros(1, boxes_xyxy.shape[0], 4)
    probs = scores.clone()
    probs[:, 0] = 1 - probs[:, 1:].sum(1)
    conf = probs.clamp(min=1e-30).log().unsqueeze(0)  # softmax(log p) = p
    return loc, conf, priors


def as_sets(det: dict) -> set[tuple]:
    return {
        (int(lab), round(float(s), 5), tuple(round(float(v), 4) for v in b))
        for b, s, lab in zip(det["boxes"], det["scores"], det["labels"], strict=True)
    }


def test_nms_is_per_class() -> None:
    box = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
    boxes = torch.cat([box, box + 0.01, box])  # 0 and 1 overlap heavily; 2 is box 0 again
    scores = torch.tensor([[0, 0.9, 0.0], [0, 0.8, 0.0], [0, 0.0, 0.7]])  # classes 1, 1, 2
    loc, conf, priors = outputs_for(boxes, scores)
    (det,) = detect(loc, conf, priors)
    assert det["labels"].tolist() == [1, 2]  # the class-1 duplicate is gone; class 2 is not suppressed by class 1
    assert_close(det["scores"], torch.tensor([0.9, 0.7]))
    assert_close(det["boxes"], torch.cat([box, box]))


def test_nms_iou_threshold_is_strict() -> None:
    a = torch.tensor([0.0, 0.0, 0.4, 0.2])
    b = torch.tensor([0.2, 0.0, 0.6, 0.2])  # IoU = 0.04 / 0.12 = 1/3
    loc, conf, priors = outputs_for(torch.stack([a, b]), torch.tensor([[0, 0.9], [0, 0.8]]))
    kept = detect(loc, conf, priors, config=DetectConfig(nms_iou=0.34))[0]
    assert len(kept["scores"]) == 2
    kept = detect(loc, conf, priors, config=DetectConfig(nms_iou=0.33))[0]
    assert kept["scores"].tolist() == pytest.approx([0.9])


def test_score_threshold_is_strict_and_background_dropped() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3], [0.5, 0.5, 0.6, 0.6]])
    scores = torch.tensor([[0, 0.011, 0.0], [0, 0.009, 0.0], [0, 0.0, 0.02]])
    loc, conf, priors = outputs_for(boxes, scores)
    (det,) = detect(loc, conf, priors)
    assert det["labels"].tolist() == [2, 1]
    (det,) = detect(loc, conf, priors, config=DetectConfig(score_threshold=0.015))
    assert det["labels"].tolist() == [2]
    # a box whose background probability is high never shows up as a "class 0" detection
    assert (det["labels"] >= 1).all()


def test_top_k_per_class_before_nms() -> None:
    # 6 disjoint class-1 boxes and 2 class-2 boxes: top_k=3 keeps the 3 best of class 1 and both of class 2.
    boxes = torch.tensor([[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(8)])
    s1 = torch.tensor([0.3, 0.9, 0.5, 0.8, 0.2, 0.6, 0.0, 0.0])
    s2 = torch.tensor([0.0] * 6 + [0.4, 0.7])
    loc, conf, priors = outputs_for(boxes, torch.stack([torch.zeros(8), s1, s2], 1))
    (det,) = detect(loc, conf, priors, config=DetectConfig(top_k=3))
    assert det["labels"].tolist() == [1, 1, 2, 1, 2]
    assert_close(det["scores"], torch.tensor([0.9, 0.8, 0.7, 0.6, 0.4]))


def test_top_k_counts_before_suppression() -> None:
    # The best class-1 box suppresses the second; top_k=2 had already dropped the third, so only one is left.
    a = torch.tensor([0.1, 0.1, 0.5, 0.5])
    boxes = torch.stack([a, a + 0.01, torch.tensor([0.6, 0.6, 0.9, 0.9])])
    loc, conf, priors = outputs_for(boxes, torch.tensor([[0, 0.9], [0, 0.8], [0, 0.7]]))
    assert len(detect(loc, conf, priors, config=DetectConfig(top_k=2))[0]["scores"]) == 1
    assert len(detect(loc, conf, priors, config=DetectConfig(top_k=3))[0]["scores"]) == 2


def test_max_detections_per_image_keeps_the_best() -> None:
    boxes = torch.tensor([[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(6)])
    s = torch.tensor([0.3, 0.9, 0.5, 0.8, 0.2, 0.6])
    loc, conf, priors = outputs_for(boxes, torch.stack([torch.zeros(6), s, torch.zeros(6)], 1))
    for batching in ("image", "batch"):
        (det,) = detect(loc, conf, priors, config=DetectConfig(max_detections=4, nms_batching=batching))
        assert_close(det["scores"], torch.tensor([0.9, 0.8, 0.6, 0.5]))


def test_pixel_scaling_and_clipping() -> None:
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.8, 0.8, 1.2, 1.1]])  # the second leaves the image
    loc, conf, priors = outputs_for(boxes, torch.tensor([[0, 0.9], [0, 0.8]]))
    (det,) = detect(loc, conf, priors, image_sizes=[(100, 200)])  # (H, W)
    assert_close(det["boxes"], torch.tensor([[20.0, 20.0, 100.0, 60.0], [160.0, 80.0, 200.0, 100.0]]))
    (det,) = detect(loc, conf, priors, image_sizes=torch.tensor([[100, 200]]), config=DetectConfig(clip=False))
    assert_close(det["boxes"][1], torch.tensor([160.0, 80.0, 240.0, 110.0]))
    (det,) = detect(loc, conf, priors)  # no sizes: normalised
    assert_close(det["boxes"][0], boxes[0])


def test_decodes_offsets_with_the_priors() -> None:
    priors = tiny_priors()
    target = torch.tensor([[0.2, 0.3, 0.6, 0.9]])
    loc = encode(target.expand(priors.shape[0], 4), priors).unsqueeze(0)  # every prior points at the target
    conf = torch.full((1, priors.shape[0], 2), NEG)
    conf[0, :, 0] = 0.0
    conf[0, 17, 1] = 5.0  # one confident prior
    (det,) = detect(loc, conf, priors, image_sizes=[(50, 100)])
    assert det["labels"].tolist() == [1]
    assert_close(det["boxes"], torch.tensor([[20.0, 15.0, 60.0, 45.0]]), atol=1e-4, rtol=0)
    assert det["scores"].item() == pytest.approx(1 / (1 + math.exp(-5)), abs=1e-6)


def test_empty_outputs() -> None:
    priors = tiny_priors()
    conf = torch.full((3, priors.shape[0], 4), NEG)
    conf[..., 0] = 0.0
    out = detect(torch.zeros(3, priors.shape[0], 4), conf, priors, image_sizes=[(10, 10)] * 3)
    assert len(out) == 3
    for det in out:
        assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["labels"].dtype == torch.int64


def test_input_validation() -> None:
    priors = tiny_priors()
    with pytest.raises(ValueError, match="priors"):
        detect(torch.zeros(1, 10, 4), torch.zeros(1, 10, 3), priors)
    with pytest.raises(ValueError, match="image_sizes"):
        detect(torch.zeros(2, priors.shape[0], 4), torch.zeros(2, priors.shape[0], 3), priors, [(1, 1)])
    with pytest.raises(ValueError):
        DetectConfig(nms_batching="gpu")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------------
# Against a per-image, per-class loop


def reference_detect(loc, conf, priors, sizes, cfg: DetectConfig) -> list[dict]:
    out = []
    for i in range(loc.shape[0]):
        boxes = decode(loc[i], priors, cfg.variances).clamp(0, 1)
        scores = torch.softmax(conf[i], -1)
        bs, ss, ls = [torch.zeros(0, 4)], [torch.zeros(0)], [torch.zeros(0, dtype=torch.long)]
        for c in range(1, conf.shape[-1]):
            m = scores[:, c] > cfg.score_threshold
            b, s = boxes[m], scores[m, c]
            top = torch.argsort(s, descending=True)[: cfg.top_k]
            keep = nms(b[top].double(), s[top].double(), cfg.nms_iou)
            bs.append(b[top][keep])
            ss.append(s[top][keep])
            ls.append(torch.full((len(keep),), c))
        b, s, lab = torch.cat(bs), torch.cat(ss), torch.cat(ls)
        best = torch.argsort(s, descending=True)[: cfg.max_detections]
        h, w = sizes[i]
        out.append({"boxes": b[best] * torch.tensor([w, h, w, h]), "scores": s[best], "labels": lab[best]})
    return out


def random_outputs(n: int, num_classes: int, gen: torch.Generator, crowded: bool = False):
    priors = tiny_priors()
    p = priors.shape[0]
    loc = 0.3 * torch.randn(n, p, 4, generator=gen)
    conf = torch.randn(n, p, num_classes, generator=gen)
    conf[..., 0] += 2.5
    if crowded:  # image 0: 300 priors are class-1 near-duplicates of one box, above every other candidate
        target = torch.tensor([[0.3, 0.3, 0.7, 0.8]])
        loc[0, :300] = encode(target.expand(300, 4), priors[:300]) + 0.01 * torch.randn(300, 4, generator=gen)
        conf[0, :300, 1] = 9.0 + torch.rand(300, generator=gen)
        conf[0, :300, 2:] = NEG
        conf[0, 300:, 1] = NEG
    return loc, conf, priors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_equals_per_image_and_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    loc, conf, priors = random_outputs(5, 6, gen)
    sizes = [(100 + 10 * i, 200 - 7 * i) for i in range(5)]
    cfg = DetectConfig(top_k=40, max_detections=30)
    batched = detect(loc, conf, priors, sizes, cfg)
    one_call = detect(loc, conf, priors, sizes, DetectConfig(top_k=40, max_detections=30, nms_batching="batch"))
    ref = reference_detect(loc, conf, priors, sizes, cfg)
    for i in range(5):
        alone = detect(loc[i : i + 1], conf[i : i + 1], priors, sizes[i : i + 1], cfg)[0]
        assert as_sets(batched[i]) == as_sets(alone) == as_sets(one_call[i]) == as_sets(ref[i])
        assert len(batched[i]["scores"]) == 30  # enough candidates: the cap binds
        assert (batched[i]["scores"][:-1] >= batched[i]["scores"][1:]).all()


def test_growing_prefix_when_the_best_candidates_are_suppressed() -> None:
    # Image 0's best 300 candidates are near-duplicates of one class-1 box: NMS on the first prefix (200) leaves
    # one, fewer than max_detections, so the per-image schedule must look further; it must equal the one-call result.
    gen = torch.Generator().manual_seed(3)
    loc, conf, priors = random_outputs(2, 4, gen, crowded=True)
    cfg = DetectConfig(max_detections=100)
    image = detect(loc, conf, priors, None, cfg)
    batch = detect(loc, conf, priors, None, DetectConfig(max_detections=100, nms_batching="batch"))
    ref = reference_detect(loc, conf, priors, [(1, 1)] * 2, cfg)
    for i in range(2):
        assert as_sets(image[i]) == as_sets(batch[i]) == as_sets(ref[i])
    labels = image[0]["labels"]
    assert (labels == 1).sum() == 1 and (labels > 1).sum() > 10  # found beyond the first prefix
