"""rssd.model: shapes and prior order of SSD300 / SSD512 / ssd-cpu, and the import of published weights.

The weight tests write state dicts with ssd.pytorch's (and torchvision's) exact key names and shapes, filled with
random values, load them through rssd's importers and compare the model with an independent reference forward
written here with ``F.conv2d`` on the raw state dict, following ssd.pytorch's flat layer lists.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rssd.model import (
    SSD,
    SSD_CONFIGS,
    L2Norm,
    WeightImportError,
    build_ssd,
    forward_macs,
    load_pretrained,
    load_ssd_pytorch,
    load_torchvision_vgg16,
    load_vgg16_reducedfc,
)
from rssd.priors import PRIOR_SPECS, PriorSpec, make_priors

# ----------------------------------------------------------------------------------------------------------------
# ssd.pytorch's SSD300, as facts: its flat ``vgg`` list (conv = Conv2d + ReLU, two list entries; "M" max pool,
# "C" max pool with ceil_mode), then pool5, conv6 (dilated), ReLU, conv7, ReLU; ``extras`` a flat list of convs
# (in, out, kernel, stride, padding); heads on [conv4_3, conv7, extras 1, 3, 5, 7] with 4/6/6/6/4/4 boxes.
# ----------------------------------------------------------------------------------------------------------------
VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
EXTRAS_300 = [(1024, 256, 1, 1, 0), (256, 512, 3, 2, 1), (512, 128, 1, 1, 0), (128, 256, 3, 2, 1),
              (256, 128, 1, 1, 0), (128, 256, 3, 1, 0), (256, 128, 1, 1, 0), (128, 256, 3, 1, 0)]  # fmt: skip
SOURCE_CHANNELS_300 = [512, 1024, 512, 256, 256, 256]
BOXES_300 = [4, 6, 6, 6, 4, 4]
# SSD512 (Caffe SSD's deploy.prototxt, as ssd.pytorch-style forks number it): a fifth stride-2 pair, a 4x4 last conv.
EXTRAS_512 = [(1024, 256, 1, 1, 0), (256, 512, 3, 2, 1), (512, 128, 1, 1, 0), (128, 256, 3, 2, 1),
              (256, 128, 1, 1, 0), (128, 256, 3, 2, 1), (256, 128, 1, 1, 0), (128, 256, 3, 2, 1),
              (256, 128, 1, 1, 0), (128, 256, 4, 1, 1)]  # fmt: skip
SOURCE_CHANNELS_512 = [512, 1024, 512, 256, 256, 256, 256]
BOXES_512 = [4, 6, 6, 6, 6, 4, 4]


def vgg_layers() -> list[tuple]:
    """ssd.pytorch's ``vgg`` list, one tuple per item: ("conv", c_in, c_out, k, pad, dilation), ("relu",) or
    ("pool", kernel, stride, pad, ceil_mode)."""
    layers: list[tuple] = []
    c_in = 3
    for v in VGG_CFG:
        if v in ("M", "C"):
            layers.append(("pool", 2, 2, 0, v == "C"))
        else:
            layers += [("conv", c_in, v, 3, 1, 1), ("relu",)]
            c_in = v
    layers += [("pool", 3, 1, 1, False), ("conv", 512, 1024, 3, 6, 6), ("relu",), ("conv", 1024, 1024, 1, 0, 1)]
    return [*layers, ("relu",)]


def _rand_conv(gen: torch.Generator, c_out: int, c_in: int, k: int) -> tuple[Tensor, Tensor]:
    w = torch.randn(c_out, c_in, k, k, generator=gen) * math.sqrt(2.0 / (c_in * k * k))
    return w, torch.randn(c_out, generator=gen) * 0.1


def ssd_pytorch_state(num_classes: int = 21, seed: int = 0, size: int = 300) -> dict[str, Tensor]:
    """A full ssd.pytorch SSD300 (or SSD512) state dict: exact keys and shapes, random values."""
    extras, sources, boxes = {
        300: (EXTRAS_300, SOURCE_CHANNELS_300, BOXES_300), 512: (EXTRAS_512, SOURCE_CHANNELS_512, BOXES_512)
    }[size]  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for i, layer in enumerate(vgg_layers()):
        if layer[0] == "conv":
            state[f"vgg.{i}.weight"], state[f"vgg.{i}.bias"] = _rand_conv(gen, layer[2], layer[1], layer[3])
    state["L2Norm.weight"] = 20.0 + torch.randn(512, generator=gen)
    for i, (c_in, c_out, k, _, _) in enumerate(extras):
        state[f"extras.{i}.weight"], state[f"extras.{i}.bias"] = _rand_conv(gen, c_out, c_in, k)
    for i, (c, a) in enumerate(zip(sources, boxes, strict=True)):
        state[f"loc.{i}.weight"], state[f"loc.{i}.bias"] = _rand_conv(gen, a * 4, c, 3)
        state[f"conf.{i}.weight"], state[f"conf.{i}.bias"] = _rand_conv(gen, a * num_classes, c, 3)
    return state


def reference_vgg(base: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """ssd.pytorch's vgg list on raw ``N.weight`` keys: returns (conv4_3 after ReLU = list item 22, conv7)."""
    conv4_3 = None
    for i, layer in enumerate(vgg_layers()):
        if layer[0] == "conv":
            x = F.conv2d(x, base[f"{i}.weight"], base[f"{i}.bias"], padding=layer[4], dilation=layer[5])
        elif layer[0] == "relu":
            x = F.relu(x)
        else:
            x = F.max_pool2d(x, layer[1], layer[2], layer[3], ceil_mode=layer[4])
        if i == 22:
            conv4_3 = x
    assert conv4_3 is not None
    return conv4_3, x


