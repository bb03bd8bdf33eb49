"""The training loop that notebook 09 and ``rssd train`` share: :func:`fit` (one iteration: :func:`train_step`).

What it guarantees:

* **Exact resume.** Every training sample is identified by its global position in an endless stream of
  per-epoch permutations (:class:`SampleStream`), and its augmentation is seeded by that position, so the data
  a step sees depends only on the seed and the iteration: not on the number of workers, nor on when the run was
  interrupted. Checkpoints hold the model, optimizer, scheduler, RNG states and iteration; on CPU, ``N``
  iterations + resume + ``N`` iterations give bit-identical weights to ``2N`` iterations straight.
* **Nothing lost on a crash.** Checkpoints are written atomically (temporary file, then rename) every
  ``checkpoint_every`` iterations and at the end; a non-finite loss or Ctrl-C saves the last good state and
  stops with a message naming the iteration and the term (:class:`NonFiniteLossError`).
* **Speed where it helps.** channels_last everywhere (NHWC convolutions are faster on CPU too); on CUDA, bf16
  autocast, pinned memory and non-blocking copies; on CPU, float32. Several GPUs: ``torchrun --nproc_per_node K
  -m rssd train ...`` (DistributedDataParallel).
* **Visibility.** A tqdm progress bar with the loss terms and images/s, a CSV log always, TensorBoard when
  installed, and an ``on_log`` callback (notebooks pass :class:`rssd.viz.LossPlot` for a live plot).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from rssd.config import TrainConfig
from rssd.losses import RepulsionLoss
from rssd.model import SSD, build_ssd, load_pretrained

__all__ = [
    "NonFiniteLossError",
    "FitResult",
    "SampleStream",
    "fit",
    "train_step",
    "train_transform",
    "lr_factor",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "resolve_device",
    "build_train_dataset",
    "load_or_fit",
]

CHECKPOINT_FORMAT = "rssd-checkpoint-1"
TERMS = ("loc", "conf", "rep_gt", "rep_box", "total")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the iteration, the terms and the checkpoint."""


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    model: SSD
    classes: tuple[str, ...]
    history: list[dict[str, float]] = field(default_factory=list)
    run_dir: Path | None = None
    checkpoint: Path | None = None
    iteration: int = 0


