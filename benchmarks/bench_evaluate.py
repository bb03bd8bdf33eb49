"""Benchmark: a full VOC2007 test evaluation (4952 images) with rssd.voc_eval vs a devkit-style Python loop.

Ground truth: the real VOC2007 test annotations (``$RSSD_TEST_DATA/voc2007-test/VOCdevkit``, default
``../shared/data``). Detections are generated: every object gets 0-3 jittered copies (IoU with it from about 0.3 to
1, so some miss, some are duplicates) with random scores, and every image gets random false positives, some of them
on objects of another class; tens of thousands in all.

Timed separately: reading the 4952 XML files; writing and reading the ``comp4_det_test_<class>.txt`` files; scoring
(matching + 11-point AP + MR^-2) on all objects and on the crowd subset under both protocols; and, in the same
process, the reference: the devkit's ``VOCevaldet`` loop written plainly in Python (one detection at a time, its
image's GTs one at a time; ``devkit_reference`` of ``tests/test_evaluate.py``).
The check: every class's AP is the same (|diff| < 1e-12).

Run: ``.venv/bin/python benchmarks/bench_evaluate.py [--fp-per-image 8] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository root on sys.path, for tests.test_evaluate)
import numpy as np

from rssd.crowd_eval import crowd_subset
from rssd.data.voc import VOC_CLASSES, load_voc_annotations
from rssd.voc_eval import evaluate_voc
from rssd.voc_records import ClassDetections, read_voc_results, write_voc_results
from tests.test_evaluate import devkit_reference


def make_detections(records, rng: np.random.Generator, fp_per_image: int) -> dict[str, ClassDetections]:
    ids, scores, boxes, names = [], [], [], []
    for r in records:
        w_img, h_img = max(r.width, 100), max(r.height, 100)
        for b, n in zip(r.boxes, r.names, strict=True):
            w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
            for _ in range(int(rng.integers(0, 4))):
                ids.append(r.image_id)
                scores.append(rng.random())
                boxes.append(b + rng.normal(0, 0.12, 4) * [w, h, w, h])
                names.append(n)
        for _ in range(fp_per_image):
            if len(r.names) and rng.random() < 0.3:  # a box on an object, with the wrong class
                b = r.boxes[int(rng.integers(len(r.names)))]
            else:
                x, y = rng.random(2) * [w_img, h_img]
                b = np.array([x, y, x + rng.uniform(20, 200), y + rng.uniform(20, 200)])
            ids.append(r.image_id)
            scores.append(rng.random() * 0.8)
            boxes.append(b)
            names.append(VOC_CLASSES[int(rng.integers(len(VOC_CLASSES)))])
    ids_a, s_a, b_a, n_a = np.array(ids), np.array(scores), np.array(boxes), np.array(names)
    return {c: ClassDetections(ids_a[n_a == c], s_a[n_a == c], b_a[n_a == c]) for c in VOC_CLASSES}


def devkit_loop(records, detections: dict[str, ClassDetections]) -> dict[str, float | None]:
    """VOCevaldet, one class at a time, one detection at a time, 11-point AP: the tests' reference."""
    empty = ClassDetections(np.array([], dtype=str), np.zeros(0), np.zeros((0, 4)))
    return {cls: devkit_reference(records, detections.get(cls, empty), cls)[0] for cls in VOC_CLASSES}


def timed(fn, repeats: int):
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("RSSD_TEST_DATA", str(Path(__file__).parents[2] / "shared/data")))
    ap.add_argument("--fp-per-image", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = Path(args.data) / "voc2007-test" / "VOCdevkit"

    t_load, records = timed(lambda: load_voc_annotations(root, "2007", "test"), 1)
    detections = make_detections(records, np.random.default_rng(args.seed), args.fp_per_image)
    n_det = sum(len(d) for d in detections.values())
    with tempfile.TemporaryDirectory() as tmp:
        t_write, _ = timed(lambda: write_voc_results(detections, tmp, VOC_CLASSES), 1)
        t_read, from_files = timed(lambda: read_voc_results(tmp, VOC_CLASSES), args.repeats)

    t_all, res = timed(lambda: evaluate_voc(records, from_files, VOC_CLASSES), args.repeats)
    t_remove, res_remove = timed(
        lambda: evaluate_voc(records, from_files, VOC_CLASSES, subset="crowd", crowd_protocol="remove"), args.repeats
    )
    t_ignore, res_ignore = timed(
        lambda: evaluate_voc(records, from_files, VOC_CLASSES, subset="crowd", crowd_protocol="ignore"), args.repeats
    )
    t_ref, ref = timed(lambda: devkit_loop(records, from_files), 1)
    t_ref_crowd, ref_crowd = timed(lambda: devkit_loop(crowd_subset(records, "ignore"), from_files), 1)

    def max_diff(a: dict, b: dict) -> float:
        assert all((a[c] is None) == (b[c] is None) for c in VOC_CLASSES)
        return max(abs(a[c] - b[c]) for c in VOC_CLASSES if a[c] is not None)

    diff_all, diff_crowd = max_diff(res.ap, ref), max_diff(res_ignore.ap, ref_crowd)
    print(f"VOC2007 test: {len(records)} images, {sum(len(r.names) for r in records)} objects; {n_det} detections")
    print(f"{'step':<44} {'seconds':>8}")
    print(f"{'read 4952 annotation XML files':<44} {t_load:>8.3f}")
    print(f"{'write 20 comp4_det_test_<class>.txt files':<44} {t_write:>8.3f}")
    print(f"{'read them back':<44} {t_read:>8.3f}")
    print(f"{'rssd.voc_eval, all objects':<44} {t_all:>8.3f}")
    print(f"{'rssd.voc_eval, crowd subset (remove)':<44} {t_remove:>8.3f}")
    print(f"{'rssd.voc_eval, crowd subset (ignore)':<44} {t_ignore:>8.3f}")
    print(f"{'devkit-style Python loop, all objects':<44} {t_ref:>8.3f}   x{t_ref / t_all:.0f} slower")
    print(f"{'devkit-style Python loop, crowd (ignore)':<44} {t_ref_crowd:>8.3f}")
    print(f"mAP (11-point): all {res.mAP:.4f}, crowd remove {res_remove.mAP:.4f}, crowd ignore {res_ignore.mAP:.4f}")
    mr = [r.miss_rate.lamr for r in (res, res_remove, res_ignore)]
    print(f"MR^-2 person: all {mr[0]:.4f}, crowd remove {mr[1]:.4f}, crowd ignore {mr[2]:.4f}")
    print(f"max |AP - reference AP| over classes: all {diff_all:.1e}, crowd (ignore) {diff_crowd:.1e}")
    if diff_all > 1e-12 or diff_crowd > 1e-12:
        raise SystemExit("MISMATCH with the devkit-style reference")


if __name__ == "__main__":
    main()
