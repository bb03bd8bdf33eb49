"""Named training configurations: plain dataclasses, every field overridable from the command line.

``get_config("ssd300-voc0712", iterations=1000)`` gives a preset with overrides; :func:`add_config_arguments`
turns every field into a ``--field-name`` option and :func:`config_from_args` reads them back, so that
``rssd train --config ssd-cpu-synth --batch-size 8 --loss ssd`` needs no hand-written option per field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "TrainConfig", "PRESETS", "LOSSES", "AUGMENTATIONS", "get_config", "run_name", "auto_config",
    "add_config_arguments", "config_from_args", "expected_fit_seconds", "missing_run_notice",
    "CPUFallbackWarning", "MACHINERY_FIELDS", "run_identity", "identity_changes", "check_loss_fields",
]  # fmt: skip

#: Loss choices: plain SSD, SSD + RepGT, SSD + RepGT + RepBox.
LOSSES = ("ssd", "repgt", "repgt+repbox")

#: The fields of each loss term that the ``loss`` choice can switch off: ``ssd`` trains neither repulsion term,
#: ``repgt`` no RepBox. Setting one of them for a loss that ignores it is refused (:func:`check_loss_fields`).
TERM_FIELDS = {"rep_gt": ("alpha", "sigma_gt", "rep_gt"), "rep_box": ("beta", "sigma_box")}
_TERMS_OF_LOSS = {"ssd": (), "repgt": ("rep_gt",), "repgt+repbox": ("rep_gt", "rep_box")}

#: Training augmentation choices: the full SSD recipe (photometric distortion, zoom out, IoU crop, flip); photometric
#: distortion and flip only; flip only; none (resize and normalise).
AUGMENTATIONS = ("ssd", "light", "flip", "none")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as ``config.json`` beside its checkpoints).

    The schedule is the paper's (lr 1e-3, batch 32, 120k iterations, x0.1 at 80k and 100k) scaled to
    ``iterations``: the decay points are fractions of the run, after a linear warm-up.
    """

    name: str = "run"
    # model and data
    model: str = "ssd300"
    data: str = "auto"  # a dataset spec (rssd.data.specs), or "auto": VOC when found, else synthetic crowds
    split: str = "trainval"
    test_split: str = "test"
    synth_images: int = 2000  # size of the synthetic set (all splits) when data is "synth"
    keep_difficult: bool = False
    normalization: str | None = None  # None: the model's own convention
    weights: str | None = None  # pretrained weights: vgg16_reducedfc.pth, an ssd.pytorch or rssd checkpoint
    augment: str = "ssd"  # one of AUGMENTATIONS (True/False from older configs mean "ssd"/"none")
    # optimisation
    iterations: int = 120_000
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iterations: int = 500
    warmup_factor: float = 1e-3
    milestones: tuple[float, ...] = (2 / 3, 5 / 6)  # fractions of `iterations` (80k and 100k of 120k)
    gamma: float = 0.1
    grad_clip: float | None = None  # max gradient norm, None for no clipping
    # loss
    loss: str = "repgt"
    alpha: float = 0.5
    beta: float = 0.5
    sigma_gt: float = 1.0
    sigma_box: float = 0.0
    same_class: bool = True
    rep_gt: str = "paper"  # one of rssd.losses.REP_GT_MODES: the paper's RepGT, or rssd's "excess" form
    neg_pos_ratio: int = 3
    match_iou: float = 0.5  # a prior is positive at IoU >= match_iou with a GT (fewer/more positives per GT)
    # machinery
    device: str = "auto"  # "auto": CUDA when available
    amp: bool = True  # bf16 autocast on CUDA (CPU always runs float32)
    channels_last: bool = True  # NHWC activations (faster on CUDA and on CPU)
    compile: bool = False  # torch.compile the network in fit (first iterations slower while it compiles)
    workers: int = 2
    seed: int = 0
    out_dir: str = "runs"  # checkpoints go to OUT_DIR/NAME
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    log_every: int = 20

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):
            self.augment = "ssd" if self.augment else "none"
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.rep_gt not in ("paper", "excess"):
            raise ValueError(f"rep_gt must be 'paper' or 'excess', got {self.rep_gt!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 < self.match_iou < 1:
            raise ValueError(f"match_iou must be in (0, 1), got {self.match_iou}")
        if self.iterations < 1 or self.batch_size < 1:
            raise ValueError(f"iterations and batch_size must be >= 1, got {self.iterations}, {self.batch_size}")
        if any(not 0 < m <= 1 for m in self.milestones):
            raise ValueError(f"milestones are fractions of the run in (0, 1], got {self.milestones}")
        self.milestones = tuple(float(m) for m in self.milestones)

    @property
    def loss_weights(self) -> tuple[float, float]:
        """``(alpha, beta)`` after the loss choice: ``ssd`` zeroes both, ``repgt`` zeroes beta."""
        terms = _TERMS_OF_LOSS[self.loss]
        return (self.alpha if "rep_gt" in terms else 0.0, self.beta if "rep_box" in terms else 0.0)

    def identity(self) -> dict[str, Any]:
        """The fields that identify this run (:func:`run_identity`)."""
        return run_identity(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir).expanduser() / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


PRESETS: dict[str, TrainConfig] = {
    "ssd300-voc0712": TrainConfig(
        name="ssd300-voc0712", model="ssd300", data="voc:~/data/VOCdevkit:07+12",
        weights="~/data/weights/vgg16_reducedfc.pth",
    ),  # fmt: skip
    "ssd512-voc0712": TrainConfig(
        name="ssd512-voc0712", model="ssd512", data="voc:~/data/VOCdevkit:07+12",
        weights="~/data/weights/vgg16_reducedfc.pth",
    ),  # fmt: skip
    # From scratch on the synthetic crowds on a 2-core CPU: BatchNorm model, larger lr, short schedule, flips only
    # (the full SSD augmentation needs a longer schedule than this one: notebook 09 shows the measurement).
    "ssd-cpu-synth": TrainConfig(
        name="ssd-cpu-synth", model="ssd-cpu", data="synth", synth_images=2000, iterations=800, batch_size=16,
        lr=0.01, warmup_iterations=100, weight_decay=5e-4, grad_clip=10.0, augment="flip", workers=1,
        checkpoint_every=200, log_every=10,
    ),  # fmt: skip
}


#: Fields that say where and how a run executes, not what it computes: a run may be resumed, reused
#: (``load_or_fit``) or compared with its record (``rssd.experiments.crowd``) with other values of these. Every
#: other field identifies the run (:func:`run_identity`).
MACHINERY_FIELDS = frozenset(
    {"name", "out_dir", "device", "workers", "compile", "checkpoint_every", "keep_checkpoints", "log_every"}
)


def run_identity(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The fields that identify a run: every field but :data:`MACHINERY_FIELDS`, JSON-normalised (tuples as lists).

    ``config`` is a :class:`TrainConfig` or a stored one (a checkpoint's or a record's ``config`` dict); fields a
    stored config lacks count at their defaults (it was made when the default was the only behaviour), fields it
    has that no longer exist are kept (so that they differ).
    """
    d = config.to_dict() if isinstance(config, TrainConfig) else {**TrainConfig().to_dict(), **config}
    d = json.loads(json.dumps(d))
    return {k: v for k, v in d.items() if k not in MACHINERY_FIELDS}


def identity_changes(old: TrainConfig | Mapping[str, Any], new: TrainConfig | Mapping[str, Any]) -> list[str]:
    """``"field: old -> new"`` for every identity field (:func:`run_identity`) where ``old`` and ``new`` differ."""
    a, b = run_identity(old), run_identity(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def check_loss_fields(loss: str, given: Mapping[str, Any], *, flags: bool = False) -> None:
    """Refuse a loss-term field set explicitly (a key of ``given``) that loss ``loss`` ignores.

    ``loss_weights`` derives the weights from the loss choice, so ``--loss repgt --beta 0.5`` would otherwise train
    without RepBox and say nothing. Only the fields the caller set count: a preset's or the dataclass's value for a
    term that is off is no contradiction, and neither is a weight of 0 for a term that is off. ``flags``: name the
    fields as command-line options in the message.

    Raises:
        ValueError: naming the fields, the loss and the two ways out.
    """
    on = _TERMS_OF_LOSS[loss]
    ignored = [
        k for term, names in TERM_FIELDS.items() if term not in on for k in names
        if k in given and not (k in ("alpha", "beta") and given[k] == 0)
    ]  # fmt: skip
    if not ignored:
        return

    def name(k: str) -> str:
        return "--" + k.replace("_", "-") if flags else k

    setting = ", ".join(f"{name(k)} {given[k]}" if flags else f"{k}={given[k]!r}" for k in ignored)
    wanted = "repgt+repbox" if any(k in TERM_FIELDS["rep_box"] for k in ignored) else "repgt or repgt+repbox"
    chosen = "" if "loss" in given else " (not set here: the preset's or the default)"
    raise ValueError(
        f"{setting}: no effect with {name('loss')} {loss}{chosen}, which does not train that term; use "
        f"{name('loss')} {wanted}, or leave {' and '.join(name(k) for k in ignored)} out"
    )


def get_config(preset: str, **overrides: Any) -> TrainConfig:
    """A copy of the preset named ``preset`` with ``overrides`` applied (validated: :func:`check_loss_fields`)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown config {preset!r}; presets: {', '.join(PRESETS)}")
    config = dataclasses.replace(PRESETS[preset], **overrides)
    check_loss_fields(config.loss, overrides)
    return config


def run_name(preset: str, loss: str, seed: int = 0) -> str:
    """The one naming rule for runs, shared by ``rssd train`` and the notebooks: ``<preset>-<loss>[-seed<k>]``.

    ``rssd train --config ssd-cpu-synth`` (loss ``repgt``, seed 0) writes ``runs/ssd-cpu-synth-repgt``, the run the
    notebooks look for; ``--loss ssd`` gives ``ssd-cpu-synth-ssd``, ``--seed 1`` ``ssd-cpu-synth-repgt-seed1``.
    ``--name`` (or ``name=``) overrides the rule.
    """
    name = f"{preset}-{loss}"
    return name if int(seed) == 0 else f"{name}-seed{int(seed)}"


def _has_gpu(device: str) -> bool:
    """Whether ``device`` (``"auto"``, ``"cpu"``, ``"cuda:0"``...) names, or resolves to, a CUDA GPU."""
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return str(device).startswith("cuda")


class CPUFallbackWarning(UserWarning):
    """``auto_config`` found PASCAL VOC but no GPU, and chose the CPU preset on the synthetic crowds instead."""


def auto_config(data: str = "auto", loss: str = "repgt", **overrides: Any) -> TrainConfig:
    """The configuration the notebooks use: ``ssd300-voc0712`` on PASCAL VOC with a GPU, ``ssd-cpu-synth`` otherwise.

    ``data="auto"`` means VOC when found (``$RSSD_VOC_ROOT`` or ``~/data/VOCdevkit``), else the synthetic crowds.
    The VOC preset's 120k iterations of 32 images cannot finish on a CPU (weeks), so with VOC found but no GPU
    (``device`` ``"auto"`` without CUDA, or ``"cpu"``) ``"auto"`` says so (:class:`CPUFallbackWarning`) and picks
    ``ssd-cpu-synth``; an explicit ``voc:...`` spec on a CPU raises ``ValueError`` unless ``iterations`` is given.
    The run is named by :func:`run_name` (``<preset>-<loss>[-seed<k>]``) unless ``name`` is given, the rule
    ``rssd train`` follows too, so that notebooks and the command line find each other's runs.
    ``iterations`` given without ``warmup_iterations`` / ``checkpoint_every`` / ``log_every`` scales those too (a
    checkpoint at half the run at the latest, so that even a short run has one to resume from).
    """
    from rssd.data import default_data_spec

    spec = default_data_spec() if data == "auto" else data
    preset = "ssd300-voc0712" if spec.startswith("voc:") else "ssd-cpu-synth"
    device = str(overrides.get("device", PRESETS[preset].device))
    if preset == "ssd300-voc0712" and "iterations" not in overrides and not _has_gpu(device):
        cpu_cost = _cost(expected_fit_seconds(dataclasses.replace(PRESETS["ssd-cpu-synth"], device="cpu")))
        if data != "auto":
            raise ValueError(
                f"{spec} with the ssd300-voc0712 preset (120k iterations of 32 images) needs a CUDA GPU, and device "
                f"{device!r} has none: it would not finish on a CPU. Use data='synth' (the CPU preset, {cpu_cost}), "
                f"give iterations=... for a short run, or train on a GPU."
            )
        warnings.warn(
            f"PASCAL VOC found ({spec}) but no CUDA GPU: its 120k-iteration schedule cannot finish on a CPU, so "
            f"this run uses the CPU preset ssd-cpu-synth on the synthetic crowds ({cpu_cost}). "
            f"Train on VOC with a GPU (device='cuda').",
            CPUFallbackWarning,
            stacklevel=2,
        )
        spec, preset = "synth", "ssd-cpu-synth"
    settings: dict[str, Any] = {"data": spec, "loss": loss, "name": run_name(preset, loss, overrides.get("seed", 0))}
    if "iterations" in overrides:
        n = int(overrides["iterations"])
        base = PRESETS[preset]
        settings.update(
            warmup_iterations=min(base.warmup_iterations, n // 4),
            checkpoint_every=min(base.checkpoint_every, max(1, n // 2)),  # two checkpoints at least: resumable
            log_every=min(base.log_every, max(1, n // 20)),
        )  # fmt: skip
    settings.update(overrides)
    return get_config(preset, **settings)


#: Training throughput measured for the presets (images per second, the run's whole wall time included), to tell a
#: notebook's reader how long a missing run will take: ``ssd-cpu-synth`` on 2 CPU cores, on the two machines it was
#: timed on (the fastest and the slowest rate): 800 x 16 images in 708 s (README's Training table) and in 3249 s
#: (notebook 09's training cell at full size, on a later session's machine). The VOC presets: no measurement here
#: (they need a GPU).
MEASURED_IMAGES_PER_S = {("ssd-cpu", "cpu"): (800 * 16 / 708.0, 800 * 16 / 3249.4)}


def expected_fit_seconds(config: TrainConfig) -> tuple[float, float] | None:
    """``(fastest, slowest)`` expected wall time of ``fit(config)`` from :data:`MEASURED_IMAGES_PER_S`, or None."""
    device = "cuda" if _has_gpu(config.device) else "cpu"
    rates = MEASURED_IMAGES_PER_S.get((config.model, device))
    if rates is None:
        return None
    images = config.iterations * config.batch_size
    return images / max(rates), images / min(rates)


def _cost(seconds: tuple[float, float] | None) -> str:
    """A measured training time in words (a range over the machines it was measured on)."""
    if seconds is None:
        return "no time measured for this preset and device"
    fast, slow = seconds
    if slow < 90:
        return f"about {fast:.0f}-{slow:.0f} s on a 2-core CPU (measured on two machines)"
    return (
        f"about {fast / 60:.0f}-{slow / 60:.0f} min on a 2-core CPU (measured on two machines; the progress bar "
        "shows this machine's ETA)"
    )


def missing_run_notice(config: TrainConfig) -> str | None:
    """None when ``config.run_dir`` holds a ``last.pt``, else a sentence saying what training it costs.

    For notebooks that train a missing run: announce it, with the measured time, before starting it.
    """
    if (config.run_dir / "last.pt").is_file():
        return None
    cost = _cost(expected_fit_seconds(config))
    preset = next((p for p in PRESETS if config.name.startswith(p + "-")), None)
    shell = f" In a shell instead: rssd train --config {preset} --loss {config.loss} --out-dir {config.out_dir}"
    return (
        f"{config.name}: no run in {config.run_dir}, training it now: {config.iterations} iterations of "
        f"{config.batch_size} images, {cost}." + (shell if preset else "")
    )


_USAGE_ERROR = "_config_usage_error"  # the namespace entry add_config_arguments leaves: its parser's error()


def _base_type(tp: Any) -> tuple[type, bool]:
    """``(scalar type, optional)`` of a field annotation such as ``float | None`` or ``tuple[float, ...]``."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin is tuple:
        return tuple, optional
    return tp, optional


def _parser_for(tp: type, optional: bool):
    def parse(text: str):
        if optional and text.lower() in ("none", "null", ""):
            return None
        if tp is tuple:
            return tuple(float(t) for t in text.split(",") if t)
        return tp(text)

    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PRESET`` and one ``--field-name`` option per :class:`TrainConfig` field.

    Options not given stay out of the namespace, so ``--grad-clip none`` (None) differs from no option, and
    :func:`config_from_args` knows which fields the user set (it refuses a loss-term field the loss ignores, as a
    usage error of ``parser``).
    """
    parser.set_defaults(**{_USAGE_ERROR: parser.error})
    parser.add_argument("--config", default=None, choices=sorted(PRESETS), help="a named preset to start from")
    group = parser.add_argument_group("configuration fields (override the preset)")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        tp, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if tp is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=f"(default {default})"
            )
        else:
            choices = {"loss": LOSSES, "augment": AUGMENTATIONS, "rep_gt": ("paper", "excess")}.get(f.name)
            shown = ",".join(f"{m:g}" for m in default) if isinstance(default, tuple) else default
            group.add_argument(
                flag, type=_parser_for(tp, optional), default=argparse.SUPPRESS, choices=choices,
                metavar=f.name.upper(),
                help=f"(default {shown})",
            )  # fmt: skip


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The config named by ``args.config`` (or ``base``, or the defaults) with every option given applied.

    With a preset and no ``--name``, the run is named by :func:`run_name` (``--config ssd-cpu-synth --loss ssd``
    writes ``runs/ssd-cpu-synth-ssd``), as the notebooks name theirs.
    """
    preset = getattr(args, "config", None)
    if base is None:
        base = PRESETS[preset] if preset else TrainConfig()
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    config = dataclasses.replace(base, **overrides)
    try:
        check_loss_fields(config.loss, overrides, flags=True)
    except ValueError as exc:
        usage_error = getattr(args, _USAGE_ERROR, None)
        if usage_error is None:
            raise
        usage_error(str(exc))  # exits with status 2 and the usage line
    if preset and "name" not in overrides:
        config = dataclasses.replace(config, name=run_name(preset, config.loss, config.seed))
    return config

