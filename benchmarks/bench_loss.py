"""Forward + backward of the loss on CPU: rssd's batched loss vs a fast per-image implementation of the fork's.

Inputs: SSD300 priors (8732), 21 classes, random ``loc``/``conf`` and crowds of GTs (groups of 1-8 overlapping
boxes scattered over the image), swept over batch 8 / 32 and 1-5 / 1-40 GTs per image. Timed in the same process,
in interleaved rounds (every implementation once per round, in a new random order each round, so that other
processes' load and the memory one implementation frees for the next fall on all of them alike); medians over the
rounds. Gradients start from None each time (as after ``optimizer.zero_grad()``), for every implementation.

* ``rssd``: ``RepulsionLoss()`` (RepGT + RepBox, the default), ``MultiBoxLoss``, and ``rssd.fork.ForkRepulsionLoss``
  (the fork's RepGT rule, no RepBox, built from rssd's pieces).
* ``before``: the same three as they were before the batched speed-ups (``tests.reference.loss_before``, frozen;
  slow, so timed in the first few rounds only).
* ``per-image``: the original fork's algorithm written as fast as I can (ssd.pytorch's structure): a Python loop
  over images for matching, vectorised within each image (dense GT x prior IoU from the priors' distinct x / y
  intervals, the best GT per prior and best prior per GT, rssd's rule for contested forced priors so that the
  numbers agree, and the fork's repulsion targets from the IoU of the GTs with the predicted boxes), then the
  loss terms batched as in ssd.pytorch's MultiBoxLoss, with rssd's own mining (background CE of every prior in
  cache-sized blocks, per-image top-k cut-off) and the cross-entropy's graph on the chosen priors only.
  ``MultiBox`` and ``MultiBox + RepGT`` (the fork's loss).
* ``shared``: what both rssd's loss and the per-image reference pay the same way: the background cross-entropy of
  every prior (mining) and the fresh dense gradient of ``conf``; the speed-up line says how fast the rest must be
  for 3x.
* ``conf term``: the whole confidence term once the matching is known, which both compute the same way (the
  background CE, mining, the chosen rows' cross-entropy and its backward into a fresh ``conf`` gradient): with it,
  the report gives the most any loss could gain over the reference by faster matching and repulsion terms alone.
* ``floor``: the cross-entropy of every prior (forward + backward) plus one dense IoU of every real GT with every
  prior, what a straightforward loss cannot skip much of (rssd's loss keeps the backward of the cross-entropy to
  the chosen priors and never builds the dense IoU, so it can go below it).

Checked before timing, at every point: ``match`` gives exactly what it gave before (every field of ``Matches``),
and each loss gives the same terms and gradients as before and as its per-image counterpart (within 1e-5).
Targets: batched faster than the per-image reference at every point, and the default loss (with RepBox) >= 3x
faster than the per-image MultiBox + RepGT at batch 32 with 1-40 GTs.

    python benchmarks/bench_loss.py [--threads 2,1] [--rounds 15] [--batches 8,32] [--max-gts 5,40] [--device cpu|cuda]

The last recorded run is in ``benchmarks/README.md``.

``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here (idle OpenMP workers spinning on a loaded machine make every
small op wait for a core: see bench_detect.py); set it in the environment to override.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import machine, table

from rssd.boxes import cxcywh_to_xyxy, decode, elementwise_iog, elementwise_iou, encode
from rssd.fork import ForkRepulsionLoss
from rssd.losses import MultiBoxLoss, RepulsionLoss, _background_ce, hard_negative_mask
from rssd.matching import forced_priors, match, pad_targets
from rssd.priors import make_priors
from tests.helpers import crowd
from tests.reference import loss_before, match_before

MATCH_FIELDS = (
    "matched_idx", "positive", "labels", "matched_boxes", "loc_targets", "iou", "forced", "rep_idx", "rep_boxes"
)


def make_batch(n: int, num_classes: int, device: str, seed: int = 0, max_gt: int = 40) -> list[dict]:
    """``n`` images of 1..``max_gt`` GTs in crowds (groups of 1-8 overlapping boxes, 70 % of them one class)."""
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(n):
        g = int(torch.randint(1, max_gt + 1, (1,), generator=gen))
        groups = [
            crowd(k, num_classes, gen, same_class=bool(torch.rand(1, generator=gen) < 0.7)) for k in _split(g, gen)
        ]
        boxes = []
        for grp in groups:  # scatter the groups over the image
            off = torch.rand(2, generator=gen) * 0.5
            boxes.append((grp["boxes"] * 0.6 + off.repeat(2)).clamp(0, 1))
        targets.append(
            {"boxes": torch.cat(boxes).to(device), "labels": torch.cat([grp["labels"] for grp in groups]).to(device)}
        )
    return targets


def _split(g: int, gen: torch.Generator) -> list[int]:
    parts = []
    while g > 0:
        k = min(g, int(torch.randint(1, 9, (1,), generator=gen)))
        parts.append(k)
        g -= k
    return parts


# ---------------------------------------------------------------- the per-image reference (the fork's algorithm)
class PriorIntervals:
    """The priors' distinct x and y intervals: a dense GT x prior IoU from ``(U, G)`` overlaps and row gathers."""

    def __init__(self, priors_cxcywh: torch.Tensor) -> None:
        self.xyxy = cxcywh_to_xyxy(priors_cxcywh.float())
        self.ux, self.xi = torch.unique(self.xyxy[:, [0, 2]], dim=0, return_inverse=True)
        self.uy, self.yi = torch.unique(self.xyxy[:, [1, 3]], dim=0, return_inverse=True)
        x1, y1, x2, y2 = self.xyxy.unbind(1)
        self.area = (x2 - x1) * (y2 - y1)

    def iou(self, gt_xyxy: torch.Tensor) -> torch.Tensor:
        """``(P, G)`` IoU, the operations of torchvision's ``box_iou`` (bit-identical values)."""
        gx1, gy1, gx2, gy2 = (c[None, :] for c in gt_xyxy.unbind(1))
        w = torch.minimum(gx2, self.ux[:, 1:]).sub_(torch.maximum(gx1, self.ux[:, :1])).clamp_(min=0)
        h = torch.minimum(gy2, self.uy[:, 1:]).sub_(torch.maximum(gy1, self.uy[:, :1])).clamp_(min=0)
        inter = w.index_select(0, self.xi).mul_(h.index_select(0, self.yi))  # (P, G)
        area_g = (gx2 - gx1) * (gy2 - gy1)
        return inter.div_((area_g + self.area[:, None]).sub_(inter))


