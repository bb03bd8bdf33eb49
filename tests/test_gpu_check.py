"""benchmarks/gpu_check.py (``make gpu-check``) in smoke mode on CPU, and the ``compile`` option of fit."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch

from rssd.config import TrainConfig, add_config_arguments, config_from_args
from rssd.train import fit

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_smoke_on_cpu(tmp_path: Path, capsys) -> None:
    out = tmp_path / "gpu_check.json"
    assert _gpu_check().main(["--smoke", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert {"device", "smoke", "checks", "throughput", "targets", "all_passed", "seconds"} <= set(report)
    assert report["device"] == "cpu" and report["smoke"] and report["all_passed"]
    checks = {c["name"]: c for c in report["checks"]}
    required = ("loss_fp32", "loss_bf16_autocast", "model_fp32", "detect", "train_12", "resume_exact")
    for name in required:
        assert checks[name]["passed"] is True, checks[name]
        assert checks[name]["tolerance"]
    # CPU bf16 convolutions are too slow for the smoke sizes: skipped, with the reason
    assert checks["model_bf16"]["passed"] is None and "skipped" in checks["model_bf16"]["measured"]
    assert checks["loss_bf16_autocast"]["measured"]["loss_dtype"] == "torch.float32"
    assert checks["resume_exact"]["measured"]["max_abs_weight_diff"] == 0.0
    tp = report["throughput"]
    rows = tp["train"]["rows"]
    assert set(rows) == {"fp32", "fp32_channels_last", "bf16", "bf16_channels_last", "bf16_channels_last_compile"}
    assert rows["fp32"]["images_per_s"] > 0 and "skipped" in rows["bf16_channels_last_compile"]
    assert tp["train"]["forward_gmacs_per_image"] > 0 and 0 < tp["train"]["loss_fraction"]["fraction"] < 1
    assert tp["pipeline"]["images_per_s"] > 0 and tp["detect"]["images_per_s"] > 0 and tp["fit_images_per_s"] > 0
    assert [t["met"] for t in report["targets"]] == [None, None]  # targets are judged on a GPU only
    for line in ("check ", "resume_exact", "bf16_channels_last_compile", ">= 1200 on an H200-class GPU"):
        assert line in printed


def test_fit_compile_wraps_the_network(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_compile(module, *args, **kwargs):  # the wiring, not inductor (minutes on a CPU)
        calls.append(type(module).__name__)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    config = TrainConfig(name="c", model="ssd-mini", data="synth", synth_images=10, iterations=1, batch_size=2,
                         warmup_iterations=0, workers=0, out_dir=str(tmp_path), compile=True)  # fmt: skip
    result = fit(config, progress=False)
    assert calls == ["SSD"]
    ckpt = torch.load(result.checkpoint, weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])  # checkpoints keep the plain module's keys
    assert TrainConfig().compile is False  # off by default
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args(["--compile"])).compile is True
