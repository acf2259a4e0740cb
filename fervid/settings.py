"""Settings: one frozen object per stage, composed into :class:`RunSettings`.

Structural settings (paths, device, batch size, Ray address) are kept apart from
tunables (sampling, thresholds, smoothing): only tunables and the model hash enter the
``settings_hash`` that decides whether a video already processed can be skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from fervid.errors import ConfigError

#: Shortest ``chunk_seconds`` accepted: every chunk re-opens and re-indexes its video.
MIN_CHUNK_SECONDS = 1.0


def check_chunk_seconds(chunk_seconds: float) -> None:
    """Raise :class:`ConfigError` unless ``chunk_seconds`` is 0 (off) or at least
    ``MIN_CHUNK_SECONDS``."""
    ok = math.isfinite(chunk_seconds) and chunk_seconds >= MIN_CHUNK_SECONDS
    if not (chunk_seconds == 0 or ok):
        raise ConfigError(
            f"--chunk-seconds={chunk_seconds}; expected 0 (no chunking) or at least "
            f"{MIN_CHUNK_SECONDS:g} seconds (default 300)"
        )


DEFAULT_EXTENSIONS = (
    ".mp4",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
)


class Device(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Smoothing(StrEnum):
    """How per-frame probabilities are smoothed over time."""

    EMA = "ema"  # exponential, time constant in seconds, gap-aware
    NONE = "none"


@dataclass(frozen=True, kw_only=True)
class DiscoverSettings:
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    id_pattern: str | None = None  # e.g. "{subject}/{session_date}_{name}.mp4"


@dataclass(frozen=True, kw_only=True)
class SampleSettings:
    """Which frames to analyse: ``fps`` samples by timestamp; ``every_n`` by frame count."""

    fps: float | None = 2.0
    every_n: int | None = None
    max_side: int = 1280  # frames larger than this are downscaled before detection

    def __post_init__(self) -> None:
        if (self.fps is None) == (self.every_n is None):
            raise ConfigError("give exactly one of --fps or --every-n")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"--fps={self.fps}; expected a positive number of frames per second")
        if self.every_n is not None and self.every_n < 1:
            raise ConfigError(f"--every-n={self.every_n}; expected an integer >= 1")


@dataclass(frozen=True, kw_only=True)
class DetectSettings:
    """Face detector tunables.

    ``score_threshold``: raising it drops more false faces but loses turned/dim ones.
    ``min_face_px``: smaller boxes (shorter side, pixels) are ignored; faces below ~40 px
    classify poorly. ``nms_iou``: overlap above which two boxes are one face.
    """

    score_threshold: float = 0.6
    min_face_px: int = 40
    nms_iou: float = 0.4
    #: longer / shorter box side above which a box is not a face (after border clipping).
    max_aspect: float = 2.0
    input_size: int = 300

    def __post_init__(self) -> None:
        if not 0 < self.score_threshold < 1:
            raise ConfigError(f"--det-threshold={self.score_threshold}; expected a value in (0, 1)")
        if self.min_face_px < 1:
            raise ConfigError(f"--min-face={self.min_face_px}; expected >= 1 pixel")


@dataclass(frozen=True, kw_only=True)
class CropSettings:
    """``margin``: fraction of the box side added on each side before squaring."""

    margin: float = 0.1
    align: bool = False  # rotate so the eyes are level (needs detector landmarks)


@dataclass(frozen=True, kw_only=True)
class ClassifySettings:
    model_path: Path | None = None  # None: the model shipped in the package
    device: Device = Device.AUTO
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size={self.batch_size}; expected >= 1")


@dataclass(frozen=True, kw_only=True)
class TrackSettings:
    """``max_gap_s``: a face unseen for longer starts a new track; ``min_iou`` to associate."""

    min_iou: float = 0.3
    max_center_dist: float = 0.5  # in units of the box's diagonal
    max_gap_s: float = 2.0


@dataclass(frozen=True, kw_only=True)
class SmoothSettings:
    """``seconds``: EMA time constant; larger is steadier but reacts later.

    ``min_segment_s``: shorter runs merge into neighbours. ``hysteresis``: a new emotion
    must beat the current one by this much probability before a segment switches.
    """

    method: Smoothing = Smoothing.EMA
    seconds: float = 1.5
    min_segment_s: float = 1.0
    hysteresis: float = 0.1

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ConfigError(f"--smoothing-seconds={self.seconds}; expected >= 0")
        if self.min_segment_s < 0:
            raise ConfigError(f"--min-segment-seconds={self.min_segment_s}; expected >= 0")


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Everything one ``fervid process`` run needs."""

    inputs: tuple[Path, ...]
    out: Path
    discover: DiscoverSettings = field(default_factory=DiscoverSettings)
    sample: SampleSettings = field(default_factory=SampleSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    crop: CropSettings = field(default_factory=CropSettings)
    classify: ClassifySettings = field(default_factory=ClassifySettings)
    track: TrackSettings = field(default_factory=TrackSettings)
    smooth: SmoothSettings = field(default_factory=SmoothSettings)
    overwrite: bool = False
    workers: int | None = None
    ray_address: str | None = None
    save_crops: Path | None = None  # face crops are written only when asked
    # Videos longer than this are split into time chunks of about this many seconds that
    # run as separate tasks (one long video then uses every worker, and a crash loses one
    # chunk); 0 disables. Structural: results are identical for any value, so it stays
    # out of the settings hash.
    chunk_seconds: float = 300.0

    def __post_init__(self) -> None:
        check_chunk_seconds(self.chunk_seconds)  # a bad value fails the run before any video

    def tunables(self) -> dict[str, Any]:
        """The settings that change results (and so enter the settings hash)."""
        return _jsonable(
            {"sample": self.sample, "detect": self.detect, "crop": self.crop,
             "track": self.track, "smooth": self.smooth}
        )  # fmt: skip

    def settings_hash(self, model_sha256: str) -> str:
        blob = json.dumps({"tunables": self.tunables(), "model": model_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return _jsonable(self)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    return obj
