"""VOC annotations and dataset: hand-written XML, the real VOC2007 test annotations, hostile input."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from rssd.data.common import DataWarning, ImageReadError
from rssd.data.voc import (
    VOC_CLASSES,
    VOCDataset,
    VOCFormatError,
    load_voc_annotations,
    pixel_xyxy_to_voc,
    read_image_set,
    read_voc_annotation,
    voc_to_pixel_xyxy,
)

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "VOCdevkit"


def _obj(name: str, box: tuple, difficult: int | None = 0) -> str:
    diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name>{diff}<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def write_xml(path: Path, objects: list[str], size: tuple[int, int] | None = (100, 80)) -> Path:
    size_xml = ""
    if size is not None:
        size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{size_xml}{''.join(objects)}</annotation>")
    return path


def test_read_hand_written(tmp_path: Path) -> None:
    p = write_xml(
        tmp_path / "a.xml",
        [_obj("person", (1, 2, 10, 20)), _obj(" dog ", (5.5, 6, 7, 8), 1), _obj("cat", (1, 1, 3, 3), None)],
    )
    a = read_voc_annotation(p)
    assert a.image_id == "a" and (a.width, a.height) == (100, 80) and a.path == p and a.filename == "a.jpg"
    assert a.names == ("person", "dog", "cat") and len(a) == 3
    assert a.boxes.dtype == np.float64 and a.boxes.shape == (3, 4)
    np.testing.assert_array_equal(a.boxes, [[1, 2, 10, 20], [5.5, 6, 7, 8], [1, 1, 3, 3]])
    np.testing.assert_array_equal(a.difficult, [False, True, False])


def test_read_no_objects_and_no_size(tmp_path: Path) -> None:
    a = read_voc_annotation(write_xml(tmp_path / "e.xml", [], size=None))
    assert a.boxes.shape == (0, 4) and a.difficult.shape == (0,) and a.names == ()
    assert (a.width, a.height) == (0, 0)


def test_pixel_convention_round_trip() -> None:
    voc = np.array([[1.0, 1.0, 10.0, 20.0]])
    px = voc_to_pixel_xyxy(voc)
    np.testing.assert_array_equal(px, [[0.0, 0.0, 10.0, 20.0]])  # width 10 = xmax - xmin + 1
    np.testing.assert_array_equal(pixel_xyxy_to_voc(px), voc)


def test_samples_crowd_image() -> None:
    a = read_voc_annotation(SAMPLES / "VOC2007" / "Annotations" / "003123.xml")
    assert (a.width, a.height) == (500, 375)
    assert a.names.count("person") == 14
    np.testing.assert_array_equal(a.boxes[0], [93, 79, 153, 160])


def test_load_samples_and_bad_split() -> None:
    anns = load_voc_annotations(SAMPLES, "2007", "test")
    assert [a.image_id for a in anns] == read_image_set(SAMPLES / "VOC2007", "test")
    assert all(n in VOC_CLASSES for a in anns for n in a.names)
    with pytest.raises(FileNotFoundError, match="nope.*available: \\['test'\\]"):
        load_voc_annotations(SAMPLES, "2007", "nope")


def test_real_voc2007_test_counts(test_data: Path) -> None:
    anns = load_voc_annotations(test_data / "voc2007-test" / "VOCdevkit", "2007", "test")
    assert len(anns) == 4952
    assert sum(len(a) for a in anns) == 14976
    assert sum(int(a.difficult.sum()) for a in anns) == 2944
    assert {n for a in anns for n in a.names} == set(VOC_CLASSES)
    assert anns[0].image_id == "000001" and anns[0].names == ("dog", "person")


# ---------------------------------------------------------------------------------------------- hostile input

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<annotation><object><name>&lol4;</name></object></annotation>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>
"""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (BILLION_LAUGHS, "unsafe XML"),
        (EXTERNAL_ENTITY, "unsafe XML"),
        ("<annotation><object><name>x</name>", "malformed XML"),
        ("<notvoc/>", "expected <annotation>"),
        ("<annotation><object><bndbox/></object></annotation>", "object 0 has no <name>"),
        ("<annotation><object><name>dog</name></object></annotation>", r"object 0 \(dog\) has no <bndbox>"),
        (
            "<annotation><object><name>dog</name><bndbox><xmin>a</xmin></bndbox></object></annotation>",
            "<bndbox/xmin> is not a number",
        ),
        (
            "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>nan</xmax>"
            "<ymax>2</ymax></bndbox></object></annotation>",
            "not finite",
        ),
    ],
)
def test_bad_xml_names_the_file(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(VOCFormatError, match=match) as info:
        read_voc_annotation(p)
    assert str(p) in str(info.value)


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        read_voc_annotation(tmp_path / "missing.xml")


# ---------------------------------------------------------------------------------------------- VOCDataset


def test_dataset_on_samples() -> None:
    ds = VOCDataset(SAMPLES, "2007", "test", keep_difficult=True)
    assert len(ds) == 4 and ds.classes == VOC_CLASSES and ds.num_classes == 21
    i = ds.image_ids.index("003123")
    image, target = ds[i]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 375, 500)
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].canvas_size == (375, 500)
    # VOC (93, 79, 153, 160) -> rssd pixels (92, 78, 153, 160)
    torch.testing.assert_close(target["boxes"][0].as_subclass(torch.Tensor), torch.tensor([92.0, 78, 153, 160]))
    assert target["labels"].dtype == torch.int64 and (target["labels"][:14] == VOC_CLASSES.index("person") + 1).all()
    assert target["difficult"].dtype == torch.bool and target["image_id"] == "003123"
    assert target["orig_size"] == (375, 500)
    ann = ds.annotations[i]
    assert target["difficult"].tolist() == ann.difficult.tolist()
    no_diff = VOCDataset(SAMPLES, "2007", "test")
    assert len(no_diff[i][1]["labels"]) == len(ann) - int(ann.difficult.sum())
    assert not no_diff[i][1]["difficult"].any()


