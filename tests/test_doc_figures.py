"""doc/make_figures.py draws the README's figures from two (here tiny) training runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from rssd.config import get_config
from rssd.train import fit

ROOT = Path(__file__).resolve().parents[1]


def test_make_figures_from_two_runs(tmp_path: Path, monkeypatch) -> None:
    runs = {}
    for loss in ("ssd", "repgt"):
        cfg = get_config(
            "ssd-cpu-synth", name=loss, loss=loss, iterations=2, batch_size=2, synth_images=10, workers=0,
            out_dir=str(tmp_path), log_every=1, checkpoint_every=2, device="cpu", warmup_iterations=1,
        )  # fmt: skip
        fit(cfg, progress=False)
        runs[loss] = tmp_path / loss
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "doc" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "fig"
    argv = ["make_figures", "--ssd", str(runs["ssd"]), "--repgt", str(runs["repgt"]), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    for name in ("training.png", "crowd_gallery.jpg"):
        image = mpimg.imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 600, (name, image.shape)
    # a run folder without a checkpoint is named in the error
    monkeypatch.setattr(sys, "argv", [*argv[:2], str(tmp_path / "missing"), *argv[3:]])
    with pytest.raises(SystemExit, match="missing: no last.pt"):
        module.main()