def reference_ssd300(state: dict[str, Tensor], x: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """ssd.pytorch's SSD300 forward on the raw state dict: (loc (N, P, 4), conf (N, P, C))."""
    base = {k.removeprefix("vgg."): v for k, v in state.items() if k.startswith("vgg.")}
    conv4_3, x = reference_vgg(base, x)
    norm = conv4_3.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
    sources = [conv4_3 / norm * state["L2Norm.weight"].view(1, -1, 1, 1), x]
    for i, (_, _, _, stride, pad) in enumerate(EXTRAS_300):
        x = F.relu(F.conv2d(x, state[f"extras.{i}.weight"], state[f"extras.{i}.bias"], stride=stride, padding=pad))
        if i % 2 == 1:
            sources.append(x)
    n = x.shape[0]
    loc = [F.conv2d(s, state[f"loc.{i}.weight"], state[f"loc.{i}.bias"], padding=1) for i, s in enumerate(sources)]
    conf = [F.conv2d(s, state[f"conf.{i}.weight"], state[f"conf.{i}.bias"], padding=1) for i, s in enumerate(sources)]
    loc_flat = torch.cat([o.permute(0, 2, 3, 1).contiguous().view(n, -1) for o in loc], 1)
    conf_flat = torch.cat([o.permute(0, 2, 3, 1).contiguous().view(n, -1) for o in conf], 1)
    return loc_flat.view(n, -1, 4), conf_flat.view(n, -1, num_classes)


def assert_close_scaled(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


@pytest.fixture(scope="module")
def ssd300_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Tensor]]:
    state = ssd_pytorch_state(21)
    path = tmp_path_factory.mktemp("weights") / "ssd300_mAP_77.43_v2.pth"
    torch.save(state, path)
    return path, state


# ----------------------------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "batch", "num_priors"), [("ssd300", 1, 8732), ("ssd512", 1, 24564), ("ssd-cpu", 2, 8732)]
)
def test_output_shapes(name: str, batch: int, num_priors: int) -> None:
    model = build_ssd(name, num_classes=5).eval()
    s = model.image_size
    assert s == {"ssd300": 300, "ssd512": 512, "ssd-cpu": 300}[name]
    with torch.no_grad():
        loc, conf = model(torch.randn(batch, 3, s, s))
    assert loc.shape == (batch, num_priors, 4)
    assert conf.shape == (batch, num_priors, 5)
    assert model.priors.shape == (num_priors, 4)
    torch.testing.assert_close(model.priors, make_priors(name))
    assert torch.isfinite(loc).all() and torch.isfinite(conf).all()


