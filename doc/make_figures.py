"""Draw the README's figures from two training runs: plain SSD and SSD + RepGT on the same data.

    python doc/make_figures.py --ssd runs/ssd-cpu-synth-ssd --repgt runs/ssd-cpu-synth-repgt [--out doc]

Writes ``training.png`` (every loss term of both runs against the iteration, from their ``log.csv``) and
``crowd_gallery.jpg`` (the most crowded test scenes, detections of both models at score >= 0.5 coloured by error
kind: green true positive, red between two objects, orange duplicate, yellow poor localisation, magenta
background; white dashed: the ground truth).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rssd.data import crowd_mask, make_dataset  # noqa: E402
from rssd.detect import DetectConfig  # noqa: E402
from rssd.evaluate import classify_detections, predict  # noqa: E402
from rssd.train import load_model  # noqa: E402
from rssd.viz import show_detection_errors  # noqa: E402


def read_log(run: Path) -> dict[str, list[float]]:
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{run / 'log.csv'}: no rows (has the run logged anything?)")
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def training_figure(runs: dict[str, Path], out: Path) -> None:
    terms = ("total", "loc", "conf", "rep_gt")
    fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2), constrained_layout=True)
    for label, run in runs.items():
        log = read_log(run)
        for ax, term in zip(axes, terms, strict=True):
            ax.plot(log["iteration"], log[term], label=label)
            ax.set_title(term)
            ax.set_xlabel("iteration")
    axes[0].legend()
    fig.suptitle("training loss terms per positive (plain SSD does not compute rep_gt: 0)", fontsize=10)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def gallery_figure(runs: dict[str, Path], out: Path, scenes: int = 3, score: float = 0.5) -> None:
    loaded = {label: load_model(run / "last.pt") for label, run in runs.items()}
    models = {label: model for label, (model, _) in loaded.items()}
    ckpt_cfg = next(iter(loaded.values()))[1]["config"]  # both runs share data and seed
    dataset = make_dataset(
        ckpt_cfg["data"], ckpt_cfg["test_split"], keep_difficult=True, num_images=ckpt_cfg["synth_images"],
        seed=ckpt_cfg["seed"],
    )  # fmt: skip
    # The test scenes with the most crowd objects.
    items = [dataset[i] for i in range(len(dataset))]
    counts = [int(crowd_mask(t["boxes"], t["labels"]).sum()) for _, t in items]
    chosen = sorted(range(len(dataset)), key=lambda i: -counts[i])[:scenes]
    subset = torch.utils.data.Subset(dataset, chosen)
    subset.classes = dataset.classes
    fig, axes = plt.subplots(len(models), scenes, figsize=(3.6 * scenes, 3.9 * len(models)), constrained_layout=True)
    for row, (label, model) in enumerate(models.items()):
        preds = predict(model, subset, config=DetectConfig(score_threshold=score), progress=False)
        for col, (i, det) in enumerate(zip(chosen, preds.outputs, strict=True)):
            image, target = items[i]
            kinds = classify_detections(det["boxes"], det["scores"], det["labels"], target["boxes"], target["labels"])
            show_detection_errors(image, target["boxes"], det, kinds, dataset.classes, ax=axes[row, col], title=label)
    fig.savefig(out, dpi=80, pil_kwargs={"quality": 85})
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ssd", type=Path, required=True, help="run folder of the plain SSD")
    ap.add_argument("--repgt", type=Path, required=True, help="run folder of SSD + RepGT")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    runs = {"SSD": args.ssd, "SSD + RepGT": args.repgt}
    for run in runs.values():
        if not (run / "last.pt").is_file():
            raise SystemExit(f"{run}: no last.pt (train it first: rssd train --config ssd-cpu-synth ...)")
    args.out.mkdir(parents=True, exist_ok=True)
    training_figure(runs, args.out / "training.png")
    gallery_figure(runs, args.out / "crowd_gallery.jpg")
    print(f"wrote {args.out / 'training.png'} and {args.out / 'crowd_gallery.jpg'}")


if __name__ == "__main__":
    main()
