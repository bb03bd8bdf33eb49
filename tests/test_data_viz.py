"""Headless drawing of dataset items: one rectangle per box, crowd objects solid, others dashed, difficult dotted."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from rssd.data.common import make_target  # noqa: E402
from rssd.data.transforms import SSDEvalTransform  # noqa: E402
from rssd.viz import show_item, show_items  # noqa: E402


def _styles(ax) -> list[tuple]:
    return [(p.get_linestyle(), p.get_x(), p.get_y(), p.get_width()) for p in ax.patches if isinstance(p, Rectangle)]


def test_show_item_styles_and_scaling() -> None:
    image = torch.zeros(3, 50, 100, dtype=torch.uint8)
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [50, 20, 60, 40], [70, 20, 80, 40]], float)
    target = make_target(boxes, [1, 1, 1, 2], [False, False, False, True], "x", (50, 100))
    ax = show_item(image, target, ("person", "dog"))
    styles = _styles(ax)
    assert [s[0] for s in styles] == ["-", "-", "--", ":"]  # crowd pair solid, lone person dashed, difficult dotted
    assert [t.get_text() for t in ax.texts] == ["person", "person", "person", "dog"]
    plt.close("all")
    # after the eval transform: normalised boxes and a caffe-normalised image are drawn back in pixels
    x, t = SSDEvalTransform(size=40)(image, target)
    ax = show_item(x, t, normalization="caffe", show_labels=False)
    np.testing.assert_allclose(_styles(ax)[2][1:], (50 * 40 / 100, 20 * 40 / 50, 10 * 40 / 100), rtol=1e-6)
    assert not ax.texts
    # a plain tensor of pixel boxes (e.g. after indexing BoundingBoxes) is recognised as pixels
    plain = {**target, "boxes": target["boxes"].as_subclass(torch.Tensor)}
    np.testing.assert_allclose(_styles(show_item(image, plain))[2][1:], (50, 20, 10))
    fig = show_items([(image, target)] * 3, ncols=2)
    assert len(fig.axes) == 4
    plt.close("all")
