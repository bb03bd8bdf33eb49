"""Random batches for the core tests: crowds of same-class boxes, lone boxes, empty images."""

from __future__ import annotations

import torch

from rssd.priors import PriorSpec, make_priors

#: A small prior layout (380 priors) for fast property tests; same code path as SSD300.
TINY_SPEC = PriorSpec(
    image_size=64,
    feature_maps=(8, 4, 2, 1),
    steps=(8, 16, 32, 64),
    min_sizes=(8, 20, 36, 52),
    max_sizes=(20, 36, 52, 64),
    aspect_ratios=((2,), (2, 3), (2, 3), (2,)),
)


def tiny_priors() -> torch.Tensor:
    return make_priors(TINY_SPEC)


def crowd(g: int, num_classes: int = 3, gen: torch.Generator | None = None, same_class: bool = True) -> dict:
    """``g`` pedestrian-shaped boxes standing side by side and overlapping (one class unless ``same_class=False``)."""
    x0 = torch.rand(1, generator=gen).item() * 0.3
    y0 = torch.rand(1, generator=gen).item() * 0.3
    w = 0.08 + 0.1 * torch.rand(g, generator=gen)
    h = w * (2.0 + torch.rand(g, generator=gen))
    x1 = (x0 + torch.arange(g) * 0.6 * w.mean() + 0.02 * torch.rand(g, generator=gen)).clamp(max=0.85)
    y1 = (y0 + 0.05 * torch.rand(g, generator=gen)).clamp(max=0.4)
    boxes = torch.stack([x1, y1, (x1 + w).clamp(max=1), (y1 + h).clamp(max=1)], 1)
    if same_class:
        labels = torch.ones(g, dtype=torch.long)
    else:
        labels = torch.randint(1, num_classes, (g,), generator=gen)
    return {"boxes": boxes, "labels": labels}


def scattered(g: int, num_classes: int = 3, gen: torch.Generator | None = None) -> dict:
    xy = torch.rand(g, 2, generator=gen) * 0.7
    wh = 0.05 + torch.rand(g, 2, generator=gen) * 0.3
    return {
        "boxes": torch.cat([xy, (xy + wh).clamp(max=1)], 1),
        "labels": torch.randint(1, num_classes, (g,), generator=gen),
    }


def mixed_batch(gen: torch.Generator, num_classes: int = 3) -> list[dict]:
    """Images with 0, 1, a crowd of 12 same-class, and 6 scattered multi-class GTs."""
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    return [empty, scattered(1, num_classes, gen), crowd(12, num_classes, gen), scattered(6, num_classes, gen)]
