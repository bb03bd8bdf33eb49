"""Running a model: over a dataset (predictions to score) and over image and video files (``rssd detect``).

Moved here from :mod:`rssd.evaluate` (``predict`` and its kin) and :mod:`rssd.detect` (the files), unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rssd.data.common import IMAGE_SUFFIXES
from rssd.detect import DetectConfig, detect
from rssd.voc_eval import VOCResult, evaluate_voc
from rssd.voc_records import ClassDetections, GroundTruthLike, detections_to_voc, gt_from_targets

__all__ = [
    "Predictions", "predict", "predict_many", "ground_truth_of", "evaluate_predictions", "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES", "expand_inputs", "draw_detections", "detect_frames", "detect_files",
]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Running a model over a dataset


@dataclass
class Predictions:
    """A model's detections over a dataset, in rssd pixels, with what scoring needs.

    Attributes:
        image_ids: one per image, in dataset order.
        outputs: per image ``{"boxes" (D, 4), "scores" (D,), "labels" (D,)}`` (:func:`rssd.detect.detect`).
        classes: the dataset's class names (label ``i + 1`` is ``classes[i]``).
        seconds: wall time of the whole pass; ``images_per_s`` follows.
    """

    image_ids: list[str]
    outputs: list[dict[str, Any]]
    classes: tuple[str, ...]
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.image_ids) / max(self.seconds, 1e-9)

    def to_voc(self) -> dict[str, ClassDetections]:
        """Per-class detections in the devkit's 1-based coordinates (:func:`rssd.voc_records.detections_to_voc`)."""
        return detections_to_voc(self.image_ids, self.outputs, self.classes)


class _EvalItems:
    """Dataset items for inference: the model input and the original size and id (the GT is read elsewhere)."""

    def __init__(self, dataset: Any, transform: Any) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, str, tuple[int, int]]:
        image, target = self.dataset[i]
        x, _ = self.transform(image, target)
        return x, str(target["image_id"]), tuple(int(v) for v in target["orig_size"])


def _collate_eval(batch: list[tuple[Any, str, tuple[int, int]]]):
    import torch

    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]


def predict(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    config: Any = None,
    workers: int = 0,
    progress: bool = True,
) -> Predictions:
    """Run ``model`` over an *untransformed* dataset (``rssd.data`` items) and post-process the outputs.

    Images are resized and normalised as the model expects (:class:`rssd.data.SSDEvalTransform` with the model's
    size and input convention); detections come back in each image's original pixels.

    Args:
        model: an :class:`rssd.model.SSD` (put in eval mode and channels_last here; its device is used).
        dataset: items ``(image, target)`` with ``target["image_id"]`` and ``target["orig_size"]``.
        batch_size, workers: of the DataLoader.
        config: :class:`rssd.detect.DetectConfig` (default: the VOC protocol, score > 0.01).
        progress: a tqdm bar over the images.
    """
    return predict_many(
        model, dataset, [config], batch_size=batch_size, workers=workers, progress=progress
    )[0]


