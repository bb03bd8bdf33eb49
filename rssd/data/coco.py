"""COCO-format detection datasets (a json of images, annotations and categories) through pycocotools.

Items follow :mod:`rssd.data.common`. COCO boxes ``[x, y, w, h]`` are continuous pixel coordinates, so the rssd box
is ``(x, y, x + w, y + h)`` with no ±1. Categories are ordered by their id: label ``i + 1`` is ``classes[i]``.
``iscrowd`` annotations (a region of many objects) play the role of VOC's difficult flag: left out unless
``keep_crowd=True``, then flagged ``difficult``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from rssd.data.common import DataWarning, Target, fix_boxes, load_image, make_target

__all__ = ["COCOFormatError", "COCODataset"]


class COCOFormatError(ValueError):
    """A COCO json that rssd cannot use; the message names the file and the problem."""


class COCODataset(Dataset):
    """A detection dataset from a COCO-format json and an image folder.

    Args:
        annotation_file: the json (``images``, ``annotations``, ``categories``).
        image_dir: folder that ``images[*].file_name`` are relative to.
        classes: category names to keep (labels follow this order); ``None``: every category, by id.
        keep_crowd: keep ``iscrowd`` annotations, flagged difficult.
        transform: ``callable(image, target) -> (image, target)``.
        check_images: verify at construction that every image file exists.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        *,
        classes: Sequence[str] | None = None,
        keep_crowd: bool = False,
        transform: Callable[[Any, Target], tuple[Any, Target]] | None = None,
        check_images: bool = True,
    ) -> None:
        self.annotation_file = Path(annotation_file).expanduser()
        self.image_dir = Path(image_dir).expanduser()
        self.transform = transform
        self.coco = _read_coco(self.annotation_file)
        self.classes, label_of_cat = _classes_and_labels(self.coco, classes, self.annotation_file)
        self.image_ids: list[int] = sorted(self.coco.getImgIds())
        self.image_paths: list[Path] = []
        self._targets: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]] = []
        for img_id in self.image_ids:
            info = self.coco.imgs[img_id]
            where = f"{self.annotation_file} (image id {img_id})"
            if "file_name" not in info:
                raise COCOFormatError(f"{where}: no file_name")
            w, h = int(info.get("width", 0)), int(info.get("height", 0))
            boxes, labels, crowd = _image_annotations(self.coco.imgToAnns.get(img_id, []), label_of_cat, where)
            boxes, keep = fix_boxes(boxes, w, h, where)
            if not keep_crowd:
                keep &= ~crowd
            self.image_paths.append(self.image_dir / info["file_name"])
            self._targets.append((boxes[keep], labels[keep], crowd[keep], h, w))
        if check_images:
            _check_files(self.image_paths, self.annotation_file)

    @property
    def num_classes(self) -> int:
        return len(self.classes) + 1

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[Any, Target]:
        boxes, labels, difficult, h0, w0 = self._targets[index]
        path = self.image_paths[index]
        image = load_image(path)
        h, w = image.shape[-2:]
        if (h0, w0) != (h, w):
            if h0 and w0:
                warnings.warn(
                    f"{self.annotation_file}: {path.name} is {w}x{h}, the json says {w0}x{h0}; using the image size",
                    DataWarning,
                    stacklevel=2,
                )
            boxes, keep = fix_boxes(boxes, w, h, str(path))
            boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        target = make_target(boxes, labels, difficult, str(self.image_ids[index]), (h, w))
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"COCODataset({str(self.annotation_file)!r}, images={len(self)}, classes={len(self.classes)})"


def _read_coco(path: Path):
    """The json at ``path`` indexed by pycocotools (quietly), with errors that name the file."""
    from pycocotools.coco import COCO

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise COCOFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not {"images", "categories"} <= data.keys():
        raise COCOFormatError(f"{path}: expected a dict with 'images' and 'categories'")
    data.setdefault("annotations", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        try:
            coco.createIndex()
        except (KeyError, TypeError) as e:
            raise COCOFormatError(f"{path}: malformed entry ({type(e).__name__}: {e})") from None
    return coco


def _classes_and_labels(
    coco: Any, classes: Sequence[str] | None, path: Path
) -> tuple[tuple[str, ...], dict[int, int]]:
    """``(classes, label of each kept category id)``: ``classes`` (default: every category, by id) and label
    ``i + 1`` for ``classes[i]``."""
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    names_by_id = {c["id"]: c["name"] for c in cats}
    chosen = tuple(classes) if classes is not None else tuple(c["name"] for c in cats)
    unknown = set(chosen) - set(names_by_id.values())
    if unknown:
        raise COCOFormatError(f"{path}: no categories named {sorted(unknown)}")
    return chosen, {cid: chosen.index(n) + 1 for cid, n in names_by_id.items() if n in chosen}


def _image_annotations(
    annotations: list[dict[str, Any]], label_of_cat: dict[int, int], where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's annotations of the kept categories: boxes ``(G, 4)`` xyxy pixels, labels ``(G,)`` int64 and
    ``iscrowd`` flags ``(G,)`` bool."""
    boxes, labels, crowd = [], [], []
    for a in annotations:
        if a.get("category_id") not in label_of_cat:
            continue
        bbox = a.get("bbox")
        if not (isinstance(bbox, list | tuple) and len(bbox) == 4):
            raise COCOFormatError(f"{where}: annotation {a.get('id')} has no [x, y, w, h] bbox")
        x, y, bw, bh = (float(v) for v in bbox)
        if not np.isfinite([x, y, bw, bh]).all():
            raise COCOFormatError(f"{where}: annotation {a.get('id')} bbox is not finite: {bbox}")
        boxes.append((x, y, x + bw, y + bh))
        labels.append(label_of_cat[a["category_id"]])
        crowd.append(bool(a.get("iscrowd", 0)))
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64), np.asarray(crowd, bool)


def _check_files(paths: list[Path], annotation_file: Path) -> None:
    """Stop, naming a few, when image files of ``annotation_file`` are missing."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(
            f"{len(missing)} image(s) of {annotation_file} not found: " + ", ".join(str(p) for p in missing[:3]) + more
        )
