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

Where the time goes (``benchmarks/bench_loss.py``): the loss matches on the (GT, prior) pairs that can reach the
IoU threshold only, mines negatives on the background cross-entropy of every prior (no graph) with a per-image
top-k cut-off, and keeps the cross-entropy's graph to the chosen priors; RepBox looks only at pairs of positives
whose boxes overlap. Every result equals the straightforward dense computation's (tests compare them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rssd.boxes import VARIANCES, cxcywh_to_xyxy, decode, encode, paired_iog, paired_iou
from rssd.matching import NO_REPULSION, Matches, _match_core, match, pad_targets

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

    Ties are broken by the lower prior index (what a stable descending sort gives). Each image's cut-off is read
    from one batched ``topk`` (as deep as the largest image's quota), not from a full sort of every row.

    Args:
        ce: ``(N, P)`` per-prior cross-entropy (detached inside).
        positive: ``(N, P)`` bool.
        neg_pos_ratio: negatives per positive (SSD: 3).

    Returns:
        ``(N, P)`` bool mask of mined negatives. An image without positives gets no negatives (as in SSD).
    """
    mining = ce.detach().masked_fill(positive, float("-inf"))  # positives never count as negatives
    n_pri = positive.shape[1]
    num_pos = positive.sum(dim=1, keepdim=True)
    num_neg = (neg_pos_ratio * num_pos).clamp(max=n_pri - num_pos)  # (N, 1)
    depth = int(num_neg.max()) if num_neg.numel() else 0
    if depth == 0:
        return torch.zeros_like(positive)
    # The cut-off of image n is its num_neg-th largest loss: every loss above it is taken, and of the losses equal
    # to it, the lowest-index ones until the quota is full. One more value than the deepest quota tells whether
    # the cut-off is tied beyond the quota (then the tie is broken by index).
    top = mining.topk(min(depth + 1, n_pri), dim=1, sorted=True).values  # (N, D), NaN first as in a sort
    if bool(top[:, 0].isnan().any()):  # keep the sort's order exactly
        order = mining.argsort(dim=1, descending=True, stable=True)
        ranks = torch.arange(n_pri, device=ce.device).expand_as(order)
        rank = torch.empty_like(order).scatter_(1, order, ranks)  # rank of each prior by loss, 0 = hardest
        return (rank < num_neg) & ~positive
    cut = torch.where(num_neg > 0, top.gather(1, (num_neg - 1).clamp(min=0)), float("nan"))  # (N, 1); NaN: none
    after = top.gather(1, num_neg.clamp(max=top.shape[1] - 1))  # the next value, < cut unless tied
    if bool(((num_neg == 0) | ((after < cut) & (cut > float("-inf")))).all()):
        return mining >= cut  # exactly num_neg per image; positives (-inf) stay out
    chosen = mining > cut
    at_cut = mining == cut
    at_cut &= at_cut.cumsum(dim=1) <= num_neg - chosen.sum(dim=1, keepdim=True)
    return (chosen | at_cut) & ~positive  # (a positive could only tie a cut-off of -inf)


def _background_ce(conf_flat: Tensor) -> Tensor:
    """``F.cross_entropy(conf_flat, 0)`` of every row, bit for bit, without a graph: ``(R,)``.

    On CPU in blocks of rows whose log-softmax stays in cache (reading its first column straight after); the
    result is the same, row by row, as one call.
    """
    with torch.no_grad():
        if conf_flat.device.type != "cpu":
            return -F.log_softmax(conf_flat, dim=1)[:, 0]
        out = conf_flat.new_empty(conf_flat.shape[0])
        step = max(1, (1 << 19) // max(conf_flat.shape[1], 1))  # 2 MiB of logits per block
        for i in range(0, conf_flat.shape[0], step):
            torch.neg(F.log_softmax(conf_flat[i : i + step], dim=1)[:, 0], out=out[i : i + step])
        return out


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

    Pairs are the unordered pairs of positives of one image matched to different GTs. Only pairs whose boxes
    overlap (or touch) in both x and y go through the differentiable part: for the others the IoU, its gradient and
    their count are exactly 0 (touching boxes are kept, their gradient is not 0). They are found without listing
    every pair: sorted by ``x1`` within each image, box ``i`` can only meet the boxes after it up to the first
    whose ``x1`` exceeds its ``x2`` (a ``searchsorted``).

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
    n_pos = image.numel()
    zero = pred_xyxy.new_zeros(())
    if n_pos < 2:
        return zero, zero
    with torch.no_grad():
        x1, y1, x2, y2 = pred_xyxy.detach().unbind(1)
        # A key increasing with (image, x1); clamping and float rounding keep it monotone, so the search below
        # finds a superset of the boxes whose x1 <= x2 of box i (the x-overlap test for boxes after i).
        span = 4.0
        offset = image.to(x1.dtype) * (2 * span + 1) + span
        order = torch.sort(x1.clamp(-span, span) + offset, stable=True).indices  # by image, then x1
        key = (x1.clamp(-span, span) + offset).index_select(0, order)
        reach = torch.searchsorted(key, (x2.clamp(-span, span) + offset).index_select(0, order), right=True)
        ar = torch.arange(n_pos, device=dev)
        after = (reach - ar - 1).clamp_(min=0)  # candidates after each sorted box
        n_cand = int(after.sum())
        if n_cand == 0:
            return zero, zero
        i = torch.repeat_interleave(ar, after, output_size=n_cand)
        j = i + 1 + (torch.arange(n_cand, device=dev) - (torch.cumsum(after, 0) - after).index_select(0, i))
        first, second = order.index_select(0, i), order.index_select(0, j)
        keep = matched_idx.index_select(0, first) != matched_idx.index_select(0, second)
        for lo, hi in ((x1, x2), (y1, y2)):
            gap = torch.minimum(hi.index_select(0, first), hi.index_select(0, second))
            gap -= torch.maximum(lo.index_select(0, first), lo.index_select(0, second))
            keep &= ~(gap < 0)  # NaN stays in
        keep = keep.nonzero().squeeze(1)
        first, second = first.index_select(0, keep), second.index_select(0, keep)
    # paired_iou's operations, on coordinate columns (cheaper to gather and to scatter back than (pairs, 4) rows).
    ax1, ay1, ax2, ay2 = (c.index_select(0, first) for c in pred_xyxy.unbind(1))
    bx1, by1, bx2, by2 = (c.index_select(0, second) for c in pred_xyxy.unbind(1))
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    inter = inter * (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    iou = inter / (union + 1e-9)  # (pairs,)
    total = smooth_ln(iou, sigma).sum()
    count = (iou > 0).sum().to(total.dtype)
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
        padded = pad_targets(targets, priors.device)
        labels = padded.labels[padded.valid]
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"target labels must lie in 1..{self.num_classes - 1} (0 is background), "
                f"got {int(labels.min())}..{int(labels.max())}"
            )
        # What `self.match` gives, on the positives only (the loss reads nothing else).
        m = _match_core(cxcywh_to_xyxy(priors), padded, self.iou_threshold, self.same_class, full=False)
        pos, pos_img, pos_pri, pos_gt = m.positive, m.pos_img, m.pos_pri, m.pos_gt  # (N, P); (K,) by image
        n_img, n_pri = pos.shape
        gt_boxes = padded.boxes
        num_pos = torch.tensor(max(pos_img.numel(), 1), dtype=loc.dtype, device=loc.device)

        pos_flat = pos_img * n_pri + pos_pri  # (K,)
        loc_pos = loc.reshape(-1, 4).index_select(0, pos_flat)  # (K, 4)
        attr_boxes = gt_boxes[pos_img, pos_gt]  # (K, 4) G_attr
        priors_pos = priors.index_select(0, pos_pri)
        loc_targets = encode(attr_boxes, priors_pos, self.variances)
        loss_loc = F.smooth_l1_loss(loc_pos, loc_targets, reduction="sum", beta=1.0)

        # Cross-entropy: negatives are mined on the background loss of every prior (no gradient needed), then
        # the loss and its gradient are computed on the chosen rows only (positives and mined negatives).
        conf_flat = conf.reshape(-1, self.num_classes)
        background = _background_ce(conf_flat).view(n_img, n_pri)  # = CE with label 0
        neg_img, neg_pri = hard_negative_mask(background, pos, self.neg_pos_ratio).nonzero(as_tuple=True)
        rows = torch.cat([pos_flat, neg_img * n_pri + neg_pri])
        classes = torch.cat([m.pos_labels, torch.zeros_like(neg_img)])
        loss_conf = F.cross_entropy(conf_flat.index_select(0, rows), classes, reduction="sum")
        # A non-finite logit anywhere still makes the loss non-finite, as when every prior's CE was summed.
        loss_conf = loss_conf + background.masked_fill(pos, 0.0).sum() * 0.0

        zero = torch.zeros((), dtype=loc.dtype, device=loc.device)
        loss_rep_gt, loss_rep_box = zero, zero
        if self.alpha or self.beta:
            pred_pos = decode(loc_pos, priors_pos, self.variances)  # (K, 4): gradients reach `loc`
            if self.alpha:
                if self.seed_compat:
                    rep_idx = seed_rep_targets(pred_pos, pos_img, pos_gt, gt_boxes, padded.valid)
                    rep_boxes = gt_boxes[pos_img, rep_idx]
                    has_rep = torch.ones_like(pos_img, dtype=torch.bool)
                else:
                    has_rep = m.pos_rep != NO_REPULSION
                    rep_boxes = gt_boxes[pos_img, m.pos_rep.clamp(min=0)] * has_rep[:, None]
                attr = attr_boxes if self.rep_gt_mode == "excess" else None
                loss_rep_gt = rep_gt_loss(pred_pos, rep_boxes, has_rep, self.sigma_gt, attr) / num_pos
            if self.beta:
                total_box, count = rep_box_loss(pred_pos, pos_img, pos_gt, n_img, self.sigma_box)
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
