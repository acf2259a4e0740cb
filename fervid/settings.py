"""Settings: one frozen object per stage, composed into :class:`RunSettings`.

Structural settings (paths, device, batch size, Ray address) are kept apart from
tunables (sampling, thresholds, smoothing): only tunables and the model hash enter the
``settings_hash`` that decides whether a video already processed can be skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from fervid.errors import ConfigError

#: Shortest ``chunk_seconds`` accepted: every chunk re-opens and re-indexes its video.
MIN_CHUNK_SECONDS = 1.0


def _check(ok: bool, option: str, value: object, expected: str) -> None:
    """Raise :class:`ConfigError` naming ``option``, the expected and the actual value."""
    if not ok:
        raise ConfigError(f"{option}={value}; expected {expected}")


def _real(x: object) -> bool:
    """A finite int or float (not bool): NaN and inf would pass or fail range checks by
    accident (every comparison with NaN is false), so each number is checked first."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_chunk_seconds(chunk_seconds: float) -> None:
    """Raise :class:`ConfigError` unless ``chunk_seconds`` is 0 (off) or at least
    ``MIN_CHUNK_SECONDS``."""
    ok = math.isfinite(chunk_seconds) and chunk_seconds >= MIN_CHUNK_SECONDS
    if not (chunk_seconds == 0 or ok):
        raise ConfigError(
            f"--chunk-seconds={chunk_seconds}; expected 0 (no chunking) or at least "
            f"{MIN_CHUNK_SECONDS:g} seconds (default 300)"
        )


def split_ray_address(address: str) -> tuple[str, int]:
    """``--ray-address`` as ``(host, port)``; :class:`ConfigError` (one line, with the
    fix) unless it is ``host:port`` of a cluster's GCS. Ray Client (``ray://``) is
    refused by name: it would run the driver's work on the cluster's head."""
    example = "e.g. 127.0.0.1:6379 (ray start prints it)"
    if "://" in address:
        raise ConfigError(
            f"--ray-address={address}: Ray Client addresses (ray://) are not supported; "
            f"pass the cluster's GCS address host:port, {example}"
        )
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--ray-address={address}; expected host:port of the cluster's GCS, {example}"
        )
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ConfigError(f"--ray-address={address}: {host!r} is not a host name; {example}")
    return host, int(port)


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


#: A file modified less than this many seconds ago whose container is not complete is
#: still being copied or uploaded, and waits for a later run (``--settle-seconds``). A
#: copy writes continuously, so its mtime is seconds old at most; an upload over a poor
#: link stalls for tens of seconds (TCP retransmission backs off to a minute, SMB and
#: resumable-upload clients retry after 30-60 s). Two minutes outlasts those stalls and
#: costs a nightly job nothing.
DEFAULT_SETTLE_SECONDS = 120.0


@dataclass(frozen=True, kw_only=True)
class DiscoverSettings:
    """``settle_seconds``: a file modified more recently than this is analysed only when
    its container is complete (readable to its end); otherwise it is *pending*, left
    for a later run. 0 turns the check off. Structural: not in the settings hash."""

    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    id_pattern: str | None = None  # e.g. "{subject}/{session_date}_{name}.mp4"
    settle_seconds: float = DEFAULT_SETTLE_SECONDS

    def __post_init__(self) -> None:
        _check(_real(self.settle_seconds) and self.settle_seconds >= 0, "--settle-seconds",
               self.settle_seconds,
               f"a finite number of seconds >= 0 (0: off; default {DEFAULT_SETTLE_SECONDS:g})")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SampleSettings:
    """Which frames to analyse: ``fps`` samples by timestamp; ``every_n`` by frame count."""

    fps: float | None = 2.0
    every_n: int | None = None
    max_side: int = 1280  # frames larger than this are downscaled before detection

    def __post_init__(self) -> None:
        if (self.fps is None) == (self.every_n is None):
            raise ConfigError(
                f"--fps={self.fps} with --every-n={self.every_n}; expected exactly one of "
                "--fps or --every-n"
            )
        if self.fps is not None:
            _check(_real(self.fps) and self.fps > 0, "--fps", self.fps,
                   "a positive, finite number of frames per second")  # fmt: skip
        if self.every_n is not None:
            _check(_count(self.every_n) and self.every_n >= 1, "--every-n", self.every_n,
                   "an integer >= 1")  # fmt: skip
        _check(_count(self.max_side) and self.max_side >= 1, "max_side", self.max_side,
               "an integer >= 1 pixel")  # fmt: skip

    def interval_s(self, video_fps: float) -> float | None:
        """Seconds between two sampled frames of a video of ``video_fps`` frames per second:
        the time one sampled frame stands for, computed once per video at extraction and
        used by segments (``end_s``), summaries and the report alike.

        ``fps`` mode: ``1 / fps``, or the video's frame interval when the video has fewer
        frames per second than asked (every frame is then sampled). ``every_n`` mode:
        ``every_n / video_fps``. None when that needs the video's rate and it is unknown
        (``video_fps`` 0): consumers then use the median spacing of the samples.
        """
        known = _real(video_fps) and video_fps > 0
        if self.fps is not None:
            return 1.0 / min(self.fps, video_fps) if known else 1.0 / self.fps
        assert self.every_n is not None  # exactly one mode (checked above)
        return self.every_n / video_fps if known else None


