"""What every rssd dataset shares: image loading with clear errors, box fix-ups, the target dict and ``collate``.

A dataset item is ``(image, target)`` (DEVELOPERS.md, "Data"):

* ``image``: ``tv_tensors.Image`` uint8 ``(3, H, W)`` RGB (before transforms).
* ``target``: ``{"boxes": tv_tensors.BoundingBoxes (G, 4) XYXY float32 pixels, "labels": (G,) int64 in 1..C-1,
  "difficult": (G,) bool, "image_id": str, "orig_size": (H, W)}``.

Box fix-ups (documented, each with a :class:`DataWarning` naming the file): a box reaching outside the image is
clipped to it; a box with no area (``x2 <= x1`` or ``y2 <= y1``, after clipping) is dropped.

Importing this module sets OpenCV to a single thread (``cv2.setNumThreads(1)``): rssd's parallelism is DataLoader
workers and processes, and OpenCV's thread pool is not fork-safe (a forked worker could deadlock in it).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

cv2.setNumThreads(1)  # before any OpenCV call starts its thread pool (module docstring)

__all__ = [
    "DataWarning",
    "ImageReadError",
    "IMAGE_SUFFIXES",
    "load_image",
    "fix_boxes",
    "make_target",
    "collate",
    "make_loader",
    "Target",
]

#: A dataset item's target: see the module docstring.
Target = dict[str, Any]


class DataWarning(UserWarning):
    """A documented fix-up of bad input (clipped or dropped box, size mismatch...); the message names the file."""


#: File suffixes rssd treats as images (lower case; compare ``path.suffix.lower()``): what :func:`load_image` reads.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file that exists but cannot be decoded; the message names the file."""


def load_image(path: str | os.PathLike) -> tv_tensors.Image:
    """Read an image file as ``tv_tensors.Image`` uint8 ``(3, H, W)`` RGB (grey and RGBA are converted).

    JPEG and PNG are decoded by OpenCV (fast); anything OpenCV cannot read, and JPEGs without their end marker
    (cut short: OpenCV would return a partly grey image with only a console warning), go through PIL, whose error
    is reported.

    Raises:
        FileNotFoundError: no such file (the message names it).
        ImageReadError: the file is empty, truncated or not an image (the message names it).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, not an image") from None
    if not data:
        raise ImageReadError(f"{path}: image file is empty")
    array = None
    is_jpeg = data[:2] == b"\xff\xd8"
    if not is_jpeg or data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9":
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            array = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if array is None:
        array = _decode_with_pil(path, data)
    return tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1).contiguous())


def _decode_with_pil(path: Path, data: bytes) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB through PIL; ImageReadError naming the file when PIL cannot decode it either."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).copy()
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (unknown format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: cannot decode image ({e})") from None


def fix_boxes(boxes_xyxy: np.ndarray, width: int, height: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image and find the ones with no area, warning about each fix.

    Args:
        boxes_xyxy: ``(G, 4)`` pixel corners (rssd's continuous convention, 0..W, 0..H).
        width, height: image size in pixels; when either is 0 (unknown) nothing is clipped.
        where: text naming the source (a file) for the warnings.

    Returns:
        ``(clipped (G, 4) float64, keep (G,) bool)``: ``keep`` is False for the boxes to drop.
    """
    boxes = np.array(boxes_xyxy, dtype=np.float64, copy=True).reshape(-1, 4)
    if width > 0 and height > 0:
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        moved = np.flatnonzero((clipped != boxes).any(axis=1))
        if moved.size:
            warnings.warn(
                f"{where}: clipped {moved.size} box(es) reaching outside the {width}x{height} image: "
                + ", ".join(f"#{i} {boxes[i].round(1).tolist()}" for i in moved[:5]),
                DataWarning,
                stacklevel=3,
            )
        boxes = clipped
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    bad = np.flatnonzero(~keep)
    if bad.size:
        warnings.warn(
            f"{where}: dropped {bad.size} box(es) with no area (x2 <= x1 or y2 <= y1): "
            + ", ".join(f"#{i} {boxes[i].round(1).tolist()}" for i in bad[:5]),
            DataWarning,
            stacklevel=3,
        )
    return boxes, keep


def make_target(
    boxes_xyxy: np.ndarray | Tensor,
    labels: np.ndarray | Tensor | Sequence[int],
    difficult: np.ndarray | Tensor | Sequence[bool],
    image_id: str,
    size_hw: tuple[int, int],
) -> Target:
    """Build the target dict of a dataset item (shapes ``(G, 4)``, ``(G,)``, ``(G,)``; pixel XYXY boxes)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    boxes = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4))
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
        "difficult": torch.as_tensor(np.asarray(difficult, dtype=bool).reshape(-1)),
        "image_id": image_id,
        "orig_size": (h, w),
    }


def collate(batch: Sequence[tuple[Tensor, Target]]) -> tuple[Tensor, list[Target]]:
    """Stack images, keep targets as a list (images hold different numbers of boxes).

    Args:
        batch: ``N`` items ``(image (3, S, S), target)`` after a transform that gives every image the same size.

    Returns:
        ``(images (N, 3, S, S), [target] * N)``; the images are plain tensors.

    Raises:
        ValueError: images of different sizes (a transform that resizes is missing); the message names them.
    """
    if not batch:
        raise ValueError("collate: empty batch")
    images = [img.as_subclass(Tensor) if isinstance(img, Tensor) else torch.as_tensor(img) for img, _ in batch]
    shapes = {tuple(i.shape) for i in images}
    if len(shapes) > 1:
        ids = [t.get("image_id", "?") for _, t in batch]
        raise ValueError(
            f"collate: images of different shapes {sorted(shapes)} (ids {ids[:8]}); "
            "use a transform that resizes to the model size (rssd.data.transforms.SSDEvalTransform)"
        )
    return torch.stack(images), [t for _, t in batch]


def _worker_init(worker_id: int) -> None:
    """One torch thread per DataLoader worker (the workers are the parallelism); torch already seeds each worker.

    OpenCV is left alone here: reconfiguring its thread pool in a forked child can deadlock on a lock a pool thread
    of the parent held at fork time. This module sets OpenCV to one thread at import instead (see the top).
    """
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset,
    batch_size: int = 32,
    *,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over a dataset whose transform resizes (items of equal size), batching with :func:`collate`.

    Deterministic for a seed: the shuffling order and each worker's torch seed (so the random augmentation) come
    from a generator seeded with ``seed``; a given ``num_workers`` always gives the same batches.

    Returns:
        A DataLoader yielding ``(images (N, 3, S, S), [target] * N)``.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        worker_init_fn=_worker_init,
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )
