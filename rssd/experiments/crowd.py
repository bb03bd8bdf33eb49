"""The crowd experiment: does repulsion help a detector in crowds, and when? (``rssd experiment crowd``)

A **grid** (a JSON file: :data:`GRIDS_DIR` holds the named ones, any path works too) fixes the benchmark, the base
training configuration, the loss **variants** (:class:`rssd.config.TrainConfig` overrides) and the **seeds**. Every
``(variant, seed)`` is one run, trained and evaluated under identical schedules and data:

* **Data.** Seed ``s`` draws its own set of synthetic crowd scenes (``SyntheticCrowds(num_images, seed=s)``, the
  grid's :class:`~rssd.data.synthetic.SynthConfig`), so a seed changes the scenes *and* the initialisation (``fit``
  seeds torch with it). The ``train`` split is fitted; ``val`` (every 5th trainval image) is evaluated every
  ``eval_every`` iterations, for the learning curves and for every choice made about the grid; ``test`` is
  evaluated once per run, with its last checkpoint, for the final table.
* **What is measured on test.** AP50 (VOC07 11-point) over all objects; the crowd subset under ``remove`` and
  ``ignore``; MR^-2 of ``person``; AP and MR^-2 per occlusion level (:data:`rssd.crowd_eval.OCCLUSION_SUBSETS`, with
  the grid's ``min_height``); AP and MR^-2 against the NMS IoU threshold (``nms_sweep``, one forward pass); the
  error kinds of :func:`rssd.crowd_eval.classify_detections` (and the missed objects) on the test images that hold
  crowd objects, counted at ``error_score``.
* **Resumable.** Each run writes ``RESULTS/runs/<variant>-s<seed>.json`` as it goes (atomically): the learning
  curve point by point, then the test metrics and ``"status": "done"``. A finished run is never redone; an
  interrupted one resumes from its last checkpoint in ``RUNS/<grid>/<variant>-s<seed>/`` (exact resume,
  :func:`rssd.train.fit`). ``shard="i/n"`` lets ``n`` processes share a grid.

:func:`summarize` turns the finished runs into ``summary.json`` and ``results.md`` (mean and sample standard
deviation over seeds); :func:`plot_results` draws the learning curves, the occlusion-level bars and the NMS sweep.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "GRIDS_DIR",
    "HEADLINE",
    "Grid",
    "load_grid",
    "run_one",
    "run_grid",
    "write_grid",
    "evaluate_run",
    "summarize",
    "load_records",
    "figure_learning_curves",
    "figure_occlusion",
    "figure_nms_sweep",
    "figure_paired",
    "plot_results",
    "plot_gallery",
    "GALLERY_VARIANTS",
]

#: Where the named grids live (``load_grid("crowd-cpu")`` reads ``GRIDS_DIR / "crowd-cpu.json"``).
GRIDS_DIR = Path(__file__).resolve().parent / "grids"


@dataclass
class Grid:
    """One experiment: benchmark, base configuration, variants and seeds (the fields of a grid JSON file).

    Attributes:
        name: the grid's name (runs go to ``RUNS/<name>/``).
        description: one paragraph for the report.
        num_images: scenes per seed, all splits together.
        test_fraction: share of the scenes in ``test``; ``val`` is every 5th of the rest.
        synth: :class:`~rssd.data.synthetic.SynthConfig` overrides (``size`` must match the model's input).
        base: :class:`~rssd.config.TrainConfig` fields shared by every run.
        variants: variant name -> TrainConfig overrides (``loss``, ``sigma_gt``, ``alpha``...).
        seeds: the seeds of every variant.
        eval_every: iterations between two validation points (also the checkpoint interval).
        nms_sweep: NMS IoU thresholds of the sweep on test; ``nms_iou`` (the protocol's) must be among them.
        nms_iou: the NMS threshold of every other number.
        min_height: the occlusion levels' smallest box height, in pixels.
        error_score: detections scoring at least this are sorted into error kinds.
        final_split: the split of the final evaluation: ``"test"`` for the reported grid, ``"val"`` for ablation
            grids whose only job is to choose (the test split stays untouched by them).
        pairs: variant -> the variant of this grid it is paired to in the report (same seed); every other variant
            is paired to ``ssd`` when the grid has one (e.g. ``{"repgt-long": "ssd-long"}``).
        extra_seeds: variant -> seeds run *besides* ``seeds`` (an ablation that decides something gets more seeds
            than the rest); they come after every run of ``seeds``.
        baseline: for a ``val`` grid, ``{"grid": NAME, "pairs": [VARIANT, ...]}``: a grid on the same benchmark
            (same scenes, base configuration and validation split) whose runs' last validation points are the
            reference; the report shows them and this grid's paired differences to each of ``pairs`` (default
            ``["ssd"]``), same seed. Its results are read from the sibling folder ``NAME`` of this grid's results.
    """

    name: str
    description: str = ""
    num_images: int = 5000
    test_fraction: float = 0.1
    synth: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    eval_every: int = 250
    nms_sweep: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8])
    nms_iou: float = 0.45
    min_height: float = 50.0
    error_score: float = 0.3
    final_split: str = "test"
    pairs: dict[str, str] = field(default_factory=dict)
    extra_seeds: dict[str, list[int]] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or f"grid {self.name!r}"
        if not self.variants:
            raise ValueError(f"{where}: no variants")
        if self.nms_iou not in self.nms_sweep:
            raise ValueError(f"{where}: nms_iou {self.nms_iou} must be one of nms_sweep {self.nms_sweep}")
        if self.final_split not in ("test", "val"):
            raise ValueError(f"{where}: final_split must be 'test' or 'val', got {self.final_split!r}")
        if self.eval_every < 1:
            raise ValueError(f"{where}: eval_every must be >= 1")
        for what, names in (("extra_seeds", set(self.extra_seeds)), ("pairs", {*self.pairs, *self.pairs.values()})):
            unknown = names - set(self.variants)
            if unknown:
                raise ValueError(f"{where}: {what} names variants the grid lacks: {sorted(unknown)}")
        if self.baseline:
            if self.final_split != "val":
                raise ValueError(f"{where}: a baseline is read on the validation split: it needs final_split 'val'")
            if not isinstance(self.baseline.get("grid"), str) or set(self.baseline) - {"grid", "pairs"}:
                raise ValueError(f"{where}: baseline must be {{\"grid\": NAME, \"pairs\": [VARIANT, ...]}}, "
                                 f"got {self.baseline}")  # fmt: skip
        for variant in self.variants:  # every run's configuration must be valid before anything trains
            try:
                self.train_config(variant, self.seeds[0] if self.seeds else 0)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: variant {variant!r}: {exc}") from exc
        self.synth_config()

    # ------------------------------------------------------------------------------------------------ pieces
    def synth_config(self):
        from rssd.data.synthetic import SynthConfig

        fields = {f.name for f in dataclasses.fields(SynthConfig)}
        unknown = set(self.synth) - fields
        if unknown:
            raise ValueError(f"{self.source or self.name}: unknown synth settings {sorted(unknown)}")
        return SynthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.synth.items()})

    def train_config(self, variant: str, seed: int, runs_dir: str | os.PathLike = "runs/experiments"):
        """The :class:`~rssd.config.TrainConfig` of run ``(variant, seed)``.

        A loss-term field that the variant sets itself and its loss ignores is refused
        (:func:`rssd.config.check_loss_fields`); the base's fields and the defaults are not checked.
        """
        from rssd.config import TrainConfig, check_loss_fields

        if variant not in self.variants:
            raise KeyError(f"grid {self.name!r} has no variant {variant!r}; variants: {', '.join(self.variants)}")
        settings = {**self.base, **self.variants[variant]}
        settings.update(
            name=f"{variant}-s{seed}", seed=int(seed), data="synth", synth_images=self.num_images, split="train",
            test_split="test", out_dir=str(Path(runs_dir) / self.name), checkpoint_every=self.eval_every,
        )  # fmt: skip
        if "milestones" in settings:
            settings["milestones"] = tuple(settings["milestones"])
        config = TrainConfig(**settings)
        check_loss_fields(config.loss, self.variants[variant])
        return config

    def dataset(self, seed: int, split: str):
        """Split ``split`` of seed ``seed``'s scenes (difficult objects kept outside ``train``, to be ignored)."""
        from rssd.data.synthetic import SyntheticCrowds

        return SyntheticCrowds(
            self.num_images, seed, split, config=self.synth_config(), keep_difficult=split != "train",
            test_fraction=self.test_fraction,
        )  # fmt: skip

    def runs(self) -> list[tuple[str, int]]:
        """Every ``(variant, seed)``, seed-major: the first seed of every variant comes first; ``extra_seeds`` last."""
        return _runs(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


def load_grid(name_or_path: str | os.PathLike) -> Grid:
    """A grid by name (``GRIDS_DIR/<name>.json``) or from a JSON file; errors name the file and the problem."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        path = GRIDS_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in GRIDS_DIR.glob("*.json")))
        raise FileNotFoundError(f"no grid {name_or_path!r} (a JSON file, or one of: {known})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    known_fields = {f.name for f in dataclasses.fields(Grid)} - {"source"}
    unknown = set(data) - known_fields
    if unknown:
        raise ValueError(f"{path}: unknown grid fields {sorted(unknown)} (known: {', '.join(sorted(known_fields))})")
    return Grid(**data, source=str(path))


def _runs(grid: dict[str, Any]) -> list[tuple[str, int]]:
    """:meth:`Grid.runs` of a grid's fields (as ``grid.json`` stores them)."""
    seeds = list(grid.get("seeds", []))
    runs = [(v, s) for s in seeds for v in grid.get("variants", {})]
    return runs + [(v, s) for v, more in grid.get("extra_seeds", {}).items() for s in more if s not in seeds]


def write_grid(grid: Grid, results_dir: str | os.PathLike) -> Path:
    """Write the grid's fields to ``results_dir/grid.json`` (what :func:`summarize` reads)."""
    path = Path(results_dir) / "grid.json"
    _write_json(path, grid.to_dict())
    return path


# ---------------------------------------------------------------------------------------------------- records
def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON write (temporary file, then rename): a crash never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def machine() -> dict[str, Any]:
    """Where a run executed (for the report): processor, cores, threads, torch version."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ---------------------------------------------------------------------------------------------------- evaluation
def _val_point(model: Any, dataset: Any, gt: Sequence[Any]) -> dict[str, float | None]:
    from rssd.inference import evaluate_predictions, predict

    preds = predict(model, dataset, progress=False)
    full = evaluate_predictions(preds, gt)
    crowd = evaluate_predictions(preds, gt, subset="crowd", crowd_protocol="remove", mr_class=None)
    return {
        "val_mAP": full.mAP,
        "val_crowd_mAP": crowd.mAP,
        "val_mr_person": full.miss_rate.lamr if full.miss_rate is not None else None,
    }


def _error_kinds(dataset: Any, preds: Any, score: float) -> dict[str, int]:
    """Error kinds (and missed objects) of the detections scoring ``>= score`` on the images with crowd objects."""
    from rssd.crowd_eval import ERROR_KINDS, classify_detections
    from rssd.data.crowd import crowd_mask

    counts = dict.fromkeys([*ERROR_KINDS, "missed"], 0)
    images = 0
    for i, out in enumerate(preds.outputs):
        target = dataset[i][1]
        gt_boxes = np.asarray(target["boxes"], np.float64).reshape(-1, 4)
        gt_labels = np.asarray(target["labels"]).reshape(-1)
        if not np.asarray(crowd_mask(gt_boxes, gt_labels)).any():
            continue
        images += 1
        keep = np.asarray(out["scores"]) >= score
        kinds = classify_detections(
            np.asarray(out["boxes"])[keep], np.asarray(out["scores"])[keep], np.asarray(out["labels"])[keep],
            gt_boxes, gt_labels,
        )  # fmt: skip
        for k in kinds:
            counts[k] += 1
        # missed: non-difficult objects that no detection of their class reaches with IoU >= 0.5
        difficult = np.asarray(target["difficult"], bool).reshape(-1)
        found = int(sum(k == "tp" for k in kinds))
        counts["missed"] += max(int((~difficult).sum()) - found, 0)
    counts["images"] = images
    return counts


def evaluate_run(model: Any, grid: Grid, dataset: Any, gt: Sequence[Any] | None = None) -> dict[str, Any]:
    """Everything the crowd experiment measures on one model and one split (see the module docstring)."""
    from rssd.crowd_eval import OCCLUSION_SUBSETS
    from rssd.detect import DetectConfig
    from rssd.inference import evaluate_predictions, ground_truth_of, predict_many

    gt = ground_truth_of(dataset) if gt is None else gt
    sweep = [float(t) for t in grid.nms_sweep]
    preds_by_nms = predict_many(model, dataset, [DetectConfig(nms_iou=t) for t in sweep], progress=False)
    preds = preds_by_nms[sweep.index(grid.nms_iou)]

    def lamr(result: Any) -> float | None:
        return result.miss_rate.lamr if result.miss_rate is not None else None

    full = evaluate_predictions(preds, gt)
    out: dict[str, Any] = {
        "mAP": full.mAP,
        "ap": full.ap,
        "mr_person": lamr(full),
        "images_per_s": preds.images_per_s,
        "num_images": len(dataset),
    }
    for protocol in ("remove", "ignore"):
        r = evaluate_predictions(preds, gt, subset="crowd", crowd_protocol=protocol)
        out[f"crowd_{protocol}"] = {"mAP": r.mAP, "ap": r.ap, "mr_person": lamr(r), "npos": r.to_json()["npos"]}
    levels = {}
    for level in OCCLUSION_SUBSETS:
        r = evaluate_predictions(preds, gt, subset=level, min_height=grid.min_height)
        levels[level] = {"mAP": r.mAP, "ap": r.ap, "mr_person": lamr(r), "npos": r.to_json()["npos"]}
    out["occlusion"] = levels
    out["nms_sweep"] = []
    for t, p in zip(sweep, preds_by_nms, strict=True):
        r = evaluate_predictions(p, gt)
        c = evaluate_predictions(p, gt, subset="crowd", crowd_protocol="remove", mr_class=None)
        out["nms_sweep"].append({"nms_iou": t, "mAP": r.mAP, "crowd_remove_mAP": c.mAP, "mr_person": lamr(r)})
    out["error_kinds"] = _error_kinds(dataset, preds, grid.error_score)
    out["error_score"] = grid.error_score
    return out


# ---------------------------------------------------------------------------------------------------- running
def _result_path(results_dir: Path, variant: str, seed: int) -> Path:
    return results_dir / "runs" / f"{variant}-s{seed}.json"


def _checkpoint_iteration(path: Path) -> int:
    if not path.is_file():
        return 0
    from rssd.train import load_checkpoint

    return int(load_checkpoint(path)["iteration"])


def run_one(
    grid: Grid,
    variant: str,
    seed: int,
    results_dir: str | os.PathLike,
    runs_dir: str | os.PathLike = "runs/experiments",
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or resume) and evaluate run ``(variant, seed)``; returns its record (also written as JSON).

    Raises:
        ValueError: the run's JSON was made with another configuration (delete it to run again).
    """
    from rssd.inference import ground_truth_of
    from rssd.train import history_from_csv

    path = _result_path(Path(results_dir), variant, seed)
    config = grid.train_config(variant, seed, runs_dir)
    tag = f"[{grid.name} {variant} s{seed}]"
    record = _open_record(path, grid, variant, seed, config)
    if record.get("status") == "done":
        log(f"{tag} done already: {_split(record)} mAP {_final(record)['mAP']:.4f}")
        return record
    record["machine"] = machine()
    val = grid.dataset(seed, "val")
    val_gt = ground_truth_of(val)
    model = _train_with_curve(grid, config, record, path, val, val_gt, progress=progress, log=log, tag=tag)
    log_csv = config.run_dir / "log.csv"
    record["train_log"] = history_from_csv(log_csv) if log_csv.is_file() else []
    t0 = time.perf_counter()
    final = val if grid.final_split == "val" else grid.dataset(seed, "test")
    record[grid.final_split] = evaluate_run(model, grid, final, val_gt if grid.final_split == "val" else None)
    record["final_split"] = grid.final_split
    record["test_seconds"] = time.perf_counter() - t0
    record["status"] = "done"
    _write_json(path, record)
    res = _final(record)
    log(f"{tag} {_split(record)} mAP {res['mAP']:.4f}, crowd (remove) {res['crowd_remove']['mAP']:.4f}")
    return record


def _open_record(path: Path, grid: Grid, variant: str, seed: int, config: Any) -> dict[str, Any]:
    """The run's record: read back (refused when its run identity is not ``config``'s), or a new one."""
    from rssd.config import identity_changes

    if not path.is_file():
        return {
            "grid": grid.name, "variant": variant, "seed": int(seed), "status": "running",
            "config": config.to_dict(), "synth": dataclasses.asdict(grid.synth_config()), "curve": [],
            "train_seconds": 0.0, "notes": [],
        }  # fmt: skip
    record = json.loads(path.read_text())
    changes = identity_changes(record["config"], config)
    if changes:
        raise ValueError(
            f"{path} was made with another configuration than grid {grid.name!r} gives now "
            f"({'; '.join(changes)}); delete it (and {config.run_dir}) to run it again"
        )
    return record


def _train_with_curve(
    grid: Grid, config: Any, record: dict[str, Any], path: Path, val: Any, val_gt: Sequence[Any], *,
    progress: bool, log: Callable[[str], None], tag: str,
) -> Any:  # fmt: skip
    """Train the run up to each validation point missing from ``record["curve"]`` (resuming from ``last.pt``),
    evaluate it there and write the record; returns the final model."""
    from rssd.train import fit, load_model

    last = config.run_dir / "last.pt"
    if record["curve"] and not last.is_file():  # e.g. a record committed from another machine: train it again
        record["notes"].append(f"no checkpoint {last}: its {len(record['curve'])} validation points were trained again")
        record["curve"], record["train_seconds"] = [], 0.0
    stops = list(range(grid.eval_every, config.iterations + 1, grid.eval_every))
    if not stops or stops[-1] != config.iterations:
        stops.append(config.iterations)
    seen = {int(p["iteration"]) for p in record["curve"]}
    train = None
    model = None
    for stop in stops:
        if stop in seen:
            continue
        at = _checkpoint_iteration(last)
        if at > stop:  # trained past this point before its curve point was written (a crash in between)
            record["notes"].append(f"validation point {stop} lost: the checkpoint was already at {at}")
            continue
        if at < stop:
            train = train if train is not None else grid.dataset(record["seed"], "train")
            t0 = time.perf_counter()
            model = fit(config, resume=last if at > 0 else None, until=stop, dataset=train, progress=progress).model
            record["train_seconds"] += time.perf_counter() - t0
        else:
            model = load_model(last)[0]
        point = {"iteration": stop, **_val_point(model, val, val_gt)}
        record["curve"].append(point)
        record["curve"].sort(key=lambda p: p["iteration"])
        _write_json(path, record)
        log(
            f"{tag} {stop}/{config.iterations}: val mAP {point['val_mAP']:.4f}, crowd {point['val_crowd_mAP']:.4f} "
            f"({record['train_seconds'] / 60:.1f} min of training)"
        )
    return model if model is not None else load_model(last)[0]


def _split(record: dict[str, Any]) -> str:
    return record.get("final_split", "test")


def _final(record: dict[str, Any]) -> dict[str, Any]:
    """A finished run's final evaluation (on test, or on val for an ablation grid)."""
    return record[_split(record)]


def run_grid(
    grid: Grid,
    results_dir: str | os.PathLike,
    runs_dir: str | os.PathLike = "runs/experiments",
    *,
    shard: tuple[int, int] = (0, 1),
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every ``(variant, seed)`` of the grid that is this shard's (``k % n == i``), then :func:`summarize`."""
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: expected 0 <= i < n")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_grid(grid, results_dir)
    records = []
    for k, (variant, seed) in enumerate(grid.runs()):
        if k % n != i or (variants and variant not in variants) or (seeds is not None and seed not in seeds):
            continue
        records.append(run_one(grid, variant, seed, results_dir, runs_dir, progress=progress, log=log))
        summarize(results_dir)
    return records


# ---------------------------------------------------------------------------------------------------- report
#: The summary's columns: (label, path into a run's ``test`` record, lower is better).
HEADLINE: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("AP50 all", ("mAP",), False),
    ("crowd, remove", ("crowd_remove", "mAP"), False),
    ("crowd, ignore", ("crowd_ignore", "mAP"), False),
    ("MR^-2 person", ("mr_person",), True),
    ("person AP reasonable", ("occlusion", "reasonable", "ap", "person"), False),
    ("person AP heavy", ("occlusion", "heavy", "ap", "person"), False),
    ("MR^-2 reasonable", ("occlusion", "reasonable", "mr_person"), True),
    ("MR^-2 heavy", ("occlusion", "heavy", "mr_person"), True),
)


def _get(d: Any, keys: Sequence[str]) -> float | None:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return None if d is None else float(d)


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0, "values": []}
    return {
        "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size),
        "values": [float(x) for x in v],
    }  # fmt: skip


def load_records(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run record under ``results_dir/runs`` (finished or not), sorted by variant and seed."""
    paths = sorted((Path(results_dir) / "runs").glob("*.json"))
    return sorted((json.loads(p.read_text()) for p in paths), key=lambda r: (r["variant"], r["seed"]))


def summarize(results_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``summary.json`` and ``results.md`` from the finished runs: mean ± sample std over seeds per variant."""
    results_dir = Path(results_dir)
    grid_file = results_dir / "grid.json"
    grid = json.loads(grid_file.read_text()) if grid_file.is_file() else {}
    records = load_records(results_dir)
    done = [r for r in records if r.get("status") == "done"]
    order = list(grid.get("variants", {})) or sorted({r["variant"] for r in records})
    variants: dict[str, Any] = {}
    for v in order:
        rs = [r for r in done if r["variant"] == v]
        if not rs:
            continue
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rs]}
        for label, keys, _ in HEADLINE:
            entry[label] = _stats([_get(_final(r), keys) for r in rs])
        entry["nms_sweep"] = {
            str(p["nms_iou"]): {
                m: _stats([_get(_final(r)["nms_sweep"][j], (m,)) for r in rs])
                for m in ("mAP", "crowd_remove_mAP", "mr_person")
            }
            for j, p in enumerate(_final(rs[0])["nms_sweep"])
        }
        entry["occlusion"] = {
            level: {m: _stats([_get(_final(r), ("occlusion", level, *k)) for r in rs])
                    for m, k in (("person_ap", ("ap", "person")), ("mr_person", ("mr_person",)))}
            for level in _final(rs[0])["occlusion"]
        }  # fmt: skip
        entry["error_kinds"] = {
            k: _stats([_final(r)["error_kinds"].get(k) for r in rs]) for k in _final(rs[0])["error_kinds"]
        }
        entry["train_minutes"] = _stats([r["train_seconds"] / 60 for r in rs])
        variants[v] = entry
    paired: dict[str, Any] = {}
    reference = "ssd"  # the paired differences are taken to plain SSD, or to the variant the grid's pairs name
    for v in variants:
        to = grid.get("pairs", {}).get(v, reference)
        ref_runs = {r["seed"]: r for r in done if r["variant"] == to}
        if v == to:
            continue
        pairs = [(r, ref_runs[r["seed"]]) for r in done if r["variant"] == v and r["seed"] in ref_runs]
        if pairs:
            paired[v] = {"to": to, "seeds": [r["seed"] for r, _ in pairs]}
            for label, keys, _ in HEADLINE:
                diffs = [None if _get(_final(a), keys) is None or _get(_final(b), keys) is None
                         else _get(_final(a), keys) - _get(_final(b), keys) for a, b in pairs]  # fmt: skip
                paired[v][label] = _stats(diffs)
    summary = {
        "grid": grid.get("name"),
        "reference": reference,
        "paired": paired,
        "runs_done": len(done),
        "runs_total": len(_runs(grid)) or len(records),
        "variants": variants,
        "machine": done[0]["machine"] if done else None,
    }
    if grid.get("baseline"):
        summary["baseline"] = _baseline_summary(results_dir, grid, done)
    _write_json(results_dir / "summary.json", summary)
    (results_dir / "results.md").write_text(_markdown(summary, grid))
    return summary


#: What a learning-curve point holds (the validation split at one iteration): ``(HEADLINE label, curve key, path
#: into a ``val`` record)``. A ``val`` grid's baseline is compared on these.
CURVE_METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("AP50 all", "val_mAP", ("mAP",)),
    ("crowd, remove", "val_crowd_mAP", ("crowd_remove", "mAP")),
    ("MR^-2 person", "val_mr_person", ("mr_person",)),
)

#: The fields two grids must share for one's runs to be the other's reference (same scenes, splits and training).
BENCHMARK_FIELDS = ("num_images", "test_fraction", "synth", "base", "eval_every", "nms_iou")


def _last_point(record: dict[str, Any]) -> dict[str, Any] | None:
    """A finished run's validation point at its last iteration (``None`` when the curve lacks it)."""
    last = record["curve"][-1] if record.get("curve") else None
    return last if last is not None and last["iteration"] == record["config"]["iterations"] else None


def _baseline_summary(results_dir: Path, grid: dict[str, Any], done: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The baseline grid's runs on the validation split (their last curve point), at the seeds this grid has, and
    this grid's paired differences to the baseline's ``pairs`` (same seed).

    Raises:
        ValueError: the baseline grid is on another benchmark (:data:`BENCHMARK_FIELDS` differ).
    """
    name = grid["baseline"]["grid"]
    pairs_to = list(grid["baseline"].get("pairs", ["ssd"]))
    base_dir = results_dir.parent / name
    out: dict[str, Any] = {"grid": name, "pairs": pairs_to, "variants": {}, "paired": {}}
    base_file = base_dir / "grid.json"
    if not base_file.is_file():
        out["missing"] = f"no {base_file}"
        return out
    base_grid = json.loads(base_file.read_text())
    differ = [f for f in BENCHMARK_FIELDS if base_grid.get(f) != grid.get(f)]
    if differ:
        raise ValueError(f"baseline grid {name!r} ({base_file}) is on another benchmark: {', '.join(differ)} differ")
    seeds = {s for _, s in _runs(grid)}
    points: dict[str, dict[int, dict[str, Any]]] = {}
    for r in load_records(base_dir):
        point = _last_point(r) if r.get("status") == "done" and r["seed"] in seeds else None
        if point is not None:
            points.setdefault(r["variant"], {})[r["seed"]] = point
    for v in list(base_grid.get("variants", {})):
        if v in points:
            by_seed = points[v]
            out["variants"][v] = {"seeds": sorted(by_seed)} | {
                label: _stats([by_seed[s][key] for s in sorted(by_seed)]) for label, key, _ in CURVE_METRICS
            }
    # The baseline's own variants paired to each of ``pairs`` (same seed, val): the scale the ablations are read on.
    out["own_paired"] = {}
    for ref in pairs_to:
        for v, by_seed in points.items():
            common = sorted(set(by_seed) & set(points.get(ref, {}))) if v != ref else []
            if common:
                entry = {"variant": v, "to": ref, "seeds": common}
                for label, key, _ in CURVE_METRICS:
                    entry[label] = _stats([None if by_seed[s][key] is None or points[ref][s][key] is None
                                           else by_seed[s][key] - points[ref][s][key] for s in common])  # fmt: skip
                out["own_paired"][f"{v} - {ref}"] = entry
    for v in dict.fromkeys(r["variant"] for r in done):
        for ref in pairs_to:
            ref_points = points.get(ref, {})
            mine = [r for r in done if r["variant"] == v and r["seed"] in ref_points]
            if not mine:
                continue
            entry: dict[str, Any] = {"variant": v, "to": ref, "seeds": [r["seed"] for r in mine]}
            for label, key, path in CURVE_METRICS:
                diffs = [None if _get(_final(r), path) is None or ref_points[r["seed"]][key] is None
                         else _get(_final(r), path) - ref_points[r["seed"]][key] for r in mine]  # fmt: skip
                entry[label] = _stats(diffs)
            out["paired"][f"{v} - {ref}"] = entry
    return out


def _fmt(s: dict[str, Any], scale: float = 100.0) -> str:
    if s["mean"] is None:
        return "-"
    if s["std"] is None:
        return f"{scale * s['mean']:.1f} (n=1)"
    return f"{scale * s['mean']:.1f} ± {scale * s['std']:.1f}"


def _markdown(summary: dict[str, Any], grid: dict[str, Any]) -> str:
    name = summary["grid"] or "?"
    lines = [
        f"# Crowd experiment `{name}`",
        "",
        grid.get("description", ""),
        "",
        f"Reproduce: `rssd experiment crowd --grid {name} --results doc/results/{name}` "
        f"({summary['runs_done']} of {summary['runs_total']} runs finished).",
        "",
        f"{grid.get('final_split', 'test').capitalize()} split, VOC07 11-point AP at IoU 0.5 and MR^-2, in %: "
        "mean ± sample standard deviation over seeds "
        f"(NMS IoU {grid.get('nms_iou', 0.45)}; occlusion levels with boxes >= {grid.get('min_height', 50)} px).",
        "",
        "| variant | seeds | " + " | ".join(label for label, _, _ in HEADLINE) + " | train min |",
        "| --- | --- | " + " | ".join("---" for _ in HEADLINE) + " | --- |",
    ]
    for v, e in summary["variants"].items():
        cells = [_fmt(e[label]) for label, _, _ in HEADLINE]
        tm = e["train_minutes"]
        lines.append(f"| `{v}` | {len(e['seeds'])} | " + " | ".join(cells) + f" | {tm['mean']:.1f} |")
    if summary.get("paired"):
        ref = summary.get("reference", "ssd")
        lines += ["", "Paired differences (same seed: same scenes and initialisation), in points; "
                  "lower is better for MR^-2:", "",
                  "| variant | seeds | " + " | ".join(label for label, _, _ in HEADLINE) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in HEADLINE) + " |"]  # fmt: skip
        for v, e in summary["paired"].items():
            cells = [_fmt(e[label]) for label, _, _ in HEADLINE]
            lines.append(f"| `{v}` - `{e.get('to', ref)}` | {len(e['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", f"Error kinds on the {grid.get('final_split', 'test')} images with crowd objects (detections with "
              f"score >= {grid.get('error_score', 0.3)}; mean over seeds):", ""]  # fmt: skip
    kinds = next(iter(summary["variants"].values()), {}).get("error_kinds", {})
    lines.append("| variant | " + " | ".join(kinds) + " |")
    lines.append("| --- | " + " | ".join("---" for _ in kinds) + " |")
    for v, e in summary["variants"].items():
        lines.append(f"| `{v}` | " + " | ".join(f"{e['error_kinds'][k]['mean']:.0f}" for k in kinds) + " |")
    lines += _baseline_markdown(summary.get("baseline"))
    m = summary.get("machine") or {}
    run_minutes = sum(sum(e["train_minutes"]["values"]) for e in summary["variants"].values())
    lines += ["", f"Machine: {m.get('processor', '?')}, {m.get('cpu_count', '?')} cores, torch {m.get('torch', '?')}"
              f" (torch threads per run: {m.get('torch_threads', '?')}). Training time of the finished runs: "
              f"{run_minutes / 60:.2f} run-hours in all (wall time is that over the number of runs trained at once).",
              ""]  # fmt: skip
    return "\n".join(lines)


def _baseline_markdown(baseline: dict[str, Any] | None) -> list[str]:
    """The report's section on the baseline grid (none without one)."""
    if not baseline:
        return []
    name = baseline["grid"]
    lines = ["", f"## Against `{name}`", ""]
    if baseline.get("missing"):
        return lines + [f"Baseline `{name}` not found ({baseline['missing']}).", ""]
    labels = [label for label, _, _ in CURVE_METRICS]
    lines += [
        f"`{name}`'s runs at this grid's seeds, on the same validation split (their learning curve's point at "
        "their last iteration; same scenes, same initialisation, same base training), in %:",
        "",
        "| variant | seeds | " + " | ".join(labels) + " |",
        "| --- | --- | " + " | ".join("---" for _ in labels) + " |",
    ]
    for v, e in baseline["variants"].items():
        seeds = ", ".join(map(str, e["seeds"]))
        lines.append(f"| `{name}` `{v}` | {seeds} | " + " | ".join(_fmt_values(e[label]) for label in labels) + " |")
    if baseline["paired"]:
        lines += ["", f"Paired differences of this grid's runs to `{name}`'s (same seed), in points (per-seed "
                  "values in brackets); lower is better for MR^-2:", "",
                  "| variant | to | seeds | " + " | ".join(labels) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in labels) + " |"]  # fmt: skip
        for e in baseline["paired"].values():
            seeds = ", ".join(map(str, e["seeds"]))
            cells = " | ".join(_fmt_values(e[label], signed=True) for label in labels)
            lines.append(f"| `{e['variant']}` | `{name}` `{e['to']}` | {seeds} | {cells} |")
    return lines + [""]


