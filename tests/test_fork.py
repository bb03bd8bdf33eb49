"""The original fork's loss (rssd.fork): its repulsion targets by hand, the self-repulsion bug, and its pieces."""

import torch
from torch.testing import assert_close

from rssd.boxes import decode
from rssd.fork import ForkRepulsionLoss, fork_rep_targets
from rssd.losses import RepulsionLoss
from tests.test_matching import PRIORS

C = 3  # background + 2 classes


def test_fork_repels_single_gt_from_itself() -> None:
    single = [{"boxes": torch.tensor([[0, 0, 0.5, 0.4]]), "labels": torch.tensor([1])}]
    loc, conf = torch.zeros(1, 5, 4), torch.zeros(1, 5, C)
    assert RepulsionLoss(C)(loc, conf, PRIORS, single)["rep_gt"] == 0
    fork = ForkRepulsionLoss(C, beta=0.5)
    out = fork(loc, conf, PRIORS, single)
    # the fork repels p0's prediction (0, 0, .5, .5) from its own target: IoG = 0.2 / 0.2 = 1, sigma 0, weight 1
    assert_close(out["rep_gt"], torch.tensor(1.0))
    assert_close(out["total"], out["loc"] + out["conf"] + out["rep_gt"])


def test_fork_follows_its_rule_where_the_two_readings_differ() -> None:
    # Image 0: gA = p0 exactly (class 1), gB (class 2) straddles p0 and p1 and is forced onto p1. p0's prediction
    # is pushed right by 4 * 0.1 * 0.5 = 0.2 to (0.2, 0, 0.7, 0.5): IoU 0.15 / 0.35 = 3/7 with its own gA, but
    # 0.225 / 0.275 = 9/11 with gB. p1 predicts its prior (0.5, 0, 1, 0.5): IoU 1/3 with its gB, 0 with gA.
    # Image 1: a single GT (0, 0, .5, .4) (padded to two rows), matched by p0 (prediction = p0).
    two = {"boxes": torch.tensor([[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]]), "labels": torch.tensor([1, 2])}
    single = {"boxes": torch.tensor([[0, 0, 0.5, 0.4]]), "labels": torch.tensor([1])}
    loc, conf = torch.zeros(2, 5, 4), torch.zeros(2, 5, C)
    loc[0, 0, 0] = 4.0
    fork = ForkRepulsionLoss(C)
    m = fork.match(PRIORS, [two, single])
    pos_img, pos_pri = m.positive.nonzero(as_tuple=True)
    assert pos_img.tolist() == [0, 0, 1] and pos_pri.tolist() == [0, 1, 0]
    assert m.matched_idx[pos_img, pos_pri].tolist() == [0, 1, 0]
    pred = decode(loc[pos_img, pos_pri], PRIORS[pos_pri])
    assert_close(pred[0], torch.tensor([0.2, 0.0, 0.7, 0.5]))
    # The fork: the matched GT's entry -> -1, arg-max of the row. p0: [-1, 9/11] -> gB; p1: [0, -1] -> gA;
    # image 1's p0: [-1, padding] -> its own GT. (Dropping the GT that best overlaps the *prediction* instead
    # would give gA to p0: it would repel p0 from its own target.)
    rep = fork_rep_targets(pred, pos_img, m.matched_idx[pos_img, pos_pri], m.targets.boxes, m.targets.valid)
    assert rep.tolist() == [1, 0, 0]
    # RepGT = (IoG(p0's box, gB) + IoG(p1's box, gA) + IoG(image 1's box, its own GT)) / 3 positives
    #       = (0.225 / 0.25 + 0 + 0.2 / 0.2) / 3 = (0.9 + 0 + 1) / 3, sigma 0 (plain IoG), weight 1.
    out = fork(loc, conf, PRIORS, [two, single])
    assert_close(out["rep_gt"], torch.tensor(1.9 / 3))
    assert_close(out["total"], out["loc"] + out["conf"] + out["rep_gt"])
    # rssd's own rule: gB is of another class, and image 1 has no second GT: no repulsion target at all.
    assert RepulsionLoss(C, beta=0.0)(loc, conf, PRIORS, [two, single])["rep_gt"] == 0


def test_fork_is_the_production_loss_with_its_own_targets() -> None:
    # Same MultiBox terms as rssd's loss; RepGT weight 1, sigma 0, any class; no RepBox unless asked.
    fork = ForkRepulsionLoss(C)
    assert (fork.alpha, fork.beta, fork.sigma_gt, fork.same_class, fork.rep_gt_mode) == (1.0, 0.0, 0.0, False, "paper")
    assert isinstance(fork, RepulsionLoss) and "fork" in repr(fork)
    gen = torch.Generator().manual_seed(0)
    targets = [{"boxes": torch.tensor([[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]]), "labels": torch.tensor([1, 2])}]
    loc, conf = 0.3 * torch.randn(1, 5, 4, generator=gen), torch.randn(1, 5, C, generator=gen)
    out, ssd = fork(loc, conf, PRIORS, targets), RepulsionLoss(C, alpha=0.0, beta=0.0)(loc, conf, PRIORS, targets)
    assert_close(out["loc"], ssd["loc"]) and assert_close(out["conf"], ssd["conf"])
    assert out["rep_box"] == 0
    with_box = ForkRepulsionLoss(C, beta=1.0)(loc, conf, PRIORS, targets)["rep_box"]
    assert_close(with_box, RepulsionLoss(C, beta=1.0)(loc, conf, PRIORS, targets)["rep_box"])