def test_model_attributes_and_readable_state_dict() -> None:
    model = build_ssd("ssd300", 21)
    assert (model.name, model.image_size, model.num_classes, model.normalization) == ("ssd300", 300, 21, "caffe")
    assert model.source_names == ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2"]
    keys = set(model.state_dict())
    expected = ["vgg.conv1_1.weight", "vgg.conv4_3.bias", "vgg.conv6.weight", "vgg.conv7.weight", "l2norm.weight"]
    expected += ["extras.conv8_1.weight", "extras.conv11_2.bias", "loc.conv4_3.weight", "conf.conv11_2.weight"]
    assert set(expected) <= keys
    assert "priors_cxcywh" not in keys  # derived from the config, not stored
    assert model.vgg.conv6.dilation == (6, 6) and model.vgg.conv6.padding == (6, 6)
    assert torch.equal(model.l2norm.weight, torch.full((512,), 20.0))
    assert build_ssd("ssd300", 21, normalization="imagenet").normalization == "imagenet"
    ssd512 = build_ssd("ssd512", 21)
    assert ssd512.source_names[-1] == "conv12_2" and ssd512.extras.conv12_2.kernel_size == (4, 4)
    # ssd.pytorch's SSD300 for VOC has 26,285,486 parameters
    assert sum(p.numel() for p in model.parameters()) == 26_285_486


def test_build_errors() -> None:
    with pytest.raises(KeyError, match="unknown model 'ssd301'"):
        build_ssd("ssd301", 21)
    with pytest.raises(ValueError, match="normalization"):
        build_ssd("ssd-cpu", 21, normalization="bgr")
    # the names a model accepts are exactly the data pipeline's presets
    from rssd.data.transforms import NORMALIZATIONS
    from rssd.model import NORMALIZATION_NAMES

    assert set(NORMALIZATION_NAMES) == set(NORMALIZATIONS)
    with pytest.raises(ValueError, match="at least 2"):
        build_ssd("ssd-cpu", 1)
    model = build_ssd("ssd-cpu", 3)
    with pytest.raises(ValueError, match=r"takes \(N, 3, 300, 300\) images, got \(1, 3, 256, 256\)"):
        model(torch.zeros(1, 3, 256, 256))


