"""Open videos and stream sampled frames: one interface over two decoder backends.

:func:`probe` reads a video's facts; :class:`FrameSampler` yields :class:`Frame` records
(BGR uint8, rotation applied, the decoder's timestamp) one at a time. The pieces, after
pytorchvideo's ``data/`` layout:

* :mod:`fervid.extract.sampling`: which frames are taken (timestamp grid, ranges, and
  which frames a decoder may skip), decided apart from decoding;
* :mod:`fervid.extract.decode_pyav` (the default) and :mod:`fervid.extract.decode_decord`
  (``backend="decord"``): one module per decoder, each a ``frames(request, progress)``
  generator over :class:`~fervid.extract.decode_base.DecodeRequest`;
* :mod:`fervid.extract.pyav_container` (open, header, rotation; the header is always
  read with PyAV), :mod:`fervid.extract.pyav_seek` (where a range starts),
  :mod:`fervid.extract.filecheck` (empty, unreadable, still-image files).

Backends: PyAV is the default (:data:`PREFER_DECORD` False; measured in
docs/dependencies.md: on a long 720p clip decord read the file ~19 times for one 60 s
chunk, PyAV 0.1 times, at half decord's wall time and a third of its memory). PyAV
takes over from decord when decord cannot open a file, cannot be trusted with it, or
fails mid-stream (:mod:`fervid.extract.decode_decord`), continuing after the last frame
decord yielded.

Time: ``timestamp_s`` is the decoder's presentation time in seconds from the start of
the video stream (PyAV: ``(pts - stream.start_time) * time_base``; decord computes the
same, in float32). ``frame_index`` counts displayed frames from 0 in presentation
order; both backends agree on it, and so does PyAV with or without skipping frames.

Ranges: ``FrameSampler(..., start_s=a, end_s=b)`` yields only the frames with
``a <= timestamp_s < b`` (both bounds lowered by ``TIME_TOL_S``, as the sampling slots
are), chosen on the *whole video's* grid, so consecutive ranges concatenated give
exactly the frames of an unbounded run, without duplicates or gaps at the boundaries.

Damage: decode errors become one warning per range in
:data:`fervid.records.DECODE_ERRORS_WARNING` form, count first, so the videos row gets
``status = 'ok_with_warnings'`` and ``decode_errors``.

Size: frames whose longer side exceeds ``SampleSettings.max_side`` are downscaled
(aspect kept) while decoding. :class:`VideoInfo` keeps the *displayed* size at source
resolution (after rotation); ``FrameSampler.scale`` is the analysed/displayed factor and
``FrameSampler.frame_size`` the analysed ``(width, height)``: divide pixel coordinates
measured on a ``Frame.image`` by ``scale`` to get displayed-frame pixels.

Memory: frames are streamed; at most one chunk of decoded frames (plus decord's bounded
read-ahead inside a chunk) is held, never the video.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from fervid.errors import ConfigError, DecodeError
from fervid.extract import decode_decord, decode_pyav
from fervid.extract.decode_base import DecodeRequest, Progress
from fervid.extract.decode_decord import DecordFailed, DecordReader, DecordUnusable
from fervid.extract.pyav_container import read_header
from fervid.extract.sampling import analysed_size
from fervid.records import Frame, VideoInfo
from fervid.settings import SampleSettings

#: ``auto`` tries decord before PyAV when True. False: PyAV decodes (benchmarks/
#: bench_decode.py, docs/dependencies.md): decord indexes the whole file on every open
#: (each chunk of a long video re-reads all of it) and each of its seeks reads tens of MB,
#: 19x the file for one 60 s chunk of a 10-min 720p clip, against PyAV's 0.12x; PyAV was
#: also 2x faster and held 130 MB against decord's 430 MB.
PREFER_DECORD = False

#: Most frame indices requested from decord at once (bounds the decoded batch in memory).
CHUNK_SIZE = 16

#: Decoder threads per video when the caller does not say (:func:`decoder_threads`).
DEFAULT_THREADS = 1

#: A decode that ends more than this before the stream's stated duration (and more than
#: three frame intervals) is reported as stopped early.
EARLY_STOP_S = 1.0


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


def decoder_threads(concurrent: int) -> int:
    """Decoder threads for each of ``concurrent`` videos decoding at once on this
    machine: the cores shared out, at least 1 (one Ray worker per core gets 1; the
    in-process executor, decoding one chunk at a time, gets every core)."""
    return max(1, (os.cpu_count() or 1) // max(1, concurrent))


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
    header = read_header(path)
    used = Backend.PYAV
    fps, duration_s, n_frames = header.fps, header.duration_s, header.n_frames
    if backend is Backend.DECORD or (backend is Backend.AUTO and PREFER_DECORD):
        try:
            reader = DecordReader(path, threads=threads)
        except DecordUnusable as e:
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

    ``skip_unsampled`` (PyAV, ``fps`` sampling): leave the frames no sampling slot takes
    undecoded where nothing references them (B-frames); the frames yielded are the same
    either way (off: for tests that prove it, and for comparison).

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
        skip_unsampled: bool = True,
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
        self.scale, self.frame_size = analysed_size(
            self.info.width, self.info.height, settings.max_side
        )
        self.skip_unsampled = skip_unsampled
        self.warnings: list[str] = []
        self.backend_used = ""  # "decord", "pyav" or "decord+pyav" after iterating
        self.frames_skipped = 0  # after iterating: frames PyAV left undecoded

    def _request(self) -> DecodeRequest:
        return DecodeRequest(
            path=self.path, settings=self.settings, info=self.info, start_s=self.start_s,
            end_s=self.end_s, threads=self.threads, chunk_size=self.chunk_size,
            scale=self.scale, frame_size=self.frame_size, skip_unsampled=self.skip_unsampled,
        )  # fmt: skip

    def __iter__(self) -> Iterator[Frame]:
        progress = Progress()
        self.warnings = progress.warnings  # filled while iterating
        request = self._request()
        use_pyav = self.backend is Backend.PYAV or (
            self.backend is Backend.AUTO
            and (self.info.backend == Backend.PYAV.value or not PREFER_DECORD)
        )
        used = Backend.PYAV.value
        if not use_pyav:
            try:
                self.backend_used = used = Backend.DECORD.value
                yield from decode_decord.frames(
                    request, progress, strict=self.backend is Backend.DECORD
                )
            except (DecordUnusable, DecordFailed) as e:
                if self.backend is Backend.DECORD:
                    raise DecodeError(f"{self.path.name}: decord failed ({e}); use PyAV") from e
                used = Backend.PYAV.value
                if isinstance(e, DecordFailed):
                    at = progress.last_decoded_t or 0.0
                    self.warnings.append(f"decord failed at {at:.1f} s ({e}); continued with PyAV")
                    used = "decord+pyav"
                use_pyav = True
        if use_pyav:
            self.backend_used = used
            yield from decode_pyav.frames(
                request, progress, after_index=progress.last_yielded_index
            )
        self.frames_skipped = progress.skipped
        self._finish(progress)

    def _finish(self, progress: Progress) -> None:
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
