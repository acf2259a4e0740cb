"""decord as the decoder (``backend="decord"``): indexed random access, in chunks.

decord indexes the frames (exact count and per-frame timestamps) and decodes the
sampled ones with ``get_batch``, in chunks of at most ``chunk_size`` frames that cover
whole keyframe intervals; after each chunk the reader is reset. decord 0.6's CPU reader
otherwise keeps decoding ahead of a slow consumer on its own thread, up to ~500 frames
(dmlc/decord#197, #208: measured 1.3-1.8 GB on a 40 s 720p clip), and a reset at a
keyframe boundary costs nothing because decord seeks there anyway.

It cannot serve every file: :class:`DecordUnusable` when it cannot open one (truncated
recordings: decord indexes every packet on open and gives up at the first missing one),
when its timestamps cannot be trusted (MP4 edit lists: decord lists the pre-roll frames
players skip, with negative times, but never decodes them, so its images and timestamps
are offset), and, under ``auto``, when a keyframe interval holds more than
``chunk_size`` sampled frames (long GOPs: the reset trick would cost a re-decode per
chunk); :class:`DecordFailed` when it fails mid-stream. PyAV then takes over.
Damage: decord conceals it and stays silent, so FFmpeg's error messages are counted.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from fervid.extract.decode_base import Damage, DecodeRequest, Progress, first_line
from fervid.extract.sampling import TIME_TOL_S, Selector, range_bounds
from fervid.records import Frame


class DecordUnusable(Exception):
    """decord cannot open a file, or its frame index cannot be trusted."""


class DecordFailed(Exception):
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


class DecordReader:
    """A decord ``VideoReader`` with its timestamps checked."""

    def __init__(self, path: Path, *, threads: int, size: tuple[int, int] | None = None) -> None:
        try:
            import decord
        except ImportError:  # an optional extra: auto falls back to PyAV, decord says so
            raise DecordUnusable(
                "decord is not installed; fix: pip install 'fervid[decord]'"
            ) from None

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
            raise DecordUnusable(first_line(e)) from e
        if n == 0:
            raise DecordUnusable("no frames in its index")
        self.times = np.asarray(ts, np.float64)  # (n, 2) start, end seconds
        if self.times[0, 0] < -TIME_TOL_S:
            raise DecordUnusable("pre-roll frames with negative timestamps (MP4 edit list)")
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
            raise DecordFailed(first_line(e)) from e

    def stop_read_ahead(self) -> None:
        import decord

        try:
            self.vr.seek(0)  # clears decord's decoder thread and its queue of decoded frames
        except (RuntimeError, decord.DECORDError) as e:
            raise DecordFailed(first_line(e)) from e

    def close(self) -> None:

        with contextlib.suppress(DecordFailed):
            self.stop_read_ahead()  # a reader that already failed has nothing left to stop
        del self.vr


def frames(req: DecodeRequest, progress: Progress, *, strict: bool) -> Iterator[Frame]:
    """The range's sampled frames, decoded by decord in keyframe-aligned chunks.

    ``strict`` (``backend="decord"`` forced): a keyframe interval with more than
    ``chunk_size`` sampled frames is split into several requests; otherwise
    (``auto``) that raises :class:`DecordUnusable` before anything is yielded, so PyAV
    reads the video instead. Raises :class:`DecordFailed` when decord fails mid-stream.
    """
    reader = DecordReader(req.path, threads=req.threads, size=req.resize_to)
    try:
        selector = Selector(req.settings)
        starts = reader.times[:, 0]
        # The whole video's grid, then the range: chunks of a video agree at their
        # boundaries, and all of them choose the backend an unbounded run would.
        picked = [i for i in range(reader.n_frames) if selector.take(i, float(starts[i]))]
        chunks = chunks_by_keyframe(picked, reader.keyframe_of, req.chunk_size)
        if not strict and any(not whole for _, whole in chunks):
            raise DecordUnusable(
                f"a keyframe interval holds more than {req.chunk_size} sampled frames, "
                "where decord would decode far ahead of use"
            )
        lo, hi = range_bounds(req.start_s, req.end_s)
        if req.ranged:
            picked = [i for i in picked if lo <= starts[i] < hi]
            chunks = chunks_by_keyframe(picked, reader.keyframe_of, req.chunk_size)
        damage = Damage()
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
            progress.warnings.append(damage.warning())
    finally:
        reader.close()


def chunks_by_keyframe(
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
