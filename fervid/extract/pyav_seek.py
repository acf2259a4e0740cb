"""Where PyAV starts decoding a time range, without reading what lies before it.

A range starting after 0 seeks to the keyframe before it by the container's own index
(MP4/MOV sample tables, read with the header: no packet before the range is read, so a
run over all chunks reads the file about once, :func:`index_dts`); the keyframe's
position in that index is the global frame index, which holds for closed GOPs and is
checked on the first decoded frame (:func:`check_closed_gop`). Files without a usable
index (MKV without cues, edit-list pre-roll, open GOPs, a cut-off file) fall back to
indexing the packets up to the range end (demuxing only, no decoding,
:func:`seek_plan`), then seeking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fervid.extract.pyav_container import open_pyav, video_stream
from fervid.extract.sampling import TIME_TOL_S


class SeekMissed(Exception):
    """After a seek, the first frame of the range did not decode where the index said."""


#: ``decode_pyav.frames(plan=BY_INDEX)``: seek by the container's own frame index.
BY_INDEX = "by-index"


def index_dts(stream: Any) -> np.ndarray | None:
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


def rank_of_keyframe(dts: np.ndarray, packet: Any) -> tuple[int, int]:
    """(position in decode order, pts) of the keyframe a seek landed on.

    For a closed GOP, every frame decoded before a keyframe is shown before it, so the
    position is also the keyframe's global ``frame_index`` (:func:`check_closed_gop`
    verifies)."""
    if packet.dts is None or not packet.is_keyframe:
        raise SeekMissed("the seek did not land on a keyframe with a timestamp")
    k = int(np.searchsorted(dts, packet.dts))
    if k >= len(dts) or dts[k] != packet.dts or packet.pts is None:
        raise SeekMissed(f"keyframe dts {packet.dts} is not in the container's index")
    return k, int(packet.pts)


def check_closed_gop(key_pts: int | None, pts: int | None, t: float, lo: float) -> None:
    """The first frame shown after an index seek must be the keyframe itself (no open-GOP
    leading frames shown before it, none dropped), and lie before the range, so that the
    frame ranks from the index hold and the sampling state at the range start is known."""
    if key_pts is None or pts != key_pts:
        raise SeekMissed(f"first frame shown after the seek has pts {pts}, not the keyframe's")
    if t >= lo:
        raise SeekMissed("the seek landed inside the range")


@dataclass(frozen=True)
class SeekPlan:
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


def seek_plan(path: Path, lo: float, hi: float) -> SeekPlan | None:
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
    with open_pyav(path) as container:
        stream = video_stream(container, path)
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
    return SeekPlan(
        pts=pts_arr,
        times=times_arr,
        seek_pts=max(before) if before else None,
        first_pts=first_pts,
    )
