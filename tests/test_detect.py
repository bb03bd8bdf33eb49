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
        boxes = decode(loc[i], priors).clamp(0, 1)
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


# ------------------------------------------------------------------------------------------------------------------
# Crowd-aware NMS: Soft-NMS (linear, Gaussian) and DIoU-NMS, against naive loops and hand-computed cases


def naive_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def naive_diou_penalty(a: list[float], b: list[float]) -> float:
    d2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
    c2 = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2
    return d2 / c2 if c2 > 0 else 0.0


def naive_nms(boxes: list[list[float]], scores: list[float], cfg: DetectConfig) -> list[tuple[int, float]]:
    """One image, one class, one box at a time: ``[(index, final score)]`` in the order kept."""
    scores = list(scores)
    remaining = list(range(len(boxes)))
    kept = []
    while remaining:
        m = max(remaining, key=lambda j: (scores[j], -j))  # best current score; ties: the first
        kept.append((m, scores[m]))
        remaining.remove(m)
        for j in list(remaining):
            iou = naive_iou(boxes[m], boxes[j])
            if cfg.nms == "greedy" and iou > cfg.nms_iou:
                remaining.remove(j)
            elif cfg.nms == "diou" and iou - naive_diou_penalty(boxes[m], boxes[j]) ** cfg.diou_beta > cfg.nms_iou:
                remaining.remove(j)
            elif cfg.nms == "soft-linear" and iou > cfg.nms_iou:
                scores[j] *= 1 - iou
            elif cfg.nms == "soft-gaussian":
                scores[j] *= math.exp(-(iou**2) / cfg.soft_sigma)
        if cfg.nms.startswith("soft"):
            remaining = [j for j in remaining if scores[j] > cfg.score_threshold]
    return kept


def naive_detect(loc, conf, priors, cfg: DetectConfig) -> list[set[tuple]]:
    """The whole post-processing, image by image and class by class, with :func:`naive_nms`."""
    out = []
    for i in range(loc.shape[0]):
        boxes = decode(loc[i], priors).clamp(0, 1).double()
        probs = torch.softmax(conf[i], -1)
        found = []
        for c in range(1, conf.shape[-1]):
            cand = [p for p in range(priors.shape[0]) if probs[p, c] > cfg.score_threshold]
            cand = sorted(cand, key=lambda p: -float(probs[p, c]))[: cfg.top_k]
            kept = naive_nms([boxes[p].tolist() for p in cand], [float(probs[p, c]) for p in cand], cfg)
            found += [(c, s, boxes[cand[k]].tolist()) for k, s in kept]
        found = sorted(found, key=lambda t: -t[1])[: cfg.max_detections]
        out.append({(c, round(s, 5), tuple(round(v, 4) for v in b)) for c, s, b in found})
    return out


A = [0.0, 0.0, 0.4, 0.2]  # area 0.08
B = [0.2, 0.0, 0.6, 0.2]  # IoU(A, B) = 0.04 / 0.12 = 1/3; centres 0.2 apart, enclosing 0.6 x 0.2: R = 0.04 / 0.4
C = [0.1, 0.0, 0.3, 0.2]  # inside A with the same centre: IoU 0.5, R = 0


