"""Drawing helpers for the notebooks: plain matplotlib functions that also work headless (Agg).

Images and boxes, dataset items, the repulsion and NMS views, and the evaluation plots (precision-recall curves,
miss rate against FPPI). Colours come from :mod:`rssd.palette`, shared with ``rssd detect``'s annotated frames.

Every function takes an optional ``ax`` and returns it (or the numbers it drew), so notebooks can compose them
and interactive widgets can call them again on every change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrow, Rectangle
from torch import Tensor

from rssd.losses import LOSS_TERMS
from rssd.matching import NO_REPULSION
from rssd.palette import COLORS, class_color

if TYPE_CHECKING:
    from rssd.crowd_eval import MissRate
    from rssd.voc_eval import VOCResult

__all__ = [
    "as_numpy_image", "show_image", "draw_boxes", "repulsion_view", "LossPlot", "ERROR_COLORS", "show_detection_errors",
    "COLORS",
]  # fmt: skip


def _ax(ax: Axes | None, figsize: tuple[float, float] = (5, 5)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def as_numpy_image(image) -> np.ndarray:
    """``(H, W, 3)`` uint8 or float array from a ``(3, H, W)`` tensor, a PIL image or an array."""
    if isinstance(image, Tensor):
        arr = image.detach().cpu()
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = arr.permute(1, 2, 0)
        arr = arr.numpy()
    else:
        arr = np.asarray(image)
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo + 1e-12) if (lo < 0 or hi > 1) else arr
    return arr


def show_image(image, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show an image without axes ticks."""
    ax = _ax(ax)
    ax.imshow(as_numpy_image(image))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def draw_boxes(
    boxes_xyxy: Tensor | np.ndarray | Sequence,
    ax: Axes | None = None,
    colors: str | Sequence[str] | None = None,
    texts: Sequence[str] | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
    linestyle: str = "-",
    linewidth: float = 2.0,
    alpha: float = 1.0,
    fill: bool = False,
) -> Axes:
    """Draw ``(K, 4)`` corner boxes, multiplied by ``scale = (width, height)`` (for normalised boxes).

    ``colors`` is one colour or one per box (default: the :data:`rssd.palette.COLORS` cycle); ``texts`` one label
    per box.
    """
    ax = _ax(ax)
    boxes = np.asarray(torch.as_tensor(boxes_xyxy, dtype=torch.float64).reshape(-1, 4))
    sx, sy = scale
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if colors is None:
            c = class_color(i)
        elif isinstance(colors, str):
            c = colors
        else:
            c = colors[i]
        ax.add_patch(
            Rectangle(
                (x1 * sx, y1 * sy),
                (x2 - x1) * sx,
                (y2 - y1) * sy,
                fill=fill,
                facecolor=c if fill else "none",
                edgecolor=c,
                linestyle=linestyle,
                linewidth=linewidth,
                alpha=alpha,
            )
        )
        if texts is not None and texts[i]:
            ax.text(
                x1 * sx,
                y1 * sy,
                texts[i],
                color="white",
                fontsize=8,
                va="bottom",
                bbox={"facecolor": c, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            )
    return ax


def repulsion_view(
    pred_cxcywh: Sequence[float],
    gt_attr_xyxy: Sequence[float],
    gt_rep_xyxy: Sequence[float],
    prior_cxcywh: Sequence[float],
    alpha: float = 0.5,
    sigma_gt: float = 1.0,
    ax: Axes | None = None,
) -> dict[str, float]:
    """One predicted box between its target and a neighbour: the numbers of Repulsion Loss, and a picture.

    The predicted box is matched to ``gt_attr`` through ``prior`` (SSD's offsets); RepGT pushes it away from
    ``gt_rep``. Computes IoU with the target, IoG with the neighbour, ``loc`` (Smooth L1 on the offsets),
    ``rep_gt`` and ``total = loc + alpha * rep_gt``, and the gradient of ``total`` with respect to the box
    centre (the arrow shows the descent direction, ``-grad``). All coordinates are normalised to ``[0, 1]``.

    Returns:
        ``{"iou_attr", "iog_rep", "loc", "rep_gt", "total", "grad_cx", "grad_cy"}``.
    """
    from rssd.boxes import cxcywh_to_xyxy, elementwise_iog, elementwise_iou, encode
    from rssd.losses import smooth_ln

    pred = torch.tensor(pred_cxcywh, dtype=torch.float64, requires_grad=True)
    attr = torch.tensor(gt_attr_xyxy, dtype=torch.float64)
    rep = torch.tensor(gt_rep_xyxy, dtype=torch.float64)
    prior = torch.tensor(prior_cxcywh, dtype=torch.float64)
    pred_xyxy = cxcywh_to_xyxy(pred)
    offsets = encode(pred_xyxy[None], prior[None])[0]
    target = encode(attr[None], prior[None])[0]
    loc = torch.nn.functional.smooth_l1_loss(offsets, target, reduction="sum", beta=1.0)
    iog = elementwise_iog(pred_xyxy, rep)
    rep_gt = smooth_ln(iog, sigma_gt)
    total = loc + alpha * rep_gt
    (grad,) = torch.autograd.grad(total, pred)
    pred_xyxy = pred_xyxy.detach()
    out = {
        "iou_attr": float(elementwise_iou(pred_xyxy, attr)),
        "iog_rep": float(iog.detach()),
        "loc": float(loc.detach()),
        "rep_gt": float(rep_gt.detach()),
        "total": float(total.detach()),
        "grad_cx": float(grad[0]),
        "grad_cy": float(grad[1]),
    }
    if ax is not False:
        ax = _ax(ax)
        draw_boxes(attr, ax, colors="#3cb44b", texts=["target G_attr"], linewidth=2.5)
        draw_boxes(rep, ax, colors="#e6194b", texts=["neighbour G_rep"], linewidth=2.5)
        draw_boxes(pred_xyxy, ax, colors="#4363d8", texts=["prediction B"], linestyle="--")
        g = -grad[:2].numpy()
        norm = float(np.hypot(*g))
        if norm > 0:
            g = g / norm * 0.08
            cx, cy = pred_cxcywh[0], pred_cxcywh[1]
            ax.add_patch(FancyArrow(cx, cy, g[0], g[1], width=0.006, color="black", length_includes_head=True))
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_aspect("equal")
        ax.set_title(
            f"IoU(B, G_attr) = {out['iou_attr']:.2f}   IoG(B, G_rep) = {out['iog_rep']:.2f}\n"
            f"loc = {out['loc']:.3f}   RepGT = {out['rep_gt']:.3f}   total = {out['total']:.3f}",
            fontsize=9,
        )
    return out


class LossPlot:
    """A live plot of the training loss terms, for :func:`rssd.train.fit`'s ``on_log`` callback.

    In a notebook the figure updates in place (one output, redrawn at most every ``min_seconds``); elsewhere
    nothing is shown, and ``path`` (if given) receives a PNG at every redraw. Call :meth:`show` at the end for a
    final, complete figure.
    """

    TERMS = ("total", *(k for k in LOSS_TERMS if k != "total"))  # drawing order: total first

    def __init__(self, path: str | None = None, min_seconds: float = 2.0, title: str = "training loss") -> None:
        self.path, self.min_seconds, self.title = path, min_seconds, title
        self._handle = None
        self._last = 0.0
        self.fig, self.axes = plt.subplots(1, 2, figsize=(11, 3.6))
        plt.close(self.fig)  # shown through the display handle only

    def _draw(self, history: Sequence[dict[str, float]]) -> None:
        ax1, ax2 = self.axes
        ax1.clear()
        ax2.clear()
        its = [row["iteration"] for row in history]
        for term in self.TERMS:
            values = [row[term] for row in history]
            if any(v != 0 for v in values):
                ax1.plot(its, values, label=term, lw=2 if term == "total" else 1)
        ax1.set_yscale("log")
        ax1.set_xlabel("iteration")
        ax1.set_title(self.title)
        ax1.legend(fontsize=8)
        ax2.plot(its, [row["lr"] for row in history], color="gray")
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("learning rate", color="gray")
        speed = ax2.twinx()
        speed.plot(its, [row["images_per_s"] for row in history], color="tab:green")
        speed.set_ylabel("images/s", color="tab:green")
        self.fig.tight_layout()

    def __call__(self, history: Sequence[dict[str, float]], force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not history or (not force and now - self._last < self.min_seconds):
            return
        self._last = now
        self._draw(history)
        if self.path:
            self.fig.savefig(self.path, dpi=80)
        if _in_notebook():
            from IPython.display import display

            if self._handle is None:
                self._handle = display(self.fig, display_id=True)
            else:
                self._handle.update(self.fig)

    def show(self, history: Sequence[dict[str, float]]) -> None:
        """Draw the complete history now (and update the live output)."""
        self(history, force=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


# ------------------------------------------------------------------------------------------------ dataset items
__all__ += ["show_item", "show_items"]


def show_item(
    image: Tensor | np.ndarray,
    target: dict,
    classes: Sequence[str] | None = None,
    ax: Axes | None = None,
    *,
    normalization: str | None = None,
    crowd: bool = True,
    title: str | None = None,
    linewidth: float = 2.0,
    show_labels: bool = True,
    normalized: bool | None = None,
) -> Axes:
    """Draw a dataset item ``(image, target)`` (:mod:`rssd.data.common`) before or after a transform.

    ``image`` is uint8 ``(3, H, W)``, or a normalised float model input when ``normalization`` names its preset
    (``"caffe"``, ``"imagenet"``). Boxes are pixels when ``target["boxes"]`` is a ``tv_tensors.BoundingBoxes`` or
    reaches beyond 1.5, normalised ``[0, 1]`` otherwise (``normalized`` overrides the guess). Colours follow the
    class; with ``crowd=True`` crowd objects (IoU > 0.1 with another box of their class,
    :func:`rssd.data.crowd.crowd_mask`) are drawn solid and thick, the others dashed; difficult objects are
    dotted. Labels print (``show_labels``) as class names when ``classes`` is given.
    """
    from torchvision import tv_tensors

    from rssd.data.crowd import crowd_mask

    if normalization is not None:
        from rssd.data.transforms import NORMALIZATIONS

        image = NORMALIZATIONS[normalization].denormalize(torch.as_tensor(image))
    ax = show_image(image, ax, title)
    arr = as_numpy_image(image)
    h, w = arr.shape[:2]
    boxes_t = target["boxes"]
    boxes = np.asarray(torch.as_tensor(boxes_t).detach().cpu(), dtype=np.float64).reshape(-1, 4)
    if normalized is None:
        normalized = not isinstance(boxes_t, tv_tensors.BoundingBoxes) and not (boxes.size and boxes.max() > 1.5)
    pixels = not normalized
    labels = np.asarray(torch.as_tensor(target["labels"]).cpu()).reshape(-1)
    difficult = np.asarray(torch.as_tensor(target.get("difficult", torch.zeros(len(labels), dtype=torch.bool))))
    in_crowd = crowd_mask(boxes, labels) if crowd else np.zeros(len(labels), bool)
    scale = (1.0, 1.0) if pixels else (float(w), float(h))
    for i in range(len(labels)):
        style = ":" if difficult[i] else ("-" if in_crowd[i] or not crowd else "--")
        lw = linewidth * (1.5 if in_crowd[i] else 1.0)
        name = classes[labels[i] - 1] if classes is not None and 0 < labels[i] <= len(classes) else str(labels[i])
        color = class_color(int(labels[i]))
        texts = [name] if show_labels else None
        draw_boxes(boxes[i : i + 1], ax, colors=color, texts=texts, scale=scale, linestyle=style, linewidth=lw)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    return ax


def show_items(
    items: Sequence[tuple],
    classes: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 3.0,
    titles: Sequence[str] | None = None,
    **kwargs,
) -> plt.Figure:
    """A grid of :func:`show_item` pictures (``kwargs`` go to it); returns the figure."""
    n = len(items)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            image, target = items[k]
            show_item(image, target, classes, ax, title=titles[k] if titles else None, **kwargs)
        else:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


#: Colours of :func:`rssd.crowd_eval.classify_detections`'s kinds in :func:`show_detection_errors`.
ERROR_COLORS = {
    "tp": "#3cb44b",
    "duplicate": "#f58231",
    "between": "#e6194b",
    "poor-localisation": "#ffe119",
    "background": "#f032e6",
}


def show_detection_errors(
    image,
    gt_boxes,
    det: dict,
    kinds: Sequence[str],
    classes: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> dict[str, int]:
    """Draw an image, its GT (white, dashed) and detections coloured by error kind; returns the kind counts.

    ``det`` has ``boxes`` (pixels), ``scores`` and ``labels``; ``kinds`` comes from
    :func:`rssd.crowd_eval.classify_detections`. False positives between objects are drawn thicker.
    """
    ax = show_image(image, ax)
    draw_boxes(gt_boxes, ax, colors="white", linestyle="--", linewidth=1.2)
    boxes = torch.as_tensor(det["boxes"]).reshape(-1, 4)
    for i, kind in enumerate(kinds):
        label = ""
        if classes is not None and kind != "tp":
            label = f"{kind} {float(det['scores'][i]):.2f}"
        draw_boxes(boxes[i], ax, colors=ERROR_COLORS[kind], texts=[label] if label else None,
                   linewidth=3.0 if kind == "between" else 1.8)  # fmt: skip
    counts = {k: sum(1 for x in kinds if x == k) for k in ERROR_COLORS}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    ax.set_title((title + "\n" if title else "") + (summary or "no detections"), fontsize=9)
    return counts


__all__ += ["nms_view"]


def nms_view(
    image,
    gt_boxes,
    gt_labels,
    loc: Tensor,
    conf: Tensor,
    priors_cxcywh: Tensor,
    config=None,
    classes: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> dict[str, int]:
    """Post-process one image's SSD outputs and draw the detections by error kind; returns the kind counts.

    ``loc`` ``(P, 4)`` and ``conf`` ``(P, C)`` are one image's outputs, ``config`` a :class:`rssd.detect.DetectConfig`
    (its NMS method, thresholds); ``gt_boxes`` ``(G, 4)`` are in the image's pixels. Detections go through
    :func:`rssd.detect.detect`, are sorted by :func:`rssd.crowd_eval.classify_detections` and drawn by
    :func:`show_detection_errors`. ``ax=False`` draws nothing (for headless checks).
    """
    from rssd.crowd_eval import classify_detections
    from rssd.detect import DetectConfig, detect

    arr = as_numpy_image(image)
    size = [tuple(arr.shape[:2])]
    det = detect(loc[None], conf[None], priors_cxcywh, size, config or DetectConfig())[0]
    kinds = classify_detections(det["boxes"], det["scores"], det["labels"], gt_boxes, gt_labels)
    if ax is False:
        return {k: sum(1 for x in kinds if x == k) for k in ERROR_COLORS}
    return show_detection_errors(image, gt_boxes, det, kinds, classes, ax=ax, title=title)


__all__ += ["prior_cell_view"]


def prior_cell_view(
    spec, k: int, i: int, j: int, image=None, ax: Axes | None = None, size: int | None = None
) -> list[int]:
    """The rows of ``make_priors(spec)`` (and of the network's ``loc``/``conf``) that belong to cell ``(i, j)`` of
    feature map ``k``, and a picture of their priors (on ``image`` resized to the input when given).

    Row index = (priors of the maps before ``k``) + ``(i * f_k + j) * A_k + a`` for box ``a``. ``ax=False`` only
    returns the rows (for headless checks).
    """
    from rssd.boxes import cxcywh_to_xyxy
    from rssd.priors import make_priors

    f, boxes = spec.feature_maps[k], spec.boxes_per_cell[k]
    if not (0 <= i < f and 0 <= j < f):
        raise ValueError(f"map {k} is {f}x{f}: no cell ({i}, {j})")
    offset = sum(ff * ff * b for ff, b in zip(spec.feature_maps[:k], spec.boxes_per_cell[:k], strict=True))
    rows = [offset + (i * f + j) * boxes + a for a in range(boxes)]
    if ax is False:
        return rows
    s = size or spec.image_size
    ax = _ax(ax)
    if image is not None:
        from PIL import Image

        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(as_numpy_image(image)))
        ax.imshow(np.asarray(pil.convert("RGB").resize((s, s))))
    step = spec.steps[k] * s / spec.image_size  # cells are one step apart (slightly more than s / f, notebook 01)
    for g in range(f + 1):  # the grid of the map
        ax.axhline(g * step, color="white", lw=0.3, alpha=0.6)
        ax.axvline(g * step, color="white", lw=0.3, alpha=0.6)
    priors = make_priors(spec)[rows]
    draw_boxes(cxcywh_to_xyxy(priors), ax, scale=(s, s), texts=[f"row {r}" for r in rows], linewidth=1.5)
    ax.set_xlim(0, s)
    ax.set_ylim(s, 0)
    ax.set_axis_off()
    ax.set_title(f"map {k} ({f}x{f}), cell ({i}, {j}): rows {rows[0]}..{rows[-1]}", fontsize=9)
    return rows


__all__ += ["repgt_per_prior", "repulsion_crowd_view"]


def repgt_per_prior(loc: Tensor, priors_cxcywh: Tensor, target: dict, sigma_gt: float = 1.0) -> dict[str, Tensor]:
    """RepGT of one image, prior by prior, and its gradient on every predicted box (paper's RepGT, same class).

    Args:
        loc: ``(P, 4)`` one image's predicted offsets; priors_cxcywh: ``(P, 4)``.
        target: ``{"boxes" (G, 4) normalised xyxy, "labels" (G,)}``.

    Returns:
        ``positive`` ``(P,)``, ``matched`` and ``rep`` ``(P,)`` GT indices (``-1``: none), ``boxes`` ``(P, 4)``
        the decoded predictions, ``iog`` and ``value`` ``(P,)`` (``Smooth_ln(IoG(B_P, G_rep))``, 0 without a
        repulsion target), ``total`` (``sum(value) / #positives``: ``RepulsionLoss``'s ``rep_gt``) and ``grad``
        ``(P, 4)``, the gradient of ``total`` with respect to each predicted box's corners.
    """
    from rssd.boxes import decode, elementwise_iog
    from rssd.losses import smooth_ln
    from rssd.matching import match

    m = match(priors_cxcywh, [target])
    pos, rep = m.positive[0], m.rep_idx[0]
    boxes = decode(loc.detach().float(), priors_cxcywh.float()).requires_grad_()  # (P, 4)
    has = pos & (rep != NO_REPULSION)
    iog = elementwise_iog(boxes, m.rep_boxes[0])  # (P,)
    value = torch.where(has, smooth_ln(iog, sigma_gt), torch.zeros_like(iog))
    total = value.sum() / max(int(pos.sum()), 1)
    (grad,) = torch.autograd.grad(total, boxes)
    return {
        "positive": pos, "matched": m.matched_idx[0], "rep": rep, "boxes": boxes.detach(), "iog": iog.detach(),
        "value": value.detach(), "total": total.detach(), "grad": grad,
    }  # fmt: skip


def repulsion_crowd_view(
    image,
    loc: Tensor,
    priors_cxcywh: Tensor,
    target: dict,
    person: int,
    sigma_gt: float = 1.0,
    ax: Axes | None = None,
    title: str | None = None,
    arrow_scale: float = 0.08,
) -> dict[str, float]:
    """One GT of a crowd photo: its positive priors, their predicted boxes, each one's repulsion target, the RepGT
    value per prior and the descent direction of RepGT on each predicted box's centre (arrows).

    ``target`` holds normalised boxes (the photo's own size is used for drawing); ``person`` is a GT index. Green:
    the GT; grey dotted: its positive priors; blue dashed: their predicted boxes, labelled with RepGT; red: the
    repulsion targets; arrows: ``-d RepGT / d centre`` (scaled to ``arrow_scale`` of the image for the largest).
    ``ax=False`` only computes.

    Returns:
        ``{"positives", "with_rep", "rep_gt_sum", "rep_gt_image", "mean_iog"}`` for that GT (``rep_gt_image``: the
        whole image's RepGT term, as :class:`rssd.losses.RepulsionLoss` reports it).
    """
    from rssd.boxes import cxcywh_to_xyxy

    r = repgt_per_prior(loc, priors_cxcywh, target, sigma_gt)
    mine = r["positive"] & (r["matched"] == person)
    has = mine & (r["rep"] != NO_REPULSION)
    out = {
        "positives": int(mine.sum()), "with_rep": int(has.sum()), "rep_gt_sum": float(r["value"][mine].sum()),
        "rep_gt_image": float(r["total"]), "mean_iog": float(r["iog"][has].mean()) if has.any() else 0.0,
    }  # fmt: skip
    if ax is False:
        return out
    arr = as_numpy_image(image)
    h, w = arr.shape[:2]
    scale = (float(w), float(h))
    ax = show_image(image, ax)
    gt = torch.as_tensor(target["boxes"])
    reps = r["rep"][has].unique()
    draw_boxes(gt[reps], ax, colors="#e6194b", scale=scale, linewidth=2, texts=[f"G_rep {int(k)}" for k in reps])
    draw_boxes(cxcywh_to_xyxy(priors_cxcywh[mine]), ax, colors="lightgray", scale=scale, linewidth=0.8, linestyle=":")
    values = r["value"][mine]
    draw_boxes(r["boxes"][mine], ax, colors="#4363d8", scale=scale, linewidth=1.2, linestyle="--",
               texts=[f"{v:.2f}" if v > 0 else "" for v in values.tolist()])  # fmt: skip
    draw_boxes(gt[person], ax, colors="#3cb44b", scale=scale, linewidth=3, texts=[f"GT {person}"])
    g = r["grad"][mine]  # (K, 4) d total / d (x1, y1, x2, y2)
    centre_grad = torch.stack([g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]], 1)  # d / d (cx, cy)
    norm = float(centre_grad.norm(dim=1).max()) if len(g) else 0.0
    if norm > 0:
        b = r["boxes"][mine]
        centres = ((b[:, :2] + b[:, 2:]) / 2).tolist()
        for (cx, cy), (gx, gy) in zip(centres, (-centre_grad / norm).tolist(), strict=True):
            if gx or gy:
                ax.add_patch(FancyArrow(cx * w, cy * h, gx * arrow_scale * w, gy * arrow_scale * w, width=0.004 * w,
                                        color="black", length_includes_head=True))  # fmt: skip
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(
        (title + "\n" if title else "")
        + f"GT {person}: {out['positives']} positives, {out['with_rep']} with a G_rep; "
        f"RepGT sum {out['rep_gt_sum']:.3f}, mean IoG {out['mean_iog']:.2f}",
        fontsize=9,
    )
    return out



# ------------------------------------------------------------------------------------------------ evaluation
__all__ += ["plot_pr_curves", "plot_miss_rate"]


def plot_pr_curves(result: VOCResult, classes: Sequence[str] | None = None, ax: Axes | None = None) -> Axes:
    """Precision-recall curves of a :class:`rssd.voc_eval.VOCResult`'s ``classes`` (default: all with an AP), AP
    in the legend.

    Returns:
        The axes drawn on (a new figure's when ``ax`` is ``None``).
    """
    ax = _ax(ax, (6, 5))
    for c in classes if classes is not None else result.classes:
        a = result.ap[c]
        if a is None:
            continue
        m = result.matches[c]
        rec = np.concatenate([[0.0], m.recall])
        prec = np.concatenate([[1.0 if m.scores.size else 0.0], m.precision])
        ax.plot(rec, prec, lw=1.2, label=f"{c} {a:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    title = f"{result.metric} mAP {result.mAP:.4f}" if result.mAP is not None else result.metric
    ax.set_title(title + (f" ({result.subset})" if result.subset != "all" else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2, loc="lower left")
    return ax


def plot_miss_rate(curves: MissRate | Mapping[str, MissRate], ax: Axes | None = None) -> Axes:
    """Miss rate against false positives per image (log-log), one curve per entry, MR^-2 in the legend.

    Args:
        curves: a :class:`rssd.crowd_eval.MissRate` or ``{label: MissRate}`` (e.g. ``{"SSD": ..., "SSD+Rep": ...}``).
        ax: axes to draw on (default: a new figure).
    """
    from rssd.crowd_eval import MissRate

    ax = _ax(ax, (6, 5))
    items = {curves.class_name: curves} if isinstance(curves, MissRate) else dict(curves)
    for label, mr in items.items():
        if mr.lamr is None:
            continue
        x = np.concatenate([[mr.reference_fppi[0] / 10], np.maximum(mr.fppi, 1e-4)])
        y = np.concatenate([[1.0], mr.miss_rate])
        ax.step(x, y, where="post", lw=1.2, label=f"{label} MR$^{{-2}}$ {100 * mr.lamr:.1f}%")
        ax.plot(mr.reference_fppi, mr.reference_miss_rate, "o", ms=3, color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-3, 10)
    ax.set_ylim(0.02, 1.05)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("miss rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="lower left")
    return ax
