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

from rssd.config import TrainConfig, identity_changes
from rssd.losses import LOSS_TERMS, RepulsionLoss
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
    "build_criterion",
    "load_or_fit",
    "history_from_csv",
]

CHECKPOINT_FORMAT = "rssd-checkpoint-1"
TERMS = LOSS_TERMS  # the loss terms a run logs, in the loss's order


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
        resume: a checkpoint of this run to continue from (its model, optimizer, schedule, RNG and iteration); the
            run's identity (:func:`rssd.config.run_identity`) must be the checkpoint's.
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
    process = _start_process(config.device)
    base = dataset if dataset is not None else build_train_dataset(config)
    run = _build_run(config, tuple(base.classes), process.device, resume)
    if process.main:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        config.save(config.run_dir / "config.json")
    net = _network(run.model, config, process)
    batches = iter(_loader(base, run, process))
    checkpoints = _Checkpoints(run, process.main)
    guard = _FiniteGuard(run, process.world, checkpoints)
    stop = min(until or config.iterations, config.iterations)
    log = _Log(config, process, run.start, stop, progress, on_log)
    iteration = run.start
    net.train()
    try:
        while iteration < stop:
            terms = _iteration(net, run, next(batches), process, guard, iteration)
            iteration += 1
            log.add(iteration, terms, run.optimizer.param_groups[0]["lr"])
            if iteration % config.checkpoint_every == 0 and iteration < stop:
                checkpoints.save(iteration)
    except KeyboardInterrupt:
        if not guard.updating and iteration > run.start:  # mid-update, the state is half old, half new
            saved = checkpoints.save(iteration)
            if process.main:
                print(f"\ninterrupted at iteration {iteration}; saved {saved}; resume with --resume {saved}")
        raise
    finally:
        log.close()
        del batches  # stops the loader's workers
    checkpoints.save(iteration, _sync_ranks(run.model, process))
    return FitResult(model=run.model, classes=run.classes, history=log.history, run_dir=config.run_dir,
                     checkpoint=checkpoints.last, iteration=iteration)  # fmt: skip


# ----------------------------------------------------------------------------------------------- fit's steps
@dataclass
class _Process:
    """This process's place in a run: its rank among ``world`` processes (torchrun's), and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 writes the checkpoints and logs."""
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def _start_process(device: str) -> _Process:
    """Read torchrun's environment (one process without it); with several, pin this one's GPU and join the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if world > 1:
        if resolved.type == "cuda":
            resolved = torch.device("cuda", local_rank)
            torch.cuda.set_device(resolved)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return _Process(rank, world, local_rank, resolved)


@dataclass
class _Run:
    """What a run trains, from iteration ``start``: the model and its priors, the optimizer, schedule and loss."""

    config: TrainConfig
    classes: tuple[str, ...]
    model: SSD
    priors: Tensor
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    criterion: RepulsionLoss
    start: int = 0

    def state(self, iteration: int) -> dict[str, Any]:
        """The checkpoint of this run at ``iteration`` (see :func:`load_checkpoint`)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": iteration,
            "model": self.model.state_dict(),
            "model_name": self.config.model,
            "num_classes": len(self.classes) + 1,
            "classes": list(self.classes),
            "normalization": self.model.normalization,
            "config": self.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
        }


def _build_run(
    config: TrainConfig, classes: tuple[str, ...], device: torch.device, resume: str | os.PathLike | None
) -> _Run:
    """The model (seeded: the same initial weights on every process; pretrained weights unless resuming), SGD, the
    schedule and the loss; with ``resume``, their states, the RNG states and the iteration from that checkpoint."""
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
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, config))
    criterion = build_criterion(config, len(classes) + 1)
    run = _Run(config, classes, model, model.priors.to(device), optimizer, scheduler, criterion)
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        _check_resume(ckpt, config, resume)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        run.start = int(ckpt["iteration"])
    return run


def _check_resume(ckpt: dict[str, Any], config: TrainConfig, path: str | os.PathLike) -> None:
    """Refuse a checkpoint of another run (an identity field differs) or one past the end of this run."""
    changes = identity_changes(ckpt["config"], config)
    if changes:
        raise ValueError(f"cannot resume from {path}: the run differs in {'; '.join(changes)}")
    if ckpt["iteration"] >= config.iterations:
        raise ValueError(f"{path} is at iteration {ckpt['iteration']}, the run has only {config.iterations}")


