"""VOC annotations and dataset: hand-written XML, the real VOC2007 test annotations, hostile input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rssd.data.voc import (
    VOC_CLASSES,
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
