"""SSD on a VGG16 base (SSD300, SSD512 and the CPU-sized ``ssd-cpu``) and the import of published weights.

Layers (names follow the paper and Caffe SSD; the state-dict keys read ``vgg.conv4_3.weight``,
``extras.conv8_2.weight``, ``loc.conv7.weight``, ...)::

    vgg     conv1_1 conv1_2 pool1 | conv2_1 conv2_2 pool2 | conv3_1..3 pool3 (ceil) | conv4_1..3   -> l2norm -> source
            pool4 | conv5_1..3 pool5 (3x3, stride 1, pad 1) | conv6 (3x3, dilation 6) conv7 (1x1)          -> source
    extras  conv8_1 (1x1) conv8_2 (3x3 stride 2) -> source, conv9_*, conv10_*, conv11_* (SSD512: up to conv12_*,
            whose conv12_2 is 4x4)
    heads   per source, a 3x3 conv to ``A_k * 4`` offsets (``loc``) and one to ``A_k * C`` scores (``conf``)

Every convolution is followed by a ReLU (and by a BatchNorm before it where the config says ``batch_norm``).
Head outputs are permuted to ``(N, H, W, A_k * k)`` and flattened, so the rows of ``loc``/``conf`` follow the order
of :func:`rssd.priors.make_priors`: feature map, row, column, box.

Input convention (``SSD.normalization``), what the weights expect of a float ``(N, 3, S, S)`` batch:

* ``"caffe"`` (rssd's default): 0-255 pixel values minus a per-channel mean, no division. ssd.pytorch reads images
  with OpenCV (BGR), subtracts its mean ``(104, 117, 123)`` and then reverses the channels, so its published
  weights (``vgg16_reducedfc.pth``, ``ssd300_mAP_77.43_v2.pth``) see **RGB** order with means R 123, G 117, B 104.
  torchvision's ``VGG16_Weights.IMAGENET1K_FEATURES`` (ported from ssd.pytorch) documents the same: RGB, mean
  ``(0.48235, 0.45882, 0.40784) * 255``, std ``1/255``.
* ``"imagenet"``: RGB in ``[0, 1]`` standardised with ImageNet's mean/std (torchvision's other VGG16 weights).

The importers set ``model.normalization`` to the convention of the weights they load; the data pipeline must
normalise with the model's ``normalization`` (``rssd.data.transforms.NORMALIZATIONS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rssd.priors import PRIOR_SPECS, PriorSpec, make_priors

__all__ = [
    "NORMALIZATION_NAMES",
    "ExtraSpec",
    "SSDConfig",
    "SSD_CONFIGS",
    "L2Norm",
    "VGGBase",
    "Extras",
    "SSD",
    "build_ssd",
    "forward_macs",
    "summary",
    "WeightImportError",
    "SSD_PYTORCH_VGG_LAYERS",
    "ssd_pytorch_key_map",
    "torchvision_vgg16_key_map",
    "load_vgg16_reducedfc",
    "load_ssd_pytorch",
    "load_torchvision_vgg16",
    "load_pretrained",
]

#: The input conventions a model's ``normalization`` may name (module docstring); their presets, the objects that
#: normalise images, are ``rssd.data.transforms.NORMALIZATIONS`` (``tests/test_model.py`` checks the two agree).
NORMALIZATION_NAMES: tuple[str, ...] = ("caffe", "imagenet")

_VGG_STAGES: tuple[tuple[str, ...], ...] = (
    ("conv1_1", "conv1_2"),
    ("conv2_1", "conv2_2"),
    ("conv3_1", "conv3_2", "conv3_3"),
    ("conv4_1", "conv4_2", "conv4_3"),
    ("conv5_1", "conv5_2", "conv5_3"),
)


@dataclass(frozen=True)
class ExtraSpec:
    """One extra block: a 1x1 conv to ``mid`` channels, then a ``kernel`` conv to ``out`` channels (a source)."""

    mid: int
    out: int
    kernel: int = 3
    stride: int = 2
    padding: int = 1


@dataclass(frozen=True)
class SSDConfig:
    """Architecture of one SSD variant; the input size comes from its prior layout (a ``PRIOR_SPECS`` name or a
    :class:`PriorSpec`)."""

    name: str
    priors: str | PriorSpec
    vgg_widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    fc_width: int = 1024
    extras: tuple[ExtraSpec, ...] = ()
    batch_norm: bool = False
    normalization: str = "caffe"

    @property
    def prior_spec(self) -> PriorSpec:
        return PRIOR_SPECS[self.priors] if isinstance(self.priors, str) else self.priors

    @property
    def image_size(self) -> int:
        return self.prior_spec.image_size


_SSD300_EXTRAS = (ExtraSpec(256, 512), ExtraSpec(128, 256), ExtraSpec(128, 256, 3, 1, 0), ExtraSpec(128, 256, 3, 1, 0))

#: The named architectures. ``ssd-cpu`` is SSD300's structure at a quarter of the width, with BatchNorm so that it
#: trains from scratch in minutes (see ``benchmarks/bench_model.py`` for the measurements behind it).
SSD_CONFIGS: dict[str, SSDConfig] = {
    "ssd300": SSDConfig("ssd300", "ssd300", extras=_SSD300_EXTRAS),
    "ssd512": SSDConfig(
        "ssd512",
        "ssd512",
        extras=(
            ExtraSpec(256, 512),
            ExtraSpec(128, 256),
            ExtraSpec(128, 256),
            ExtraSpec(128, 256),
            ExtraSpec(128, 256, 4, 1, 1),
        ),
    ),
    "ssd-cpu": SSDConfig(
        "ssd-cpu",
        "ssd-cpu",
        vgg_widths=(16, 32, 64, 128, 128),
        fc_width=256,
        extras=tuple(ExtraSpec(e.mid // 4, e.out // 4, e.kernel, e.stride, e.padding) for e in _SSD300_EXTRAS),
        batch_norm=True,
    ),
    # The crowd experiment's model (rssd.experiments): 160 px inputs, half of ssd-cpu's widths, three extra blocks
    # (10 -> 5 -> 3 -> 1), so that a grid of long runs fits a CPU.
    "ssd-mini": SSDConfig(
        "ssd-mini",
        "ssd-mini",
        vgg_widths=(8, 16, 32, 64, 64),
        fc_width=128,
        extras=(ExtraSpec(32, 64), ExtraSpec(16, 32), ExtraSpec(16, 32, 3, 1, 0)),
        batch_norm=True,
    ),
}


class L2Norm(nn.Module):
    """Normalise each position's channel vector to unit L2 norm, then scale per channel (ParseNet; init 20).

    ``(N, C, H, W) -> (N, C, H, W)``; computed in float32, returned in the input dtype. An all-zero vector (ReLU
    left nothing) stays zero, with a finite gradient.
    """

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.scale = scale
        self.eps = eps
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        # eps inside the root: same value as ssd.pytorch's sqrt(.) + eps, but a finite gradient where x is all zero
        norm = (x32.pow(2).sum(dim=1, keepdim=True) + self.eps**2).sqrt()  # (N, 1, H, W)
        return (x32 / norm * self.weight.float()[None, :, None, None]).to(x.dtype)

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.scale)


class _ConvStack(nn.Module):
    """Named convolutions, each followed by an optional BatchNorm (``bn<suffix>``) and a ReLU."""

    def __init__(self, batch_norm: bool) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.conv_names: list[str] = []

    def _add_conv(self, name: str, c_in: int, c_out: int, kernel: int, **kwargs: int) -> None:
        self.add_module(name, nn.Conv2d(c_in, c_out, kernel, **kwargs))
        if self.batch_norm:
            self.add_module("bn" + name.removeprefix("conv"), nn.BatchNorm2d(c_out))
        self.conv_names.append(name)

    def _conv_relu(self, name: str, x: Tensor) -> Tensor:
        x = getattr(self, name)(x)
        if self.batch_norm:
            x = getattr(self, "bn" + name.removeprefix("conv"))(x)
        return F.relu(x, inplace=True)


class VGGBase(_ConvStack):
    """VGG16 with SSD's reduced fully connected layers: ``(N, 3, S, S) -> (conv4_3, conv7)`` feature maps.

    For SSD300 the two maps are ``(N, 512, 38, 38)`` (pool3 rounds up: 75 -> 38) and ``(N, 1024, 19, 19)``.
    """

    def __init__(
        self, widths: tuple[int, ...] = (64, 128, 256, 512, 512), fc_width: int = 1024, batch_norm: bool = False
    ) -> None:
        super().__init__(batch_norm)
        c_in = 3
        for stage, width in zip(_VGG_STAGES, widths, strict=True):
            for name in stage:
                self._add_conv(name, c_in, width, 3, padding=1)
                c_in = width
        self._add_conv("conv6", c_in, fc_width, 3, padding=6, dilation=6)
        self._add_conv("conv7", fc_width, fc_width, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        for k, stage in enumerate(_VGG_STAGES):
            if k > 0:  # pool1..pool4, each halving; pool3 rounds up (SSD300: 75 -> 38)
                x = F.max_pool2d(x, 2, 2, ceil_mode=k == 3)
            for name in stage:
                x = self._conv_relu(name, x)
            if k == 3:
                conv4_3 = x
        x = F.max_pool2d(x, 3, 1, padding=1)  # pool5 keeps the size
        x = self._conv_relu("conv6", x)
        return conv4_3, self._conv_relu("conv7", x)


class Extras(_ConvStack):
    """SSD's extra feature layers: ``conv7`` map -> one source map per :class:`ExtraSpec` (``conv8_2``, ...)."""

    def __init__(self, c_in: int, specs: Iterable[ExtraSpec], batch_norm: bool = False, first: int = 8) -> None:
        super().__init__(batch_norm)
        self.source_names: list[str] = []
        for k, spec in enumerate(specs, start=first):
            self._add_conv(f"conv{k}_1", c_in, spec.mid, 1)
            self._add_conv(f"conv{k}_2", spec.mid, spec.out, spec.kernel, stride=spec.stride, padding=spec.padding)
            self.source_names.append(f"conv{k}_2")
            c_in = spec.out

    def forward(self, x: Tensor) -> list[Tensor]:
        sources = []
        for name in self.source_names:
            x = self._conv_relu(name.removesuffix("_2") + "_1", x)
            x = self._conv_relu(name, x)
            sources.append(x)
        return sources


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    ``model(images (N, 3, S, S)) -> (loc (N, P, 4), conf (N, P, C))``: box offsets relative to
    ``model.priors_cxcywh`` (``(P, 4)``, a non-persistent buffer; encoded as in :func:`rssd.boxes.encode`) and
    unnormalised class scores, class 0 being background. Build with :func:`build_ssd`; turn outputs into detections
    with ``rssd.detect.detect(loc, conf, model.priors)``.
    """

    def __init__(self, config: SSDConfig, num_classes: int, normalization: str | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too: at least 2, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.normalization = normalization or config.normalization
        if self.normalization not in NORMALIZATION_NAMES:
            raise ValueError(f"normalization must be one of {NORMALIZATION_NAMES}, got {self.normalization!r}")
        spec = config.prior_spec
        if len(config.extras) + 2 != len(spec.feature_maps):
            raise ValueError(
                f"{config.name}: {len(config.extras) + 2} source maps but its prior layout has "
                f"{len(spec.feature_maps)} feature maps"
            )
        self.vgg = VGGBase(config.vgg_widths, config.fc_width, config.batch_norm)
        self.l2norm = L2Norm(config.vgg_widths[3], 20.0)
        self.extras = Extras(config.fc_width, config.extras, config.batch_norm)
        self.source_names: list[str] = ["conv4_3", "conv7", *self.extras.source_names]
        channels = [config.vgg_widths[3], config.fc_width, *(e.out for e in config.extras)]
        self.loc = nn.ModuleDict()
        self.conf = nn.ModuleDict()
        for name, c, boxes in zip(self.source_names, channels, spec.boxes_per_cell, strict=True):
            self.loc[name] = nn.Conv2d(c, boxes * 4, 3, padding=1)
            self.conf[name] = nn.Conv2d(c, boxes * num_classes, 3, padding=1)
        self.register_buffer("priors_cxcywh", make_priors(spec), persistent=False)
        self.reset_parameters()
        self.check_feature_maps()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def prior_spec(self) -> PriorSpec:
        return self.config.prior_spec

    @property
    def priors(self) -> Tensor:
        """``(P, 4)`` priors ``(cx, cy, w, h)`` normalised to the input, in the order of the outputs' rows."""
        return self.priors_cxcywh

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases for every convolution; L2Norm back to 20; BatchNorm to identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, L2Norm)):
                m.reset_parameters()

    def features(self, images: Tensor) -> list[Tensor]:
        """The source maps ``[(N, C_k, f_k, f_k)]``, ``conv4_3`` already L2-normalised.

        Raises ValueError for an input of the wrong size, RuntimeError where a map disagrees with the prior layout.
        """
        size = self.image_size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"{self.name} takes (N, 3, {size}, {size}) images, got {tuple(images.shape)}")
        conv4_3, conv7 = self.vgg(images)
        sources = [self.l2norm(conv4_3), conv7, *self.extras(conv7)]
        for name, x, f in zip(self.source_names, sources, self.prior_spec.feature_maps, strict=True):
            if tuple(x.shape[-2:]) != (f, f):
                raise RuntimeError(
                    f"{self.name}: source {name} is {x.shape[-2]}x{x.shape[-1]} but the prior layout "
                    f"expects {f}x{f} (PriorSpec.feature_maps {self.prior_spec.feature_maps})"
                )
        return sources

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, 3, S, S)`` normalised images -> ``loc (N, P, 4)``, ``conf (N, P, C)`` (logits)."""
        sources = self.features(images)
        n = images.shape[0]
        loc, conf = [], []
        for name, x in zip(self.source_names, sources, strict=True):
            loc.append(self.loc[name](x).permute(0, 2, 3, 1).reshape(n, -1, 4))  # (N, f*f*A, 4): row, col, box
            conf.append(self.conf[name](x).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
        return torch.cat(loc, dim=1), torch.cat(conf, dim=1)

    def check_feature_maps(self) -> None:
        """Run the network on a ``meta`` batch (no compute) and check every source map against the prior layout."""
        tensors = {k: torch.empty_like(v, device="meta") for k, v in [*self.named_parameters(), *self.named_buffers()]}
        x = torch.empty(1, 3, self.image_size, self.image_size, device="meta")
        was_training = self.training
        self.eval()
        try:
            loc, conf = torch.func.functional_call(self, tensors, (x,))
        finally:
            self.train(was_training)
        if loc.shape[1] != self.priors_cxcywh.shape[0] or conf.shape[1] != self.priors_cxcywh.shape[0]:
            raise RuntimeError(f"{self.name}: {loc.shape[1]} predictions for {self.priors_cxcywh.shape[0]} priors")


def build_ssd(name: str, num_classes: int, normalization: str | None = None) -> SSD:
    """Build a named SSD (``"ssd300"``, ``"ssd512"``, ``"ssd-cpu"``, ``"ssd-mini"``) with ``num_classes`` classes
    (background included).

    The model is freshly initialised (Xavier); load weights with :func:`load_pretrained` or the ``load_*``
    functions. ``normalization`` overrides the config's input convention (see the module docstring).
    """
    if name not in SSD_CONFIGS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(SSD_CONFIGS)}")
    return SSD(SSD_CONFIGS[name], num_classes, normalization)


def forward_macs(model: nn.Module, images: Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``images`` (convolutions and linear layers).

    Runs on the ``meta`` device: no compute, exact counts. Divide by the batch size for a per-image figure.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    tensors = {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            torch.func.functional_call(model, tensors, (images.to("meta"),))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def summary(model: SSD) -> str:
    """A printable table of ``model``: input, parameters, forward MACs per image, source maps and their priors."""
    s = model.image_size
    macs = forward_macs(model, torch.empty(1, 3, s, s))
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"{model.name}: input {s}x{s} ({model.normalization}), {model.num_classes} classes incl. background",
        f"parameters {params:,}; forward {macs / 1e9:.2f} GMAC per image (training ~3x: {3 * macs / 1e9:.1f})",
        f"{'source':>9} {'map':>7} {'channels':>8} {'boxes/cell':>10} {'priors':>7}",
    ]
    spec = model.prior_spec
    for name, f, b in zip(model.source_names, spec.feature_maps, spec.boxes_per_cell, strict=True):
        lines.append(f"{name:>9} {f'{f}x{f}':>7} {model.loc[name].in_channels:>8} {b:>10} {f * f * b:>7}")
    lines.append(f"{'total':>9} {'':>7} {'':>8} {'':>10} {model.priors_cxcywh.shape[0]:>7}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Published weights
# --------------------------------------------------------------------------------------------------------------------


class WeightImportError(ValueError):
    """A weight file does not fit the model: wrong format, architecture or class count."""


#: Index of each convolution in ssd.pytorch's flat ``vgg`` layer list (conv, ReLU and pooling layers all count);
#: torchvision's ``vgg16().features`` uses the same indices up to ``conv5_3`` (28).
SSD_PYTORCH_VGG_LAYERS: dict[int, str] = {
    0: "conv1_1", 2: "conv1_2", 5: "conv2_1", 7: "conv2_2", 10: "conv3_1", 12: "conv3_2", 14: "conv3_3",
    17: "conv4_1", 19: "conv4_2", 21: "conv4_3", 24: "conv5_1", 26: "conv5_2", 28: "conv5_3", 31: "conv6", 33: "conv7",
}  # fmt: skip


def _param_keys(theirs: str, ours: str) -> dict[str, str]:
    return {f"{theirs}.weight": f"{ours}.weight", f"{theirs}.bias": f"{ours}.bias"}


def ssd_pytorch_key_map(model: SSD, base_only: bool = False) -> dict[str, str]:
    """ssd.pytorch key -> rssd key.

    Full checkpoints (``base_only=False``) hold ``vgg.N.*``, ``L2Norm.weight``, ``extras.N.*`` (the extra convs in
    order: ``extras.0`` is ``conv8_1``, ``extras.1`` is ``conv8_2``, ...) and ``loc.N.*`` / ``conf.N.*`` (one per
    source map). The base file ``vgg16_reducedfc.pth`` holds the ``vgg`` list alone, without the prefix: ``N.*``.
    """
    prefix = "" if base_only else "vgg."
    mapping: dict[str, str] = {}
    for index, name in SSD_PYTORCH_VGG_LAYERS.items():
        mapping |= _param_keys(f"{prefix}{index}", f"vgg.{name}")
    if base_only:
        return mapping
    mapping["L2Norm.weight"] = "l2norm.weight"
    for index, name in enumerate(model.extras.conv_names):
        mapping |= _param_keys(f"extras.{index}", f"extras.{name}")
    for index, name in enumerate(model.source_names):
        mapping |= _param_keys(f"loc.{index}", f"loc.{name}")
        mapping |= _param_keys(f"conf.{index}", f"conf.{name}")
    return mapping


def torchvision_vgg16_key_map() -> dict[str, str]:
    """torchvision ``vgg16().state_dict()`` key -> rssd key, for conv1_1 ... conv5_3 (``features.N.*``)."""
    mapping: dict[str, str] = {}
    for index, name in SSD_PYTORCH_VGG_LAYERS.items():
        if index <= 28:
            mapping |= _param_keys(f"features.{index}", f"vgg.{name}")
    return mapping


def _read_state_dict(source: str | os.PathLike | Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """A state dict and a label for messages: from a mapping, or a file read with ``weights_only=True``."""
    if isinstance(source, Mapping):
        state, label = dict(source), "the given state dict"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"weight file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # an unpickling error names no file: say which one
            raise WeightImportError(f"{path}: cannot be read as a weights-only state dict ({e})") from e
        label = str(path)
        if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
            state = state["model"]  # a training checkpoint: model state dict + optimizer + ...
        if not isinstance(state, Mapping):
            raise WeightImportError(f"{path}: holds a {type(state).__name__}, not a state dict")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state), label


def _classes_hint(model: SSD, ours: str, shape: torch.Size) -> str:
    """Extra words for a conf head of the wrong size: the class count the file was trained for."""
    if not ours.startswith("conf.") or len(shape) == 0:
        return ""
    boxes = model.prior_spec.boxes_per_cell[model.source_names.index(ours.split(".")[1])]
    if shape[0] % boxes:
        return ""
    return (
        f": the file predicts {shape[0] // boxes} classes (incl. background), the model {model.num_classes}; "
        f"build the model with num_classes={shape[0] // boxes}, or pass skip_conf=True to fine-tune on new classes"
    )


def _import(
    model: SSD, state: Mapping[str, Tensor], key_map: Mapping[str, str], label: str, *, allow_extra: Iterable[str] = ()
) -> None:
    """Copy ``state[theirs]`` into ``model``'s ``ours`` for every pair of ``key_map``, after checking everything."""
    extra = [k for k in state if k not in key_map and not any(k.startswith(p) for p in allow_extra)]
    if extra:
        raise WeightImportError(
            f"{label}: key {extra[0]!r} (and {len(extra) - 1} more) has no place in rssd's {model.name}; "
            f"a checkpoint of another architecture or format?"
        )
    missing = [k for k in key_map if k not in state]
    if missing:
        raise WeightImportError(
            f"{label}: lacks key {missing[0]!r} (and {len(missing) - 1} more) that rssd's {model.name} needs "
            f"(for {key_map[missing[0]]!r}); a checkpoint of another architecture or format?"
        )
    ours = model.state_dict()
    for theirs, mine in key_map.items():
        if state[theirs].shape != ours[mine].shape:
            raise WeightImportError(
                f"{label}: key {theirs!r} has shape {tuple(state[theirs].shape)} but rssd's {model.name} "
                f"{mine!r} has shape {tuple(ours[mine].shape)}{_classes_hint(model, mine, state[theirs].shape)}"
            )
    with torch.no_grad():
        for theirs, mine in key_map.items():
            ours[mine].copy_(state[theirs])  # state_dict tensors share storage with the parameters


