"""Datasets, augmentation and the crowd subset.

See DEVELOPERS.md ("Data") for the contracts: labels (0 = background), the pixel convention, dataset items
and dataset specs.
"""

from rssd.data.crowd import CROWD_IOU, CrowdStats, crowd_mask, crowd_stats
from rssd.data.voc import VOC_CLASSES, VOCAnnotation, load_voc_annotations, read_voc_annotation

__all__ = [
    "CROWD_IOU",
    "CrowdStats",
    "VOC_CLASSES",
    "VOCAnnotation",
    "crowd_mask",
    "crowd_stats",
    "load_voc_annotations",
    "read_voc_annotation",
]
