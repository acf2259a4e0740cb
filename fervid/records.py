"""Typed records that cross stage boundaries: frozen dataclasses of numpy arrays.

Shapes and units are stated once here. Boxes are ``xyxy`` in pixels of the displayed
(rotation-corrected) frame, float32. Time is seconds from the start of the video,
float64, as reported by the decoder; it travels with every row to Parquet.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True, kw_only=True)
class VideoInput:
    """One discovered input file.

    ``video_id``: content fingerprint (hex), stable when the file is moved or renamed.
    ``fields``: values pulled from the path by ``--id-pattern`` (e.g. subject, session_date).
    ``id_pattern_matched``: whether the path matched ``--id-pattern``; None without one.
    """

    path: Path
    video_id: str
    rel_path: str
    size_bytes: int
    fields: dict[str, str] = field(default_factory=dict)
    id_pattern_matched: bool | None = None


@dataclass(frozen=True, kw_only=True)
class VideoInfo:
    """Container facts read before decoding. ``width``/``height`` are after rotation."""

    width: int
    height: int
    fps: float
    duration_s: float
    n_frames: int
    rotation: int = 0  # degrees clockwise the player applies (0, 90, 180, 270)
    backend: str = "decord"  # "decord" or "pyav"
    codec: str = ""


@dataclass(frozen=True, kw_only=True)
class Frame:
    """One sampled frame: BGR uint8 (H, W, 3), rotation already applied."""

    frame_index: int
    timestamp_s: float
    image: np.ndarray

    def __post_init__(self) -> None:
        _check(
            self.image.ndim == 3 and self.image.shape[2] == 3,
            f"image must be (H, W, 3), got {self.image.shape}",
        )
        _check(self.image.dtype == np.uint8, f"image must be uint8, got {self.image.dtype}")


#: The 5 facial landmarks, in the order of ``Detections.landmarks`` (YuNet's order). "Right"
#: and "left" are the person's: on a frontal, unmirrored face the right eye is the one on
#: the image's left.
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


@dataclass(frozen=True, kw_only=True)
class Detections:
    """Faces found in one frame.

    ``boxes`` float32 (m, 4) xyxy pixels; ``scores`` float32 (m,) in [0, 1];
    ``landmarks`` float32 (m, 5, 2) (x, y) pixels in :data:`LANDMARK_NAMES` order, or None
    when the detector predicts none (res10).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        m = len(self.scores)
        _check(self.boxes.shape == (m, 4), f"boxes must be ({m}, 4), got {self.boxes.shape}")
        _check(self.scores.shape == (m,), f"scores must be ({m},), got {self.scores.shape}")
        if self.landmarks is not None:
            _check(
                self.landmarks.shape == (m, 5, 2),
                f"landmarks must be ({m}, 5, 2), got {self.landmarks.shape}",
            )

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(boxes=np.zeros((0, 4), np.float32), scores=np.zeros((0,), np.float32))


#: How a decoder words damage in ``VideoFaces.warnings``: the count leads the text, so it
#: survives the trip through Ray and the merge of a long video's chunks (each chunk's
#: warning names its time range, so the merge keeps them apart) without another field.
DECODE_ERRORS_WARNING = "{n} decode errors between {start:.1f} s and {end:.1f} s ({reason})"
_DECODE_ERRORS = re.compile(r"^(\d+) decode errors\b")


def decode_error_count(warnings: tuple[str, ...] | list[str]) -> int:
    """Total of the counts in the :data:`DECODE_ERRORS_WARNING` entries of ``warnings``."""
    return sum(int(m.group(1)) for w in warnings if (m := _DECODE_ERRORS.match(w)))


@dataclass(frozen=True, kw_only=True)
class FaceQuality:
    """Per-face quality and pose (n,), aligned with the face rows (``fervid.extract.quality``).

    ``landmarks`` float32 (n, 5, 2) pixels of the displayed frame, :data:`LANDMARK_NAMES`
    order, NaN where the detector gave none (res10); ``face_px`` float32 (n,) face side in
    displayed-frame pixels; ``blur`` float32 (n,) variance of the Laplacian of the model
    crop; ``brightness`` float32 (n,) mean crop gray level 0..1; ``yaw``/``pitch``/``roll``
    float32 (n,) approximate degrees from the landmarks, NaN without landmarks.
    """

    landmarks: np.ndarray
    face_px: np.ndarray
    blur: np.ndarray
    brightness: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.face_px)
        _check(
            self.landmarks.shape == (n, 5, 2),
            f"landmarks must be ({n}, 5, 2), got {self.landmarks.shape}",
        )
        for name in ("face_px", "blur", "brightness", "yaw", "pitch", "roll"):
            arr = getattr(self, name)
            _check(arr.shape == (n,), f"{name} must be ({n},), got {arr.shape}")

    def __len__(self) -> int:
        return len(self.face_px)

    @classmethod
    def empty(cls, n: int = 0) -> FaceQuality:
        """``n`` faces with every value unknown (NaN)."""
        nan = np.full(n, np.nan, np.float32)
        return cls(
            landmarks=np.full((n, 5, 2), np.nan, np.float32), face_px=nan, blur=nan,
            brightness=nan, yaw=nan, pitch=nan, roll=nan,
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: list[FaceQuality]) -> FaceQuality:
        """The parts' rows, in order, as one record."""
        if not parts:
            return cls.empty()
        names = ("landmarks", "face_px", "blur", "brightness", "yaw", "pitch", "roll")
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})


