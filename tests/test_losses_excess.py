"""rssd's own "excess" RepGT: the perfect box is free, a box drifting towards its repulsion target is not."""

from __future__ import annotations

import math

import pytest
import torch

from rssd.boxes import encode, xyxy_to_cxcywh
from rssd.losses import RepulsionLoss, rep_gt_loss

A = [0.1, 0.1, 0.5, 0.9]
B = [0.3, 0.1, 0.7, 0.9]  # IoG(A, B) = 0.16 / 0.32 = 1/2


def perfect_case():
    priors = xyxy_to_cxcywh(torch.tensor([A, B]))
    targets = [{"boxes": torch.tensor([A, B]), "labels": torch.tensor([1, 1])}]
    loc = encode(torch.tensor([A, B]), priors)[None].clone().requires_grad_(True)  # (1, 2, 4): exact boxes
    conf = torch.zeros(1, 2, 2)
    return loc, conf, priors, targets


def test_rep_gt_loss_by_hand():
    pred = torch.tensor([A, [0.2, 0.1, 0.6, 0.9]])  # the truth, and A moved halfway towards B
    rep = torch.tensor([B, B])
    has = torch.tensor([True, True])
    # paper: -ln(1 - 1/2) + -ln(1 - 3/4); IoG of the moved box with B is 0.24 / 0.32 = 3/4
    assert float(rep_gt_loss(pred, rep, has, 1.0)) == pytest.approx(math.log(2) + math.log(4), rel=1e-5)
    # excess: x = (IoG - 1/2) / (1 - 1/2): 0 for the truth, (3/4 - 1/2) / (1/2) = 1/2 for the moved box
    attr = torch.tensor([A, A])
    assert float(rep_gt_loss(pred, rep, has, 1.0, attr)) == pytest.approx(math.log(2), rel=1e-5)
    assert float(rep_gt_loss(pred, rep, has, 0.0, attr)) == pytest.approx(0.5, rel=1e-5)
    # a box that overlaps B less than its target does costs nothing either
    away = torch.tensor([[0.0, 0.1, 0.4, 0.9]])
    assert float(rep_gt_loss(away, rep[:1], has[:1], 1.0, attr[:1])) == 0.0


def test_excess_mode_leaves_the_perfect_box_unpenalised():
    loc, conf, priors, targets = perfect_case()
    paper = RepulsionLoss(2, alpha=0.5, beta=0.0)(loc, conf, priors, targets)
    assert float(paper["rep_gt"]) == pytest.approx(math.log(2), rel=1e-4)  # both positives: ln 2 each, / 2
    (grad,) = torch.autograd.grad(paper["rep_gt"], loc)
    assert float(grad.abs().sum()) > 0.01  # the paper's RepGT pushes the perfect boxes apart

    loc, conf, priors, targets = perfect_case()
    excess = RepulsionLoss(2, alpha=0.5, beta=0.0, rep_gt_mode="excess")(loc, conf, priors, targets)
    assert float(excess["rep_gt"]) == pytest.approx(0.0, abs=1e-6)
    (grad,) = torch.autograd.grad(excess["total"], loc)
    assert float(grad.abs().max()) < 1e-5  # loc is at its target: Smooth L1 and excess RepGT are both flat


def test_rep_gt_mode_is_validated_and_in_the_config():
    from rssd.config import TrainConfig

    with pytest.raises(ValueError, match="rep_gt_mode"):
        RepulsionLoss(2, rep_gt_mode="nope")
    assert TrainConfig(rep_gt="excess").rep_gt == "excess"
    with pytest.raises(ValueError, match="rep_gt"):
        TrainConfig(rep_gt="nope")


def test_excess_at_sigma_1_is_the_paper_term_shifted_on_the_side_towards_g_rep():
    # -ln(1 - (I - b) / (1 - b)) = -ln(1 - I) + ln(1 - b): wherever the box overlaps G_rep at least as much as its
    # truth does (I >= b), rssd's excess RepGT at sigma 1 is the paper's minus a constant, so its gradient is the
    # paper's; only boxes leaning away (I < b) lose their repulsion. (README, Results: why excess does not help.)
    gen = torch.Generator().manual_seed(0)
    attr = torch.tensor([A]).expand(64, 4)
    rep = torch.tensor([B]).expand(64, 4)
    shift = torch.rand(64, 1, generator=gen) * 0.25 - 0.1  # from 0.1 away from B to 0.15 towards it (IoG < 1)
    pred = (attr + torch.cat([shift, torch.zeros_like(shift)] * 2, 1)).requires_grad_(True)
    has = torch.ones(64, dtype=torch.bool)
    (g_paper,) = torch.autograd.grad(rep_gt_loss(pred, rep, has, 1.0), pred)
    (g_excess,) = torch.autograd.grad(rep_gt_loss(pred, rep, has, 1.0, attr), pred)
    towards = shift.squeeze(1) > 1e-4
    assert 10 < int(towards.sum()) < 64
    torch.testing.assert_close(g_excess[towards], g_paper[towards], rtol=1e-4, atol=1e-6)
    assert float(g_excess[shift.squeeze(1) < -1e-4].abs().max()) == 0.0
    # and the values differ by exactly -ln(1 - b) = ln 2 on that side
    for i in towards.nonzero().squeeze(1)[:5].tolist():
        v_paper = rep_gt_loss(pred[i : i + 1], rep[:1], has[:1], 1.0)
        v_excess = rep_gt_loss(pred[i : i + 1], rep[:1], has[:1], 1.0, attr[:1])
        assert float(v_paper - v_excess) == pytest.approx(math.log(2), rel=1e-4)
