"""Open videos and stream sampled frames: decord first, PyAV as the fallback.

:func:`probe` reads a video's facts; :class:`FrameSampler` yields :class:`Frame` records
(BGR uint8, rotation applied, the decoder's timestamp) one at a time.

How the two decoders share the work:

* PyAV is the default (:data:`PREFER_DECORD` False; measured in docs/dependencies.md:
  on a long 720p clip decord read the file ~19 times for one 60 s chunk, PyAV 0.1 times,
  at half decord's wall time and a third of its memory). ``backend="decord"`` still
  works as described below.
* The container header is always read with PyAV (cheap): it tells an empty file, a
  non-video and an audio-only file apart with precise messages, and gives the rotation
  (display matrix).
* decord then indexes the frames (exact count and per-frame timestamps) and decodes the
  sampled ones with ``get_batch``, in chunks of at most ``chunk_size`` frames that cover
  whole keyframe intervals; after each chunk the reader is reset. decord 0.6's CPU reader
  otherwise keeps decoding ahead of a slow consumer on its own thread, up to ~500 frames
  (dmlc/decord#197, #208: measured 1.3-1.8 GB on a 40 s 720p clip), and a reset at a
  keyframe boundary costs nothing because decord seeks there anyway.
* PyAV decodes instead when decord cannot open a file (truncated recordings: decord
  indexes every packet on open and gives up at the first missing one), when decord's
  timestamps cannot be trusted (MP4 edit lists: decord lists the pre-roll frames players
  skip, with negative times, but never decodes them, so its images and timestamps are
  offset), when a keyframe interval holds more than ``chunk_size`` sampled frames (long
  GOPs: the reset trick would cost a re-decode per chunk), and for the rest of a video
  when decord fails mid-stream. PyAV pulls packet by packet and converts only sampled
  frames, so it holds just the decoder's reference frames.

Time: frames are chosen by *timestamp*. For ``fps`` sampling, each target time ``k/fps``
takes the first frame at or after it (a frame reached by two targets is taken once), so
29.97 fps and variable-frame-rate video are sampled correctly. ``timestamp_s`` is the
decoder's presentation time in seconds from the start of the video stream (PyAV:
``(pts - stream.start_time) * time_base``; decord computes the same, in float32).
``frame_index`` counts displayed frames from 0 in presentation order; both backends
agree on it.

Ranges: ``FrameSampler(..., start_s=a, end_s=b)`` yields only the frames with
``a <= timestamp_s < b`` (both bounds lowered by ``TIME_TOL_S``, as the sampling slots
are), chosen on the *whole video's* grid: the targets are ``k/fps`` for the global ``k``
(``every_n``: the global frame indices), so consecutive ranges concatenated give exactly
the frames of an unbounded run, without duplicates or gaps at the boundaries. decord
takes the range's indices from its timestamp table. PyAV seeks to the keyframe before
the range start by the container's own index (MP4/MOV sample tables, read with the
header: no packet before the range is read, so a run over all chunks reads the file
about once) and decodes forward; the keyframe's position in that index is the global
frame index, which holds for closed GOPs and is checked on the first decoded frame.
Files without a usable index (MKV without cues, edit-list pre-roll, open GOPs, a
cut-off file) fall back to indexing the packets up to the range end (demuxing only,
no decoding), then seeking.

Damage: decode errors (undecodable packets, frames FFmpeg had to conceal; for decord,
which conceals and stays silent, FFmpeg's error messages) become one warning per
range in :data:`fervid.records.DECODE_ERRORS_WARNING` form, count first, so the videos
row gets ``status = 'ok_with_warnings'`` and ``decode_errors``.

Size: frames whose longer side exceeds ``SampleSettings.max_side`` are downscaled
(aspect kept) while decoding. :class:`VideoInfo` keeps the *displayed* size at source
resolution (after rotation); ``FrameSampler.scale`` is the analysed/displayed factor and
``FrameSampler.frame_size`` the analysed ``(width, height)``: divide pixel coordinates
measured on a ``Frame.image`` by ``scale`` to get displayed-frame pixels.

Memory: frames are streamed; at most one chunk of decoded frames (plus decord's bounded
read-ahead inside a chunk) is held, never the video.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fervid.errors import ConfigError, DecodeError
from fervid.records import DECODE_ERRORS_WARNING, Frame, VideoInfo
from fervid.settings import SampleSettings

#: ``auto`` tries decord before PyAV when True. False: PyAV decodes (benchmarks/
#: bench_decode.py, docs/dependencies.md): decord indexes the whole file on every open
#: (each chunk of a long video re-reads all of it) and each of its seeks reads tens of MB,
#: 19x the file for one 60 s chunk of a 10-min 720p clip, against PyAV's 0.12x; PyAV was
#: also 2x faster and held 130 MB against decord's 430 MB.
PREFER_DECORD = False

#: Most frame indices requested from decord at once (bounds the decoded batch in memory).
CHUNK_SIZE = 16

#: Decoder threads per video. The engine runs one video per core, so one thread each.
DEFAULT_THREADS = 1

#: Timestamps within this many seconds of a target count as "at" it. decord reports
#: float32 seconds, whose rounding error reaches ~0.25 ms at two hours; 0.5 ms is far
#: below any frame interval (8.3 ms at 120 fps).
TIME_TOL_S = 5e-4

#: A decode that ends more than this before the stream's stated duration (and more than
#: three frame intervals) is reported as stopped early.
EARLY_STOP_S = 1.0

#: Consecutive undecodable packets after which the PyAV path gives up on the rest.
MAX_BAD_PACKETS = 50

_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")  # decord's "[21:44:36] src/x.cc:486: "
_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class Backend(StrEnum):
    """Which decoder reads the frames. ``auto``: decord, falling back to PyAV."""

    AUTO = "auto"
    DECORD = "decord"
    PYAV = "pyav"

    @classmethod
    def parse(cls, value: Backend | str) -> Backend:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(b.value for b in cls)
            raise ConfigError(f"decoder backend={value!r}; expected one of {valid}") from None


# --------------------------------------------------------------------------- probe
def probe(
    path: Path | str, *, backend: Backend | str = Backend.AUTO, threads: int = DEFAULT_THREADS
) -> VideoInfo:
    """Read a video's facts without decoding it (PyAV header, then decord's frame index).

    ``width``/``height`` are the displayed size at source resolution (after rotation);
    ``fps`` is the stream's average rate; ``duration_s`` the video stream's length;
    ``n_frames`` decord's exact count, or the container's count with PyAV (which may
    include pre-roll frames players skip); ``rotation`` degrees clockwise the player
    applies; ``backend`` "decord" when decord can index the file and its timestamps are
    sound, else "pyav" (:class:`FrameSampler` may still choose PyAV for long keyframe
    intervals; its ``backend_used`` says what decoded the frames).

    Raises :class:`DecodeError` with one line naming the problem: file not found,
    permission denied, file is empty (0 bytes), not a video / unknown format, no video
    stream (audio-only file?); with ``backend="decord"`` also when decord cannot read it.
    """
    path = Path(path)
    backend = Backend.parse(backend)
    header = _read_header(path)
    used = Backend.PYAV
    fps, duration_s, n_frames = header.fps, header.duration_s, header.n_frames
    if backend is Backend.DECORD or (backend is Backend.AUTO and PREFER_DECORD):
        try:
            reader = _DecordReader(path, threads=threads)
        except _DecordUnusable as e:
            if backend is Backend.DECORD:
                raise DecodeError(
                    f"{path.name}: decord cannot read it ({e}); use the PyAV backend"
                ) from e
        else:
            used = Backend.DECORD
            fps = reader.fps or fps
            duration_s = reader.duration_s
            n_frames = reader.n_frames
            reader.close()
    width, height = header.display_size
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        duration_s=duration_s,
        n_frames=n_frames,
        rotation=header.rotation,
        backend=used.value,
        codec=header.codec,
    )


@dataclass(frozen=True)
class _Header:
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


def _check_file(path: Path) -> None:
    """The failures that need no decoder, each with its own message."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DecodeError(f"{path.name}: file not found; was it moved or deleted?") from None
    except PermissionError:
        raise DecodeError(f"{path.name}: permission denied; make its folder readable") from None
    if not os.path.isfile(path):
        raise DecodeError(f"{path.name}: is not a regular file; pass a video file")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise DecodeError(
            f"{path.name}: permission denied; make the file readable by the user running fervid"
        ) from None
    if st.st_size == 0:
        raise DecodeError(
            f"{path.name}: file is empty (0 bytes); the recording or copy failed, copy it again"
        )
    with open(path, "rb") as f:
        kind = _still_kind(f.read(32))
    if kind is not None:  # FFmpeg would open it as a one-frame, 0-second "video"
        raise DecodeError(
            f"{path.name}: is a still image ({kind}), not a video; pass the recording itself"
        )


