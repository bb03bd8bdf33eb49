"""Benchmark: batched post-processing (rssd.detect) vs per-image, per-class Python loops.

A batch of 32 SSD300 outputs (8732 priors, 21 classes), made realistic: the background logit dominates almost
everywhere (a few hundred weak candidates per image pass the 0.01 threshold), and every image holds 1-12 objects
whose overlapping priors predict the object's class with a high score and offsets towards a jittered copy of it,
so NMS has real clusters to suppress.

References, written here:
* ``python-nms``: ssd.pytorch's ``Detect`` structure: for each image, for each class, threshold, best 400, then
  a greedy NMS written as a Python ``while`` loop over torch ops; finally the 200 best of the image.
* ``loop+tv.nms``: the same loops over images and classes, but torchvision's C++ ``nms`` per class (shown for
  honesty: the speed-up over the C++ kernel in a loop is much smaller).

The check: every method returns the same detections (labels, scores and boxes) for every image.
Run: ``.venv/bin/python benchmarks/bench_detect.py [--repeats 5] [--threads 2]``. The methods are timed in turn,
round after round, so that other processes' load falls on all of them; best and median of the rounds are shown.
On a machine shared with other CPU-heavy processes, run it with ``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``):
with the default policy, idle OpenMP workers spin and every small op waits for a core, which slows all methods
down 10-25x and makes the timings meaningless.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.ops import box_iou, nms

from rssd.boxes import cxcywh_to_xyxy, decode, encode
from rssd.detect import DetectConfig, _candidates, _nms, detect
from rssd.priors import make_priors


def make_outputs(n: int, num_classes: int, priors: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc (N, P, 4), conf (N, P, C))`` that look like a trained SSD's on VOC-like images."""
    g = torch.Generator().manual_seed(seed)
    p = priors.shape[0]
    conf = torch.randn(n, p, num_classes, generator=g)  # class logits around 0
    conf[..., 0] = 8.0 + torch.randn(n, p, generator=g)  # background dominates
    loc = 0.5 * torch.randn(n, p, 4, generator=g)
    priors_xyxy = cxcywh_to_xyxy(priors)
    for i in range(n):
        k = int(torch.randint(1, 13, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * 0.7
        wh = 0.08 + torch.rand(k, 2, generator=g) * 0.4
        objects = torch.cat([xy, (xy + wh).clamp(max=1.0)], 1)  # (k, 4)
        classes = torch.randint(1, num_classes, (k,), generator=g)
        iou, which = box_iou(priors_xyxy, objects).max(1)  # (P,)
        pos = iou > 0.4
        jitter = 0.03 * torch.randn(int(pos.sum()), 4, generator=g)
        loc[i, pos] = encode(objects[which[pos]] + jitter, priors[pos])
        conf[i, pos, classes[which[pos]]] = 8.0 + 6.0 * iou[pos] + torch.randn(int(pos.sum()), generator=g)
    return loc, conf


def python_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS as a Python loop: take the best remaining box, drop the ones overlapping it by > threshold."""
    order = torch.argsort(scores, descending=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        if order.numel() == 1:
            break
        rest = order[1:]
        iou = box_iou(boxes[i].unsqueeze(0), boxes[rest])[0]
        order = rest[iou <= iou_threshold]
    return torch.tensor(keep, dtype=torch.long)


def reference_detect(loc, conf, priors, sizes, cfg: DetectConfig, nms_fn) -> list[dict[str, torch.Tensor]]:
    """Per image, per class: the obvious loops."""
    out = []
    for i in range(loc.shape[0]):
        boxes = decode(loc[i], priors).clamp(0, 1)  # (P, 4)
        scores = torch.softmax(conf[i], -1)  # (P, C)
        all_b, all_s, all_l = [], [], []
        for c in range(1, conf.shape[-1]):
            s = scores[:, c]
            m = s > cfg.score_threshold
            if not m.any():
                continue
            b, s = boxes[m], s[m]
            top = torch.argsort(s, descending=True)[: cfg.top_k]
            b, s = b[top], s[top]
            k = nms_fn(b, s, cfg.nms_iou)
            all_b.append(b[k])
            all_s.append(s[k])
            all_l.append(torch.full((len(k),), c, dtype=torch.long))
        b, s, lab = torch.cat(all_b), torch.cat(all_s), torch.cat(all_l)
        best = torch.argsort(s, descending=True)[: cfg.max_detections]
        h, w = sizes[i]
        out.append({"boxes": b[best] * torch.tensor([w, h, w, h]), "scores": s[best], "labels": lab[best]})
    return out


def same_detections(a: list[dict], b: list[dict]) -> bool:
    for da, db in zip(a, b, strict=True):
        if len(da["scores"]) != len(db["scores"]):
            return False
        oa, ob = torch.argsort(da["scores"], descending=True), torch.argsort(db["scores"], descending=True)
        if not torch.equal(da["labels"][oa], db["labels"][ob]):
            return False
        if not torch.allclose(da["scores"][oa], db["scores"][ob]):
            return False
        if not torch.allclose(da["boxes"][oa], db["boxes"][ob], atol=1e-3):
            return False
    return True


def interleaved(fns: dict, rounds: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Time every function once per round, in turn, so that load from other processes hits them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, object] = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return times, outs


def stages(loc, conf, priors, cfg: DetectConfig, rounds: int) -> dict[str, float]:
    """Where ``rssd.detect``'s time goes: its steps run one by one as ``detect`` runs them, median seconds each."""
    n, p, c = conf.shape
    times: dict[str, list[float]] = {k: [] for k in ("softmax, threshold, top-k", "gather + decode", "NMS + cap")}
    with torch.no_grad():
        for _ in range(rounds):
            t0 = time.perf_counter()
            img, prior, cls, scores = _candidates(conf, cfg)
            t1 = time.perf_counter()
            boxes = decode(loc.reshape(n * p, 4).index_select(0, img * p + prior), priors.index_select(0, prior))
            boxes = boxes.clamp(0.0, 1.0) if cfg.clip else boxes
            t2 = time.perf_counter()
            _nms(boxes, scores, img, cls, n, c - 1, cfg)
            t3 = time.perf_counter()
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[k].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = DetectConfig()
    priors = make_priors("ssd300")
    loc, conf = make_outputs(args.batch, 21, priors)
    sizes = [(375 + 5 * i, 500 - 3 * i) for i in range(args.batch)]
    cand = (torch.softmax(conf, -1)[..., 1:] > cfg.score_threshold).sum().item()

    cfg_batch = DetectConfig(nms_batching="batch")
    fns = {
        "rssd.detect (auto: image)": lambda: detect(loc, conf, priors, sizes, cfg),
        "rssd.detect (one NMS call)": lambda: detect(loc, conf, priors, sizes, cfg_batch),
        "loop + torchvision nms": lambda: reference_detect(loc, conf, priors, sizes, cfg, nms),
        "loop + python nms (ref)": lambda: reference_detect(loc, conf, priors, sizes, cfg, python_nms),
    }
    detect(loc, conf, priors, sizes, cfg)  # warm-up
    times, outs = interleaved(fns, args.repeats)
    fast, one, tv, py = outs.values()

    kept = sum(len(d["scores"]) for d in fast)
    print(
        f"SSD300 outputs: batch {args.batch}, {priors.shape[0]} priors, 21 classes; "
        f"{cand / args.batch:.0f} candidates > {cfg.score_threshold} and {kept / args.batch:.0f} kept per image; "
        f"torch threads {torch.get_num_threads()}; {args.repeats} interleaved rounds"
    )
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    t_fast, m_fast = best["rssd.detect (auto: image)"], median["rssd.detect (auto: image)"]
    print(f"{'method':<28} {'best ms':>9} {'ratio':>7} {'median ms':>10} {'ratio':>7} {'same detections':>16}")
    for name, out in zip(fns, (None, one, tv, py), strict=True):
        same = "-" if out is None else str(same_detections(fast, out))
        print(
            f"{name:<28} {1e3 * best[name]:>9.1f} {best[name] / t_fast:>7.1f} {1e3 * median[name]:>10.1f} "
            f"{median[name] / m_fast:>7.1f} {same:>16}"
        )
    parts = stages(loc, conf, priors, cfg, args.repeats)
    total = sum(parts.values())
    print(f"\nwhere rssd.detect's time goes (its steps one by one, median of {args.repeats}; the rest of the median"
          " above is splitting into per-image dicts and scaling to pixels):")
    for name, t in parts.items():
        print(f"  {name:<28} {1e3 * t:>7.1f} ms {100 * t / total:>5.1f} %")
    if not (same_detections(fast, one) and same_detections(fast, tv) and same_detections(fast, py)):
        raise SystemExit("MISMATCH: the batched detections differ from the reference")


if __name__ == "__main__":
    main()
