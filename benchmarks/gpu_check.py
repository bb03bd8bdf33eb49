"""One command for a GPU server (``make gpu-check``): is rssd correct on CUDA, and how fast is it?

On one CUDA device, in a few minutes (``--budget-s``, default 480: sections that would not fit are skipped and
say so), it checks and measures, then prints tables and writes a JSON (``--out``):

Correctness (each with its tolerance in the JSON):

* ``loss_fp32`` / ``loss_bf16_autocast``: the RepulsionLoss terms (``loc``, ``conf``, ``rep_gt``, ``rep_box``,
  ``total``) and their gradients w.r.t. ``loc``/``conf`` on the device equal the CPU's for the same inputs (SSD
  priors, crowds of people). Under bf16 autocast the inputs are bf16 (as the model produces them) and the loss must
  still compute in float32: the CPU reference gets the same bf16 values in float32.
* ``model_fp32`` / ``model_bf16``: SSD forward + loss + backward on the device (fp32 with TF32 off; bf16 autocast
  + channels_last) against the CPU in fp32, loss terms and the gradient of every parameter (relative L2 error,
  cosine). The bf16 tolerances were set from SSD300 under CPU bf16 autocast (terms within 0.3 %, gradients 1.3 %);
  they do not hold for the untrained BatchNorm models (``ssd-cpu``, ``ssd-mini``: gradients 58 % off in relative
  L2, RepGT's steep ``-ln(1 - IoG)`` 30 % off), which is why this check runs SSD300.
* ``detect``: :func:`rssd.detect.detect` on the device gives the CPU's detections (boxes, scores, labels).
* ``train_300``: a 300-iteration SSD300 run of :func:`rssd.train.fit` on synthetic crowds (SSD augmentation, bf16
  + channels_last) has finite losses and falls (last third's mean below the first third's).
* ``resume_exact``: ``k`` iterations, stop, resume, ``k`` more give bit-identical weights to ``2k`` straight
  (deterministic algorithms on for this check only).

Throughput: SSD300 training img/s at batch 32 (forward + loss + backward + SGD on a batch in device memory) in
fp32, bf16, bf16 + channels_last and bf16 + channels_last + ``torch.compile``, with the fraction of the device's
peak (training FLOPs = 3 x 2 x forward MACs of :func:`rssd.model.forward_macs`; bf16 rows against the dense bf16
peak, fp32 against TF32's, which cuDNN uses for fp32 convolutions by default); the loss + matching share of the
step; the data pipeline's img/s with all cores (synthetic scenes + SSD augmentation + collation); ``fit``'s own
img/s (data pipeline included); detection img/s at batch 32 (model + post-processing). Targets printed beside:
training >= 1200 img/s on an H200-class GPU including the data pipeline; loss + matching < 10 % of the step.

Without CUDA (or with ``--smoke``) the same code runs at tiny sizes (``ssd-mini``, a few iterations, batches of 2-4)
so that the test suite can run it in seconds; CPU bf16 convolutions are far too slow to run there (a batch of 2
SSD300 images took 267 s against 11 s in fp32), so the bf16 model rows and ``torch.compile`` are skipped on CPU.

    python benchmarks/gpu_check.py [--smoke] [--device cuda:0] [--out runs/gpu_check.json] [--budget-s 480]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# cuBLAS needs this before CUDA starts for deterministic kernels (the resume check); it only bounds its workspace.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rssd.config import TrainConfig  # noqa: E402
from rssd.data import SYNTH_CLASSES, SSDEvalTransform, SynthConfig, SyntheticCrowds, collate  # noqa: E402
from rssd.detect import DetectConfig, detect  # noqa: E402
from rssd.losses import LOSS_TERMS as TERMS  # noqa: E402
from rssd.losses import RepulsionLoss  # noqa: E402
from rssd.model import build_ssd, forward_macs  # noqa: E402
from rssd.priors import make_priors  # noqa: E402
from rssd.train import fit, train_transform  # noqa: E402

TARGET_TRAIN_IMG_S = 1200.0  # SSD300 training, data pipeline included, on an H200-class GPU
TARGET_LOSS_FRACTION = 0.10  # loss + matching share of a training step
NUM_CLASSES = len(SYNTH_CLASSES) + 1
#: Dense peak TFLOP/s (bf16, TF32) by device name, first match wins (datasheet numbers, without sparsity).
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H200", 989.4, 494.7),
    ("H100 PCIe", 756.0, 378.0),
    ("H100", 989.4, 494.7),
    ("A100", 312.0, 156.0),
    ("L40S", 362.1, 183.0),
)


@dataclass(frozen=True)
class Sizes:
    """How big each section runs: :data:`FULL` on a GPU, :data:`SMOKE` on a CPU / in the test suite."""

    model: str
    batch: int  # throughput and detection batch
    fit_iterations: int
    fit_batch: int
    fit_lr: float
    resume_iterations: int  # k: k + resume + k against 2k straight
    resume_batch: int
    warmup: int  # untimed steps before each throughput measurement
    steps: int  # timed steps
    pipeline_batches: int
    detect_batches: int
    check_batch: int  # images of the correctness checks
    synth_images: int
    log_every: int


FULL = Sizes("ssd300", 32, 300, 32, 1e-3, 10, 8, 5, 20, 30, 10, 4, 2000, 10)
SMOKE = Sizes("ssd-mini", 4, 12, 4, 1e-2, 2, 2, 1, 2, 3, 2, 2, 48, 1)


# ------------------------------------------------------------------------------------------------ helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def crowd_targets(n: int, gen: torch.Generator, num_classes: int = NUM_CLASSES) -> list[dict[str, torch.Tensor]]:
    """``n`` images, each with two side-by-side groups of 4 overlapping people (and the occasional other class).

    Returns targets in the loss's form: ``{"boxes": (8, 4) xyxy in [0, 1], "labels": (8,)}``.
    """
    out = []
    for _ in range(n):
        boxes = []
        for _group in range(2):
            h = 0.2 + 0.4 * float(torch.rand((), generator=gen))
            w = h * 0.4
            x0 = float(torch.rand((), generator=gen)) * (1 - 3 * w)
            y0 = float(torch.rand((), generator=gen)) * (1 - h)
            for k in range(4):  # neighbours step 0.6 of a width: IoU 0.25
                boxes.append([x0 + 0.6 * k * w, y0, x0 + 0.6 * k * w + w, y0 + h])
        labels = torch.ones(8, dtype=torch.long)
        labels[torch.rand(8, generator=gen) < 0.2] = num_classes - 1
        out.append({"boxes": torch.tensor(boxes).clamp(0, 1), "labels": labels})
    return out


def _to(targets: list[dict[str, torch.Tensor]], device: torch.device) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device) for k, v in t.items()} for t in targets]


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> tuple[bool, float, int]:
    """``(all close, max |a - b|, number of elements out of tolerance)`` with ``|a - b| <= atol + rtol |b|``."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    diff = (a - b).abs()
    bad = int((diff > atol + rtol * b.abs()).sum())
    return bad == 0, float(diff.max()) if diff.numel() else 0.0, bad


