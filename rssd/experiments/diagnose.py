"""Why repulsion helps or hurts: RepGT at the *perfect* prediction, and how crowded a dataset is.

RepGT pushes the predicted box ``B`` of a positive prior away from its repulsion target ``G_rep`` by penalising
``Smooth_ln(IoG(B, G_rep))``. If the prior's own target ``G_attr`` already overlaps ``G_rep``, the perfect
prediction ``B = G_attr`` is penalised too: ``Smooth_ln(IoG(G_attr, G_rep)) > 0``, with a non-zero gradient, so
the minimum of attraction + repulsion is no longer at the truth. This module measures that conflict on a set of
annotations, with the matching that training uses (:func:`rssd.matching.match` on a model's priors):

* :func:`repgt_at_truth`: per positive with a repulsion target, ``IoG(G_attr, G_rep)``, the RepGT value and the
  norm of its gradient with respect to the box offsets at the perfect prediction, and (``optimum=True``) where
  the per-positive objective ``SmoothL1(l - t) + alpha * Smooth_ln(IoG(decode(l), G_rep))`` actually has its
  minimum: the IoU of that box with ``G_attr`` (1 would be no conflict);
* :func:`crowd_density`: persons per image, the share of them in the crowd subset (IoU > 0.1 with another),
  and pairs per image above IoU 0.3 / 0.5 (the statistics the CrowdHuman paper tabulates);
* :func:`diagnose_annotations`: both, for one dataset, as one JSON-ready dict.

Everything runs on normalised ``xyxy`` boxes: IoU and IoG do not depend on the image size, the priors do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "normalised_targets", "repgt_at_truth", "crowd_density", "diagnose_annotations", "run_diagnosis", "QUANTILES",
    "PUBLISHED",
]  # fmt: skip

#: Quantiles reported for every distribution.
QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)


def normalised_targets(
    records: Iterable[Any], classes: Sequence[str] | None = None, keep_difficult: bool = False
) -> list[dict[str, Tensor]]:
    """Loss-style targets (``boxes`` ``(G, 4)`` xyxy in ``[0, 1]``, ``labels``) from VOC-style records.

    ``records`` are :class:`rssd.data.voc.VOCAnnotation` (1-based pixel boxes, ``width``, ``height``, ``names``,
    ``difficult``) or anything with those attributes. Difficult objects are left out unless ``keep_difficult``,
    as training leaves them out. ``classes`` restricts the objects to those classes (default: every name, sorted).
    """
    records = list(records)
    if classes is None:
        classes = sorted({n for r in records for n in r.names})
    index = {c: k + 1 for k, c in enumerate(classes)}
    out = []
    for r in records:
        keep = [k for k, n in enumerate(r.names) if n in index and (keep_difficult or not r.difficult[k])]
        boxes = np.asarray(r.boxes, np.float64).reshape(-1, 4)[keep].copy()
        boxes[:, :2] -= 1.0  # 1-based inclusive -> rssd's continuous pixels
        boxes /= np.array([r.width, r.height, r.width, r.height], np.float64)
        labels = [index[r.names[k]] for k in keep]
        out.append({"boxes": torch.as_tensor(boxes.clip(0, 1), dtype=torch.float32),
                    "labels": torch.as_tensor(labels, dtype=torch.long)})  # fmt: skip
    return out


def _quantiles(x: np.ndarray) -> dict[str, float | None]:
    if x.size == 0:
        return {f"q{int(100 * q)}": None for q in QUANTILES} | {"mean": None}
    return {f"q{int(100 * q)}": float(np.quantile(x, q)) for q in QUANTILES} | {"mean": float(x.mean())}


def repgt_at_truth(
    targets: Sequence[dict[str, Tensor]],
    priors_cxcywh: Tensor,
    *,
    sigma: float = 1.0,
    alpha: float = 0.5,
    same_class: bool = True,
    optimum: bool = True,
    steps: int = 200,
    batch: int = 64,
) -> dict[str, np.ndarray]:
    """RepGT at the perfect prediction for every positive prior of ``targets`` that has a repulsion target.

    Args:
        targets: per image ``{"boxes": (G, 4) xyxy in [0, 1], "labels": (G,)}``.
        priors_cxcywh: ``(P, 4)`` the model's priors.
        sigma, alpha: RepGT's Smooth_ln sigma and weight (paper: 1 and 0.5).
        same_class: how repulsion targets are chosen (:func:`rssd.matching.match`).
        optimum: also minimise each positive's attraction + repulsion objective (Adam on its 4 offsets).
        steps: optimisation steps for ``optimum``.
        batch: images matched at a time.

    Returns:
        ``positives`` (number of positive priors), ``with_rep`` (those with a repulsion target), and per positive
        with one: ``iog`` ``IoG(G_attr, G_rep)``, ``value`` ``Smooth_ln(iog)``, ``grad`` the norm of
        ``alpha * d value / d offsets`` at the truth, ``optimum_iou`` IoU of the objective's minimum with
        ``G_attr`` (when ``optimum``).
    """
    from rssd.boxes import decode, elementwise_iog, elementwise_iou
    from rssd.losses import smooth_ln
    from rssd.matching import NO_REPULSION, match

    priors = priors_cxcywh.float()
    attr, rep, pri, offsets = [], [], [], []
    positives = 0
    for start in range(0, len(targets), batch):
        m = match(priors, list(targets[start : start + batch]), same_class=same_class)
        pos_img, pos_pri = m.positive.nonzero(as_tuple=True)
        positives += int(pos_img.numel())
        has = m.rep_idx[pos_img, pos_pri] != NO_REPULSION
        pos_img, pos_pri = pos_img[has], pos_pri[has]
        attr.append(m.matched_boxes[pos_img, pos_pri])
        rep.append(m.rep_boxes[pos_img, pos_pri])
        pri.append(priors[pos_pri])
        offsets.append(m.loc_targets[pos_img, pos_pri])
    g_attr = torch.cat(attr) if attr else torch.zeros(0, 4)
    g_rep = torch.cat(rep) if rep else torch.zeros(0, 4)
    p = torch.cat(pri) if pri else torch.zeros(0, 4)
    t = torch.cat(offsets) if offsets else torch.zeros(0, 4)

    loc = t.clone().requires_grad_(True)
    value = smooth_ln(elementwise_iog(decode(loc, p), g_rep), sigma)  # (K,)
    (grad,) = torch.autograd.grad(alpha * value.sum(), loc) if loc.numel() else (torch.zeros_like(loc),)
    out = {
        "positives": np.asarray(positives),
        "with_rep": np.asarray(int(g_attr.shape[0])),
        "iog": elementwise_iog(g_attr, g_rep).detach().numpy().astype(np.float64),
        "value": value.detach().numpy().astype(np.float64),
        "grad": grad.norm(dim=1).numpy().astype(np.float64),
    }
    if optimum:
        from torch.nn.functional import smooth_l1_loss

        loc = t.clone().requires_grad_(True)
        opt = torch.optim.Adam([loc], lr=0.02)
        for _ in range(steps):
            opt.zero_grad()
            attract = smooth_l1_loss(loc, t, reduction="none", beta=1.0).sum(dim=1)
            repel = smooth_ln(elementwise_iog(decode(loc, p), g_rep), sigma)
            (attract + alpha * repel).sum().backward()
            opt.step()
        with torch.no_grad():
            out["optimum_iou"] = elementwise_iou(decode(loc, p), g_attr).numpy().astype(np.float64)
    return out


def crowd_density(targets: Sequence[dict[str, Tensor]], label: int = 1) -> dict[str, float]:
    """Crowd statistics of one class: objects per image, crowd share (IoU > 0.1), pairs per image above IoU 0.3/0.5.

    ``targets`` as for :func:`repgt_at_truth`; ``label`` the class. Pairs are unordered pairs of objects of that
    class in one image; IoU without ``+1``.
    """
    from rssd.boxes import box_iou
    from rssd.data.crowd import CROWD_IOU

    n_obj = n_crowd = pairs3 = pairs5 = images_with_pair = 0
    for t in targets:
        boxes = t["boxes"][t["labels"] == label].double()
        n = boxes.shape[0]
        n_obj += n
        if n < 2:
            continue
        iou = box_iou(boxes, boxes).fill_diagonal_(0)
        n_crowd += int((iou > CROWD_IOU).any(dim=1).sum())
        upper = torch.triu(iou, diagonal=1)
        pairs3 += int((upper > 0.3).sum())
        pairs5 += int((upper > 0.5).sum())
        images_with_pair += int(bool((upper > CROWD_IOU).any()))
    images = max(len(targets), 1)
    return {
        "images": len(targets),
        "objects_per_image": n_obj / images,
        "crowd_fraction": n_crowd / max(n_obj, 1),
        "pairs_iou_0.3_per_image": pairs3 / images,
        "pairs_iou_0.5_per_image": pairs5 / images,
        "images_with_crowd_pair": images_with_pair / images,
    }


def diagnose_annotations(
    name: str,
    targets: Sequence[dict[str, Tensor]],
    priors_cxcywh: Tensor,
    *,
    person_label: int | None = 1,
    sigmas: Sequence[float] = (1.0, 0.0),
    alpha: float = 0.5,
    same_class: bool = True,
    optimum_sigma: float | None = 1.0,
) -> dict[str, Any]:
    """The diagnosis of one dataset: crowd density of ``person_label`` and RepGT at the truth for each sigma."""
    out: dict[str, Any] = {"dataset": name, "images": len(targets), "priors": int(priors_cxcywh.shape[0])}
    if person_label is not None:
        out["person_density"] = crowd_density(targets, person_label)
    out["repgt"] = {}
    for sigma in sigmas:
        r = repgt_at_truth(targets, priors_cxcywh, sigma=sigma, alpha=alpha, same_class=same_class,
                           optimum=optimum_sigma is not None and sigma == optimum_sigma)  # fmt: skip
        entry: dict[str, Any] = {
            "positives": int(r["positives"]),
            "with_rep": int(r["with_rep"]),
            "with_rep_fraction": int(r["with_rep"]) / max(int(r["positives"]), 1),
            "penalised_at_truth_fraction": float((r["value"] > 1e-6).mean()) if r["value"].size else 0.0,
            "iog": _quantiles(r["iog"]),
            "iog_above": {str(x): float((r["iog"] > x).mean()) if r["iog"].size else 0.0 for x in (0.1, 0.3, 0.5)},
            "value": _quantiles(r["value"]),
            "grad": _quantiles(r["grad"]),
            "mean_value_per_positive": float(r["value"].sum() / max(int(r["positives"]), 1)),
        }
        if "optimum_iou" in r:
            iou = r["optimum_iou"]
            entry["optimum_iou"] = _quantiles(iou)
            entry["optimum_iou_below"] = {str(x): float((iou < x).mean()) if iou.size else 0.0
                                          for x in (0.95, 0.9, 0.7, 0.5)}  # fmt: skip
        out["repgt"][f"sigma={sigma:g}"] = entry
        out.setdefault("iog_samples", r["iog"])
    return out


def _synthetic_targets(dataset: Any, limit: int) -> list[dict[str, Tensor]]:
    out = []
    for i in range(min(limit, len(dataset))):
        _, t = dataset[i]
        h, w = (int(v) for v in t["orig_size"])
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        out.append({"boxes": torch.as_tensor(np.asarray(t["boxes"], np.float32)).reshape(-1, 4) / scale,
                    "labels": torch.as_tensor(np.asarray(t["labels"]), dtype=torch.long).reshape(-1)})  # fmt: skip
    return out


#: Published crowd statistics that the diagnosis compares with (persons per image; source in the report).
PUBLISHED = {
    "CrowdHuman (train+val)": {"objects_per_image": 22.6, "source": "Shao et al. 2018, arXiv:1805.00123, abstract"},
    "CityPersons": {"objects_per_image": 7.0, "source": "about 7 pedestrians per image, as quoted by the "
                    "CityPersons dataset page of paperswithcode (from the R2NMS paper)"},
}  # fmt: skip


def run_diagnosis(
    out_dir: str | os.PathLike,
    *,
    voc_root: str | os.PathLike | None = None,
    images: int = 1000,
    grids: Sequence[str] = ("crowd-cpu",),
    progress: bool = True,
) -> dict[str, Any]:
    """Diagnose the synthetic benchmarks (each grid's train split, seed 0) and VOC2007 test when at hand.

    Writes ``diagnosis.json``, ``diagnosis.md`` and ``iog.png`` (the distribution of ``IoG(G_attr, G_rep)`` over
    the positives with a repulsion target) to ``out_dir``; returns the JSON's content.
    """
    from rssd.data.synthetic import SyntheticCrowds
    from rssd.experiments.crowd import load_grid
    from rssd.priors import make_priors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, list[dict[str, Tensor]], str, int | None]] = []
    for name in grids:
        grid = load_grid(name)
        model = grid.base.get("model", "ssd300")
        cases.append((f"synthetic {name} (train, {grid.synth_config().size} px)",
                      _synthetic_targets(grid.dataset(0, "train"), images), model, 1))  # fmt: skip
    cases.append(("synthetic default (rssd synth, 300 px)",
                  _synthetic_targets(SyntheticCrowds(int(images / 0.8) + 1, 0, "trainval"), images), "ssd-cpu", 1))
    if voc_root is not None:
        from rssd.data.voc import VOC_CLASSES, load_voc_annotations

        anns = load_voc_annotations(voc_root, "2007", "test", progress=progress)
        person = VOC_CLASSES.index("person") + 1
        cases.append((f"VOC2007 test, 20 classes ({len(anns)} images)", normalised_targets(anns, VOC_CLASSES),
                      "ssd300", person))  # fmt: skip
        with_people = [a for a in anns if "person" in a.names]
        cases.append((f"VOC2007 test, persons only ({len(with_people)} images with people)",
                      normalised_targets(with_people, ["person"]), "ssd300", 1))  # fmt: skip
    results, samples = [], {}
    for name, targets, priors, person in cases:
        if progress:
            print(f"diagnose: {name} ({len(targets)} images, {priors} priors)")
        r = diagnose_annotations(name, targets, make_priors(priors), person_label=person)
        samples[name] = r.pop("iog_samples")
        r["prior_layout"] = priors
        results.append(r)
    report = {"datasets": results, "published": PUBLISHED}
    (out_dir / "diagnosis.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "diagnosis.md").write_text(_diagnosis_markdown(report))
    _plot_iog(samples, out_dir / "iog.png")
    return report


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _diagnosis_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# RepGT at the perfect prediction",
        "",
        "For every positive prior (SSD matching on the dataset's prior layout) whose repulsion target exists: "
        "`IoG(G_attr, G_rep)`, the RepGT value `Smooth_ln(IoG)` when the predicted box *is* its ground truth, and "
        "where the per-positive objective `SmoothL1 + 0.5 * Smooth_ln(IoG(B, G_rep))` has its minimum "
        "(IoU of that box with the ground truth; 100 % would mean no conflict). sigma = 1 (the paper's best).",
        "",
        "| dataset | persons / image | persons in crowd (%) | person pairs IoU>0.5 / image | positives with G_rep (%) "
        "| penalised at truth (%) | IoG median | IoG > 0.5 (%) | RepGT at truth, mean | optimum IoU median "
        "| optimum IoU < 0.9 (%) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["datasets"]:
        d = r.get("person_density", {})
        g = r["repgt"]["sigma=1"]
        lines.append(
            f"| {r['dataset']} | {d.get('objects_per_image', 0):.2f} | {_pct(d.get('crowd_fraction'))} "
            f"| {d.get('pairs_iou_0.5_per_image', 0):.3f} | {_pct(g['with_rep_fraction'])} "
            f"| {_pct(g['penalised_at_truth_fraction'])} | {g['iog']['q50'] or 0:.3f} | {_pct(g['iog_above']['0.5'])} "
            f"| {g['value']['mean'] or 0:.3f} | {_pct(g.get('optimum_iou', {}).get('q50'))} "
            f"| {_pct(g.get('optimum_iou_below', {}).get('0.9'))} |"
        )
    lines += [
        "",
        "How hard RepGT pushes at the truth, by sigma: the norm of `0.5 * d Smooth_ln(IoG(B, G_rep)) / d offsets` at "
        "`B = G_attr`, over the positives with a repulsion target (sigma 0: the penalty is IoG itself, its slope "
        "bounded; sigma 1: `-ln(1 - IoG)`, slope `1 / (1 - IoG)`, unbounded as IoG nears 1). rssd's `excess` RepGT "
        "at sigma 1 equals the paper's minus `-ln(1 - IoG(G_attr, G_rep))` wherever the box overlaps G_rep at least "
        "as much as its truth does, so it has the same gradient there.",
        "",
        "| dataset | gradient median, sigma 1 / 0 | gradient q90, sigma 1 / 0 | gradient mean, sigma 1 / 0 "
        "| mean ratio | RepGT at truth mean, sigma 1 / 0 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["datasets"]:
        g1, g0 = r["repgt"].get("sigma=1"), r["repgt"].get("sigma=0")
        if g1 is None or g0 is None or g1["grad"]["mean"] is None:
            continue
        ratio = g1["grad"]["mean"] / g0["grad"]["mean"] if g0["grad"]["mean"] else float("nan")
        lines.append(
            f"| {r['dataset']} | {g1['grad']['q50']:.3f} / {g0['grad']['q50']:.3f} "
            f"| {g1['grad']['q90']:.3f} / {g0['grad']['q90']:.3f} "
            f"| {g1['grad']['mean']:.3f} / {g0['grad']['mean']:.3f} "
            f"| {ratio:.1f}x | {g1['value']['mean']:.3f} / {g0['value']['mean']:.3f} |"
        )
    lines += ["", "Published crowd density for comparison (persons per image):", ""]
    for k, v in report["published"].items():
        lines.append(f"- {k}: {v['objects_per_image']} ({v['source']})")
    lines.append("")
    return "\n".join(lines)


def _plot_iog(samples: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    for name, x in samples.items():
        if x.size:
            ax.hist(x, bins=bins, density=True, histtype="step", lw=1.5, label=f"{name} (n={x.size})")
    ax.set(xlabel="IoG(G_attr, G_rep) of positives with a repulsion target", ylabel="density",
           title="How much the repulsion target overlaps the attraction target")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