def _check_plain_vgg(model: SSD, what: str) -> None:
    if model.config.batch_norm:
        raise WeightImportError(f"{what} is a VGG without BatchNorm; rssd's {model.name} has BatchNorm layers")


def load_vgg16_reducedfc(model: SSD, source: str | os.PathLike | Mapping[str, Tensor]) -> None:
    """Load ssd.pytorch's base ``vgg16_reducedfc.pth`` (keys ``0.weight`` ... ``33.bias``) into ``model.vgg``.

    conv1_1 ... conv7 get ImageNet-trained weights (fc6/fc7 subsampled to conv6/conv7 by Liu et al.); L2Norm,
    extras and heads keep their initialisation. Sets ``model.normalization = "caffe"``.
    """
    state, label = _read_state_dict(source)
    _check_plain_vgg(model, label)
    _import(model, state, ssd_pytorch_key_map(model, base_only=True), label)
    model.normalization = "caffe"


def load_ssd_pytorch(model: SSD, source: str | os.PathLike | Mapping[str, Tensor], *, skip_conf: bool = False) -> None:
    """Load a full ssd.pytorch checkpoint (e.g. ``ssd300_mAP_77.43_v2.pth``) into ``model``.

    ``skip_conf=True`` loads everything but the ``conf`` heads (fine-tuning to another class set); otherwise the
    class count must match. Sets ``model.normalization = "caffe"``.
    """
    state, label = _read_state_dict(source)
    _check_plain_vgg(model, label)
    key_map = ssd_pytorch_key_map(model)
    if skip_conf:
        key_map = {k: v for k, v in key_map.items() if not k.startswith("conf.")}
    _import(model, state, key_map, label, allow_extra=("conf.",) if skip_conf else ())
    model.normalization = "caffe"


