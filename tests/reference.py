"""Slow but obvious per-image references of matching and of the loss, and the batched loss as it was before.

Written for reading, not speed: one image at a time, Python loops over GTs (and over positives for RepBox),
no clever indexing. The batched implementations in ``rssd.matching`` / ``rssd.losses`` must agree with these.
At the end, ``match_before`` / ``loss_before``: the batched implementation before its speed-ups (commit 54642b5),
frozen, so that the benchmark can check the new one against it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def iou_one(a: Tensor, b: Tensor) -> Tensor:
    """IoU of one box ``a`` (4,) with boxes ``b`` (K, 4)."""
    ix1 = torch.maximum(a[0], b[:, 0])
    iy1 = torch.maximum(a[1], b[:, 1])
    ix2 = torch.minimum(a[2], b[:, 2])
    iy2 = torch.minimum(a[3], b[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter + 1e-9)


def iog_one(box: Tensor, gt: Tensor) -> Tensor:
    ix = (torch.minimum(box[2], gt[2]) - torch.maximum(box[0], gt[0])).clamp(min=0)
    iy = (torch.minimum(box[3], gt[3]) - torch.maximum(box[1], gt[1])).clamp(min=0)
    return ix * iy / ((gt[2] - gt[0]) * (gt[3] - gt[1]) + 1e-9)


def to_xyxy(cxcywh: Tensor) -> Tensor:
    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def encode_one(g_xyxy: Tensor, p: Tensor) -> Tensor:
    gcx, gcy = (g_xyxy[0] + g_xyxy[2]) / 2, (g_xyxy[1] + g_xyxy[3]) / 2
    gw, gh = g_xyxy[2] - g_xyxy[0], g_xyxy[3] - g_xyxy[1]
    return torch.stack(
        [
            (gcx - p[0]) / (0.1 * p[2]),
            (gcy - p[1]) / (0.1 * p[3]),
            torch.log(gw.clamp(min=1e-12) / p[2]) / 0.2,
            torch.log(gh.clamp(min=1e-12) / p[3]) / 0.2,
        ]
    )


def decode_all(loc: Tensor, priors: Tensor) -> Tensor:
    cx = priors[:, 0] + loc[:, 0] * 0.1 * priors[:, 2]
    cy = priors[:, 1] + loc[:, 1] * 0.1 * priors[:, 3]
    w = priors[:, 2] * torch.exp(loc[:, 2] * 0.2)
    h = priors[:, 3] * torch.exp(loc[:, 3] * 0.2)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def match_one(priors: Tensor, boxes: Tensor, labels: Tensor, threshold: float = 0.5, same_class: bool = True):
    """One image. Returns (matched (P,) GT index or -1, labels (P,), loc targets (P,4), rep index (P,) or -1)."""
    n_pri = priors.shape[0]
    n_gt = boxes.shape[0]
    matched = torch.full((n_pri,), -1, dtype=torch.long)
    out_labels = torch.zeros(n_pri, dtype=torch.long)
    loc_t = torch.zeros(n_pri, 4)
    rep = torch.full((n_pri,), -1, dtype=torch.long)
    if n_gt == 0:
        return matched, out_labels, loc_t, rep
    priors_xyxy = to_xyxy(priors)
    iou = torch.stack([iou_one(boxes[g], priors_xyxy) for g in range(n_gt)])  # (G, P)

    best_iou = torch.full((n_pri,), -1.0)
    best_gt = torch.zeros(n_pri, dtype=torch.long)
    for g in range(n_gt):  # strict ">" keeps the lowest index on ties, like argmax
        better = iou[g] > best_iou
        best_iou[better] = iou[g][better]
        best_gt[better] = g
    positive = best_iou >= threshold

    # Forced best priors: rounds of proposals; a contested prior goes to the higher IoU, then the lower GT index.
    taken = set()
    forced = {}
    unresolved = list(range(n_gt))
    while unresolved:
        proposals = {}
        for g in unresolved:
            row = iou[g].clone()
            for p in taken:
                row[p] = -1.0
            p = int(row.argmax())
            proposals[g] = (p, float(row[p]))
        still = []
        for g in unresolved:
            p, v = proposals[g]
            rivals = [h for h in unresolved if proposals[h][0] == p]
            best = max(rivals, key=lambda h: (proposals[h][1], -h))
            if best == g:
                forced[g] = p
            else:
                still.append(g)
        for g in unresolved:
            if g in forced:
                taken.add(forced[g])
        unresolved = still
    for g, p in forced.items():
        best_gt[p] = g
        positive[p] = True

    for p in range(n_pri):
        if not positive[p]:
            continue
        g = int(best_gt[p])
        matched[p] = g
        out_labels[p] = labels[g]
        loc_t[p] = encode_one(boxes[g], priors[p])
        best_r, best_v = -1, 0.0
        for h in range(n_gt):
            if h == g or (same_class and labels[h] != labels[g]):
                continue
            if iou[h, p] > best_v:
                best_r, best_v = h, float(iou[h, p])
        rep[p] = best_r
    return matched, out_labels, loc_t, rep


def smooth_ln_ref(x: Tensor, sigma: float) -> Tensor:
    if sigma >= 1.0:
        return -torch.log(1 - x.clamp(max=1 - 1e-6))
    out = torch.empty_like(x)
    low = x <= sigma
    out[low] = -torch.log(1 - x[low])
    out[~low] = (x[~low] - sigma) / (1 - sigma) - math.log(1 - sigma)
    return out


def loss_reference(loc, conf, priors, targets, alpha=0.5, beta=0.5, sigma_gt=1.0, sigma_box=0.0, same_class=True):
    """The full loss, one image at a time. Returns the same dict as ``RepulsionLoss``."""
    n_img = loc.shape[0]
    sums = {"loc": 0.0, "conf": 0.0, "rep_gt": 0.0, "box_num": 0.0}
    box_pairs = 0
    total_pos = 0
    for n in range(n_img):
        boxes, labels = targets[n]["boxes"].float(), targets[n]["labels"].long()
        matched, lab, loc_t, rep = match_one(priors, boxes, labels, same_class=same_class)
        pos = matched >= 0
        num_pos = int(pos.sum())
        total_pos += num_pos
        sums["loc"] = sums["loc"] + F.smooth_l1_loss(loc[n][pos], loc_t[pos], reduction="sum", beta=1.0)
        ce = F.cross_entropy(conf[n], lab, reduction="none")
        neg_ids = torch.nonzero(~pos).flatten()
        order = torch.sort(ce.detach()[neg_ids], descending=True, stable=True).indices
        num_neg = min(3 * num_pos, len(neg_ids))
        chosen = neg_ids[order[:num_neg]]
        sums["conf"] = sums["conf"] + ce[pos].sum() + ce[chosen].sum()
        pred = decode_all(loc[n], priors)
        for p in torch.nonzero(pos).flatten().tolist():
            if rep[p] >= 0:
                iog = iog_one(pred[p], boxes[rep[p]])
                sums["rep_gt"] = sums["rep_gt"] + smooth_ln_ref(iog[None], sigma_gt)[0]
        pos_ids = torch.nonzero(pos).flatten().tolist()
        for a_i, i in enumerate(pos_ids):
            others = [j for j in pos_ids[a_i + 1 :] if matched[j] != matched[i]]
            if not others:
                continue
            ious = iou_one(pred[i], pred[others])
            sums["box_num"] = sums["box_num"] + smooth_ln_ref(ious, sigma_box).sum()
            box_pairs += int((ious > 0).sum())
    denom = max(total_pos, 1)
    out = {
        "loc": sums["loc"] / denom,
        "conf": sums["conf"] / denom,
        "rep_gt": torch.as_tensor(sums["rep_gt"]) / denom,
        "rep_box": torch.as_tensor(sums["box_num"]) / (box_pairs + 1e-9),
    }
    out["total"] = out["loc"] + out["conf"] + alpha * out["rep_gt"] + beta * out["rep_box"]
    return out


# ---------------------------------------------------------------- the batched loss before the speed-ups (frozen)
# rssd.matching.match and RepulsionLoss.forward as they were at commit 54642b5, on dense padded (N, G, P) IoU
# tensors, a full sort for hard negatives, the cross-entropy of every prior in the graph and RepBox on (N, K, K)
# blocks. benchmarks/bench_loss.py times the current code against it and checks that both give the same match
# (exactly) and the same loss terms and gradients; do not optimise it.


def match_before(priors_cxcywh, padded, iou_threshold: float = 0.5, same_class: bool = True):
    """``rssd.matching.match`` before the speed-ups: returns ``(matched_idx, positive, labels, matched_boxes,
    loc_targets, iou, forced, rep_idx, rep_boxes)`` with the same meaning and shapes as the fields of ``Matches``."""
    from rssd.boxes import box_iou, cxcywh_to_xyxy, encode

    gt_boxes, gt_labels, valid = padded.boxes, padded.labels, padded.valid
    n_img, n_gt, _ = gt_boxes.shape
    n_pri = priors_cxcywh.shape[0]
    priors_xyxy = cxcywh_to_xyxy(priors_cxcywh.float())
    real = valid.reshape(-1)
    iou = priors_xyxy.new_zeros(n_img * n_gt, n_pri)
    iou[real] = box_iou(gt_boxes.reshape(-1, 4)[real].to(iou.dtype), priors_xyxy)
    iou = iou.reshape(n_img, n_gt, n_pri)  # (N, G, P)
    matched_idx = iou.argmax(dim=1)
    matched_iou = iou.gather(1, matched_idx[:, None, :]).squeeze(1)
    positive = matched_iou >= iou_threshold
    forced_prior = _forced_priors_before(iou, valid)
    img_idx, gt_idx = (forced_prior >= 0).nonzero(as_tuple=True)
    pri_idx = forced_prior[img_idx, gt_idx]
    matched_idx = matched_idx.index_put((img_idx, pri_idx), gt_idx)
    matched_iou = matched_iou.index_put((img_idx, pri_idx), iou[img_idx, gt_idx, pri_idx])
    forced = torch.zeros_like(positive).index_put((img_idx, pri_idx), torch.ones_like(gt_idx, dtype=torch.bool))
    positive = positive | forced
    labels = torch.where(positive, gt_labels.gather(1, matched_idx), 0)
    matched_boxes = gt_boxes.gather(1, matched_idx[:, :, None].expand(-1, -1, 4))
    loc_targets = encode(matched_boxes, priors_cxcywh.float())
    matched_idx = torch.where(positive, matched_idx, -1)
    pos_img, pos_pri = positive.nonzero(as_tuple=True)
    cols = iou[pos_img, :, pos_pri]
    own = matched_idx[pos_img, pos_pri]
    excluded = (torch.arange(n_gt, device=iou.device)[None, :] == own[:, None]) | ~valid[pos_img]
    if same_class:
        excluded = excluded | (gt_labels[pos_img] != labels[pos_img, pos_pri][:, None])
    cols = cols.masked_fill(excluded, -1.0)
    rep = cols.argmax(dim=1)
    rep = torch.where(cols.gather(1, rep[:, None]).squeeze(1) > 0, rep, -1)
    rep_idx = torch.full_like(matched_idx, -1).index_put((pos_img, pos_pri), rep)
    has_rep = rep_idx != -1
    rep_boxes = gt_boxes.gather(1, rep_idx.clamp(min=0)[:, :, None].expand(-1, -1, 4)) * has_rep[:, :, None]
    return matched_idx, positive, labels, matched_boxes, loc_targets, matched_iou, forced, rep_idx, rep_boxes


def _forced_priors_before(iou: Tensor, valid: Tensor) -> Tensor:
    n_img, n_gt, n_pri = iou.shape
    dev = iou.device
    forced = torch.full((n_img, n_gt), -1, dtype=torch.long, device=dev)
    taken = torch.zeros(n_img * n_pri, dtype=torch.bool, device=dev)
    rows_img, rows_gt = valid.nonzero(as_tuple=True)
    best_prior = iou.argmax(dim=2)[rows_img, rows_gt]
    cand = None
    while rows_img.numel():
        if cand is not None:
            best_prior = cand.argmax(dim=1)
            best_iou = cand.gather(1, best_prior[:, None]).squeeze(1)
        else:
            best_iou = iou[rows_img, rows_gt, best_prior]
        alive = best_iou >= 0
        if not bool(alive.all()):
            rows_img, rows_gt, best_prior, best_iou = (t[alive] for t in (rows_img, rows_gt, best_prior, best_iou))
            cand = cand[alive] if cand is not None else None
        slot = rows_img * n_pri + best_prior
        top = torch.full((n_img * n_pri,), -2.0, dtype=best_iou.dtype, device=dev)
        top = top.scatter_reduce(0, slot, best_iou, "amax")
        win = best_iou == top[slot]
        low = torch.full((n_img * n_pri,), n_gt, dtype=torch.long, device=dev)
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


def loss_before(loss, loc: Tensor, conf: Tensor, priors: Tensor, targets) -> dict[str, Tensor]:
    """``RepulsionLoss.forward`` before the speed-ups, with the settings of ``loss`` (a ``MultiBoxLoss``,
    ``RepulsionLoss`` or ``rssd.fork.ForkRepulsionLoss``)."""
    from rssd.boxes import decode, elementwise_iou
    from rssd.fork import ForkRepulsionLoss, fork_rep_targets
    from rssd.losses import rep_gt_loss, smooth_ln
    from rssd.matching import pad_targets

    alpha, beta = getattr(loss, "alpha", 0.0), getattr(loss, "beta", 0.0)
    loc, conf, priors = loc.float(), conf.float(), priors.float()
    padded = pad_targets(targets, priors.device)
    matched_idx, pos, labels, matched_boxes, loc_targets, _, _, rep_idx, rep_boxes_all = match_before(
        priors, padded, loss.iou_threshold, loss.same_class
    )
    pos_img, pos_pri = pos.nonzero(as_tuple=True)
    dev = loc.device
    num_pos = torch.tensor(max(pos_img.numel(), 1), dtype=loc.dtype, device=dev)
    loc_pos = loc[pos_img, pos_pri]
    loss_loc = F.smooth_l1_loss(loc_pos, loc_targets[pos_img, pos_pri], reduction="sum", beta=1.0)
    ce = F.cross_entropy(conf.reshape(-1, loss.num_classes), labels.reshape(-1), reduction="none").reshape(pos.shape)
    mining = ce.detach().masked_fill(pos, float("-inf"))
    order = mining.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(ce.shape[1], device=dev).expand_as(order))
    n_pos = pos.sum(dim=1, keepdim=True)
    neg = (rank < (loss.neg_pos_ratio * n_pos).clamp(max=pos.shape[1] - n_pos)) & ~pos
    loss_conf = (ce * (pos | neg)).sum()
    zero = torch.zeros((), dtype=loc.dtype, device=dev)
    loss_rep_gt, loss_rep_box = zero, zero
    if alpha or beta:
        pred_pos = decode(loc_pos, priors[pos_pri])
        if alpha:
            if isinstance(loss, ForkRepulsionLoss):
                matched = matched_idx[pos_img, pos_pri]
                rep = fork_rep_targets(pred_pos, pos_img, matched, padded.boxes, padded.valid)
                rep_boxes = padded.boxes[pos_img, rep]
                has_rep = torch.ones_like(pos_img, dtype=torch.bool)
            else:
                rep_boxes = rep_boxes_all[pos_img, pos_pri]
                has_rep = rep_idx[pos_img, pos_pri] != -1
            attr = matched_boxes[pos_img, pos_pri] if loss.rep_gt_mode == "excess" else None
            loss_rep_gt = rep_gt_loss(pred_pos, rep_boxes, has_rep, loss.sigma_gt, attr) / num_pos
        if beta:
            n_img = pos.shape[0]
            per_image = torch.bincount(pos_img, minlength=n_img)
            k = int(per_image.max()) if pos_img.numel() else 0
            if k >= 2:
                owner_all = matched_idx[pos_img, pos_pri]
                slot = torch.arange(pos_img.numel(), device=dev) - (torch.cumsum(per_image, 0) - per_image)[pos_img]
                boxes = pred_pos.new_zeros(n_img, k, 4).index_put((pos_img, slot), pred_pos)
                owner = torch.full((n_img, k), -1, dtype=torch.long, device=dev).index_put((pos_img, slot), owner_all)
                filled = torch.arange(k, device=dev)[None, :] < per_image[:, None]
                iou = elementwise_iou(boxes[:, :, None, :], boxes[:, None, :, :])
                upper = torch.ones(k, k, dtype=torch.bool, device=dev).triu(diagonal=1)
                pair = upper & filled[:, :, None] & filled[:, None, :] & (owner[:, :, None] != owner[:, None, :])
                total = (smooth_ln(iou, loss.sigma_box) * pair).sum()
                loss_rep_box = total / ((pair & (iou > 0)).sum().to(total.dtype) + 1e-9)
    out = {"loc": loss_loc / num_pos, "conf": loss_conf / num_pos, "rep_gt": loss_rep_gt, "rep_box": loss_rep_box}
    out["total"] = out["loc"] + out["conf"] + alpha * out["rep_gt"] + beta * out["rep_box"]
    return out