@pytest.mark.parametrize(
    ("method", "extra", "expected"),
    [
        ("greedy", {"nms_iou": 0.3}, [0.9]),  # 1/3 > 0.3: B is deleted
        ("soft-linear", {"nms_iou": 0.3}, [0.9, 0.8 * (1 - 1 / 3)]),  # decayed to 0.5333
        ("soft-linear", {"nms_iou": 0.45}, [0.9, 0.8]),  # 1/3 <= 0.45: untouched
        ("soft-gaussian", {"soft_sigma": 0.5}, [0.9, 0.8 * math.exp(-(1 / 9) / 0.5)]),  # 0.6406
        ("soft-gaussian", {"soft_sigma": 0.1}, [0.9, 0.8 * math.exp(-(1 / 9) / 0.1)]),  # 0.2636
        ("diou", {"nms_iou": 0.3}, [0.9, 0.8]),  # 1/3 - 0.1 = 0.233 <= 0.3: side by side, both kept
        ("diou", {"nms_iou": 0.2}, [0.9]),  # 0.233 > 0.2
        ("diou", {"nms_iou": 0.3, "diou_beta": 8.0}, [0.9]),  # R^8 ~ 0: greedy again
    ],
)
def test_two_boxes_by_hand(method: str, extra: dict, expected: list[float]) -> None:
    loc, conf, priors = outputs_for(torch.tensor([A, B]), torch.tensor([[0, 0.9], [0, 0.8]]))
    cfg = DetectConfig(nms=method, **extra)
    (det,) = detect(loc, conf, priors, config=cfg)
    assert det["scores"].tolist() == pytest.approx(expected, abs=1e-6)
    assert [(k, pytest.approx(s, abs=1e-6)) for k, s in naive_nms([A, B], [0.9, 0.8], cfg)] == list(
        enumerate(expected)
    )


def test_same_centre_is_suppressed_by_diou_too() -> None:
    loc, conf, priors = outputs_for(torch.tensor([A, C]), torch.tensor([[0, 0.9], [0, 0.8]]))
    for method in ("greedy", "diou"):
        assert len(detect(loc, conf, priors, config=DetectConfig(nms=method, nms_iou=0.45))[0]["scores"]) == 1


def test_soft_nms_reorders_and_drops_below_the_threshold() -> None:
    # Three boxes: A (0.9), B (0.8, IoU 1/3 with A), D (0.6, disjoint). Linear at 0.3: B -> 0.533 stays above D? No:
    # 0.533 < 0.6, so D comes second and B third. With score_threshold 0.55 the decayed B is dropped.
    D = [0.7, 0.7, 0.9, 0.9]
    loc, conf, priors = outputs_for(torch.tensor([A, B, D]), torch.tensor([[0, 0.9], [0, 0.8], [0, 0.6]]))
    (det,) = detect(loc, conf, priors, config=DetectConfig(nms="soft-linear", nms_iou=0.3))
    assert det["scores"].tolist() == pytest.approx([0.9, 0.6, 0.8 * 2 / 3], abs=1e-6)
    assert_close(det["boxes"], torch.tensor([A, D, B]))
    (det,) = detect(loc, conf, priors, config=DetectConfig(nms="soft-linear", nms_iou=0.3, score_threshold=0.55))
    assert det["scores"].tolist() == pytest.approx([0.9, 0.6], abs=1e-6)


def test_gaussian_decay_accumulates_over_kept_boxes() -> None:
    # B overlaps A (IoU 1/3) and E (IoU 1/3 too, on its right); A and E are disjoint. B is decayed by A, then E
    # (which it overlaps) is kept before it and decays it a second time: 0.7 * exp(-1/9 / 0.5)^2.
    E = [0.4, 0.0, 0.8, 0.2]
    loc, conf, priors = outputs_for(torch.tensor([A, B, E]), torch.tensor([[0, 0.9], [0, 0.7], [0, 0.65]]))
    (det,) = detect(loc, conf, priors, config=DetectConfig(nms="soft-gaussian"))
    g = math.exp(-(1 / 9) / 0.5)
    assert det["scores"].tolist() == pytest.approx([0.9, 0.65, 0.7 * g * g], abs=1e-6)