class Detector(StrEnum):
    """Which face detector runs (see ``docs/detector.md``)."""

    YUNET = "yunet"  # YuNet 2023mar, ONNX, 5 landmarks; OpenCV 4.8+ and 5
    RES10 = "res10"  # res10 SSD, Caffe, no landmarks; OpenCV 4 only


@dataclass(frozen=True, kw_only=True)
class DetectSettings:
    """Face detector tunables.

    ``score_threshold``: raising it drops more false faces but loses turned/dim/small ones.
    ``min_face_px``: smaller boxes (shorter side, pixels of the frame after
    ``--max-side`` scaling) are ignored; faces below ~40 px classify poorly.
    ``nms_iou``: overlap above which two boxes are one face; raising it keeps more
    overlapping (crowded) faces but also more duplicates. ``long_side``: YuNet sees the
    frame scaled so its longer side is this many pixels; larger finds smaller faces but
    costs about (long_side / 320)^2 the time. ``input_size``: res10's square input.
    """

    detector: Detector = Detector.YUNET
    score_threshold: float = 0.6
    min_face_px: int = 40
    nms_iou: float = 0.3
    #: longer / shorter box side above which a box is not a face (after border clipping).
    max_aspect: float = 2.0
    long_side: int = 320
    input_size: int = 300

    def __post_init__(self) -> None:
        if not isinstance(self.detector, Detector):
            raise ConfigError(
                f"--detector={self.detector!r}; expected one of {[d.value for d in Detector]}"
            )
        if not 0 < self.score_threshold < 1:
            raise ConfigError(f"--det-threshold={self.score_threshold}; expected a value in (0, 1)")
        if self.min_face_px < 1:
            raise ConfigError(f"--min-face={self.min_face_px}; expected >= 1 pixel")
        if not 0 < self.nms_iou < 1:
            raise ConfigError(f"--det-nms={self.nms_iou}; expected a value in (0, 1)")
        if not (math.isfinite(self.max_aspect) and self.max_aspect >= 1):
            raise ConfigError(f"max_aspect={self.max_aspect}; expected >= 1")
        if not 32 <= self.long_side <= 4096:
            raise ConfigError(
                f"--det-long-side={self.long_side}; expected 32..4096 pixels (default 320)"
            )
        if not 32 <= self.input_size <= 4096:
            raise ConfigError(f"input_size={self.input_size}; expected 32..4096 pixels")


@dataclass(frozen=True, kw_only=True)
class CropSettings:
    """How a face becomes the classifier's input.

    ``align``: warp each face by the similarity transform that puts its 5 landmarks on
    the FER-2013 template (``fervid.extract.align``); faces without landmarks (res10)
    fall back to the box crop. ``margin`` (box crop only): fraction of the box side
    added on each side before squaring; larger shows more context, smaller face.
    """

    margin: float = 0.1
    align: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and 0 <= self.margin <= 1):
            raise ConfigError(f"--margin={self.margin}; expected a value in [0, 1]")
        if not isinstance(self.align, bool):
            raise ConfigError(f"--align={self.align!r}; expected on or off")


@dataclass(frozen=True, kw_only=True)
class ClassifySettings:
    model_path: Path | None = None  # None: the model shipped in the package
    device: Device = Device.AUTO
    batch_size: int = 64

    def __post_init__(self) -> None:
        _check(isinstance(self.device, Device), "--device", repr(self.device),
               f"one of {[d.value for d in Device]}")  # fmt: skip
        _check(_count(self.batch_size) and self.batch_size >= 1, "--batch-size", self.batch_size,
               "an integer >= 1")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TrackSettings:
    """``max_gap_s``: a face unseen for longer starts a new track; ``min_iou`` to associate."""

    min_iou: float = 0.3
    max_center_dist: float = 0.5  # in units of the box's diagonal
    max_gap_s: float = 2.0

    def __post_init__(self) -> None:
        _check(_real(self.min_iou) and 0 <= self.min_iou <= 1, "min_iou", self.min_iou,
               "a value in [0, 1]")  # fmt: skip
        _check(_real(self.max_center_dist) and self.max_center_dist >= 0, "max_center_dist",
               self.max_center_dist, "a finite number >= 0 (box diagonals)")  # fmt: skip
        # > 0, not >= 0: segments split at gaps longer than this, and 0 would split everywhere.
        _check(_real(self.max_gap_s) and self.max_gap_s > 0, "--max-gap-seconds",
               self.max_gap_s, "a positive, finite number of seconds (default 2)")  # fmt: skip


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
        _check(isinstance(self.method, Smoothing), "--smoothing", repr(self.method),
               f"one of {[m.value for m in Smoothing]}")  # fmt: skip
        _check(_real(self.seconds) and self.seconds >= 0, "--smoothing-seconds", self.seconds,
               "a finite number of seconds >= 0 (0: no smoothing)")  # fmt: skip
        _check(_real(self.min_segment_s) and self.min_segment_s >= 0, "--min-segment-seconds",
               self.min_segment_s, "a finite number of seconds >= 0")  # fmt: skip
        # Probabilities differ by at most 1: a hysteresis of 1 or more would never switch.
        _check(_real(self.hysteresis) and 0 <= self.hysteresis < 1, "--hysteresis",
               self.hysteresis, "a probability margin in [0, 1)")  # fmt: skip


class ExecutorKind(StrEnum):
    """Where a run's work happens."""

    AUTO = "auto"  # in-process for a small job, Ray above it
    LOCAL = "local"  # everything in this process, one chunk after another
    RAY = "ray"  # Ray tasks for extraction, Ray actors for classification


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
    # Also write a frames row (face_found false, face columns null) for each sampled frame
    # without a face. Changes the output, so it enters the settings hash.
    keep_empty_frames: bool = False
    # Videos longer than this are split into time chunks of about this many seconds that
    # run as separate tasks (one long video then uses every worker, and a crash loses one
    # chunk); 0 disables. Structural: results are identical for any value, so it stays
    # out of the settings hash.
    chunk_seconds: float = 300.0
    # Where the work runs: in this process, through Ray, or (auto) in-process for a small
    # job (engine.runner.AUTO_LOCAL_MAX_SECONDS of video) and through Ray above it.
    executor: ExecutorKind = ExecutorKind.AUTO
    # Classifier actors on GPUs, one per GPU; None: every GPU Ray sees (when --device
    # allows CUDA); 0: one classifier actor on the CPU.
    gpus: int | None = None
    # Ray forwards its workers' output and its INFO lines to this process (what
    # --log-file and --verbose show); off, they stay in Ray's session folder. Structural.
    log_workers: bool = False

    def __post_init__(self) -> None:
        check_chunk_seconds(self.chunk_seconds)  # a bad value fails the run before any video
        if not isinstance(self.executor, ExecutorKind):
            raise ConfigError(
                f"--executor={self.executor!r}; expected one of {[e.value for e in ExecutorKind]}"
            )
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise ConfigError(
                f"--workers={self.workers}; expected an integer >= 1 (default: all cores)"
            )
        if self.gpus is not None and (isinstance(self.gpus, bool) or self.gpus < 0):
            raise ConfigError(f"--gpus={self.gpus}; expected an integer >= 0 (default: all GPUs)")
        if self.ray_address is not None:
            split_ray_address(self.ray_address)  # the syntax now; nothing is contacted yet
        if self.executor is ExecutorKind.LOCAL and self.ray_address:
            raise ConfigError(
                f"--executor=local with --ray-address={self.ray_address}; drop one of them"
            )

    def tunables(self) -> dict[str, Any]:
        """The settings that change results (and so enter the settings hash)."""
        return _jsonable(
            {"sample": self.sample, "detect": self.detect, "crop": self.crop,
             "track": self.track, "smooth": self.smooth,
             "keep_empty_frames": self.keep_empty_frames}
        )  # fmt: skip

    def settings_hash(self, model_sha256: str) -> str:
        blob = json.dumps({"tunables": self.tunables(), "model": model_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return _jsonable(self)

    def metadata_json(self) -> dict[str, Any]:
        """:meth:`to_json` for the Parquet metadata of every output file, with nothing that
        could name a patient: paths (often holding names) are replaced by
        :func:`path_digest` (enough to check which folder a file came from, not to read
        one), and the model is its file name only (its sha256 is stored beside)."""
        d = _jsonable(self, path=path_digest)
        model = self.classify.model_path
        d["classify"]["model_path"] = None if model is None else Path(model).name
        return d


#: Prefix of a path recorded as its digest (:func:`path_digest`) in a file's metadata.
PATH_DIGEST_PREFIX = "sha256:"


def path_digest(path: Path | str) -> str:
    """``sha256:<16 hex>`` of a path's text: provenance without the path, which may name
    a patient. Compare with ``path_digest(Path(p).absolute())`` for a candidate folder."""
    return PATH_DIGEST_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:16]


def _jsonable(obj: Any, path: Callable[[Path], Any] = str) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        # fields one by one: asdict() would turn nested settings into dicts and lose the
        # Paths inside them to plain values before ``path`` sees them
        return {f.name: _jsonable(getattr(obj, f.name), path) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _jsonable(v, path) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, path) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return path(obj)
    return obj
