"""Synthetic crowd scenes: determinism, full-extent boxes, visibility, crowd share, splits, VOC round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from rssd.cli import main
from rssd.data.crowd import crowd_mask, crowd_stats
from rssd.data.synthetic import (
    SYNTH_CLASSES,
    SynthConfig,
    SyntheticCrowds,
    is_test_index,
    render_scene,
    split_indices,
    write_synthetic_voc,
)
from rssd.data.voc import VOCDataset, load_voc_annotations


@pytest.fixture(scope="module")
def scenes() -> list:
    return [render_scene(11, i) for i in range(120)]


def test_deterministic_and_independent_of_order() -> None:
    a = render_scene(5, 7)
    render_scene(5, 8)  # drawing another scene in between changes nothing
    b = render_scene(5, 7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.names == b.names and a.image_id == "000007"
    c = render_scene(6, 7)
    assert not np.array_equal(a.image, c.image)


def test_scene_invariants(scenes: list) -> None:
    for sc in scenes:
        assert sc.image.shape == (300, 300, 3) and sc.image.dtype == np.uint8
        g = len(sc)
        assert sc.boxes.shape == (g, 4) and sc.labels.shape == sc.difficult.shape == sc.visible.shape == (g,)
        b = sc.boxes
        assert (b >= 0).all() and (b[:, [0, 2]] <= 300).all() and (b[:, [1, 3]] <= 300).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        np.testing.assert_array_equal(b, np.round(b))  # integer pixel edges
        assert [SYNTH_CLASSES[label - 1] for label in sc.labels] == list(sc.names)
        assert ((sc.visible > 0) & (sc.visible <= 1)).all()
        expect_difficult = (sc.visible < 0.25) | (b[:, 3] - b[:, 1] < 12)
        np.testing.assert_array_equal(sc.difficult, expect_difficult)


def test_occlusion_back_to_front(scenes: list) -> None:
    """Objects are listed in drawing order: an object nothing later overlaps is fully visible, and its visible
    pixels span exactly its full-extent box; an occluded object's visible pixels lie inside its box."""
    checked_full = checked_occluded = 0
    for sc in scenes:
        for k in range(len(sc)):
            ys, xs = np.nonzero(sc.owner == k + 1)
            assert ys.size > 0
            x1, y1, x2, y2 = sc.boxes[k]
            assert x1 <= xs.min() and xs.max() + 1 <= x2 and y1 <= ys.min() and ys.max() + 1 <= y2
            later = sc.boxes[k + 1 :]
            overlapped = ((later[:, 0] < x2) & (later[:, 2] > x1) & (later[:, 1] < y2) & (later[:, 3] > y1)).any()
            if not overlapped and not sc.truncated[k]:
                assert sc.visible[k] == pytest.approx(1.0)
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
                checked_full += 1
            if sc.visible[k] < 0.9 and not sc.truncated[k]:
                assert overlapped  # only something drawn later can hide it
                checked_occluded += 1
    assert checked_full > 50 and checked_occluded > 50


def test_crowd_share_and_classes(scenes: list) -> None:
    stats = crowd_stats(scenes)  # SynthScene has boxes and names
    assert stats.crowd_fraction >= 0.3
    names = {n for sc in scenes for n in sc.names}
    assert names == set(SYNTH_CLASSES)
    # crowds are mostly people standing in groups
    person_crowd = sum(int((crowd_mask(sc.boxes, sc.names) & (sc.labels == 1)).sum()) for sc in scenes)
    assert person_crowd > 0.5 * stats.crowd_objects
    # learnable sizes: most objects at least 30 px tall at 300 px
    heights = np.concatenate([sc.boxes[:, 3] - sc.boxes[:, 1] for sc in scenes])
    assert np.median(heights) >= 50


def test_density_knob_and_voc_like_preset() -> None:
    from rssd.data.synthetic import SYNTH_PRESETS

    default = [render_scene(3, i, SynthConfig(size=160)) for i in range(60)]
    same = [render_scene(3, i, SynthConfig(size=160, density=1.0)) for i in range(3)]
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(default, same, strict=False))  # 1.0: unchanged
    sparse = [render_scene(3, i, SynthConfig(size=160, density=SYNTH_PRESETS["voc-like"].density)) for i in range(60)]
    dense = [render_scene(3, i, SynthConfig(size=160, density=2.0)) for i in range(60)]
    share = [crowd_stats(s).crowd_fraction for s in (sparse, default, dense)]
    assert share[0] < share[1] < share[2]  # fewer crowd objects when groups spread out
    assert 0.15 < share[0] < 0.5 and share[1] > 0.6


