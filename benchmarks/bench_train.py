"""Training throughput: the whole loop of ``rssd.train.fit`` vs the bare model step, and (on CUDA) bf16 vs fp32.

Rows, timed in the same process:

* ``model step``: forward + RepulsionLoss + backward + SGD on a batch already in memory (random images,
  people-like targets): the ceiling of the loop.
* ``fit, workers=W``: ``rssd.train.fit`` with the ``ssd-cpu-synth`` preset (rendering, its augmentation,
  collation, the step, logging): images/s from its log, warm-up window excluded. The ratio to the model step is
  the loop's efficiency.
* The model step in float32 NCHW and channels_last (what ``fit`` uses), and on CUDA in bf16 autocast +
  channels_last, with the achieved TFLOP/s (3 x forward MACs x 2 per training image) and its fraction of
  ``--peak-tflops`` (H100 SXM bf16 dense: ~989).

    python benchmarks/bench_train.py [--model ssd-cpu] [--batch 16] [--steps 12] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from _common import machine, table
from bench_model import random_targets

from rssd.config import get_config
from rssd.losses import RepulsionLoss
from rssd.model import build_ssd, forward_macs
from rssd.train import fit


def model_step_rate(name: str, batch: int, steps: int, device: str, bf16: bool, channels_last: bool) -> float:
    torch.manual_seed(0)
    model = build_ssd(name, 4).to(device)
    x = torch.randn(batch, 3, model.image_size, model.image_size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    targets = [
        {k: v.to(device) for k, v in t.items()} for t in random_targets(batch, 4, torch.Generator().manual_seed(0))
    ]
    loss = RepulsionLoss(4)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    priors = model.priors
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(steps + 2):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loc, conf = model(x)
        out = loss(loc, conf, priors, targets)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        opt.step()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def fit_rate(name: str, batch: int, steps: int, workers: int, device: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = get_config(
            "ssd-cpu-synth", model=name, iterations=steps, batch_size=batch, workers=workers, out_dir=tmp,
            name="bench", log_every=max(1, steps // 3), checkpoint_every=10**9, device=device, synth_images=400,
        )  # fmt: skip
        result = fit(cfg, progress=False)
    rates = [row["images_per_s"] for row in result.history[1:]] or [result.history[-1]["images_per_s"]]
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: ssd-cpu on CPU, ssd300 on CUDA")
    ap.add_argument("--batch", type=int, default=None, help="default: 16 on CPU, 32 on CUDA")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    name = args.model or ("ssd300" if cuda else "ssd-cpu")
    batch = args.batch or (32 if cuda else 16)
    model = build_ssd(name, 4)
    macs = forward_macs(model, torch.zeros(1, 3, model.image_size, model.image_size))
    flop_per_image = 3 * macs * 2  # forward + backward (about 2x forward), 2 FLOP per MAC
    gpu = torch.cuda.get_device_name() if cuda else ""
    print(f"bench_train: {name}, batch {batch}, {macs / 1e9:.2f} GMAC/img forward; {machine()} {gpu}")

    rows = []
    base = model_step_rate(name, batch, args.steps, args.device, bf16=False, channels_last=False)
    rows.append({"what": "model step, float32 NCHW", "img/s": base})
    rows.append(
        {
            "what": "model step, float32 channels_last",
            "img/s": model_step_rate(name, batch, args.steps, args.device, bf16=False, channels_last=True),
        }
    )
    if cuda:
        rows.append(
            {
                "what": "model step, bf16 + channels_last",
                "img/s": model_step_rate(name, batch, args.steps, args.device, bf16=True, channels_last=True),
            }
        )
    for w in args.workers:
        rows.append({"what": f"fit loop, workers={w}", "img/s": fit_rate(name, batch, args.steps, w, args.device)})
    for r in rows:
        r["ratio"] = f"{r['img/s'] / base:.2f}x"
        tflops = r["img/s"] * flop_per_image / 1e12
        r["TFLOP/s"] = f"{tflops:.3f}"
        if cuda:
            r["of peak"] = f"{tflops / args.peak_tflops:.1%}"
        r["img/s"] = f"{r['img/s']:.1f}"
    print(table(rows, ["what", "img/s", "ratio", "TFLOP/s"] + (["of peak"] if cuda else [])))


if __name__ == "__main__":
    main()