def load_torchvision_vgg16(
    model: SSD,
    weights: str | os.PathLike | Mapping[str, Tensor] = "IMAGENET1K_FEATURES",
    *,
    normalization: str = "caffe",
    progress: bool = True,
) -> None:
    """Load torchvision VGG16 weights into conv1_1 ... conv5_3 (conv6/conv7 keep their initialisation).

    ``weights`` is ``"IMAGENET1K_FEATURES"`` (downloaded through torch.hub: needs internet the first time), or a
    local file / state dict with torchvision's keys (``features.N.*``; ``classifier.*`` is ignored).
    ``normalization`` is the input convention of those weights: ``"caffe"`` for IMAGENET1K_FEATURES (ported from
    ssd.pytorch), ``"imagenet"`` for torchvision's IMAGENET1K_V1. ssd.pytorch's ``vgg16_reducedfc.pth`` is the better
    start when you have it: it also holds trained conv6/conv7.
    """
    if isinstance(weights, str) and weights == "IMAGENET1K_FEATURES":
        from urllib.error import URLError

        from torchvision.models import VGG16_Weights

        url = VGG16_Weights.IMAGENET1K_FEATURES.url
        try:
            weights = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress, weights_only=True)
        except (URLError, OSError) as e:
            raise RuntimeError(
                f"could not download torchvision's VGG16_Weights.IMAGENET1K_FEATURES from {url} ({e}). Offline? "
                f"Fetch the file on a machine with internet, then pass its path: load_torchvision_vgg16(model, PATH)"
            ) from e
    if normalization not in NORMALIZATION_NAMES:
        raise ValueError(f"normalization must be one of {NORMALIZATION_NAMES}, got {normalization!r}")
    state, label = _read_state_dict(weights)
    _check_plain_vgg(model, label)
    _import(model, state, torchvision_vgg16_key_map(), label, allow_extra=("classifier.",))
    model.normalization = normalization


def load_pretrained(model: SSD, source: str | os.PathLike | Mapping[str, Tensor]) -> str:
    """Load weights of any supported format, recognised by its keys; returns the format's name.

    ``"ssd.pytorch"`` (``vgg.0.weight``), ``"vgg16_reducedfc"`` (``0.weight``), ``"torchvision-vgg16"``
    (``features.0.weight``; assumed IMAGENET1K_FEATURES, i.e. ``"caffe"`` input) or ``"rssd"`` (rssd's own state
    dict, or a training checkpoint holding it under ``"model"``; loaded strictly).
    """
    state, label = _read_state_dict(source)
    if "vgg.0.weight" in state:
        load_ssd_pytorch(model, state)
        return "ssd.pytorch"
    if "0.weight" in state:
        load_vgg16_reducedfc(model, state)
        return "vgg16_reducedfc"
    if "features.0.weight" in state:
        load_torchvision_vgg16(model, state)
        return "torchvision-vgg16"
    if "vgg.conv1_1.weight" in state:
        ours = model.state_dict()
        _import(model, state, {k: k for k in ours}, label)
        return "rssd"
    raise WeightImportError(f"{label}: unrecognised weight format (first keys: {list(state)[:4]})")
