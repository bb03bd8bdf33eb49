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
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import defusedxml
import defusedxml.ElementTree as DET
import numpy as np
from torch.utils.data import Dataset

from rssd.data.common import IMAGE_SUFFIXES, DataWarning, Target, fix_boxes, load_image, make_target

__all__ = [
    "VOC_CLASSES",
    "VOCFormatError",
    "VOCAnnotation",
    "read_voc_annotation",
    "read_image_set",
    "load_voc_annotations",
    "voc_to_pixel_xyxy",
    "pixel_xyxy_to_voc",
    "class_names_in",
    "read_class_file",
    "resolve_classes",
    "classes_of",
    "annotation_target",
    "VOCDataset",
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
        visible: ``(G,)`` float visible fraction of each object when every object carries a ``<visible>`` element
            (rssd's synthetic scenes do; VOC does not), else ``None``.
    """

    image_id: str
    width: int
    height: int
    boxes: np.ndarray
    names: tuple[str, ...]
    difficult: np.ndarray
    path: Path
    filename: str = field(default="")
    visible: np.ndarray | None = field(default=None)

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
    visible: list[float] = []
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
        vis = _text(obj.find("visible"))
        if vis is not None:
            try:
                visible.append(float(vis))
            except ValueError:
                raise VOCFormatError(f"{path}: object {i} <visible> is not a number: {vis!r}") from None

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
        visible=np.asarray(visible, dtype=np.float64) if names and len(visible) == len(names) else None,
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


def read_class_file(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from a text file, one per line (blank lines and ``#`` comments skipped)."""
    names = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    if len(set(names)) != len(names):
        raise VOCFormatError(f"{path}: duplicate class names")
    return tuple(names)


def resolve_classes(
    year_dirs: Sequence[Path], annotations: Sequence[VOCAnnotation], root: Path | None = None
) -> tuple[tuple[str, ...], str]:
    """The classes of a VOC-layout dataset when none are given, and where they came from.

    In this order: a ``classes.txt`` (one name per line) in the first year folder or in ``root``; for ``VOC20xx``
    folders, the 20 :data:`VOC_CLASSES` (in the devkit's order) unless *no* name in the annotations is a VOC class;
    else the sorted names found in ``annotations``. So a custom dataset laid out as ``VOCdevkit/VOC2007/...`` (cells
    named ``RBC``, ``WBC``) keeps its own classes, while a VOC folder with a misspelt name still stops with an
    error that names the file.

    Returns:
        ``(classes, source)``, ``source`` naming the file, ``"PASCAL VOC"`` or ``"the annotations"``.
    """
    for folder in [*year_dirs[:1], *([root] if root is not None else [])]:
        if (folder / "classes.txt").is_file():
            return read_class_file(folder / "classes.txt"), str(folder / "classes.txt")
    found = class_names_in(annotations)
    if all(d.name.startswith("VOC20") for d in year_dirs) and (not found or set(found) & set(VOC_CLASSES)):
        return VOC_CLASSES, "PASCAL VOC"
    return found, "the annotations"


def classes_of(
    voc_root: str | os.PathLike, year: str | int, annotations: Sequence[VOCAnnotation]
) -> tuple[str, ...]:
    """The classes of the VOC-layout data that :func:`load_voc_annotations` read (:func:`resolve_classes`)."""
    root = Path(voc_root).expanduser()
    year_dirs = [root] if (root / "Annotations").is_dir() else _year_dirs(root, year)
    return resolve_classes(year_dirs, annotations, root)[0]


def annotation_target(
    ann: VOCAnnotation, classes: Sequence[str] = VOC_CLASSES, keep_difficult: bool = False
) -> dict[str, Any]:
    """The target the loss takes (DEVELOPERS.md) for one annotation: boxes normalised to ``[0, 1]``, labels ``1..C-1``.

    ``boxes`` ``(G, 4)`` float32 ``xyxy`` (VOC's 1-based ``(xmin, ymin, xmax, ymax)`` becomes ``(xmin - 1, ymin - 1,
    xmax, ymax)``, divided by ``(W, H, W, H)``), ``labels`` ``(G,)`` int64 (``classes[i]`` has label ``i + 1``);
    difficult objects are left out unless ``keep_difficult``, as are objects of classes not in ``classes``.
    """
    import torch

    index = {name: i + 1 for i, name in enumerate(classes)}
    keep = np.array([n in index and (keep_difficult or not d) for n, d in zip(ann.names, ann.difficult, strict=True)],
                    dtype=bool).reshape(-1)  # fmt: skip
    if not (ann.width and ann.height):
        raise VOCFormatError(f"{ann.path}: no image size in the XML; read the item through VOCDataset instead")
    scale = np.array([ann.width, ann.height, ann.width, ann.height], dtype=np.float64)
    boxes = voc_to_pixel_xyxy(ann.boxes.reshape(-1, 4)[keep]) / scale  # (G, 4)
    labels = [index[n] for n, k in zip(ann.names, keep, strict=True) if k]
    return {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.as_tensor(labels, dtype=torch.int64),
    }


def _read_annotations(
    root: Path, year_dirs: list[Path], split: str, progress: bool
) -> list[tuple[Path, VOCAnnotation]]:
    """``(year folder, annotation)`` of every image of ``split`` (``"all"``: every ``Annotations/*.xml``)."""
    for year_dir in year_dirs:
        if not (year_dir / "Annotations").is_dir():
            raise FileNotFoundError(f"{year_dir / 'Annotations'}: not found (is {root} a VOC-layout folder?)")
    entries: list[tuple[Path, Path]] = []  # (year_dir, xml path)
    for year_dir in year_dirs:
        if split == "all":
            ids = sorted(p.stem for p in (year_dir / "Annotations").glob("*.xml"))
        else:
            ids = read_image_set(year_dir, split)
        entries.extend((year_dir, year_dir / "Annotations" / f"{i}.xml") for i in ids)
    items: Iterable[tuple[Path, Path]] = entries
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(entries, desc=f"annotations {split}", unit="file")
    return [(yd, read_voc_annotation(p)) for yd, p in items]


def _pixel_target(
    ann: VOCAnnotation, index: dict[str, int], keep_difficult: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes (K, 4) rssd pixels, labels (K,) int64, difficult (K,) bool)`` of the objects a dataset keeps: those
    of a class in ``index`` (name -> label), not difficult unless ``keep_difficult``, with a box left after
    :func:`~rssd.data.common.fix_boxes`."""
    boxes, keep = fix_boxes(voc_to_pixel_xyxy(ann.boxes), ann.width, ann.height, str(ann.path))
    keep &= np.array([n in index for n in ann.names], dtype=bool)
    if not keep_difficult:
        keep &= ~ann.difficult
    labels = np.array([index[n] for n, k in zip(ann.names, keep, strict=True) if k], dtype=np.int64)
    return boxes[keep], labels, ann.difficult[keep]


def _find_image(year_dir: Path, ann: VOCAnnotation) -> Path | None:
    """``JPEGImages/<filename>`` when it exists, else ``JPEGImages/<image_id>`` + a known suffix."""
    images = year_dir / "JPEGImages"
    if ann.filename and Path(ann.filename).name == ann.filename and (images / ann.filename).is_file():
        return images / ann.filename
    for suffix in (s for lower in IMAGE_SUFFIXES for s in (lower, lower.upper())):  # case-sensitive file systems
        candidate = images / f"{ann.image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


class VOCDataset(Dataset):
    """A VOC-layout detection dataset: PASCAL VOC 2007/2012/07+12, or any folder in VOC layout with its own classes.

    Items are ``(image, target)`` as described in :mod:`rssd.data.common` (pixel XYXY boxes in rssd's convention,
    labels ``1..C-1``, difficult flags, ``image_id``, ``orig_size``); ``transform(image, target)`` is applied when
    given (see :mod:`rssd.data.transforms`: boxes then come out normalised to ``[0, 1]``).

    Everything that can be checked without decoding images is checked at construction (a few seconds for 16k
    files): unreadable XML and unknown class names raise an error naming the file; boxes outside the image are
    clipped and boxes with no area dropped, each with a :class:`~rssd.data.common.DataWarning`; a missing image
    raises ``FileNotFoundError`` naming it. Images with no objects (or only difficult ones when
    ``keep_difficult=False``) are kept with empty targets (SSD learns background from them); pass
    ``skip_empty=True`` to leave them out.

    Args:
        root: a ``VOCdevkit`` folder (with ``VOC2007/`` ...) or a single folder holding ``Annotations/``,
            ``ImageSets/Main/`` and ``JPEGImages/`` (e.g. what ``rssd synth`` writes).
        year: ``"2007"``, ``"2012"``, ``"07+12"`` or a sub-folder name; ignored when ``root`` is a single folder.
        split: image set (``ImageSets/Main/<split>.txt``), or ``"all"`` for every ``Annotations/*.xml``.
        classes: object class names (label ``i + 1`` is ``classes[i]``). ``None``: :func:`resolve_classes`
            (``classes.txt`` of the folder when present, else the 20 VOC classes when every name is a VOC class,
            else the sorted names found in the annotations). When given explicitly, objects of other classes are
            left out (e.g. ``("person",)``).
        keep_difficult: keep objects flagged difficult (their ``difficult`` flag is True in the target).
        transform: ``callable(image, target) -> (image, target)``.
        check_images: verify at construction that every image file exists.
        skip_empty: leave out images without any (kept) object.
        progress: tqdm bar while reading annotations.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        year: str | int = "2007",
        split: str = "trainval",
        *,
        classes: Sequence[str] | None = None,
        keep_difficult: bool = False,
        transform: Callable[[Any, Target], tuple[Any, Target]] | None = None,
        check_images: bool = True,
        skip_empty: bool = False,
        progress: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        single = (self.root / "Annotations").is_dir()
        self.year_dirs = [self.root] if single else _year_dirs(self.root, year)
        self.split = split
        self.keep_difficult = keep_difficult
        self.transform = transform
        anns = _read_annotations(self.root, self.year_dirs, split, progress)

        explicit = classes is not None
        source = "the classes given"
        if classes is None:
            classes, source = resolve_classes(self.year_dirs, [a for _, a in anns], self.root)
        self.classes: tuple[str, ...] = tuple(classes)
        #: where ``classes`` came from: a ``classes.txt`` path, ``"PASCAL VOC"``, ``"the annotations"`` or given.
        self.classes_source = source
        index = {name: i + 1 for i, name in enumerate(self.classes)}

        self.annotations: list[VOCAnnotation] = []
        self.image_paths: list[Path] = []
        self._targets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # boxes px, labels, difficult
        missing: list[Path] = []
        for year_dir, ann in anns:
            if not explicit:
                self._check_names(ann, index)
            target = _pixel_target(ann, index, keep_difficult)
            if skip_empty and target[1].size == 0:
                continue
            image_path = _find_image(year_dir, ann)
            if image_path is None:
                image_path = year_dir / "JPEGImages" / f"{ann.image_id}.jpg"
                missing.append(image_path)
            self.annotations.append(ann)
            self.image_paths.append(image_path)
            self._targets.append(target)
        if check_images and missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise FileNotFoundError(
                f"{len(missing)} image(s) listed in {split!r} not found: "
                + ", ".join(str(p) for p in missing[:3])
                + more
                + " (check_images=False defers the error to the first read)"
            )

    def _check_names(self, ann: VOCAnnotation, index: dict[str, int]) -> None:
        """Stop on a class name outside the resolved classes, saying how to fix it (classes were not given)."""
        unknown = sorted({n for n in ann.names if n not in index})
        if unknown:
            source = self.classes_source
            fix = (
                f"add them to {source}" if source.endswith("classes.txt")
                else f"write every class name, one per line, to {self.year_dirs[0] / 'classes.txt'}"
            )  # fmt: skip
            raise VOCFormatError(
                f"{ann.path}: unknown class name(s) {unknown}; known (from {source}): {list(self.classes)}. "
                f"To fix: {fix}, or pass classes=(...) to keep only some"
            )

    @property
    def num_classes(self) -> int:
        """Number of model classes including background: ``len(classes) + 1``."""
        return len(self.classes) + 1

    @property
    def image_ids(self) -> list[str]:
        return [a.image_id for a in self.annotations]

    def __len__(self) -> int:
        return len(self.annotations)

    def target(self, index: int) -> Target:
        """The target of item ``index`` without reading the image (sizes from the XML)."""
        ann = self.annotations[index]
        boxes, labels, difficult = self._targets[index]
        return make_target(boxes, labels, difficult, ann.image_id, (ann.height, ann.width))

    def __getitem__(self, index: int) -> tuple[Any, Target]:
        ann = self.annotations[index]
        image = load_image(self.image_paths[index])
        h, w = image.shape[-2:]
        boxes, labels, difficult = self._targets[index]
        if (ann.width, ann.height) != (w, h):
            if ann.width and ann.height:
                warnings.warn(
                    f"{ann.path}: <size> says {ann.width}x{ann.height} but {self.image_paths[index].name} is "
                    f"{w}x{h}; using the image size",
                    DataWarning,
                    stacklevel=2,
                )
            boxes, keep = fix_boxes(boxes, w, h, str(ann.path))
            boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        target = make_target(boxes, labels, difficult, ann.image_id, (h, w))
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"VOCDataset(root={str(self.root)!r}, split={self.split!r}, images={len(self)}, "
            f"classes={len(self.classes)}, keep_difficult={self.keep_difficult})"
        )