@dataclass(frozen=True, kw_only=True)
class VideoFaces:
    """Everything the CPU side extracts from one video, ready for classification.

    Per sampled frame (k,): ``sampled_frame_index`` int64, ``sampled_timestamp_s`` float64
    (also frames without a face, so face-present share and gaps are known).
    Per face (n,): ``frame_index`` int64, ``timestamp_s`` float64, ``boxes`` float32 (n, 4)
    xyxy pixels, ``det_scores`` float32, ``crops`` uint8 (n, S, S) or (n, S, S, 3): faces
    already preprocessed to the model's input size, so only small arrays cross processes.
    ``quality``: per-face landmarks, size, blur, brightness and pose (n,), or None when
    not measured (the quality columns are then null). ``sample_interval_s``: seconds one
    sampled frame stands for (:meth:`fervid.settings.SampleSettings.interval_s`), set
    once at extraction; None when unknown (then the median sample spacing is used).
    """

    video: VideoInput
    info: VideoInfo
    sampled_frame_index: np.ndarray
    sampled_timestamp_s: np.ndarray
    frame_index: np.ndarray
    timestamp_s: np.ndarray
    boxes: np.ndarray
    det_scores: np.ndarray
    crops: np.ndarray
    warnings: tuple[str, ...] = ()  # e.g. "decoding stopped at 3.2 s of 10 s: truncated?"
    seconds: dict[str, float] = field(default_factory=dict)  # stage timings
    quality: FaceQuality | None = None
    sample_interval_s: float | None = None

    def __post_init__(self) -> None:
        k, n = len(self.sampled_frame_index), len(self.frame_index)
        _check(
            self.sampled_timestamp_s.shape == (k,),
            "sampled_timestamp_s must match sampled_frame_index",
        )
        _check(self.timestamp_s.shape == (n,), "timestamp_s must be (n,)")
        _check(self.boxes.shape == (n, 4), f"boxes must be ({n}, 4), got {self.boxes.shape}")
        _check(self.det_scores.shape == (n,), "det_scores must be (n,)")
        _check(len(self.crops) == n, "crops must have one entry per face")
        if self.quality is not None:
            _check(len(self.quality) == n, f"quality must have {n} rows, got {len(self.quality)}")
        if self.sample_interval_s is not None:
            dt = self.sample_interval_s
            _check(math.isfinite(dt) and dt > 0, f"sample_interval_s={dt}; expected seconds > 0")

    @property
    def n_faces(self) -> int:
        return len(self.frame_index)


@dataclass(frozen=True, kw_only=True)
class Segment:
    """A contiguous run of one emotion for one face. Times in seconds, ``end_s`` exclusive."""

    start_s: float
    end_s: float
    label: int
    first_row: int  # row range into that face's per-frame arrays, end exclusive
    end_row: int

    def __post_init__(self) -> None:
        _check(
            self.end_s >= self.start_s,
            f"segment ends ({self.end_s}) before it starts ({self.start_s})",
        )

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, kw_only=True)
class VideoResult:
    """The finished analysis of one video: per-face rows plus segments, ready to write.

    Per face row (n,), aligned with ``faces``' per-face arrays (time order): ``face_id``
    int32, ``probs`` float32 (n, C) calibrated class probabilities, ``smoothed`` float32
    (n, C). ``segments[face_id]`` row ranges index that face's rows in time order.
    """

    faces: VideoFaces
    class_names: tuple[str, ...]
    face_id: np.ndarray
    probs: np.ndarray
    smoothed: np.ndarray
    segments: dict[int, list[Segment]]  # face_id -> segments
    seconds: dict[str, float] = field(default_factory=dict)