def per_image_loss(loc, conf, priors, targets, rep_gt: bool, intervals: PriorIntervals, neg_pos_ratio: int = 3,
                   threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """The fork's MultiBox (+ its RepGT: sigma 0, weight 1) loss; matching one image at a time."""
    n_img, n_pri, n_cls = conf.shape
    dev = loc.device
    pos_img, pos_pri, attr, labels, rep = [], [], [], [], []
    for n, t in enumerate(targets):
        boxes = t["boxes"].float()
        n_gt = boxes.shape[0]
        if n_gt == 0:
            continue
        iou = intervals.iou(boxes)  # (P, G)
        best_iou, best_gt = iou.max(dim=1)  # (P,) the best GT of every prior
        forced = iou.argmax(dim=0)  # (G,) the best prior of every GT
        if n_gt > 1 and bool((forced.sort().values.diff() == 0).any()):  # contested: rssd's rule (rare)
            forced = forced_priors(iou.t()[None], torch.ones(1, n_gt, dtype=torch.bool, device=dev))[0]
        got = forced >= 0  # (all, unless an image has more GTs than priors)
        best_gt[forced[got]] = torch.arange(n_gt, device=dev)[got]
        pos = best_iou >= threshold
        pos[forced[got]] = True
        pri = pos.nonzero().squeeze(1)
        gt = best_gt[pri]
        pos_img.append(torch.full_like(pri, n))
        pos_pri.append(pri)
        attr.append(boxes[gt])
        labels.append(t["labels"][gt])
        if rep_gt:  # the fork: IoU of every GT with the predicted box, the matched GT's entry -1, arg-max
            pred = decode(loc[n, pri].detach(), priors[pri])
            ov = elementwise_iou(boxes[None, :, :], pred[:, None, :]).scatter_(1, gt[:, None], -1.0)  # (K_n, G)
            rep.append(boxes[ov.argmax(dim=1)])
    # The loss terms, batched (ssd.pytorch's MultiBoxLoss).
    pos_img, pos_pri = torch.cat(pos_img), torch.cat(pos_pri)
    num_pos = max(pos_img.numel(), 1)
    loc_pos = loc[pos_img, pos_pri]
    loss_l = F.smooth_l1_loss(loc_pos, encode(torch.cat(attr), priors[pos_pri]), reduction="sum")
    positive = torch.zeros(n_img, n_pri, dtype=torch.bool, device=dev)
    positive[pos_img, pos_pri] = True
    conf_flat = conf.reshape(-1, n_cls)
    background = _background_ce(conf_flat).view(n_img, n_pri)  # rssd's: CE with label 0, blocked
    neg_img, neg_pri = hard_negative_mask(background, positive, neg_pos_ratio).nonzero(as_tuple=True)
    rows = torch.cat([pos_img * n_pri + pos_pri, neg_img * n_pri + neg_pri])
    classes = torch.cat([torch.cat(labels), torch.zeros_like(neg_img)])
    loss_c = F.cross_entropy(conf_flat[rows], classes, reduction="sum")
    out = {"loc": loss_l / num_pos, "conf": loss_c / num_pos}
    if rep_gt:
        pred = decode(loc_pos, priors[pos_pri])
        out["rep_gt"] = elementwise_iog(pred, torch.cat(rep)).sum() / num_pos
    out["total"] = sum(out.values())
    return out


def floor(conf, labels, gt_flat, intervals: PriorIntervals) -> None:
    """The cross-entropy of every prior, forward and backward, and one dense IoU of the real GTs with the priors."""
    intervals.iou(gt_flat)
    F.cross_entropy(conf.reshape(-1, conf.shape[-1]), labels.reshape(-1), reduction="sum").backward()


def shared(conf) -> None:
    """What rssd's loss and the per-image reference both pay, the same way: the background cross-entropy of every
    prior (for mining, no graph) and the fresh, dense ``(N, P, C)`` gradient of ``conf`` that the backward of the
    chosen rows writes into (zeros, then the rows)."""
    _background_ce(conf.reshape(-1, conf.shape[-1]))  # no graph (it runs under no_grad)
    torch.zeros_like(conf)


def conf_term(conf, positive, pos_labels, neg_pos_ratio: int = 3) -> torch.Tensor:
    """The confidence term given the matching (``positive`` ``(N, P)``, ``pos_labels`` ``(K,)`` in
    ``positive.nonzero()``'s order), as rssd's loss and the per-image reference both compute it."""
    n_img, n_pri, n_cls = conf.shape
    conf_flat = conf.reshape(-1, n_cls)
    background = _background_ce(conf_flat).view(n_img, n_pri)
    neg = hard_negative_mask(background, positive, neg_pos_ratio).view(-1).nonzero().squeeze(1)
    rows = torch.cat([positive.view(-1).nonzero().squeeze(1), neg])
    classes = torch.cat([pos_labels, torch.zeros_like(neg)])
    return F.cross_entropy(conf_flat.index_select(0, rows), classes, reduction="sum")


# ---------------------------------------------------------------- checks and timing
def interleaved(fns: dict, rounds: int, few: set[str] = frozenset(), few_rounds: int = 3) -> dict[str, list[float]]:
    """Time every function once per round (as bench_detect's helper), in a new seeded random order each round:
    what a function leaves behind (memory it freed, which the next one faults in again) then falls on different
    ones each round. The ``few`` (slow ones) run in the first ``few_rounds`` rounds only."""
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    gen = torch.Generator().manual_seed(0)
    for r in range(rounds):
        for i in torch.randperm(len(names), generator=gen).tolist():
            name = names[i]
            if name in few and r >= few_rounds:
                continue
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def check(loc, conf, priors, targets, losses, refs) -> None:
    """Same match as before (exactly); same terms and gradients as before and as the per-image reference."""
    m, old = match(priors, targets), match_before(priors, pad_targets(targets, priors.device))
    for name, before in zip(MATCH_FIELDS, old, strict=True):
        if not torch.equal(getattr(m, name), before):
            raise SystemExit(f"MISMATCH: match().{name} differs from before")

    def same(a, b, what):
        for k in a.keys() & b.keys():
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5, msg=f"{what}: {k}")
        ga = torch.autograd.grad(a["total"], (loc, conf))
        gb = torch.autograd.grad(b["total"], (loc, conf))
        for x, y in zip(ga, gb, strict=True):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5, msg=f"{what}: gradient")

    for name, loss in losses.items():
        same(loss(loc, conf, priors, targets), loss_before(loss, loc, conf, priors, targets), f"{name} vs before")
    for name, ref in refs.items():
        same(losses[name](loc, conf, priors, targets), ref(), f"{name} vs per-image")


