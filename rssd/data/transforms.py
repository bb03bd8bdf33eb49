"""SSD data augmentation on torchvision.transforms.v2 and tv_tensors, and input normalisation presets.

The training recipe of the SSD paper (section 2.2 and 3.6), in this order:

1. :class:`PhotometricDistort`: random brightness (additive, +-32 on 0-255), then contrast, saturation and hue
   in one of two orders (contrast first or last), each applied with probability 0.5. No channel shuffle
   (torchvision's ``RandomPhotometricDistort`` would permute channels: a colour change SSD's recipe does not make).
2. Expand (zoom out): ``v2.RandomZoomOut`` with ``p=0.5`` onto a canvas up to 4x as large per side, filled with the
   normalisation mean (so the filled area becomes 0 after normalisation).
3. The SSD random crop: ``v2.RandomIoUCrop``. It samples an option among *whole image* (encoded as 1.0), a
   minimum IoU of 0.1, 0.3, 0.5, 0.7 or 0.9, or *no constraint* (0.0); then up to ``trials`` crops with sides
   0.3-1 of the image's (each side separately) and aspect ratio ``w / h`` in 0.5-2, until one crop holds at least
   one box centre and at least one box whose centre is inside reaches the IoU (with the crop) asked for; boxes
   whose centre lies outside the crop are zeroed and then removed by ``v2.SanitizeBoundingBoxes``, which also
   filters ``labels`` and ``difficult``. (Same acceptance rule as the original Caffe SSD: *any* box meeting the
   bound accepts the crop.) Images without boxes skip this step: no crop could hold a box centre.
4. ``v2.RandomHorizontalFlip``; 5. ``v2.Resize`` to ``(size, size)``; 6. normalisation (:data:`NORMALIZATIONS`)
   and boxes divided by the image size, to ``[0, 1]``.

Both :class:`SSDTrainTransform` and :class:`SSDEvalTransform` are ``callable(image, target) -> (image, target)``
on dataset items (:mod:`rssd.data.common`): the output image is float ``(3, S, S)`` (uint8 when
``normalization=None``, handy for pictures) and ``target["boxes"]`` a plain float32 ``(G, 4)`` tensor in
``[0, 1]``; ``labels``, ``difficult``, ``image_id`` and ``orig_size`` pass through (labels and difficult filtered
with their boxes). Randomness comes from torch's global generator (seed it with ``torch.manual_seed``;
DataLoader workers get their own seeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2 import get_bounding_boxes, query_size

from rssd.data.common import Target

__all__ = [
    "Normalization",
    "NORMALIZATIONS",
    "PhotometricDistort",
    "SSD_CROP_OPTIONS",
    "SSDRandomIoUCrop",
    "SSDTrainTransform",
    "SSDEvalTransform",
    "normalize_boxes",
    "adjust_hue_fast",
]


@dataclass(frozen=True)
class Normalization:
    """How a model's weights expect their input.

    Attributes:
        name: preset name.
        mean, std: per channel, R, G, B, on a ``0..scale`` pixel range.
        scale: 255 when mean/std are given on 0-255 pixels, 1 when on 0-1.
        channels: the channel order of the model input, always ``"RGB"`` in rssd (ssd.pytorch's weights too).
    """

    channels: ClassVar[str] = "RGB"
    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float

    def _stats(self, device: torch.device) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(3, 1, 1)
        return mean, std

    @property
    def mean_rgb_uint8(self) -> tuple[int, int, int]:
        """The mean as an RGB 0-255 colour (the fill of expanded canvases)."""
        m = [v * 255.0 / self.scale for v in self.mean]
        return (round(m[0]), round(m[1]), round(m[2]))

    def __call__(self, image_rgb: Tensor) -> Tensor:
        """uint8 RGB ``(..., 3, H, W)`` (0-255) -> float32 model input ``(..., 3, H, W)``."""
        x = image_rgb.as_subclass(Tensor).to(torch.float32)
        if self.scale != 255.0:
            x = x * (self.scale / 255.0)
        mean, std = self._stats(x.device)
        x = x - mean
        if any(s != 1.0 for s in self.std):
            x = x / std
        return x

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of ``__call__`` (for pictures): float ``(..., 3, H, W)`` -> uint8 RGB."""
        mean, std = self._stats(x.device)
        y = x.as_subclass(Tensor) * std + mean
        return (y * (255.0 / self.scale)).round().clamp(0, 255).to(torch.uint8)


#: Input normalisation presets (a model's ``normalization`` names one; see :mod:`rssd.model`).
#:
#: * ``"caffe"`` (rssd's default): 0-255 pixels minus the per-colour mean B 104, G 117, R 123, no std, channels in
#:   **RGB** order. That is what ssd.pytorch's published weights (``vgg16_reducedfc.pth``, its SSD checkpoints) saw:
#:   it subtracts ``(104, 117, 123)`` from OpenCV's BGR image and then reverses the channels to RGB; torchvision's
#:   ``VGG16_Weights.IMAGENET1K_FEATURES`` documents the same (RGB, mean ``(0.48235, 0.45882, 0.40784) * 255``).
#:   (The original Caffe models took BGR.)
#: * ``"imagenet"``: torchvision's other weights: RGB on 0-1, ImageNet mean and std.
NORMALIZATIONS: dict[str, Normalization] = {
    "caffe": Normalization("caffe", (123.0, 117.0, 104.0), (1.0, 1.0, 1.0), 255.0),
    "imagenet": Normalization("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0),
}


def _get_normalization(normalization: str | Normalization | None) -> Normalization | None:
    if normalization is None or isinstance(normalization, Normalization):
        return normalization
    try:
        return NORMALIZATIONS[normalization]
    except KeyError:
        raise ValueError(f"unknown normalization {normalization!r}; choose from {sorted(NORMALIZATIONS)}") from None


class PhotometricDistort(v2.Transform):
    """SSD's photometric distortions on images only (boxes, labels pass through).

    With probability ``p`` each: brightness ``+ U(-brightness_delta, brightness_delta)`` (on 0-255), contrast
    ``x U(contrast)``, saturation ``x U(saturation)``, hue shift ``U(-hue_delta, hue_delta)`` (fraction of the
    colour circle: 18 degrees = 0.05). Contrast is applied first or last with equal chance, as in SSD. No channel
    shuffle. Works on uint8 (returns uint8) and float 0-1 images.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18.0 / 360.0,
        p: float = 0.5,
    ) -> None:
        super().__init__()
        self.brightness_delta = brightness_delta
        self.contrast = contrast
        self.saturation = saturation
        self.hue_delta = hue_delta
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        apply = (torch.rand(4) < self.p).tolist()  # brightness, contrast, saturation, hue
        u = torch.rand(5).tolist()
        return {
            "brightness": (2 * u[0] - 1) * self.brightness_delta if apply[0] else None,
            "contrast": self.contrast[0] + u[1] * (self.contrast[1] - self.contrast[0]) if apply[1] else None,
            "saturation": self.saturation[0] + u[2] * (self.saturation[1] - self.saturation[0]) if apply[2] else None,
            "hue": (2 * u[3] - 1) * self.hue_delta if apply[3] else None,
            "contrast_first": u[4] < 0.5,
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if all(params[k] is None for k in ("brightness", "contrast", "saturation", "hue")):
            return inpt
        is_uint8 = inpt.dtype == torch.uint8
        x = inpt.as_subclass(Tensor)
        x = x.to(torch.float32) / 255.0 if is_uint8 else x
        if params["brightness"] is not None:
            x = (x + params["brightness"] / 255.0).clamp_(0.0, 1.0)
        if params["contrast"] is not None and params["contrast_first"]:
            x = F.adjust_contrast(x, params["contrast"])
        if params["saturation"] is not None:
            x = F.adjust_saturation(x, params["saturation"])
        if params["hue"] is not None:
            x = adjust_hue_fast(x, params["hue"])
        if params["contrast"] is not None and not params["contrast_first"]:
            x = F.adjust_contrast(x, params["contrast"])
        if is_uint8:
            x = (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        return tv_tensors.wrap(x, like=inpt)


def adjust_hue_fast(image: Tensor, hue: float) -> Tensor:
    """Rotate hue by ``hue`` (fraction of the circle, -0.5..0.5) through OpenCV's 8-bit HSV: much faster than
    ``F.adjust_hue``, from which it differs by under 1/255 on average and at most about 10/255 on a pixel (8-bit
    quantisation of hue, saturation and value; small on photos, largest on saturated noise; the test checks these
    bounds).

    Args:
        image: float RGB ``(3, H, W)`` in ``[0, 1]``.

    Returns:
        float32 ``(3, H, W)`` in ``[0, 1]``.
    """
    import cv2
    import numpy as np

    rgb = (image * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV_FULL)  # H on 0..255 = full circle
    hsv[..., 0] += np.uint8(round(hue * 256) % 256)  # uint8 arithmetic wraps around the circle
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return torch.from_numpy(out).permute(2, 0, 1).to(torch.float32).div_(255.0)


#: RandomIoUCrop's sampler options for SSD: 0.0 = no IoU constraint, 0.1..0.9 = minimum IoU, 1.0 = whole image.
SSD_CROP_OPTIONS: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


class SSDRandomIoUCrop(v2.RandomIoUCrop):
    """``v2.RandomIoUCrop`` with the same sampling rule, its trials drawn in one vectorised step (not one by one).

    ``make_params`` draws an option; for a minimum-IoU option it draws ``trials`` candidate crops at once and
    takes the first that satisfies every condition, exactly as the sequential loop would, else draws a new option.
    The returned params also carry ``min_iou`` (the option used), which tests check the crop against.
    After ``max_rounds`` options without a valid crop (possible only when every option is out of reach, e.g. a
    single 0.9 option and tiny boxes) it keeps the whole image, where torchvision's would loop forever.
    """

    max_rounds: int = 100

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        orig_h, orig_w = query_size(flat_inputs)
        boxes = get_bounding_boxes(flat_inputs)
        xyxy = F.convert_bounding_box_format(
            boxes.as_subclass(Tensor), boxes.format, tv_tensors.BoundingBoxFormat.XYXY
        ).to(torch.float32)
        cx = 0.5 * (xyxy[:, 0] + xyxy[:, 2])  # (G,)
        cy = 0.5 * (xyxy[:, 1] + xyxy[:, 3])
        if xyxy.shape[0] == 0:
            return {}
        for _ in range(self.max_rounds):
            idx = int(torch.randint(low=0, high=len(self.options), size=(1,)))
            min_iou = self.options[idx]
            if min_iou >= 1.0:  # whole image
                return {}
            t = self.trials
            r = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(t, 2)
            new_w = (orig_w * r[:, 0]).to(torch.int64)  # int() truncation, as torchvision
            new_h = (orig_h * r[:, 1]).to(torch.int64)
            aspect = new_w / new_h.clamp(min=1)
            ok = (new_h > 0) & (aspect >= self.min_aspect_ratio) & (aspect <= self.max_aspect_ratio)
            u = torch.rand(t, 2)
            left = ((orig_w - new_w) * u[:, 0]).to(torch.int64)
            top = ((orig_h - new_h) * u[:, 1]).to(torch.int64)
            right, bottom = left + new_w, top + new_h
            ok &= (left != right) & (top != bottom)
            inside = (
                (left[:, None] < cx) & (cx < right[:, None]) & (top[:, None] < cy) & (cy < bottom[:, None])
            )  # (T, G)
            ok &= inside.any(dim=1)
            crops = torch.stack([left, top, right, bottom], dim=1).to(torch.float32)  # (T, 4)
            iou = box_iou(crops, xyxy)  # (T, G)
            best = torch.where(inside, iou, torch.full_like(iou, -1.0)).amax(dim=1)
            ok &= best >= min_iou
            hits = torch.nonzero(ok).flatten()
            if hits.numel():
                i = int(hits[0])
                return dict(
                    top=int(top[i]),
                    left=int(left[i]),
                    height=int(new_h[i]),
                    width=int(new_w[i]),
                    is_within_crop_area=inside[i],
                    min_iou=min_iou,
                )
        return {}


def _labels_and_difficult(inputs: Any) -> tuple[Tensor, ...]:
    """SanitizeBoundingBoxes' labels_getter: the tensors that must follow the boxes of an (image, target) pair."""
    target = inputs[1]
    return tuple(target[k] for k in ("labels", "difficult") if k in target)


def normalize_boxes(target: Target, size_hw: tuple[int, int]) -> Target:
    """Replace ``target["boxes"]`` (pixels) by a plain float32 ``(G, 4)`` tensor divided by ``(W, H, W, H)``."""
    h, w = size_hw
    boxes = target["boxes"].as_subclass(Tensor).to(torch.float32)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=boxes.device)
    out = dict(target)
    out["boxes"] = (boxes / scale).clamp_(0.0, 1.0).reshape(-1, 4)
    return out


class _Finish:
    """Resize to the model size, normalise the image, normalise the boxes."""

    def __init__(self, size: int, normalization: str | Normalization | None) -> None:
        self.size = int(size)
        self.normalization = _get_normalization(normalization)
        self.resize = v2.Resize((self.size, self.size), antialias=True)

    def __call__(self, image: Any, target: Target) -> tuple[Tensor, Target]:
        image, target = self.resize(image, target)
        target = normalize_boxes(target, (self.size, self.size))
        if self.normalization is None:
            return image.as_subclass(Tensor), target
        return self.normalization(image), target


class SSDTrainTransform:
    """The SSD training augmentation (module docstring); ``callable(image, target) -> (image, target)``.

    Args:
        size: side of the square model input.
        normalization: a :data:`NORMALIZATIONS` key, a :class:`Normalization`, or ``None`` for uint8 RGB output.
        photometric, expand, crop, flip: switch the steps on or off.
        max_expand: largest zoom-out factor (SSD: 4).
        crop_options: :data:`SSD_CROP_OPTIONS` by default.
        min_box_size: boxes narrower or shorter than this many pixels after the crop are dropped (>= 1).
    """

    def __init__(
        self,
        size: int = 300,
        normalization: str | Normalization | None = "caffe",
        *,
        photometric: bool = True,
        expand: bool = True,
        max_expand: float = 4.0,
        crop: bool = True,
        crop_options: tuple[float, ...] = SSD_CROP_OPTIONS,
        flip: bool = True,
        min_box_size: float = 1.0,
    ) -> None:
        self.finish = _Finish(size, normalization)
        fill_norm = self.finish.normalization or NORMALIZATIONS["caffe"]
        fill = {tv_tensors.Image: list(fill_norm.mean_rgb_uint8), "others": 0}
        self.photometric = PhotometricDistort() if photometric else None
        self.expand = v2.RandomZoomOut(fill=fill, side_range=(1.0, max_expand), p=0.5) if expand else None
        self.crop = (
            SSDRandomIoUCrop(
                min_scale=0.3,
                max_scale=1.0,
                min_aspect_ratio=0.5,
                max_aspect_ratio=2.0,
                sampler_options=list(crop_options),
                trials=50,
            )
            if crop
            else None
        )
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=min_box_size, labels_getter=_labels_and_difficult)
        self.flip = v2.RandomHorizontalFlip(0.5) if flip else None

    @property
    def size(self) -> int:
        return self.finish.size

    def __call__(self, image: Any, target: Target) -> tuple[Tensor, Target]:
        if self.photometric is not None:
            image = self.photometric(image)
        if self.expand is not None:
            image, target = self.expand(image, target)
        if self.crop is not None and target["boxes"].shape[0] > 0:
            image, target = self.crop(image, target)
        image, target = self.sanitize(image, target)
        if self.flip is not None:
            image, target = self.flip(image, target)
        return self.finish(image, target)


class SSDEvalTransform:
    """Evaluation: resize to ``(size, size)`` and normalise; every box (difficult ones too) is kept.

    Boxes come out normalised to ``[0, 1]``; ``target["orig_size"]`` lets detections go back to pixels.
    """

    def __init__(self, size: int = 300, normalization: str | Normalization | None = "caffe") -> None:
        self.finish = _Finish(size, normalization)

    @property
    def size(self) -> int:
        return self.finish.size

    def __call__(self, image: Any, target: Target) -> tuple[Tensor, Target]:
        return self.finish(image, target)
