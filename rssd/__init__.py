"""rssd: SSD with Repulsion Loss, taught in notebooks.

Modules (imports go downward, lazy imports inside functions included; ``tests/test_layers.py`` checks it):
``boxes`` -> ``priors`` -> ``matching`` -> ``losses`` -> ``fork`` -> ``model`` -> ``data`` -> ``detect``
-> ``voc_records`` -> ``crowd_eval`` -> ``voc_eval`` -> ``palette`` -> ``inference`` -> ``coco_eval`` -> ``config``
-> ``train`` -> ``viz`` -> ``evaluate`` -> ``experiments`` -> ``cli``.
``boxes`` and the ``data`` package import no other rssd module.

What each one holds: ``detect`` post-processes a batch of SSD outputs (decode, NMS); ``voc_records`` the devkit's
GT records, per-class detections and result files; ``crowd_eval`` the crowd and occlusion subsets, the miss rate
and error kinds; ``voc_eval`` the devkit's AP; ``palette`` the class colours; ``inference`` runs a model over a
dataset, files or frames; ``evaluate`` only re-exports the evaluation names from their homes, for old imports.
"""

__version__ = "0.1.0"
