"""Data loading throughput on CPU: decode, eval transform, SSD training augmentation, DataLoader workers.

Two sources: the synthetic scenes written in VOC layout (300x300 JPEGs) and real VOC photos (the 4 samples of
``data/samples``, about 500x375, cycled; or ``$RSSD_VOC_ROOT``'s VOC2007 test set when it is set). Each row is
images per second over ``--images`` items; ratios are relative to reading (decoding) alone in one process, and
to one process for the worker rows (measured on their second epoch, workers already started). Workers only pay
off when cores are free: with 2 cores and the trainer running, 1 worker is the useful setting.

    python benchmarks/bench_loader.py [--images 400] [--size 300] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _common import ROOT, machine, table
from torch.utils.data import Dataset

from rssd.data.common import make_loader
from rssd.data.synthetic import write_synthetic_voc
from rssd.data.transforms import SSDEvalTransform, SSDTrainTransform
from rssd.data.voc import VOCDataset


class Cycle(Dataset):
    """``n`` items cycling through a small dataset (so 4 photos make a 400-image run)."""

    def __init__(self, base: VOCDataset, n: int, transform=None) -> None:
        self.base, self.n, self.transform = base, n, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        image, target = self.base[i % len(self.base)]
        return self.transform(image, target) if self.transform is not None else (image, target)


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench(name: str, base: VOCDataset, n: int, size: int, batch: int) -> list[dict]:
    train, evalt = SSDTrainTransform(size), SSDEvalTransform(size)
    torch.manual_seed(0)

    def loop(ds: Dataset) -> None:
        for i in range(len(ds)):
            ds[i]

    def epoch(loader) -> None:
        for _ in loader:
            pass

    rows = []
    decode = rate(lambda: loop(Cycle(base, n)), n)
    rows.append({"data": name, "stage": "read + decode", "img/s": decode})
    rows.append({"data": name, "stage": "+ eval transform", "img/s": rate(lambda: loop(Cycle(base, n, evalt)), n)})
    one = rate(lambda: loop(Cycle(base, n, train)), n)
    rows.append({"data": name, "stage": "+ train augmentation", "img/s": one})
    for workers in (0, 1, 2):
        loader = make_loader(Cycle(base, n, train), batch, shuffle=True, num_workers=workers)
        t0 = time.perf_counter()
        epoch(loader)  # first epoch: includes starting the workers
        first = time.perf_counter() - t0
        r = rate(lambda loader=loader: epoch(loader), n)  # second epoch: persistent workers
        stage = f"DataLoader, {workers} workers, batch {batch}"
        rows.append({"data": name, "stage": stage, "img/s": r, "vs1": r / one, "1st epoch s": f"{first:.2f}"})
        del loader
    for r in rows:
        r["vs decode"] = f"{r['img/s'] / decode:.2f}"
        r["vs 1 process"] = f"{r.pop('vs1'):.2f}" if "vs1" in r else ""
        r["img/s"] = f"{r['img/s']:.0f}"
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"bench_loader: {machine()}, {os.cpu_count()} CPUs; model input {args.size}px")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        synth = write_synthetic_voc(Path(tmp) / "synth", 200, seed=0, progress=False)
        rows += bench("synth 300px", VOCDataset(synth, split="all"), args.images, args.size, args.batch)
    voc_root = os.environ.get("RSSD_VOC_ROOT")
    if voc_root and (Path(voc_root) / "VOC2007" / "JPEGImages").is_dir():
        photos, name = VOCDataset(voc_root, "2007", "test"), "VOC2007 test"
    else:
        photos, name = VOCDataset(ROOT / "data" / "samples" / "VOCdevkit", "2007", "test"), "VOC photos (4)"
    rows += bench(name, photos, args.images, args.size, args.batch)
    print(table(rows, ["data", "stage", "img/s", "vs decode", "vs 1 process", "1st epoch s"]))
    print("DataLoader rows: second epoch (persistent workers); '1st epoch s' includes starting them.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