def test_dataset_explicit_classes_subset() -> None:
    ds = VOCDataset(SAMPLES, "2007", "test", classes=("person",))
    assert ds.num_classes == 2
    labels = torch.cat([ds.target(i)["labels"] for i in range(len(ds))])
    assert labels.numel() > 14 and (labels == 1).all()


def test_dataset_sample9(test_data: Path) -> None:
    ds = VOCDataset(test_data / "voc2007-sample9" / "VOCdevkit", "2007", "test", keep_difficult=True)
    assert len(ds) == 9
    assert sum(len(ds.target(i)["labels"]) for i in range(9)) == 46
    for i in range(9):
        image, target = ds[i]
        ann = ds.annotations[i]
        assert image.shape[-2:] == (ann.height, ann.width)


def write_voc_folder(root: Path, images: dict[str, tuple[int, int] | None], objects: dict[str, list[str]]) -> Path:
    """A VOC-layout folder: ``images[id] = (w, h)`` (None: no image file), ``objects[id]`` = object XML snippets."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, size in images.items():
        w, h = size or (64, 48)
        write_xml(root / "Annotations" / f"{image_id}.xml", objects.get(image_id, []), size=(w, h))
        if size is not None:
            cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), np.full((h, w, 3), 90, np.uint8))
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(images) + "\n")
    return root


def test_custom_layout_classes_from_annotations_and_file(tmp_path: Path) -> None:
    root = write_voc_folder(
        tmp_path / "shop",
        {"a": (64, 48), "b": (64, 48)},
        {"a": [_obj("shelf", (1, 1, 20, 20)), _obj("can", (5, 5, 9, 9))], "b": [_obj("can", (2, 2, 8, 8))]},
    )
    ds = VOCDataset(root, split="trainval")
    assert ds.classes == ("can", "shelf")  # sorted names found
    assert ds.target(0)["labels"].tolist() == [2, 1]
    (root / "classes.txt").write_text("# my classes\nshelf\ncan\n")
    ds = VOCDataset(root, split="trainval")
    assert ds.classes == ("shelf", "can") and ds.target(0)["labels"].tolist() == [1, 2]
    (root / "classes.txt").write_text("shelf\n")
    with pytest.raises(VOCFormatError, match=r"a.xml: unknown class name\(s\) \['can'\]"):
        VOCDataset(root, split="trainval")
    assert len(VOCDataset(root, split="all", classes=("can", "shelf"))) == 2


# ---------------------------------------------------------------------------------------------- bad input


def test_box_outside_image_is_clipped_with_warning(tmp_path: Path) -> None:
    root = write_voc_folder(tmp_path / "d", {"a": (64, 48)}, {"a": [_obj("dog", (-5, 10, 80, 30))]})
    with pytest.warns(DataWarning, match=r"a.xml: clipped 1 box\(es\) reaching outside the 64x48 image"):
        ds = VOCDataset(root, split="trainval")
    _, target = ds[0]
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), torch.tensor([[0.0, 9, 64, 30]]))


@pytest.mark.parametrize(
    ("box", "clipped"), [((20, 10, 15, 30), False), ((20, 10, 30, 9), False), ((100, 60, 120, 70), True)]
)
def test_degenerate_box_is_dropped_with_warning(tmp_path: Path, box: tuple, clipped: bool) -> None:
    objects = {"a": [_obj("dog", box), _obj("cat", (1, 1, 10, 10))]}
    root = write_voc_folder(tmp_path / "d", {"a": (64, 48)}, objects)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = VOCDataset(root, split="trainval", classes=("cat", "dog"))
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    xml = str(root / "Annotations" / "a.xml")
    expected = [f"{xml}: dropped 1 box(es) with no area (x2 <= x1 or y2 <= y1)"]
    if clipped:  # entirely outside: clipped onto the border first, where it has no area
        expected.insert(0, f"{xml}: clipped 1 box(es) reaching outside the 64x48 image")
    assert [m.split(": #")[0] for m in messages] == expected
    _, target = ds[0]
    assert target["labels"].tolist() == [1] and target["boxes"].shape == (1, 4)


def test_missing_image_named(tmp_path: Path) -> None:
    root = write_voc_folder(tmp_path / "d", {"a": (64, 48), "gone": None}, {})
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) listed in 'trainval' not found: .*gone.jpg"):
        VOCDataset(root, split="trainval", classes=("dog",))
    ds = VOCDataset(root, split="trainval", classes=("dog",), check_images=False)
    with pytest.raises(FileNotFoundError, match="gone.jpg: image not found"):
        ds[1]


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "image file is empty"), (b"not an image at all", "not an image file"), ("truncated", "cannot decode")],
)
def test_corrupt_image_named(tmp_path: Path, content: bytes | str, match: str) -> None:
    root = write_voc_folder(tmp_path / "d", {"a": (64, 48)}, {"a": [_obj("dog", (1, 1, 10, 10))]})
    path = root / "JPEGImages" / "a.jpg"
    if content == "truncated":
        ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
        content = buf.tobytes()[: len(buf) // 2]
    path.write_bytes(content)
    ds = VOCDataset(root, split="trainval")
    with pytest.raises(ImageReadError, match=match) as info:
        ds[0]
    assert str(path) in str(info.value)


def test_xml_size_disagrees_with_image(tmp_path: Path) -> None:
    root = write_voc_folder(tmp_path / "d", {"a": (64, 48)}, {"a": [_obj("dog", (1, 1, 60, 40))]})
    cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.zeros((30, 40, 3), np.uint8))  # smaller than <size>
    ds = VOCDataset(root, split="trainval")
    with pytest.warns(DataWarning) as record:
        image, target = ds[0]
    assert "<size> says 64x48 but a.jpg is 40x30; using the image size" in str(record[0].message)
    assert "clipped 1 box(es) reaching outside the 40x30 image" in str(record[1].message)
    assert target["orig_size"] == (30, 40)
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), torch.tensor([[0.0, 0, 40, 30]]))


def test_no_objects_and_only_difficult(tmp_path: Path) -> None:
    objects = {"only_difficult": [_obj("dog", (1, 1, 10, 10), 1)]}
    root = write_voc_folder(tmp_path / "d", {"empty": (64, 48), "only_difficult": (64, 48), "ok": (64, 48)}, objects)
    objects["ok"] = [_obj("dog", (2, 2, 30, 30))]
    write_xml(root / "Annotations" / "ok.xml", objects["ok"], size=(64, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # kept without any warning: SSD learns background from them
        ds = VOCDataset(root, split="trainval", classes=("dog",))
    assert len(ds) == 3
    for i in range(2):
        _, target = ds[i]
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert len(VOCDataset(root, split="trainval", classes=("dog",), keep_difficult=True)[1][1]["labels"]) == 1
    skipped = VOCDataset(root, split="trainval", classes=("dog",), skip_empty=True)
    assert skipped.image_ids == ["ok"]


def test_empty_images_give_a_finite_loss(tmp_path: Path) -> None:
    """An image with no objects goes through augmentation, collate and the loss without NaN."""
    from rssd.data.common import collate
    from rssd.data.transforms import SSDTrainTransform
    from rssd.losses import MultiBoxLoss
    from rssd.priors import make_priors

    root = write_voc_folder(tmp_path / "d", {"empty": (64, 48), "ok": (64, 48)}, {"ok": [_obj("dog", (2, 2, 30, 30))]})
    ds = VOCDataset(root, split="trainval", classes=("dog",), transform=SSDTrainTransform(size=300))
    images, targets = collate([ds[0], ds[1]])
    assert targets[0]["boxes"].shape == (0, 4)
    priors = make_priors("ssd300")
    loss = MultiBoxLoss(num_classes=2)
    out = loss(torch.zeros(2, priors.shape[0], 4), torch.zeros(2, priors.shape[0], 2), priors, targets)
    assert all(torch.isfinite(v).all() for v in out.values())
    empty_only = loss(torch.zeros(1, priors.shape[0], 4), torch.zeros(1, priors.shape[0], 2), priors, targets[:1])
    assert all(torch.isfinite(v).all() for v in empty_only.values())
