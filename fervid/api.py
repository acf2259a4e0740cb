"""The Python API: the engine and the settings of ``fervid process``, from code.

Re-exported by :mod:`fervid` (``fervid.process``, ``fervid.analyze``, ``fervid.read``,
``fervid.classify_faces``, ``fervid.Results``); documented in ``docs/api.md``. Settings
are the keys of :data:`fervid.config.OPTIONS` as keywords, validated by the same
settings classes as the CLI's options; errors are the same exception classes the CLI
maps to exit codes (:mod:`fervid.errors`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fervid import config as c
from fervid.errors import ConfigError, DataError, MissingExtraError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    from fervid.engine.runner import RunSummary
    from fervid.settings import RunSettings

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Results:
    """The three tables of a run (``docs/schema.md``), as Arrow tables.

    ``frames``: one row per face per sampled frame; ``segments``: one row per emotion
    segment of a face; ``videos``: one row per video. Each carries fervid's Parquet
    metadata (settings, model hash, version) as its schema metadata.
    """

    frames: pa.Table
    segments: pa.Table
    videos: pa.Table

    def table(self, name: str) -> pa.Table:
        """``"frames"``, ``"segments"`` or ``"videos"``."""
        from fervid.output.schema import TABLES

        if name not in TABLES:
            raise ConfigError(f"table={name!r}; expected one of {list(TABLES)}")
        return getattr(self, name)

    def to_pandas(self, table: str = "frames") -> pd.DataFrame:
        """One table as a pandas DataFrame (default: frames)."""
        return self.table(table).to_pandas()

    def to_polars(self, table: str = "frames") -> pl.DataFrame:
        """One table as a polars DataFrame (default: frames); needs polars
        (``pip install 'fervid[polars]'``)."""
        try:
            import polars
        except ImportError:
            raise MissingExtraError(
                "Results.to_polars needs polars, which is not installed; "
                "pip install 'fervid[polars]' (or use .to_pandas() or the Arrow tables)"
            ) from None
        return polars.from_arrow(self.table(table))  # type: ignore[return-value]

    @property
    def class_names(self) -> tuple[str, ...]:
        """The model's classes, in the order of the ``prob_<class>`` columns."""
        return tuple(n[len("prob_") :] for n in self.frames.column_names if n.startswith("prob_"))

    def __repr__(self) -> str:
        from fervid.engine.runner import counted as _count

        faces = len(set(zip(*(self.frames.column(k).to_pylist() for k in ("video_id", "face_id")), strict=True))) if self.frames.num_rows else 0  # fmt: skip
        return (
            f"Results({_count(self.videos.num_rows, 'video')}, "
            f"{_count(self.frames.num_rows, 'face row')}, {_count(faces, 'face')}, "
            f"{_count(self.segments.num_rows, 'segment')})"
        )


# --------------------------------------------------------------------------- settings
def build_settings(
    inputs: PathLike | Sequence[PathLike],
    out: PathLike,
    settings: dict[str, Any],
    *,
    config: PathLike | None = None,
    where: str = "fervid.process()",
) -> RunSettings:
    """:class:`RunSettings` from the API's keywords (over ``config``'s file when given,
    over the defaults), validated as the CLI validates its options. Raises
    :class:`ConfigError` for an unknown keyword (naming the closest) or a bad value."""
    c.check_keys(settings, where)
    given = {k: c.coerce(c.BY_KEY[k], v, k) for k, v in settings.items()}
    file = c.load_config(Path(config)) if config is not None else None
    resolved = c.layer(given=given, file=file, config=Path(config) if config else None)
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    return c.run_settings(paths, out, resolved)


# --------------------------------------------------------------------------- process
def process(
    inputs: PathLike | Sequence[PathLike],
    out: PathLike,
    *,
    config: PathLike | None = None,
    **settings: Any,
) -> RunSummary:
    """Analyse videos and write the frames, segments and videos tables to ``out``,
    exactly as ``fervid process INPUTS --out OUT`` does (same skips, reruns, layouts).

    ``inputs``: video files, folders (recursive) or glob patterns. ``out``:
    ``results.parquet`` (one file per table) or a folder (one file per video).
    ``settings``: the options of ``fervid process`` by key (``fps=5``,
    ``det_threshold=0.7``, ``device="cpu"``, ``align=False``…; ``fervid config init``
    lists them), over the ``[process]`` table of ``config`` when given.

    Returns the :class:`~fervid.engine.runner.RunSummary`: videos that failed are in
    ``summary.failed`` (the CLI's exit code 3), not raised. Raises ConfigError,
    InputError, ModelError (the CLI's exit 2), OSError for the output's disk (exit 4),
    and ``RunInterrupted`` (a KeyboardInterrupt) on Ctrl-C after writing what was done.
    """
    from fervid.engine.runner import run

    return run(build_settings(inputs, out, settings, config=config))


