"""Default boxes ("priors") of SSD.

Each source feature map of size ``f x f`` places, at every cell centre, one square box of side ``min_size``, one
square of side ``sqrt(min_size * max_size)`` and, for each aspect ratio ``a``, a ``min_size*sqrt(a) x
min_size/sqrt(a)`` box and its transpose. The order of the rows is the one of ssd.pytorch's ``PriorBox``
(feature map, then row, then column, then box), so that its published weights line up with our priors::

    for each feature map k:              # 38, 19, 10, 5, 3, 1 for SSD300
        for i in range(f_k):             # row    -> cy
            for j in range(f_k):         # column -> cx
                small square, large square, (a, 1/a) for each a in aspect_ratios[k]

Like ssd.pytorch, ``clip=True`` clamps the ``(cx, cy, w, h)`` values themselves to ``[0, 1]``, not the corners.
In SSD300 this touches 134 priors: the sizes above 1 (the 1x1 map's ``264*sqrt(2)/300 = 1.24`` becomes 1) and
the centres of the 10x10 map's last row and column (step 32: ``9.5 * 32 / 300 = 1.013``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PriorSpec", "PRIOR_SPECS", "make_priors", "priors_per_cell"]


@dataclass(frozen=True)
class PriorSpec:
    """Geometry of the default boxes of one SSD variant (sizes in input pixels)."""

    image_size: int
    feature_maps: tuple[int, ...]
    steps: tuple[float, ...]
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    clip: bool = True

    def __post_init__(self) -> None:
        n = len(self.feature_maps)
        for name in ("steps", "min_sizes", "max_sizes", "aspect_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"PriorSpec.{name} has {len(getattr(self, name))} entries, expected {n}")

    @property
    def boxes_per_cell(self) -> tuple[int, ...]:
        """Number of priors at each cell of each source map: ``2 + 2 * len(aspect_ratios[k])``."""
        return tuple(priors_per_cell(ars) for ars in self.aspect_ratios)

    @property
    def num_priors(self) -> int:
        return sum(f * f * b for f, b in zip(self.feature_maps, self.boxes_per_cell, strict=True))


def priors_per_cell(aspect_ratios: tuple[float, ...]) -> int:
    """Boxes per cell for a list of extra aspect ratios (each adds the ratio and its inverse)."""
    return 2 + 2 * len(aspect_ratios)


#: The named prior layouts. SSD300 and SSD512 follow the paper / Caffe SSD (and ssd.pytorch for SSD300).
PRIOR_SPECS: dict[str, PriorSpec] = {
    "ssd300": PriorSpec(
        image_size=300,
        feature_maps=(38, 19, 10, 5, 3, 1),
        steps=(8, 16, 32, 64, 100, 300),
        min_sizes=(30, 60, 111, 162, 213, 264),
        max_sizes=(60, 111, 162, 213, 264, 315),
        aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    ),
    "ssd512": PriorSpec(
        image_size=512,
        feature_maps=(64, 32, 16, 8, 4, 2, 1),
        steps=(8, 16, 32, 64, 128, 256, 512),
        min_sizes=(35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8),
        max_sizes=(76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
        aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    ),
    # rssd.model's CPU-sized SSD: SSD300's maps with SSD300-COCO's smaller scales (objects of 20-150 px).
    "ssd-cpu": PriorSpec(
        image_size=300,
        feature_maps=(38, 19, 10, 5, 3, 1),
        steps=(8, 16, 32, 64, 100, 300),
        min_sizes=(21, 45, 99, 153, 207, 261),
        max_sizes=(45, 99, 153, 207, 261, 315),
        aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    ),
    # rssd.model's ``ssd-mini``: 160 px inputs, five maps (SSD300's without the 5x5 one), boxes of 16-144 px, for
    # the crowd experiment's many long runs on a CPU (rssd.experiments).
    "ssd-mini": PriorSpec(
        image_size=160,
        feature_maps=(20, 10, 5, 3, 1),
        steps=(8, 16, 32, 160 / 3, 160),
        min_sizes=(16, 32, 60, 88, 116),
        max_sizes=(32, 60, 88, 116, 144),
        aspect_ratios=((2,), (2, 3), (2, 3), (2,), (2,)),
    ),
}


def _cell_shapes(spec: PriorSpec, k: int) -> Tensor:
    """``(B, 2)`` normalised (w, h) of the boxes of one cell of map ``k``, in ssd.pytorch order."""
    s = spec.min_sizes[k] / spec.image_size
    s_big = math.sqrt(s * (spec.max_sizes[k] / spec.image_size))
    shapes = [(s, s), (s_big, s_big)]
    for ar in spec.aspect_ratios[k]:
        r = math.sqrt(ar)
        shapes += [(s * r, s / r), (s / r, s * r)]
    return torch.tensor(shapes, dtype=torch.float64)


def make_priors(
    spec: str | PriorSpec, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Generate the priors of a named layout (``"ssd300"``, ``"ssd512"``, ...) or of a :class:`PriorSpec`.

    Returns:
        ``(P, 4)`` priors as ``(cx, cy, w, h)`` normalised to the input size; ``P = 8732`` for SSD300,
        ``24564`` for SSD512. Computed in float64, then cast.
    """
    if isinstance(spec, str):
        if spec not in PRIOR_SPECS:
            raise KeyError(f"unknown prior layout {spec!r}; known: {', '.join(sorted(PRIOR_SPECS))}")
        spec = PRIOR_SPECS[spec]
    chunks = []
    for k, f in enumerate(spec.feature_maps):
        f_k = spec.image_size / spec.steps[k]
        idx = torch.arange(f, dtype=torch.float64)
        cy, cx = torch.meshgrid((idx + 0.5) / f_k, (idx + 0.5) / f_k, indexing="ij")  # (f, f) each, row-major
        centres = torch.stack([cx, cy], dim=-1).reshape(f * f, 1, 2)  # (f*f, 1, 2)
        shapes = _cell_shapes(spec, k)  # (B, 2)
        boxes = torch.cat(
            [centres.expand(-1, shapes.shape[0], -1), shapes.expand(f * f, -1, -1)], dim=-1
        )  # (f*f, B, 4)
        chunks.append(boxes.reshape(-1, 4))
    priors = torch.cat(chunks)  # (P, 4)
    if spec.clip:
        priors = priors.clamp(0.0, 1.0)
    return priors.to(dtype=dtype, device=device)
