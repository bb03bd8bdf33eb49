"""SSD's MultiBox loss and the Repulsion Loss terms, batched.

``L = L_loc + L_conf + alpha * L_RepGT + beta * L_RepBox`` (Wang et al. 2018, with SSD's ``L_Attr = L_loc``):

* ``L_loc``: Smooth L1 (beta 1) between predicted offsets and encoded targets, summed over positives.
* ``L_conf``: cross-entropy over positives and hard-mined negatives (the ``neg_pos_ratio * #pos`` negatives
  with the highest background loss, per image).
* ``L_RepGT``: ``Smooth_ln(IoG(B_P, G_rep); sigma_gt)`` summed over positives that have a repulsion target,
  where ``B_P`` is the decoded predicted box.
* ``L_RepBox``: ``Smooth_ln(IoU(B_i, B_j); sigma_box)`` summed over pairs of positives of one image that are
  matched to different GTs, divided by the number of such pairs with ``IoU > 0`` (over the whole batch).

``L_loc``, ``L_conf`` and ``L_RepGT`` are divided by the number of positives in the batch (at least 1).
No Python loop over images, GTs or priors; the maths runs in float32 even under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rssd.boxes import VARIANCES, decode, paired_iog, paired_iou
from rssd.matching import BACKGROUND, Matches, match, pad_targets

__all__ = [
    "smooth_ln",
    "hard_negative_mask",
    "rep_gt_loss",
    "REP_GT_MODES",
    "rep_box_loss",
    "seed_rep_targets",
    "RepulsionLoss",
    "MultiBoxLoss",
]

#: ``smooth_ln`` evaluates ``-ln(1 - x)`` at ``x <= 1 - LN_EPS`` at the most: finite at ``x = 1``.
LN_EPS = 1e-6


def smooth_ln(x: Tensor, sigma: float) -> Tensor:
    """Repulsion Loss's smoothed ``-ln(1 - x)`` for overlaps ``x`` in ``[0, 1]``.

    ``-ln(1 - x)`` for ``x <= sigma``; ``(x - sigma) / (1 - sigma) - ln(1 - sigma)`` above (continuous, with a
    continuous first derivative, at ``sigma``). ``sigma = 0`` is the identity; ``sigma = 1`` is plain
    ``-ln(1 - x)``, whose argument is clamped to ``1 - LN_EPS`` so the value and gradient stay finite.
    Both branches are evaluated on clamped inputs, so no NaN leaks from the branch ``torch.where`` discards.
    """
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"sigma must lie in [0, 1], got {sigma}")
    if sigma >= 1.0 - LN_EPS:
        return -torch.log1p(-x.clamp(max=1.0 - LN_EPS))
    low = -torch.log1p(-torch.minimum(x, torch.full_like(x, sigma)))
    high = (x - sigma) / (1.0 - sigma) - math.log1p(-sigma)
    return torch.where(x <= sigma, low, high)


def hard_negative_mask(ce: Tensor, positive: Tensor, neg_pos_ratio: int) -> Tensor:
    """Select, per image, the ``neg_pos_ratio * #pos`` negatives with the largest loss.

    Args:
        ce: ``(N, P)`` per-prior cross-entropy (detached inside).
        positive: ``(N, P)`` bool.
        neg_pos_ratio: negatives per positive (SSD: 3).

    Returns:
        ``(N, P)`` bool mask of mined negatives. An image without positives gets no negatives (as in SSD).
    """
    mining = ce.detach().masked_fill(positive, float("-inf"))  # positives never count as negatives
    order = mining.argsort(dim=1, descending=True, stable=True)
    ranks = torch.arange(ce.shape[1], device=ce.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, ranks)  # rank of each prior by loss, 0 = hardest
    num_pos = positive.sum(dim=1, keepdim=True)
    num_neg = (neg_pos_ratio * num_pos).clamp(max=positive.shape[1] - num_pos)
    return (rank < num_neg) & ~positive


#: RepGT forms: the paper's ``Smooth_ln(IoG(B, G_rep))``, and rssd's own ``"excess"`` (see :func:`rep_gt_loss`).
REP_GT_MODES = ("paper", "excess")


def rep_gt_loss(
    pred_xyxy: Tensor, rep_boxes: Tensor, has_rep: Tensor, sigma: float, attr_boxes: Tensor | None = None
) -> Tensor:
    """Sum of ``Smooth_ln(IoG(B, G_rep))`` over the boxes marked by ``has_rep`` (``(..., 4)``/``(...)`` inputs).

    With ``attr_boxes`` (each box's own target ``G_attr``) this is rssd's **excess** form, not the paper's: only
    the overlap with ``G_rep`` beyond what the target itself has is penalised,
    ``x = max(0, IoG(B, G_rep) - IoG(G_attr, G_rep)) / (1 - IoG(G_attr, G_rep))`` in ``[0, 1]``, then
    ``Smooth_ln(x)``. The perfect box ``B = G_attr`` costs 0 with zero gradient, while a box drifting towards
    ``G_rep`` is still repelled; the paper's form penalises the perfect box whenever the two targets overlap.
    """
    iog = paired_iog(pred_xyxy, rep_boxes)
    if attr_boxes is not None:
        base = paired_iog(attr_boxes, rep_boxes).detach()
        iog = ((iog - base) / (1.0 - base).clamp(min=LN_EPS)).clamp(0.0, 1.0)
    return (smooth_ln(iog, sigma) * has_rep).sum()


def rep_box_loss(
    pred_xyxy: Tensor, image: Tensor, matched_idx: Tensor, n_img: int, sigma: float
) -> tuple[Tensor, Tensor]:
    """RepBox numerator and pair count over a batch.

    Pairs are the unordered pairs of positives of one image matched to different GTs.

    Args:
        pred_xyxy: ``(K, 4)`` decoded predicted boxes of the batch's positives, grouped by image in order
            (as ``positive.nonzero()`` lists them).
        image: ``(K,)`` the image of each positive (non-decreasing).
        matched_idx: ``(K,)`` the GT each positive is matched to.
        n_img: number of images in the batch.
        sigma: Smooth_ln's sigma (paper: 0).

    Returns:
        ``(sum of Smooth_ln(IoU) over the pairs, number of pairs with IoU > 0)``.
    """
    dev = pred_xyxy.device
    num_pos = torch.bincount(image, minlength=n_img)  # (N,)
    k = int(num_pos.max()) if image.numel() else 0
    if k < 2:
        zero = pred_xyxy.new_zeros(())
        return zero, zero
    # Scatter the positives into (N, K) slots, one row per image; empty slots are masked out.
    start = torch.cumsum(num_pos, 0) - num_pos
    slot = torch.arange(image.numel(), device=dev) - start[image]
    boxes = pred_xyxy.new_zeros(n_img, k, 4).index_put((image, slot), pred_xyxy)  # (N, K, 4)
    owner = torch.full((n_img, k), -1, dtype=torch.long, device=dev).index_put((image, slot), matched_idx)
    filled = torch.arange(k, device=dev)[None, :] < num_pos[:, None]  # (N, K)
    iou = paired_iou(boxes[:, :, None, :], boxes[:, None, :, :])  # (N, K, K)
    upper = torch.ones(k, k, dtype=torch.bool, device=dev).triu(diagonal=1)
    pair = upper & filled[:, :, None] & filled[:, None, :] & (owner[:, :, None] != owner[:, None, :])
    total = (smooth_ln(iou, sigma) * pair).sum()
    count = (pair & (iou > 0)).sum().to(total.dtype)
    return total, count


def seed_rep_targets(
    pred_xyxy: Tensor, image: Tensor, matched_idx: Tensor, gt_boxes: Tensor, gt_valid: Tensor
) -> Tensor:
    """The original SSD Repulsion fork's repulsion targets (for ``seed_compat``; do not train with this).

    The fork's rule, exactly: for each positive, the IoU of every GT of its image (any class) with the positive's
    *predicted* box; the entry of the positive's *matched* GT (matched by prior IoU, as usual) set to -1; the
    repulsion target is the arg-max of that row. With a single GT the row is ``[-1]`` and the arg-max is the
    matched GT itself: the prediction is repelled from its own target. (rssd's rule, in :mod:`rssd.matching`,
    ranks the other GTs by IoU with the *prior*, within the class, and gives no target when none overlaps.)

    Args:
        pred_xyxy: ``(K, 4)`` decoded predictions of the positives (only read, never differentiated through).
        image: ``(K,)`` the image of each positive.
        matched_idx: ``(K,)`` the GT each positive is matched to (``Matches.matched_idx`` at the positives).
        gt_boxes: ``(N, G, 4)`` padded GTs, normalised ``xyxy``.
        gt_valid: ``(N, G)`` bool, False on padding rows (which are never chosen).

    Returns:
        ``(K,)`` long, the index (into ``G``) of every positive's repulsion GT; each positive has one. Ties go to the
        lowest index, as ``argmax`` gives them.
    """
    iou = paired_iou(gt_boxes[image], pred_xyxy.detach()[:, None, :])  # (K, G)
    iou = iou.masked_fill(~gt_valid[image], float("-inf"))  # padding: below the matched GT's -1
    iou = iou.scatter(1, matched_idx[:, None], -1.0)
    return iou.argmax(dim=1)


class RepulsionLoss(nn.Module):
    """SSD MultiBox loss plus Repulsion Loss (RepGT and RepBox), returning the named terms.

    Args:
        num_classes: classes including background (21 for VOC).
        alpha: weight of RepGT (paper: 0.5). ``alpha = beta = 0`` is plain SSD.
        beta: weight of RepBox (paper: 0.5).
        sigma_gt: Smooth_ln's sigma in RepGT (paper's best: 1).
        sigma_box: Smooth_ln's sigma in RepBox (paper's best: 0).
        same_class: choose ``G_rep`` among GTs of ``G_attr``'s class only (rssd's default for multi-class).
        neg_pos_ratio: hard negatives per positive (3).
        iou_threshold: matching threshold (0.5).
        variances: box coder variances (0.1, 0.2).
        seed_compat: reproduce the original fork's RepGT for comparison: ``G_rep`` is the GT, any class, of
            largest IoU with the *predicted* box once the matched GT's entry is set to -1 (:func:`seed_rep_targets`;
            on single-GT images the matched GT itself), plain sum of IoG (sigma 0), weight 1, divided by the number
            of positives. Overrides ``alpha``, ``sigma_gt`` and ``same_class``; RepBox is off unless ``beta``.
        rep_gt_mode: ``"paper"`` (``Smooth_ln(IoG(B, G_rep))``) or rssd's ``"excess"`` (only the overlap beyond the
            target's own is penalised, so the perfect box is free: :func:`rep_gt_loss`).

    Call: ``loss(loc (N, P, 4), conf (N, P, C), priors (P, 4) cxcywh, targets)`` with ``targets`` a list of
    ``{"boxes": (G, 4) xyxy in [0, 1], "labels": (G,) in 1..C-1}``. Returns a dict of scalar tensors
    ``loc``, ``conf``, ``rep_gt``, ``rep_box`` and ``total = loc + conf + alpha * rep_gt + beta * rep_box``.
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.5,
        beta: float = 0.5,
        sigma_gt: float = 1.0,
        sigma_box: float = 0.0,
        same_class: bool = True,
        neg_pos_ratio: int = 3,
        iou_threshold: float = 0.5,
        variances: tuple[float, float] = VARIANCES,
        seed_compat: bool = False,
        rep_gt_mode: str = "paper",
    ) -> None:
        super().__init__()
        if rep_gt_mode not in REP_GT_MODES:
            raise ValueError(f"rep_gt_mode must be one of {REP_GT_MODES}, got {rep_gt_mode!r}")
        if seed_compat and rep_gt_mode != "paper":
            raise ValueError("seed_compat reproduces the original fork's RepGT: it takes rep_gt_mode='paper' only")
        for name, sigma in (("sigma_gt", sigma_gt), ("sigma_box", sigma_box)):
            if not 0.0 <= sigma <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {sigma}")
        if seed_compat:
            alpha, sigma_gt, same_class = 1.0, 0.0, False
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta
        self.sigma_gt = sigma_gt
        self.sigma_box = sigma_box
        self.same_class = same_class
        self.neg_pos_ratio = neg_pos_ratio
        self.iou_threshold = iou_threshold
        self.variances = variances
        self.seed_compat = seed_compat
        self.rep_gt_mode = rep_gt_mode

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, alpha={self.alpha}, beta={self.beta}, sigma_gt={self.sigma_gt}, "
            f"sigma_box={self.sigma_box}, same_class={self.same_class}, seed_compat={self.seed_compat}, "
            f"rep_gt_mode={self.rep_gt_mode!r}"
        )

    def match(self, priors: Tensor, targets: list[dict[str, Tensor]]) -> Matches:
        """The matching this loss uses (exposed for notebooks and tests)."""
        return match(priors, pad_targets(targets, priors.device), self.iou_threshold, self.same_class, self.variances)

    def forward(
        self, loc: Tensor, conf: Tensor, priors: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        if loc.shape[:2] != conf.shape[:2] or loc.shape[1] != priors.shape[0]:
            raise ValueError(
                f"shapes disagree: loc {tuple(loc.shape)}, conf {tuple(conf.shape)}, priors {tuple(priors.shape)}"
            )
        if len(targets) != loc.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {loc.shape[0]} images")
        if conf.shape[2] != self.num_classes:
            raise ValueError(f"conf has {conf.shape[2]} classes, the loss was built for {self.num_classes}")
        loc, conf, priors = loc.float(), conf.float(), priors.float()
        m = self.match(priors, targets)
        labels = m.targets.labels[m.targets.valid]
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"target labels must lie in 1..{self.num_classes - 1} (0 is background), "
                f"got {int(labels.min())}..{int(labels.max())}"
            )
        pos = m.positive  # (N, P)
        pos_img, pos_pri = pos.nonzero(as_tuple=True)  # (K,) positives, grouped by image
        num_pos = torch.tensor(max(pos_img.numel(), 1), dtype=loc.dtype, device=loc.device)

        loc_pos = loc[pos_img, pos_pri]  # (K, 4)
        loss_loc = F.smooth_l1_loss(loc_pos, m.loc_targets[pos_img, pos_pri], reduction="sum", beta=1.0)

        ce = F.cross_entropy(conf.reshape(-1, self.num_classes), m.labels.reshape(-1), reduction="none")
        ce = ce.reshape(pos.shape)  # (N, P)
        neg = hard_negative_mask(ce, pos, self.neg_pos_ratio)
        loss_conf = (ce * (pos | neg)).sum()

        zero = torch.zeros((), dtype=loc.dtype, device=loc.device)
        loss_rep_gt, loss_rep_box = zero, zero
        if self.alpha or self.beta:
            pred_pos = decode(loc_pos, priors[pos_pri], self.variances)  # (K, 4): gradients reach `loc`
            if self.alpha:
                if self.seed_compat:
                    matched = m.matched_idx[pos_img, pos_pri]
                    rep_idx = seed_rep_targets(pred_pos, pos_img, matched, m.targets.boxes, m.targets.valid)
                    rep_boxes = m.targets.boxes[pos_img, rep_idx]
                    has_rep = torch.ones_like(pos_img, dtype=torch.bool)
                else:
                    rep_boxes = m.rep_boxes[pos_img, pos_pri]
                    has_rep = m.rep_idx[pos_img, pos_pri] != BACKGROUND
                attr = m.matched_boxes[pos_img, pos_pri] if self.rep_gt_mode == "excess" else None
                loss_rep_gt = rep_gt_loss(pred_pos, rep_boxes, has_rep, self.sigma_gt, attr) / num_pos
            if self.beta:
                total_box, count = rep_box_loss(
                    pred_pos, pos_img, m.matched_idx[pos_img, pos_pri], pos.shape[0], self.sigma_box
                )
                loss_rep_box = total_box / (count + 1e-9)

        out = {"loc": loss_loc / num_pos, "conf": loss_conf / num_pos, "rep_gt": loss_rep_gt, "rep_box": loss_rep_box}
        out["total"] = out["loc"] + out["conf"] + self.alpha * out["rep_gt"] + self.beta * out["rep_box"]
        return out


class MultiBoxLoss(RepulsionLoss):
    """Plain SSD loss: :class:`RepulsionLoss` with ``alpha = beta = 0`` (``rep_gt`` and ``rep_box`` are 0)."""

    def __init__(self, num_classes: int, neg_pos_ratio: int = 3, iou_threshold: float = 0.5, **kwargs) -> None:
        super().__init__(
            num_classes, alpha=0.0, beta=0.0, neg_pos_ratio=neg_pos_ratio, iou_threshold=iou_threshold, **kwargs
        )