def test_image_size_config() -> None:
    sc = render_scene(0, 3, SynthConfig(size=160))
    assert sc.image.shape == (160, 160, 3) and (sc.boxes <= 160).all()


def test_split_rule() -> None:
    assert [i for i in range(15) if is_test_index(i, 0.2)] == [4, 9, 14]
    assert [i for i in range(10) if is_test_index(i, 0.5)] == [1, 3, 5, 7, 9]
    n = 37
    test, trainval = split_indices(n, "test"), split_indices(n, "trainval")
    assert sorted(test + trainval) == list(range(n)) and not set(test) & set(trainval)
    train, val = split_indices(n, "train"), split_indices(n, "val")
    assert sorted(train + val) == trainval and not set(train) & set(val)
    assert split_indices(n, "all") == list(range(n))
    # a split does not depend on the size of the set
    assert split_indices(10, "test") == [i for i in split_indices(37, "test") if i < 10]
    with pytest.raises(ValueError, match="unknown split"):
        split_indices(5, "nope")


def test_in_memory_dataset_items() -> None:
    ds = SyntheticCrowds(20, seed=2, split="trainval")
    assert len(ds) == 16 and ds.num_classes == 4
    image, target = ds[3]
    scene = render_scene(2, ds.indices[3])
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 300, 300)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), scene.image)
    keep = ~scene.difficult
    np.testing.assert_array_equal(target["boxes"].numpy(), scene.boxes[keep].astype(np.float32))
    assert target["labels"].dtype == torch.int64 and not target["difficult"].any()
    assert target["image_id"] == scene.image_id and target["orig_size"] == (300, 300)
    everything = SyntheticCrowds(20, seed=2, split="trainval", keep_difficult=True)[3][1]
    assert len(everything["labels"]) == len(scene)
    with pytest.raises(IndexError):
        ds[16]


def test_written_voc_equals_in_memory(tmp_path: Path) -> None:
    out = write_synthetic_voc(tmp_path / "s", 10, seed=4, progress=False)
    assert (out / "classes.txt").read_text().split() == list(SYNTH_CLASSES)
    assert (out / "ImageSets/Main/test.txt").read_text().split() == ["000004", "000009"]
    voc = VOCDataset(out, split="test", keep_difficult=True)
    mem = SyntheticCrowds(10, seed=4, split="test", keep_difficult=True)
    assert voc.classes == SYNTH_CLASSES and len(voc) == len(mem) == 2
    for i in range(2):
        (a, ta), (b, tb) = voc[i], mem[i]
        assert ta["image_id"] == tb["image_id"]
        for key in ("boxes", "labels", "difficult"):
            torch.testing.assert_close(ta[key].as_subclass(torch.Tensor), tb[key].as_subclass(torch.Tensor))
        assert (a.float() - b.float()).abs().mean() < 6  # JPEG
        ann = voc.annotations[i]
        np.testing.assert_allclose(ann.visible, np.round(render_scene(4, int(ann.image_id)).visible, 4))


def test_workers_do_not_change_output(tmp_path: Path) -> None:
    a = write_synthetic_voc(tmp_path / "a", 6, seed=1, progress=False)
    b = write_synthetic_voc(tmp_path / "b", 6, seed=1, progress=False, workers=2)
    for name in ("000000", "000005"):
        assert (a / "Annotations" / f"{name}.xml").read_text() == (b / "Annotations" / f"{name}.xml").read_text()
        assert (a / "JPEGImages" / f"{name}.jpg").read_bytes() == (b / "JPEGImages" / f"{name}.jpg").read_bytes()


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--images", "12", "--seed", "3", "--size", "200"]) == 0
    printed = capsys.readouterr().out
    anns = load_voc_annotations(out, split="all")
    assert len(anns) == 12 and all((a.width, a.height) == (200, 200) for a in anns)
    assert f"{crowd_stats(anns).crowd_objects} in the crowd subset" in printed
    assert len(VOCDataset(out, split="trainval")) == 10
