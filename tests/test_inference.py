"""Running a checkpoint (rssd.inference): predictions over a dataset, `rssd evaluate --checkpoint`, `rssd detect` on
files, and the one rule for device, autocast and memory format they share."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rssd.cli import main
from rssd.config import TrainConfig
from rssd.data import SYNTH_CLASSES, make_dataset
from rssd.detect import DetectConfig
from rssd.inference import (
    Predictions,
    _det_json,
    detect_files,
    detect_frames,
    evaluate_predictions,
    ground_truth_of,
    inference_settings,
    predict,
    prepare_model,
)
from rssd.model import build_ssd
from rssd.train import CHECKPOINT_FORMAT, load_model, save_checkpoint

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "VOCdevkit" / "VOC2007" / "JPEGImages"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained ssd-cpu checkpoint for the synthetic classes (a real training run is tested in test_train)."""
    torch.manual_seed(0)
    model = build_ssd("ssd-cpu", len(SYNTH_CLASSES) + 1)
    config = TrainConfig(name="untrained", model="ssd-cpu", data="synth", synth_images=10)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "iteration": 0, "model": model.state_dict(), "model_name": "ssd-cpu",
        "num_classes": len(SYNTH_CLASSES) + 1, "classes": list(SYNTH_CLASSES), "normalization": model.normalization,
        "config": config.to_dict(),
    })  # fmt: skip
    return path


def test_ground_truth_as_detections_scores_one() -> None:
    """GT boxes fed back as detections (rssd pixels) must score AP 1: the pixel conventions round-trip."""
    dataset = make_dataset("synth", "test", num_images=20, keep_difficult=True)
    ids, outputs = [], []
    for i in range(len(dataset)):
        _, t = dataset[i]
        keep = ~t["difficult"]
        ids.append(t["image_id"])
        outputs.append({"boxes": t["boxes"][keep], "scores": torch.ones(int(keep.sum())), "labels": t["labels"][keep]})
    result = evaluate_predictions(Predictions(ids, outputs, tuple(dataset.classes)), ground_truth_of(dataset))
    present = [v for v in result.ap.values() if v is not None]
    assert present and all(v == pytest.approx(1.0) for v in present), result.ap


def test_predict_runs_model_over_dataset(checkpoint: Path) -> None:
    model, ckpt = load_model(checkpoint)
    dataset = make_dataset("synth", "test", num_images=10, keep_difficult=True)
    preds = predict(model, dataset, batch_size=2, progress=False)
    assert preds.image_ids == [dataset[i][1]["image_id"] for i in range(len(dataset))]
    for out in preds.outputs:
        assert out["boxes"].shape[1] == 4 and len(out["scores"]) == len(out["labels"]) <= 200
        assert (out["boxes"][:, 2:] <= 300 + 1e-3).all()  # pixels of the 300x300 synthetic images
    # predict runs the model in channels_last: the same detections as a plain NCHW forward + detect
    from rssd.data import SSDEvalTransform
    from rssd.detect import detect

    plain, _ = load_model(checkpoint)
    tf = SSDEvalTransform(plain.image_size, plain.normalization)
    items = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([tf(*item)[0] for item in items]).contiguous()
    with torch.no_grad():
        loc, conf = plain(x)
    expected = detect(loc, conf, plain.priors, [item[1]["orig_size"] for item in items])
    # (an untrained model has many near-ties in NMS, so a rounding difference may flip a few: count the matches)
    from torchvision.ops import box_iou

    matched = total = 0
    for got, want in zip(preds.outputs, expected, strict=True):
        total += len(want["scores"])
        if len(got["scores"]) and len(want["scores"]):
            same = (box_iou(want["boxes"], got["boxes"]) > 0.999) & (want["labels"][:, None] == got["labels"][None])
            same &= (want["scores"][:, None] - got["scores"][None]).abs() < 1e-4
            matched += int(same.any(dim=1).sum())
    assert total > 0 and matched >= 0.95 * total, (matched, total)


def test_evaluate_checkpoint_cli(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "result.json"
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "res"), "--json", str(out_json),
                 "--batch-size", "2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out_json.read_text())
    assert set(doc["ap"]) == set(SYNTH_CLASSES) and "mAP" in doc
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == sorted(
        f"comp4_det_test_{c}.txt" for c in SYNTH_CLASSES
    )
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err


def test_detect_cli_on_images_folder_and_video(checkpoint: Path, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("003123.jpg", "000542.jpg"):
        (inputs / name).write_bytes((SAMPLES / name).read_bytes())
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (160, 120))
    for k in range(3):
        writer.write(np.full((120, 160, 3), 40 * k, np.uint8))
    writer.release()
    out = tmp_path / "out"
    code = main(["detect", "--checkpoint", str(checkpoint), str(inputs), str(video), "--out", str(out),
                 "--score", "0.05", "--batch-size", "2"])  # fmt: skip
    assert code == 1, "an unreadable input is reported with a non-zero status"
    assert "broken.jpg: cannot be read as an image" in capsys.readouterr().err
    doc = json.loads((out / "detections.json").read_text())
    assert [Path(i["file"]).name for i in doc["images"]] == ["000542.jpg", "003123.jpg"]
    assert doc["images"][1]["width"] == 500 and doc["images"][1]["height"] == 375
    for image in doc["images"]:
        assert (out / Path(image["file"]).name).is_file()
        for det in image["detections"]:
            assert det["score"] > 0.05 and det["class"] in SYNTH_CLASSES
    assert len(doc["videos"]) == 1 and len(doc["videos"][0]["frames"]) == 3
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert main(["detect", "--checkpoint", str(checkpoint), str(tmp_path / "nope.jpg"), "--out", str(out)]) == 2
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err