@pytest.mark.parametrize("name", list(SSD_CONFIGS))
def test_feature_maps_match_prior_layout(name: str) -> None:
    """Every registered config produces, on a real (meta) forward, exactly its prior layout's map sizes."""
    model = build_ssd(name, 3)
    spec = PRIOR_SPECS[name]
    seen = []
    hooks = [model.loc[n].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:]))) for n in model.loc]
    model.check_feature_maps()
    for h in hooks:
        h.remove()
    assert seen == [(f, f) for f in spec.feature_maps]
    assert [model.loc[n].out_channels // 4 for n in model.source_names] == list(spec.boxes_per_cell)


def test_mismatched_prior_layout_is_caught_at_build() -> None:
    cpu = SSD_CONFIGS["ssd-cpu"]
    wrong_maps = dataclasses.replace(PRIOR_SPECS["ssd-cpu"], feature_maps=(38, 19, 10, 5, 3, 2))
    with pytest.raises(RuntimeError, match=r"source conv11_2 is 1x1 but the prior layout expects 2x2"):
        SSD(dataclasses.replace(cpu, priors=wrong_maps), 3)
    with pytest.raises(ValueError, match="6 source maps but its prior layout has 7"):
        SSD(dataclasses.replace(cpu, priors="ssd512"), 3)


def test_output_rows_follow_prior_order() -> None:
    """Row p of loc is the head output at the (map, row, column, box) of prior p.

    Sources are replaced by maps whose channels 0 and 1 hold each cell's row and column; the loc heads copy them
    (centre tap of the 3x3 kernel) into offsets 0 and 1 of every box and write the box index and map index as
    biases. Then every row of ``loc`` must name the cell and box that ``make_priors`` put in that row.
    """
    model = build_ssd("ssd-cpu", 3).eval()
    spec = model.prior_spec

    def positional_features(images: Tensor) -> list[Tensor]:
        maps = []
        for name, f in zip(model.source_names, spec.feature_maps, strict=True):
            x = torch.zeros(images.shape[0], model.loc[name].in_channels, f, f)
            x[:, 0] = torch.arange(f, dtype=torch.float32)[:, None]  # row
            x[:, 1] = torch.arange(f, dtype=torch.float32)[None, :]  # column
            maps.append(x)
        return maps

    with torch.no_grad():
        for k, name in enumerate(model.source_names):
            head = model.loc[name]
            head.weight.zero_()
            for a in range(spec.boxes_per_cell[k]):
                head.weight[4 * a + 0, 0, 1, 1] = 1.0
                head.weight[4 * a + 1, 1, 1, 1] = 1.0
                head.bias[4 * a : 4 * a + 4] = torch.tensor([0.0, 0.0, a, k])
        model.features = positional_features  # type: ignore[method-assign]
        loc, _ = model(torch.zeros(1, 3, 300, 300))
    row, col, box, fmap = loc[0].round().long().unbind(1)
    priors = make_priors(spec, dtype=torch.float64)
    step = torch.tensor(spec.steps, dtype=torch.float64)[fmap]
    torch.testing.assert_close(priors[:, 0], ((col + 0.5) * step / spec.image_size).clamp(0, 1))
    torch.testing.assert_close(priors[:, 1], ((row + 0.5) * step / spec.image_size).clamp(0, 1))
    # boxes of a cell: small square, big square, then (a, 1/a) pairs
    min_size = torch.tensor(spec.min_sizes, dtype=torch.float64)[fmap] / spec.image_size
    square = box == 0
    torch.testing.assert_close(priors[square, 2], min_size[square].clamp(max=1))
    assert (box < torch.tensor(spec.boxes_per_cell)[fmap]).all()
    assert torch.equal(fmap, torch.repeat_interleave(torch.arange(6), torch.tensor(
        [f * f * b for f, b in zip(spec.feature_maps, spec.boxes_per_cell, strict=True)])))  # fmt: skip


def test_l2norm() -> None:
    layer = L2Norm(8, scale=20.0)
    x = torch.rand(2, 8, 3, 3)
    x[0, :, 0, 0] = 0.0  # a position where ReLU left nothing
    x.requires_grad_(True)
    y = layer(x)
    norms = y.detach().norm(dim=1)
    torch.testing.assert_close(norms[norms > 0], torch.full_like(norms[norms > 0], 20.0))
    assert float(norms[0, 0, 0]) == 0.0
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert layer(x.bfloat16()).dtype == torch.bfloat16


def test_every_parameter_gets_a_gradient_and_bf16_autocast_runs() -> None:
    model = build_ssd("ssd-cpu", 3)
    loc, conf = model(torch.randn(2, 3, 300, 300))
    (loc.square().mean() + conf.square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loc, conf = model.eval()(torch.randn(1, 3, 300, 300))
    assert torch.isfinite(loc.float()).all() and torch.isfinite(conf.float()).all()


def test_forward_macs() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert forward_macs(conv, torch.empty(2, 3, 10, 10)) == 2 * 10 * 10 * 8 * 3 * 9
    macs = forward_macs(build_ssd("ssd300", 21), torch.empty(1, 3, 300, 300))
    assert 31.0e9 < macs < 31.5e9  # SSD300: ~31 GMAC per image
    assert forward_macs(build_ssd("ssd-cpu", 2), torch.empty(1, 3, 300, 300)) < macs / 10


# ----------------------------------------------------------------------------------------------------------------
# Published weights
# ----------------------------------------------------------------------------------------------------------------


def test_ssd_pytorch_checkpoint_gives_the_reference_outputs(ssd300_file: tuple[Path, dict[str, Tensor]]) -> None:
    path, state = ssd300_file
    model = build_ssd("ssd300", 21, normalization="imagenet")
    load_ssd_pytorch(model, path)
    assert model.normalization == "caffe"
    x = torch.randn(1, 3, 300, 300) * 60.0
    with torch.no_grad():
        loc, conf = model.eval()(x)
        ref_loc, ref_conf = reference_ssd300(state, x, 21)
    assert_close_scaled(loc, ref_loc)
    assert_close_scaled(conf, ref_conf)


def test_vgg16_reducedfc_gives_the_reference_features(
    ssd300_file: tuple[Path, dict[str, Tensor]], tmp_path: Path
) -> None:
    base = {k.removeprefix("vgg."): v for k, v in ssd300_file[1].items() if k.startswith("vgg.")}
    assert sorted(base, key=lambda k: (int(k.split(".")[0]), k))[-1] == "33.weight"
    path = tmp_path / "vgg16_reducedfc.pth"
    torch.save(base, path)
    model = build_ssd("ssd300", 21)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("vgg.")}
    load_vgg16_reducedfc(model, path)
    for k, v in before.items():  # L2Norm, extras and heads keep their initialisation
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(1, 3, 300, 300) * 60.0
    with torch.no_grad():
        conv4_3, conv7 = model.vgg(x)
        ref4_3, ref7 = reference_vgg(base, x)
    assert conv4_3.shape == (1, 512, 38, 38) and conv7.shape == (1, 1024, 19, 19)
    assert_close_scaled(conv4_3, ref4_3)
    assert_close_scaled(conv7, ref7)


def _torchvision_vgg16_state() -> dict[str, Tensor]:
    """torchvision ``vgg16()`` keys and shapes: random features; a NaN classifier (as in IMAGENET1K_FEATURES),
    stored as one expanded value so the file stays small."""
    import torchvision

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    return {
        k: torch.randn(s, generator=gen) if k.startswith("features.") else torch.full((1,), math.nan).expand(s)
        for k, s in shapes.items()
    }


def test_ssd512_state_dict_maps_every_key(tmp_path: Path) -> None:
    """An SSD512 state dict in ssd.pytorch's naming fills every rssd tensor, each from the key of its layer."""
    state = ssd_pytorch_state(21, seed=3, size=512)
    path = tmp_path / "ssd512_voc.pth"
    torch.save(state, path)
    model = build_ssd("ssd512", 21)
    load_ssd_pytorch(model, path)
    assert torch.equal(model.extras.conv12_2.weight, state["extras.9.weight"])  # the 4x4 conv
    assert torch.equal(model.extras.conv8_1.weight, state["extras.0.weight"])
    assert torch.equal(model.loc.conv12_2.weight, state["loc.6.weight"])
    assert torch.equal(model.conf.conv4_3.weight, state["conf.0.weight"])
    # every parameter came from the file: the sums agree tensor by tensor, as a set
    ours = sorted(round(float(t.double().sum()), 6) for t in model.state_dict().values() if t.is_floating_point())
    theirs = sorted(round(float(t.double().sum()), 6) for t in state.values())
    assert ours == theirs
    with torch.no_grad():
        loc, conf = model.eval()(torch.randn(1, 3, 512, 512))
    assert loc.shape == (1, 24564, 4) and conf.shape == (1, 24564, 21)


def test_torchvision_vgg16_key_mapping(tmp_path: Path) -> None:
    state = _torchvision_vgg16_state()
    path = tmp_path / "vgg16_features-amdegroot-88682ab5.pth"
    torch.save(state, path)
    model = build_ssd("ssd300", 21, normalization="imagenet")
    conv6 = model.vgg.conv6.weight.detach().clone()
    load_torchvision_vgg16(model, path)
    assert model.normalization == "caffe"  # IMAGENET1K_FEATURES: RGB, mean 123/117/104 on 0-255, no std
    named = [m for m in model.vgg.conv_names if m not in ("conv6", "conv7")]
    tv_convs = [k.removesuffix(".weight") for k in state if k.endswith(".weight") and k.startswith("features.")]
    assert len(named) == len(tv_convs) == 13
    for ours, theirs in zip(named, tv_convs, strict=True):
        assert torch.equal(getattr(model.vgg, ours).weight, state[f"{theirs}.weight"]), ours
        assert torch.equal(getattr(model.vgg, ours).bias, state[f"{theirs}.bias"]), ours
    assert torch.equal(model.vgg.conv6.weight, conv6)  # no trained conv6/conv7 in torchvision's VGG
    load_torchvision_vgg16(model, state, normalization="imagenet")
    assert model.normalization == "imagenet"


def test_torchvision_download_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"IMAGENET1K_FEATURES from https://.*Offline\? .*pass its path"):
        load_torchvision_vgg16(build_ssd("ssd300", 21))