def _result(name: str, passed: bool | None, tolerance: str, **measured: Any) -> dict[str, Any]:
    """One check: ``passed`` True / False, or None when skipped (``measured["skipped"]`` says why)."""
    return {"name": name, "passed": passed, "tolerance": tolerance, "measured": measured}


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@contextlib.contextmanager
def _deterministic(record: list[str]) -> Iterator[None]:
    """Deterministic algorithms (warn-only: the warnings name any op without a deterministic kernel)."""
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)  # fmt: skip
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        record.extend(sorted({str(w.message).splitlines()[0][:200] for w in caught if "determinis" in str(w.message)}))
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[2], old[3]


# ------------------------------------------------------------------------------------------------ correctness
def check_loss(device: torch.device, sizes: Sizes) -> list[dict[str, Any]]:
    """RepulsionLoss terms and input gradients on ``device`` (fp32; bf16 inputs under autocast) against the CPU."""
    gen = torch.Generator().manual_seed(0)
    priors = make_priors(sizes.model)  # (P, 4)
    n, p = sizes.check_batch, priors.shape[0]
    loc = 0.5 * torch.randn(n, p, 4, generator=gen)  # (N, P, 4)
    conf = 2.0 * torch.randn(n, p, NUM_CLASSES, generator=gen)  # (N, P, C)
    targets = crowd_targets(n, gen)
    crit = RepulsionLoss(NUM_CLASSES, alpha=0.5, beta=0.5)  # every term on

    def run(loc_in, conf_in, dev, bf16):
        loc_in = loc_in.detach().to(dev).requires_grad_()
        conf_in = conf_in.detach().to(dev).requires_grad_()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = crit(loc_in, conf_in, priors.to(dev), _to(targets, dev))
        g_loc, g_conf = torch.autograd.grad(out["total"], [loc_in, conf_in])
        return {k: out[k].detach().float().cpu() for k in TERMS}, g_loc.cpu(), g_conf.cpu(), out["total"].dtype

    results = []
    for name, bf16 in (("loss_fp32", False), ("loss_bf16_autocast", True)):
        loc_in, conf_in = (loc.bfloat16(), conf.bfloat16()) if bf16 else (loc, conf)
        ref_terms, ref_gl, ref_gc, _ = run(loc_in.float(), conf_in.float(), torch.device("cpu"), False)
        terms, gl, gc, dtype = run(loc_in, conf_in, device, bf16)
        # fp32: reductions in another order (1e-4); bf16: the same values in float32, gradients rounded to bf16
        g_rtol = 2.0**-7 if bf16 else 1e-4
        if bf16:
            ref_gl, ref_gc = ref_gl.bfloat16(), ref_gc.bfloat16()
        term_ok = {k: _close(terms[k], ref_terms[k], 1e-4, 1e-6) for k in TERMS}
        gl_ok = _close(gl.float(), ref_gl.float(), g_rtol, 1e-6)
        gc_ok = _close(gc.float(), ref_gc.float(), g_rtol, 1e-6)
        passed = all(v[0] for v in term_ok.values()) and gl_ok[0] and gc_ok[0] and dtype == torch.float32
        results.append(_result(
            name, passed,
            f"terms |d| <= 1e-6 + 1e-4 |cpu|; gradients |d| <= 1e-6 + {g_rtol:.2g} |cpu|; loss dtype float32",
            terms={k: float(terms[k]) for k in TERMS},
            term_max_abs_diff={k: v[1] for k, v in term_ok.items()},
            grad_loc_max_abs_diff=gl_ok[1], grad_conf_max_abs_diff=gc_ok[1],
            grad_elements_out_of_tolerance=gl_ok[2] + gc_ok[2], loss_dtype=str(dtype),
        ))  # fmt: skip
    return results