def test_classify_detections_by_hand() -> None:
    from rssd.crowd_eval import classify_detections

    gt = [[0, 0, 10, 20], [8, 0, 18, 20]]  # two people side by side, overlapping by 2 px
    dets = [
        [0, 0, 10, 20],  # A itself -> tp
        [1, 0, 11, 20],  # A again (IoU 0.82) -> duplicate
        [4, 0, 14, 20],  # straddling A and B (IoU 0.43 with each) -> between
        [50, 50, 60, 60],  # nothing there -> background
        [0, 0, 10, 8],  # a part of A (IoU 0.4), B barely (0.06) -> poor-localisation
        [0, 0, 10, 20],  # on A but of another class -> background
    ]
    kinds = classify_detections(dets, [0.9, 0.8, 0.7, 0.6, 0.5, 0.95], [1, 1, 1, 1, 1, 2], gt, [1, 1])
    assert kinds == ["tp", "duplicate", "between", "background", "poor-localisation", "background"]
    assert classify_detections([[0, 0, 1, 1]], [0.5], [1], [], []) == ["background"]
    assert classify_detections([], [], [], gt, [1, 1]) == []


# ------------------------------------------------------------------------------------------------------------------
# One way to run a model


def test_inference_settings_rule() -> None:
    """bf16 autocast on CUDA only, channels_last everywhere, pinned memory towards CUDA (no device is opened)."""
    for name in ("cuda", "cuda:1", torch.device("cuda", 0)):
        s = inference_settings(name)
        assert s.autocast_dtype == torch.bfloat16 and s.channels_last and s.pin_memory
        assert s.device == torch.device(name)
    for name in ("cpu", "mps", torch.device("cpu")):
        s = inference_settings(name)
        assert s.autocast_dtype is None and s.channels_last and not s.pin_memory
    with inference_settings("cpu").autocast():  # float32 on CPU: no autocast at all
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_prepare_model_sets_eval_and_channels_last() -> None:
    model = build_ssd("ssd-cpu", len(SYNTH_CLASSES) + 1).train()
    settings = prepare_model(model)
    assert settings == inference_settings("cpu") and not model.training
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_detect_files_and_frames_equal_predict_on_the_same_images(tmp_path: Path) -> None:
    """`rssd detect` (files), detect_frames (arrays) and predict (a dataset) run the model the same way."""
    from rssd.data import VOC_CLASSES, load_image

    torch.manual_seed(3)
    model = build_ssd("ssd-cpu", len(VOC_CLASSES) + 1)
    root = SAMPLES.parents[1]  # data/samples/VOCdevkit
    dataset = make_dataset(f"voc:{root}:2007:test", keep_difficult=True)
    config = DetectConfig(score_threshold=0.05)
    preds = predict(model, dataset, batch_size=1, config=config, progress=False)
    by_id = dict(zip(preds.image_ids, preds.outputs, strict=True))
    doc = detect_files(model, VOC_CLASSES, [str(SAMPLES)], tmp_path / "out", config, batch_size=1, progress=False)
    assert sorted(Path(i["file"]).stem for i in doc["images"]) == sorted(by_id) and not doc["errors"]
    for entry in doc["images"]:
        want = by_id[Path(entry["file"]).stem]
        assert len(want["scores"]) > 0
        assert entry["detections"] == _det_json(want, VOC_CLASSES)
        frame = load_image(entry["file"]).permute(1, 2, 0).numpy()
        (got,) = detect_frames(model, [frame], config)
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(got[key], want[key]), key


def test_evaluate_checkpoint_default_metric_follows_the_voc_year(checkpoint: Path, tmp_path: Path) -> None:
    """VOC2012 data is scored with all-point AP, VOC2007 with the 11-point metric, however the year is spelt
    (``voc:ROOT:12`` was scored with the 11-point metric before the CLI's two rules became one)."""
    from rssd.data.synthetic import SynthConfig, write_synthetic_voc

    root = tmp_path / "VOCdevkit"
    write_synthetic_voc(root / "VOC2012", 10, seed=1, config=SynthConfig(size=160), progress=False)
    (root / "VOC2007").symlink_to(root / "VOC2012")
    expected = {"12": "all-point", "2012": "all-point", "07": "voc07", "2007": "voc07"}
    for years, metric in expected.items():
        out = tmp_path / f"{years}.json"
        argv = ["evaluate", "--checkpoint", str(checkpoint), "--data", f"voc:{root}:{years}", "--split", "test",
                "--out", str(tmp_path / "res"), "--json", str(out), "--batch-size", "4"]  # fmt: skip
        assert main(argv) == 0
        assert json.loads(out.read_text())["metric"] == metric, years