def _fmt_values(s: dict[str, Any], signed: bool = False) -> str:
    """``mean ± std (v1 / v2 / ...)`` in %, or the single value."""
    if s["mean"] is None:
        return "-"
    f = (lambda x: f"{round(100 * x, 1) + 0.0:+.1f}") if signed else (lambda x: f"{100 * x:.1f}")  # no "-0.0"
    if s["n"] == 1:
        return f(s["mean"])
    return f"{f(s['mean'])} ± {100 * s['std']:.1f} ({' / '.join(f(x) for x in s['values'])})"


def _pyplot():
    import matplotlib

    if "MPLBACKEND" not in os.environ and not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _colours(variants: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    return {v: plt.cm.tab10(k % 10) for k, v in enumerate(variants)}


def figure_learning_curves(records: Sequence[dict[str, Any]]):
    """Validation AP50 (all objects, crowd subset) and the training loss against the iteration, one line per run."""
    plt = _pyplot()
    colours = _colours(list(dict.fromkeys(r["variant"] for r in records)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    first_seed = {}
    for r in records:
        first_seed.setdefault(r["variant"], r["seed"])
        c = colours[r["variant"]]
        label = r["variant"] if r["seed"] == first_seed[r["variant"]] else None
        its = [p["iteration"] for p in r["curve"]]
        axes[0].plot(its, [p["val_mAP"] for p in r["curve"]], "-o", ms=3, color=c, label=label, alpha=0.8)
        axes[1].plot(its, [p["val_crowd_mAP"] for p in r["curve"]], "-o", ms=3, color=c, alpha=0.8)
        log = r.get("train_log") or []
        if log:
            axes[2].plot([x["iteration"] for x in log], [x["total"] for x in log], color=c, alpha=0.6, lw=0.8)
    axes[0].set(title="validation AP50, all objects", xlabel="iteration", ylabel="mAP")
    axes[1].set(title="validation AP50, crowd subset (remove)", xlabel="iteration")
    axes[2].set(title="training loss (total)", xlabel="iteration", yscale="log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_occlusion(summary: dict[str, Any]):
    """Person AP50 and MR^-2 per occlusion level, mean ± std over seeds, one bar per variant."""
    plt = _pyplot()
    entries = summary["variants"]
    colours = _colours(list(entries))
    levels = list(next(iter(entries.values()))["occlusion"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(entries)
    for j, (v, e) in enumerate(entries.items()):
        for ax, metric in zip(axes, ("person_ap", "mr_person"), strict=True):
            means = [100 * (e["occlusion"][lv][metric]["mean"] or 0) for lv in levels]
            errs = [100 * (e["occlusion"][lv][metric]["std"] or 0) for lv in levels]
            ax.bar(np.arange(len(levels)) + j * width, means, width, yerr=errs, capsize=2, label=v, color=colours[v])
    for ax, title in zip(axes, ("person AP50 by occlusion level (%)", "person MR^-2 by occlusion level (%)"),
                         strict=True):  # fmt: skip
        ax.set_xticks(np.arange(len(levels)) + width * (len(entries) - 1) / 2, levels)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_nms_sweep(summary: dict[str, Any]):
    """AP50 (all, crowd) and MR^-2 against the NMS IoU threshold, mean ± std band over seeds, one line per variant."""
    plt = _pyplot()
    entries = summary["variants"]
    colours = _colours(list(entries))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for v, e in entries.items():
        ts = sorted(e["nms_sweep"], key=float)
        x = [float(t) for t in ts]
        for ax, metric in zip(axes, ("mAP", "crowd_remove_mAP", "mr_person"), strict=True):
            stats = [e["nms_sweep"][t][metric] for t in ts]
            mean = np.array([100 * st["mean"] if st["mean"] is not None else math.nan for st in stats])
            std = np.array([100 * (st["std"] or 0) for st in stats])
            ax.plot(x, mean, "-o", ms=3, label=v, color=colours[v])
            ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=colours[v])
    for ax, title in zip(axes, ("AP50 all (%)", "AP50 crowd subset, remove (%)", "MR^-2 person (%)"), strict=True):
        ax.set(title=title, xlabel="NMS IoU threshold")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_paired(summary: dict[str, Any], to: str = "ssd"):
    """A ``val`` grid against its baseline: each variant's paired difference to the baseline's ``to`` (same seed),
    one panel per :data:`CURVE_METRICS` metric: the mean as a bar, every seed as a dot. ``None`` without pairs."""
    baseline = summary.get("baseline") or {}
    entries = [e for e in baseline.get("paired", {}).values() if e["to"] == to]
    if not entries:
        return None
    own = [e for e in baseline.get("own_paired", {}).values() if e["to"] == to]
    names = [f"{e['variant']} (n={len(e['seeds'])})" for e in entries]
    names += [f"{baseline['grid']}: {e['variant']} (n={len(e['seeds'])})" for e in own]
    entries = entries + own
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(5 * len(CURVE_METRICS), 0.5 * len(entries) + 1.6),
                             sharey=True)  # fmt: skip
    y = np.arange(len(entries))
    for ax, (label, _, _) in zip(axes, CURVE_METRICS, strict=True):
        means = [100 * (e[label]["mean"] if e[label]["mean"] is not None else math.nan) for e in entries]
        better = -1 if label.startswith("MR") else 1  # green where the variant is better than the baseline
        colours = ["tab:green" if better * m > 0 else "tab:red" for m in means]
        colours[len(entries) - len(own):] = ["grey"] * len(own)  # the baseline grid's own variants: the scale
        ax.barh(y, means, color=colours, alpha=0.5)
        for k, e in enumerate(entries):
            values = [100 * v for v in e[label]["values"]]
            ax.plot(values, [k] * len(values), "ko", ms=3)
        ax.axvline(0, color="grey", lw=0.8)
        reach = max([abs(100 * v) for e in entries for v in e[label]["values"] if v is not None] + [0.5])
        ax.set_xlim(-1.1 * reach, 1.1 * reach)
        ax.set(title=f"{label}: variant - {baseline['grid']} {to} (points)", xlabel="paired difference, same seed")
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


def plot_results(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write ``learning_curves.png``, ``occlusion.png`` and ``nms_sweep.png`` from the run records (and
    ``paired.png``, :func:`figure_paired`, for a grid with a baseline)."""
    plt = _pyplot()
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(results_dir)
    summary = summarize(results_dir)
    figures = [("learning_curves.png", figure_learning_curves(records))] if records else []
    if summary["variants"]:
        figures += [("occlusion.png", figure_occlusion(summary)), ("nms_sweep.png", figure_nms_sweep(summary))]
    paired = figure_paired(summary)
    if paired is not None:
        figures.append(("paired.png", paired))
    written = []
    for name, fig in figures:
        written.append(out / name)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


#: The variants ``rssd experiment crowd --report`` draws side by side (those of them the grid has; else its first 3).
GALLERY_VARIANTS = ("ssd", "repgt", "repgt-sigma0")


def plot_gallery(
    grid: Grid,
    runs_dir: str | os.PathLike = "runs/experiments",
    out: str | os.PathLike | None = None,
    *,
    variants: Sequence[str] = ("ssd", "repgt"),
    seed: int | None = None,
    images: int = 4,
    score: float | None = None,
) -> Path | None:
    """Detections of ``variants`` side by side on the most crowded test scenes of one seed, errors coloured.

    Reads the runs' last checkpoints (``RUNS/<grid>/<variant>-s<seed>/last.pt``); ``seed`` defaults to the first
    seed for which every variant has one. Detections scoring at least ``score`` (default the grid's
    ``error_score``) are drawn, coloured by :func:`rssd.crowd_eval.classify_detections`. Returns the figure's path
    (``out``, default ``RUNS/<grid>/crowd_gallery.png``), or ``None`` when no seed has every checkpoint.
    """
    plt = _pyplot()

    from rssd.crowd_eval import classify_detections
    from rssd.data.crowd import crowd_mask
    from rssd.detect import DetectConfig
    from rssd.inference import detect_frames
    from rssd.train import load_model
    from rssd.viz import as_numpy_image, show_detection_errors

    base = Path(runs_dir) / grid.name
    seeds = [seed] if seed is not None else grid.seeds
    seed = next((s for s in seeds if all((base / f"{v}-s{s}" / "last.pt").is_file() for v in variants)), None)
    if seed is None:
        return None
    test = grid.dataset(seed, "test")
    items = [test[i] for i in range(len(test))]
    crowded = sorted(range(len(items)), key=lambda i: -int(np.asarray(crowd_mask(items[i][1]["boxes"],
                                                                                  items[i][1]["labels"])).sum()))
    chosen = crowded[:images]
    frames = [np.ascontiguousarray(as_numpy_image(items[i][0])) for i in chosen]
    cfg = DetectConfig(score_threshold=grid.error_score if score is None else score, nms_iou=grid.nms_iou)
    fig, axes = plt.subplots(len(chosen), len(variants), figsize=(4.2 * len(variants), 4.2 * len(chosen)),
                             squeeze=False)  # fmt: skip
    for col, v in enumerate(variants):
        model, ckpt = load_model(base / f"{v}-s{seed}" / "last.pt")
        dets = detect_frames(model, frames, cfg)
        for row, (i, frame, det) in enumerate(zip(chosen, frames, dets, strict=True)):
            target = items[i][1]
            kinds = classify_detections(det["boxes"], det["scores"], det["labels"], target["boxes"], target["labels"])
            show_detection_errors(frame, target["boxes"], det, kinds, tuple(ckpt["classes"]), ax=axes[row, col],
                                  title=f"{v} (seed {seed}), test scene {target['image_id']}")  # fmt: skip
    fig.tight_layout()
    path = Path(out) if out is not None else base / "crowd_gallery.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