# --------------------------------------------------------------------------- analyze
#: Settings ``analyze`` refuses: it writes nothing and runs in this process.
_NOT_IN_MEMORY = {
    "save_crops": "it writes the crops to disk; use fervid.process",
    "ray_address": "analyze runs in this process; use fervid.process for Ray",
    "executor": "analyze always runs in this process",
}


def analyze(video: PathLike, *, config: PathLike | None = None, **settings: Any) -> Results:
    """Analyse one video in this process and return its tables, writing nothing: no
    output, no temporary file, no crop (``Results.frames`` / ``.segments`` /
    ``.videos``, the rows ``fervid process`` would write for it).

    ``settings``: as :func:`process` (``save_crops``, ``ray_address`` and ``executor``
    excepted). A video fervid cannot decode raises :class:`~fervid.errors.DecodeError`;
    one without faces gives empty frames and segments tables.
    """
    import dataclasses

    from fervid.engine.runner import run
    from fervid.errors import DecodeError, InputError
    from fervid.output.memory import MemoryStore
    from fervid.settings import ExecutorKind

    for key, why in _NOT_IN_MEMORY.items():
        if key in settings:
            raise ConfigError(f"fervid.analyze(): {key} is not accepted ({why})")
    path = Path(video)
    if not path.is_file():
        raise InputError(f"fervid.analyze(): {video} is not a file; expected one video")
    run_settings = build_settings(
        path, "fervid-analyze", settings, config=config, where="fervid.analyze()"
    )
    # one file handed over by the caller is analysed as it is: never left pending as a
    # copy in progress (--settle-seconds is for folders that uploads land in)
    run_settings = dataclasses.replace(
        run_settings, executor=ExecutorKind.LOCAL,
        discover=dataclasses.replace(run_settings.discover, settle_seconds=0.0),
    )  # fmt: skip
    stores: list[MemoryStore] = []

    def memory_store(**kwargs: Any) -> MemoryStore:
        stores.append(MemoryStore(**kwargs))
        return stores[-1]

    summary = run(run_settings, store_factory=memory_store, executor_factory=_in_memory_executor)
    if summary.failed:
        (_, error), *_ = summary.failed
        raise DecodeError(f"{video}: {error}")
    return Results(**stores[0].tables())


def _in_memory_executor(settings: RunSettings, model: Any, hooks: Any) -> Any:
    """The in-process executor with the model loaded straight from its file: the run's
    usual path writes the verified bytes to a temporary file first."""
    from fervid.engine.runner import LocalExecutor
    from fervid.errors import ModelError
    from fervid.model.classify import EmotionClassifier
    from fervid.model.modelfile import load_model

    loaded = load_model(model.path)
    if loaded.sha256 != model.sha256:
        raise ModelError(f"model file {model.path} changed while the run started; run again")
    classifier = EmotionClassifier(settings=settings.classify, model=loaded)
    return LocalExecutor(settings, model, classifier=classifier)


# --------------------------------------------------------------------------- read
def read(out: PathLike) -> Results:
    """The tables of any fervid output: ``results.parquet`` (with its
    ``.segments``/``.videos`` siblings) or a dataset folder, written by this fervid or
    an older one (added columns read as null or their default, ``docs/schema.md``).
    Raises :class:`~fervid.errors.InputError` when ``out`` holds no fervid results."""
    from fervid.output.schema import FRAMES, SEGMENTS, VIDEOS
    from fervid.output.store import read_results

    out = Path(out)
    videos = read_results(out, VIDEOS)  # InputError: nothing there
    return Results(
        frames=read_results(out, FRAMES, missing_ok=True),
        segments=read_results(out, SEGMENTS, missing_ok=True),
        videos=videos,
    )


# --------------------------------------------------------------------------- faces
def classify_faces(
    images: np.ndarray | Sequence[np.ndarray | PathLike],
    *,
    aligned: bool = True,
    model: PathLike | None = None,
    device: str = "auto",
    batch_size: int = 64,
    align: bool = True,
) -> np.ndarray:
    """Emotion probabilities of face images: float32 ``(N, C)``, columns in the order
    of the model's classes (``fervid.class_names()``), rows summing to 1.

    ``images``: a uint8 array ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (BGR, as OpenCV
    reads), or a list of such images ``(H, W)`` / ``(H, W, 3)`` or of image file paths.
    ``aligned=True``: each image is a face crop (e.g. a FER-2013 48x48 face); it is
    resized to the model's input and classified. ``aligned=False``: each image is a
    photo; the pipeline's detector finds the faces, the highest-scoring one is aligned
    (``align``, as ``fervid process --align``) and classified; an image without a face
    gives a row of NaN. Either way through the same preprocessing as ``fervid process``.
    """
    import numpy as np

    from fervid.model.classify import EmotionClassifier
    from fervid.model.modelfile import load_model
    from fervid.model.spec import resize_faces, resolve_model_path
    from fervid.settings import ClassifySettings, CropSettings, DetectSettings

    settings = ClassifySettings(
        model_path=Path(model) if model is not None else None,
        device=c.coerce(c.BY_KEY["device"], device, "device"),
        batch_size=batch_size,
    )
    loaded = load_model(resolve_model_path(settings.model_path))
    spec = loaded.spec
    pictures = _images(images)
    if aligned:
        crops = resize_faces(pictures, spec)
        found = np.ones(len(pictures), bool)
    else:
        from fervid.extract.crop import crop_faces
        from fervid.extract.detect import FaceDetector

        detector = FaceDetector(settings=DetectSettings())
        crop_settings = CropSettings(align=align)
        picked: list[np.ndarray] = []
        found = np.zeros(len(pictures), bool)
        for i, image in enumerate(pictures):
            bgr = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
            dets = detector(bgr)
            if len(dets):
                best = int(np.argmax(dets.scores))
                picked.append(crop_faces(bgr, dets, crop_settings, spec)[best])
                found[i] = True
        crops = np.stack(picked) if picked else np.zeros((0, *spec.crop_shape), np.uint8)
    probs = EmotionClassifier(settings=settings, model=loaded)(crops)
    result = np.full((len(pictures), spec.num_classes), np.nan, np.float32)
    result[found] = probs
    return result


def class_names(model: PathLike | None = None) -> tuple[str, ...]:
    """The classes of ``model`` (default: the shipped model), in column order."""
    from fervid.model.header import read_header
    from fervid.model.spec import ModelSpec, resolve_model_path

    header = read_header(resolve_model_path(Path(model) if model is not None else None))
    return tuple(ModelSpec.from_json(header["spec"]).class_names)


def _images(images: Any) -> list[np.ndarray]:
    """``classify_faces``'s input as a list of uint8 images (H, W) or (H, W, 3)."""
    import numpy as np

    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
            raise ConfigError(
                f"images has shape {images.shape}; expected (N, H, W) gray or (N, H, W, 3) "
                "BGR, or a list of images or paths"
            )
        return [_uint8(im, i) for i, im in enumerate(images)]
    if isinstance(images, str | os.PathLike):
        raise ConfigError("images is one path; pass a list of paths: [path]")
    out = []
    for i, item in enumerate(images):
        if isinstance(item, str | os.PathLike):
            import cv2

            image = cv2.imread(str(item), cv2.IMREAD_COLOR)
            if image is None:
                raise DataError(f"cannot read image {item}; expected a JPEG, PNG or BMP file")
            out.append(image)
        else:
            out.append(_uint8(np.asarray(item), i))
    return out


def _uint8(image: np.ndarray, index: int) -> np.ndarray:
    import numpy as np

    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ConfigError(f"images[{index}] has shape {image.shape}; expected (H, W) or (H, W, 3)")
    if image.dtype != np.uint8:
        raise ConfigError(f"images[{index}] is {image.dtype}; expected uint8 pixels (0-255)")
    return image
