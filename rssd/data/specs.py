"""Naming a dataset in one string, for ``--data`` on the command line and for notebooks.

=================================  ===========================================================================
spec                               dataset
=================================  ===========================================================================
``voc:ROOT[:YEARS[:SPLIT]]``       PASCAL VOC under the VOCdevkit folder ``ROOT``; ``YEARS`` ``2007``, ``2012``
                                   or ``07+12`` (default: ``07+12``, or ``2007`` for the test split, since
                                   VOC2012 test has no public annotations); ``SPLIT`` overrides ``split``.
``vocfmt:PATH[:SPLIT]``            any VOC-layout folder (``Annotations/``, ``ImageSets/Main/``,
                                   ``JPEGImages/``) with its own classes (``classes.txt`` or the names found).
``coco:ANN.json:IMAGES/``          a COCO-format json and its image folder (``split`` is not used).
``synth``                          synthetic crowd scenes drawn on the fly (:class:`SyntheticCrowds`).
``synth:DIR``                      the VOC-layout folder ``rssd synth`` wrote to ``DIR`` (written there first,
                                   with the default settings, when ``DIR`` does not exist).
=================================  ===========================================================================

``~`` in paths is expanded. :func:`default_data_spec` picks VOC when it is found and ``synth`` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from rssd.data.common import Target

__all__ = ["make_dataset", "parse_spec", "default_data_spec"]

#: Number of images of ``synth`` (all splits) unless ``num_images`` is given.
DEFAULT_SYNTH_IMAGES = 2000


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``"kind:a:b"`` into ``("kind", ["a", "b"])``, checking the kind and the number of fields."""
    kind, _, rest = spec.partition(":")
    fields = rest.split(":") if rest else []
    expected = {"voc": (1, 3), "vocfmt": (1, 2), "coco": (2, 2), "synth": (0, 1)}
    if kind not in expected:
        raise ValueError(f"unknown dataset spec {spec!r}: expected one of voc:, vocfmt:, coco:, synth (see --help)")
    lo, hi = expected[kind]
    if not lo <= len(fields) <= hi or any(not f for f in fields):
        forms = {
            "voc": "voc:ROOT[:07+12[:SPLIT]]",
            "vocfmt": "vocfmt:PATH[:SPLIT]",
            "coco": "coco:ANN.json:IMAGES/",
            "synth": "synth or synth:DIR",
        }
        raise ValueError(f"bad dataset spec {spec!r}: expected {forms[kind]}")
    return kind, fields


def make_dataset(
    spec: str,
    split: str = "trainval",
    transform: Callable[[Any, Target], tuple[Any, Target]] | None = None,
    *,
    keep_difficult: bool = False,
    num_images: int | None = None,
    seed: int = 0,
    size: int = 300,
    progress: bool = False,
    **kwargs: Any,
) -> Dataset:
    """Build the dataset a spec names (module docstring).

    Args:
        spec: e.g. ``"voc:~/data/VOCdevkit:07+12"``, ``"vocfmt:my_data"``, ``"coco:ann.json:images/"``, ``"synth"``.
        split: image set (``trainval``, ``test``...); a split inside the spec wins.
        transform: ``callable(image, target) -> (image, target)``, e.g. ``SSDTrainTransform()``.
        keep_difficult: keep difficult (VOC) / crowd (COCO) objects, flagged in ``target["difficult"]``.
        num_images, seed, size: for ``synth`` (the whole set's size, the scene seed, the image side).
        kwargs: passed to the dataset class (e.g. ``classes=("person",)`` for VOC-layout data).

    Returns:
        A :class:`~rssd.data.voc.VOCDataset`, :class:`~rssd.data.coco.COCODataset` or
        :class:`~rssd.data.synthetic.SyntheticCrowds`; each has ``classes`` and ``num_classes``.
    """
    kind, fields = parse_spec(spec)
    if kind == "voc":
        from rssd.data.voc import VOCDataset

        root = Path(fields[0]).expanduser()
        if len(fields) >= 3:
            split = fields[2]
        years = fields[1] if len(fields) >= 2 else ("2007" if split == "test" else "07+12")
        return VOCDataset(root, years, split, keep_difficult=keep_difficult, transform=transform, progress=progress,
                          **kwargs)  # fmt: skip
    if kind == "vocfmt":
        from rssd.data.voc import VOCDataset

        if len(fields) == 2:
            split = fields[1]
        return VOCDataset(Path(fields[0]).expanduser(), split=split, keep_difficult=keep_difficult,
                          transform=transform, progress=progress, **kwargs)  # fmt: skip
    if kind == "coco":
        from rssd.data.coco import COCODataset

        return COCODataset(fields[0], fields[1], keep_crowd=keep_difficult, transform=transform, **kwargs)
    # synth
    from rssd.data.synthetic import SynthConfig, SyntheticCrowds, write_synthetic_voc

    n = DEFAULT_SYNTH_IMAGES if num_images is None else int(num_images)
    config = SynthConfig(size=size)
    if not fields:
        return SyntheticCrowds(n, seed, split, config=config, keep_difficult=keep_difficult, transform=transform,
                               **kwargs)  # fmt: skip
    from rssd.data.voc import VOCDataset

    out = Path(fields[0]).expanduser()
    if not (out / "Annotations").is_dir():
        print(f"rssd: writing {n} synthetic scenes (seed {seed}, {size}px) to {out}")
        write_synthetic_voc(out, n, seed, config=config, progress=progress)
    return VOCDataset(out, split=split, keep_difficult=keep_difficult, transform=transform, progress=progress,
                      **kwargs)  # fmt: skip


def default_data_spec(split: str = "trainval") -> str:
    """``voc:...`` when PASCAL VOC is found (``$RSSD_VOC_ROOT``, then ``~/data/VOCdevkit``), else ``synth``.

    VOC counts as found when the image set ``split`` of VOC2007 exists with its ``JPEGImages`` folder.
    """
    candidates = [os.environ.get("RSSD_VOC_ROOT"), "~/data/VOCdevkit"]
    for c in candidates:
        if not c:
            continue
        root = Path(c).expanduser()
        if (root / "VOC2007" / "ImageSets" / "Main" / f"{split}.txt").is_file() and (
            root / "VOC2007" / "JPEGImages"
        ).is_dir():
            years = "2007" if split == "test" or not (root / "VOC2012").is_dir() else "07+12"
            return f"voc:{root}:{years}"
    return "synth"