def measure(batch, max_gt, priors, intervals, losses, rounds, before_rounds, do_check, sync) -> dict[str, float]:
    """Median ms of every implementation at one point of the sweep (checked first when ``do_check``)."""
    c, dev = 21, priors.device
    torch.manual_seed(0)
    targets = make_batch(batch, c, dev, max_gt=max_gt)
    loc = (0.5 * torch.randn(batch, priors.shape[0], 4, device=dev)).requires_grad_()
    conf = torch.randn(batch, priors.shape[0], c, device=dev).requires_grad_()
    refs = {
        "multibox": lambda: per_image_loss(loc, conf, priors, targets, False, intervals),
        "fork": lambda: per_image_loss(loc, conf, priors, targets, True, intervals),
    }
    if do_check:
        check(loc, conf, priors, targets, losses, refs)
    padded = pad_targets(targets, dev)
    gt_flat, labels = padded.boxes[padded.valid], torch.randint(0, c, (batch, priors.shape[0]), device=dev)

    def timed(fn):
        def run():
            loc.grad = conf.grad = None  # as after optimizer.zero_grad(): backward stores the gradients, adds none
            out = fn()
            if out is not None:
                out["total"].backward()
            sync()

        return run

    fns = {name: timed(lambda loss=loss: loss(loc, conf, priors, targets)) for name, loss in losses.items()}
    fns.update(
        {
            f"before {name}": timed(lambda loss=loss: loss_before(loss, loc, conf, priors, targets))
            for name, loss in losses.items()
        }
    )
    fns.update({f"per-image {name}": timed(ref) for name, ref in refs.items()})
    fns["floor"] = timed(lambda: floor(conf, labels, gt_flat, intervals))
    fns["shared"] = timed(lambda: shared(conf))
    m = match(priors, targets)
    pos_labels = m.labels[m.positive]
    if do_check:  # the timed conf term is the loss's (before its division by the number of positives)
        with torch.no_grad():
            term = conf_term(conf, m.positive, pos_labels) / max(pos_labels.numel(), 1)
            torch.testing.assert_close(term, losses["multibox"](loc, conf, priors, targets)["conf"], msg="conf term")
    fns["conf term"] = timed(lambda: {"total": conf_term(conf, m.positive, pos_labels)})
    for fn in fns.values():  # warm-up
        fn()
    times = interleaved(fns, rounds, few={name for name in fns if name.startswith("before")}, few_rounds=before_rounds)
    if do_check:
        print(
            f"  batch {batch}, 1-{max_gt} GTs: {gt_flat.shape[0]} GTs, {int(match(priors, targets).positive.sum())} "
            f"positives (checked: same as before and as per-image); load average {os.getloadavg()[0]:.1f}"
        )
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