@pytest.mark.parametrize("method", ["soft-linear", "soft-gaussian", "diou", "greedy"])
@pytest.mark.parametrize("seed", [0, 1])
def test_crowd_nms_batched_equals_naive_loops(method: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    loc, conf, priors = random_outputs(3, 4, gen)
    cfg = DetectConfig(nms=method, top_k=30, max_detections=25, score_threshold=0.05, nms_iou=0.4)
    batched = detect(loc, conf, priors, None, cfg)
    naive = naive_detect(loc, conf, priors, cfg)
    for i in range(3):
        alone = detect(loc[i : i + 1], conf[i : i + 1], priors, None, cfg)[0]
        assert as_sets(batched[i]) == as_sets(alone) == naive[i]
        assert (batched[i]["scores"][:-1] >= batched[i]["scores"][1:]).all()


def test_crowd_nms_keeps_more_neighbours_than_greedy() -> None:
    # A row of 8 boxes, each overlapping the next by IoU 1/3 (a crowd side by side), all of one class.
    boxes = torch.tensor([[0.1 * k, 0.0, 0.1 * k + 0.2, 0.2] for k in range(8)])
    scores = torch.linspace(0.9, 0.5, 8)
    loc, conf, priors = outputs_for(boxes, torch.stack([torch.zeros(8), scores], 1))
    counts = {m: len(detect(loc, conf, priors, config=DetectConfig(nms=m, nms_iou=0.3))[0]["scores"])
              for m in ("greedy", "diou", "soft-linear")}  # fmt: skip
    assert counts == {"greedy": 4, "diou": 8, "soft-linear": 8}


def test_crowd_nms_empty_and_validation() -> None:
    priors = tiny_priors()
    conf = torch.full((2, priors.shape[0], 3), NEG)
    conf[..., 0] = 0.0
    for method in ("soft-linear", "soft-gaussian", "diou"):
        out = detect(torch.zeros(2, priors.shape[0], 4), conf, priors, config=DetectConfig(nms=method))
        assert [d["boxes"].shape for d in out] == [(0, 4), (0, 4)]
    with pytest.raises(ValueError, match="nms must be one of"):
        DetectConfig(nms="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="soft_sigma"):
        DetectConfig(nms="soft-gaussian", soft_sigma=0.0)


def test_cli_nms_options_reach_detect_config(tmp_path, monkeypatch) -> None:
    import rssd.inference
    from rssd.cli import main
    from rssd.config import TrainConfig
    from rssd.data import SYNTH_CLASSES, sample_files
    from rssd.model import build_ssd
    from rssd.train import CHECKPOINT_FORMAT, save_checkpoint

    model = build_ssd("ssd-cpu", len(SYNTH_CLASSES) + 1)
    config = TrainConfig(name="untrained", model="ssd-cpu", data="synth", synth_images=10)
    ckpt = save_checkpoint(tmp_path / "last.pt", {
        "format": CHECKPOINT_FORMAT, "iteration": 0, "model": model.state_dict(), "model_name": "ssd-cpu",
        "num_classes": len(SYNTH_CLASSES) + 1, "classes": list(SYNTH_CLASSES), "normalization": model.normalization,
        "config": config.to_dict(),
    })  # fmt: skip
    seen = []
    real_detect = rssd.inference.detect

    def spy(loc, conf, priors, sizes=None, cfg=None):
        seen.append(cfg)
        return real_detect(loc, conf, priors, sizes, cfg)

    monkeypatch.setattr(rssd.inference, "detect", spy)  # what rssd detect runs through
    jpg, _ = sample_files("003123")
    argv = ["--nms", "soft-gaussian", "--soft-sigma", "0.3", "--nms-iou", "0.5", "--max-detections", "50"]
    assert main(["detect", "--checkpoint", str(ckpt), str(jpg), "--out", str(tmp_path / "out"), *argv]) == 0
    assert seen[-1] == DetectConfig(score_threshold=0.5, nms="soft-gaussian", soft_sigma=0.3, nms_iou=0.5,
                                    max_detections=50)  # fmt: skip

    def fake_predict(model, dataset, *, batch_size=16, config=None, **kwargs):
        seen.append(config)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(rssd.inference, "predict", fake_predict)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--nms", "diou", "--diou-beta", "0.6"]) == 2
    assert seen[-1] == DetectConfig(score_threshold=0.01, nms="diou", diou_beta=0.6)