def _network(model: SSD, config: TrainConfig, process: _Process) -> torch.nn.Module:
    """What the loop calls: ``model`` in DistributedDataParallel with several processes, compiled when
    ``config.compile`` (the wrappers only: checkpoints keep the plain module's ``state_dict`` keys)."""
    net: torch.nn.Module = model
    if process.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[process.local_rank] if process.cuda else None
        )
    if config.compile:
        net = torch.compile(net)
    return net


def _loader(base: Dataset, run: _Run, process: _Process) -> DataLoader:
    """Batches from this process's share of the run's sample stream, from the run's start, augmented under the
    seed of each sample's position (the same data whatever the number of workers)."""
    from rssd.data import collate

    config = run.config
    stream = SampleStream(len(base), config.seed, start=run.start * config.batch_size, rank=process.rank,
                          world=process.world)  # fmt: skip
    return DataLoader(
        _SeededTransform(base, train_transform(run.model, config.augment), config.seed), batch_size=config.batch_size,
        sampler=stream, num_workers=config.workers, collate_fn=collate, pin_memory=process.cuda,
        persistent_workers=False,
    )  # fmt: skip


def _targets_to(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Tensor]]:
    return [
        {"boxes": torch.as_tensor(t["boxes"], dtype=torch.float32).to(device, non_blocking=True),
         "labels": torch.as_tensor(t["labels"], dtype=torch.long).to(device, non_blocking=True)}
        for t in targets
    ]  # fmt: skip


def _iteration(
    net: torch.nn.Module, run: _Run, batch: tuple[Tensor, list], process: _Process, guard: _FiniteGuard,
    iteration: int,
) -> dict[str, Tensor]:
    """Iteration ``iteration + 1`` of :func:`fit`: the batch to the device, then :func:`train_step` (guarded)."""
    images, targets = batch
    images = images.to(process.device, non_blocking=True)
    if run.config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    guard.iteration = iteration
    terms = train_step(
        net, run.criterion, run.optimizer, run.scheduler, images, _targets_to(targets, process.device), run.priors,
        grad_clip=run.config.grad_clip, amp=process.cuda and run.config.amp, params=run.model.parameters(),
        before_update=guard,
    )  # fmt: skip
    guard.updating = False
    return terms


