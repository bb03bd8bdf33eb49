"""Matching priors to ground truth, batched over images.

For a batch of ``N`` images with different numbers of ground-truth (GT) boxes, :func:`match` decides for every
prior (default box) whether it is a positive, which GT it regresses to (its *attraction* target, ``G_attr``)
and which other GT repels it (its *repulsion* target, ``G_rep``, used by RepGT). Everything is computed on
padded ``(N, G, P)`` tensors, with no Python loop over images, GTs or priors.

The rules (SSD, Liu et al. 2016, as in ssd.pytorch; the repulsion target from Wang et al. 2018):

1. IoU between every GT and every prior (priors as corners).
2. **Forced match.** Every GT takes its best prior, whatever that IoU is, so no GT goes unlearned.
   *Our rule when two GTs want the same prior* (ssd.pytorch lets the last GT win and the other may lose its
   only positive): the GT with the higher IoU with that prior keeps it (ties: lower GT index), and the loser
   takes its best prior not yet taken; repeated until every GT holds a distinct prior. Without such conflicts
   this is exactly SSD's rule. Rounds repeat only while conflicts remain (usually 0 or 1 extra round).
3. **Threshold.** Every other prior takes the GT with which it has the largest IoU, and is positive when that
   IoU is ``>= iou_threshold`` (0.5).
4. **Repulsion target.** For every positive prior: among the image's GTs other than its matched one
   (restricted to the same class when ``same_class``), the one with the largest IoU with the *prior*. None
   (``-1``) when no candidate exists or its IoU is 0: a single-GT image never repels from its own target.

Integer codes (in the spirit of detectron2's matcher): ``matched_idx == BACKGROUND (-1)`` marks a negative;
``rep_idx == NO_REPULSION (-1)`` marks a prior without repulsion target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from rssd.boxes import VARIANCES, box_iou, cxcywh_to_xyxy, encode

__all__ = ["BACKGROUND", "NO_REPULSION", "PaddedTargets", "Matches", "pad_targets", "match", "forced_priors"]

BACKGROUND = -1
NO_REPULSION = -1


@dataclass
class PaddedTargets:
    """A batch of targets padded to the largest number of GTs (at least 1).

    Attributes:
        boxes: ``(N, G, 4)`` normalised ``xyxy``; padding rows are zeros.
        labels: ``(N, G)`` long class labels in ``1..C-1``; padding is 0.
        valid: ``(N, G)`` bool, False on padding rows.
    """

    boxes: Tensor
    labels: Tensor
    valid: Tensor


@dataclass
class Matches:
    """What :func:`match` decides, per image ``n`` and prior ``p``.

    Attributes:
        matched_idx: ``(N, P)`` long, index of the matched GT (``G_attr``) or ``BACKGROUND``.
        positive: ``(N, P)`` bool, ``matched_idx != BACKGROUND``.
        labels: ``(N, P)`` long, the matched GT's class, 0 for background.
        matched_boxes: ``(N, P, 4)`` ``xyxy`` of ``G_attr`` (of GT 0 / zeros for background: never read).
        loc_targets: ``(N, P, 4)`` the encoded regression targets (meaningful on positives only).
        iou: ``(N, P)`` IoU of each prior with its matched GT (the best GT for negatives).
        forced: ``(N, P)`` bool, positives that come from the forced best-prior rule.
        rep_idx: ``(N, P)`` long, index of ``G_rep`` or ``NO_REPULSION`` (always ``NO_REPULSION`` on negatives).
        rep_boxes: ``(N, P, 4)`` ``xyxy`` of ``G_rep`` (zeros where there is none).
        targets: the padded GTs the indices refer to.
    """

    matched_idx: Tensor
    positive: Tensor
    labels: Tensor
    matched_boxes: Tensor
    loc_targets: Tensor
    iou: Tensor
    forced: Tensor
    rep_idx: Tensor
    rep_boxes: Tensor
    targets: PaddedTargets


def pad_targets(targets: list[dict[str, Tensor]], device: torch.device | str | None = None) -> PaddedTargets:
    """Pad a list of ``{"boxes": (G_i, 4), "labels": (G_i,)}`` to one :class:`PaddedTargets`.

    Images without GT are allowed (``G_i = 0``). ``G`` is at least 1 so that reductions over GTs are defined.
    """
    if len(targets) == 0:
        raise ValueError("pad_targets needs at least one image")
    boxes = [t["boxes"].reshape(-1, 4).to(device=device, dtype=torch.float32) for t in targets]
    labels = [t["labels"].reshape(-1).to(device=device, dtype=torch.long) for t in targets]
    dev = boxes[0].device
    # One all-invalid row guarantees G >= 1.
    boxes.append(torch.zeros(1, 4, device=dev))
    labels.append(torch.zeros(1, dtype=torch.long, device=dev))
    counts = torch.tensor([len(b) for b in boxes[:-1]] + [1], device=dev)
    boxes_p = pad_sequence(boxes, batch_first=True)[:-1]  # (N, G, 4)
    labels_p = pad_sequence(labels, batch_first=True)[:-1]  # (N, G)
    g = torch.arange(boxes_p.shape[1], device=dev)
    valid = g[None, :] < counts[:-1, None]  # (N, G)
    return PaddedTargets(boxes=boxes_p, labels=labels_p, valid=valid)


def forced_priors(iou: Tensor, valid: Tensor) -> Tensor:
    """Give every valid GT a distinct best prior (rule 2 of the module docstring).

    Works on the flat list of valid GTs; a round only revisits the GTs that lost a contest in the last one.

    Args:
        iou: ``(N, G, P)`` IoU between GTs and priors.
        valid: ``(N, G)`` bool.

    Returns:
        ``(N, G)`` long, the prior each GT is forced onto, ``-1`` for padding (and, only if an image had more
        GTs than priors, for GTs left without one).
    """
    n_img, n_gt, n_pri = iou.shape
    dev = iou.device
    forced = torch.full((n_img, n_gt), -1, dtype=torch.long, device=dev)
    taken = torch.zeros(n_img * n_pri, dtype=torch.bool, device=dev)  # flat (image, prior) slots
    rows_img, rows_gt = valid.nonzero(as_tuple=True)  # (U,) the GTs still looking for a prior
    best_prior = iou.argmax(dim=2)[rows_img, rows_gt]  # round 1 reads the full tensor; argmax: first of ties
    cand = None  # (U, P) rows with taken priors masked, built once a GT has lost a contest
    while rows_img.numel():
        if cand is not None:
            best_prior = cand.argmax(dim=1)
            best_iou = cand.gather(1, best_prior[:, None]).squeeze(1)
        else:
            best_iou = iou[rows_img, rows_gt, best_prior]
        alive = best_iou >= 0  # a row of -1 has no prior left at all
        if not bool(alive.all()):
            rows_img, rows_gt, best_prior, best_iou = (t[alive] for t in (rows_img, rows_gt, best_prior, best_iou))
            cand = cand[alive] if cand is not None else None
        slot = rows_img * n_pri + best_prior
        # For each contested prior the highest IoU wins, and among equal IoUs the lowest GT index.
        top = torch.full((n_img * n_pri,), -2.0, device=dev, dtype=best_iou.dtype)
        top = top.scatter_reduce(0, slot, best_iou, "amax")
        win = best_iou == top[slot]
        low = torch.full((n_img * n_pri,), n_gt, device=dev, dtype=torch.long)
        low = low.scatter_reduce(0, slot, torch.where(win, rows_gt, n_gt), "amin")
        win = win & (low[slot] == rows_gt)
        forced[rows_img[win], rows_gt[win]] = best_prior[win]
        taken[slot[win]] = True
        lose = ~win
        rows_img, rows_gt = rows_img[lose], rows_gt[lose]
        cand = iou[rows_img, rows_gt] if cand is None else cand[lose]
        if rows_img.numel():
            cand = cand.masked_fill(taken.view(n_img, n_pri)[rows_img], -1.0)
    return forced


def match(
    priors_cxcywh: Tensor,
    targets: list[dict[str, Tensor]] | PaddedTargets,
    iou_threshold: float = 0.5,
    same_class: bool = True,
    variances: tuple[float, float] = VARIANCES,
) -> Matches:
    """Match priors to the GTs of a batch (rules in the module docstring).

    Args:
        priors_cxcywh: ``(P, 4)`` priors.
        targets: per image ``{"boxes": (G_i, 4) xyxy in [0, 1], "labels": (G_i,) in 1..C-1}``, or already padded.
        iou_threshold: a prior whose best IoU is at least this is positive (SSD: 0.5).
        same_class: pick the repulsion target among GTs of the attraction target's class only.
        variances: the box coder's variances.

    Returns:
        :class:`Matches` with ``(N, P, ...)`` tensors.
    """
    if not iou_threshold > 0:
        raise ValueError(f"iou_threshold must be > 0, got {iou_threshold}")
    padded = targets if isinstance(targets, PaddedTargets) else pad_targets(targets, priors_cxcywh.device)
    gt_boxes, gt_labels, valid = padded.boxes, padded.labels, padded.valid
    n_img, n_gt, _ = gt_boxes.shape
    n_pri = priors_cxcywh.shape[0]
    priors_xyxy = cxcywh_to_xyxy(priors_cxcywh.float())

    # Padding rows have IoU 0 everywhere; they come after the real GTs, so argmax never prefers them to a real
    # overlap, and a prior whose best IoU is 0 is negative anyway. The IoU is computed for the real GTs only
    # (batches of crowds pad to their largest image: about half the rows are padding).
    real = valid.reshape(-1)
    iou = priors_xyxy.new_zeros(n_img * n_gt, n_pri)
    iou[real] = box_iou(gt_boxes.reshape(-1, 4)[real].to(iou.dtype), priors_xyxy)
    iou = iou.reshape(n_img, n_gt, n_pri)  # (N, G, P)

    # Rule 3: every prior takes its best GT.
    matched_idx = iou.argmax(dim=1)  # (N, P); ties go to the lower GT index
    matched_iou = iou.gather(1, matched_idx[:, None, :]).squeeze(1)
    positive = matched_iou >= iou_threshold

    # Rule 2: forced best priors override.
    forced_prior = forced_priors(iou, valid)  # (N, G)
    img_idx, gt_idx = (forced_prior >= 0).nonzero(as_tuple=True)
    pri_idx = forced_prior[img_idx, gt_idx]
    matched_idx = matched_idx.index_put((img_idx, pri_idx), gt_idx)
    matched_iou = matched_iou.index_put((img_idx, pri_idx), iou[img_idx, gt_idx, pri_idx])
    forced = torch.zeros_like(positive).index_put((img_idx, pri_idx), torch.ones_like(gt_idx, dtype=torch.bool))
    positive = positive | forced  # forced priors are positive whatever their IoU

    labels = torch.where(positive, gt_labels.gather(1, matched_idx), 0)
    matched_boxes = gt_boxes.gather(1, matched_idx[:, :, None].expand(-1, -1, 4))  # (N, P, 4)
    loc_targets = encode(matched_boxes, priors_cxcywh.float(), variances)
    matched_idx = torch.where(positive, matched_idx, BACKGROUND)

    # Rule 4: repulsion targets, computed for the positives only.
    pos_img, pos_pri = positive.nonzero(as_tuple=True)  # (K,)
    cols = iou[pos_img, :, pos_pri]  # (K, G) IoU of each positive prior with every GT of its image
    own = matched_idx[pos_img, pos_pri]
    excluded = (torch.arange(n_gt, device=iou.device)[None, :] == own[:, None]) | ~valid[pos_img]
    if same_class:
        excluded = excluded | (gt_labels[pos_img] != labels[pos_img, pos_pri][:, None])
    cols = cols.masked_fill(excluded, -1.0)
    rep = cols.argmax(dim=1)  # (K,)
    rep = torch.where(cols.gather(1, rep[:, None]).squeeze(1) > 0, rep, NO_REPULSION)
    rep_idx = torch.full_like(matched_idx, NO_REPULSION).index_put((pos_img, pos_pri), rep)
    has_rep = rep_idx != NO_REPULSION
    rep_boxes = gt_boxes.gather(1, rep_idx.clamp(min=0)[:, :, None].expand(-1, -1, 4)) * has_rep[:, :, None]

    return Matches(
        matched_idx=matched_idx,
        positive=positive,
        labels=labels,
        matched_boxes=matched_boxes,
        loc_targets=loc_targets,
        iou=matched_iou,
        forced=forced,
        rep_idx=rep_idx,
        rep_boxes=rep_boxes,
        targets=padded,
    )
