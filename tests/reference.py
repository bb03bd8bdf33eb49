"""Slow but obvious per-image references of matching and of the loss.

Written for reading, not speed: one image at a time, Python loops over GTs (and over positives for RepBox),
no clever indexing. The batched implementations in ``rssd.matching`` / ``rssd.losses`` must agree with these.
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
