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
        from pycocotools.coco import COCO

        self.annotation_file = Path(annotation_file).expanduser()
        self.image_dir = Path(image_dir).expanduser()
        self.transform = transform
        try:
            data = json.loads(self.annotation_file.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.annotation_file}: annotation file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise COCOFormatError(f"{self.annotation_file}: not valid JSON ({e})") from None
        if not isinstance(data, dict) or not {"images", "categories"} <= data.keys():
            raise COCOFormatError(f"{self.annotation_file}: expected a dict with 'images' and 'categories'")
        data.setdefault("annotations", [])
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            try:
                coco.createIndex()
            except (KeyError, TypeError) as e:
                raise COCOFormatError(f"{self.annotation_file}: malformed entry ({type(e).__name__}: {e})") from None
        self.coco = coco

        cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
        names_by_id = {c["id"]: c["name"] for c in cats}
        self.classes: tuple[str, ...] = tuple(classes) if classes is not None else tuple(c["name"] for c in cats)
        unknown = set(self.classes) - set(names_by_id.values())
        if unknown:
            raise COCOFormatError(f"{self.annotation_file}: no categories named {sorted(unknown)}")
        label_of_cat = {cid: self.classes.index(n) + 1 for cid, n in names_by_id.items() if n in self.classes}

        self.image_ids: list[int] = sorted(coco.getImgIds())
        self.image_paths: list[Path] = []
        self._targets: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]] = []
        missing = []
        for img_id in self.image_ids:
            info = coco.imgs[img_id]
            where = f"{self.annotation_file} (image id {img_id})"
            if "file_name" not in info:
                raise COCOFormatError(f"{where}: no file_name")
            w, h = int(info.get("width", 0)), int(info.get("height", 0))
            boxes, labels, crowd = [], [], []
            for a in coco.imgToAnns.get(img_id, []):
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
            b, keep = fix_boxes(np.asarray(boxes, np.float64).reshape(-1, 4), w, h, where)
            crowd_a = np.asarray(crowd, bool)
            if not keep_crowd:
                keep &= ~crowd_a
            path = self.image_dir / info["file_name"]
            if check_images and not path.is_file():
                missing.append(path)
            self.image_paths.append(path)
            self._targets.append((b[keep], np.asarray(labels, np.int64)[keep], crowd_a[keep], h, w))
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise FileNotFoundError(
                f"{len(missing)} image(s) of {self.annotation_file} not found: "
                + ", ".join(str(p) for p in missing[:3])
                + more
            )

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
