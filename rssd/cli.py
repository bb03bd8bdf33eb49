"""The ``rssd`` command line: thin subcommands over the functions the notebooks use.

Each subcommand has an ``_add_<name>(subparsers)`` function that declares its arguments and sets ``func`` to a
handler; handlers import what they need lazily so that ``rssd --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_priors(args: argparse.Namespace) -> int:
    from rssd.priors import PRIOR_SPECS, make_priors

    spec = PRIOR_SPECS[args.name]
    priors = make_priors(args.name)
    print(f"{args.name}: input {spec.image_size}px, {priors.shape[0]} priors")
    print(f"{'map':>5} {'size':>5} {'step':>6} {'min':>7} {'max':>7} {'boxes/cell':>10} {'priors':>7}")
    for k, f in enumerate(spec.feature_maps):
        b = spec.boxes_per_cell[k]
        print(
            f"{k:>5} {f:>5} {spec.steps[k]:>6g} {spec.min_sizes[k]:>7g} {spec.max_sizes[k]:>7g} {b:>10} {f * f * b:>7}"
        )
    return 0


def _add_priors(sub: argparse._SubParsersAction) -> None:
    from rssd.priors import PRIOR_SPECS

    p = sub.add_parser("priors", help="print the default-box layout of a model")
    p.add_argument("--name", default="ssd300", choices=sorted(PRIOR_SPECS))
    p.set_defaults(func=_cmd_priors)


def _cmd_crowd_stats(args: argparse.Namespace) -> int:
    import json

    from rssd.data.crowd import crowd_stats, crowd_stats_per_class
    from rssd.data.voc import VOCFormatError, load_voc_annotations

    try:
        anns = load_voc_annotations(args.voc_root, args.year, args.split, progress=not args.json)
    except (FileNotFoundError, VOCFormatError) as e:
        print(f"rssd crowd-stats: {e}", file=sys.stderr)
        return 2
    stats = crowd_stats(anns, args.iou)
    if args.json:
        print(json.dumps(stats.as_dict()))
        return 0
    print(f"{args.voc_root} {args.year} {args.split}: crowd = IoU > {args.iou:g} with another GT of the same class")
    print(f"{'images':<14}{stats.images:>8}")
    print(f"{'objects':<14}{stats.objects:>8}")
    print(f"{'crowd_objects':<14}{stats.crowd_objects:>8}  ({100 * stats.crowd_fraction:.1f} % of objects)")
    share = 100 * stats.crowd_images / max(stats.images, 1)
    print(f"{'crowd_images':<14}{stats.crowd_images:>8}  ({share:.1f} % of images)")
    print(f"\n{'class':<14}{'objects':>8}{'crowd':>8}{'%':>7}")
    for name, (n, c) in crowd_stats_per_class(anns, args.iou).items():
        print(f"{name:<14}{n:>8}{c:>8}{100 * c / max(n, 1):>7.1f}")
    return 0


def _add_crowd_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crowd-stats", help="count the crowd subset of a VOC-layout dataset")
    p.add_argument("--voc-root", required=True, help="VOCdevkit folder (holding VOC2007/ ...)")
    p.add_argument("--year", default="2007", help="2007, 2012, 07+12 or a sub-folder name (default 2007)")
    p.add_argument("--split", default="test", help="image set, e.g. test or trainval (default test)")
    p.add_argument("--iou", type=float, default=0.1, help="crowd IoU threshold, strict (default 0.1)")
    p.add_argument("--json", action="store_true", help="print one JSON object: images, objects, crowd_*")
    p.set_defaults(func=_cmd_crowd_stats)


def _cmd_synth(args: argparse.Namespace) -> int:
    import time

    from rssd.data.crowd import crowd_stats
    from rssd.data.synthetic import SynthConfig, write_synthetic_voc
    from rssd.data.voc import load_voc_annotations

    t0 = time.perf_counter()
    out = write_synthetic_voc(
        args.out, args.images, args.seed, config=SynthConfig(size=args.size, density=args.density),
        test_fraction=args.test_fraction, workers=args.workers,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    stats = crowd_stats(load_voc_annotations(out, split="all"))
    print(f"wrote {args.images} images ({args.size}px, seed {args.seed}) to {out} in {seconds:.1f} s")
    print(f"{stats.objects} objects, {stats.crowd_objects} in the crowd subset ({100 * stats.crowd_fraction:.1f} %)")
    print(f"read it with --data synth:{out} (or vocfmt:{out}); splits: trainval, test, train, val, all")
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic crowd scenes in VOC layout")
    p.add_argument("--out", required=True, help="output folder (Annotations/, JPEGImages/, ImageSets/Main/)")
    p.add_argument("--images", type=int, default=2000, help="number of images, all splits (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--size", type=int, default=300, help="image side in pixels (default 300)")
    p.add_argument(
        "--density", type=float, default=1.0,
        help="crowd density: steps between group members are divided by it (0.25: PASCAL VOC's share of people "
        "in crowds; default 1: about 80 %%)",
    )  # fmt: skip
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of images in test (default 0.2)")
    p.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    p.set_defaults(func=_cmd_synth)


def _cmd_download(args: argparse.Namespace) -> int:
    from rssd.data.download import DownloadError, download_voc

    try:
        path = download_voc(args.name, args.root, mirror=args.mirror, keep_archives=not args.delete_archives)
    except DownloadError as e:
        print(f"rssd download: {e}", file=sys.stderr)
        return 1
    print(f"done: {path} (use --data voc:{path}:07+12)")
    return 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download PASCAL VOC (official archives, MD5-checked, resumable)")
    p.add_argument("name", choices=["voc2007", "voc2012"])
    p.add_argument("--root", default="~/data", help="archives go and are extracted here (default ~/data)")
    p.add_argument("--mirror", default=None, help="base URL tried before the official ones")
    p.add_argument("--delete-archives", action="store_true", help="remove each .tar once extracted")
    p.set_defaults(func=_cmd_download)


def _cmd_train(args: argparse.Namespace) -> int:
    from rssd.config import config_from_args
    from rssd.losses import LOSS_TERMS
    from rssd.train import NonFiniteLossError, fit

    config = config_from_args(args)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        print(f"rssd train: {config.name} -> {config.run_dir}")
    try:
        result = fit(config, resume=args.resume, until=args.until, progress=not args.no_progress)
    except NonFiniteLossError as exc:
        print(f"rssd train: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:
        print(f"rssd train: {exc}", file=sys.stderr)
        return 2
    if rank == 0 and result.history:
        last = result.history[-1]
        terms = ", ".join(f"{k} {last[k]:.4f}" for k in LOSS_TERMS)
        print(f"rssd train: iteration {result.iteration}: {terms}; checkpoint {result.checkpoint}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from rssd.config import add_config_arguments

    p = sub.add_parser(
        "train",
        help="train an SSD (presets: ssd300-voc0712, ssd512-voc0712, ssd-cpu-synth)",
        description="Train an SSD. Start from a preset (--config) and override any field. Several GPUs: "
        "torchrun --nproc_per_node K -m rssd train ...",
    )
    add_config_arguments(p)
    p.add_argument("--resume", metavar="CKPT", help="continue a run exactly from one of its checkpoints")
    p.add_argument("--until", type=int, metavar="ITER", help="stop (with a checkpoint) after this iteration")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_model_summary(args: argparse.Namespace) -> int:
    from rssd.model import build_ssd, summary

    print(summary(build_ssd(args.model, args.num_classes)))
    return 0


def _add_model_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model-summary", help="parameters, forward MACs per image and priors of a model")
    p.add_argument("--model", default="ssd300", choices=["ssd300", "ssd512", "ssd-cpu"])
    p.add_argument("--num-classes", type=int, default=21, help="classes incl. background (default 21, VOC)")
    p.set_defaults(func=_cmd_model_summary)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from rssd.data.voc import VOCFormatError, classes_of, load_voc_annotations
    from rssd.voc_eval import default_metric, evaluate_voc
    from rssd.voc_records import read_voc_results

    if args.checkpoint is not None:
        return _evaluate_checkpoint(args)
    if args.data is not None:
        raise SystemExit("rssd evaluate: --data goes with --checkpoint (a model to run over it)")
    if args.results is None or args.voc_root is None:
        raise SystemExit("rssd evaluate: --voc-root and --results are required")
    root = Path(args.voc_root).expanduser()
    metric = args.metric or default_metric(root.name if (root / "Annotations").is_dir() else args.year)
    if metric == "coco" and args.subset != "all":
        raise SystemExit("rssd evaluate: --subset is scored with the VOC metrics only (drop --metric coco)")
    try:
        t0 = time.perf_counter()
        annotations = load_voc_annotations(args.voc_root, args.year, args.split)
        t1 = time.perf_counter()
        classes = classes_of(args.voc_root, args.year, annotations)  # classes.txt, VOC's 20, or the XML's names
        detections = read_voc_results(args.results, classes, prefix=args.prefix)
        t2 = time.perf_counter()
        if metric == "coco":
            from rssd.coco_eval import coco_ground_truth, evaluate_coco, voc_results_to_coco

            gt = coco_ground_truth(annotations, classes)
            result = evaluate_coco(gt, voc_results_to_coco(detections, gt), classes)
        else:
            result = evaluate_voc(
                annotations, detections, classes, metric=metric, subset=args.subset,
                crowd_protocol=args.crowd_protocol, mr_class=args.mr_class, min_height=args.min_height,
            )  # fmt: skip
    except (FileNotFoundError, VOCFormatError, ValueError) as e:
        print(f"rssd evaluate: {e}", file=sys.stderr)
        return 2
    timing = {"load_annotations_s": t1 - t0, "read_results_s": t2 - t1, "score_s": result.seconds}
    print(f"{args.voc_root} {args.year} {args.split}: {len(annotations)} images, results from {args.results}")
    print(result.table())
    print(", ".join(f"{k} {v:.2f}" for k, v in timing.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({**result.to_json(), "timing": timing}, indent=1) + "\n")
    return 0


def _evaluate_checkpoint(args: argparse.Namespace) -> int:
    """``rssd evaluate --checkpoint``: run the model over a dataset, write the devkit result files, score them."""
    import json
    from pathlib import Path

    from rssd.data import make_dataset
    from rssd.inference import evaluate_predictions, ground_truth_of, predict
    from rssd.train import load_model
    from rssd.voc_records import write_voc_results

    try:
        model, ckpt = load_model(args.checkpoint, args.device)
        cfg = ckpt["config"]
        spec = args.data or cfg["data"]
        if spec == "auto":
            from rssd.data import default_data_spec

            spec = default_data_spec(args.split)
        dataset = make_dataset(
            spec, args.split, keep_difficult=True, num_images=cfg["synth_images"], seed=cfg["seed"], progress=True
        )
        if tuple(dataset.classes) != tuple(ckpt["classes"]):
            raise ValueError(f"{spec} has classes {list(dataset.classes)}, the checkpoint {ckpt['classes']}")
        metric = args.metric or _default_metric(spec, dataset)
        if metric == "coco" and args.subset != "all":
            raise ValueError("--subset is scored with the VOC metrics only (drop --metric coco)")
        predictions = predict(model, dataset, batch_size=args.batch_size, config=_detect_config(args, 0.01))
        if metric == "coco":
            from rssd.coco_eval import coco_ground_truth_of, coco_results, evaluate_coco

            gt = coco_ground_truth_of(dataset)
            coco_dets = coco_results(predictions.image_ids, predictions.outputs, predictions.classes, gt)
            result = evaluate_coco(gt, coco_dets, predictions.classes)
        else:
            result = evaluate_predictions(
                predictions, ground_truth_of(dataset), metric=metric, subset=args.subset,
                crowd_protocol=args.crowd_protocol, mr_class=args.mr_class, min_height=args.min_height,
            )  # fmt: skip
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"rssd evaluate: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"results-{args.split}"
    write_voc_results(predictions.to_voc(), out, predictions.classes, prefix=args.prefix)
    if metric == "coco":  # COCO's own results format too, for other COCO tools
        (out / "coco_results.json").write_text(json.dumps(coco_dets) + "\n")
    print(f"{args.checkpoint} on {spec} ({args.split}): {len(dataset)} images, {predictions.images_per_s:.1f} img/s")
    print(result.table())
    print(f"result files: {out}")
    if args.json:
        Path(args.json).write_text(json.dumps({**result.to_json(), "images_per_s": predictions.images_per_s}, indent=1))
    return 0


def _default_metric(spec: str, dataset) -> str:
    """``--metric`` when not given: COCO's for ``coco:`` data, else the devkit's AP of the VOC year(s) it reads."""
    if spec.startswith("coco:"):
        return "coco"
    from rssd.voc_eval import default_metric

    year_dirs = getattr(dataset, "year_dirs", None)  # VOC-layout datasets: VOC2007/, VOC2012/ or their own folder
    return default_metric("+".join(d.name for d in year_dirs) if year_dirs else None)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score detections on PASCAL VOC as the official devkit does (AP, crowd subset, MR^-2)",
        description="Score comp4_det_test_<class>.txt result files (lines: image_id score xmin ymin xmax ymax, "
        "1-based pixels) against VOC annotations, with the devkit's rules.",
    )
    data = p.add_argument_group("ground truth")
    data.add_argument("--voc-root", help="VOCdevkit folder (holding VOC2007/ ...)")
    data.add_argument("--year", default="2007", help="2007, 2012 or a sub-folder name (default 2007)")
    data.add_argument("--split", default="test", help="image set (default test)")
    files = p.add_argument_group("detections from result files")
    files.add_argument("--results", metavar="DIR", help="folder of <prefix><class>.txt files")
    files.add_argument("--prefix", default="comp4_det_test_", help="result file prefix (default comp4_det_test_)")
    model = p.add_argument_group("detections from a model")
    model.add_argument("--checkpoint", metavar="CKPT", help="run this rssd checkpoint over --data, then score")
    model.add_argument(
        "--data", metavar="SPEC",
        help="dataset spec, e.g. voc:~/data/VOCdevkit:2007 (default: the checkpoint's training data); with --split",
    )  # fmt: skip
    model.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    model.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:0 ...")
    _add_nms_arguments(model)
    model.add_argument("--out", metavar="DIR", help="write the result files here (default: next to the checkpoint)")
    scoring = p.add_argument_group("scoring")
    scoring.add_argument(
        "--metric", choices=["voc07", "all-point", "coco"],
        help="VOC's 11-point AP (default for VOC2007 and for data without a VOC year), all-point AP (default for "
        "VOC2010 and later, e.g. 2012), or COCO's metrics with pycocotools (AP@[.5:.95], AP50, AP75, AP/AR by size; "
        "the default for coco: datasets)",
    )  # fmt: skip
    scoring.add_argument(
        "--subset", choices=["all", "crowd", "reasonable", "bare", "partial", "heavy", "heavy-cp"], default="all",
        help="all objects, the crowd subset, or an occlusion level for data with a visible fraction per object "
        "(CityPersons: reasonable v >= 0.65, bare v >= 0.9, partial 0.65-0.9, heavy < 0.65, heavy-cp 0.2-0.65; "
        "the others are ignored)",
    )  # fmt: skip
    scoring.add_argument(
        "--min-height", type=float, default=50.0,
        help="occlusion levels: smallest box height in pixels (CityPersons: 50; default 50)",
    )  # fmt: skip
    scoring.add_argument(
        "--crowd-protocol", choices=["remove", "ignore"], default="remove",
        help="crowd subset: delete non-crowd objects (remove) or treat them as difficult (ignore)",
    )  # fmt: skip
    scoring.add_argument("--mr-class", default="person", help="class of the log-average miss rate (default person)")
    scoring.add_argument("--json", metavar="OUT", help="also write mAP, per-class AP (null: no object), settings")
    p.set_defaults(func=_cmd_evaluate)


def _add_nms_arguments(group) -> None:
    """Post-processing options shared by ``rssd detect`` and ``rssd evaluate --checkpoint`` (``DetectConfig``)."""
    from rssd.detect import NMS_METHODS

    group.add_argument(
        "--nms", choices=NMS_METHODS, default="greedy",
        help="greedy (SSD's), soft-linear / soft-gaussian (Soft-NMS) or diou (DIoU-NMS); default greedy",
    )  # fmt: skip
    group.add_argument(
        "--nms-iou", type=float, default=0.45,
        help="NMS IoU threshold (greedy, soft-linear; DIoU-NMS's epsilon; default 0.45)",
    )  # fmt: skip
    group.add_argument("--soft-sigma", type=float, default=0.5, help="soft-gaussian: scores x exp(-IoU^2 / sigma)")
    group.add_argument("--diou-beta", type=float, default=1.0, help="diou: exponent of the centre penalty")
    group.add_argument("--max-detections", type=int, default=200, help="per image or frame (default 200)")


def _detect_config(args: argparse.Namespace, score: float):
    from rssd.detect import DetectConfig

    return DetectConfig(
        score_threshold=score, nms_iou=args.nms_iou, max_detections=args.max_detections, nms=args.nms,
        soft_sigma=args.soft_sigma, diou_beta=args.diou_beta,
    )  # fmt: skip


def _cmd_detect(args: argparse.Namespace) -> int:
    from rssd.inference import detect_files
    from rssd.train import load_model

    try:
        model, ckpt = load_model(args.checkpoint, args.device)
        config = _detect_config(args, args.score)
        doc = detect_files(model, ckpt["classes"], args.inputs, args.out, config, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as e:
        print(f"rssd detect: {e}", file=sys.stderr)
        return 2
    n_det = sum(len(i["detections"]) for i in doc["images"]) + sum(len(f) for v in doc["videos"] for f in v["frames"])
    print(f"rssd detect: {len(doc['images'])} images, {len(doc['videos'])} videos, {n_det} detections -> {args.out}")
    for err in doc["errors"]:
        print(f"rssd detect: skipped {err}", file=sys.stderr)
    return 1 if doc["errors"] else 0


def _add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect", help="run a checkpoint on images, folders and videos; write annotated copies and a JSON",
    )  # fmt: skip
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="an rssd training checkpoint")
    p.add_argument("--out", required=True, metavar="DIR", help="annotated images/videos and detections.json")
    p.add_argument("--score", type=float, default=0.5, help="minimum class score (default 0.5)")
    _add_nms_arguments(p)
    p.add_argument("--batch-size", type=int, default=8, help="images or frames per forward pass (default 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:0 ...")
    p.set_defaults(func=_cmd_detect)


def _cmd_experiment(args: argparse.Namespace) -> int:
    import torch

    if args.which == "diagnose":
        from rssd.experiments.diagnose import run_diagnosis

        out = args.results or os.path.join("doc", "results", "diagnosis")
        grids = args.grid.split(",")
        run_diagnosis(out, voc_root=args.voc_root, images=args.images, grids=grids, progress=sys.stderr.isatty())
        print(f"wrote {os.path.join(out, 'diagnosis.md')}, diagnosis.json, iog.png")
        return 0
    from rssd.experiments import crowd

    grid = crowd.load_grid(args.grid)
    results = args.results or os.path.join("doc", "results", grid.name)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.report:
        i, _, n = args.shard.partition("/")
        try:
            shard = (int(i), int(n or 1))
        except ValueError:
            print(f"rssd experiment: --shard takes i/n (e.g. 0/2), got {args.shard!r}", file=sys.stderr)
            return 2
        variants = args.variants.split(",") if args.variants else None
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        crowd.run_grid(grid, results, args.runs, shard=shard, variants=variants, seeds=seeds,
                       progress=sys.stderr.isatty())  # fmt: skip
    else:
        crowd.write_grid(grid, results)  # the grid file rules, also for a report after it was edited
    summary = crowd.summarize(results)
    for path in crowd.plot_results(results):
        print(f"wrote {path}")
    if args.report:  # detections side by side, from the runs' checkpoints when they are on this machine
        shown = [v for v in crowd.GALLERY_VARIANTS if v in grid.variants] or list(grid.variants)[:3]
        path = crowd.plot_gallery(grid, args.runs, os.path.join(results, "crowd_gallery.jpg"), variants=shown, images=3)
        print(f"wrote {path}" if path else f"no gallery: no seed has a checkpoint of each of {shown} under {args.runs}")
    table = os.path.join(results, "results.md")
    print(f"{summary['runs_done']} of {summary['runs_total']} runs done; table in {table}")
    return 0


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment", help="train and evaluate a grid of runs (resumable): the crowd experiment",
        description="Train every (loss variant, seed) of a grid on the synthetic crowds, evaluate on validation "
        "during training and on test at the end, and write per-run JSON, a summary table and plots. Finished runs "
        "are skipped, interrupted ones resume from their last checkpoint.",
    )  # fmt: skip
    p.add_argument(
        "which", choices=["crowd", "diagnose"],
        help="crowd: the grid of runs (rssd.experiments.crowd); diagnose: RepGT at the perfect prediction and crowd "
        "density of the grids' scenes and of VOC2007 test (rssd.experiments.diagnose)",
    )  # fmt: skip
    p.add_argument("--grid", default="crowd-cpu", help="a named grid (rssd/experiments/grids/) or a JSON file "
                   "(diagnose: comma-separated grids)")  # fmt: skip
    p.add_argument("--voc-root", default=None, help="diagnose: a VOCdevkit folder with VOC2007 test annotations")
    p.add_argument("--images", type=int, default=1000, help="diagnose: synthetic images per grid (default 1000)")
    p.add_argument("--results", default=None, help="results folder (doc/results/GRID; diagnose: doc/results/diagnosis)")
    p.add_argument("--runs", default=os.path.join("runs", "experiments"), help="checkpoints go to RUNS/GRID/RUN")
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th run starting at i (n processes share a grid)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of this process")
    p.add_argument("--variants", default=None, help="comma-separated variants to run (default all)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds to run (default all)")
    p.add_argument("--report", action="store_true", help="only rewrite the summary and plots from the records")
    p.set_defaults(func=_cmd_experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rssd", description="SSD with Repulsion Loss.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (
        _add_priors, _add_crowd_stats, _add_synth, _add_download, _add_train, _add_model_summary, _add_evaluate,
        _add_detect, _add_experiment,
    ):  # fmt: skip
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
