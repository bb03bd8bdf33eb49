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

:class:`MultiBoxLoss` is plain SSD (the first two terms); :class:`RepulsionLoss` extends it with the last two.
Both return the terms named by :data:`LOSS_TERMS` (the repulsion ones 0 in plain SSD). The original fork's
variant, for comparisons only, is in :mod:`rssd.fork`.

Where the time goes (``benchmarks/bench_loss.py``): the loss matches on the (GT, prior) pairs that can reach the
IoU threshold only, mines negatives on the background cross-entropy of every prior (no graph) with a per-image
top-k cut-off, and keeps the cross-entropy's graph to the chosen priors; RepBox looks only at pairs of positives
whose boxes overlap. Every result equals the straightforward dense computation's (tests compare them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rssd.boxes import cxcywh_to_xyxy, decode, elementwise_iog, encode, iou_of_corners
from rssd.matching import NO_REPULSION, Matches, PaddedTargets, _match_core, match, pad_targets

__all__ = [
    "LOSS_TERMS",
    "smooth_ln",
    "hard_negative_mask",
    "rep_gt_loss",
    "REP_GT_MODES",
    "rep_box_loss",
    "Positives",
    "MultiBoxLoss",
    "RepulsionLoss",
]

#: The named terms every loss of rssd returns, in this order (``total`` last). Training logs, plots and the CLI
#: read this tuple.
LOSS_TERMS: tuple[str, ...] = ("loc", "conf", "rep_gt", "rep_box", "total")

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
    iog = elementwise_iog(pred_xyxy, rep_boxes)
    if attr_boxes is not None:
        base = elementwise_iog(attr_boxes, rep_boxes).detach()
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
    # On coordinate columns: cheaper to gather and to scatter back than (pairs, 4) rows.
    columns = pred_xyxy.unbind(1)
    iou = iou_of_corners([c.index_select(0, first) for c in columns], [c.index_select(0, second) for c in columns])
    total = smooth_ln(iou, sigma).sum()
    count = (iou > 0).sum().to(total.dtype)
    return total, count


@dataclass
class Positives:
    """The positives of a batch, as the loss terms read them (``K`` positives, grouped by image).

    Attributes:
        image, prior: ``(K,)`` where each positive is (``positive.nonzero()``'s order).
        gt: ``(K,)`` index of its ``G_attr`` into the padded GTs; ``labels``: ``(K,)`` its class.
        rep: ``(K,)`` index of its ``G_rep`` (:mod:`rssd.matching`'s rule) or ``NO_REPULSION``.
        attr_boxes: ``(K, 4)`` ``xyxy`` of ``G_attr``.
        priors: ``(K, 4)`` its prior, ``cxcywh``.
        loc: ``(K, 4)`` its predicted offsets (with their graph).
        positive: ``(N, P)`` bool.
        targets: the padded GTs the indices refer to.
        count: number of positives in the batch, at least 1 (the divisor of ``loc``, ``conf`` and ``rep_gt``).
    """

    image: Tensor
    prior: Tensor
    gt: Tensor
    labels: Tensor
    rep: Tensor
    attr_boxes: Tensor
    priors: Tensor
    loc: Tensor
    positive: Tensor
    targets: PaddedTargets
    count: Tensor

    def decoded(self) -> Tensor:
        """``(K, 4)`` the predicted boxes, ``xyxy`` (gradients reach ``loc``)."""
        return decode(self.loc, self.priors)


