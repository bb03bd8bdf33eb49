"""Where the example data are: the PASCAL VOC photos shipped in ``data/samples``, and VOC from the environment.

The notebooks and tests look for VOC2007 test data in three places, in this order: ``$RSSD_VOC_ROOT`` (a
``VOCdevkit`` folder), ``$RSSD_TEST_DATA`` (the shared test data: ``voc2007-sample9/VOCdevkit`` with 9 photos and
``voc2007-test/VOCdevkit`` with the 4952 test annotations, no photos) and ``~/data/VOCdevkit``. The four photos of
``data/samples/VOCdevkit`` (with the 14-person dinner table ``003123.jpg``) are the fallback for pictures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SAMPLES_ROOT", "VOCLocations", "find_voc", "sample_files"]

#: ``data/samples/VOCdevkit`` of the source tree: four VOC2007 test photos and their annotations.
SAMPLES_ROOT = Path(__file__).resolve().parents[2] / "data" / "samples" / "VOCdevkit"

#: More test images than this in ``VOC2007/ImageSets/Main/test.txt``: the full test annotations (4952 images).
_FULL_TEST = 1000


@dataclass(frozen=True)
class VOCLocations:
    """What :func:`find_voc` found.

    Attributes:
        photos: a VOCdevkit folder whose VOC2007 test set has photos (``JPEGImages``); ``SAMPLES_ROOT`` at worst.
        annotations: a VOCdevkit folder with the full VOC2007 test annotations (more than 1000 images), or None.
    """

    photos: Path
    annotations: Path | None


def _candidates(env_vars: tuple[str, ...]) -> list[Path]:
    roots = []
    for var in env_vars:
        value = os.environ.get(var)
        if value:
            base = Path(value).expanduser()
            roots += [base, base / "voc2007-sample9" / "VOCdevkit", base / "voc2007-test" / "VOCdevkit"]
    return [*roots, Path("~/data/VOCdevkit").expanduser()]


def find_voc(env_vars: tuple[str, ...] = ("RSSD_VOC_ROOT", "RSSD_TEST_DATA")) -> VOCLocations:
    """The VOCdevkit folders with VOC2007 test photos and with the full test annotations (module docstring)."""
    photos = annotations = None
    for root in _candidates(env_vars):
        image_set = root / "VOC2007" / "ImageSets" / "Main" / "test.txt"
        if not image_set.is_file():
            continue
        if photos is None and (root / "VOC2007" / "JPEGImages").is_dir():
            photos = root
        if annotations is None and len(image_set.read_text().split()) > _FULL_TEST:
            annotations = root
    return VOCLocations(photos or SAMPLES_ROOT, annotations)


def sample_files(image_id: str = "003123") -> tuple[Path, Path]:
    """``(JPEG, XML)`` of a VOC2007 test image: from ``data/samples`` when it is there, else from :func:`find_voc`.

    Raises:
        FileNotFoundError: the image is in neither place (the message says where it looked).
    """
    places = [SAMPLES_ROOT, find_voc().photos]
    for root in places:
        jpg = root / "VOC2007" / "JPEGImages" / f"{image_id}.jpg"
        xml = root / "VOC2007" / "Annotations" / f"{image_id}.xml"
        if jpg.is_file() and xml.is_file():
            return jpg, xml
    raise FileNotFoundError(f"VOC2007 image {image_id}: not in {', '.join(str(p) for p in places)}")
