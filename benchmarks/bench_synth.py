"""Synthetic crowd scenes: generation speed on one core, and the share of crowd objects.

Draws scenes in memory (``render_scene``) and writes them in VOC layout (JPEG + XML, ``write_synthetic_voc``),
one process, one thread. Target: >= 200 images/s at 300x300 (both ways). Also reports objects per image and the
crowd fraction (target >= 30 %).

    python benchmarks/bench_synth.py [--images 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2
import numpy as np
import torch
from _common import machine, table

from rssd.data.crowd import crowd_stats
from rssd.data.synthetic import SynthConfig, render_scene, write_synthetic_voc

TARGET_IMG_S = 200.0
TARGET_CROWD = 0.30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"bench_synth: {machine()}; one process, one thread, {args.images} images per row")
    rows = []
    ok = True
    for size in (300, 512):
        cfg = SynthConfig(size=size)
        render_scene(args.seed, 0, cfg)  # warm-up (noise bank)
        t0 = time.perf_counter()
        scenes = [render_scene(args.seed, i, cfg) for i in range(args.images)]
        render_s = args.images / (time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_synthetic_voc(tmp, args.images, args.seed, config=cfg, progress=False)
            write_s = args.images / (time.perf_counter() - t0)
        stats = crowd_stats(scenes)
        difficult = float(np.mean(np.concatenate([s.difficult for s in scenes])))
        row = {
            "size": f"{size}x{size}",
            "render img/s": f"{render_s:.0f}",
            "render+write img/s": f"{write_s:.0f}",
            "objects/img": f"{stats.objects / args.images:.2f}",
            "crowd %": f"{100 * stats.crowd_fraction:.1f}",
            "difficult %": f"{100 * difficult:.1f}",
        }
        if size == 300:
            meets = min(render_s, write_s) >= TARGET_IMG_S and stats.crowd_fraction >= TARGET_CROWD
            row["target"] = "OK" if meets else "BELOW"
            ok &= meets
        rows.append(row)
    cols = ["size", "render img/s", "render+write img/s", "objects/img", "crowd %", "difficult %", "target"]
    print(table(rows, cols))
    print(f"target at 300x300: >= {TARGET_IMG_S:.0f} img/s rendering and writing, crowd >= {100 * TARGET_CROWD:.0f} %")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