def _param_grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.detach().float().flatten().cpu() for p in model.parameters() if p.grad is not None])


def check_model(device: torch.device, sizes: Sizes, all_rows: bool = False) -> list[dict[str, Any]]:
    """SSD forward + loss + backward on ``device`` (fp32, bf16 + channels_last) against the CPU in fp32."""
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    cpu_model = build_ssd(sizes.model, NUM_CLASSES).train()
    state = {k: v.clone() for k, v in cpu_model.state_dict().items()}
    s = cpu_model.image_size
    x = torch.randn(sizes.check_batch, 3, s, s, generator=gen)
    targets = crowd_targets(sizes.check_batch, gen)
    crit = RepulsionLoss(NUM_CLASSES, alpha=0.5, beta=0.5)

    def run(dev: torch.device, bf16: bool, channels_last: bool) -> tuple[dict[str, float], torch.Tensor]:
        model = build_ssd(sizes.model, NUM_CLASSES).train()
        model.load_state_dict(state)
        model.to(dev)
        images = x.to(dev)
        if channels_last:
            model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loc, conf = model(images)
        out = crit(loc, conf, model.priors.to(dev), _to(targets, dev))
        out["total"].backward()
        return {k: float(out[k].detach()) for k in TERMS}, _param_grads(model)

    ref_terms, ref_grads = run(torch.device("cpu"), False, False)
    results = []
    settings = (
        ("model_fp32", False, False, 1e-3, 1e-5, 1e-2, 0.9999),
        ("model_bf16", True, True, 3e-2, 1e-3, 0.1, 0.99),
    )
    for name, bf16, cl, t_rtol, t_atol, g_rel, g_cos in settings:
        tol = (f"terms |d| <= {t_atol:g} + {t_rtol:g} |cpu|; parameter gradients: relative L2 error <= {g_rel:g}, "
               f"cosine >= {g_cos:g}")  # fmt: skip
        if bf16 and device.type != "cuda" and not all_rows:
            results.append(_result(name, None, tol, skipped="bf16 convolutions on CPU take minutes (no native bf16)"))
            continue
        with _no_tf32() if not bf16 else contextlib.nullcontext():
            terms, grads = run(device, bf16, cl)
        rel = float((grads - ref_grads).norm() / ref_grads.norm().clamp_min(1e-30))
        cos = float(F.cosine_similarity(grads, ref_grads, dim=0))
        diffs = {k: abs(terms[k] - ref_terms[k]) for k in TERMS}
        passed = all(diffs[k] <= t_atol + t_rtol * abs(ref_terms[k]) for k in TERMS) and rel <= g_rel and cos >= g_cos
        results.append(_result(name, passed, tol, terms=terms, cpu_terms=ref_terms, term_abs_diff=diffs,
                               grad_rel_l2_error=rel, grad_cosine=cos))  # fmt: skip
    return results


