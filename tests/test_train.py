"""Training: config, schedule, exact resume, crash safety, checkpoints, and DDP on 2 CPU processes (gloo)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rssd.config import TrainConfig, add_config_arguments, config_from_args, get_config
from rssd.losses import RepulsionLoss
from rssd.train import (
    NonFiniteLossError,
    SampleStream,
    build_criterion,
    fit,
    load_checkpoint,
    load_model,
    load_or_fit,
    lr_factor,
    save_checkpoint,
    train_transform,
)


def tiny(tmp_path: Path, **overrides) -> TrainConfig:
    base = dict(
        name="t", iterations=4, batch_size=2, synth_images=12, workers=0, out_dir=str(tmp_path), log_every=1,
        checkpoint_every=2, device="cpu", warmup_iterations=2,
    )  # fmt: skip
    base.update(overrides)
    return get_config("ssd-cpu-synth", **base)


def test_lr_schedule_by_hand() -> None:
    cfg = TrainConfig(iterations=120_000, warmup_iterations=500, warmup_factor=1e-3)
    assert lr_factor(0, cfg) == pytest.approx(1e-3)
    assert lr_factor(250, cfg) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert lr_factor(500, cfg) == 1.0
    assert lr_factor(79_999, cfg) == 1.0
    assert lr_factor(80_000, cfg) == pytest.approx(0.1)  # the paper's 80k and 100k
    assert lr_factor(100_000, cfg) == pytest.approx(0.01)
    short = TrainConfig(iterations=1200, warmup_iterations=0)
    assert lr_factor(799, short) == 1.0 and lr_factor(800, short) == pytest.approx(0.1)


def test_config_cli_overrides_every_field_type() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        ["--config", "ssd-cpu-synth", "--batch-size", "8", "--lr", "0.5", "--milestones", "0.5,0.75",
         "--grad-clip", "none", "--no-same-class", "--loss", "ssd", "--weights", "none"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.milestones) == ("ssd-cpu", 8, 0.5, (0.5, 0.75))
    assert cfg.grad_clip is None and cfg.same_class is False and cfg.weights is None
    assert cfg.loss_weights == (0.0, 0.0)
    assert get_config("ssd300-voc0712").loss_weights == (0.5, 0.0)
    assert TrainConfig(loss="repgt+repbox").loss_weights == (0.5, 0.5)
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="repbox")
    with pytest.raises(ValueError, match="unknown config fields"):
        TrainConfig.from_dict({"lr": 1.0, "learning_rate": 2.0})


def test_criterion_takes_every_loss_field() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--config", "ssd-cpu-synth", "--loss", "repgt+repbox",
                                               "--match-iou", "0.4", "--neg-pos-ratio", "5", "--rep-gt", "excess"]))
    crit = build_criterion(cfg, 4)
    assert (crit.iou_threshold, crit.neg_pos_ratio, crit.rep_gt_mode) == (0.4, 5, "excess")
    assert (crit.alpha, crit.beta, crit.num_classes) == (0.5, 0.5, 4)
    assert build_criterion(TrainConfig(), 21).iou_threshold == 0.5
    with pytest.raises(ValueError, match="match_iou"):
        TrainConfig(match_iou=1.5)


def test_augment_choices_switch_the_named_steps() -> None:
    from rssd.data import SSDEvalTransform
    from rssd.model import build_ssd

    model = build_ssd("ssd-cpu", 4)
    steps = {}
    for name in ("ssd", "light", "flip"):
        t = train_transform(model, name)
        steps[name] = tuple(getattr(t, k) is not None for k in ("photometric", "expand", "crop", "flip"))
    assert steps == {
        "ssd": (True, True, True, True), "light": (True, False, False, True), "flip": (False, False, False, True),
    }  # fmt: skip
    assert isinstance(train_transform(model, "none"), SSDEvalTransform)
    # configs written before augment was a choice said True / False
    assert TrainConfig.from_dict({"augment": True}).augment == "ssd"
    assert TrainConfig.from_dict({"augment": False}).augment == "none"
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="heavy")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args(["--augment", "light"])).augment == "light"
    with pytest.raises(SystemExit):
        parser.parse_args(["--augment", "heavy"])


def test_sample_stream_is_resumable_and_splits_ranks() -> None:
    def take(stream, k):
        it = iter(stream)
        return [next(it) for _ in range(k)]

    full = take(SampleStream(5, seed=3), 12)
    assert sorted(i for _, i in full[:5]) == list(range(5))  # each epoch is a permutation
    assert take(SampleStream(5, seed=3, start=7), 5) == full[7:12]
    r0 = take(SampleStream(5, seed=3, rank=0, world=2), 6)
    r1 = take(SampleStream(5, seed=3, rank=1, world=2), 6)
    assert sorted(r0 + r1) == sorted(full)


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    straight = fit(tiny(tmp_path / "a"), progress=False)
    first = fit(tiny(tmp_path / "b"), until=2, progress=False)
    assert first.iteration == 2 and first.checkpoint.name == "ckpt_0000002.pt"
    resumed = fit(tiny(tmp_path / "b"), resume=first.checkpoint, progress=False)
    assert resumed.iteration == 4
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the log keeps one row per iteration across the resume
    assert [int(r["iteration"]) for r in resumed.history] == [1, 2, 3, 4]
    assert [r["total"] for r in resumed.history] == [r["total"] for r in straight.history]


def test_checkpoint_contents_and_model_loading(tmp_path: Path) -> None:
    result = fit(tiny(tmp_path, iterations=2), progress=False)
    run = tmp_path / "t"
    assert sorted(p.name for p in run.iterdir()) == ["ckpt_0000002.pt", "config.json", "last.pt", "log.csv"]
    assert TrainConfig.from_dict(__import__("json").loads((run / "config.json").read_text())).iterations == 2
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["iteration"] == 2 and ckpt["classes"] == list(result.classes)
    assert {"model", "optimizer", "scheduler", "rng", "config", "normalization"} <= set(ckpt)
    model, meta = load_model(run / "last.pt")
    for k, v in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    with pytest.raises(ValueError, match="not an rssd training checkpoint"):
        save_checkpoint(tmp_path / "x.pt", {"model": {}})
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="run differs in batch_size"):
        fit(tiny(tmp_path, batch_size=4), resume=run / "last.pt", progress=False)


def test_resume_and_reuse_need_the_same_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fit(tiny(tmp_path, iterations=3), until=2, progress=False)
    with pytest.raises(ValueError, match=r"run differs in match_iou: 0\.5 -> 0\.4"):  # it changes the loss
        fit(tiny(tmp_path, iterations=3, match_iou=0.4), resume=first.checkpoint, progress=False)
    with pytest.raises(ValueError, match="run differs in lr"):
        fit(tiny(tmp_path, iterations=3, lr=0.02), resume=first.checkpoint, progress=False)
    # a checkpoint made before a field existed counts it at its default
    ckpt = load_checkpoint(first.checkpoint)
    del ckpt["config"]["match_iou"]
    old = save_checkpoint(tmp_path / "old.pt", ckpt)
    # machinery (where and how the run executes) may change
    done = fit(tiny(tmp_path, iterations=3, log_every=2, keep_checkpoints=1, device="cpu"), resume=old, progress=False)
    assert done.iteration == 3

    import rssd.train

    def no_training(config, **kwargs):
        raise AssertionError(f"trained {config.name} again")

    monkeypatch.setattr(rssd.train, "fit", no_training)
    model, meta = load_or_fit(tiny(tmp_path, iterations=3, log_every=7, workers=1, checkpoint_every=1))
    assert meta["iteration"] == 3
    with pytest.raises(AssertionError, match="trained t again"):
        load_or_fit(tiny(tmp_path, iterations=3, match_iou=0.4))


def test_non_finite_loss_stops_with_message_and_keeps_last_good_state(tmp_path: Path, monkeypatch) -> None:
    real = RepulsionLoss.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            out = dict(out, rep_gt=torch.tensor(float("nan")))
            out["total"] = out["loc"] + out["conf"] + out["rep_gt"]
        return out

    monkeypatch.setattr(RepulsionLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"iteration 3 \(term rep_gt, total") as info:
        fit(tiny(tmp_path, checkpoint_every=100), progress=False)
    assert "ckpt_0000002.pt" in str(info.value)
    assert load_checkpoint(tmp_path / "t" / "last.pt")["iteration"] == 2


def test_missing_weights_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="vgg16_reducedfc.pth"):
        fit(tiny(tmp_path, weights=str(tmp_path / "nowhere.pth")), progress=False)


@pytest.mark.skipif(sys.platform != "linux", reason="gloo multi-process test runs on Linux CI")
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        "-m", "rssd", "train", "--config", "ssd-cpu-synth", "--name", "ddp", "--out-dir", str(tmp_path),
        "--iterations", "2", "--batch-size", "2", "--synth-images", "12", "--workers", "0", "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    digests = ckpt["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert ckpt["iteration"] == 2