#: Leading bytes of still-image and document formats someone may rename to .mp4.
_STILL_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF document"),
)
#: ISO-BMFF brands (bytes 8-12, after "ftyp") of still images: HEIC/HEIF and AVIF photos.
_STILL_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}


def _still_kind(head: bytes) -> str | None:
    """The still-image format the first bytes of a file announce, or None."""
    for magic, kind in _STILL_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in _STILL_BRANDS:
        return _STILL_BRANDS[head[8:12]]
    return None


def _open_pyav(path: Path) -> Any:
    """``av.open`` with FFmpeg's errors turned into one-line :class:`DecodeError`."""
    import av

    _check_file(path)
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


def _video_stream(container: Any, path: Path) -> Any:
    if container.streams.video:
        return container.streams.video[0]
    kinds = sorted({s.type for s in container.streams})
    if "audio" in kinds:
        raise DecodeError(f"{path.name}: no video stream (audio-only file?)")
    found = ", ".join(kinds) if kinds else "none"
    raise DecodeError(f"{path.name}: no video stream (streams found: {found})")


def _read_header(path: Path) -> _Header:
    import av

    with _open_pyav(path) as container:
        stream = _video_stream(container, path)
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
        return _Header(
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


# --------------------------------------------------------------------------- decord
class _DecordUnusable(Exception):
    """decord cannot open a file, or its frame index cannot be trusted."""


class _DecordFailed(Exception):
    """decord stopped mid-stream; PyAV can continue."""


_FFMPEG_LOG = re.compile(r"^\[[\w.-]+ @ 0x[0-9a-f]+\] (.+)$")  # "[h264 @ 0x5600...] error ..."


class _FFmpegErrors:
    """``with _FFmpegErrors() as e: reader.batch(...)``: FFmpeg's error messages during
    the block, in ``e.lines``.

    decord conceals damaged packets and reports nothing; its bundled FFmpeg only writes
    "error while decoding MB ..." to file descriptor 2. For the block, decord's log level
    is raised to errors and fd 2 points at a temporary file; afterwards FFmpeg's lines are
    kept and anything else written meanwhile is passed on to the real stderr.
    """

    def __enter__(self) -> _FFmpegErrors:
        import tempfile

        import decord

        self.lines: list[str] = []
        self._decord = decord
        self._tmp = tempfile.TemporaryFile()
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        decord.logging.set_level(decord.logging.ERROR)
        return self

    def __exit__(self, *exc: object) -> None:
        self._decord.logging.set_level(self._decord.logging.QUIET)
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        text = self._tmp.read().decode("utf-8", errors="replace")
        self._tmp.close()
        other = []
        for line in text.splitlines():
            m = _FFMPEG_LOG.match(line.strip())
            if m:
                self.lines.append(m.group(1).strip())
            elif line.strip():
                other.append(line)
        if other:
            os.write(2, ("\n".join(other) + "\n").encode())


class _DecordReader:
    """A decord ``VideoReader`` with its timestamps checked."""

    def __init__(self, path: Path, *, threads: int, size: tuple[int, int] | None = None) -> None:
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # errors become our messages
        width, height = size if size is not None else (-1, -1)
        try:
            # decord 0.6 applies the display rotation itself; width/height are the
            # displayed (rotated) size, scaled inside its filter graph.
            self.vr = decord.VideoReader(
                str(path), ctx=decord.cpu(0), num_threads=threads, width=width, height=height
            )
            n = len(self.vr)
            ts = self.vr.get_frame_timestamp(np.arange(n)) if n else np.zeros((0, 2))
            self.keys = [int(k) for k in self.vr.get_key_indices()]
            self.fps = float(self.vr.get_avg_fps())
        except (RuntimeError, decord.DECORDError) as e:
            raise _DecordUnusable(_first_line(e)) from e
        if n == 0:
            raise _DecordUnusable("no frames in its index")
        self.times = np.asarray(ts, np.float64)  # (n, 2) start, end seconds
        if self.times[0, 0] < -TIME_TOL_S:
            raise _DecordUnusable("pre-roll frames with negative timestamps (MP4 edit list)")
        self.n_frames = n
        self.duration_s = float(self.times[-1, 1])

    def keyframe_of(self, index: int) -> int:
        """Index of the keyframe interval holding frame ``index``."""
        return bisect.bisect_right(self.keys, index) - 1

    def batch(self, indices: list[int]) -> np.ndarray:
        """RGB uint8 (len(indices), H, W, 3)."""
        import decord

        try:
            return self.vr.get_batch(indices).asnumpy()
        except (RuntimeError, decord.DECORDError) as e:
            raise _DecordFailed(_first_line(e)) from e

    def stop_read_ahead(self) -> None:
        import decord

        try:
            self.vr.seek(0)  # clears decord's decoder thread and its queue of decoded frames
        except (RuntimeError, decord.DECORDError) as e:
            raise _DecordFailed(_first_line(e)) from e

    def close(self) -> None:

        with contextlib.suppress(_DecordFailed):
            self.stop_read_ahead()  # a reader that already failed has nothing left to stop
        del self.vr


def _av_reason(e: Exception) -> str:
    """FFmpeg's own wording ("Invalid data found when processing input"), one line."""
    return str(getattr(e, "strerror", None) or _first_line(e))


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = _LOG_PREFIX.sub("", lines[0]) if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------- sampling
class _Selector:
    """Decides, frame by frame in presentation order, which frames are sampled.

    ``fps``: the frame is taken when it is the first at or after a not yet served target
    time ``k / fps``; ``every_n``: frames 0, n, 2n, ... Deterministic in (index, time), so
    a replay over the same frames makes the same choices.
    """

    def __init__(self, settings: SampleSettings) -> None:
        self.fps = settings.fps
        self.every_n = settings.every_n
        self.last_slot = -1

    def _slot(self, t: float) -> int:
        assert self.fps is not None  # SampleSettings guarantees exactly one mode
        return math.floor((t + TIME_TOL_S) * self.fps)

    def take(self, index: int, t: float) -> bool:
        if self.every_n is not None:
            return index % self.every_n == 0
        slot = self._slot(t)
        if slot > self.last_slot:
            self.last_slot = slot
            return True
        return False

    def pass_over(self, t: float) -> None:
        """Account for the frames up to time ``t`` that precede a range, unseen.

        Same state as offering each of them to :meth:`take` in time order: slots grow
        with time, so only the last one counts (``every_n`` keeps no state).
        """
        if self.every_n is None:
            self.last_slot = max(self.last_slot, self._slot(t))


class _SeekMissed(Exception):
    """After a seek, the first frame of the range did not decode where the index said."""


#: ``_pyav_pass(plan=_BY_INDEX)``: seek by the container's own frame index.
_BY_INDEX = "by-index"


def _index_dts(stream: Any) -> np.ndarray | None:
    """int64 ``(n,)`` decode timestamps of every frame, from the index the demuxer read
    with the header (MP4/MOV sample tables): no packet data is read. None when the index
    is missing or partial (streamed formats, MKV without cues), or holds frames players
    skip (edit-list pre-roll, flagged discard): their frame indices would be off."""
    entries = stream.index_entries
    n = len(entries)
    if n == 0 or (stream.frames and stream.frames != n):
        return None
    dts = np.empty(n, np.int64)
    for i, entry in enumerate(entries):
        if entry.is_discard:
            return None
        dts[i] = entry.timestamp
    if np.any(np.diff(dts) <= 0):
        return None
    return dts


def _rank_of_keyframe(dts: np.ndarray, packet: Any) -> tuple[int, int]:
    """(position in decode order, pts) of the keyframe a seek landed on.

    For a closed GOP, every frame decoded before a keyframe is shown before it, so the
    position is also the keyframe's global ``frame_index`` (:func:`_check_closed_gop`
    verifies)."""
    if packet.dts is None or not packet.is_keyframe:
        raise _SeekMissed("the seek did not land on a keyframe with a timestamp")
    k = int(np.searchsorted(dts, packet.dts))
    if k >= len(dts) or dts[k] != packet.dts or packet.pts is None:
        raise _SeekMissed(f"keyframe dts {packet.dts} is not in the container's index")
    return k, int(packet.pts)


def _check_closed_gop(key_pts: int | None, pts: int | None, t: float, lo: float) -> None:
    """The first frame shown after an index seek must be the keyframe itself (no open-GOP
    leading frames shown before it, none dropped), and lie before the range, so that the
    frame ranks from the index hold and the sampling state at the range start is known."""
    if key_pts is None or pts != key_pts:
        raise _SeekMissed(f"first frame shown after the seek has pts {pts}, not the keyframe's")
    if t >= lo:
        raise _SeekMissed("the seek landed inside the range")


@dataclass(frozen=True)
class _SeekPlan:
    """Where PyAV starts decoding a range, from an index of the packets (none decoded).

    ``pts``/``times``: int64/float64 ``(m,)`` presentation timestamps (stream units) and
    seconds of the displayed frames, sorted, from the start to past the range end, so a
    frame's rank in ``pts`` is its global ``frame_index``. ``seek_pts``: the keyframe at
    or before the range's first frame (None: decode from the start). ``first_pts``: that
    first frame (None when the index holds no frame in the range).
    """

    pts: np.ndarray
    times: np.ndarray
    seek_pts: int | None
    first_pts: int | None

    def index_of(self, pts: int | None, previous: int) -> int:
        """Global frame index of a decoded frame; the next one when its pts is unknown."""
        if pts is not None:
            k = int(np.searchsorted(self.pts, pts))
            if k < len(self.pts) and self.pts[k] == pts:
                return k
        return previous + 1


def _seek_plan(path: Path, lo: float, hi: float) -> _SeekPlan | None:
    """Index the video packets from the start until past ``hi`` seconds (demux only).

    The index stops 1 s after ``hi``: a packet's dts never exceeds its pts, so every
    frame shown before ``hi`` has been seen by then. Returns None when a packet carries
    no timestamp (a raw stream: frames cannot be placed without decoding them). A demux
    error (cut-off file) ends the index early; the decoding pass reports it.
    """
    import av

    pts: list[int] = []
    times: list[float] = []
    keys: list[int] = []
    with _open_pyav(path) as container:
        stream = _video_stream(container, path)
        start = stream.start_time or 0
        time_base = stream.time_base or Fraction(1, 1)
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the empty packet that flushes the decoder at the end
                if packet.pts is None:
                    return None
                t = float((packet.pts - start) * time_base)
                if packet.is_keyframe:
                    keys.append(packet.pts)
                # the frames the decoding pass counts: not pre-roll, not marked to drop
                if t >= -TIME_TOL_S and not packet.is_discard:
                    pts.append(packet.pts)
                    times.append(t)
                dts = packet.dts if packet.dts is not None else packet.pts
                if float((dts - start) * time_base) > hi + 1.0:
                    break
        except av.FFmpegError:
            pass
    order = np.argsort(np.asarray(pts, np.int64), kind="stable")
    pts_arr = np.asarray(pts, np.int64)[order]
    times_arr = np.asarray(times, np.float64)[order]
    j = int(np.searchsorted(times_arr, lo))
    first_pts = int(pts_arr[j]) if j < len(pts_arr) else None
    limit = first_pts if first_pts is not None else math.inf
    before = [k for k in keys if k <= limit]
    return _SeekPlan(
        pts=pts_arr,
        times=times_arr,
        seek_pts=max(before) if before else None,
        first_pts=first_pts,
    )


@dataclass
class _Damage:
    """Decode errors met in a range: undecodable packets and frames FFmpeg had to conceal
    (PyAV), or FFmpeg's error messages (decord, which only logs them)."""

    n: int = 0
    first_t: float | None = None
    last_t: float | None = None
    reason: str = ""

    def add(self, t: float | None, reason: str, count: int = 1) -> None:
        self.n += count
        if t is not None:
            self.first_t = t if self.first_t is None else min(self.first_t, t)
            self.last_t = t if self.last_t is None else max(self.last_t, t)
        self.reason = self.reason or reason

    def warning(self) -> str:
        """One :data:`~fervid.records.DECODE_ERRORS_WARNING` line (count first)."""
        start = self.first_t if self.first_t is not None else 0.0
        end = self.last_t if self.last_t is not None else start
        reason = f"{self.reason}; some frames may be missing or smeared"
        return DECODE_ERRORS_WARNING.format(n=self.n, start=start, end=end, reason=reason)


@dataclass
class _Progress:
    """What one pass has yielded and decoded so far (mutable, per iteration)."""

    yielded: int = 0
    last_yielded_index: int = -1
    last_decoded_t: float | None = None
    stop_reason: str | None = None  # error that ended decoding early


class FrameSampler:
    """Stream the sampled frames of one video as :class:`Frame` records.

    Each ``Frame.image`` is BGR uint8 ``(H, W, 3)`` of the *displayed* picture (rotation
    applied), downscaled so that its longer side is at most ``settings.max_side``;
    ``timestamp_s`` is the decoder's time in seconds from the stream start;
    ``frame_index`` the displayed frame's index. Iterating again decodes again.

    After (or during) iteration, ``warnings`` holds human-readable notes, e.g. "decoding
    stopped at 7.5 s of 19.7 s: file truncated?" when the file ends early; the frames
    decoded until then are still yielded. :class:`DecodeError` is raised only if not a
    single frame decodes.

    ``backend``: ``auto`` (decord, falling back to PyAV), ``decord`` or ``pyav`` (forced,
    for tests and debugging). ``threads``: decoder threads; more speeds up one video but
    competes with other workers. ``chunk_size``: most frames decord decodes per request.

    ``start_s``/``end_s`` (seconds; ``end_s=None``: to the end) restrict the frames to
    ``start_s <= timestamp_s < end_s`` on the whole video's sampling grid (see the module
    docstring), so the engine can split a long video into time chunks. A range starting
    at 0 raises :class:`DecodeError` when nothing decodes, as a whole video does; a later
    range may legitimately yield nothing. The early-stop warning then compares with
    ``min(end_s, duration)``.
    """

    def __init__(
        self,
        path: Path | str,
        settings: SampleSettings,
        info: VideoInfo | None = None,
        *,
        backend: Backend | str = Backend.AUTO,
        threads: int = DEFAULT_THREADS,
        chunk_size: int = CHUNK_SIZE,
        start_s: float = 0.0,
        end_s: float | None = None,
    ) -> None:
        if threads < 1:
            raise ConfigError(f"decoder threads={threads}; expected >= 1")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size={chunk_size}; expected >= 1")
        if not (math.isfinite(start_s) and start_s >= 0):
            raise ConfigError(f"start_s={start_s}; expected a finite time >= 0 seconds")
        if end_s is not None and not end_s > start_s:
            raise ConfigError(
                f"end_s={end_s}; expected None (to the end) or a time > start_s={start_s}"
            )
        self.start_s = float(start_s)
        self.end_s = None if end_s is None else float(end_s)
        self.path = Path(path)
        self.settings = settings
        self.backend = Backend.parse(backend)
        self.threads = threads
        self.chunk_size = chunk_size
        self.info = info if info is not None else probe(self.path, backend=self.backend)
        self.scale, self.frame_size = _analysed_size(
            self.info.width, self.info.height, settings.max_side
        )
        self.warnings: list[str] = []
        self.backend_used = ""  # "decord", "pyav" or "decord+pyav" after iterating

    def __iter__(self) -> Iterator[Frame]:
        self.warnings = []
        progress = _Progress()
        use_pyav = self.backend is Backend.PYAV or (
            self.backend is Backend.AUTO
            and (self.info.backend == Backend.PYAV.value or not PREFER_DECORD)
        )
        used = Backend.PYAV.value
        if not use_pyav:
            try:
                self.backend_used = used = Backend.DECORD.value
                yield from self._decord_frames(progress)
            except (_DecordUnusable, _DecordFailed) as e:
                if self.backend is Backend.DECORD:
                    raise DecodeError(f"{self.path.name}: decord failed ({e}); use PyAV") from e
                used = Backend.PYAV.value
                if isinstance(e, _DecordFailed):
                    at = progress.last_decoded_t or 0.0
                    self.warnings.append(f"decord failed at {at:.1f} s ({e}); continued with PyAV")
                    used = "decord+pyav"
                use_pyav = True
        if use_pyav:
            self.backend_used = used
            yield from self._pyav_frames(progress, after_index=progress.last_yielded_index)
        self._finish(progress)

    # -- decord ------------------------------------------------------------------------
    def _decord_frames(self, progress: _Progress) -> Iterator[Frame]:
        reader = _DecordReader(self.path, threads=self.threads, size=self._resize_to())
        try:
            selector = _Selector(self.settings)
            starts = reader.times[:, 0]
            # The whole video's grid, then the range: chunks of a video agree at their
            # boundaries, and all of them choose the backend an unbounded run would.
            picked = [i for i in range(reader.n_frames) if selector.take(i, float(starts[i]))]
            chunks = _chunks_by_keyframe(picked, reader.keyframe_of, self.chunk_size)
            if self.backend is Backend.AUTO and any(not whole for _, whole in chunks):
                raise _DecordUnusable(
                    f"a keyframe interval holds more than {self.chunk_size} sampled frames, "
                    "where decord would decode far ahead of use"
                )
            lo, hi = self._bounds()
            if self._ranged():
                picked = [i for i in picked if lo <= starts[i] < hi]
                chunks = _chunks_by_keyframe(picked, reader.keyframe_of, self.chunk_size)
            damage = _Damage()
            for chunk, whole in chunks:
                with _FFmpegErrors() as errors:  # decord only logs damage: count the lines
                    rgb = reader.batch(chunk)  # (len(chunk), H, W, 3) RGB
                if errors.lines:
                    damage.add(float(starts[chunk[0]]), errors.lines[0], count=len(errors.lines))
                    damage.add(float(starts[chunk[-1]]), errors.lines[0], count=0)
                if whole:  # the next chunk starts at a later keyframe: a reset costs nothing
                    reader.stop_read_ahead()
                for k, index in enumerate(chunk):
                    t = float(starts[index])
                    progress.last_decoded_t = t
                    progress.yielded += 1
                    progress.last_yielded_index = index
                    yield Frame(
                        frame_index=index,
                        timestamp_s=t,
                        image=np.ascontiguousarray(rgb[k, :, :, ::-1]),
                    )
            # The index reaches the first frame past the range (or the video's last one).
            past = int(np.searchsorted(starts, hi)) if math.isfinite(hi) else reader.n_frames
            progress.last_decoded_t = float(starts[min(past, reader.n_frames - 1)])
            if damage.n:
                self.warnings.append(damage.warning())
        finally:
            reader.close()

    # -- PyAV --------------------------------------------------------------------------
    def _pyav_frames(self, progress: _Progress, *, after_index: int) -> Iterator[Frame]:
        """Decode the range's frames, convert only the sampled ones; skip indices <= after_index.

        A range starting after 0 seeks by the container's own frame index (MP4/MOV: read
        with the header, so nothing before the range is read; see :func:`_index_dts`).
        Where that index is missing or cannot be trusted, it seeks by a demux-only index
        of the packets up to the range (:func:`_seek_plan`); when even that fails, it
        decodes from the start and discards the frames before the range.
        """
        if self.start_s > 0:
            n_warnings, saved = len(self.warnings), dataclasses.replace(progress)
            try:  # the container's index: nothing before the range is read
                yield from self._pyav_pass(progress, after_index=after_index, plan=_BY_INDEX)
                return
            except _SeekMissed:  # raised before the first yield: plan by demuxing instead
                del self.warnings[n_warnings:]
                progress.__dict__.update(saved.__dict__)
        plan = _seek_plan(self.path, *self._bounds()) if self.start_s > 0 else None
        if plan is not None:
            n_warnings = len(self.warnings)
            try:
                yield from self._pyav_pass(progress, after_index=after_index, plan=plan)
                return
            except _SeekMissed:  # raised before the first yield: start over from 0
                del self.warnings[n_warnings:]
        yield from self._pyav_pass(progress, after_index=after_index, plan=None)

    def _pyav_pass(
        self, progress: _Progress, *, after_index: int, plan: _SeekPlan | str | None
    ) -> Iterator[Frame]:
        """One decoding pass: from the plan's keyframe, from the keyframe the container's
        index gives (``plan=_BY_INDEX``, see :func:`_index_dts`), or from the start
        without a plan."""
        import av

        selector = _Selector(self.settings)
        lo, hi = self._bounds()
        by_index = plan == _BY_INDEX
        if isinstance(plan, _SeekPlan):
            before = int(np.searchsorted(plan.times, lo))  # frames preceding the range
            if before:
                selector.pass_over(float(plan.times[before - 1]))
        with _open_pyav(self.path) as container:
            stream = _video_stream(container, self.path)
            stream.codec_context.thread_count = self.threads
            stream.codec_context.thread_type = "AUTO"
            start = stream.start_time or 0
            time_base = stream.time_base or Fraction(1, 1)
            # Per decoded frame, in ints: a correctly rounded int / int is the float of
            # the Fraction (pts - start) * time_base, without building a Fraction per frame.
            tb_num, tb_den = time_base.numerator, time_base.denominator
            step = 1.0 / self.info.fps if self.info.fps > 0 else 1.0 / 30
            dts: np.ndarray | None = None
            seek_pts = plan.seek_pts if isinstance(plan, _SeekPlan) else None
            if by_index:
                dts = _index_dts(stream)
                if dts is None:
                    raise _SeekMissed("the container has no complete frame index")
                # two frame intervals early, so the keyframe lies before the range's first
                # frame and the sampling state is known when the range starts
                seek_pts = start + max(0, round((lo - 2 * step) / float(time_base)))
            if seek_pts is not None:
                try:
                    container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
                except av.FFmpegError as e:
                    raise _SeekMissed(_av_reason(e)) from e
            first_unchecked = isinstance(plan, _SeekPlan)
            key_pts: int | None = None  # by index: the keyframe's pts, to be shown first
            checked = False
            index, bad, t_prev, estimated = -1, 0, None, False
            error, past_end = "", False
            damage = _Damage()
            try:
                for packet in container.demux(stream):
                    if dts is not None and key_pts is None and packet.size:
                        index, key_pts = _rank_of_keyframe(dts, packet)
                        index -= 1  # the keyframe's rank = frames decoded (and shown) before
                    try:
                        frames = packet.decode()
                        bad = 0
                    except av.FFmpegError as e:  # damaged packet: skip it, the decoder resyncs
                        bad, error = bad + 1, _av_reason(e)
                        if packet.pts is not None:
                            pt = float((packet.pts - start) * time_base)
                        else:  # placed after the last frame decoded
                            pt = t_prev if t_prev is not None else 0.0
                        if lo <= pt < hi:  # chunks count only their own range's damage
                            damage.add(pt, error)
                        if bad >= MAX_BAD_PACKETS:
                            progress.stop_reason = f"{bad} packets in a row undecodable: {error}"
                            break
                        continue
                    for frame in frames:
                        if frame.pts is not None:
                            t = (frame.pts - start) * tb_num / tb_den
                        else:  # no timestamps in the stream: estimate, and say so once
                            t = 0.0 if t_prev is None else t_prev + step
                            if not estimated:
                                estimated = True
                                self.warnings.append(
                                    "frames carry no timestamps; times estimated from frame rate"
                                )
                        if t < -TIME_TOL_S:
                            continue  # pre-roll a player would not show
                        t_prev = t
                        if isinstance(plan, _SeekPlan):
                            index = plan.index_of(frame.pts, index)
                        else:
                            index += 1
                        if by_index and not checked:
                            _check_closed_gop(key_pts, frame.pts, t, lo)
                            checked = True
                        progress.last_decoded_t = t
                        if t >= hi:
                            past_end = True
                            break
                        if frame.is_corrupt and t >= lo:  # FFmpeg concealed damage in it
                            damage.add(t, "damaged frame concealed")
                        if t < lo:  # before the range: decoded only to reach it
                            if not isinstance(plan, _SeekPlan):
                                selector.take(index, t)  # the whole video's sampling grid
                            continue
                        if first_unchecked and isinstance(plan, _SeekPlan):
                            if frame.pts is None or frame.pts != plan.first_pts:
                                raise _SeekMissed(f"range starts at pts {frame.pts}")
                            first_unchecked = False
                        if not selector.take(index, t) or index <= after_index:
                            continue
                        progress.yielded += 1
                        progress.last_yielded_index = index
                        yield Frame(frame_index=index, timestamp_s=t, image=self._pyav_image(frame))
                    if past_end:
                        break
            except av.FFmpegError as e:  # demuxing failed: a damaged or cut-off file
                progress.stop_reason = _av_reason(e)
            if by_index and not checked:  # the index promised frames the file lacks (cut off)
                raise _SeekMissed("no frame decoded after the seek")
            if bad and progress.stop_reason is None:
                progress.stop_reason = f"the last {bad} packets undecodable: {error}"
            if damage.n:
                self.warnings.append(damage.warning())

    def _pyav_image(self, frame: Any) -> np.ndarray:
        rotation = self.info.rotation
        if self.scale < 1.0:
            w, h = self.frame_size
            if rotation in (90, 270):
                w, h = h, w  # scale the stored picture, rotate after
            img = frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="AREA")
        else:
            img = frame.to_ndarray(format="bgr24")
        if rotation in _ROTATE:
            img = cv2.rotate(img, _ROTATE[rotation])
        return np.ascontiguousarray(img)

    # -- shared ------------------------------------------------------------------------
    def _resize_to(self) -> tuple[int, int] | None:
        return self.frame_size if self.scale < 1.0 else None

    def _ranged(self) -> bool:
        return self.start_s > 0 or self.end_s is not None

    def _bounds(self) -> tuple[float, float]:
        """``[lo, hi)``: the decoder times of the range's frames.

        Lowered by ``TIME_TOL_S`` like the sampling slots, so a frame on a boundary falls
        on the same side with float32 (decord) and exact (PyAV) times.
        """
        lo = self.start_s - TIME_TOL_S
        hi = math.inf if self.end_s is None else self.end_s - TIME_TOL_S
        return lo, hi

    def _finish(self, progress: _Progress) -> None:
        if progress.yielded == 0 and self.start_s == 0:
            why = f" ({progress.stop_reason})" if progress.stop_reason else ""
            raise DecodeError(
                f"{self.path.name}: no frame could be decoded{why}; the file is damaged or uses "
                "an unsupported codec"
            )
        duration = self.info.duration_s
        expected = duration if self.end_s is None else min(self.end_s, duration)
        last = progress.last_decoded_t if progress.last_decoded_t is not None else self.start_s
        margin = max(EARLY_STOP_S, 3.0 / self.info.fps if self.info.fps > 0 else 0.0)
        if progress.stop_reason is not None:
            self.warnings.append(
                f"decoding stopped at {last:.1f} s of {duration:.1f} s "
                f"({progress.stop_reason}): file truncated or damaged?"
            )
        elif expected > 0 and expected - last > margin:
            self.warnings.append(
                f"decoding stopped at {last:.1f} s of {duration:.1f} s: file truncated?"
            )


