"""Running a model: over a dataset (predictions to score), over image and video files (``rssd detect``), on frames.

Every path runs the network the same way:

1. :func:`inference_settings` is the one rule for *how* (:func:`prepare_model` applies it to a model): on the
   model's device; bf16 autocast on CUDA and float32 elsewhere; channels_last (NHWC) weights, faster on CPU and GPU
   with the same detections; pinned host memory when the device is CUDA.
2. Inputs (dataset items, image files, video frames, frames in memory) become the model's input with its own eval
   transform (:class:`rssd.data.SSDEvalTransform` with ``model.image_size`` and ``model.normalization``) and keep
   their original size; one DataLoader (:func:`_loader`) batches them.
3. The network runs in inference mode; :func:`rssd.detect.detect` post-processes its float32 outputs, boxes in each
   image's original pixels (rssd's convention, DEVELOPERS.md).

So ``rssd detect``, ``rssd evaluate --checkpoint``, :func:`predict` in the notebooks and the experiments give the
same detections for the same image (``tests/test_inference.py`` checks it).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from rssd.data.common import IMAGE_SUFFIXES, ImageReadError, load_image, make_target
from rssd.detect import DetectConfig, detect
from rssd.palette import class_color, to_bgr
from rssd.voc_eval import VOCResult, evaluate_voc
from rssd.voc_records import ClassDetections, GroundTruthLike, detections_to_voc, gt_from_targets

__all__ = [
    "InferenceSettings", "inference_settings", "prepare_model", "Predictions", "predict", "predict_many",
    "ground_truth_of", "evaluate_predictions", "detect_frames", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "expand_inputs",
    "draw_detections", "detect_files",
]  # fmt: skip

#: File suffixes ``rssd detect`` reads as videos (images: :data:`rssd.data.common.IMAGE_SUFFIXES`).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


# ----------------------------------------------------------------------------------------------------------------
# How a model runs


@dataclass(frozen=True)
class InferenceSettings:
    """How the network runs for inference (:func:`inference_settings`).

    Attributes:
        device: where the model and its inputs are.
        autocast_dtype: the autocast dtype of the forward pass, ``None`` for plain float32.
        channels_last: NHWC weights (``model.to(memory_format=torch.channels_last)``).
    """

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool = True

    @property
    def pin_memory(self) -> bool:
        """Pinned host memory for the batches (and non-blocking copies): only worth it towards a CUDA device."""
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the forward pass (a no-op without ``autocast_dtype``)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def inference_settings(device: str | torch.device) -> InferenceSettings:
    """The one rule every inference path follows: bf16 autocast on CUDA, float32 elsewhere; channels_last always.

    bf16 keeps float32's range (an SSD's logits and offsets never overflow it) and is what training uses on CUDA
    (``TrainConfig.amp``); CPUs and Apple's MPS run float32, where bf16 is slower or less well supported.

    Args:
        device: e.g. ``"cpu"``, ``"cuda:1"``, ``torch.device("mps")`` (only its type matters; it is not opened).
    """
    device = torch.device(device)
    return InferenceSettings(device, torch.bfloat16 if device.type == "cuda" else None, channels_last=True)


def prepare_model(model: torch.nn.Module) -> InferenceSettings:
    """Put ``model`` in eval mode (and channels_last) for inference on its device; returns the settings used."""
    settings = inference_settings(next(model.parameters()).device)
    model.eval()
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    return settings


def _forward(model: torch.nn.Module, images: Tensor, settings: InferenceSettings) -> tuple[Tensor, Tensor]:
    """``(loc, conf)`` in float32 for a batch of model inputs ``(N, 3, S, S)`` (inference mode, autocast)."""
    images = images.to(settings.device, non_blocking=settings.pin_memory)
    with torch.inference_mode(), settings.autocast():
        loc, conf = model(images)
    return loc.float(), conf.float()


# ----------------------------------------------------------------------------------------------------------------
# Inputs, one DataLoader


def _eval_transform(model: Any):
    from rssd.data.transforms import SSDEvalTransform

    return SSDEvalTransform(model.image_size, model.normalization)


def _model_input(transform: Any, image: Tensor) -> Tensor:
    """The model input of a uint8 RGB ``(3, H, W)`` image that has no target."""
    from torchvision import tv_tensors

    empty = make_target(torch.zeros(0, 4), [], [], "", tuple(image.shape[-2:]))
    return transform(tv_tensors.Image(image), empty)[0]


class _DatasetInputs(Dataset):
    """Dataset items ``(image, target)`` -> ``(model input, {"image_id", "size"})`` (the GT is read elsewhere)."""

    def __init__(self, dataset: Any, transform: Any) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Any]]:
        image, target = self.dataset[i]
        x, _ = self.transform(image, target)
        return x, {"image_id": str(target["image_id"]), "size": tuple(int(v) for v in target["orig_size"])}


class _ImageFiles(Dataset):
    """Image files -> ``(model input, {"path", "size", "image"})``; an unreadable file gives ``(None, {"error"})``."""

    def __init__(self, paths: Sequence[Path], transform: Any) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor | None, dict[str, Any]]:
        path = self.paths[i]
        try:
            image = load_image(path)  # what the datasets read images with
        except (ImageReadError, FileNotFoundError) as e:
            reason = str(e).removeprefix(f"{path}: ")
            return None, {"path": path, "error": f"{path}: cannot be read as an image ({reason})"}
        meta = {"path": path, "size": tuple(image.shape[-2:]), "image": image.as_subclass(Tensor)}
        return _model_input(self.transform, image), meta


class _VideoFrames(IterableDataset):
    """The frames of an opened ``cv2.VideoCapture`` -> ``(model input, {"size", "bgr"})``, in order."""

    def __init__(self, capture: Any, transform: Any) -> None:
        self.capture, self.transform = capture, transform

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Any]]]:
        while True:
            ok, bgr = self.capture.read()
            if not ok:
                return
            rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).contiguous()
            yield _model_input(self.transform, rgb), {"size": bgr.shape[:2], "bgr": bgr}


class _Frames(Dataset):
    """RGB uint8 ``(H, W, 3)`` arrays -> ``(model input, {"size"})``."""

    def __init__(self, frames_rgb: Sequence[np.ndarray], transform: Any) -> None:
        self.frames, self.transform = frames_rgb, transform

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Any]]:
        frame = np.asarray(self.frames[i])
        image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).contiguous()
        return _model_input(self.transform, image), {"size": frame.shape[:2]}


def _collate(batch: list[tuple[Tensor | None, dict[str, Any]]]) -> tuple[Tensor | None, list[dict[str, Any]]]:
    inputs = [x for x, _ in batch if x is not None]
    return (torch.stack(inputs) if inputs else None), [meta for _, meta in batch]


def _loader(inputs: Dataset, settings: InferenceSettings, batch_size: int, workers: int = 0) -> DataLoader:
    """The DataLoader of every inference path: ``(inputs (N, 3, S, S) or None, metadata per item)`` batches."""
    return DataLoader(
        inputs, batch_size=batch_size, num_workers=workers, collate_fn=_collate, pin_memory=settings.pin_memory
    )


def _run(
    model: Any,
    inputs: Dataset,
    configs: Sequence[DetectConfig | None],
    *,
    batch_size: int,
    workers: int = 0,
    bar: Any = None,
) -> Iterator[tuple[list[dict[str, Any]], list[list[dict[str, Tensor] | None]], list[float]]]:
    """Model and post-processing over ``inputs``, batch by batch.

    Yields:
        ``(metadata, detections, seconds)``: the batch's metadata; for each config, one detection dict per item
        (CPU tensors; ``None`` for an item that failed to load, whose metadata holds an ``"error"``); for each
        config, the seconds its post-processing took.
    """
    settings = prepare_model(model)
    priors = model.priors.to(settings.device)
    for images, metas in _loader(inputs, settings, batch_size, workers):
        ok = [k for k, m in enumerate(metas) if "error" not in m]
        dets: list[list[dict[str, Tensor] | None]] = [[None] * len(metas) for _ in configs]
        seconds = [0.0] * len(configs)
        if images is not None:
            loc, conf = _forward(model, images, settings)
            sizes = [metas[k]["size"] for k in ok]
            for c, config in enumerate(configs):
                t0 = time.perf_counter()
                for k, d in zip(ok, detect(loc, conf, priors, sizes, config), strict=True):
                    dets[c][k] = {key: v.cpu() for key, v in d.items()}
                seconds[c] = time.perf_counter() - t0
        if bar is not None:
            bar.update(len(metas))
        yield metas, dets, seconds


def _progress(total: int | None, desc: str, unit: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled)


# ----------------------------------------------------------------------------------------------------------------
# Over a dataset: predictions to score


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


def predict(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    config: DetectConfig | None = None,
    workers: int = 0,
    progress: bool = True,
) -> Predictions:
    """Run ``model`` over an *untransformed* dataset (``rssd.data`` items) and post-process the outputs.

    Images are resized and normalised as the model expects (module docstring); detections come back in each
    image's original pixels.

    Args:
        model: an :class:`rssd.model.SSD` (put in eval mode and channels_last here; its device is used).
        dataset: items ``(image, target)`` with ``target["image_id"]`` and ``target["orig_size"]``.
        batch_size, workers: of the DataLoader.
        config: :class:`rssd.detect.DetectConfig` (default: the VOC protocol, score > 0.01).
        progress: a tqdm bar over the images.
    """
    return predict_many(model, dataset, [config], batch_size=batch_size, workers=workers, progress=progress)[0]


def predict_many(
    model: Any,
    dataset: Any,
    configs: Sequence[DetectConfig | None],
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
    ids: list[str] = []
    outputs: list[list[dict[str, Any]]] = [[] for _ in configs]
    post = [0.0] * len(configs)
    t0 = time.perf_counter()
    inputs = _DatasetInputs(dataset, _eval_transform(model))
    with _progress(len(dataset), "detect", "img", progress) as bar:
        for metas, dets, seconds in _run(model, inputs, configs, batch_size=batch_size, workers=workers, bar=bar):
            ids.extend(m["image_id"] for m in metas)
            for c in range(len(configs)):
                outputs[c].extend(dets[c])
                post[c] += seconds[c]
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
# On frames and files (``rssd detect``)


def detect_frames(
    model: torch.nn.Module, frames_rgb: Sequence[np.ndarray], config: DetectConfig | None = None
) -> list[dict[str, Tensor]]:
    """Detections (pixels, CPU tensors) on RGB uint8 ``(H, W, 3)`` arrays, in one batch, as in evaluation."""
    out: list[dict[str, Tensor]] = []
    inputs = _Frames(frames_rgb, _eval_transform(model))
    for _, (dets,), _ in _run(model, inputs, [config], batch_size=max(len(frames_rgb), 1)):
        out.extend(dets)
    return out


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Image and video files named by ``inputs`` (files, or folders whose images and videos are taken, sorted).

    Raises:
        FileNotFoundError: an input does not exist, or a folder holds no image or video.
        ValueError: a file is neither an image nor a video (by its suffix).
    """
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    files: list[Path] = []
    for name in inputs:
        path = Path(name).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
            if not found:
                raise FileNotFoundError(f"{path}: no image or video files in this folder")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in suffixes:
                raise ValueError(f"{path}: not an image or video file (suffixes {suffixes})")
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def draw_detections(frame_bgr: np.ndarray, det: dict[str, Tensor], classes: Sequence[str]) -> np.ndarray:
    """Draw detections (pixels) with class names and scores on a BGR uint8 image, in place; returns it.

    Colours are the classes' (:func:`rssd.palette.class_color`), as in the notebooks' figures.
    """
    import cv2

    for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True):
        x1, y1, x2, y2 = (round(v) for v in box)
        color = to_bgr(class_color(int(label)))
        cv2.rectangle(frame_bgr, (x1, y1), (x2, y2), color, 2)
        text = f"{classes[int(label) - 1]} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(frame_bgr, (x1, max(0, y1 - th - 4)), (x1 + tw + 2, max(th + 4, y1)), color, -1)
        cv2.putText(frame_bgr, text, (x1 + 1, max(th + 1, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return frame_bgr


def _det_json(det: dict[str, Tensor], classes: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"class": classes[int(c) - 1], "label": int(c), "score": round(float(s), 5), "box": [round(v, 2) for v in b]}
        for b, s, c in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True)
    ]


def _detect_images(
    model: Any, classes: Sequence[str], paths: Sequence[Path], out: Path, config: DetectConfig, batch_size: int,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """Annotated copies ``OUT/<name>.jpg`` of image files; their entries of ``detections.json`` and the errors."""
    import cv2

    entries, errors = [], []
    with _progress(len(paths), "images", "img", progress and bool(paths)) as bar:
        for metas, (dets,), _ in _run(model, _ImageFiles(paths, _eval_transform(model)), [config],
                                      batch_size=batch_size, bar=bar):  # fmt: skip
            for meta, det in zip(metas, dets, strict=True):
                if det is None:
                    errors.append(meta["error"])
                    continue
                bgr = np.ascontiguousarray(meta["image"].permute(1, 2, 0).numpy()[:, :, ::-1])
                target = out / f"{meta['path'].stem}.jpg"
                cv2.imwrite(str(target), draw_detections(bgr, det, classes))
                h, w = meta["size"]
                entries.append({"file": str(meta["path"]), "output": str(target), "width": w, "height": h,
                                "detections": _det_json(det, classes)})  # fmt: skip
    return entries, errors


def _detect_video(
    model: Any, classes: Sequence[str], path: Path, out: Path, config: DetectConfig, batch_size: int, progress: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """Every frame of a video annotated into ``OUT/<name>.mp4``; its ``detections.json`` entry, or an error."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return None, f"{path}: cannot be opened as a video"
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    target = out / f"{path.stem}.mp4"
    writer = None
    entry: dict[str, Any] = {"file": str(path), "output": str(target), "fps": fps, "frames": []}
    try:
        with _progress(total, path.name, "frame", progress) as bar:
            frames = _VideoFrames(cap, _eval_transform(model))
            for metas, (dets,), _ in _run(model, frames, [config], batch_size=batch_size, bar=bar):
                for meta, det in zip(metas, dets, strict=True):
                    if writer is None:
                        h, w = meta["size"]
                        entry.update(width=w, height=h)
                        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    writer.write(draw_detections(meta["bgr"], det, classes))
                    entry["frames"].append(_det_json(det, classes))
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if not entry["frames"]:
        return None, f"{path}: no frame could be decoded"
    return entry, None


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
    cfg = config or DetectConfig(score_threshold=0.5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs)
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    entries, errors = _detect_images(model, classes, images, out, cfg, batch_size, progress)
    doc: dict[str, Any] = {"classes": list(classes), "score_threshold": cfg.score_threshold, "images": entries,
                           "videos": [], "errors": errors}  # fmt: skip
    for path in videos:
        entry, error = _detect_video(model, classes, path, out, cfg, batch_size, progress)
        if error is not None:
            doc["errors"].append(error)
        else:
            doc["videos"].append(entry)
    (out / "detections.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc
