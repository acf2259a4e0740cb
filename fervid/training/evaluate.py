"""Evaluate an emotion model file on a labelled face set; measure its CPU speed.

The images go through the inference code path (:func:`fervid.model.preprocess.resize_faces`
then :func:`fervid.model.preprocess.normalize`) and the model's fitted temperature, so the
numbers describe what ``fervid process`` produces. Metrics are also reported at T = 1,
which shows what temperature scaling did to calibration (ECE, NLL).

    report = evaluate_model(Path("model.safetensors"), Path("../shared/data/fer2013/val"),
                            out_dir=Path("eval/fer2013-val"))
    print(format_table(report))
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fervid.errors import ConfigError, DataError, ModelError
from fervid.model.classify import calibrated_probs, for_inference, predict_logits
from fervid.model.modelfile import ModelSpec, load_model
from fervid.model.preprocess import resize_faces
from fervid.output.atomic import write_text
from fervid.training.data import FerPlusMode, load_dataset
from fervid.training.figures import (
    plot_confusion,
    plot_reliability,
    plot_roc,
    plot_training_curves,
)
from fervid.training.metrics import MetricSet, compute_metrics, one_vs_rest_roc

REPORT_JSON = "report.json"
CONFUSION_PNG = "confusion.png"
ROC_PNG = "roc.png"
RELIABILITY_PNG = "reliability.png"
TRAINING_CURVES_PNG = "training_curves.png"

#: (images done, images total) after each batch; the CLI turns it into a progress bar.
ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True, kw_only=True)
class EvalReport:
    """The result of :func:`evaluate_model`.

    ``metrics`` are at the model's fitted ``temperature``, ``metrics_t1`` at T = 1 (same
    accuracy without TTA; only calibration differs). ``probs`` float64 (N, C) are the
    probabilities at ``temperature`` (averaged over the image and its mirror with
    ``tta_flip``), ``labels`` int64 (N,) the hard labels (argmax of the data set's
    targets), both in data-set order. ``figures`` are the PNG files written.
    """

    model_path: str
    model_sha256: str
    model_name: str
    model_info: dict[str, Any]
    temperature: float
    class_names: tuple[str, ...]
    data_path: str
    layout: str
    ferplus_mode: FerPlusMode | None
    num_images: int
    tta_flip: bool
    limit: int | None
    batch_size: int
    seconds: float
    metrics: MetricSet
    metrics_t1: MetricSet
    probs: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    figures: tuple[str, ...] = ()
    #: ``--detect``: faces were found and cropped by the pipeline's detector and cropper
    detected: bool = False
    #: images (``class/file``) in which the detector found no face: counted, never scored
    no_face: tuple[str, ...] = ()
    #: images with more than one face (the highest-scoring one was scored)
    multi_face: int = 0

    def __post_init__(self) -> None:
        n, c = self.num_images, len(self.class_names)
        if self.probs.shape != (n, c) or self.labels.shape != (n,):
            raise ValueError(
                f"probs {self.probs.shape} / labels {self.labels.shape} do not match "
                f"num_images={n} and {c} classes"
            )

    def to_json(self) -> dict[str, Any]:
        """Everything but the per-image arrays, as JSON-ready values (NaN -> null)."""
        return _finite(
            {
                "model": {
                    "path": self.model_path,
                    "sha256": self.model_sha256,
                    "name": self.model_name,
                    "temperature": self.temperature,
                    "class_names": list(self.class_names),
                    "info": self.model_info,
                },
                "data": {
                    "path": self.data_path,
                    "layout": self.layout,
                    "num_images": self.num_images,
                    "class_counts": dict(
                        zip(self.class_names, self.metrics.per_class.support.tolist(), strict=True)
                    ),
                },
                "settings": {
                    "ferplus_mode": self.ferplus_mode.value if self.ferplus_mode else None,
                    "tta_flip": self.tta_flip,
                    "limit": self.limit,
                    "batch_size": self.batch_size,
                },
                "seconds": self.seconds,
                "metrics": metrics_to_json(self.metrics, self.class_names),
                "metrics_t1": metrics_to_json(self.metrics_t1, self.class_names),
                "figures": list(self.figures),
            }
        )


def metrics_to_json(m: MetricSet, class_names: tuple[str, ...]) -> dict[str, Any]:
    """A :class:`MetricSet` as plain lists and floats (NaN kept; see :func:`_finite`)."""
    pc = m.per_class
    rel = m.reliability
    return {
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
        "macro_auc": m.macro_auc,
        "ece": m.ece,
        "nll": m.nll,
        "per_class": [
            {
                "class": name,
                "precision": float(pc.precision[i]),
                "recall": float(pc.recall[i]),
                "f1": float(pc.f1[i]),
                "auc": float(m.auc[i]),
                "support": int(pc.support[i]),
            }
            for i, name in enumerate(class_names)
        ],
        "confusion": m.confusion.tolist(),
        "confusion_normalized": m.confusion_normalized.tolist(),
        "reliability": {
            "edges": rel.edges.tolist(),
            "confidence": rel.confidence.tolist(),
            "accuracy": rel.accuracy.tolist(),
            "count": rel.count.tolist(),
        },
    }


def _finite(x: Any) -> Any:
    """NaN/inf -> None recursively: JSON has no NaN (an undefined AUC becomes null)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def view_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Mean over views of softmax(logits / T): (V, N, C) -> float64 (N, C)."""
    return calibrated_probs(logits, temperature)


def detect_faces(
    files: list[tuple[Path, int]], spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray, list[str], tuple[str, ...], int]:
    """Run the pipeline's detector and cropper on full images, one face per image.

    Returns the model-size crops, their labels and names, the names of images with no
    face, and how many images held more than one (the highest-scoring face is kept, as a
    labelled photo shows one subject).
    """
    import cv2

    from fervid.extract.crop import crop_faces
    from fervid.extract.detect import FaceDetector
    from fervid.settings import CropSettings, DetectSettings

    detector = FaceDetector(settings=DetectSettings())
    crop_settings = CropSettings()
    crops: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    no_face: list[str] = []
    multi = 0
    for path, label in files:
        name = f"{path.parent.name}/{path.name}"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"cannot read image {path}")
        dets = detector(image)
        if len(dets) == 0:
            no_face.append(name)
            continue
        multi += len(dets) > 1
        best = int(np.argmax(dets.scores))
        faces = crop_faces(image, dets, crop_settings, spec)
        crops.append(faces[best])
        labels.append(label)
        names.append(name)
    return (
        np.stack(crops) if crops else np.zeros((0, *spec.crop_shape), np.uint8),
        np.asarray(labels, np.int64),
        names,
        tuple(no_face),
        multi,
    )


def evaluate_model(
    model_path: Path | None,
    data: Path,
    *,
    ferplus_mode: FerPlusMode = FerPlusMode.MAJORITY,
    tta_flip: bool | None = None,
    batch_size: int = 256,
    out_dir: Path | None = None,
    limit: int | None = None,
    progress: ProgressHook | None = None,
    detect: bool = False,
) -> EvalReport:
    """Score a model file on a folder-layout or FER+ data set; write report + figures.

    ``model_path``: a fervid ``.safetensors`` file, or None for the shipped default model.
    ``data``: ``<data>/<class>/*.jpg`` (classes matched by synonyms) or a FER+ split folder
    with ``label.csv`` (``ferplus_mode`` turns votes into labels: majority drops rows won by
    contempt/unknown/not-a-face; soft keeps them, labelled by their most-voted emotion).
    ``detect`` treats ``data`` as full photos (folder layout): the pipeline's face detector
    and cropper run first, one face per image; images without a face are counted in
    ``no_face`` and left out of the metrics. ``tta_flip`` averages the probabilities of each face and its mirror image (twice the
    compute, usually a little more accuracy). ``limit`` keeps a quick subset: the first
    ``limit`` usable FER+ rows, or the first ``max(1, limit // C)`` files per class folder
    (sorted by name) so every class is represented. ``out_dir`` (when given) receives
    ``report.json`` and the PNG figures (confusion, ROC, reliability, and training curves
    when the model file carries its training history).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; expected >= 1 (try 256 on a CPU)")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit={limit}; expected a positive image count or no limit")
    try:
        ferplus_mode = FerPlusMode(ferplus_mode)
    except ValueError:
        raise ConfigError(
            f"ferplus_mode={ferplus_mode!r}; expected one of {[m.value for m in FerPlusMode]}"
        ) from None
    data = Path(data)
    t0 = time.perf_counter()
    model = load_model(model_path)
    spec = model.spec

    is_ferplus = (data / "label.csv").is_file()
    no_face: tuple[str, ...] = ()
    multi = 0
    if detect:
        if is_ferplus:
            raise ConfigError(
                f"--detect reads full photos in the folder layout (<class>/*.jpg); {data} is a "
                "FER+ split of ready-made 48x48 crops: evaluate it without --detect"
            )
        from fervid.training.data import list_folder

        per_class = None if limit is None else max(1, limit // spec.num_classes)
        files = list_folder(data, tuple(spec.class_names), per_class)
        images, labels, _, no_face, multi = detect_faces(files, spec)
        if len(images) == 0:
            raise DataError(
                f"the detector found no face in any of the {len(files)} images in {data}"
            )
    else:
        kw: dict[str, int] = {}
        if limit is not None:
            kw = (
                {"limit": limit}
                if is_ferplus
                else {"limit_per_class": max(1, limit // spec.num_classes)}
            )
        # size=None keeps the source resolution, so resize_faces below does the one resize,
        # exactly as fervid.training.train.load_source and inference do.
        ds = load_dataset(data, ferplus_mode=ferplus_mode, size=None, **kw)
        if len(ds) == 0:
            raise DataError(f"{data} holds no images of the classes {list(ds.class_names)}")
        if tuple(ds.class_names) != tuple(spec.class_names):
            raise ModelError(
                f"the model's classes {list(spec.class_names)} differ from the data set's "
                f"{list(ds.class_names)}; evaluate a model trained on fervid's 7 emotion classes"
            )
        images = resize_faces(list(ds.images), spec)  # (N, S, S) uint8 (or (N, S, S, 3))
        labels = ds.labels.astype(np.int64)  # (N,)
    if tta_flip is None:
        tta_flip = spec.tta_flip
    logits = predict_logits(
        for_inference(model.network), images, spec, batch_size=batch_size, tta_flip=tta_flip,
        progress=progress,
    )  # (V, N, C)  # fmt: skip
    probs = view_probs(logits, spec.temperature)  # (N, C)
    metrics = compute_metrics(probs, labels)
    metrics_t1 = compute_metrics(view_probs(logits, 1.0), labels)

    figures: list[Path] = []
    if out_dir is not None:
        figures = _write_figures(
            Path(out_dir),
            metrics,
            metrics_t1,
            probs,
            labels,
            spec.temperature,
            tuple(spec.class_names),
            model.info.get("history"),
            data,
        )
    report = EvalReport(
        model_path=str(model.path),
        model_sha256=model.sha256,
        model_name=str(model.info.get("name", Path(str(model.path)).stem)),
        # history and recipe are long and have their own files; keep the summary entries
        model_info={k: v for k, v in model.info.items() if k not in ("history", "recipe")},
        temperature=spec.temperature,
        class_names=tuple(spec.class_names),
        data_path=str(data),
        layout="ferplus" if is_ferplus else "folder",
        ferplus_mode=ferplus_mode if is_ferplus else None,
        num_images=len(labels),
        tta_flip=tta_flip,
        limit=limit,
        batch_size=batch_size,
        seconds=time.perf_counter() - t0,
        metrics=metrics,
        metrics_t1=metrics_t1,
        probs=probs,
        labels=labels,
        figures=tuple(p.name for p in figures),
        detected=detect,
        no_face=no_face,
        multi_face=multi,
    )
    if out_dir is not None:
        write_text(Path(out_dir) / REPORT_JSON, json.dumps(report.to_json(), indent=2) + "\n")
    return report


def _write_figures(
    out_dir: Path,
    metrics: MetricSet,
    metrics_t1: MetricSet,
    probs: np.ndarray,
    labels: np.ndarray,
    temperature: float,
    class_names: tuple[str, ...],
    history: Any,
    data: Path,
) -> list[Path]:
    where = f"{data.parent.name}/{data.name} ({len(labels)} faces)"
    series = [(f"fitted T = {temperature:.2f}", metrics.reliability)]
    if temperature != 1.0:
        series.append(("T = 1", metrics_t1.reliability))
    else:
        series = [("T = 1 (no fitted temperature)", metrics.reliability)]
    paths = [
        plot_confusion(
            metrics.confusion,
            class_names,
            out_dir / CONFUSION_PNG,
            title=f"confusion on {where}: accuracy {metrics.accuracy:.3f}",
        ),
        plot_roc(
            one_vs_rest_roc(probs, labels),
            class_names,
            out_dir / ROC_PNG,
            title=f"ROC one vs rest on {where}",
        ),
        plot_reliability(series, out_dir / RELIABILITY_PNG, title=f"reliability on {where}"),
    ]
    if isinstance(history, list) and history:
        paths.append(plot_training_curves(history, out_dir / TRAINING_CURVES_PNG))
    return paths


def format_table(report: EvalReport) -> str:
    """The per-class table (precision, recall, F1, AUC, support) and summary lines."""
    m, m1 = report.metrics, report.metrics_t1
    pc = m.per_class
    width = max(9, *(len(n) for n in report.class_names))

    def num(x: float) -> str:
        return f"{x:9.3f}" if math.isfinite(x) else f"{'n/a':>9}"

    sha, t = report.model_sha256[:12], report.temperature
    lines = [
        f"model  {report.model_path}  (sha256 {sha}, T = {t:.3f})",
        f"data   {report.data_path}  ({report.num_images} faces, {report.layout} layout"
        + (f", FER+ {report.ferplus_mode.value}" if report.ferplus_mode else "")
        + (", flip TTA" if report.tta_flip else "")
        + ")",
        *(
            [
                f"detect faces found and cropped by the pipeline's detector; "
                f"{len(report.no_face)} image(s) without a face were not scored"
                + (
                    f" ({', '.join(report.no_face[:5])}{', …' if len(report.no_face) > 5 else ''})"
                    if report.no_face
                    else ""
                )
                + f"; {report.multi_face} with several faces (highest score kept)"
            ]
            if report.detected
            else []
        ),
        "",
        f"{'class':<{width}} {'precision':>9} {'recall':>9} {'F1':>9} {'AUC':>9} {'support':>8}",
    ]
    for i, name in enumerate(report.class_names):
        lines.append(
            f"{name:<{width}} {num(pc.precision[i])} {num(pc.recall[i])} {num(pc.f1[i])} "
            f"{num(m.auc[i])} {int(pc.support[i]):>8d}"
        )
    present = pc.support > 0
    lines += [
        f"{'macro avg':<{width}} {num(float(np.mean(pc.precision[present])))} "
        f"{num(float(np.mean(pc.recall[present])))} {num(m.macro_f1)} {num(m.macro_auc)} "
        f"{int(pc.support.sum()):>8d}",
        "",
        f"accuracy  {m.accuracy:.4f}",
        f"macro-F1  {m.macro_f1:.4f}",
        f"ECE       {m.ece:.4f}  (T = 1: {m1.ece:.4f})",
        f"NLL       {m.nll:.4f}  (T = 1: {m1.nll:.4f})",
    ]
    return "\n".join(lines)


def measure_inference_speed(
    model_path: Path | None,
    batch_size: int = 64,
    seconds: float = 3.0,
    *,
    crop_size: int = 96,
    seed: int = 0,
) -> float:
    """Faces per second of preprocessing + network + softmax on the CPU.

    Synthetic uint8 BGR crops (``batch_size``, ``crop_size``, ``crop_size``, 3), like the
    detector's crops of video frames, are resized and go through
    :func:`fervid.model.classify.predict_logits` (the pipeline's inference path) for at least ``seconds`` after one
    warm-up batch, with torch's current intra-op thread count. Longer ``seconds`` gives a
    steadier number.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; expected >= 1")
    if not seconds > 0:
        raise ConfigError(f"seconds={seconds}; expected > 0")
    model = load_model(model_path, device="cpu")
    network = for_inference(model.network)  # what the pipeline's classifier runs
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (batch_size, crop_size, crop_size, 3), dtype=np.uint8)

    def run_once() -> None:
        faces = resize_faces(crops, model.spec)  # the cropper's resize, then the one inference path
        logits = predict_logits(network, faces, model.spec, batch_size=batch_size)
        calibrated_probs(logits, model.spec.temperature)

    run_once()  # warm-up: first-call allocations and kernel selection
    done, t0 = 0, time.perf_counter()
    while True:
        run_once()
        done += batch_size
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed
