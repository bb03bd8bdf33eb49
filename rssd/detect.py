"""SSD post-processing: decode, softmax, per-class NMS, batched over the images of a batch.

The protocol is Caffe SSD's ``DetectionOutput`` (and ssd.pytorch's ``Detect``), with every number in
:class:`DetectConfig`:

1. softmax over the classes (only on the priors where a class can reach the threshold); background is dropped;
2. for every (image, class): keep the scores ``> score_threshold``, then at most ``top_k`` of them (the best);
3. decode those candidates' offsets with their priors (:func:`rssd.boxes.decode`) and clip them to the image;
4. greedy NMS at IoU ``nms_iou`` inside every (image, class) group (or a crowd-aware variant, below): boxes of
   different classes or of different images never suppress each other;
5. keep the ``max_detections`` best survivors of each image, all classes together;
6. scale to pixels with the original image sizes.

How it is batched. Steps 1-3 and 5-6 run on the whole batch at once: one ``nonzero`` for the thresholded
candidates, sort-based ranks for the per-class top-k and the per-image cap, one decode of the candidates only.
Step 4 is :func:`torchvision.ops.batched_nms` with the class as group id, and two schedules give the same result:

* ``"batch"``: a single call over the batch, group id ``image * (C - 1) + class``. Best on a GPU.
* ``"image"``: one call per image, on a prefix of the image's candidates in score order. Best on a CPU, where
  torchvision's NMS costs ``O(n * kept)`` per call when the groups are offset into one call, and one call per
  group otherwise (``batched_nms`` switches above 1000 boxes); both are slow for a batch's tens of thousands of
  candidates. The prefix is exact: suppression only flows from higher to lower scores, so NMS on an image's
  ``L`` best candidates decides those ``L`` exactly; once at least ``max_detections`` of them survive, the rest
  cannot reach the output. Otherwise the prefix doubles until it does or holds every candidate (it starts at
  ``2 * max_detections``).

``"auto"`` (default) picks ``"image"`` on CPU and ``"batch"`` elsewhere. NMS runs in float64 (float32 on Apple's
MPS, which has no float64) so that the coordinate offsets torchvision adds to separate the groups cannot change
an IoU test.

Crowd-aware NMS (``DetectConfig.nms``; step 4 only, everything else unchanged). Greedy NMS deletes every box that
overlaps a better one by more than ``nms_iou``, so in a crowd it deletes the neighbour's correct box too. Three
alternatives, with the same batched interface:

* ``"soft-linear"`` (Soft-NMS, Bodla et al., ICCV 2017): instead of deleting, the score of a box ``b`` that
  overlaps the kept box ``M`` by ``IoU > nms_iou`` is multiplied by ``1 - IoU(M, b)``;
* ``"soft-gaussian"``: every remaining score is multiplied by ``exp(-IoU(M, b)^2 / soft_sigma)`` (``soft_sigma``
  0.5 as in the paper). In both, the box with the best *current* score is kept next, and a box whose score has
  fallen to ``score_threshold`` or below is dropped; detections carry their decayed scores;
* ``"diou"`` (DIoU-NMS, Zheng et al., AAAI 2020): greedy, but ``b`` is deleted only when
  ``IoU(M, b) - R(M, b) ** diou_beta > nms_iou``, where ``R = d^2 / c^2`` is the squared distance of the two centres
  over the squared diagonal of the smallest box enclosing both: two people side by side overlap, but their centres
  are apart, so both survive.

These run on every (image, class) group of the batch at once, padded to ``(groups, top_k)``: one step per kept
box of the largest group (at most ``top_k``), each step a few tensor operations over all groups; ``nms_batching``
does not apply to them.

Pixels follow rssd's convention (DEVELOPERS.md): continuous 0-based coordinates, so a normalised box times
``(W, H, W, H)`` is already in pixels; :func:`rssd.voc_records.detections_to_voc` turns them into the 1-based
coordinates of the devkit's result files. Running a model on a dataset, files or frames is :mod:`rssd.inference`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from rssd.boxes import decode

__all__ = ["NMS_METHODS", "DetectConfig", "detect", "crowd_nms"]


#: The NMS methods of :class:`DetectConfig` (module docstring).
NMS_METHODS = ("greedy", "soft-linear", "soft-gaussian", "diou")


@dataclass(frozen=True)
class DetectConfig:
    """Numbers of the post-processing (defaults: Caffe SSD's VOC protocol).

    Attributes:
        score_threshold: a class score must be strictly greater than this to become a candidate.
        top_k: at most this many candidates per class and image go into NMS (the highest scores).
        nms_iou: a box is suppressed by a better one of the same image and class when their IoU is ``> nms_iou``.
        max_detections: at most this many detections per image are returned (the highest scores, all classes).
        clip: clip the decoded boxes to the image (``[0, 1]`` before scaling) before NMS.
        nms_batching: ``"batch"`` (one NMS call for the batch), ``"image"`` (one per image, on a growing prefix)
            or ``"auto"`` (``"image"`` on CPU). Same detections either way; only the speed differs (greedy NMS only).
        nms: ``"greedy"`` (SSD's), ``"soft-linear"``, ``"soft-gaussian"`` (Soft-NMS) or ``"diou"`` (DIoU-NMS); see
            the module docstring. ``nms_iou`` is the linear Soft-NMS's overlap threshold and DIoU-NMS's ``epsilon``.
        soft_sigma: the Gaussian Soft-NMS's ``sigma`` (scores times ``exp(-IoU^2 / sigma)``).
        diou_beta: DIoU-NMS's exponent on the centre-distance penalty (1: the paper's).
    """

    score_threshold: float = 0.01
    top_k: int = 400
    nms_iou: float = 0.45
    max_detections: int = 200
    clip: bool = True
    nms_batching: Literal["auto", "batch", "image"] = "auto"
    nms: Literal["greedy", "soft-linear", "soft-gaussian", "diou"] = "greedy"
    soft_sigma: float = 0.5
    diou_beta: float = 1.0

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.max_detections < 1:
            raise ValueError(f"top_k and max_detections must be >= 1, got {self.top_k}, {self.max_detections}")
        if not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {self.nms_iou}")
        if self.nms_batching not in ("auto", "batch", "image"):
            raise ValueError(f"nms_batching must be 'auto', 'batch' or 'image', got {self.nms_batching!r}")
        if self.nms not in NMS_METHODS:
            raise ValueError(f"nms must be one of {', '.join(NMS_METHODS)}, got {self.nms!r}")
        if self.soft_sigma <= 0 or self.diou_beta <= 0:
            raise ValueError(f"soft_sigma and diou_beta must be > 0, got {self.soft_sigma}, {self.diou_beta}")


def _rank_in_groups(group_sorted: Tensor, num_groups: int) -> Tensor:
    """Position of each element inside its group, for ``group_sorted`` ``(M,)`` sorted ascending: ``(M,)`` int64."""
    counts = torch.bincount(group_sorted, minlength=num_groups)  # (num_groups,)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(group_sorted.numel(), device=group_sorted.device) - starts[group_sorted]


def _sizes_tensor(image_sizes: Tensor | Sequence[Sequence[int]], n: int, device: torch.device) -> Tensor:
    sizes = torch.as_tensor(image_sizes, dtype=torch.float32, device=device).reshape(-1, 2)  # (N, 2) as (H, W)
    if sizes.shape[0] != n:
        raise ValueError(f"image_sizes has {sizes.shape[0]} entries for a batch of {n} images")
    return sizes


def _nms_per_image(boxes: Tensor, scores: Tensor, cls: Tensor, counts: list[int], cfg: DetectConfig) -> Tensor:
    """NMS image by image on growing prefixes; input sorted by (image, decreasing score). Kept indices ``(K,)``."""
    kept, start = [], 0
    prefix0 = 2 * cfg.max_detections
    for count in counts:
        end, length = start + count, prefix0
        while count:
            stop = min(end, start + length)
            keep = batched_nms(boxes[start:stop], scores[start:stop], cls[start:stop], cfg.nms_iou)  # by score
            if keep.numel() >= cfg.max_detections or stop == end:
                kept.append(keep[: cfg.max_detections] + start)
                break
            length *= 2
        start = end
    return torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long, device=boxes.device)


def _overlaps(coords: tuple[Tensor, ...], rows: Tensor, cols: Tensor, penalty: bool) -> tuple[Tensor, Tensor | None]:
    """IoU (and DIoU's centre penalty ``R = d^2 / c^2``) of box ``(rows[a], cols[a])`` with every box of its row.

    ``coords`` are the padded ``x1, y1, x2, y2`` ``(G, L)``; returns ``(A, L)`` tensors (``d``: the distance of the
    centres, ``c``: the diagonal of the smallest box enclosing both).
    """
    x1, y1, x2, y2 = (c[rows] for c in coords)  # (A, L) each
    mx1, my1, mx2, my2 = (c[rows, cols][:, None] for c in coords)  # (A, 1) each: the kept boxes
    inter_w = (torch.minimum(x2, mx2) - torch.maximum(x1, mx1)).clamp(min=0)
    inter = inter_w * (torch.minimum(y2, my2) - torch.maximum(y1, my1)).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (mx2 - mx1) * (my2 - my1) - inter
    iou = inter / union.clamp(min=1e-12)
    if not penalty:
        return iou, None
    d2 = ((x1 + x2 - mx1 - mx2).pow(2) + (y1 + y2 - my1 - my2).pow(2)) / 4
    c2 = (torch.maximum(x2, mx2) - torch.minimum(x1, mx1)).pow(2) + (
        torch.maximum(y2, my2) - torch.minimum(y1, my1)
    ).pow(2)
    return iou, d2 / c2.clamp(min=1e-12)


def crowd_nms(
    boxes: Tensor, scores: Tensor, groups: Tensor, config: DetectConfig, max_per_group: int | None = None
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (linear, Gaussian) or DIoU-NMS inside every group, all groups at once (``config.nms``).

    Args:
        boxes: ``(M, 4)`` ``xyxy``; scores: ``(M,)``; groups: ``(M,)`` int64 group ids (image and class): boxes of
            different groups never interact. Within a group, boxes must come in decreasing score order (DIoU-NMS
            keeps them greedily in that order); ties in score are broken by position (first wins).
        config: ``nms``, ``nms_iou``, ``soft_sigma``, ``diou_beta``, and ``score_threshold`` (Soft-NMS drops a box
            whose decayed score is ``<=`` it).
        max_per_group: stop a group after this many kept boxes (``detect`` passes ``max_detections``: a group's
            later boxes, all scored lower, cannot reach an image's best ``max_detections``). None: no limit.

    Returns:
        ``(keep, kept_scores)``: indices into the inputs ``(K,)`` and their scores ``(K,)`` (decayed for Soft-NMS,
        unchanged for DIoU-NMS), in no particular order across groups.

    How: the groups are padded to ``(G, L)`` (``L`` the largest group); then one step per kept box of the largest
    group (Soft-NMS) or per position (DIoU-NMS), each step a handful of ``(G, L)`` tensor operations: the overlap of
    every group's kept box with the rest of its group.
    """
    if config.nms == "greedy":
        raise ValueError("crowd_nms is for the soft-linear, soft-gaussian and diou methods; greedy is batched_nms")
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), scores[:0]
    if boxes.device.type != "cpu" or torch.get_num_threads() == 1:
        return _crowd_nms(boxes, scores, groups, config, max_per_group)
    # Hundreds of small (G, L) operations: on CPU, intra-op threads only add synchronisation (measured on a busy
    # 2-core machine: 8 untrained SSD300 outputs in 1.5 s on one thread, 14-28 s on two).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _crowd_nms(boxes, scores, groups, config, max_per_group)
    finally:
        torch.set_num_threads(threads)


def _crowd_nms(
    boxes: Tensor, scores: Tensor, groups: Tensor, config: DetectConfig, max_per_group: int | None
) -> tuple[Tensor, Tensor]:
    device = boxes.device
    order = torch.argsort(groups, stable=True)  # by group, input order inside
    _, row, counts = torch.unique_consecutive(groups[order], return_inverse=True, return_counts=True)
    num_groups, length = counts.numel(), int(counts.max())
    col = _rank_in_groups(row, num_groups)
    index = torch.full((num_groups, length), -1, dtype=torch.long, device=device)
    index[row, col] = order
    valid = index >= 0
    padded_boxes = boxes[index.clamp(min=0)]  # (G, L, 4)
    padded_scores = torch.where(valid, scores[index.clamp(min=0)], torch.zeros((), dtype=scores.dtype, device=device))
    steps = length if max_per_group is None else min(length, max_per_group)
    coords = tuple(padded_boxes[..., k].contiguous() for k in range(4))  # x1, y1, x2, y2: (G, L) each
    all_rows = torch.arange(num_groups, device=device)
    alive = valid.clone()
    if config.nms == "diou":
        # Greedy in each row's order (decreasing score): column j, if still alive, deletes the later boxes it overlaps.
        position = torch.arange(length, device=device)
        kept_count = torch.zeros(num_groups, dtype=torch.long, device=device)
        kept = torch.zeros_like(alive)
        for j in range(length):
            rows = all_rows[alive[:, j] & (kept_count < steps)]
            if rows.numel() == 0:
                if not bool((alive[:, j:] & (kept_count < steps)[:, None]).any()):
                    break
                continue
            kept[rows, j] = True
            kept_count[rows] += 1
            iou, penalty = _overlaps(coords, rows, torch.full_like(rows, j), penalty=True)
            delete = (iou - penalty.pow(config.diou_beta) > config.nms_iou) & (position > j)
            alive[rows] &= ~delete
        rows, cols = torch.nonzero(kept, as_tuple=True)
        return index[rows, cols], padded_scores[rows, cols]
    current = padded_scores.clone()
    minus_inf = torch.tensor(-math.inf, dtype=scores.dtype, device=device)
    keep, kept_scores = [], []
    for _ in range(steps):
        best_score, best = torch.where(alive, current, minus_inf).max(dim=1)  # (G,): first maximum per row
        has = torch.isfinite(best_score)
        if not bool(has.any()):
            break
        rows, cols = all_rows[has], best[has]
        keep.append(index[rows, cols])
        kept_scores.append(best_score[has])
        alive[rows, cols] = False
        iou, _ = _overlaps(coords, rows, cols, penalty=False)  # (A, L): the kept box against its row
        if config.nms == "soft-linear":
            decay = torch.where(iou > config.nms_iou, 1 - iou, torch.ones_like(iou))
        else:  # soft-gaussian
            decay = torch.exp(-iou.pow(2) / config.soft_sigma)
        current[rows] *= decay
        alive[rows] &= current[rows] > config.score_threshold
    return torch.cat(keep), torch.cat(kept_scores)


def _candidates(conf: Tensor, cfg: DetectConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Steps 1-2: ``(image, prior, class, score)`` of every candidate, ``(M,)`` each (class 0 is the first
    foreground class); image-major, by decreasing score inside an image (ties: by prior, class)."""
    n, p, c = conf.shape
    num_fg = c - 1
    # Rows (image, prior) that can hold a candidate: softmax(l)_c <= exp(l_c - max(l)), so a class whose logit
    # is more than -log(threshold) below the row's maximum cannot pass. The softmax (the costly part on CPU) is
    # then computed on those rows only, which with a trained model are a small fraction (the rest is background).
    bound = math.log(cfg.score_threshold) - 1e-3 if cfg.score_threshold > 0 else -math.inf  # margin: rounding
    fg_max = conf[..., 1:].amax(dim=-1)  # (N, P)
    row_img, row_prior = torch.nonzero(fg_max - torch.maximum(fg_max, conf[..., 0]) > bound, as_tuple=True)
    rows = conf.reshape(n * p, c).index_select(0, row_img * p + row_prior)  # (R, C); faster than conf[i, j]
    scores = torch.softmax(rows, dim=-1)[:, 1:]  # (R, C-1)

    # Candidates above the threshold, sorted by decreasing score (ties: by image, prior, class).
    row, cls = torch.nonzero(scores > cfg.score_threshold, as_tuple=True)  # (M,) each
    img, prior, cand_scores = row_img[row], row_prior[row], scores[row, cls]  # (M,) each
    order = torch.argsort(cand_scores, descending=True, stable=True)
    img, prior, cls, cand_scores = img[order], prior[order], cls[order], cand_scores[order]

    # The top_k best of every (image, class) group (only sorted by group when some group has too many).
    group = img * num_fg + cls  # (M,)
    if group.numel() and int(torch.bincount(group).max()) > cfg.top_k:
        by_group = torch.argsort(group, stable=True)  # by group, then by decreasing score
        within = torch.zeros_like(group, dtype=torch.bool)
        within[by_group] = _rank_in_groups(group[by_group], n * num_fg) < cfg.top_k
        img, prior, cls, cand_scores = img[within], prior[within], cls[within], cand_scores[within]

    # Image-major order (stable: decreasing score inside each image).
    by_image = torch.argsort(img, stable=True)
    return img[by_image], prior[by_image], cls[by_image], cand_scores[by_image]


def _nms(
    boxes: Tensor, scores: Tensor, img: Tensor, cls: Tensor, n: int, num_fg: int, cfg: DetectConfig
) -> tuple[Tensor, Tensor]:
    """Steps 4-5 on the candidates (image-major, by score): ``(keep, scores)``, ``keep`` the indices of at most
    ``max_detections`` survivors per image (image-major, by decreasing score) and ``scores`` ``(M,)`` the
    candidates' scores after NMS (Soft-NMS decays them)."""
    device = boxes.device
    per_image = cfg.nms_batching == "image" or (cfg.nms_batching == "auto" and device.type == "cpu")
    # float64: torchvision offsets every group by group_id * (max + 1)
    nms_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    boxes64, scores64 = boxes.to(nms_dtype), scores.to(nms_dtype)
    if cfg.nms != "greedy":  # Soft-NMS / DIoU-NMS: scores may change, so sort the survivors again
        keep, new_scores = crowd_nms(boxes64, scores64, img * num_fg + cls, cfg, cfg.max_detections)
        kept_scores = torch.zeros_like(scores)
        kept_scores[keep] = new_scores.to(scores.dtype)
        keep = keep[torch.argsort(kept_scores[keep], descending=True, stable=True)]
    elif per_image:
        counts = torch.bincount(img, minlength=n).tolist()
        return _nms_per_image(boxes64, scores64, cls, counts, cfg), scores  # image-major, by score
    else:
        keep, kept_scores = batched_nms(boxes64, scores64, img * num_fg + cls, cfg.nms_iou), scores  # by score
    keep = keep[torch.argsort(img[keep], stable=True)]  # image-major, by decreasing score inside
    return keep[_rank_in_groups(img[keep], n) < cfg.max_detections], kept_scores


def detect(
    loc: Tensor,
    conf: Tensor,
    priors_cxcywh: Tensor,
    image_sizes: Tensor | Sequence[Sequence[int]] | None = None,
    config: DetectConfig | None = None,
) -> list[dict[str, Tensor]]:
    """Turn a batch of SSD outputs into detections, one dict per image.

    Args:
        loc: ``(N, P, 4)`` predicted offsets (as :func:`rssd.boxes.encode` makes them).
        conf: ``(N, P, C)`` class logits, column 0 the background.
        priors_cxcywh: ``(P, 4)`` the priors, normalised ``cxcywh``.
        image_sizes: ``(N, 2)`` original ``(H, W)`` of each image (a tensor or a sequence of pairs, e.g. the
            targets' ``orig_size``): boxes come back in pixels. ``None`` keeps them normalised to ``[0, 1]``.
        config: thresholds and limits (default :class:`DetectConfig`).

    Returns:
        ``N`` dicts with ``boxes`` ``(D, 4)`` float ``xyxy`` (pixels, or normalised), ``scores`` ``(D,)`` (softmax
        probabilities) and ``labels`` ``(D,)`` int64 in ``1..C-1``; sorted by decreasing score; ``D <=
        max_detections``, possibly 0. Same dtype and device as ``loc``.
    """
    cfg = config or DetectConfig()
    if loc.dim() != 3 or conf.dim() != 3 or loc.shape[:2] != conf.shape[:2] or loc.shape[-1] != 4:
        raise ValueError(f"expected loc (N, P, 4) and conf (N, P, C), got {tuple(loc.shape)} and {tuple(conf.shape)}")
    if priors_cxcywh.shape != (loc.shape[1], 4):
        raise ValueError(f"priors have shape {tuple(priors_cxcywh.shape)}, expected ({loc.shape[1]}, 4)")
    n, p, c = conf.shape
    num_fg = c - 1  # foreground classes
    with torch.no_grad():
        img, prior, cls, cand_scores = _candidates(conf, cfg)  # (M,) each, image-major, by score inside
        cand_loc = loc.reshape(n * p, 4).index_select(0, img * p + prior)  # (M, 4): decode the candidates only
        cand_boxes = decode(cand_loc, priors_cxcywh.to(loc).index_select(0, prior))  # (M, 4)
        if cfg.clip:
            cand_boxes = cand_boxes.clamp(0.0, 1.0)
        keep, kept_scores = _nms(cand_boxes, cand_scores, img, cls, n, num_fg, cfg)
        counts = torch.bincount(img[keep], minlength=n).tolist()

        out_boxes = cand_boxes[keep]  # (K, 4)
        if image_sizes is not None:
            sizes = _sizes_tensor(image_sizes, n, loc.device).to(out_boxes.dtype)  # (N, 2) as (H, W)
            out_boxes = out_boxes * sizes[:, [1, 0, 1, 0]][img[keep]]  # times (W, H, W, H)
        out_scores = kept_scores[keep]
        out_labels = cls[keep] + 1
    return [
        {"boxes": b, "scores": s, "labels": lab}
        for b, s, lab in zip(out_boxes.split(counts), out_scores.split(counts), out_labels.split(counts), strict=True)
    ]
