"""Custom data in VOC layout (classes from classes.txt or the XML), the annotation-to-target helper, and the
finder of the example data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rssd.cli import main
from rssd.data import SAMPLES_ROOT, annotation_target, find_voc, make_dataset, read_voc_annotation, sample_files
from rssd.data.voc import VOC_CLASSES, VOCDataset, VOCFormatError, voc_to_pixel_xyxy


def write_cells(root: Path, names: dict[str, list[str]]) -> Path:
    """A VOCdevkit/VOC2007 folder of 64x48 'blood smear' images; ``names[id]`` = class names of its objects."""
    year = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    for image_id, objects in names.items():
        xml = "".join(
            f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{4 + 12 * k}</xmin><ymin>5</ymin>"
            f"<xmax>{14 + 12 * k}</xmax><ymax>20</ymax></bndbox></object>"
            for k, n in enumerate(objects)
        )
        (year / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>64</width><height>48</height></size>{xml}</annotation>"
        )
        cv2.imwrite(str(year / "JPEGImages" / f"{image_id}.jpg"), np.full((48, 64, 3), 200, np.uint8))
    (year / "ImageSets/Main/trainval.txt").write_text("\n".join(names) + "\n")
    return year


def test_voc2007_layout_with_own_classes(tmp_path: Path) -> None:
    year = write_cells(tmp_path, {"a": ["RBC", "WBC", "RBC"], "b": ["Platelets"]})
    for ds in (VOCDataset(year, split="trainval"), make_dataset(f"vocfmt:{year}"),
               make_dataset(f"voc:{tmp_path / 'VOCdevkit'}:2007")):  # fmt: skip
        assert ds.classes == ("Platelets", "RBC", "WBC") and ds.classes_source == "the annotations"
        assert ds.target(0)["labels"].tolist() == [2, 3, 2]
    (year / "classes.txt").write_text("RBC\nWBC\nPlatelets\n")  # classes.txt fixes the order
    ds = VOCDataset(year, split="trainval")
    assert ds.classes == ("RBC", "WBC", "Platelets") and ds.target(1)["labels"].tolist() == [3]
    (year / "classes.txt").write_text("RBC\nWBC\n")
    with pytest.raises(VOCFormatError, match=r"b.xml: unknown class name\(s\) \['Platelets'\].*add them to .*classes"):
        VOCDataset(year, split="trainval")


def test_voc_folder_with_a_misspelt_name_still_stops(tmp_path: Path) -> None:
    year = write_cells(tmp_path, {"a": ["person", "persn"]})
    with pytest.raises(VOCFormatError, match=r"\['persn'\].*PASCAL VOC.*classes.txt"):
        VOCDataset(year, split="trainval")
    assert VOCDataset(SAMPLES_ROOT, "2007", "test").classes == VOC_CLASSES


def test_rssd_train_on_custom_voc2007_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    year = write_cells(tmp_path, {f"i{k}": ["RBC", "WBC"] for k in range(4)})
    code = main(["train", "--config", "ssd-cpu-synth", "--data", f"vocfmt:{year}", "--iterations", "1",
                 "--batch-size", "2", "--workers", "0", "--out-dir", str(tmp_path / "runs"), "--no-progress",
                 "--device", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ckpt = torch.load(tmp_path / "runs" / "ssd-cpu-synth-repgt" / "last.pt", weights_only=True)
    assert ckpt["classes"] == ["RBC", "WBC"] and ckpt["num_classes"] == 3


def test_annotation_target_by_hand() -> None:
    _, xml = sample_files("003123")
    ann = read_voc_annotation(xml)
    t = annotation_target(ann)
    keep = ~ann.difficult
    expected = voc_to_pixel_xyxy(ann.boxes[keep]) / [ann.width, ann.height, ann.width, ann.height]
    torch.testing.assert_close(t["boxes"], torch.tensor(expected, dtype=torch.float32))
    assert t["labels"].tolist() == [VOC_CLASSES.index(n) + 1 for n, k in zip(ann.names, keep, strict=True) if k]
    assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    people = annotation_target(ann, classes=("person",), keep_difficult=True)
    assert people["labels"].tolist() == [1] * sum(n == "person" for n in ann.names)
    assert annotation_target(ann, classes=("cat",))["boxes"].shape == (0, 4)


def test_find_voc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("RSSD_VOC_ROOT", "RSSD_TEST_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_voc() == find_voc(()) and find_voc().photos == SAMPLES_ROOT and find_voc().annotations is None
    monkeypatch.setenv("RSSD_VOC_ROOT", str(SAMPLES_ROOT))
    assert find_voc().photos == SAMPLES_ROOT
    assert sample_files("003123")[0].name == "003123.jpg"
    with pytest.raises(FileNotFoundError, match="999999"):
        sample_files("999999")


def test_find_voc_in_shared_test_data(test_data: Path) -> None:
    found = find_voc(("RSSD_TEST_DATA",))
    assert found.annotations == test_data / "voc2007-test" / "VOCdevkit"
    assert (found.photos / "VOC2007" / "JPEGImages").is_dir()
