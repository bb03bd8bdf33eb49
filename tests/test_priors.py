"""Default boxes: counts, hand-computed rows, and the ssd.pytorch order (checked against a plain loop)."""

import itertools
import math

import pytest
import torch
from torch.testing import assert_close

from rssd.priors import PRIOR_SPECS, PriorSpec, make_priors


def loop_priors(spec: PriorSpec) -> torch.Tensor:
    """The obvious nested loop, in ssd.pytorch's PriorBox order."""
    rows = []
    for k, f in enumerate(spec.feature_maps):
        for i, j in itertools.product(range(f), repeat=2):
            f_k = spec.image_size / spec.steps[k]
            cx, cy = (j + 0.5) / f_k, (i + 0.5) / f_k
            s = spec.min_sizes[k] / spec.image_size
            rows.append([cx, cy, s, s])
            s2 = math.sqrt(s * spec.max_sizes[k] / spec.image_size)
            rows.append([cx, cy, s2, s2])
            for ar in spec.aspect_ratios[k]:
                rows.append([cx, cy, s * math.sqrt(ar), s / math.sqrt(ar)])
                rows.append([cx, cy, s / math.sqrt(ar), s * math.sqrt(ar)])
    return torch.tensor(rows, dtype=torch.float64).clamp(0, 1)


def test_counts() -> None:
    assert make_priors("ssd300").shape == (8732, 4)
    assert make_priors("ssd512").shape == (24564, 4)
    assert PRIOR_SPECS["ssd300"].num_priors == 8732
    assert PRIOR_SPECS["ssd512"].num_priors == 24564


def test_ssd300_rows_by_hand() -> None:
    p = make_priors("ssd300", dtype=torch.float64)
    c = 0.5 / 37.5  # first cell centre: 0.5 / (300 / 8)
    assert_close(p[0], torch.tensor([c, c, 0.1, 0.1], dtype=torch.float64))
    s2 = math.sqrt(0.1 * 60 / 300)
    assert_close(p[1], torch.tensor([c, c, s2, s2], dtype=torch.float64))
    assert_close(p[2], torch.tensor([c, c, 0.1 * math.sqrt(2), 0.1 / math.sqrt(2)], dtype=torch.float64))
    # next cell to the right (column 1), then the first cell of row 1
    assert_close(p[4, :2], torch.tensor([1.5 / 37.5, c], dtype=torch.float64))
    assert_close(p[38 * 4, :2], torch.tensor([c, 1.5 / 37.5], dtype=torch.float64))
    # the last prior: the 1x1 map, aspect ratio 1/2, height 264/300*sqrt(2) = 1.24 clipped to 1
    assert_close(p[-1], torch.tensor([0.5, 0.5, 0.88 / math.sqrt(2), 1.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["ssd300", "ssd512"])
def test_matches_plain_loop(name: str) -> None:
    assert_close(make_priors(name, dtype=torch.float64), loop_priors(PRIOR_SPECS[name]))


def test_in_unit_range_and_dtype_device() -> None:
    p = make_priors("ssd512", dtype=torch.float32, device="cpu")
    assert p.dtype == torch.float32 and p.min() >= 0 and p.max() <= 1


def test_bad_spec_and_name() -> None:
    with pytest.raises(ValueError, match="steps"):
        PriorSpec(300, (38, 19), (8,), (30, 60), (60, 111), ((2,), (2,)))
    with pytest.raises(KeyError, match="unknown prior layout"):
        make_priors("ssd1000")
