"""Model size, forward MACs and CPU training throughput: SSD300, SSD512 and candidates for ``ssd-cpu``.

For every model: parameters, forward MACs per image (convolutions, counted exactly on the meta device) and, for
the CPU-sized ones, training images/s = forward + RepulsionLoss + backward + SGD step on random images with random
people-like targets (8 per image, 20-150 px tall in a 300 px frame), at batch 16 and 32, median of ``--repeat``
steps, in the default (NCHW) and channels_last (NHWC) memory formats. The candidates are the designs weighed
for ``ssd-cpu``; the winner is registered in ``rssd.model``.

    python benchmarks/bench_model.py [--repeat 5] [--batches 16 32] [--candidates]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from _common import machine, table, timeit

from rssd.losses import RepulsionLoss
from rssd.model import SSD, SSD_CONFIGS, ExtraSpec, SSDConfig, build_ssd, forward_macs
from rssd.priors import PRIOR_SPECS


def _cpu_variant(name: str, size: int, divisor: int, batch_norm: bool = True) -> SSDConfig:
    """SSD300's structure at ``size`` px with all widths divided by ``divisor`` and ssd-cpu's prior scales."""
    cpu = SSD_CONFIGS["ssd-cpu"]
    spec = PRIOR_SPECS["ssd-cpu"]
    extras = SSD_CONFIGS["ssd300"].extras
    if size != 300:  # 256 px: maps 32 16 8 4 2 1, every extra halving
        scale = size / 300
        spec = dataclasses.replace(
            spec,
            image_size=size,
            feature_maps=(32, 16, 8, 4, 2, 1),
            steps=(8, 16, 32, 64, 128, 256),
            min_sizes=tuple(s * scale for s in spec.min_sizes),
            max_sizes=tuple(s * scale for s in spec.max_sizes),
        )
        extras = (ExtraSpec(256, 512), ExtraSpec(128, 256), ExtraSpec(128, 256), ExtraSpec(128, 256))
    return dataclasses.replace(
        cpu,
        name=name,
        priors=spec,
        vgg_widths=tuple(w // divisor for w in (64, 128, 256, 512, 512)),
        fc_width=1024 // divisor,
        extras=tuple(ExtraSpec(e.mid // divisor, e.out // divisor, e.kernel, e.stride, e.padding) for e in extras),
        batch_norm=batch_norm,
    )


CANDIDATES = {
    "300px w/4 no-BN": _cpu_variant("300px w/4 no-BN", 300, 4, batch_norm=False),
    "300px w/8 BN": _cpu_variant("300px w/8 BN", 300, 8),
    "256px w/4 BN": _cpu_variant("256px w/4 BN", 256, 4),
    "300px w/2 BN": _cpu_variant("300px w/2 BN", 300, 2),
}


def random_targets(n: int, num_classes: int, gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """``n`` images with 8 people-like boxes each: 20-150 px tall in 300 px, width 0.3-0.5 of the height."""
    targets = []
    for _ in range(n):
        h = (20 + 130 * torch.rand(8, generator=gen)) / 300
        w = h * (0.3 + 0.2 * torch.rand(8, generator=gen))
        x1 = torch.rand(8, generator=gen) * (1 - w)
        y1 = torch.rand(8, generator=gen) * (1 - h)
        labels = torch.randint(1, num_classes, (8,), generator=gen)
        targets.append({"boxes": torch.stack([x1, y1, x1 + w, y1 + h], dim=1), "labels": labels})
    return targets


def train_step_ms(model: SSD, batch: int, repeat: int, channels_last: bool = False) -> float:
    """Median ms of one SGD training step (forward, loss, backward, update) at ``batch``."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, model.image_size, model.image_size, generator=gen)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    images = images.contiguous(memory_format=fmt)
    targets = random_targets(batch, model.num_classes, gen)
    loss_fn = RepulsionLoss(model.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    model.train()

    def step() -> None:
        loc, conf = model(images)
        loss = loss_fn(loc, conf, model.priors, targets)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timeit(step, repeat=repeat, warmup=1)


def _column(batch: int, channels_last: bool) -> str:
    return f"train img/s b{batch}" + (" NHWC" if channels_last else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--candidates", action="store_true", help="also time the alternatives to ssd-cpu")
    ap.add_argument("--num-classes", type=int, default=2, help="classes incl. background (synthetic crowds: 2)")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(machine())

    rows = []
    models: list[tuple[str, SSD, bool]] = [(n, build_ssd(n, 21), False) for n in ("ssd300", "ssd512")]
    models.append(("ssd-cpu", build_ssd("ssd-cpu", args.num_classes), True))
    if args.candidates:
        models += [(n, SSD(cfg, args.num_classes), True) for n, cfg in CANDIDATES.items()]
    for name, model, timed in models:
        s = model.image_size
        row = {
            "model": name,
            "input": s,
            "priors": model.priors.shape[0],
            "params (M)": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}",
            "GMAC/img fwd": f"{forward_macs(model, torch.empty(1, 3, s, s)) / 1e9:.2f}",
        }
        if timed:
            for b in args.batches:
                for cl in (False, True):
                    ms = train_step_ms(model, b, args.repeat, channels_last=cl)
                    row[_column(b, cl)] = f"{b / ms * 1e3:.1f}"
        rows.append(row)
        print(table([row], list(row)), flush=True)
    columns = ["model", "input", "priors", "params (M)", "GMAC/img fwd"]
    columns += [_column(b, cl) for b in args.batches for cl in (False, True)]
    print()
    print(table(rows, columns))


if __name__ == "__main__":
    main()
