"""Dataset specs (make_dataset), COCO-format datasets, and the default dataset."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rssd.data.coco import COCODataset, COCOFormatError
from rssd.data.common import DataWarning
from rssd.data.specs import default_data_spec, make_dataset, parse_spec
from rssd.data.synthetic import SYNTH_CLASSES, SyntheticCrowds
from rssd.data.transforms import SSDEvalTransform
from rssd.data.voc import VOC_CLASSES, VOCDataset

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "VOCdevkit"


def test_parse_spec() -> None:
    assert parse_spec("voc:~/data/VOCdevkit:07+12") == ("voc", ["~/data/VOCdevkit", "07+12"])
    assert parse_spec("coco:a.json:imgs/") == ("coco", ["a.json", "imgs/"])
    assert parse_spec("synth") == ("synth", [])
    with pytest.raises(ValueError, match="unknown dataset spec 'imagenet:x'"):
        parse_spec("imagenet:x")
    with pytest.raises(ValueError, match="expected coco:ANN.json:IMAGES/"):
        parse_spec("coco:only.json")
    with pytest.raises(ValueError, match="expected voc:ROOT"):
        parse_spec("voc:")


def test_voc_spec_on_samples() -> None:
    ds = make_dataset(f"voc:{SAMPLES}:2007:test", split="trainval", keep_difficult=True)
    assert isinstance(ds, VOCDataset) and len(ds) == 4 and ds.classes == VOC_CLASSES and ds.split == "test"
    ds = make_dataset(f"voc:{SAMPLES}", split="test")  # test split defaults to VOC2007 alone
    assert [d.name for d in ds.year_dirs] == ["VOC2007"]
    with pytest.raises(FileNotFoundError, match="VOC2012"):
        make_dataset(f"voc:{SAMPLES}", split="trainval")  # 07+12 by default: no VOC2012 here


def test_synth_specs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mem = make_dataset("synth", "test", num_images=10, seed=5, size=128)
    assert isinstance(mem, SyntheticCrowds) and len(mem) == 2 and mem[0][0].shape == (3, 128, 128)
    out = tmp_path / "s"
    on_disk = make_dataset(f"synth:{out}", "test", num_images=10, seed=5, size=128)
    assert "writing 10 synthetic scenes" in capsys.readouterr().out
    assert isinstance(on_disk, VOCDataset) and on_disk.classes == SYNTH_CLASSES and len(on_disk) == 2
    torch.testing.assert_close(on_disk[1][1]["boxes"], mem[1][1]["boxes"])
    again = make_dataset(f"synth:{out}", "trainval")  # exists: read, not rewritten
    assert len(again) == 8 and capsys.readouterr().out == ""
    assert len(make_dataset(f"vocfmt:{out}:all")) == 10


def test_default_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RSSD_VOC_ROOT", raising=False)
    assert default_data_spec() == "synth"
    monkeypatch.setenv("RSSD_VOC_ROOT", str(SAMPLES))
    assert default_data_spec("test") == f"voc:{SAMPLES}:2007"
    assert default_data_spec("trainval") == "synth"  # the samples have no trainval list


def test_default_spec_sample9(test_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = test_data / "voc2007-sample9" / "VOCdevkit"
    monkeypatch.setenv("RSSD_VOC_ROOT", str(root))
    assert len(make_dataset(default_data_spec("test"), "test")) == 9


# ---------------------------------------------------------------------------------------------- COCO


def _coco(tmp_path: Path, annotations: list, images: list | None = None) -> tuple[Path, Path]:
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    images = images or [{"id": 7, "file_name": "a.png", "width": 40, "height": 30}]
    for im in images:
        cv2.imwrite(str(img_dir / im["file_name"]), np.full((im["height"], im["width"], 3), 50, np.uint8))
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "person"}],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    return ann, img_dir


def test_coco_dataset_hand_computed(tmp_path: Path) -> None:
    anns = [
        {"id": 1, "image_id": 7, "category_id": 3, "bbox": [2.5, 4, 10, 6], "iscrowd": 0, "area": 60},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1, "area": 25},
    ]
    ann, img_dir = _coco(tmp_path, anns)
    ds = COCODataset(ann, img_dir)
    assert ds.classes == ("person", "cat") and ds.num_classes == 3  # ordered by category id
    image, target = ds[0]
    assert image.shape == (3, 30, 40) and target["image_id"] == "7" and target["orig_size"] == (30, 40)
    # [x, y, w, h] -> (x, y, x + w, y + h), no +-1; the crowd region is left out
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), torch.tensor([[2.5, 4.0, 12.5, 10.0]]))
    assert target["labels"].tolist() == [2]
    kept = COCODataset(ann, img_dir, keep_crowd=True)[0][1]
    assert kept["labels"].tolist() == [2, 1] and kept["difficult"].tolist() == [False, True]
    people = COCODataset(ann, img_dir, classes=("person",), keep_crowd=True)[0][1]
    assert people["labels"].tolist() == [1]
    spec = make_dataset(f"coco:{ann}:{img_dir}", transform=SSDEvalTransform(size=20))
    torch.testing.assert_close(spec[0][1]["boxes"], torch.tensor([[2.5 / 40, 4 / 30, 12.5 / 40, 10 / 30]]))


def test_coco_bad_input(tmp_path: Path) -> None:
    ann, img_dir = _coco(tmp_path, [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [30, 20, 20, 20]}])
    with pytest.warns(DataWarning, match=r"image id 7\): clipped 1 box"):
        ds = COCODataset(ann, img_dir)
    torch.testing.assert_close(ds[0][1]["boxes"].as_subclass(torch.Tensor), torch.tensor([[30.0, 20, 40, 30]]))
    ann.write_text("{not json")
    with pytest.raises(COCOFormatError, match="ann.json: not valid JSON"):
        COCODataset(ann, img_dir)
    ann.write_text(json.dumps({"annotations": []}))
    with pytest.raises(COCOFormatError, match="expected a dict with 'images' and 'categories'"):
        COCODataset(ann, img_dir)
    ann, img_dir = _coco(tmp_path, [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2]}])
    with pytest.raises(COCOFormatError, match="annotation 1 has no"):
        COCODataset(ann, img_dir)
    ann, img_dir = _coco(tmp_path, [], images=[{"id": 1, "file_name": "b.png", "width": 8, "height": 8}])
    (img_dir / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        COCODataset(ann, img_dir)
    with pytest.raises(COCOFormatError, match=r"no categories named \['dog'\]"):
        COCODataset(ann, img_dir, classes=("dog",), check_images=False)
