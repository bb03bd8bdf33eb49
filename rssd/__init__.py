"""rssd: SSD with Repulsion Loss, taught in notebooks.

Modules (imports go downward, lazy imports inside functions included; ``tests/test_layers.py`` checks it):
``boxes`` -> ``priors`` -> ``matching`` -> ``losses`` -> ``fork`` -> ``model`` -> ``data`` -> ``detect``
-> ``evaluate`` -> ``coco_eval`` -> ``config`` -> ``train`` -> ``viz`` -> ``experiments`` -> ``cli``.
``boxes`` and the ``data`` package import no other rssd module.
"""

__version__ = "0.1.0"