class _Checkpoints:
    """The run's checkpoints, written by the main process only: ``ckpt_<iteration>.pt`` (the newest
    ``keep_checkpoints`` are kept) and ``last.pt``, a hard link to the newest (a copy where links fail)."""

    def __init__(self, run: _Run, main: bool) -> None:
        self.run, self.main = run, main
        self.last: Path | None = None  # the newest checkpoint written

    def save(self, iteration: int, extra: dict[str, Any] | None = None) -> Path | None:
        """Checkpoint the run at ``iteration`` (``extra``: more entries); the path, None on other processes."""
        if not self.main:
            return None
        run_dir, state = self.run.config.run_dir, {**self.run.state(iteration), **(extra or {})}
        path = save_checkpoint(run_dir / f"ckpt_{iteration:07d}.pt", state)
        tmp = run_dir / f".last.pt.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            save_checkpoint(tmp, state)
        os.replace(tmp, run_dir / "last.pt")
        for old in sorted(run_dir.glob("ckpt_*.pt"))[: -self.run.config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        self.last = path
        return path


class _FiniteGuard:
    """``before_update`` of :func:`fit`'s steps: on a NaN or infinite term (on any process: they all stop) it
    checkpoints the last good state and raises :class:`NonFiniteLossError`; otherwise it marks the update as under
    way (``updating``, until the step returns: an interrupt then saves nothing)."""

    def __init__(self, run: _Run, world: int, checkpoints: _Checkpoints) -> None:
        self.run, self.world, self.checkpoints = run, world, checkpoints
        self.iteration = run.start  # iterations done before the step being checked
        self.updating = False

    def __call__(self, terms: dict[str, Tensor]) -> None:
        finite = torch.isfinite(torch.stack([terms[k] for k in TERMS])).all()
        if self.world > 1:
            flag = finite.to(torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag.bool()
        if not bool(finite):
            bad = [k for k in TERMS if not torch.isfinite(terms[k])] or ["(another process)"]
            it = self.iteration
            saved = self.checkpoints.save(it) if it > self.run.start else self.checkpoints.last
            raise NonFiniteLossError(
                f"{self.run.config.name}: non-finite loss at iteration {it + 1} (term {', '.join(bad)}: "
                f"{', '.join(f'{k}={float(terms[k].detach()):.4g}' for k in TERMS)}); training stopped. "
                f"Last good checkpoint: {saved or 'none (nothing trained yet)'}. Lower --lr or set --grad-clip."
            )
        self.updating = True


def _sync_ranks(model: SSD, process: _Process) -> dict[str, Any]:
    """With several processes, at the end: rank 0's buffers everywhere, and every process's weights checked equal;
    returns the checkpoint's ``rank_digests`` entry (nothing with one process)."""
    if process.world == 1:
        return {}
    # DDP broadcasts buffers (BatchNorm statistics) from rank 0 at each forward: once more, so that the saved state
    # is rank 0's
    for buf in model.buffers():
        dist.broadcast(buf, 0)
    digests: list[str | None] = [None] * process.world
    dist.all_gather_object(digests, _state_digest(model))
    if process.main and len(set(digests)) != 1:
        raise RuntimeError(f"the {process.world} processes ended with different weights: {digests}")
    return {"rank_digests": digests}


class _Log:
    """What a run reports, on the main process: a tqdm bar; every ``log_every`` iterations (and at the end) a row
    of the loss terms averaged since the last row, the learning rate and images/s, written to ``log.csv`` (kept up
    to the start of a resumed run), to TensorBoard when installed, to ``history`` and to ``on_log``."""

    def __init__(
        self, config: TrainConfig, process: _Process, start: int, stop: int, progress: bool,
        on_log: Callable[[list[dict[str, float]]], None] | None,
    ) -> None:  # fmt: skip
        self.config, self.process, self.stop, self.on_log = config, process, stop, on_log
        self.main = process.main
        self.bar = tqdm(total=stop, initial=start, desc=config.name, unit="it",
                        disable=not (progress and self.main), dynamic_ncols=True)  # fmt: skip
        self._reset_window()
        self.history: list[dict[str, float]] = []
        self.writer = self.tb = self.file = None
        if not self.main:
            return
        csv_path = config.run_dir / "log.csv"
        if csv_path.is_file() and start > 0:
            self.history = [row for row in history_from_csv(csv_path) if row["iteration"] <= start]
        self.file = open(csv_path, "w", newline="")  # noqa: SIM115 (closed in close())
        for row in self.history:
            self._csv(row)
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(config.run_dir / "tensorboard"))

    def _reset_window(self) -> None:
        self.sums, self.window, self.t_window = dict.fromkeys(TERMS, 0.0), 0, time.perf_counter()

    def add(self, iteration: int, terms: dict[str, Tensor], lr: float) -> None:
        """Count iteration ``iteration`` (1-based, done) with its ``terms``; write a row when one is due."""
        self.bar.update(1)
        for k in TERMS:
            self.sums[k] += float(terms[k].detach())
        self.window += 1
        if iteration % self.config.log_every == 0 or iteration == self.stop:
            dt = time.perf_counter() - self.t_window
            row = {"iteration": iteration, "lr": lr, **{k: self.sums[k] / self.window for k in TERMS}}
            row["images_per_s"] = self.window * self.config.batch_size * self.process.world / max(dt, 1e-9)
            self._write(row)
            self._reset_window()

    def _write(self, row: dict[str, float]) -> None:
        self.bar.set_postfix(
            loss=f"{row['total']:.3f}", loc=f"{row['loc']:.3f}", conf=f"{row['conf']:.3f}", rep=f"{row['rep_gt']:.3f}",
            img_s=f"{row['images_per_s']:.1f}", refresh=False,
        )  # fmt: skip
        if not self.main:
            return
        self.history.append(row)
        self._csv(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "iteration" and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, int(row["iteration"]))
        if self.on_log is not None:
            self.on_log(self.history)

    def _csv(self, row: dict[str, float]) -> None:
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(row))
            self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------------------------- around fit
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


def load_or_fit(config: TrainConfig, device: str | torch.device = "cpu", **fit_kwargs: Any) -> tuple[SSD, dict]:
    """The model of ``config``'s run: loaded from ``run_dir/last.pt`` when that run is complete, else trained now.

    For notebooks that compare models: run notebook 09 (or ``rssd train``) once at full size, and later notebooks
    reuse its checkpoints; on a fresh machine they train what is missing. A run is reused when its identity
    (:func:`rssd.config.run_identity`) is ``config``'s. Returns ``(model in eval mode, checkpoint dict)``.
    """
    last = config.run_dir / "last.pt"
    if last.is_file():
        model, ckpt = load_model(last, device)
        if not identity_changes(ckpt["config"], config) and ckpt["iteration"] == config.iterations:
            return model, ckpt
        print(f"{last} is from another configuration or unfinished: training {config.name} again")
    fit(config, **fit_kwargs)
    return load_model(last, device)


def history_from_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a run's ``log.csv`` back as a list of rows."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