ROWS = (
    ("rssd RepulsionLoss() (RepGT + RepBox)", "default"),
    ("rssd MultiBoxLoss", "multibox"),
    ("rssd ForkRepulsionLoss (fork's RepGT)", "fork"),
    ("before: RepulsionLoss()", "before default"),
    ("before: MultiBoxLoss", "before multibox"),
    ("before: ForkRepulsionLoss", "before fork"),
    ("per-image: MultiBox", "per-image multibox"),
    ("per-image: MultiBox + RepGT (the fork)", "per-image fork"),
    ("floor: CE of all priors + GT x prior IoU", "floor"),
    ("shared: background CE + fresh conf gradient", "shared"),
    ("conf term given the matching (both alike)", "conf term"),
)


def report(medians: dict, points: list[tuple[int, int]]) -> None:
    """Print one thread count's table (ms, and time / per-image MultiBox + RepGT) and its speed-ups."""
    cols = [f"b{b} 1-{g}" for b, g in points]
    table_rows = []
    for label, key in ROWS:
        r = {"implementation": label}
        for col, pt in zip(cols, points, strict=True):
            ms = medians[pt][key]
            r[col] = f"{ms:7.1f} {ms / medians[pt]['per-image fork']:4.2f}x"
        table_rows.append(r)
    print(table(table_rows, ["implementation", *cols]))
    print("speed-ups (per-image / rssd, > 1: rssd is faster), rssd before / now, and the floor:")
    for col, pt in zip(cols, points, strict=True):
        t = medians[pt]
        print(
            f"  {col:>9}: MultiBox {t['per-image multibox'] / t['multibox']:.2f}x, "
            f"fork {t['per-image fork'] / t['fork']:.2f}x, "
            f"default (with RepBox) vs per-image MultiBox + RepGT {t['per-image fork'] / t['default']:.2f}x; "
            f"before / now: default {t['before default'] / t['default']:.1f}x, "
            f"MultiBox {t['before multibox'] / t['multibox']:.1f}x; "
            f"floor {t['floor']:.1f} ms, default / floor {t['default'] / t['floor']:.2f}; "
            f"3x would need the default loss in {t['per-image fork'] / 3:.1f} ms, of which the part both pay "
            f"(shared) is {t['shared']:.1f} ms: the rest in {t['per-image fork'] / 3 - t['shared']:.1f} ms "
            f"(now {t['default'] - t['shared']:.1f} ms; "
            f"the reference's rest {t['per-image fork'] - t['shared']:.1f} ms); "
            f"the whole conf term given the matching takes {t['conf term']:.1f} ms in both, so no matching and "
            f"repulsion could take rssd past {t['per-image fork'] / t['conf term']:.2f}x, and 3x needs them in "
            f"{t['per-image fork'] / 3 - t['conf term']:.1f} ms (now {t['default'] - t['conf term']:.1f} ms, "
            f"the reference's {t['per-image fork'] - t['conf term']:.1f} ms)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="2,1", help="torch thread counts to run, in turn (default 2,1)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds per configuration")
    ap.add_argument("--before-rounds", type=int, default=3, help="of which the slow `before` implementations run in")
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--max-gts", default="5,40", help="images get 1..MAX GTs")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    c, dev = 21, args.device
    priors = make_priors("ssd300", device=dev)
    intervals = PriorIntervals(priors)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    losses = {"default": RepulsionLoss(c), "multibox": MultiBoxLoss(c), "fork": ForkRepulsionLoss(c)}
    points = [(b, g) for b in map(int, args.batches.split(",")) for g in map(int, args.max_gts.split(","))]
    thread_counts = [int(t) for t in args.threads.split(",")]
    print(
        f"bench_loss: SSD300 ({priors.shape[0]} priors), {c} classes, forward + backward; {machine()}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average {os.getloadavg()[0]:.1f} at start"
    )
    for threads in thread_counts:
        torch.set_num_threads(threads)
        first = threads == thread_counts[0]
        medians = {
            pt: measure(*pt, priors, intervals, losses, args.rounds, args.before_rounds, first, sync) for pt in points
        }
        print(
            f"\n{threads} torch thread(s), {args.rounds} interleaved rounds ({args.before_rounds} for `before`), "
            "median ms per forward + backward (and time / per-image MultiBox + RepGT); "
            f"load average {os.getloadavg()[0]:.1f}:"
        )
        report(medians, points)


if __name__ == "__main__":
    main()
