"""Datasets, augmentation and the crowd subset.

See DEVELOPERS.md ("Data") for the contracts: labels (0 = background), the pixel convention, dataset items
and dataset specs.
"""

from rssd.data.voc import VOC_CLASSES, VOCAnnotation, load_voc_annotations, read_voc_annotation

__all__ = ["VOC_CLASSES", "VOCAnnotation", "load_voc_annotations", "read_voc_annotation"]