class MultiBoxLoss(nn.Module):
    """SSD's MultiBox loss: Smooth L1 on the positives' offsets, cross-entropy on positives and hard negatives.

    Args:
        num_classes: classes including background (21 for VOC).
        neg_pos_ratio: hard negatives per positive (3).
        iou_threshold: matching threshold (0.5).

    Call: ``loss(loc (N, P, 4), conf (N, P, C), priors (P, 4) cxcywh, targets)`` with ``targets`` a list of
    ``{"boxes": (G, 4) xyxy in [0, 1], "labels": (G,) in 1..C-1}``. Returns a dict of scalar tensors named by
    :data:`LOSS_TERMS`: ``loc``, ``conf``, ``rep_gt`` and ``rep_box`` (both 0 here) and ``total = loc + conf``.
    :class:`RepulsionLoss` extends it with the two repulsion terms.
    """

    #: The matching's repulsion targets (rule 4, :meth:`match` only: the MultiBox terms do not read them) are of the
    #: ``G_attr``'s class.
    same_class: bool = True

    def __init__(self, num_classes: int, neg_pos_ratio: int = 3, iou_threshold: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.neg_pos_ratio = neg_pos_ratio
        self.iou_threshold = iou_threshold

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, neg_pos_ratio={self.neg_pos_ratio}, iou_threshold={self.iou_threshold}"

    def match(self, priors: Tensor, targets: list[dict[str, Tensor]]) -> Matches:
        """The matching this loss uses (exposed for notebooks and tests)."""
        return match(priors, pad_targets(targets, priors.device), self.iou_threshold, self.same_class)

    def forward(
        self, loc: Tensor, conf: Tensor, priors: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        loc, conf, priors = loc.float(), conf.float(), priors.float()
        pos = self.positives(loc, conf, priors, targets)
        loss_loc = F.smooth_l1_loss(pos.loc, encode(pos.attr_boxes, pos.priors), reduction="sum", beta=1.0)
        out = {"loc": loss_loc / pos.count, "conf": self.conf_loss(conf, pos) / pos.count, **self.repulsion(pos)}
        out["total"] = self.total(out)
        return out

    def positives(self, loc: Tensor, conf: Tensor, priors: Tensor, targets: list[dict[str, Tensor]]) -> Positives:
        """Check the inputs and match: what :meth:`match` gives, on the positives only (the loss reads no more)."""
        if loc.shape[:2] != conf.shape[:2] or loc.shape[1] != priors.shape[0]:
            raise ValueError(
                f"shapes disagree: loc {tuple(loc.shape)}, conf {tuple(conf.shape)}, priors {tuple(priors.shape)}"
            )
        if len(targets) != loc.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {loc.shape[0]} images")
        if conf.shape[2] != self.num_classes:
            raise ValueError(f"conf has {conf.shape[2]} classes, the loss was built for {self.num_classes}")
        padded = pad_targets(targets, priors.device)
        labels = padded.labels[padded.valid]
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"target labels must lie in 1..{self.num_classes - 1} (0 is background), "
                f"got {int(labels.min())}..{int(labels.max())}"
            )
        m = _match_core(cxcywh_to_xyxy(priors), padded, self.iou_threshold, self.same_class, full=False)
        n_pri = m.positive.shape[1]
        return Positives(
            image=m.pos_img,
            prior=m.pos_pri,
            gt=m.pos_gt,
            labels=m.pos_labels,
            rep=m.pos_rep,
            attr_boxes=padded.boxes[m.pos_img, m.pos_gt],
            priors=priors.index_select(0, m.pos_pri),
            loc=loc.reshape(-1, 4).index_select(0, m.pos_img * n_pri + m.pos_pri),
            positive=m.positive,
            targets=padded,
            count=torch.tensor(max(m.pos_img.numel(), 1), dtype=loc.dtype, device=loc.device),
        )

    def conf_loss(self, conf: Tensor, pos: Positives) -> Tensor:
        """Cross-entropy summed over the positives and the mined negatives.

        Negatives are mined on the background loss of every prior (no gradient needed), then the loss and its
        gradient are computed on the chosen rows only.
        """
        n_img, n_pri = pos.positive.shape
        conf_flat = conf.reshape(-1, self.num_classes)
        background = _background_ce(conf_flat).view(n_img, n_pri)  # = CE with label 0
        neg_img, neg_pri = hard_negative_mask(background, pos.positive, self.neg_pos_ratio).nonzero(as_tuple=True)
        rows = torch.cat([pos.image * n_pri + pos.prior, neg_img * n_pri + neg_pri])
        classes = torch.cat([pos.labels, torch.zeros_like(neg_img)])
        loss_conf = F.cross_entropy(conf_flat.index_select(0, rows), classes, reduction="sum")
        # A non-finite logit anywhere still makes the loss non-finite, as when every prior's CE was summed.
        return loss_conf + background.masked_fill(pos.positive, 0.0).sum() * 0.0

    def repulsion(self, pos: Positives) -> dict[str, Tensor]:
        """``rep_gt`` and ``rep_box``: none in plain SSD (zeros)."""
        zero = pos.loc.new_zeros(())
        return {"rep_gt": zero, "rep_box": zero}

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """The optimised sum of the terms."""
        return terms["loc"] + terms["conf"]


class RepulsionLoss(MultiBoxLoss):
    """SSD's MultiBox loss plus Repulsion Loss (RepGT and RepBox), returning the named terms.

    Args:
        num_classes: classes including background (21 for VOC).
        alpha: weight of RepGT (paper: 0.5). ``alpha = beta = 0`` is plain SSD (:class:`MultiBoxLoss`'s terms).
        beta: weight of RepBox (paper: 0.5).
        sigma_gt: Smooth_ln's sigma in RepGT (paper's best: 1).
        sigma_box: Smooth_ln's sigma in RepBox (paper's best: 0).
        same_class: choose ``G_rep`` among GTs of ``G_attr``'s class only (rssd's default for multi-class).
        neg_pos_ratio: hard negatives per positive (3).
        iou_threshold: matching threshold (0.5).
        rep_gt_mode: ``"paper"`` (``Smooth_ln(IoG(B, G_rep))``) or rssd's ``"excess"`` (only the overlap beyond the
            target's own is penalised, so the perfect box is free: :func:`rep_gt_loss`).

    Call as :class:`MultiBoxLoss`; ``total = loc + conf + alpha * rep_gt + beta * rep_box``. (The original fork's
    RepGT, for comparisons only, is :class:`rssd.fork.ForkRepulsionLoss`.)
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
        rep_gt_mode: str = "paper",
    ) -> None:
        super().__init__(num_classes, neg_pos_ratio, iou_threshold)
        if rep_gt_mode not in REP_GT_MODES:
            raise ValueError(f"rep_gt_mode must be one of {REP_GT_MODES}, got {rep_gt_mode!r}")
        for name, sigma in (("sigma_gt", sigma_gt), ("sigma_box", sigma_box)):
            if not 0.0 <= sigma <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {sigma}")
        self.alpha = alpha
        self.beta = beta
        self.sigma_gt = sigma_gt
        self.sigma_box = sigma_box
        self.same_class = same_class
        self.rep_gt_mode = rep_gt_mode

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, alpha={self.alpha}, beta={self.beta}, sigma_gt={self.sigma_gt}, "
            f"sigma_box={self.sigma_box}, same_class={self.same_class}, rep_gt_mode={self.rep_gt_mode!r}"
        )

    def repulsion(self, pos: Positives) -> dict[str, Tensor]:
        """``rep_gt`` (divided by the number of positives) and ``rep_box`` (by its overlapping pairs)."""
        zero = pos.loc.new_zeros(())
        out = {"rep_gt": zero, "rep_box": zero}
        if not (self.alpha or self.beta):
            return out
        pred = pos.decoded()  # (K, 4)
        if self.alpha:
            rep_boxes, has_rep = self.rep_targets(pos, pred)
            attr = pos.attr_boxes if self.rep_gt_mode == "excess" else None
            out["rep_gt"] = rep_gt_loss(pred, rep_boxes, has_rep, self.sigma_gt, attr) / pos.count
        if self.beta:
            total_box, count = rep_box_loss(pred, pos.image, pos.gt, pos.positive.shape[0], self.sigma_box)
            out["rep_box"] = total_box / (count + 1e-9)
        return out

    def rep_targets(self, pos: Positives, pred_xyxy: Tensor) -> tuple[Tensor, Tensor]:
        """``(K, 4)`` every positive's ``G_rep`` (zeros where it has none) and ``(K,)`` bool: whether it has one.

        rssd's rule (the matching's rule 4, by IoU with the prior); ``pred_xyxy`` is not read here.
        """
        has_rep = pos.rep != NO_REPULSION
        return pos.targets.boxes[pos.image, pos.rep.clamp(min=0)] * has_rep[:, None], has_rep

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        return terms["loc"] + terms["conf"] + self.alpha * terms["rep_gt"] + self.beta * terms["rep_box"]