def test_load_pretrained_recognises_formats(ssd300_file: tuple[Path, dict[str, Tensor]], tmp_path: Path) -> None:
    path, state = ssd300_file
    model = build_ssd("ssd300", 21)
    assert load_pretrained(model, path) == "ssd.pytorch"
    assert load_pretrained(build_ssd("ssd300", 21), {k[4:]: v for k, v in state.items() if k[:4] == "vgg."}) == (
        "vgg16_reducedfc"
    )
    # rssd's own state dict, bare or inside a training checkpoint, and saved from DistributedDataParallel
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "iteration": 3}, ckpt)
    other = build_ssd("ssd300", 21)
    assert load_pretrained(other, ckpt) == "rssd"
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k


def test_class_count_mismatch(ssd300_file: tuple[Path, dict[str, Tensor]]) -> None:
    path, state = ssd300_file
    model = build_ssd("ssd300", 2)
    with pytest.raises(WeightImportError) as err:
        load_ssd_pytorch(model, path)
    msg = str(err.value)
    for part in (str(path), "'conf.0.weight'", "(84, 512, 3, 3)", "(8, 512, 3, 3)", "21 classes", "skip_conf=True"):
        assert part in msg
    conf_before = model.conf.conv4_3.weight.detach().clone()
    load_ssd_pytorch(model, path, skip_conf=True)  # fine-tuning: everything but the class scores
    assert torch.equal(model.loc.conv4_3.weight, state["loc.0.weight"])
    assert torch.equal(model.extras.conv11_2.weight, state["extras.7.weight"])
    assert torch.equal(model.conf.conv4_3.weight, conf_before)


