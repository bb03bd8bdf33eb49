"""rssd: SSD with Repulsion Loss, taught in notebooks.

Modules (imports go downward): ``boxes`` -> ``priors`` -> ``matching`` -> ``losses`` -> ``model`` -> ``detect``
-> ``data`` -> ``evaluate`` -> ``train`` -> ``viz`` -> ``experiments`` -> ``cli``.
"""

__version__ = "0.1.0"
