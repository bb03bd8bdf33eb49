"""The crowd experiment on a tiny grid: records, resume, skip, summary, plots, CLI, grid validation."""

from __future__ import annotations

import json

import pytest

from rssd.experiments.crowd import Grid, figure_paired, load_grid, plot_gallery, run_grid, run_one, summarize

TINY = {
    "name": "tiny",
    "num_images": 20,
    "test_fraction": 0.2,
    "synth": {"size": 160},
    "base": {"model": "ssd-mini", "iterations": 4, "batch_size": 2, "lr": 0.01, "warmup_iterations": 1,
             "workers": 0, "log_every": 1},
    "variants": {"ssd": {"loss": "ssd"}, "repgt": {"loss": "repgt"}},
    "seeds": [0],
    "eval_every": 2,
    "min_height": 8.0,
    "nms_sweep": [0.45, 0.6],
}  # fmt: skip


@pytest.fixture()
def tiny_grid(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return load_grid(path)


def test_named_grid_is_valid():
    grid = load_grid("crowd-cpu")
    assert set(grid.variants) >= {"ssd", "repgt", "repgt-sigma0", "repgt+repbox"}
    assert len(grid.seeds) >= 3
    cfg = grid.train_config("repgt+repbox", 1)
    assert (cfg.loss, cfg.alpha, cfg.beta, cfg.sigma_box, cfg.seed, cfg.name) == ("repgt+repbox", 0.5, 0.5, 0.0, 1,
                                                                                 "repgt+repbox-s1")  # fmt: skip
    assert grid.synth_config().size == 160
    # seed-major order: every variant's first seed before any second seed
    assert grid.runs()[: len(grid.variants)] == [(v, grid.seeds[0]) for v in grid.variants]


def test_bad_grids_name_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY, "colour": "red"}))
    with pytest.raises(ValueError, match=r"bad\.json.*colour"):
        load_grid(bad)
    bad.write_text(json.dumps({**TINY, "variants": {"x": {"loss": "nope"}}}))
    with pytest.raises(ValueError, match=r"bad\.json.*variant 'x'.*loss"):
        load_grid(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_grid(bad)
    with pytest.raises(FileNotFoundError, match="crowd-cpu"):
        load_grid("no-such-grid")
    with pytest.raises(ValueError, match="nms_iou"):
        Grid(**{**TINY, "nms_iou": 0.33})


def test_tiny_grid_runs_resumes_and_skips(tiny_grid, tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    lines: list[str] = []
    records = run_grid(tiny_grid, results, runs, log=lines.append)
    assert [r["status"] for r in records] == ["done", "done"]
    rec = json.loads((results / "runs" / "repgt-s0.json").read_text())
    assert [p["iteration"] for p in rec["curve"]] == [2, 4]
    test = rec["test"]
    assert 0.0 <= test["mAP"] <= 1.0
    assert set(test["occlusion"]) == {"reasonable", "bare", "partial", "heavy", "heavy-cp"}
    assert [p["nms_iou"] for p in test["nms_sweep"]] == tiny_grid.nms_sweep
    assert test["error_kinds"]["images"] > 0
    assert len(rec["train_log"]) == 4  # log_every 1: one row per iteration, across the two resumed chunks

    # a finished run is not redone
    lines.clear()
    run_one(tiny_grid, "ssd", 0, results, runs, log=lines.append)
    assert lines == [f"[tiny ssd s0] done already: test mAP {records[0]['test']['mAP']:.4f}"]

    # an interrupted run (record with one curve point, checkpoint at 2) resumes from its checkpoint
    rec["status"], rec["curve"] = "running", rec["curve"][:1]
    rec.pop("test")
    (results / "runs" / "repgt-s0.json").write_text(json.dumps(rec))
    ckpt_dir = runs / "tiny" / "repgt-s0"
    (ckpt_dir / "last.pt").unlink()
    (ckpt_dir / "ckpt_0000002.pt").rename(ckpt_dir / "last.pt")
    again = run_one(tiny_grid, "repgt", 0, results, runs, log=lines.append)
    assert again["status"] == "done" and [p["iteration"] for p in again["curve"]] == [2, 4]
    # exact resume: the same test result as the straight run
    assert again["test"]["mAP"] == pytest.approx(records[1]["test"]["mAP"], abs=1e-12)

    # a record whose checkpoints are not on this machine (committed elsewhere, whole curve, not done): trained again
    rec = json.loads((results / "runs" / "repgt-s0.json").read_text())
    rec["status"] = "running"
    rec.pop("test")
    (results / "runs" / "repgt-s0.json").write_text(json.dumps(rec))
    for f in ckpt_dir.glob("*.pt"):
        f.unlink()
    again = run_one(tiny_grid, "repgt", 0, results, runs, log=lines.append)
    assert again["status"] == "done" and [p["iteration"] for p in again["curve"]] == [2, 4]
    assert again["test"]["mAP"] == pytest.approx(records[1]["test"]["mAP"], abs=1e-12)
    assert "were trained again" in again["notes"][-1]

    gallery = plot_gallery(tiny_grid, runs, tmp_path / "gallery.png", images=1)
    assert gallery == tmp_path / "gallery.png" and gallery.stat().st_size > 1000
    assert plot_gallery(tiny_grid, runs, variants=("ssd", "nope")) is None  # no checkpoint for that variant

    summary = summarize(results)
    assert summary["runs_done"] == 2 and list(summary["variants"]) == ["ssd", "repgt"]
    assert summary["variants"]["ssd"]["AP50 all"]["n"] == 1
    table = (results / "results.md").read_text()
    assert "| `repgt` | 1 |" in table and "rssd experiment crowd --grid tiny" in table
    hours = sum(json.loads(f.read_text())["train_seconds"] for f in (results / "runs").glob("*.json")) / 3600
    assert f"{hours:.2f} run-hours in all" in table


def test_changed_configuration_is_refused(tiny_grid, tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    run_one(tiny_grid, "ssd", 0, results, runs, log=lambda s: None)
    # a record made before a config field existed is read with that field at its default
    path = results / "runs" / "ssd-s0.json"
    rec = json.loads(path.read_text())
    del rec["config"]["rep_gt"]
    path.write_text(json.dumps(rec))
    assert run_one(tiny_grid, "ssd", 0, results, runs, log=lambda s: None)["status"] == "done"
    changed = Grid(**{**TINY, "base": {**TINY["base"], "lr": 0.02}})
    with pytest.raises(ValueError, match="another configuration"):
        run_one(changed, "ssd", 0, results, runs, log=lambda s: None)


def test_cli_report_writes_plots(tiny_grid, tmp_path, capsys):
    from rssd.cli import main

    results, runs = tmp_path / "results", tmp_path / "runs"
    grid_file = tmp_path / "tiny.json"
    assert main(["experiment", "crowd", "--grid", str(grid_file), "--results", str(results), "--runs", str(runs),
                 "--variants", "ssd", "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "1 of 2 runs done" in out
    for name in ("learning_curves.png", "occlusion.png", "nms_sweep.png", "summary.json", "results.md"):
        assert (results / name).is_file(), name
    assert "no gallery" not in out and not (results / "crowd_gallery.jpg").exists()  # training: no gallery
    assert main(["experiment", "crowd", "--grid", str(grid_file), "--results", str(results), "--runs", str(runs),
                 "--report"]) == 0  # fmt: skip
    assert "no gallery: no seed has a checkpoint of each of ['ssd', 'repgt']" in capsys.readouterr().out
    assert main(["experiment", "crowd", "--grid", str(grid_file), "--results", str(results), "--runs", str(runs),
                 "--variants", "repgt", "--threads", "1"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["experiment", "crowd", "--grid", str(grid_file), "--results", str(results), "--runs", str(runs),
                 "--report"]) == 0  # fmt: skip
    assert f"wrote {results / 'crowd_gallery.jpg'}" in capsys.readouterr().out
    assert (results / "crowd_gallery.jpg").stat().st_size > 10_000
    assert main(["experiment", "crowd", "--grid", str(grid_file), "--results", str(results), "--shard", "x"]) == 2


def test_ablation_grid_reports_validation_and_leaves_test_alone(tmp_path):
    grid = Grid(**{**TINY, "name": "abl", "final_split": "val", "variants": {"excess": {"loss": "repgt",
                "rep_gt": "excess"}}, "base": {**TINY["base"], "iterations": 2}})  # fmt: skip
    lines: list[str] = []
    (rec,) = run_grid(grid, tmp_path / "r", tmp_path / "runs", log=lines.append)
    assert rec["final_split"] == "val" and "val" in rec and "test" not in rec
    assert rec["val"]["num_images"] == len(grid.dataset(0, "val"))
    assert lines[-1].startswith("[abl excess s0] val mAP")
    md = (tmp_path / "r" / "results.md").read_text()
    assert "Val split, VOC07" in md and "Error kinds on the val images" in md and "test" not in md.lower()
    with pytest.raises(ValueError, match="final_split"):
        Grid(**{**TINY, "final_split": "train"})


def test_extra_seeds_and_baseline_pairing(tmp_path):
    """An ablation grid with more seeds for one variant, paired to another grid's runs (val, same seed)."""
    results = tmp_path / "results"
    short = {**TINY, "base": {**TINY["base"], "iterations": 2}}  # one validation point per run: enough here
    ssd, repgt = run_grid(Grid(**short), results / "tiny", tmp_path / "runs", log=lambda s: None)
    abl = Grid(**{**short, "name": "tiny-abl", "final_split": "val", "extra_seeds": {"excess": [1]},
                  "pairs": {"excess": "plain"},
                  "variants": {"excess": {"loss": "repgt", "rep_gt": "excess"}, "plain": {"loss": "ssd"}},
                  "baseline": {"grid": "tiny", "pairs": ["ssd"]}})  # fmt: skip
    assert abl.runs() == [("excess", 0), ("plain", 0), ("excess", 1)]  # extra seeds after every run of `seeds`
    records = run_grid(abl, results / "tiny-abl", tmp_path / "runs", log=lambda s: None)
    assert [(r["variant"], r["seed"]) for r in records] == abl.runs()
    summary = summarize(results / "tiny-abl")
    assert summary["runs_done"] == summary["runs_total"] == 3
    base = summary["baseline"]
    # the baseline's val AP is its learning curve's last point (it was scored on test, never on val at the end)
    assert base["variants"]["ssd"]["seeds"] == [0]
    assert base["variants"]["ssd"]["AP50 all"]["values"] == [ssd["curve"][-1]["val_mAP"]]
    pair = base["paired"]["excess - ssd"]
    assert pair["seeds"] == [0]  # seed 1 has no baseline run
    assert pair["AP50 all"]["values"] == [pytest.approx(records[0]["val"]["mAP"] - ssd["curve"][-1]["val_mAP"])]
    assert pair["MR^-2 person"]["values"] == [pytest.approx(records[0]["val"]["mr_person"]
                                                            - ssd["curve"][-1]["val_mr_person"])]  # fmt: skip
    # the baseline's own variants paired the same way: the scale the ablations are read on
    own = base["own_paired"]["repgt - ssd"]
    assert own["AP50 all"]["values"] == [pytest.approx(repgt["curve"][-1]["val_mAP"] - ssd["curve"][-1]["val_mAP"])]
    # within the grid, `excess` is paired to the variant its `pairs` names (no `ssd` here)
    within = summary["paired"]["excess"]
    assert within["to"] == "plain" and within["seeds"] == [0]
    assert within["AP50 all"]["values"] == [pytest.approx(records[0]["val"]["mAP"] - records[1]["val"]["mAP"])]
    md = (results / "tiny-abl" / "results.md").read_text()
    assert "## Against `tiny`" in md and "| `excess` | `tiny` `ssd` | 0 |" in md and "| `excess` - `plain` | 1 |" in md
    fig = figure_paired(summary)  # plot_results writes it as paired.png
    assert [ax.get_title() for ax in fig.axes][0] == "AP50 all: variant - tiny ssd (points)"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["excess (n=1)", "plain (n=1)", "tiny: repgt (n=1)"]
    import matplotlib.pyplot as plt

    plt.close(fig)

    # a baseline on another benchmark is refused, naming what differs; a missing one is said
    grid_json = results / "tiny" / "grid.json"
    grid_json.write_text(json.dumps({**json.loads(grid_json.read_text()), "num_images": 21}))
    with pytest.raises(ValueError, match="another benchmark: num_images"):
        summarize(results / "tiny-abl")
    grid_json.unlink()
    assert summarize(results / "tiny-abl")["baseline"]["missing"] == f"no {grid_json}"
    assert "Baseline `tiny` not found" in (results / "tiny-abl" / "results.md").read_text()

    with pytest.raises(ValueError, match="extra_seeds names variants the grid lacks"):
        Grid(**{**TINY, "extra_seeds": {"nope": [1]}})
    with pytest.raises(ValueError, match=r"pairs names variants the grid lacks: \['nope'\]"):
        Grid(**{**TINY, "pairs": {"repgt": "nope"}})
    with pytest.raises(ValueError, match="baseline is read on the validation split"):
        Grid(**{**TINY, "baseline": {"grid": "x"}})
    with pytest.raises(ValueError, match="baseline must be"):
        Grid(**{**TINY, "final_split": "val", "baseline": {"grid": "x", "colour": 1}})
