"""Datasets, augmentation and the crowd subset.

See DEVELOPERS.md ("Data") for the contracts: labels (0 = background), the pixel convention, dataset items
and dataset specs. The pieces:

* :mod:`rssd.data.voc`: VOC annotations (``VOCAnnotation``, ``read_voc_annotation``, ``load_voc_annotations``) and
  ``VOCDataset`` (PASCAL VOC or any VOC-layout folder);
* :mod:`rssd.data.coco`: ``COCODataset`` (COCO-format json, pycocotools);
* :mod:`rssd.data.synthetic`: synthetic crowd scenes (``SyntheticCrowds``, ``write_synthetic_voc``);
* :mod:`rssd.data.transforms`: SSD augmentation (``SSDTrainTransform``, ``SSDEvalTransform``, ``NORMALIZATIONS``);
* :mod:`rssd.data.crowd`: the crowd subset (``crowd_mask``, ``crowd_stats``);
* :mod:`rssd.data.specs`: ``make_dataset("voc:ROOT:07+12" | "vocfmt:PATH" | "coco:ANN.json:IMAGES/" | "synth")``;
* :mod:`rssd.data.common`: ``collate``, ``make_loader``, image loading and box fix-ups;
* :mod:`rssd.data.samples`: where the example photos and VOC test data are (``find_voc``, ``sample_files``);
* :mod:`rssd.data.download`: ``rssd download voc2007|voc2012``.
"""

from rssd.data.coco import COCODataset
from rssd.data.common import DataWarning, ImageReadError, collate, load_image, make_loader
from rssd.data.crowd import CROWD_IOU, CrowdStats, crowd_mask, crowd_stats
from rssd.data.samples import SAMPLES_ROOT, find_voc, sample_files
from rssd.data.specs import default_data_spec, make_dataset
from rssd.data.synthetic import SYNTH_CLASSES, SynthConfig, SyntheticCrowds, render_scene, write_synthetic_voc
from rssd.data.transforms import NORMALIZATIONS, Normalization, SSDEvalTransform, SSDTrainTransform
from rssd.data.voc import (
    VOC_CLASSES,
    VOCAnnotation,
    VOCDataset,
    annotation_target,
    load_voc_annotations,
    read_voc_annotation,
)

__all__ = [
    "COCODataset",
    "CROWD_IOU",
    "CrowdStats",
    "DataWarning",
    "ImageReadError",
    "NORMALIZATIONS",
    "SAMPLES_ROOT",
    "Normalization",
    "SSDEvalTransform",
    "SSDTrainTransform",
    "SYNTH_CLASSES",
    "SynthConfig",
    "SyntheticCrowds",
    "VOC_CLASSES",
    "VOCAnnotation",
    "VOCDataset",
    "annotation_target",
    "collate",
    "crowd_mask",
    "crowd_stats",
    "default_data_spec",
    "find_voc",
    "load_image",
    "load_voc_annotations",
    "make_dataset",
    "make_loader",
    "read_voc_annotation",
    "render_scene",
    "sample_files",
    "write_synthetic_voc",
]
