"""Matching priors to ground truth, batched over images.

For a batch of ``N`` images with different numbers of ground-truth (GT) boxes, :func:`match` decides for every
prior (default box) whether it is a positive, which GT it regresses to (its *attraction* target, ``G_attr``)
and which other GT repels it (its *repulsion* target, ``G_rep``, used by RepGT). Everything is computed for the
whole batch at once, with no Python loop over images, GTs or priors: the IoU on the flat list of the batch's real
GTs and only for the (GT, prior) pairs that overlap (every other IoU is 0), the per-prior and per-GT maxima as
segment maxima (``scatter_reduce``) over those pairs, the repulsion targets on the positives only.

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

from rssd.boxes import cxcywh_to_xyxy, elementwise_iou, encode

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
    boxes = [b if b.dim() == 2 and b.shape[1] == 4 else b.reshape(-1, 4) for b in (t["boxes"] for t in targets)]
    labels = [lab if lab.dim() == 1 else lab.reshape(-1) for lab in (t["labels"] for t in targets)]
    dev = torch.device(device) if device is not None else boxes[0].device
    if any(b.device != dev for b in boxes) or any(lab.device != dev for lab in labels):
        boxes, labels = [b.to(dev) for b in boxes], [lab.to(dev) for lab in labels]
    counts = [b.shape[0] for b in boxes]
    valid = torch.arange(max(max(counts), 1), device=dev)[None, :] < torch.tensor(counts, device=dev)[:, None]
    boxes_p = torch.zeros(*valid.shape, 4, device=dev)  # (N, G, 4)
    boxes_p[valid] = torch.cat(boxes).to(torch.float32)  # row-major order of `valid` = the images' order
    labels_p = torch.zeros(valid.shape, dtype=torch.long, device=dev)  # (N, G)
    labels_p[valid] = torch.cat(labels).to(torch.long)
    return PaddedTargets(boxes=boxes_p, labels=labels_p, valid=valid)


_INTERVALS: dict = {}


@dataclass
class _Intervals:
    """The priors' distinct x intervals ``ux (Ux, 2)`` and y intervals ``uy (Uy, 2)``, each prior's index into them
    (``xi``, ``yi``), and for joins: the priors' *families* (priors of one size: on SSD's grids, one family per
    feature map and aspect ratio) with each interval's family (``fx``, ``fy``; intervals are numbered family by
    family, by start within a family), the priors sorted by (x interval, y interval) cell (``cell_start``/
    ``cell_count`` into ``cell_priors``), search keys increasing with (family, start) (``x_key``, ``y_key``, see
    :func:`_search_key`) and each family's smallest and largest width and height (``widths``, ``heights``:
    ``(F, 2)``)."""

    ux: Tensor
    xi: Tensor
    fx: Tensor
    uy: Tensor
    yi: Tensor
    fy: Tensor
    n_families: int
    cell_priors: Tensor
    cell_start: Tensor
    cell_count: Tensor
    x_key: Tensor
    y_key: Tensor
    widths: Tensor
    heights: Tensor


def _prior_intervals(priors_xyxy: Tensor) -> _Intervals:
    """:class:`_Intervals` of the priors (SSD300: 8732 priors in 34 families, 387 distinct x and 387 y intervals).

    Cached for the last priors seen on each device (compared by value, so a changed tensor is never served stale
    results).
    """
    key = (priors_xyxy.device, priors_xyxy.shape[0])
    hit = _INTERVALS.get(key)
    if hit is not None and torch.equal(hit[0], priors_xyxy):
        return hit[1]
    x1, y1, x2, y2 = priors_xyxy.unbind(1)
    # Families by size, to 1e-6 (corner round-off differs along a grid); any grouping would be correct, only slower.
    sizes, family = torch.unique(torch.stack([x2 - x1, y2 - y1], 1).mul(1e6).round(), dim=0, return_inverse=True)
    fam = family.to(priors_xyxy.dtype)  # exact for any realistic number of families
    ux, xi = torch.unique(torch.stack([fam, x1, x2], 1), dim=0, return_inverse=True)
    uy, yi = torch.unique(torch.stack([fam, y1, y2], 1), dim=0, return_inverse=True)
    cell = xi * uy.shape[0] + yi
    count = torch.bincount(cell, minlength=ux.shape[0] * uy.shape[0])
    n_fam = sizes.shape[0]
    extents = []
    for lo, hi in ((x1, x2), (y1, y2)):
        size = hi - lo
        small = size.new_full((n_fam,), float("inf")).scatter_reduce(0, family, size, "amin")
        extents.append(torch.stack([small, size.new_zeros(n_fam).scatter_reduce(0, family, size, "amax")], 1))
    out = _Intervals(
        ux=ux[:, 1:].contiguous(),
        xi=xi,
        fx=ux[:, 0].long(),
        uy=uy[:, 1:].contiguous(),
        yi=yi,
        fy=uy[:, 0].long(),
        n_families=sizes.shape[0],
        cell_priors=cell.argsort(stable=True),
        cell_start=torch.cumsum(count, 0) - count,
        cell_count=count,
        x_key=_search_key(ux[:, 0], ux[:, 1]),
        y_key=_search_key(uy[:, 0], uy[:, 1]),
        widths=extents[0],
        heights=extents[1],
    )
    _INTERVALS[key] = (priors_xyxy.clone(), out)
    return out


def _search_key(family: Tensor, start: Tensor) -> Tensor:
    """A key increasing with ``(family, start)`` (float32; clamping and rounding keep ``<=`` between keys, so
    searches on it find supersets of the ranges sought; starts outside ``[-1.5, 1.5]`` merge with the ends)."""
    return family * 4.0 + (start + 1.5).clamp(0.0, 3.0)


def _cell_priors(iv: _Intervals, owner: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    """The priors of each (x interval, y interval) ``cell`` (one on SSD's grids, none off them), and their owner."""
    dev = cell.device
    count = iv.cell_count.index_select(0, cell)
    if bool((count == 1).all()):
        return owner, iv.cell_priors.index_select(0, iv.cell_start.index_select(0, cell))
    some = (count > 0).nonzero().squeeze(1)
    owner, cell, count = owner.index_select(0, some), cell.index_select(0, some), count.index_select(0, some)
    n_pairs = int(count.sum())
    j = torch.repeat_interleave(torch.arange(owner.numel(), device=dev), count, output_size=n_pairs)
    owner, cell = owner.index_select(0, j), cell.index_select(0, j)
    within = torch.arange(n_pairs, device=dev) - (torch.cumsum(count, 0) - count).index_select(0, j)
    return owner, iv.cell_priors.index_select(0, iv.cell_start.index_select(0, cell) + within)


def _reachable_pairs(gt_xyxy: Tensor, iv: _Intervals, min_iou: float) -> tuple[Tensor, Tensor]:
    """A superset of the (GT, prior) pairs with ``IoU >= min_iou > 0``, as ``(t, p)``.

    ``IoU >= m`` needs the union to be at least the larger area, so ``w h >= m max(A_g, A_p)`` with the overlap
    ``h`` at most either box's height, hence an overlap ``w >= m max(w_g, w_p)`` in x, and likewise in y (tested
    with a 0.1 % margin). Within a prior family (one size), the intervals meeting that condition are a run of
    consecutive starts: two ``searchsorted`` per (GT, family) and axis give it, and the pairs are the cells of the
    x run times the y run. At ``m = 0.5`` on crowds this is a small fraction of the overlapping pairs.
    """
    dev = gt_xyxy.device
    m, eps = min_iou * (1.0 - 1e-3), 1e-5
    n_fam = iv.n_families
    axes = []
    for lo, hi, extent in ((gt_xyxy[:, 0], gt_xyxy[:, 2], iv.widths), (gt_xyxy[:, 1], gt_xyxy[:, 3], iv.heights)):
        size = (hi - lo)[:, None]  # (T, 1)
        need = m * torch.maximum(size, extent[None, :, 0])  # (T, F): the overlap must be at least this
        axes.append((lo, hi, extent, need, need <= torch.minimum(size, extent[None, :, 1]) + eps))
    # Possible only if need <= min(GT size, prior size) on both axes: a few families per GT.
    t, f = (axes[0][4] & axes[1][4]).nonzero(as_tuple=True)  # (L,)
    fam = f.to(gt_xyxy.dtype)
    runs = []
    for (lo, hi, extent, need, _), key in zip(axes, (iv.x_key, iv.y_key), strict=True):
        lo, hi = lo.index_select(0, t), hi.index_select(0, t)
        need = need.view(-1).index_select(0, t * n_fam + f)
        # Then exactly the starts in [lo - size + need, hi - need] (with the family's largest size: wider).
        first = torch.searchsorted(key, _search_key(fam, lo - extent[:, 1].index_select(0, f) + need - eps))
        last = torch.searchsorted(key, _search_key(fam, hi - need + eps), right=True)
        runs.append((first, (last - first).clamp_(min=0)))
    (x_first, nx), (y_first, ny) = runs
    count = nx * ny  # (L,) cells per (GT, family)
    n_cells = int(count.sum())
    k = torch.repeat_interleave(torch.arange(count.numel(), device=dev), count, output_size=n_cells)
    within = torch.arange(n_cells, device=dev) - (torch.cumsum(count, 0) - count).index_select(0, k)
    ny_k = ny.index_select(0, k)
    ix = x_first.index_select(0, k) + torch.div(within, ny_k, rounding_mode="floor")
    iy = y_first.index_select(0, k) + within % ny_k
    return _cell_priors(iv, t.index_select(0, k), ix * iv.uy.shape[0] + iy)


def _overlap_pairs(gt_xyxy: Tensor, priors_xyxy: Tensor, min_iou: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """The (GT, prior) pairs whose boxes overlap in both axes, and their IoU.

    Every other pair has IoU exactly 0 (most of them, with SSD300's small priors), so the dense ``(T, P)`` IoU is
    never built: the overlap test runs on the priors' distinct intervals, the IoU on the overlapping pairs only,
    with ``box_iou``'s operations (bit-identical values).

    With ``min_iou > 0``, only the pairs that can reach it (a superset of those that do: :func:`_reachable_pairs`).

    The pairs come from a ``(P, T)`` bool scan or, when few, from joining each GT's overlapping x and y intervals of
    one prior family on the priors' (x interval, y interval) cells.

    Returns:
        ``(t, p, iou)``, each ``(M,)``: GT row, prior index and IoU, in no particular order.
    """
    iv = _prior_intervals(priors_xyxy)
    if min_iou > 0:
        t, p = _reachable_pairs(gt_xyxy, iv, min_iou)
        return t, p, elementwise_iou(gt_xyxy.index_select(0, t), priors_xyxy.index_select(0, p), eps=0.0)
    ux, xi, uy, yi = iv.ux, iv.xi, iv.uy, iv.yi
    n_gt, n_pri = gt_xyxy.shape[0], priors_xyxy.shape[0]
    dev = gt_xyxy.device
    gx1, gy1, gx2, gy2 = (c[:, None] for c in gt_xyxy.unbind(1))
    # Overlap lengths of every GT with every distinct interval, (T, U).
    w = torch.minimum(gx2, ux[None, :, 1]).sub_(torch.maximum(gx1, ux[None, :, 0])).clamp_(min=0)
    h = torch.minimum(gy2, uy[None, :, 1]).sub_(torch.maximum(gy1, uy[None, :, 0])).clamp_(min=0)
    x_ok, y_ok = w > 0, h > 0
    # Join on (GT, family): overlapping x and y intervals come sorted by GT, then family (intervals are so numbered).
    xt, xu = x_ok.nonzero(as_tuple=True)
    yt, yv = y_ok.nonzero(as_tuple=True)
    y_count = torch.bincount(yt * iv.n_families + iv.fy.index_select(0, yv), minlength=n_gt * iv.n_families)
    x_key = xt * iv.n_families + iv.fx.index_select(0, xu)
    reps = y_count.index_select(0, x_key)  # overlapping y intervals of the same GT and family, per x interval
    n_combos = int(reps.sum())
    if n_combos * 4 < n_pri * n_gt:  # few (small GTs): every x-y combination of a family, then its priors
        k = torch.repeat_interleave(torch.arange(xt.numel(), device=dev), reps, output_size=n_combos)
        y_of = (torch.cumsum(y_count, 0) - y_count).index_select(0, x_key.index_select(0, k))
        y_of += torch.arange(n_combos, device=dev) - (torch.cumsum(reps, 0) - reps).index_select(0, k)
        t, p = _cell_priors(iv, xt.index_select(0, k), xu.index_select(0, k) * uy.shape[0] + yv.index_select(0, y_of))
    else:  # many: scan (P, T), expanding interval rows to priors
        hit = x_ok.t().contiguous().index_select(0, xi)  # (P, T) bool
        hit &= y_ok.t().contiguous().index_select(0, yi)
        p, t = hit.nonzero(as_tuple=True)
    inter = w.view(-1).index_select(0, t * ux.shape[0] + xi.index_select(0, p))
    inter *= h.view(-1).index_select(0, t * uy.shape[0] + yi.index_select(0, p))
    area_g = ((gx2 - gx1) * (gy2 - gy1)).squeeze(1)
    px1, py1, px2, py2 = priors_xyxy.unbind(1)
    area_p = (px2 - px1) * (py2 - py1)
    return t, p, inter / ((area_g.index_select(0, t) + area_p.index_select(0, p)) - inter)


def _pack(iou: Tensor, index: Tensor, n_index: int) -> Tensor:
    """``(M,)`` long keys ordered as ``(iou, -index)``: the IoU's bits (monotone for ``IoU >= 0``) above the
    reversed index, so that a maximum picks the largest IoU and, among equal ones, the lowest index."""
    bits = max(n_index - 1, 1).bit_length()
    return (iou.view(torch.int32).long() << bits) | (n_index - 1 - index)


def _segment_keys(segment: Tensor, index: Tensor, iou: Tensor, n_segments: int, n_index: int) -> Tensor:
    """Per segment, the largest ``iou`` and the lowest ``index`` that has it (``argmax`` over a dense row), packed.

    One ``scatter_reduce`` (amax) of :func:`_pack`'s keys; :func:`_unpack` reads them. A segment with no entry gets
    key 0 (IoU 0).

    Args:
        segment, index, iou: ``(M,)`` entries: the segment each belongs to, its index within the dense row, IoU.

    Returns:
        ``(n_segments,)`` long keys.
    """
    key = torch.zeros(n_segments, dtype=torch.long, device=iou.device)
    return key.scatter_reduce_(0, segment, _pack(iou, index, n_index), "amax")


def _unpack(key: Tensor, n_index: int) -> tuple[Tensor, Tensor]:
    """``(best, index)`` from :func:`_segment_keys`' keys (``index`` is meaningless where nothing was packed)."""
    bits = max(n_index - 1, 1).bit_length()
    return (key >> bits).int().view(torch.float32), n_index - 1 - (key & ((1 << bits) - 1))


def _contest(
    rows_img: Tensor,
    rows_gt: Tensor,
    best_prior: Tensor,
    best_iou: Tensor,
    iou_rows,
    shape: tuple[int, int, int],
) -> tuple[Tensor, Tensor]:
    """Rule 2's rounds, from each GT's first choice (its best prior and that IoU).

    ``iou_rows(rows_img, rows_gt) -> (U, P)`` gives the full IoU rows of the GTs that lost a contest; only they
    are revisited. Returns ``(N, G)`` the forced prior of each GT (``-1`` for padding) and its IoU.
    """
    n_img, n_gt, n_pri = shape
    dev = best_iou.device
    forced = torch.full((n_img, n_gt), -1, dtype=torch.long, device=dev)
    forced_iou = torch.zeros((n_img, n_gt), dtype=best_iou.dtype, device=dev)
    taken = None  # (N * P) flat (image, prior) slots already given, once a GT has lost a contest
    cand = None  # (U, P) rows with taken priors masked, built once a GT has lost a contest
    while rows_img.numel():
        if cand is not None:
            best_prior = cand.argmax(dim=1)  # argmax: first of ties
            best_iou = cand.gather(1, best_prior[:, None]).squeeze(1)
        alive = best_iou >= 0  # a row of -1 has no prior left at all
        if not bool(alive.all()):
            rows_img, rows_gt, best_prior, best_iou = (t[alive] for t in (rows_img, rows_gt, best_prior, best_iou))
            cand = cand[alive] if cand is not None else None
        slot = rows_img * n_pri + best_prior
        # For each contested prior the highest IoU wins, and among equal IoUs the lowest GT index.
        contested, which = torch.unique(slot, return_inverse=True)
        top = torch.full(contested.shape, -2.0, device=dev, dtype=best_iou.dtype)
        top = top.scatter_reduce(0, which, best_iou, "amax")
        win = best_iou == top[which]
        low = torch.full(contested.shape, n_gt, device=dev, dtype=torch.long)
        low = low.scatter_reduce(0, which, torch.where(win, rows_gt, n_gt), "amin")
        win = win & (low[which] == rows_gt)
        forced[rows_img[win], rows_gt[win]] = best_prior[win]
        forced_iou[rows_img[win], rows_gt[win]] = best_iou[win]
        if bool(win.all()):
            break
        if taken is None:
            taken = torch.zeros(n_img * n_pri, dtype=torch.bool, device=dev)
        taken[slot[win]] = True
        lose = ~win
        rows_img, rows_gt = rows_img[lose], rows_gt[lose]
        cand = iou_rows(rows_img, rows_gt) if cand is None else cand[lose]
        cand = cand.masked_fill(taken.view(n_img, n_pri)[rows_img], -1.0)
    return forced, forced_iou


def forced_priors(iou: Tensor, valid: Tensor) -> Tensor:
    """Give every valid GT a distinct best prior (rule 2 of the module docstring), from a dense IoU.

    Works on the flat list of valid GTs; a round only revisits the GTs that lost a contest in the last one.
    (:func:`match` runs the same rounds from the overlapping pairs only, never building this ``(N, G, P)``.)

    Args:
        iou: ``(N, G, P)`` IoU between GTs and priors.
        valid: ``(N, G)`` bool.

    Returns:
        ``(N, G)`` long, the prior each GT is forced onto, ``-1`` for padding (and, only if an image had more
        GTs than priors, for GTs left without one).
    """
    rows_img, rows_gt = valid.nonzero(as_tuple=True)  # (U,) the GTs looking for a prior
    best_prior = iou.argmax(dim=2)[rows_img, rows_gt]
    best_iou = iou[rows_img, rows_gt, best_prior]
    return _contest(rows_img, rows_gt, best_prior, best_iou, lambda i, g: iou[i, g], tuple(iou.shape))[0]


@dataclass
class _Core:
    """What :func:`match` computes before spreading it over ``(N, P, ...)`` tensors (the loss reads this).

    ``best_idx``/``best_iou``: ``(N, P)`` each prior's GT and IoU after rule 2 (the best GT for negatives too), only
    with ``full`` (else None);
    ``positive``, ``forced``: ``(N, P)`` bool; ``pos_img``, ``pos_pri``: ``(K,)`` the positives, grouped by image
    (as ``positive.nonzero()`` lists them); ``pos_gt``, ``pos_labels``, ``pos_rep``: ``(K,)`` their ``G_attr``,
    class and ``G_rep`` (or ``NO_REPULSION``).
    """

    targets: PaddedTargets
    best_idx: Tensor | None
    best_iou: Tensor | None
    positive: Tensor
    forced: Tensor
    pos_img: Tensor
    pos_pri: Tensor
    pos_gt: Tensor
    pos_labels: Tensor
    pos_rep: Tensor


def _match_core(
    priors_xyxy: Tensor, padded: PaddedTargets, iou_threshold: float, same_class: bool, full: bool = True
) -> _Core:
    """Rules 1-4 for a batch; see :func:`match`.

    With ``full=False`` (what the loss needs), only the pairs that can reach ``iou_threshold`` are scored for rule 3,
    and ``best_idx`` / ``best_iou`` (the best GT of every prior) are not returned.
    """
    if not iou_threshold > 0:
        raise ValueError(f"iou_threshold must be > 0, got {iou_threshold}")
    gt_boxes, valid = padded.boxes, padded.valid
    n_img, n_gt, _ = gt_boxes.shape
    n_pri = priors_xyxy.shape[0]

    # Rule 1 on the flat list of real GTs, overlapping pairs only: every other (GT, prior) IoU is exactly 0.
    rows_img, rows_gt = valid.nonzero(as_tuple=True)  # (T,)
    gt_flat = gt_boxes.view(-1, 4).index_select(0, rows_img * n_gt + rows_gt)  # (T, 4)
    t, p, iou = _overlap_pairs(gt_flat, priors_xyxy, 0.0 if full else iou_threshold)  # (M,)
    slot = rows_img.index_select(0, t) * n_pri + p  # flat (image, prior) of each pair
    gt_of = rows_gt.index_select(0, t)
    forced_slot, forced_key = _forced_slots(
        priors_xyxy, padded, rows_img, rows_gt, gt_flat, (t, p, iou), None if full else iou_threshold
    )
    forced = torch.zeros(n_img * n_pri, dtype=torch.bool, device=gt_boxes.device)
    forced[forced_slot] = True
    if full:
        best_idx, best_iou, positive, pos_img, pos_pri, pos_key = _threshold_all(
            slot, gt_of, iou, forced, forced_slot, forced_key, iou_threshold, (n_img, n_gt, n_pri)
        )
    else:
        best_idx = best_iou = None
        positive, pos_img, pos_pri, pos_key = _threshold_positives(
            slot, gt_of, iou, forced_slot, forced_key, iou_threshold, (n_img, n_gt, n_pri)
        )
    pos_gt = _unpack(pos_key, n_gt)[1]
    pos_labels = padded.labels.view(-1).index_select(0, pos_img * n_gt + pos_gt)
    return _Core(
        targets=padded,
        best_idx=best_idx,
        best_iou=best_iou,
        positive=positive.view(n_img, n_pri),
        forced=forced.view(n_img, n_pri),
        pos_img=pos_img,
        pos_pri=pos_pri,
        pos_gt=pos_gt,
        pos_labels=pos_labels,
        pos_rep=_repulsion_targets(priors_xyxy, padded, pos_img, pos_pri, pos_gt, pos_labels, same_class),
    )


def _forced_slots(
    priors_xyxy: Tensor,
    padded: PaddedTargets,
    rows_img: Tensor,
    rows_gt: Tensor,
    gt_flat: Tensor,
    pairs: tuple[Tensor, Tensor, Tensor],
    only_above: float | None,
) -> tuple[Tensor, Tensor]:
    """Rule 2: the flat ``(image, prior)`` slot of every GT's forced prior, and its packed ``(IoU, GT)`` key.

    Each GT's best prior (ties: the lowest index; prior 0 when it overlaps none), then the contests. ``pairs``
    ``(t, p, iou)`` are rule 1's; when they hold only the pairs that can reach ``only_above`` (the loss's matching),
    a GT whose best pair there is under that threshold may have its best prior elsewhere: it is redone on all its
    overlapping pairs.
    """
    gt_boxes = padded.boxes
    n_img, n_gt, _ = gt_boxes.shape
    n_pri = priors_xyxy.shape[0]
    t, p, iou = pairs
    gt_best, first = _unpack(_segment_keys(t, p, iou, gt_flat.shape[0], n_pri), n_pri)
    if only_above is not None:
        redo = (gt_best < only_above).nonzero().squeeze(1)
        if redo.numel():
            t2, p2, iou2 = _overlap_pairs(gt_flat.index_select(0, redo), priors_xyxy)
            best2, first2 = _unpack(_segment_keys(t2, p2, iou2, redo.numel(), n_pri), n_pri)
            gt_best, first = gt_best.index_put((redo,), best2), first.index_put((redo,), first2)
    first = torch.where(gt_best > 0, first, 0)

    def iou_rows(r_img: Tensor, r_gt: Tensor) -> Tensor:  # (U, P): the dense rows of the GTs that lost a contest
        return elementwise_iou(gt_boxes[r_img, r_gt][:, None, :], priors_xyxy[None, :, :], eps=0.0)

    forced_prior, forced_iou = _contest(rows_img, rows_gt, first, gt_best, iou_rows, (n_img, n_gt, n_pri))
    img_idx, gt_idx = (forced_prior >= 0).nonzero(as_tuple=True)
    forced_slot = img_idx * n_pri + forced_prior[img_idx, gt_idx]
    return forced_slot, _pack(forced_iou[img_idx, gt_idx], gt_idx, n_gt)


def _threshold_all(
    slot: Tensor,
    gt_of: Tensor,
    iou: Tensor,
    forced: Tensor,
    forced_slot: Tensor,
    forced_key: Tensor,
    iou_threshold: float,
    shape: tuple[int, int, int],
) -> tuple[Tensor, ...]:
    """Rule 3 for every prior, from all overlapping pairs: each prior takes its best GT (ties and all-zero columns:
    the lowest index, as ``argmax``); ``forced`` ``(N * P,)`` priors take their GT (and its IoU) and are positive
    whatever that IoU is.

    Returns ``(best_idx, best_iou)`` ``(N, P)``, ``positive`` ``(N * P,)`` and the positives' ``pos_img``,
    ``pos_pri``, packed keys ``(K,)``, grouped by image.
    """
    n_img, n_gt, n_pri = shape
    dev = iou.device
    key = _segment_keys(slot, gt_of, iou, n_img * n_pri, n_gt)  # (N * P,)
    threshold = torch.tensor([iou_threshold], dtype=torch.float32, device=dev)
    positive = key >= _pack(threshold, torch.tensor([n_gt - 1], device=dev), n_gt)  # IoU >= threshold
    key.index_put_((forced_slot,), forced_key)
    positive |= forced
    best_iou, best_idx = _unpack(key, n_gt)
    best_idx = torch.where((best_iou > 0) | forced, best_idx, 0)  # GT 0 where every IoU is 0, as argmax
    pos_img, pos_pri = positive.view(n_img, n_pri).nonzero(as_tuple=True)  # (K,)
    pos_key = key.index_select(0, pos_img * n_pri + pos_pri)
    return best_idx.view(n_img, n_pri), best_iou.view(n_img, n_pri), positive, pos_img, pos_pri, pos_key


def _threshold_positives(
    slot: Tensor,
    gt_of: Tensor,
    iou: Tensor,
    forced_slot: Tensor,
    forced_key: Tensor,
    iou_threshold: float,
    shape: tuple[int, int, int],
) -> tuple[Tensor, ...]:
    """Rule 3 for the positives only (the loss's matching): the pairs at or above the threshold and the forced
    slots, compacted by slot (sorted: the order of ``positive.nonzero()``). Returns ``positive`` ``(N * P,)`` and
    ``pos_img``, ``pos_pri``, packed keys ``(K,)``."""
    _, n_gt, n_pri = shape
    dev = iou.device
    above = (iou >= iou_threshold).nonzero().squeeze(1)
    slot, gt_of, iou_above = slot.index_select(0, above), gt_of.index_select(0, above), iou.index_select(0, above)
    pos_slot, which = torch.unique(torch.cat([slot, forced_slot]), return_inverse=True)
    pos_key = torch.zeros(pos_slot.shape, dtype=torch.long, device=dev)
    pos_key.scatter_reduce_(0, which[: slot.numel()], _pack(iou_above, gt_of, n_gt), "amax")
    pos_key[which[slot.numel() :]] = forced_key
    positive = torch.zeros(shape[0] * n_pri, dtype=torch.bool, device=dev)
    positive[pos_slot] = True
    return positive, pos_slot // n_pri, pos_slot % n_pri, pos_key


def _repulsion_targets(
    priors_xyxy: Tensor,
    padded: PaddedTargets,
    pos_img: Tensor,
    pos_pri: Tensor,
    pos_gt: Tensor,
    pos_labels: Tensor,
    same_class: bool,
) -> Tensor:
    """Rule 4: ``(K,)`` each positive's ``G_rep`` (or ``NO_REPULSION``), from the IoU of its prior with every GT of
    its image, ``(K, G)``, its own GT (and, with ``same_class``, other classes) excluded."""
    gt_boxes, gt_labels, valid = padded.boxes, padded.labels, padded.valid
    n_gt = gt_boxes.shape[1]
    boxes = gt_boxes.index_select(0, pos_img)  # (K, G, 4)
    cols = elementwise_iou(boxes, priors_xyxy.index_select(0, pos_pri)[:, None, :], eps=0.0)  # (K, G), as box_iou
    excluded = (torch.arange(n_gt, device=boxes.device)[None, :] == pos_gt[:, None]) | ~valid.index_select(0, pos_img)
    if same_class:
        excluded |= gt_labels.index_select(0, pos_img) != pos_labels[:, None]
    cols = cols.masked_fill(excluded, -1.0)
    rep = cols.argmax(dim=1)  # (K,)
    return torch.where(cols.gather(1, rep[:, None]).squeeze(1) > 0, rep, NO_REPULSION)


def match(
    priors_cxcywh: Tensor,
    targets: list[dict[str, Tensor]] | PaddedTargets,
    iou_threshold: float = 0.5,
    same_class: bool = True,
) -> Matches:
    """Match priors to the GTs of a batch (rules in the module docstring).

    Args:
        priors_cxcywh: ``(P, 4)`` priors.
        targets: per image ``{"boxes": (G_i, 4) xyxy in [0, 1], "labels": (G_i,) in 1..C-1}``, or already padded.
        iou_threshold: a prior whose best IoU is at least this is positive (SSD: 0.5).
        same_class: pick the repulsion target among GTs of the attraction target's class only.

    Returns:
        :class:`Matches` with ``(N, P, ...)`` tensors.
    """
    padded = targets if isinstance(targets, PaddedTargets) else pad_targets(targets, priors_cxcywh.device)
    priors = priors_cxcywh.float()
    core = _match_core(cxcywh_to_xyxy(priors), padded, iou_threshold, same_class)
    gt_boxes, gt_labels = padded.boxes, padded.labels
    positive, best_idx = core.positive, core.best_idx

    labels = torch.where(positive, gt_labels.gather(1, best_idx), 0)
    matched_boxes = gt_boxes.gather(1, best_idx[:, :, None].expand(-1, -1, 4))  # (N, P, 4)
    loc_targets = encode(matched_boxes, priors)  # with rssd.boxes.VARIANCES
    matched_idx = torch.where(positive, best_idx, BACKGROUND)
    rep_idx = torch.full_like(matched_idx, NO_REPULSION).index_put((core.pos_img, core.pos_pri), core.pos_rep)
    has_rep = rep_idx != NO_REPULSION
    rep_boxes = gt_boxes.gather(1, rep_idx.clamp(min=0)[:, :, None].expand(-1, -1, 4)) * has_rep[:, :, None]

    return Matches(
        matched_idx=matched_idx,
        positive=positive,
        labels=labels,
        matched_boxes=matched_boxes,
        loc_targets=loc_targets,
        iou=core.best_iou,
        forced=core.forced,
        rep_idx=rep_idx,
        rep_boxes=rep_boxes,
        targets=padded,
    )