# ----------------------------------------------------------------------------------------------- data
class SampleStream(Sampler):
    """An endless, resumable stream of ``(position, dataset index)`` pairs for one process.

    Global position ``g`` reads element ``g % n`` of the permutation of epoch ``g // n`` (seeded by ``seed`` and
    the epoch). Rank ``r`` of ``world`` reads positions ``k * world + r`` for ``k = start, start + 1, ...``.
    """

    def __init__(self, n: int, seed: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        if n < 1:
            raise ValueError("the training set is empty")
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start, rank, world

    def permutation(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        k, epoch, perm = self.start, -1, None
        while True:
            g = k * self.world + self.rank
            e, i = divmod(g, self.n)
            if e != epoch:
                epoch, perm = e, self.permutation(e)
            yield g, int(perm[i])
            k += 1


class _SeededTransform(Dataset):
    """Items keyed by ``(position, index)``: the transform's randomness is seeded by the position."""

    def __init__(self, base: Dataset, transform: Callable | None, seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        position, index = key
        image, target = self.base[index]
        if self.transform is None:
            return image, target
        s = (self.seed * 1_000_003 + position) % (2**62)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                np.random.seed(s % (2**32))
                return self.transform(image, target)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def build_criterion(config: TrainConfig, num_classes: int) -> RepulsionLoss:
    """The loss a run trains with: every loss field of ``config`` (weights, sigmas, targets, mining, matching)."""
    alpha, beta = config.loss_weights
    return RepulsionLoss(
        num_classes, alpha=alpha, beta=beta, sigma_gt=config.sigma_gt, sigma_box=config.sigma_box,
        same_class=config.same_class, neg_pos_ratio=config.neg_pos_ratio, rep_gt_mode=config.rep_gt,
        iou_threshold=config.match_iou,
    )  # fmt: skip


def build_train_dataset(config: TrainConfig, split: str | None = None, transform: Callable | None = None) -> Dataset:
    """The dataset ``config.data`` names (``auto``: VOC when found, else the synthetic crowds), untransformed."""
    from rssd.data import default_data_spec, make_dataset

    spec = default_data_spec(split or config.split) if config.data == "auto" else config.data
    return make_dataset(
        spec, split or config.split, transform, keep_difficult=config.keep_difficult,
        num_images=config.synth_images, seed=config.seed,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------- schedule
def lr_factor(iteration: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at ``iteration`` (0-based): linear warm-up, then x``gamma`` at each milestone."""
    f = config.gamma ** sum(iteration >= round(m * config.iterations) for m in config.milestones)
    if iteration < config.warmup_iterations:
        w = iteration / config.warmup_iterations
        f *= config.warmup_factor + (1 - config.warmup_factor) * w
    return f


# ----------------------------------------------------------------------------------------------- checkpoints
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an rssd training checkpoint (``torch.load(weights_only=True)``), with a clear error otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle with arbitrary objects
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an rssd training checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return ckpt


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SSD, dict[str, Any]]:
    """The trained model of a checkpoint, in eval mode, and the checkpoint's metadata (``classes``, ``config``...)."""
    ckpt = load_checkpoint(path)
    model = build_ssd(ckpt["model_name"], ckpt["num_classes"], normalization=ckpt["normalization"])
    model.load_state_dict(ckpt["model"])
    model.to(resolve_device(str(device))).eval()
    return model, ckpt


def _state_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- the loop
def _distributed() -> tuple[int, int, int]:
    """``(rank, world, local_rank)`` from torchrun's environment, ``(0, 1, 0)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _targets_to(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Tensor]]:
    return [
        {"boxes": torch.as_tensor(t["boxes"], dtype=torch.float32).to(device, non_blocking=True),
         "labels": torch.as_tensor(t["labels"], dtype=torch.long).to(device, non_blocking=True)}
        for t in targets
    ]  # fmt: skip


def train_step(
    net: torch.nn.Module,
    criterion: Callable[..., dict[str, Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    images: Tensor,
    targets: list[dict[str, Tensor]],
    priors: Tensor,
    *,
    grad_clip: float | None = None,
    amp: bool = False,
    params: Iterator[Tensor] | None = None,
    before_update: Callable[[dict[str, Tensor]], None] | None = None,
) -> dict[str, Tensor]:
    """One training iteration, as :func:`fit` runs it: forward, loss terms, backward, clipping, SGD and schedule steps.

    Args:
        net: the model (or its DDP wrapper), in train mode; images ``(N, 3, S, S)`` on its device.
        criterion: ``criterion(loc, conf, priors, targets)`` -> terms with ``"total"`` (a :class:`RepulsionLoss`: it
            matches the priors to the targets inside, notebooks 02-04).
        targets: per image ``{"boxes" (G, 4) normalised xyxy, "labels" (G,)}`` on the device.
        grad_clip: clip the gradients' total norm to this (None: no clipping).
        amp: bf16 autocast for the forward pass (CUDA).
        params: the parameters to clip (default ``net.parameters()``).
        before_update: called with the terms after the forward pass and before any update (``fit`` checks them
            for NaN there, and may raise).

    Returns:
        The loss terms (``loc``, ``conf``, ``rep_gt``, ``rep_box``, ``total``), ``total`` with its graph freed.
    """
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        loc, conf = net(images)
    terms = criterion(loc, conf, priors, targets)
    if before_update is not None:
        before_update(terms)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters() if params is None else params, grad_clip)
    optimizer.step()
    scheduler.step()
    return terms


def fit(
    config: TrainConfig,
    *,
    resume: str | os.PathLike | None = None,
    until: int | None = None,
    on_log: Callable[[list[dict[str, float]]], None] | None = None,
    progress: bool = True,
    dataset: Dataset | None = None,
) -> FitResult:
    """Train an SSD as ``config`` says; checkpoints and logs go to ``config.run_dir``.

    Args:
        config: the run (see :class:`rssd.config.TrainConfig`).
        resume: a checkpoint of this run to continue from (its model, optimizer, schedule, RNG and iteration).
        until: stop after this iteration (checkpointed) instead of ``config.iterations``; the schedule still
            spans ``config.iterations``.
        on_log: called on the main process with the whole history after every logged iteration.
        progress: show a progress bar.
        dataset: an untransformed training set to use instead of ``config.data``.

    Returns:
        :class:`FitResult` (the model is the unwrapped module, in train mode).

    Raises:
        NonFiniteLossError: a loss term became NaN or infinite (the last good state is checkpointed first).
    """
    rank, world, local_rank = _distributed()
    device = resolve_device(config.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = rank == 0
    cuda = device.type == "cuda"
    run_dir = config.run_dir
    stop = min(until or config.iterations, config.iterations)

    # Data, then the model (seeded: the same initial weights on every rank).
    from rssd.data import collate

    base = dataset if dataset is not None else build_train_dataset(config)
    classes = tuple(base.classes)
    torch.manual_seed(config.seed)
    model = build_ssd(config.model, len(classes) + 1, normalization=config.normalization)
    if config.weights and resume is None:
        weights = Path(config.weights).expanduser()
        if not weights.is_file():
            raise FileNotFoundError(
                f"pretrained weights {weights} not found: download ssd.pytorch's vgg16_reducedfc.pth there, "
                f"or pass --weights none to train from scratch"
            )
        load_pretrained(model, weights)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    priors = model.priors.to(device)
    transform = train_transform(model, config.augment)

    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, config))
    criterion = build_criterion(config, len(classes) + 1)

    start = 0
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        _check_resume(ckpt, config, resume)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        start = int(ckpt["iteration"])
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.json")

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
    if config.compile:  # the wrapper only: checkpoints keep the plain module's state_dict keys
        net = torch.compile(net)

    stream = SampleStream(len(base), config.seed, start=start * config.batch_size, rank=rank, world=world)
    loader = DataLoader(
        _SeededTransform(base, transform, config.seed), batch_size=config.batch_size, sampler=stream,
        num_workers=config.workers, collate_fn=collate, pin_memory=cuda, persistent_workers=False,
    )  # fmt: skip

    def checkpoint(iteration: int, extra: dict[str, Any] | None = None) -> Path | None:
        if not main:
            return None
        state = {
            "format": CHECKPOINT_FORMAT,
            "iteration": iteration,
            "model": model.state_dict(),
            "model_name": config.model,
            "num_classes": len(classes) + 1,
            "classes": list(classes),
            "normalization": model.normalization,
            "config": config.to_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
            **(extra or {}),
        }
        path = save_checkpoint(run_dir / f"ckpt_{iteration:07d}.pt", state)
        last = run_dir / "last.pt"
        tmp = run_dir / f".last.pt.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            save_checkpoint(tmp, state)
        os.replace(tmp, last)
        for old in sorted(run_dir.glob("ckpt_*.pt"))[: -config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    log = _Logger(run_dir, main, start)
    history: list[dict[str, float]] = log.history
    bar = tqdm(
        total=stop, initial=start, desc=config.name, unit="it", disable=not (progress and main), dynamic_ncols=True
    )
    sums = dict.fromkeys(TERMS, 0.0)
    window, t_window = 0, time.perf_counter()
    last_ckpt: Path | None = None
    iteration = start
    updating = False
    batches = iter(loader)
    net.train()
    def before_update(terms: dict[str, Tensor]) -> None:
        nonlocal updating
        finite = torch.isfinite(torch.stack([terms[k] for k in TERMS])).all()
        if world > 1:
            flag = finite.to(torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag.bool()
        if not bool(finite):
            bad = [k for k in TERMS if not torch.isfinite(terms[k])] or ["(another process)"]
            saved = checkpoint(iteration) if iteration > start else last_ckpt
            raise NonFiniteLossError(
                f"{config.name}: non-finite loss at iteration {iteration + 1} (term {', '.join(bad)}: "
                f"{', '.join(f'{k}={float(terms[k].detach()):.4g}' for k in TERMS)}); training stopped. "
                f"Last good checkpoint: {saved or 'none (nothing trained yet)'}. Lower --lr or set --grad-clip."
            )
        updating = True

    try:
        while iteration < stop:
            images, targets = next(batches)
            images = images.to(device, non_blocking=True)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = _targets_to(targets, device)
            terms = train_step(
                net, criterion, optimizer, scheduler, images, targets, priors, grad_clip=config.grad_clip,
                amp=cuda and config.amp, params=model.parameters(), before_update=before_update,
            )  # fmt: skip
            updating = False
            iteration += 1
            bar.update(1)
            for k in TERMS:
                sums[k] += float(terms[k].detach())
            window += 1
            if iteration % config.log_every == 0 or iteration == stop:
                dt = time.perf_counter() - t_window
                row = {"iteration": iteration, "lr": optimizer.param_groups[0]["lr"]}
                row.update({k: sums[k] / window for k in TERMS})
                row["images_per_s"] = window * config.batch_size * world / max(dt, 1e-9)
                log.write(row)
                bar.set_postfix(
                    loss=f"{row['total']:.3f}", loc=f"{row['loc']:.3f}", conf=f"{row['conf']:.3f}",
                    rep=f"{row['rep_gt']:.3f}", img_s=f"{row['images_per_s']:.1f}", refresh=False,
                )  # fmt: skip
                if on_log is not None and main:
                    on_log(history)
                sums, window, t_window = dict.fromkeys(TERMS, 0.0), 0, time.perf_counter()
            if iteration % config.checkpoint_every == 0 and iteration < stop:
                last_ckpt = checkpoint(iteration) or last_ckpt
    except KeyboardInterrupt:
        if not updating and iteration > start:
            saved = checkpoint(iteration)
            if main:
                print(f"\ninterrupted at iteration {iteration}; saved {saved}; resume with --resume {saved}")
        raise
    finally:
        bar.close()
        log.close()
        del batches

    extra: dict[str, Any] = {}
    if world > 1:
        # DDP broadcasts buffers (BatchNorm statistics) from rank 0 at each forward; do it once more so that the
        # saved state is rank 0's, then check that every process holds exactly the same weights.
        for buf in model.buffers():
            dist.broadcast(buf, 0)
        digests: list[str | None] = [None] * world
        dist.all_gather_object(digests, _state_digest(model))
        extra["rank_digests"] = digests
        if main and len(set(digests)) != 1:
            raise RuntimeError(f"the {world} processes ended with different weights: {digests}")
    last_ckpt = checkpoint(iteration, extra) or last_ckpt
    return FitResult(model=model, classes=classes, history=history, run_dir=run_dir, checkpoint=last_ckpt,
                     iteration=iteration)  # fmt: skip


def train_transform(model: SSD, augment: str = "ssd"):
    """The training transform of ``model`` for an :data:`rssd.config.AUGMENTATIONS` choice."""
    from rssd.data import SSDTrainTransform

    if augment == "none":
        return _eval_transform(model)
    steps = {
        "ssd": {},
        "light": {"expand": False, "crop": False},
        "flip": {"photometric": False, "expand": False, "crop": False},
    }[augment]
    return SSDTrainTransform(model.image_size, model.normalization, **steps)


def _eval_transform(model: SSD):
    from rssd.data import SSDEvalTransform

    return SSDEvalTransform(model.image_size, model.normalization)


def _check_resume(ckpt: dict[str, Any], config: TrainConfig, path: str | os.PathLike) -> None:
    old = ckpt["config"]
    must = ("model", "data", "batch_size", "seed", "synth_images", "split", "keep_difficult")
    diff = [f"{k}: {old.get(k)!r} -> {getattr(config, k)!r}" for k in must if old.get(k) != getattr(config, k)]
    if diff:
        raise ValueError(f"cannot resume from {path}: the run differs in {'; '.join(diff)}")
    if ckpt["iteration"] >= config.iterations:
        raise ValueError(f"{path} is at iteration {ckpt['iteration']}, the run has only {config.iterations}")


class _Logger:
    """CSV log (always), TensorBoard (when installed), and the in-memory history, on the main process."""

    def __init__(self, run_dir: Path, main: bool, start: int) -> None:
        self.main = main
        self.history: list[dict[str, float]] = []
        self.csv_path = run_dir / "log.csv"
        self.writer = None
        self.tb = None
        if not main:
            return
        if self.csv_path.is_file() and start > 0:  # keep the rows up to the resumed iteration
            with open(self.csv_path, newline="") as f:
                rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
            self.history = [row for row in rows if row["iteration"] <= start]
        self.file = open(self.csv_path, "w", newline="")  # noqa: SIM115 (closed in close())
        self.writer = None
        for row in self.history:
            self._csv(row)
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def _csv(self, row: dict[str, float]) -> None:
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(row))
            self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()

    def write(self, row: dict[str, float]) -> None:
        if not self.main:
            return
        self.history.append(row)
        self._csv(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "iteration" and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, int(row["iteration"]))

    def close(self) -> None:
        if self.main:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def load_or_fit(config: TrainConfig, device: str | torch.device = "cpu", **fit_kwargs: Any) -> tuple[SSD, dict]:
    """The model of ``config``'s run: loaded from ``run_dir/last.pt`` when that run is complete, else trained now.

    For notebooks that compare models: run notebook 09 (or ``rssd train``) once at full size, and later notebooks
    reuse its checkpoints; on a fresh machine they train what is missing. Returns ``(model in eval mode,
    checkpoint dict)``.
    """
    last = config.run_dir / "last.pt"
    if last.is_file():
        model, ckpt = load_model(last, device)
        machinery = {"device", "workers", "out_dir", "checkpoint_every", "keep_checkpoints", "log_every", "compile"}
        old = {k: v for k, v in ckpt["config"].items() if k not in machinery}
        new = {k: v for k, v in config.to_dict().items() if k not in machinery}
        if old == new and ckpt["iteration"] == config.iterations:
            return model, ckpt
        print(f"{last} is from another configuration or unfinished: training {config.name} again")
    fit(config, **fit_kwargs)
    return load_model(last, device)


def history_from_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a run's ``log.csv`` back as a list of rows."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
