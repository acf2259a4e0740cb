"""What the driver and the executors exchange: chunk tasks and their outcomes, the
executor protocol, and the progress hooks.

Both the run loop (:mod:`fervid.engine.runner`) and the Ray executor
(:mod:`fervid.engine.ray_executor`) import this module, and neither imports the other
at module level.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fervid.records import VideoFaces, VideoInfo, VideoInput

Chunk = tuple[float, float | None]  # [start_s, end_s) in seconds; end None: to the end


@dataclass(frozen=True, kw_only=True)
class ChunkTask:
    """One unit of work: chunk ``index`` of the ``count`` chunks of ``video``, the
    sampled frames with ``start_s <= timestamp < end_s`` (seconds; None: to the end)."""

    video: VideoInput
    info: VideoInfo
    index: int
    count: int
    start_s: float
    end_s: float | None

    @property
    def seconds(self) -> float:
        """Video seconds this chunk covers (for progress and ETA)."""
        end = self.info.duration_s if self.end_s is None else self.end_s
        return max(0.0, end - self.start_s) if math.isfinite(end) else 0.0


@dataclass(frozen=True, kw_only=True)
class ChunkDone:
    """A classified chunk: ``faces`` without crops (``crops`` is ``(n, 0)``) and
    ``probs`` float32 (n, C), one row per face, in ``faces``' order."""

    task: ChunkTask
    faces: VideoFaces
    probs: np.ndarray


@dataclass(frozen=True, kw_only=True)
class ChunkFailed:
    """A chunk that could not be extracted or classified; its video fails."""

    task: ChunkTask
    error: BaseException


ChunkOutcome = ChunkDone | ChunkFailed


def without_crops(faces: VideoFaces) -> VideoFaces:
    """``faces`` with its crops dropped (``(n, 0)`` uint8): what travels back to the
    driver and to disk once the crops are classified."""
    return dataclasses.replace(faces, crops=np.zeros((faces.n_faces, 0), np.uint8))


class Executor(Protocol):
    """Extracts and classifies chunks; the driver tracks, smooths and writes."""

    def run(self, tasks: list[ChunkTask]) -> Iterator[ChunkOutcome]:
        """Every task's outcome, in completion order (not submission order)."""
        ...

    def cancel_video(self, video_id: str) -> None:
        """Skip the video's chunks not yet done (one of its chunks failed)."""
        ...

    def close(self) -> None: ...


class Hooks(Protocol):
    """Progress reporting chosen by the caller (the CLI shows a progress bar)."""

    def status(self, message: str) -> None:
        """What the run is doing before any video progresses (e.g. starting Ray)."""
        ...

    def start(self, total: int, skipped: int, seconds: float) -> None:
        """``total`` videos (``seconds`` of video) to process, ``skipped`` already done."""
        ...

    def chunk_done(self, video: VideoInput, seconds: float) -> None:
        """``seconds`` more of video are classified (one chunk; finished or failed)."""
        ...

    def video_done(self, video: VideoInput, status: str, detail: str) -> None: ...


class NullHooks:
    def status(self, message: str) -> None:
        pass

    def start(self, total: int, skipped: int, seconds: float) -> None:
        pass

    def chunk_done(self, video: VideoInput, seconds: float) -> None:
        pass

    def video_done(self, video: VideoInput, status: str, detail: str) -> None:
        pass