def test_wrong_architecture_errors(ssd300_file: tuple[Path, dict[str, Tensor]], tmp_path: Path) -> None:
    path, state = ssd300_file
    with pytest.raises(WeightImportError, match=rf"{path}: lacks key 'extras.8.weight' .*ssd512"):
        load_ssd_pytorch(build_ssd("ssd512", 21), path)
    extra = tmp_path / "ssd512_like.pth"
    torch.save({**state, "extras.8.weight": torch.zeros(1), "extras.8.bias": torch.zeros(1)}, extra)
    with pytest.raises(WeightImportError, match=r"key 'extras.8.weight' \(and 1 more\) has no place in rssd's ssd300"):
        load_ssd_pytorch(build_ssd("ssd300", 21), extra)
    narrow = SSD(dataclasses.replace(SSD_CONFIGS["ssd-cpu"], batch_norm=False), 21)
    with pytest.raises(WeightImportError, match=r"'vgg.0.weight' has shape \(64, 3, 3, 3\) .* \(16, 3, 3, 3\)"):
        load_ssd_pytorch(narrow, path)
    with pytest.raises(WeightImportError, match="has BatchNorm layers"):
        load_ssd_pytorch(build_ssd("ssd-cpu", 21), path)
    with pytest.raises(WeightImportError, match="unrecognised weight format"):
        load_pretrained(narrow, {"foo.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained(narrow, tmp_path / "missing.pth")


class _NotWeights:
    pass


def test_unsafe_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"model": _NotWeights()}, path)
    with pytest.raises(WeightImportError, match=rf"{path}: cannot be read as a weights-only state dict"):
        load_pretrained(build_ssd("ssd-cpu", 3), path)


def test_prior_spec_of_custom_config() -> None:
    """A config may carry its own PriorSpec (research layouts) instead of a registered name."""
    spec = PriorSpec(300, (38, 19, 10, 5, 3, 1), (8, 16, 32, 64, 100, 300), (21, 45, 99, 153, 207, 261),
                     (45, 99, 153, 207, 261, 315), ((2, 3),) * 6)  # fmt: skip
    model = SSD(dataclasses.replace(SSD_CONFIGS["ssd-cpu"], name="custom", priors=spec), 3)
    assert model.priors.shape[0] == spec.num_priors == sum(f * f * 6 for f in spec.feature_maps)


def test_model_summary_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from rssd.cli import main

    assert main(["model-summary", "--model", "ssd300"]) == 0
    out = capsys.readouterr().out
    assert "parameters 26,285,486; forward 31.37 GMAC per image" in out
    assert "conv4_3   38x38      512          4    5776" in out and out.rstrip().endswith("8732")


def test_channels_last_gives_the_same_outputs() -> None:
    """channels_last (NHWC) is faster for ssd-cpu training on CPU (bench_model.py); the flattening must not depend
    on it."""
    model = build_ssd("ssd-cpu", 3).eval()
    x = torch.randn(2, 3, 300, 300)
    with torch.no_grad():
        loc, conf = model(x)
        model.to(memory_format=torch.channels_last)
        loc_cl, conf_cl = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(loc_cl, loc, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conf_cl, conf, rtol=1e-4, atol=1e-4)
