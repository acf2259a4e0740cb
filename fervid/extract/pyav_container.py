"""Opening a video with PyAV, and the facts its container header gives.

The header is always read with PyAV, whichever decoder reads the frames (cheap): it
tells an empty file, a non-video and an audio-only file apart with precise messages,
and gives the rotation (display matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fervid.errors import DecodeError
from fervid.extract.decode_base import first_line
from fervid.extract.filecheck import check_file


@dataclass(frozen=True)
class Header:
    coded_width: int  # as stored, before rotation
    coded_height: int
    rotation: int  # clockwise degrees the player applies: 0, 90, 180 or 270
    fps: float
    duration_s: float
    n_frames: int
    codec: str

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation in (90, 270):
            return self.coded_height, self.coded_width
        return self.coded_width, self.coded_height


def open_pyav(path: Path) -> Any:
    """``av.open`` with FFmpeg's errors turned into one-line :class:`DecodeError`."""
    import av

    check_file(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.InvalidDataError:
        raise DecodeError(
            f"{path.name}: not a video or unknown format (FFmpeg found invalid data; an MP4/MOV "
            "cut short while recording also lacks its index); check that it plays"
        ) from None
    except av.error.FileNotFoundError:
        raise DecodeError(f"{path.name}: file not found; was it moved or deleted?") from None
    except av.error.PermissionError:
        raise DecodeError(f"{path.name}: permission denied; make the file readable") from None
    except av.FFmpegError as e:
        raise DecodeError(f"{path.name}: cannot open ({e.strerror}); check that it plays") from None


def video_stream(container: Any, path: Path) -> Any:
    if container.streams.video:
        return container.streams.video[0]
    kinds = sorted({s.type for s in container.streams})
    if "audio" in kinds:
        raise DecodeError(f"{path.name}: no video stream (audio-only file?)")
    found = ", ".join(kinds) if kinds else "none"
    raise DecodeError(f"{path.name}: no video stream (streams found: {found})")


def read_header(path: Path) -> Header:
    import av

    with open_pyav(path) as container:
        stream = video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = 0.0
        n_frames = stream.frames or round(duration_s * fps)
        rotation = _rotation_from_metadata(stream)
        try:  # FFmpeg attaches the display matrix to decoded frames, not to the stream API
            for frame in container.decode(stream):
                rotation = _clockwise(-frame.rotation) if frame.rotation else rotation
                break
        except av.FFmpegError:
            pass  # an undecodable start is reported by the sampler, with what it did decode
        codec = stream.codec_context.name or ""
        return Header(
            coded_width=stream.codec_context.width,
            coded_height=stream.codec_context.height,
            rotation=rotation,
            fps=fps,
            duration_s=duration_s,
            n_frames=int(n_frames),
            codec=codec,
        )


def _rotation_from_metadata(stream: Any) -> int:
    """Older FFmpeg builds exported the display matrix as a ``rotate`` tag (clockwise)."""
    try:
        return _clockwise(float(stream.metadata.get("rotate", 0)))
    except ValueError:
        return 0


def _clockwise(degrees: float) -> int:
    """Nearest multiple of 90 in [0, 360)."""
    return round(degrees / 90.0) * 90 % 360


def av_reason(e: Exception) -> str:
    """FFmpeg's own wording ("Invalid data found when processing input"), one line."""
    return str(getattr(e, "strerror", None) or first_line(e))
