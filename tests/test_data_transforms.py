"""SSD augmentation: hand-computed normalisation and flips, the crop's IoU rule, property tests, collate, loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from rssd.data.common import collate, make_loader, make_target
from rssd.data.synthetic import SyntheticCrowds
from rssd.data.transforms import (
    NORMALIZATIONS,
    SSD_CROP_OPTIONS,
    Normalization,
    PhotometricDistort,
    SSDEvalTransform,
    SSDRandomIoUCrop,
    SSDTrainTransform,
    adjust_hue_fast,
)


def _item(h: int, w: int, boxes: list, labels: list | None = None, difficult: list | None = None) -> tuple:
    g = len(boxes)
    image = tv_tensors.Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
    labels = list(range(1, g + 1)) if labels is None else labels
    difficult = [False] * g if difficult is None else difficult
    return image, make_target(np.array(boxes, float).reshape(-1, 4), labels, difficult, "x", (h, w))


# ---------------------------------------------------------------------------------------------- normalisation


def test_caffe_normalization_hand_computed() -> None:
    norm = NORMALIZATIONS["caffe"]
    image = torch.tensor([[[123]], [[117]], [[104]]], dtype=torch.uint8)  # RGB = the mean
    torch.testing.assert_close(norm(image), torch.zeros(3, 1, 1))
    red = torch.tensor([[[255]], [[0]], [[0]]], dtype=torch.uint8)
    # RGB order (what ssd.pytorch's weights saw): (255, 0, 0) - (123, 117, 104)
    torch.testing.assert_close(norm(red), torch.tensor([[[132.0]], [[-117.0]], [[-104.0]]]))
    assert norm.mean_rgb_uint8 == (123, 117, 104) and norm.channels == "RGB"
    assert norm == Normalization("caffe", (123.0, 117.0, 104.0), (1.0, 1.0, 1.0), 255.0)


def test_imagenet_normalization_hand_computed() -> None:
    norm = NORMALIZATIONS["imagenet"]
    white = torch.full((3, 1, 1), 255, dtype=torch.uint8)
    expected = torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]).view(3, 1, 1)
    torch.testing.assert_close(norm(white), expected)
    assert norm.mean_rgb_uint8 == (124, 116, 104)


@pytest.mark.parametrize("name", sorted(NORMALIZATIONS))
def test_denormalize_round_trip(name: str) -> None:
    image = torch.randint(0, 256, (3, 8, 9), dtype=torch.uint8)
    norm = NORMALIZATIONS[name]
    assert torch.equal(norm.denormalize(norm(image)), image)


# ---------------------------------------------------------------------------------------------- flips and resize


def test_flip_hand_computed_and_twice_is_identity() -> None:
    image, target = _item(50, 100, [[10, 20, 30, 40], [0, 0, 100, 50]])
    flip = v2.RandomHorizontalFlip(p=1.0)
    im1, t1 = flip(image, target)
    torch.testing.assert_close(
        t1["boxes"].as_subclass(torch.Tensor), torch.tensor([[70.0, 20, 90, 40], [0, 0, 100, 50]])
    )
    assert torch.equal(im1[..., 0], image[..., -1])
    im2, t2 = flip(im1, t1)
    assert torch.equal(im2, image)
    torch.testing.assert_close(t2["boxes"], target["boxes"])
    assert torch.equal(t2["labels"], target["labels"])


def test_eval_transform_hand_computed() -> None:
    image, target = _item(50, 100, [[10, 5, 60, 25]], labels=[3], difficult=[True])
    out, t = SSDEvalTransform(size=40, normalization=None)(image, target)
    assert out.shape == (3, 40, 40) and out.dtype == torch.uint8 and type(out) is torch.Tensor
    torch.testing.assert_close(t["boxes"], torch.tensor([[0.1, 0.1, 0.6, 0.5]]))
    assert type(t["boxes"]) is torch.Tensor and t["labels"].tolist() == [3] and t["difficult"].tolist() == [True]
    assert t["orig_size"] == (50, 100) and t["image_id"] == "x"
    x, _ = SSDEvalTransform(size=40)(image, target)
    assert x.dtype == torch.float32


def test_unknown_normalization() -> None:
    with pytest.raises(ValueError, match="unknown normalization 'bgr'"):
        SSDEvalTransform(normalization="bgr")


# ---------------------------------------------------------------------------------------------- photometric


def test_photometric_brightness_hand_computed_and_boxes_untouched() -> None:
    t = PhotometricDistort()
    image = tv_tensors.Image(torch.tensor([[[100, 250]], [[0, 10]], [[50, 60]]], dtype=torch.uint8))
    params = {"brightness": 32.0, "contrast": None, "saturation": None, "hue": None, "contrast_first": True}
    out = t.transform(image, params)
    assert out.tolist() == [[[132, 255]], [[32, 42]], [[82, 92]]] and isinstance(out, tv_tensors.Image)
    img, target = _item(20, 30, [[1, 2, 10, 12]])
    torch.manual_seed(1)
    out_img, out_t = PhotometricDistort(p=1.0)(img, target)
    assert out_img.dtype == torch.uint8 and out_img.shape == img.shape and not torch.equal(out_img, img)
    assert torch.equal(out_t["boxes"], target["boxes"])
    same, _ = PhotometricDistort(p=0.0)(img, target)
    assert torch.equal(same, img)


def test_fast_hue_matches_torchvision() -> None:
    x = (torch.rand(3, 64, 64) * 255).round() / 255  # saturated noise: the worst case for 8-bit HSV
    for hue in (-0.05, 0.03, 0.25, -0.5):
        diff = (adjust_hue_fast(x, hue) - F.adjust_hue(x, hue)).abs() * 255
        assert diff.mean() < 1.0 and diff.max() < 12.0


# ---------------------------------------------------------------------------------------------- SSD crop


def test_crop_options_are_the_papers() -> None:
    crop = SSDTrainTransform().crop
    assert tuple(crop.options) == SSD_CROP_OPTIONS == (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    assert (crop.min_scale, crop.max_scale, crop.min_aspect_ratio, crop.max_aspect_ratio) == (0.3, 1.0, 0.5, 2.0)


box_strategy = st.tuples(st.floats(0.0, 0.8), st.floats(0.0, 0.8), st.floats(0.05, 0.6), st.floats(0.05, 0.6)).map(
    lambda t: (t[0], t[1], min(t[0] + t[2], 1.0), min(t[1] + t[3], 1.0))
)


@given(
    boxes=st.lists(box_strategy, min_size=1, max_size=6),
    min_iou=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9]),
    seed=st.integers(0, 2**16),
)
def test_crop_respects_iou_bound_and_keeps_centres(boxes: list, min_iou: float, seed: int) -> None:
    h, w = 120, 160
    px = torch.tensor(boxes) * torch.tensor([w, h, w, h])
    image, target = _item(h, w, px.tolist())
    crop = SSDRandomIoUCrop(sampler_options=[min_iou], trials=50)
    torch.manual_seed(seed)
    params = crop.make_params([image, target["boxes"]])
    if not params:  # a hard bound not met in max_rounds x trials draws: the whole image (see SSDRandomIoUCrop)
        assert min_iou > 0.0  # without a bound some crop always holds a box centre
        return
    left, top, cw, ch = params["left"], params["top"], params["width"], params["height"]
    assert 0.3 * w - 1 <= cw <= w and 0.3 * h - 1 <= ch <= h and 0.5 <= cw / ch <= 2.0
    assert 0 <= left <= w - cw and 0 <= top <= h - ch
    rect = torch.tensor([[left, top, left + cw, top + ch]], dtype=torch.float32)
    cx, cy = (px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2
    inside = (cx > left) & (cx < left + cw) & (cy > top) & (cy < top + ch)
    assert torch.equal(params["is_within_crop_area"], inside) and inside.any()
    assert box_iou(px[inside], rect).max() >= min_iou - 1e-6
    # applied: kept boxes are those with their centre inside, shifted and clipped; labels follow
    sanitize = v2.SanitizeBoundingBoxes(labels_getter=lambda s: (s[1]["labels"], s[1]["difficult"]))
    out_img, out_t = sanitize(*_apply(crop, image, target, params))
    assert out_img.shape[-2:] == (ch, cw)
    expected = px.clone()
    expected[:, 0::2] = (expected[:, 0::2] - left).clamp(0, cw)
    expected[:, 1::2] = (expected[:, 1::2] - top).clamp(0, ch)
    keep = inside & ((expected[:, 2] - expected[:, 0]) >= 1) & ((expected[:, 3] - expected[:, 1]) >= 1)
    torch.testing.assert_close(out_t["boxes"].as_subclass(torch.Tensor), expected[keep])
    assert out_t["labels"].tolist() == (torch.nonzero(keep).flatten() + 1).tolist()


def _apply(crop: SSDRandomIoUCrop, image: torch.Tensor, target: dict, params: dict) -> tuple:
    """Apply a crop with given params to an (image, target) pair, the way Transform.forward does."""
    out_t = dict(target)
    out_t["boxes"] = crop.transform(target["boxes"], params)
    return crop.transform(image, params), out_t


def test_whole_image_option_and_no_boxes() -> None:
    image, target = _item(40, 50, [[1, 1, 20, 20]])
    assert SSDRandomIoUCrop(sampler_options=[1.0]).make_params([image, target["boxes"]]) == {}
    empty_image, empty = _item(40, 50, [])
    assert SSDRandomIoUCrop().make_params([empty_image, empty["boxes"]]) == {}


# ---------------------------------------------------------------------------------------------- the whole recipe


@given(
    hw=st.tuples(st.integers(20, 200), st.integers(20, 200)),
    boxes=st.lists(box_strategy, min_size=0, max_size=8),
    seed=st.integers(0, 2**16),
    normalization=st.sampled_from(["caffe", "imagenet"]),
)
def test_train_transform_properties(hw: tuple, boxes: list, seed: int, normalization: str) -> None:
    h, w = hw
    px = (torch.tensor(boxes).reshape(-1, 4) * torch.tensor([w, h, w, h])).tolist()
    labels = list(range(1, len(px) + 1))
    difficult = [lab % 3 == 0 for lab in labels]
    image, target = _item(h, w, px, labels, difficult)
    torch.manual_seed(seed)
    out, t = SSDTrainTransform(size=64, normalization=normalization)(image, target)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and torch.isfinite(out).all()
    b = t["boxes"]
    assert type(b) is torch.Tensor and b.dtype == torch.float32 and b.shape == (len(t["labels"]), 4)
    assert ((b >= 0) & (b <= 1)).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    kept = t["labels"].tolist()
    assert len(set(kept)) == len(kept) and set(kept) <= set(labels)
    assert t["difficult"].tolist() == [lab % 3 == 0 for lab in kept]
    assert t["image_id"] == "x" and t["orig_size"] == (h, w)


@given(boxes=st.lists(box_strategy, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_labels_follow_their_boxes_through_flip_and_resize(boxes: list, seed: int) -> None:
    h, w = 60, 90
    px = torch.tensor(boxes) * torch.tensor([w, h, w, h])
    image, target = _item(h, w, px.tolist())
    torch.manual_seed(seed)
    tr = SSDTrainTransform(size=30, normalization=None, photometric=False, expand=False, crop=False)
    out, t = tr(image, target)
    norm = px / torch.tensor([w, h, w, h])
    flipped = torch.stack([1 - norm[:, 2], norm[:, 1], 1 - norm[:, 0], norm[:, 3]], dim=1)
    keep = ((px[:, 2] - px[:, 0]) >= 1) & ((px[:, 3] - px[:, 1]) >= 1)
    idx = t["labels"] - 1
    assert torch.equal(idx, torch.nonzero(keep).flatten())
    was_flipped = torch.allclose(t["boxes"], flipped[idx], atol=1e-5)
    assert was_flipped or torch.allclose(t["boxes"], norm[idx], atol=1e-5)


def test_expand_fills_with_the_mean() -> None:
    image, target = _item(20, 20, [[2, 2, 18, 18]])
    tr = SSDTrainTransform(size=20, photometric=False, crop=False, flip=False)
    tr.expand.p = 1.0
    torch.manual_seed(0)
    x, t = tr(image, target)
    # caffe-normalised mean colour is 0: the canvas around the (shrunk) image is exactly zero at the corners
    corners = torch.stack([x[:, 0, 0], x[:, 0, -1], x[:, -1, 0], x[:, -1, -1]])
    assert (corners.abs() <= 0.5).sum() >= 6  # at least two corners are pure fill
    assert (t["boxes"][:, 2] - t["boxes"][:, 0] < 0.8).all()  # the image shrank inside the canvas


def test_empty_target_goes_through() -> None:
    image, target = _item(30, 40, [])
    out, t = SSDTrainTransform(size=32)(image, target)
    assert out.shape == (3, 32, 32) and t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)


# ---------------------------------------------------------------------------------------------- collate / loader


def test_collate() -> None:
    a = (torch.zeros(3, 4, 4), {"boxes": torch.zeros(2, 4), "image_id": "a"})
    b = (tv_tensors.Image(torch.ones(3, 4, 4)), {"boxes": torch.zeros(0, 4), "image_id": "b"})
    images, targets = collate([a, b])
    assert images.shape == (2, 3, 4, 4) and type(images) is torch.Tensor
    assert [t["image_id"] for t in targets] == ["a", "b"]
    with pytest.raises(ValueError, match="different shapes"):
        collate([a, (torch.zeros(3, 5, 4), {"image_id": "c"})])
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_loader_with_workers_is_deterministic() -> None:
    ds = SyntheticCrowds(12, seed=0, split="all", config=None, transform=SSDTrainTransform(size=96))
    runs = []
    for _ in range(2):
        loader = make_loader(ds, batch_size=4, shuffle=True, num_workers=2, seed=3)
        runs.append([(images, [t["image_id"] for t in targets]) for images, targets in loader])
    assert len(runs[0]) == 3
    for (im_a, ids_a), (im_b, ids_b) in zip(*runs, strict=True):
        assert ids_a == ids_b and torch.equal(im_a, im_b) and im_a.shape == (4, 3, 96, 96)
    assert sorted(i for _, ids in runs[0] for i in ids) == [f"{i:06d}" for i in range(12)]
