"""Old import path of rssd's evaluation: re-exports only, so that ``from rssd.evaluate import ...`` keeps working.

New code imports from where each name lives:

* :mod:`rssd.voc_eval`: the devkit's scoring (``evaluate_voc``, ``VOCResult``, ``match_class``, ``average_precision``,
  ``voc_iou``, ``format_table``, ``METRICS``, ``default_metric``);
* :mod:`rssd.voc_records`: GT records, per-class detections, result files and conversions (``GTRecord``,
  ``ClassDetections``, ``detections_to_voc``, ``gt_from_targets``, ``write_voc_results``, ``read_voc_results``);
* :mod:`rssd.crowd_eval`: crowd and occlusion subsets, the log-average miss rate, error kinds (``crowd_subset``,
  ``occlusion_subset``, ``OCCLUSION_SUBSETS``, ``log_average_miss_rate``, ``MissRate``, ``classify_detections``);
* :mod:`rssd.inference`: running a model over a dataset (``predict``, ``predict_many``, ``Predictions``,
  ``ground_truth_of``, ``evaluate_predictions``);
* :mod:`rssd.viz`: the plots (``plot_pr_curves``, ``plot_miss_rate``; loaded on first use, as matplotlib is slow to
  import).
"""

from __future__ import annotations

from typing import Any

from rssd.crowd_eval import (
    ERROR_KINDS,
    MR_FPPI,
    OCCLUSION_SUBSETS,
    SUBSETS,
    CrowdProtocol,
    MissRate,
    classify_detections,
    crowd_subset,
    log_average_miss_rate,
    occlusion_subset,
)
from rssd.inference import Predictions, evaluate_predictions, ground_truth_of, predict, predict_many
from rssd.voc_eval import (
    METRICS,
    ClassMatch,
    Metric,
    VOCResult,
    average_precision,
    evaluate_voc,
    format_table,
    match_class,
    voc_iou,
)
from rssd.voc_records import (
    RESULT_PREFIX,
    ClassDetections,
    GroundTruthLike,
    GTRecord,
    detections_to_voc,
    gt_from_targets,
    read_voc_results,
    write_voc_results,
)

__all__ = [
    "METRICS", "RESULT_PREFIX", "GTRecord", "ClassDetections", "ClassMatch", "MR_FPPI", "MissRate", "VOCResult",
    "voc_iou", "match_class", "average_precision", "crowd_subset", "SUBSETS", "OCCLUSION_SUBSETS", "occlusion_subset",
    "log_average_miss_rate", "evaluate_voc", "gt_from_targets", "detections_to_voc", "write_voc_results",
    "read_voc_results", "format_table", "Predictions", "predict", "predict_many",
    "ground_truth_of", "evaluate_predictions", "ERROR_KINDS", "classify_detections", "CrowdProtocol", "Metric",
    "GroundTruthLike",
]  # fmt: skip

#: Names given on first access (not in ``__all__``): the plots live in :mod:`rssd.viz`, which imports matplotlib.
_PLOTS = ("plot_pr_curves", "plot_miss_rate")


def __getattr__(name: str) -> Any:
    if name in _PLOTS:
        import rssd.viz

        return getattr(rssd.viz, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