def _chunks_by_keyframe(
    picked: list[int], keyframe_of: Callable[[int], int], chunk_size: int
) -> list[tuple[list[int], bool]]:
    """Group sampled indices into chunks of at most ``chunk_size`` whole keyframe intervals.

    Returns ``(indices, whole)`` pairs; ``whole`` is False when one keyframe interval held
    more than ``chunk_size`` sampled frames and had to be split (the next chunk then
    continues inside the same interval).
    """
    groups: list[list[int]] = []
    for index in picked:
        if groups and keyframe_of(groups[-1][-1]) == keyframe_of(index):
            groups[-1].append(index)
        else:
            groups.append([index])
    chunks: list[tuple[list[int], bool]] = []
    for group in groups:
        if len(group) > chunk_size:
            pieces = [group[i : i + chunk_size] for i in range(0, len(group), chunk_size)]
            chunks.extend((piece, k == len(pieces) - 1) for k, piece in enumerate(pieces))
        elif chunks and chunks[-1][1] and len(chunks[-1][0]) + len(group) <= chunk_size:
            chunks[-1][0].extend(group)
        else:
            chunks.append((group, True))
    return chunks


def _analysed_size(width: int, height: int, max_side: int) -> tuple[float, tuple[int, int]]:
    """(scale, (w, h)) of the analysed frame: longer side at most ``max_side``."""
    longer = max(width, height)
    if longer <= max_side or longer == 0:
        return 1.0, (width, height)
    scale = max_side / longer
    return scale, (max(1, round(width * scale)), max(1, round(height * scale)))