def check_detect(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """:func:`rssd.detect.detect` on ``device`` against the CPU on the same outputs (fp32)."""
    gen = torch.Generator().manual_seed(2)
    priors = make_priors(sizes.model)
    n, p = sizes.check_batch * 2, priors.shape[0]
    loc = 0.3 * torch.randn(n, p, 4, generator=gen)
    conf = 2.0 * torch.randn(n, p, NUM_CLASSES, generator=gen)
    image_sizes = [(300, 400)] * n
    cpu = detect(loc, conf, priors, image_sizes)
    dev = [{k: v.cpu() for k, v in d.items()} for d in detect(loc.to(device), conf.to(device), priors.to(device),
                                                              image_sizes)]  # fmt: skip
    from torchvision.ops import box_iou

    total = matched = count_diff = 0
    for a, b in zip(cpu, dev, strict=True):
        total += len(a["scores"])
        count_diff += abs(len(a["scores"]) - len(b["scores"]))
        if len(a["scores"]) and len(b["scores"]):
            same = (box_iou(a["boxes"], b["boxes"]) > 0.9999) & (a["labels"][:, None] == b["labels"][None, :])
            same &= (a["scores"][:, None] - b["scores"][None, :]).abs() <= 1e-5
            matched += int(same.any(dim=1).sum())
    share = matched / max(total, 1)
    passed = total > 0 and share >= 0.999 and count_diff <= 0.001 * total
    return _result(
        "detect", passed,
        ">= 99.9 % of the CPU's detections found on the device (same label, IoU > 0.9999, |score d| <= 1e-5), "
        "counts within 0.1 % (an NMS decision on an IoU at the threshold may flip)",
        detections=total, matched_share=share, count_difference=count_diff,
    )  # fmt: skip


def _fit_config(sizes: Sizes, device: torch.device, out_dir: str, **overrides: Any) -> TrainConfig:
    base = dict(
        name="gpu-check", model=sizes.model, data="synth", synth_images=sizes.synth_images,
        iterations=sizes.fit_iterations, batch_size=sizes.fit_batch, lr=sizes.fit_lr,
        warmup_iterations=max(1, sizes.fit_iterations // 10), grad_clip=10.0, augment="ssd", amp=True,
        channels_last=True, device=str(device), out_dir=out_dir, checkpoint_every=sizes.fit_iterations,
        log_every=sizes.log_every, workers=0, weights=None, seed=0,
    )  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def check_fit(device: torch.device, sizes: Sizes, out_dir: str, workers: int) -> tuple[dict[str, Any], Any]:
    """A short :func:`rssd.train.fit` run (bf16 + channels_last on CUDA): finite and falling loss; its img/s."""
    config = _fit_config(sizes, device, out_dir, name="train", workers=workers)
    t0 = time.perf_counter()
    result = fit(config, progress=False)
    seconds = time.perf_counter() - t0
    totals = [row["total"] for row in result.history]
    third = max(1, len(totals) // 3)
    first, last = statistics.fmean(totals[:third]), statistics.fmean(totals[-third:])
    rates = [row["images_per_s"] for row in result.history[1:]] or [result.history[0]["images_per_s"]]
    passed = all(math.isfinite(v) for v in totals) and last < first
    check = _result(
        f"train_{sizes.fit_iterations}", passed,
        "every logged loss finite; mean total loss of the last third < that of the first third",
        iterations=result.iteration, batch=sizes.fit_batch, model=sizes.model, first_third=first, last_third=last,
        amp="bf16" if device.type == "cuda" else "fp32 (CPU)", channels_last=True, workers=workers,
        images_per_s=statistics.median(rates), seconds=seconds,
    )  # fmt: skip
    return check, result.model


def check_resume(device: torch.device, sizes: Sizes, out_dir: str, workers: int) -> dict[str, Any]:
    """``k`` iterations, stop, resume, ``k`` more against ``2k`` straight: bit-identical weights."""
    k = sizes.resume_iterations
    notes: list[str] = []
    common = dict(iterations=2 * k, batch_size=sizes.resume_batch, warmup_iterations=1, checkpoint_every=k,
                  log_every=1, workers=workers)  # fmt: skip
    with _deterministic(notes):
        straight = fit(_fit_config(sizes, device, out_dir, name="straight", **common), progress=False)
        config = _fit_config(sizes, device, out_dir, name="resumed", **common)
        first = fit(config, until=k, progress=False)
        resumed = fit(config, resume=first.checkpoint, progress=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    max_diff = max(float((a[n].double() - b[n].double()).abs().max()) if a[n].numel() else 0.0 for n in a)
    equal = all(torch.equal(a[n], b[n]) for n in a)
    losses_equal = [r["total"] for r in straight.history[k:]] == [r["total"] for r in resumed.history[k:]]
    return _result(
        "resume_exact", equal and losses_equal,
        f"{k} + resume + {k} iterations == {2 * k} straight: every weight and buffer bit-identical, same losses",
        max_abs_weight_diff=max_diff, losses_equal=losses_equal, resumed_at=first.iteration,
        nondeterministic_ops=notes,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ throughput
def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, float | None, str]:
    """``(bf16 dense peak, TF32 peak, device name)`` in TFLOP/s; ``None`` when unknown (CPU, unlisted GPU)."""
    if device.type != "cuda":
        return None, None, platform.processor() or platform.machine()
    name = torch.cuda.get_device_name(device)
    if override:
        return override, override / 2, name
    for key, bf16, tf32 in PEAK_TFLOPS:
        if key in name:
            return bf16, tf32, name
    return None, None, name


def train_rates(
    device: torch.device, sizes: Sizes, peaks: tuple[float | None, float | None], budget_left: Callable[[], float],
    all_rows: bool = False,
) -> dict[str, Any]:
    """Training img/s of the bare step in each precision / layout, its share of the peak, and the loss's share."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    model0 = build_ssd(sizes.model, NUM_CLASSES)
    s = model0.image_size
    macs = forward_macs(model0, torch.empty(1, 3, s, s))
    train_flops = 6.0 * macs  # forward + backward (2x forward), 2 FLOPs per MAC
    x0 = torch.randn(sizes.batch, 3, s, s, generator=gen)
    targets = _to(crowd_targets(sizes.batch, gen), device)
    crit = RepulsionLoss(NUM_CLASSES)
    cuda = device.type == "cuda"
    rows: dict[str, Any] = {}
    configs = [("fp32", False, False, False), ("fp32_channels_last", False, True, False)]
    configs += [("bf16", True, False, False), ("bf16_channels_last", True, True, False)]
    configs += [("bf16_channels_last_compile", True, True, True)]
    loss_fraction = None
    for name, bf16, cl, compiled in configs:
        if not cuda and (bf16 or compiled) and not all_rows:
            rows[name] = {"skipped": "CPU: bf16 convolutions take minutes; torch.compile's first compile too"}
            continue
        if compiled and budget_left() < 150:
            rows[name] = {"skipped": f"time budget: {budget_left():.0f} s left, compiling needs about 2 minutes"}
            continue
        model = build_ssd(sizes.model, NUM_CLASSES).to(device).train()
        x = x0.to(device)
        if cl:
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        net = torch.compile(model) if compiled else model
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        priors = model.priors.to(device)

        def step(net=net, x=x, opt=opt, priors=priors, bf16=bf16) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loc, conf = net(x)
            out = crit(loc, conf, priors, targets)
            opt.zero_grad(set_to_none=True)
            out["total"].backward()
            opt.step()

        t0 = time.perf_counter()
        step()  # the first call compiles (torch.compile) / picks kernels
        _sync(device)
        first_s = time.perf_counter() - t0
        times = _timed(step, device, sizes.warmup, sizes.steps)
        step_s = statistics.median(times)
        rate = sizes.batch / step_s
        peak = peaks[0] if bf16 else peaks[1]
        rows[name] = {
            "images_per_s": rate, "step_ms": 1e3 * step_s, "first_step_s": first_s,
            "tflops": rate * train_flops / 1e12,
            "fraction_of_peak": rate * train_flops / (peak * 1e12) if peak else None,
        }  # fmt: skip
        if name == ("bf16_channels_last" if cuda else "fp32_channels_last"):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loc, conf = model(x)
            loc, conf = loc.detach().requires_grad_(), conf.detach().requires_grad_()

            def loss_only(loc=loc, conf=conf, priors=priors) -> None:
                out = crit(loc, conf, priors, targets)
                torch.autograd.grad(out["total"], [loc, conf])

            loss_s = statistics.median(_timed(loss_only, device, sizes.warmup, sizes.steps))
            loss_fraction = {"config": name, "loss_ms": 1e3 * loss_s, "step_ms": 1e3 * step_s,
                             "fraction": loss_s / step_s}  # fmt: skip
        del model, net, opt
        if cuda:
            torch.cuda.empty_cache()
    return {"model": sizes.model, "batch": sizes.batch, "forward_gmacs_per_image": macs / 1e9, "rows": rows,
            "loss_fraction": loss_fraction}  # fmt: skip


def pipeline_rate(sizes: Sizes, workers: int) -> dict[str, Any]:
    """img/s of synthetic scenes + SSD augmentation + collation through a DataLoader with ``workers`` processes."""
    from torch.utils.data import DataLoader

    model = build_ssd(sizes.model, NUM_CLASSES)
    dataset = SyntheticCrowds(sizes.synth_images, 0, "trainval", config=SynthConfig(size=model.image_size),
                              transform=train_transform(model, "ssd"))  # fmt: skip
    loader = DataLoader(dataset, batch_size=sizes.batch, shuffle=True, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    it = iter(loader)
    next(it)  # workers started
    t0 = time.perf_counter()
    n = 0
    for _ in range(sizes.pipeline_batches):
        images, _ = next(it)
        n += images.shape[0]
    rate = n / (time.perf_counter() - t0)
    del it
    return {"images_per_s": rate, "workers": workers, "batch": sizes.batch, "augment": "ssd", "images": n}


def detect_rate(model: torch.nn.Module, device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """img/s of model + post-processing at ``sizes.batch`` (bf16 autocast on CUDA, channels_last, inference mode)."""
    ds = SyntheticCrowds(sizes.synth_images, 0, "test", config=SynthConfig(size=model.image_size),
                         transform=SSDEvalTransform(model.image_size, model.normalization))  # fmt: skip
    x = torch.stack([ds[i % len(ds)][0] for i in range(sizes.batch)]).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    model = model.eval().to(device).to(memory_format=torch.channels_last)
    priors = model.priors.to(device)
    cfg = DetectConfig()
    counts: list[int] = []

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loc, conf = model(x)
            dets = detect(loc.float(), conf.float(), priors, [(300, 300)] * x.shape[0], cfg)
        counts.append(sum(len(d["scores"]) for d in dets))

    times = _timed(run, device, min(2, sizes.warmup + 1), sizes.detect_batches)
    return {"images_per_s": sizes.batch / statistics.median(times), "batch": sizes.batch,
            "detections_per_image": counts[-1] / sizes.batch, "score_threshold": cfg.score_threshold}  # fmt: skip


# ------------------------------------------------------------------------------------------------ report
def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _summary(check: dict[str, Any]) -> str:
    m = check["measured"]
    if "skipped" in m:
        return m["skipped"]
    keys = {
        "loss_fp32": ("grad_loc_max_abs_diff", "grad_conf_max_abs_diff"),
        "loss_bf16_autocast": ("grad_loc_max_abs_diff", "grad_conf_max_abs_diff", "loss_dtype"),
        "model_fp32": ("grad_rel_l2_error", "grad_cosine"),
        "model_bf16": ("grad_rel_l2_error", "grad_cosine"),
        "detect": ("detections", "matched_share"),
        "resume_exact": ("max_abs_weight_diff", "losses_equal"),
    }.get(check["name"], ("first_third", "last_third", "images_per_s"))
    return ", ".join(f"{k} {m[k]:.3g}" if isinstance(m[k], float) else f"{k} {m[k]}" for k in keys)


def format_report(report: dict[str, Any]) -> str:
    out = [f"rssd gpu-check on {report['device_name']} ({report['device']}, torch {report['torch']}, "
           f"{report['cores']} cores){' [smoke sizes]' if report['smoke'] else ''}", ""]  # fmt: skip
    status = {True: "PASS", False: "FAIL", None: "skip"}
    out.append(_table([[c["name"], status[c["passed"]], _summary(c)] for c in report["checks"]],
                      ["check", "result", "measured"]))  # fmt: skip
    tp = report["throughput"]
    rows = []
    for name, r in tp["train"]["rows"].items():
        if "skipped" in r:
            rows.append([name, "-", "-", "-", r["skipped"]])
        else:
            rows.append([name, _fmt(r["images_per_s"]), _fmt(r["step_ms"]), _fmt(r["fraction_of_peak"], 3),
                         f"first step {r['first_step_s']:.1f} s"])  # fmt: skip
    out += ["", f"training step, {tp['train']['model']} batch {tp['train']['batch']} "
                f"({tp['train']['forward_gmacs_per_image']:.1f} GMAC forward per image)"]  # fmt: skip
    out.append(_table(rows, ["config", "img/s", "ms/step", "of peak", "note"]))
    other = [["fit (data pipeline included)", _fmt(tp["fit_images_per_s"])],
             [f"data pipeline ({tp['pipeline']['workers']} workers, SSD augmentation)",
              _fmt(tp["pipeline"]["images_per_s"])],
             [f"detection (model + post-processing, batch {tp['detect']['batch']})",
              _fmt(tp["detect"]["images_per_s"])]]  # fmt: skip
    out += ["", _table(other, ["pipeline", "img/s"]), ""]
    out.append(_table([[t["name"], t["target"], _fmt(t["measured"], 3), {True: "met", False: "NOT met",
                        None: "n/a"}[t["met"]]] for t in report["targets"]], ["target", "wanted", "measured", ""]))
    out.append(f"\n{'all correctness checks passed' if report['all_passed'] else 'SOME CHECKS FAILED'}; "
               f"{report['seconds']:.0f} s; JSON: {report['out']}")  # fmt: skip
    return "\n".join(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    smoke = args.smoke or device.type != "cuda"
    sizes = SMOKE if smoke else FULL
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(1, cores - 1) if smoke else max(1, cores - 1)  # one core stays with the training process
    bf16_peak, tf32_peak, device_name = peak_tflops(device, args.peak_tflops)

    def budget_left() -> float:
        return args.budget_s - (time.perf_counter() - t_start)

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    checks: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rssd-gpu-check-") as tmp:
        say("loss terms and gradients, device vs CPU")
        checks += check_loss(device, sizes)
        say("model forward + backward, device vs CPU")
        checks += check_model(device, sizes, args.all_rows)
        say("detect, device vs CPU")
        checks.append(check_detect(device, sizes))
        say(f"fit: {sizes.fit_iterations} iterations of {sizes.model}, batch {sizes.fit_batch}")
        fit_check, trained = check_fit(device, sizes, tmp, workers)
        checks.append(fit_check)
        say("stop + exact resume")
        checks.append(check_resume(device, sizes, tmp, 0 if smoke else min(2, workers)))
    say("training throughput")
    train = train_rates(device, sizes, (bf16_peak, tf32_peak), budget_left, args.all_rows)
    say(f"data pipeline, {cores} workers" if not smoke else "data pipeline")
    pipeline = pipeline_rate(sizes, cores if not smoke else max(1, workers))
    say("detection throughput")
    det = detect_rate(trained, device, sizes)

    fit_rate = fit_check["measured"]["images_per_s"]
    loss_fraction = train["loss_fraction"]["fraction"] if train["loss_fraction"] else None
    h200 = "H200" in device_name or "H100" in device_name
    targets = [
        {"name": f"SSD300 training img/s incl. data pipeline (fit{'' if not smoke else ', smoke sizes'})",
         "target": f">= {TARGET_TRAIN_IMG_S:g} on an H200-class GPU", "measured": fit_rate,
         "met": (fit_rate >= TARGET_TRAIN_IMG_S) if (h200 and not smoke) else None},
        {"name": "loss + matching share of the step", "target": f"< {TARGET_LOSS_FRACTION:.0%}",
         "measured": loss_fraction,
         "met": (loss_fraction < TARGET_LOSS_FRACTION) if (loss_fraction is not None and not smoke) else None},
    ]  # fmt: skip
    report = {
        "device": str(device), "device_name": device_name, "torch": torch.__version__,
        "cuda": torch.version.cuda, "cores": cores, "smoke": smoke, "sizes": asdict(sizes),
        "peak_tflops": {"bf16": bf16_peak, "tf32": tf32_peak},
        "checks": checks,
        "throughput": {"train": train, "fit_images_per_s": fit_rate, "pipeline": pipeline, "detect": det},
        "targets": targets,
        "all_passed": all(c["passed"] is not False for c in checks),
        "seconds": time.perf_counter() - t_start, "out": str(args.out),
    }  # fmt: skip
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (automatic without CUDA)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cuda:0, cpu")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check.json", help="where the JSON goes")
    p.add_argument("--budget-s", type=float, default=480.0, help="skip what would not fit in this many seconds")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not listed")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--all-rows", action="store_true",
                   help="on CPU too, run the bf16 and torch.compile rows (slow: to test this script without a GPU)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    smoke = args.smoke or not (torch.cuda.is_available() or args.device.startswith("cuda"))
    if smoke:  # tiny tensors: one thread avoids oversubscription on a busy CPU (2 threads were 5-10x slower here)
        torch.set_num_threads(1)
    try:
        report = run(args)
    finally:
        torch.set_num_threads(threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(format_report(report))
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
