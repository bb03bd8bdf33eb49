"""PASCAL VOC: annotations (XML, parsed with defusedxml) and a torch Dataset over a VOCdevkit root.

Two layers:

* The annotation-only API, used by evaluation and statistics and needing no images:
  :class:`VOCAnnotation`, :func:`read_voc_annotation`, :func:`load_voc_annotations`. Boxes stay in VOC's original
  1-based inclusive pixel coordinates, exactly as written in the XML.
* :class:`VOCDataset`, which returns ``(image, target)`` pairs in rssd's pixel convention (see DEVELOPERS.md):
  VOC's ``(xmin, ymin, xmax, ymax)`` becomes the continuous box ``(xmin - 1, ymin - 1, xmax, ymax)``.

A VOCdevkit root looks like ``ROOT/VOC2007/{Annotations,ImageSets/Main,JPEGImages}``; any folder with that layout
(for example the output of ``rssd synth``) can be read, with its own class names.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as DET
import numpy as np

__all__ = [
    "VOC_CLASSES",
    "VOCFormatError",
    "VOCAnnotation",
    "read_voc_annotation",
    "read_image_set",
    "load_voc_annotations",
    "voc_to_pixel_xyxy",
    "pixel_xyxy_to_voc",
]

#: The 20 PASCAL VOC object classes, in the devkit's order. Label ``i + 1`` is ``VOC_CLASSES[i]`` (0: background).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


class VOCFormatError(ValueError):
    """An annotation file or image set that rssd cannot read; the message names the file and the problem."""


@dataclass(frozen=True)
class VOCAnnotation:
    """One image's annotation, as written in its VOC XML file.

    Attributes:
        image_id: the file stem, e.g. ``"003123"`` (the ``<filename>`` element is not trusted for this).
        width, height: image size from ``<size>``; 0 when the XML has no usable size (the dataset then reads it
            from the image).
        boxes: ``(G, 4)`` float64 ``(xmin, ymin, xmax, ymax)`` in VOC's 1-based inclusive pixel coordinates,
            unmodified (degenerate or out-of-image boxes are kept as written; the dataset fixes or drops
            them with a warning).
        names: ``G`` class names, stripped of surrounding whitespace.
        difficult: ``(G,)`` bool; a missing ``<difficult>`` element means not difficult.
        path: the XML file.
        filename: the ``<filename>`` element (``image_id + ".jpg"`` when absent).
    """

    image_id: str
    width: int
    height: int
    boxes: np.ndarray
    names: tuple[str, ...]
    difficult: np.ndarray
    path: Path
    filename: str = field(default="")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_objects(self) -> int:
        """Number of annotated objects ``G``."""
        return len(self.names)


def _text(elem: ET.Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    return elem.text.strip()


def _number(obj: ET.Element, tag: str, path: Path, index: int) -> float:
    text = _text(obj.find(tag))
    if text is None:
        raise VOCFormatError(f"{path}: object {index} has no <bndbox>/<{tag}>")
    try:
        value = float(text)
    except ValueError:
        raise VOCFormatError(f"{path}: object {index} <{tag}> is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise VOCFormatError(f"{path}: object {index} <{tag}> is not finite: {text!r}")
    return value


def _size(root: ET.Element, tag: str, path: Path) -> int:
    text = _text(root.find(f"size/{tag}"))
    if text is None:
        return 0
    try:
        value = int(float(text))
    except ValueError:
        raise VOCFormatError(f"{path}: <size>/<{tag}> is not a number: {text!r}") from None
    return max(value, 0)


def read_voc_annotation(xml_path: str | os.PathLike) -> VOCAnnotation:
    """Parse one VOC annotation file with defusedxml.

    Args:
        xml_path: path to ``Annotations/<image_id>.xml``.

    Returns:
        The :class:`VOCAnnotation`, boxes in VOC's original 1-based coordinates.

    Raises:
        FileNotFoundError: the file does not exist.
        VOCFormatError: malformed XML, a hostile construct (entity declarations such as "billion laughs",
            external entities, DTDs), a root other than ``<annotation>``, or an object without a name or a
            numeric ``<bndbox>``. The message names the file.
    """
    path = Path(xml_path)
    try:
        # forbid_dtd: VOC files never need a DTD; entities and external references are forbidden by default too.
        root = DET.parse(path, forbid_dtd=True).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation file not found") from None
    except defusedxml.DefusedXmlException as e:
        raise VOCFormatError(f"{path}: refused unsafe XML ({type(e).__name__}: {e})") from None
    except ET.ParseError as e:
        raise VOCFormatError(f"{path}: malformed XML ({e})") from None
    if root.tag != "annotation":
        raise VOCFormatError(f"{path}: root element is <{root.tag}>, expected <annotation>")

    boxes: list[tuple[float, float, float, float]] = []
    names: list[str] = []
    difficult: list[bool] = []
    for i, obj in enumerate(root.iter("object")):
        name = _text(obj.find("name"))
        if not name:
            raise VOCFormatError(f"{path}: object {i} has no <name>")
        if obj.find("bndbox") is None:
            raise VOCFormatError(f"{path}: object {i} ({name}) has no <bndbox>")
        box = tuple(_number(obj, f"bndbox/{t}", path, i) for t in ("xmin", "ymin", "xmax", "ymax"))
        diff = _text(obj.find("difficult"))
        names.append(name)
        boxes.append(box)  # type: ignore[arg-type]
        difficult.append(diff is not None and diff not in ("0", ""))

    image_id = path.stem
    return VOCAnnotation(
        image_id=image_id,
        width=_size(root, "width", path),
        height=_size(root, "height", path),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        names=tuple(names),
        difficult=np.asarray(difficult, dtype=bool).reshape(-1),
        path=path,
        filename=_text(root.find("filename")) or f"{image_id}.jpg",
    )


def _year_dirs(voc_root: Path, year: str | int) -> list[Path]:
    """``"2007"`` -> ``[ROOT/VOC2007]``; ``"07+12"`` or ``"2007+2012"`` -> both; a folder name is used as is."""
    out = []
    for part in str(year).split("+"):
        part = part.strip()
        if part.isdigit() and len(part) == 2:
            part = "20" + part
        out.append(voc_root / (f"VOC{part}" if part.isdigit() else part))
    return out


def read_image_set(year_dir: str | os.PathLike, split: str) -> list[str]:
    """Image ids listed in ``year_dir/ImageSets/Main/<split>.txt`` (blank lines skipped, order kept).

    Raises:
        FileNotFoundError: the list does not exist; the message names the splits that do.
    """
    year_dir = Path(year_dir)
    list_path = year_dir / "ImageSets" / "Main" / f"{split}.txt"
    if not list_path.is_file():
        main = year_dir / "ImageSets" / "Main"
        have = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if main.is_dir() else []
        raise FileNotFoundError(f"{list_path}: image set {split!r} not found (available: {have or 'none'})")
    ids = []
    for line in list_path.read_text().splitlines():
        parts = line.split()
        if parts:
            ids.append(parts[0])
    return ids


def load_voc_annotations(
    voc_root: str | os.PathLike, year: str | int = "2007", split: str = "test", *, progress: bool = False
) -> list[VOCAnnotation]:
    """Read every annotation of an image set.

    Args:
        voc_root: the ``VOCdevkit`` folder (holding ``VOC2007/``, ``VOC2012/``...). A path that is itself a
            ``VOCxxxx`` folder is accepted too.
        year: ``"2007"``, ``"2012"``, ``"07+12"`` (both, 2007 first) or any sub-folder name of ``voc_root``.
        split: image set name: ``"test"``, ``"trainval"``, ``"train"``, ``"val"``...
        progress: show a tqdm progress bar.

    Returns:
        One :class:`VOCAnnotation` per listed image, in list order (4952 for VOC2007 test).
    """
    voc_root = Path(voc_root).expanduser()
    year_dirs = [voc_root] if (voc_root / "Annotations").is_dir() else _year_dirs(voc_root, year)
    paths: list[Path] = []
    for year_dir in year_dirs:
        paths.extend(year_dir / "Annotations" / f"{i}.xml" for i in read_image_set(year_dir, split))
    items: Iterable[Path] = paths
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(paths, desc=f"annotations {split}", unit="file")
    return [read_voc_annotation(p) for p in items]


def voc_to_pixel_xyxy(boxes_voc: np.ndarray) -> np.ndarray:
    """VOC 1-based inclusive ``(xmin, ymin, xmax, ymax)`` -> rssd's continuous ``(xmin - 1, ymin - 1, xmax, ymax)``.

    Args:
        boxes_voc: ``(..., 4)``.

    Returns:
        ``(..., 4)`` float array (a new one).
    """
    out = np.array(boxes_voc, dtype=np.float64, copy=True)
    out[..., :2] -= 1.0
    return out


def pixel_xyxy_to_voc(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Inverse of :func:`voc_to_pixel_xyxy`: ``(x1 + 1, y1 + 1, x2, y2)`` for result files. ``(..., 4)``."""
    out = np.array(boxes_xyxy, dtype=np.float64, copy=True)
    out[..., :2] += 1.0
    return out


def class_names_in(annotations: Sequence[VOCAnnotation]) -> tuple[str, ...]:
    """The sorted set of class names used by ``annotations`` (for a custom VOC-layout dataset)."""
    return tuple(sorted({n for a in annotations for n in a.names}))