def predict_many(
    model: Any,
    dataset: Any,
    configs: Sequence[Any],
    *,
    batch_size: int = 16,
    workers: int = 0,
    progress: bool = True,
) -> list[Predictions]:
    """:func:`predict` under several post-processing settings at the cost of one forward pass per image.

    ``configs`` are :class:`rssd.detect.DetectConfig` (``None`` for the default); one :class:`Predictions` comes
    back per config, in order (each one's ``seconds`` is the shared forward time plus its own post-processing).
    Used for sweeps such as the NMS threshold of :mod:`rssd.experiments.crowd`.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from rssd.data import SSDEvalTransform

    model.eval().to(memory_format=torch.channels_last)  # NHWC: about 1.6x faster on CPU, same detections
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    loader = DataLoader(
        _EvalItems(dataset, SSDEvalTransform(model.image_size, model.normalization)), batch_size=batch_size,
        num_workers=workers, collate_fn=_collate_eval, pin_memory=cuda,
    )  # fmt: skip
    priors = model.priors.to(device)
    ids: list[str] = []
    outputs: list[list[dict[str, Any]]] = [[] for _ in configs]
    post = [0.0] * len(configs)
    t0 = time.perf_counter()
    with torch.inference_mode(), tqdm(total=len(dataset), desc="detect", unit="img", disable=not progress) as bar:
        for images, batch_ids, sizes in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loc, conf = model(images)
            loc, conf = loc.float(), conf.float()
            for k, config in enumerate(configs):
                t1 = time.perf_counter()
                dets = detect(loc, conf, priors, sizes, config)
                outputs[k].extend({key: v.cpu() for key, v in d.items()} for d in dets)
                post[k] += time.perf_counter() - t1
            ids.extend(batch_ids)
            bar.update(len(batch_ids))
    forward = time.perf_counter() - t0 - sum(post)
    classes = tuple(dataset.classes)
    return [Predictions(list(ids), out, classes, forward + p) for out, p in zip(outputs, post, strict=True)]


def ground_truth_of(dataset: Any) -> list[GroundTruthLike]:
    """GT records of every image of a dataset, difficult objects included.

    VOC-layout datasets give their parsed XML (the devkit's own coordinates); others (synthetic, COCO) give their
    targets converted back to 1-based pixels (:func:`rssd.voc_records.gt_from_targets`). Build the dataset with
    ``keep_difficult=True`` so that difficult objects are ignored rather than counted as missing.
    """
    annotations = getattr(dataset, "annotations", None)
    if annotations is not None:
        return list(annotations)
    targets = (dataset[i][1] for i in range(len(dataset)))
    return gt_from_targets(targets, dataset.classes)


def evaluate_predictions(
    predictions: Predictions,
    ground_truth: Sequence[GroundTruthLike],
    **kwargs: Any,
) -> VOCResult:
    """Score :class:`Predictions` against GT records (``kwargs`` go to :func:`rssd.voc_eval.evaluate_voc`)."""
    return evaluate_voc(ground_truth, predictions.to_voc(), predictions.classes, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Applying a model to image and video files (``rssd detect``)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Image and video files named by ``inputs`` (files, or folders whose images and videos are taken, sorted).

    Raises:
        FileNotFoundError: an input does not exist, or a folder holds no image or video.
        ValueError: a file is neither an image nor a video (by its suffix).
    """
    files: list[Path] = []
    for name in inputs:
        path = Path(name).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{path}: no image or video files in this folder")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                raise ValueError(f"{path}: not an image or video file (suffixes {IMAGE_SUFFIXES + VIDEO_SUFFIXES})")
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def _palette(k: int) -> tuple[int, int, int]:
    """A distinct BGR colour for class ``k``."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(frame_bgr, det: dict[str, Tensor], classes: Sequence[str]):
    """Draw detections (pixels) with class names and scores on a BGR uint8 image, in place; returns it."""
    import cv2

    for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True):
        x1, y1, x2, y2 = (round(v) for v in box)
        color = _palette(int(label))
        cv2.rectangle(frame_bgr, (x1, y1), (x2, y2), color, 2)
        text = f"{classes[int(label) - 1]} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(frame_bgr, (x1, max(0, y1 - th - 4)), (x1 + tw + 2, max(th + 4, y1)), color, -1)
        cv2.putText(frame_bgr, text, (x1 + 1, max(th + 1, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return frame_bgr


def detect_frames(model: torch.nn.Module, frames_rgb: Sequence, config: DetectConfig) -> list[dict[str, Tensor]]:
    """Detections (pixels) on RGB uint8 ``(H, W, 3)`` arrays, preprocessed as in evaluation."""
    from torchvision import tv_tensors

    from rssd.data.common import make_target
    from rssd.data.transforms import SSDEvalTransform

    transform = SSDEvalTransform(model.image_size, model.normalization)
    device = next(model.parameters()).device
    inputs, sizes = [], []
    for frame in frames_rgb:
        image = tv_tensors.Image(torch.from_numpy(frame).permute(2, 0, 1).contiguous())
        empty = make_target(torch.zeros(0, 4), [], [], "", frame.shape[:2])
        inputs.append(transform(image, empty)[0])
        sizes.append(frame.shape[:2])
    with torch.inference_mode():
        loc, conf = model(torch.stack(inputs).to(device))
    return [{k: v.cpu() for k, v in d.items()} for d in detect(loc.float(), conf.float(), model.priors, sizes, config)]


def _det_json(det: dict[str, Tensor], classes: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"class": classes[int(c) - 1], "label": int(c), "score": round(float(s), 5), "box": [round(v, 2) for v in b]}
        for b, s, c in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True)
    ]


def detect_files(
    model: torch.nn.Module,
    classes: Sequence[str],
    inputs: Sequence[str],
    out_dir: str | Path,
    config: DetectConfig | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Run a model on images, folders of images and videos; write annotated copies and ``detections.json``.

    Images become ``OUT/<name>.jpg``, videos ``OUT/<name>.mp4`` (every frame annotated). ``detections.json`` holds,
    per input, its size and detections (per frame for videos: ``frames``), boxes in pixels ``[x1, y1, x2, y2]``.
    Unreadable files are reported (in ``errors``, naming the file) and skipped.

    Returns:
        The JSON document that was written.
    """
    import cv2
    from tqdm.auto import tqdm

    cfg = config or DetectConfig(score_threshold=0.5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs)
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    doc: dict[str, Any] = {"classes": list(classes), "score_threshold": cfg.score_threshold, "images": [],
                           "videos": [], "errors": []}  # fmt: skip
    model.eval().to(memory_format=torch.channels_last)  # NHWC: faster convolutions on CPU and GPU

    with tqdm(total=len(images), desc="images", unit="img", disable=not progress or not images) as bar:
        for start in range(0, len(images), batch_size):
            batch, frames = [], []
            for path in images[start : start + batch_size]:
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if bgr is None:
                    doc["errors"].append(f"{path}: cannot be read as an image (missing, corrupt or unsupported)")
                    continue
                batch.append((path, bgr))
                frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
            dets = detect_frames(model, frames, cfg) if frames else []
            for (path, bgr), det in zip(batch, dets, strict=True):
                target = out / f"{path.stem}.jpg"
                cv2.imwrite(str(target), draw_detections(bgr, det, classes))
                doc["images"].append({"file": str(path), "output": str(target), "width": bgr.shape[1],
                                      "height": bgr.shape[0], "detections": _det_json(det, classes)})  # fmt: skip
            bar.update(len(images[start : start + batch_size]))

    for path in videos:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            doc["errors"].append(f"{path}: cannot be opened as a video")
            continue
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        target = out / f"{path.stem}.mp4"
        writer = None
        entry: dict[str, Any] = {"file": str(path), "output": str(target), "fps": fps, "frames": []}
        with tqdm(total=total, desc=path.name, unit="frame", disable=not progress) as bar:
            done = False
            while not done:
                chunk = []
                while len(chunk) < batch_size:
                    ok, bgr = cap.read()
                    if not ok:
                        done = True
                        break
                    chunk.append(bgr)
                if not chunk:
                    break
                dets = detect_frames(model, [np.ascontiguousarray(f[:, :, ::-1]) for f in chunk], cfg)
                for bgr, det in zip(chunk, dets, strict=True):
                    if writer is None:
                        h, w = bgr.shape[:2]
                        entry.update(width=w, height=h)
                        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    writer.write(draw_detections(bgr, det, classes))
                    entry["frames"].append(_det_json(det, classes))
                bar.update(len(chunk))
        cap.release()
        if writer is not None:
            writer.release()
        if not entry["frames"]:
            doc["errors"].append(f"{path}: no frame could be decoded")
            continue
        doc["videos"].append(entry)

    (out / "detections.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc
