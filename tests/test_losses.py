"""Losses: Smooth_ln, hand-computed MultiBox/RepGT/RepBox values, the per-image reference, and properties."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.testing import assert_close

from rssd.boxes import decode, elementwise_iog
from rssd.fork import ForkRepulsionLoss
from rssd.losses import LOSS_TERMS, MultiBoxLoss, RepulsionLoss, smooth_ln
from rssd.matching import NO_REPULSION
from rssd.priors import make_priors
from tests.helpers import crowd, mixed_batch, tiny_priors
from tests.reference import loss_reference
from tests.test_matching import PRIORS, _targets, image_with_specials

C = 3  # background + 2 classes


# ---------------------------------------------------------------- Smooth_ln
def test_smooth_ln_special_cases() -> None:
    x = torch.tensor([0.0, 0.25, 0.5, 0.9])
    assert_close(smooth_ln(x, 0.0), x)  # sigma = 0 is the identity
    assert_close(smooth_ln(x, 1.0), -torch.log(1 - x))  # sigma = 1 is -ln(1 - x)
    # sigma = 0.5: -ln(1 - x) up to 0.5, then the tangent line (x - 0.5) / 0.5 + ln 2
    assert_close(smooth_ln(torch.tensor([0.25, 0.9]), 0.5), torch.tensor([-math.log(0.75), 0.8 + math.log(2)]))


def test_smooth_ln_finite_at_one_for_every_sigma() -> None:
    for sigma in (0.0, 0.3, 0.999, 1.0):
        x = torch.tensor([0.0, 0.5, 1.0], requires_grad=True)
        y = smooth_ln(x, sigma)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all(), sigma
    with pytest.raises(ValueError):
        smooth_ln(torch.zeros(1), 1.5)


@given(sigma=st.floats(0.0, 0.99))
def test_smooth_ln_value_and_slope_continuous_at_sigma(sigma) -> None:
    d = 1e-7
    x = torch.tensor([sigma - d, sigma + d], dtype=torch.float64, requires_grad=True)
    y = smooth_ln(x.clamp(min=0), sigma)
    slope = 1.0 / (1.0 - sigma)  # the derivative of -ln(1 - x) at sigma, and of the line above it
    # a jump at sigma would show as a gap larger than the slope times the step
    assert abs(float((y[1] - y[0]).detach())) <= 2 * d * slope * 1.001 + 1e-12
    (g,) = torch.autograd.grad(y.sum(), x)
    if sigma > d:
        assert float(g[0]) == pytest.approx(slope, rel=1e-4) and float(g[1]) == pytest.approx(slope, rel=1e-9)


# ---------------------------------------------------------------- hand-computed losses
def test_multibox_by_hand() -> None:
    # One GT (0, 0, .5, .4), class 1: prior p0 (top-left quadrant, IoU 0.8) is the only positive.
    target = [{"boxes": torch.tensor([[0, 0, 0.5, 0.4]]), "labels": torch.tensor([1])}]
    loc = torch.zeros(1, 5, 4)
    # Background logit a per prior, 0 for the two object classes: CE(background) = -a + ln(e^a + 2).
    a = [0.0, 0.0, 1.0, 2.0, -1.0]
    conf = torch.tensor([[[ai, 0.0, 0.0] for ai in a]])
    out = MultiBoxLoss(C)(loc, conf, PRIORS, target)
    # targets of p0 = (0.25, .25, .5, .5): t = (0, (0.2 - 0.25) / 0.05, 0, ln(0.8) / 0.2) = (0, -1, 0, -1.1157)
    t = [0.0, -1.0, 0.0, math.log(0.8) / 0.2]
    smooth_l1 = sum(0.5 * v * v if abs(v) < 1 else abs(v) - 0.5 for v in t)
    assert_close(out["loc"], torch.tensor(smooth_l1))
    # conf: the positive's CE for class 1 with all-zero logits is ln 3; 3 hardest of the 4 negatives (p4, p1, p2)
    neg = sorted([-ai + math.log(math.exp(ai) + 2) for ai in a[1:]], reverse=True)[:3]
    assert_close(out["conf"], torch.tensor(math.log(3) + sum(neg)))
    assert out["rep_gt"] == 0 and out["rep_box"] == 0
    assert_close(out["total"], out["loc"] + out["conf"])


def _two_people():
    # gA is exactly p0; gB straddles p0 and p1 (IoU 1/3 with each) and is forced onto p1 (p0 went to gA).
    return [{"boxes": torch.tensor([[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]]), "labels": torch.tensor([1, 1])}]


def test_rep_gt_by_hand() -> None:
    loc = torch.zeros(1, 5, 4)
    conf = torch.zeros(1, 5, C)
    out = RepulsionLoss(C)(loc, conf, PRIORS, _two_people())
    # p0's prediction is gA itself; its repulsion GT is gB: IoG = (0.25 * 0.5) / 0.25 = 0.5.
    # Two positives: rep_gt = -ln(1 - 0.5) / 2. p1 (gB) has no same-class candidate with IoU > 0.
    assert_close(out["rep_gt"], torch.tensor(math.log(2) / 2))
    # the predictions of p0 and p1 only touch: no pair with IoU > 0
    assert out["rep_box"] == 0


def test_rep_box_by_hand() -> None:
    loc = torch.zeros(1, 5, 4)
    loc[0, 1, 0] = -2.5  # p1 moves left by 2.5 * 0.1 * 0.5 = 0.125: (0.375, 0, 0.875, 0.5)
    conf = torch.zeros(1, 5, C)
    loss = RepulsionLoss(C, alpha=0.5, beta=0.5)
    out = loss(loc, conf, PRIORS, _two_people())
    # IoU of (0, 0, .5, .5) and (.375, 0, .875, .5) = 0.0625 / 0.4375 = 1/7; sigma_box = 0: Smooth_ln(x) = x
    assert_close(out["rep_box"], torch.tensor(1 / 7))
    assert_close(out["total"], out["loc"] + out["conf"] + 0.5 * out["rep_gt"] + 0.5 * out["rep_box"])


# ---------------------------------------------------------------- against the per-image reference
@pytest.mark.parametrize("alpha,beta,sigma_gt,same_class", [(0.5, 0.5, 1.0, True), (1.0, 2.0, 0.5, False)])
def test_batched_equals_reference(alpha, beta, sigma_gt, same_class) -> None:
    gen = torch.Generator().manual_seed(3)
    priors = make_priors("ssd300")
    targets = mixed_batch(gen) + [crowd(20, gen=gen)]
    n = len(targets)
    loc = (0.5 * torch.randn(n, priors.shape[0], 4, generator=gen)).requires_grad_()
    conf = torch.randn(n, priors.shape[0], C, generator=gen).requires_grad_()
    loss = RepulsionLoss(C, alpha=alpha, beta=beta, sigma_gt=sigma_gt, same_class=same_class)
    out = loss(loc, conf, priors, targets)
    ref = loss_reference(loc, conf, priors, targets, alpha, beta, sigma_gt, 0.0, same_class)
    assert out["rep_gt"] > 0 and out["rep_box"] > 0, "the batch must exercise every term"
    for k in LOSS_TERMS:
        assert_close(out[k], ref[k].to(out[k].dtype), atol=1e-5, rtol=1e-5, msg=k)
    g_out = torch.autograd.grad(out["total"], (loc, conf))
    g_ref = torch.autograd.grad(ref["total"], (loc, conf))
    for a, b in zip(g_out, g_ref, strict=True):
        assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_alpha_beta_zero_is_multibox() -> None:
    gen = torch.Generator().manual_seed(4)
    priors = tiny_priors()
    targets = mixed_batch(gen)
    loc = torch.randn(len(targets), priors.shape[0], 4, generator=gen)
    conf = torch.randn(len(targets), priors.shape[0], C, generator=gen)
    a = RepulsionLoss(C, alpha=0.0, beta=0.0)(loc, conf, priors, targets)
    b = MultiBoxLoss(C)(loc, conf, priors, targets)
    full = RepulsionLoss(C)(loc, conf, priors, targets)
    assert tuple(a) == tuple(b) == tuple(full) == LOSS_TERMS
    for k in a:
        assert_close(a[k], b[k])
    assert a["rep_gt"] == 0 and a["rep_box"] == 0
    assert_close(a["loc"], full["loc"]) and assert_close(a["conf"], full["conf"])
    # RepulsionLoss extends MultiBoxLoss; plain SSD has no repulsion weights at all
    assert isinstance(RepulsionLoss(C), MultiBoxLoss) and not hasattr(MultiBoxLoss(C), "alpha")


def test_bf16_autocast_close_to_float32() -> None:
    gen = torch.Generator().manual_seed(5)
    priors = make_priors("ssd300")
    targets = mixed_batch(gen)
    loc = torch.randn(len(targets), priors.shape[0], 4, generator=gen) * 0.5
    conf = torch.randn(len(targets), priors.shape[0], C, generator=gen)
    loss = RepulsionLoss(C)
    ref = loss(loc, conf, priors, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(loc.bfloat16(), conf.bfloat16(), priors, targets)
    for k in ref:
        assert out[k].dtype == torch.float32
        assert_close(out[k], ref[k], atol=0.05, rtol=0.03, msg=k)


def test_bad_input_messages() -> None:
    loss = RepulsionLoss(C)
    with pytest.raises(ValueError, match="classes"):
        loss(torch.zeros(1, 5, 4), torch.zeros(1, 5, 4), PRIORS, _two_people())
    with pytest.raises(ValueError, match="targets for a batch"):
        loss(torch.zeros(2, 5, 4), torch.zeros(2, 5, C), PRIORS, _two_people())
    with pytest.raises(ValueError, match="labels must lie in 1..2"):
        loss(
            torch.zeros(1, 5, 4),
            torch.zeros(1, 5, C),
            PRIORS,
            [{"boxes": torch.ones(1, 4), "labels": torch.tensor([3])}],
        )
    with pytest.raises(ValueError, match="shapes disagree"):
        loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, C), PRIORS, _two_people())


# ---------------------------------------------------------------- properties
@given(images=st.lists(image_with_specials, min_size=1, max_size=3), scale=st.sampled_from([0.0, 1.0, 5.0]))
def test_finite_loss_and_gradients(images, scale) -> None:
    priors = tiny_priors()
    targets = _targets(images)
    gen = torch.Generator().manual_seed(len(images))
    loc = (scale * torch.randn(len(targets), priors.shape[0], 4, generator=gen)).requires_grad_()
    conf = (scale * torch.randn(len(targets), priors.shape[0], C, generator=gen)).requires_grad_()
    for loss in (RepulsionLoss(C), RepulsionLoss(C, sigma_gt=0.5, sigma_box=0.5, same_class=False)):
        out = loss(loc, conf, priors, targets)
        assert all(torch.isfinite(v) for v in out.values()), out
        g_loc, g_conf = torch.autograd.grad(out["total"], (loc, conf))
        assert torch.isfinite(g_loc).all() and torch.isfinite(g_conf).all()


@given(seed=st.integers(0, 10_000), sigma=st.sampled_from([0.0, 0.5, 1.0]))
def test_rep_gt_gradient_moves_boxes_away_from_repulsion_gt(seed, sigma) -> None:
    gen = torch.Generator().manual_seed(seed)
    priors = tiny_priors()
    targets = [crowd(5, gen=gen)]
    loc = (0.3 * torch.randn(1, priors.shape[0], 4, generator=gen)).requires_grad_()
    conf = torch.zeros(1, priors.shape[0], C)
    loss = RepulsionLoss(C, alpha=1.0, beta=0.0, sigma_gt=sigma)
    m = loss.match(priors, targets)
    (grad,) = torch.autograd.grad(loss(loc, conf, priors, targets)["rep_gt"], loc)
    has = m.rep_idx != NO_REPULSION
    with torch.no_grad():
        before = elementwise_iog(decode(loc, priors), m.rep_boxes)[has]
        after = elementwise_iog(decode(loc - 1e-3 * grad / grad.abs().max().clamp(min=1e-12), priors), m.rep_boxes)[has]
    moving = (before > 1e-4) & (before < 0.999)
    assert (after[moving] <= before[moving] + 1e-7).all(), "a RepGT step must never increase IoG with G_rep"
    if moving.any():
        assert (after[moving] < before[moving]).any()


@pytest.mark.parametrize(
    "make",
    [lambda: RepulsionLoss(C), lambda: RepulsionLoss(C, alpha=0.0, beta=0.0), lambda: MultiBoxLoss(C),
     lambda: ForkRepulsionLoss(C), lambda: RepulsionLoss(C, rep_gt_mode="excess"),
     lambda: RepulsionLoss(C, sigma_gt=0.5, sigma_box=0.5, same_class=False)],
)
def test_same_as_before_the_speedups(make) -> None:
    # The faster loss (positives-only matching, mining by top-k cut-off, cross-entropy graph on the chosen rows,
    # RepBox on overlapping pairs) gives the terms and gradients of the implementation it replaced, including
    # tied background losses at the mining cut-off (every third prior has the same logits).
    from tests.reference import loss_before

    gen = torch.Generator().manual_seed(11)
    priors = make_priors("ssd300")
    targets = mixed_batch(gen) + [crowd(20, gen=gen)]
    n = len(targets)
    loc = (0.5 * torch.randn(n, priors.shape[0], 4, generator=gen)).requires_grad_()
    conf = torch.randn(n, priors.shape[0], C, generator=gen)
    conf[:, ::3] = torch.tensor([0.3, -0.2, 0.1])
    conf.requires_grad_()
    loss = make()
    out, ref = loss(loc, conf, priors, targets), loss_before(loss, loc, conf, priors, targets)
    for k in LOSS_TERMS:
        assert_close(out[k], ref[k], atol=1e-5, rtol=1e-5, msg=k)
    for a, b in zip(torch.autograd.grad(out["total"], (loc, conf)), torch.autograd.grad(ref["total"], (loc, conf)),
                    strict=True):
        assert_close(a, b, atol=1e-5, rtol=1e-5)
