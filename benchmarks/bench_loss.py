"""Forward + backward of the full loss (MultiBox + RepGT + RepBox) on CPU: batched vs per-image references.

Batch 32, SSD300 priors (8732), 21 classes, 1-40 GTs per image standing in crowds. References, timed in the
same process: ``tests/reference.py`` (the slow-but-obvious per-image loss the tests compare against), and the
batched loss called one image at a time (a per-image loop of vectorised code, like ssd.pytorch's matching).
Target: batched >= 10x faster than the per-image reference.

    python benchmarks/bench_loss.py [--batch 32] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import torch
from _common import machine, table, timeit

from rssd.losses import RepulsionLoss
from rssd.priors import make_priors
from tests.helpers import crowd
from tests.reference import loss_reference


def make_batch(n: int, num_classes: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(n):
        g = int(torch.randint(1, 41, (1,), generator=gen))
        groups = [
            crowd(k, num_classes, gen, same_class=bool(torch.rand(1, generator=gen) < 0.7)) for k in _split(g, gen)
        ]
        # scatter the groups over the image
        boxes = []
        for grp in groups:
            off = torch.rand(2, generator=gen) * 0.5
            b = grp["boxes"] * 0.6 + off.repeat(2)
            boxes.append(b.clamp(0, 1))
        targets.append(
            {
                "boxes": torch.cat(boxes).to(device),
                "labels": torch.cat([grp["labels"] for grp in groups]).to(device),
            }
        )
    return targets


def _split(g: int, gen: torch.Generator) -> list[int]:
    parts = []
    while g > 0:
        k = min(g, int(torch.randint(1, 9, (1,), generator=gen)))
        parts.append(k)
        g -= k
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    c = 21
    dev = args.device
    priors = make_priors("ssd300", device=dev)
    targets = make_batch(args.batch, c, dev)
    loc = (0.5 * torch.randn(args.batch, priors.shape[0], 4, device=dev)).requires_grad_()
    conf = torch.randn(args.batch, priors.shape[0], c, device=dev).requires_grad_()
    loss = RepulsionLoss(c)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

    def batched():
        loss(loc, conf, priors, targets)["total"].backward()
        sync()

    def per_image_vectorised():
        total = 0.0
        for n in range(args.batch):
            total = total + loss(loc[n : n + 1], conf[n : n + 1], priors, targets[n : n + 1])["total"]
        total.backward()
        sync()

    def reference():
        loss_reference(loc, conf, priors, targets)["total"].backward()
        sync()

    # the numbers agree before they are timed
    out, ref = loss(loc, conf, priors, targets), loss_reference(loc, conf, priors, targets)
    for k in out:
        torch.testing.assert_close(out[k], ref[k].to(out[k].dtype), atol=1e-5, rtol=1e-5)

    n_gt = sum(len(t["labels"]) for t in targets)
    print(f"bench_loss: batch {args.batch}, {priors.shape[0]} priors, {c} classes, {n_gt} GTs; {machine()}")
    t_b = timeit(batched, repeat=5)
    t_v = timeit(per_image_vectorised, repeat=3)
    t_r = timeit(reference, repeat=1, warmup=0)
    rows = [
        {
            "implementation": "batched (rssd.losses)",
            "ms/batch": f"{t_b:.1f}",
            "speed-up vs reference": f"{t_r / t_b:.1f}x",
        },
        {
            "implementation": "per-image loop of the batched code",
            "ms/batch": f"{t_v:.1f}",
            "speed-up vs reference": f"{t_r / t_v:.1f}x",
        },
        {
            "implementation": "per-image reference (tests/reference.py)",
            "ms/batch": f"{t_r:.1f}",
            "speed-up vs reference": "1.0x",
        },
    ]
    print(table(rows, ["implementation", "ms/batch", "speed-up vs reference"]))
    print(f"batched vs per-image reference: {t_r / t_b:.1f}x (target >= 10x); vs per-image loop: {t_v / t_b:.1f}x")


if __name__ == "__main__":
    main()
