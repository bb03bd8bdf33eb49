"""Box formats, overlaps and the box coder, on hand-computed values and properties."""

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.testing import assert_close

from rssd import boxes
from rssd.boxes import box_iou, cxcywh_to_xyxy, decode, elementwise_iog, elementwise_iou, encode, xyxy_to_cxcywh


def test_format_conversions_by_hand() -> None:
    xyxy = torch.tensor([[0.1, 0.2, 0.5, 0.8]])
    assert_close(xyxy_to_cxcywh(xyxy), torch.tensor([[0.3, 0.5, 0.4, 0.6]]))
    assert_close(cxcywh_to_xyxy(torch.tensor([[0.3, 0.5, 0.4, 0.6]])), xyxy)


def test_iou_and_iog_by_hand() -> None:
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    # intersection 1, union 4 + 4 - 1 = 7
    assert_close(elementwise_iou(a, b), torch.tensor(1 / 7))
    assert_close(box_iou(a[None], b[None]), torch.tensor([[1 / 7]]))
    # IoG divides by the ground truth's area only
    assert_close(elementwise_iog(a, b), torch.tensor(1 / 4))
    inner = torch.tensor([1.0, 1.0, 2.0, 2.0])  # inside b: IoG(b, inner) = 1, IoG(inner, b) = 1/4
    assert_close(elementwise_iog(b, inner), torch.tensor(1.0))
    assert_close(elementwise_iog(inner, b), torch.tensor(0.25))
    far = torch.tensor([5.0, 5.0, 6.0, 6.0])
    assert elementwise_iou(a, far) == 0 and elementwise_iog(a, far) == 0


def test_elementwise_iou_broadcasts_like_box_iou() -> None:
    a = torch.rand(5, 2) * 0.5
    a = torch.cat([a, a + torch.rand(5, 2) * 0.5 + 0.01], 1)
    b = torch.rand(7, 2) * 0.5
    b = torch.cat([b, b + torch.rand(7, 2) * 0.5 + 0.01], 1)
    assert_close(elementwise_iou(a[:, None], b[None]), box_iou(a, b), atol=1e-6, rtol=1e-5)
    # without eps, box_iou's values bit for bit (matching relies on it)
    assert torch.equal(elementwise_iou(a[:, None], b[None], eps=0.0), box_iou(a, b))


def test_old_names_are_deprecated_aliases() -> None:
    with pytest.warns(DeprecationWarning, match="elementwise_iou"):
        assert boxes.paired_iou is elementwise_iou
    with pytest.warns(DeprecationWarning, match="elementwise_iog"):
        assert boxes.paired_iog is elementwise_iog
    with pytest.raises(AttributeError):
        boxes.no_such_name  # noqa: B018


def test_encode_by_hand() -> None:
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    w, h = 0.2 * math.exp(0.2), 0.4 * math.exp(-0.4)
    cx, cy = 0.5 + 0.1 * 0.2 * 1.0, 0.5 - 0.1 * 0.4 * 3.0
    gt = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    assert_close(encode(gt, prior), torch.tensor([[1.0, -3.0, 1.0, -2.0]]), atol=1e-5, rtol=1e-5)
    assert_close(decode(torch.tensor([[1.0, -3.0, 1.0, -2.0]]), prior), gt, atol=1e-6, rtol=1e-6)
    # a GT equal to its prior encodes to zero
    assert_close(encode(cxcywh_to_xyxy(prior), prior), torch.zeros(1, 4), atol=1e-6, rtol=0)


coord = st.floats(0.0, 0.9, allow_nan=False)
size = st.floats(0.01, 1.0, allow_nan=False)


@given(x=coord, y=coord, w=size, h=size, pcx=coord, pcy=coord, pw=size, ph=size)
def test_encode_decode_round_trip(x, y, w, h, pcx, pcy, pw, ph) -> None:
    # decode clamps sizes at 62.5x the prior (DECODE_CLAMP, tests/test_hostile.py); the round trip holds below it
    assume(w / pw < 60 and h / ph < 60)
    gt = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float64)
    prior = torch.tensor([[pcx, pcy, pw, ph]], dtype=torch.float64)
    assert_close(decode(encode(gt, prior), prior), gt, atol=1e-9, rtol=1e-9)


@given(x=coord, y=coord, w=size, h=size, x2=coord, y2=coord, w2=size, h2=size)
def test_overlaps_are_bounded_and_symmetric(x, y, w, h, x2, y2, w2, h2) -> None:
    a = torch.tensor([x, y, x + w, y + h], dtype=torch.float64)
    b = torch.tensor([x2, y2, x2 + w2, y2 + h2], dtype=torch.float64)
    iou = elementwise_iou(a, b)
    assert 0 <= iou <= 1 + 1e-12
    assert_close(iou, elementwise_iou(b, a))
    # IoU never exceeds IoG of either box (the union is at least as large as each box)
    assert iou <= elementwise_iog(a, b) + 1e-12 and iou <= elementwise_iog(b, a) + 1e-12
