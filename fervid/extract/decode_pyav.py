"""PyAV as the decoder (the default): packet by packet, converting only sampled frames.

PyAV pulls packet by packet and converts only the sampled frames to BGR, so it holds
just the decoder's reference frames. A range starting after 0 seeks first
(:mod:`fervid.extract.pyav_seek`).

Skipping: with ``fps`` sampling, a packet whose frame no sampling slot can take
(:class:`~fervid.extract.sampling.SkipPlanner`, from the packet's timestamp) is sent
with FFmpeg's ``skip_frame = NONREF``: the decoder drops it if no other frame
references it (B-frames in most H.264 files) and decodes it as usual otherwise. The
rows are the same as decoding everything: a dropped frame is still counted in
``frame_index`` (its pts is known from its packet), and the frames that are decoded
are decoded from the same references. Where that accounting could drift from a full
decode (a decode error, a concealed damaged frame, a frame without a timestamp or out
of presentation order), the pass starts over without skipping and continues after the
last frame it yielded, so damaged files report exactly what a full decode reports.

Damage: undecodable packets and frames FFmpeg had to conceal become one warning per
range in :data:`fervid.records.DECODE_ERRORS_WARNING` form, count first.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from fervid.extract import pyav_seek  # index_dts, seek_plan: through the module (tests swap them)
from fervid.extract.decode_base import Damage, DecodeRequest, Progress
from fervid.extract.pyav_container import av_reason, open_pyav, video_stream
from fervid.extract.pyav_seek import (
    BY_INDEX,
    SeekMissed,
    SeekPlan,
    check_closed_gop,
    rank_of_keyframe,
)
from fervid.extract.sampling import TIME_TOL_S, Selector, SkipPlanner, range_bounds
from fervid.records import Frame

#: Consecutive undecodable packets after which the PyAV path gives up on the rest.
MAX_BAD_PACKETS = 50

_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class _SkipUnsafe(Exception):
    """A skipping pass met something its frame accounting cannot vouch for."""


def frames(req: DecodeRequest, progress: Progress, *, after_index: int) -> Iterator[Frame]:
    """Decode the range's frames, convert only the sampled ones; skip indices <= after_index.

    A range starting after 0 seeks by the container's own frame index (MP4/MOV: read
    with the header, so nothing before the range is read; see
    :func:`~fervid.extract.pyav_seek.index_dts`). Where that index is missing or cannot
    be trusted, it seeks by a demux-only index of the packets up to the range
    (:func:`~fervid.extract.pyav_seek.seek_plan`); when even that fails, it decodes
    from the start and discards the frames before the range.
    """
    warnings = progress.warnings
    if req.start_s > 0:
        n_warnings, saved = len(warnings), dataclasses.replace(progress)
        try:  # the container's index: nothing before the range is read
            yield from _passes(req, progress, after_index=after_index, plan=BY_INDEX)
            return
        except SeekMissed:  # raised before the first yield: plan by demuxing instead
            del warnings[n_warnings:]
            progress.__dict__.update(saved.__dict__)
    plan = pyav_seek.seek_plan(req.path, *range_bounds(req.start_s, req.end_s)) if (
        req.start_s > 0
    ) else None  # fmt: skip
    if plan is not None:
        n_warnings = len(warnings)
        try:
            yield from _passes(req, progress, after_index=after_index, plan=plan)
            return
        except SeekMissed:  # raised before the first yield: start over from 0
            del warnings[n_warnings:]
    yield from _passes(req, progress, after_index=after_index, plan=None)


def _passes(
    req: DecodeRequest, progress: Progress, *, after_index: int, plan: SeekPlan | str | None
) -> Iterator[Frame]:
    """One pass from ``plan``, skipping unsampled frames where it can; if the skipping
    pass turns unsafe, a full pass continues after the last frame yielded."""
    skip = req.skip_unsampled and req.settings.fps is not None
    if skip:
        n_warnings = len(progress.warnings)
        try:
            yield from _pass(req, progress, after_index=after_index, plan=plan, skip=True)
            return
        except _SkipUnsafe:
            del progress.warnings[n_warnings:]  # the full pass reports the whole range again
            progress.stop_reason = None
            after_index = max(after_index, progress.last_yielded_index)
    yield from _pass(req, progress, after_index=after_index, plan=plan, skip=False)


def _pass(
    req: DecodeRequest,
    progress: Progress,
    *,
    after_index: int,
    plan: SeekPlan | str | None,
    skip: bool,
) -> Iterator[Frame]:
    """One decoding pass: from the plan's keyframe, from the keyframe the container's
    index gives (``plan=BY_INDEX``), or from the start without a plan."""
    import av

    selector = Selector(req.settings)
    lo, hi = range_bounds(req.start_s, req.end_s)
    by_index = plan == BY_INDEX
    seek_plan = plan if isinstance(plan, SeekPlan) else None
    if seek_plan is not None:
        before = int(np.searchsorted(seek_plan.times, lo))  # frames preceding the range
        if before:
            selector.pass_over(float(seek_plan.times[before - 1]))
    with open_pyav(req.path) as container:
        stream = video_stream(container, req.path)
        ctx = stream.codec_context
        ctx.thread_count = req.threads
        ctx.thread_type = "AUTO"
        start = stream.start_time or 0
        time_base = stream.time_base or Fraction(1, 1)
        # Per decoded frame, in ints: a correctly rounded int / int is the float of
        # the Fraction (pts - start) * time_base, without building a Fraction per frame.
        tb_num, tb_den = time_base.numerator, time_base.denominator
        fps = req.info.fps
        step = 1.0 / fps if fps > 0 else 1.0 / 30
        dts: np.ndarray | None = None
        seek_pts = seek_plan.seek_pts if seek_plan is not None else None
        if by_index:
            dts = pyav_seek.index_dts(stream)
            if dts is None:
                raise SeekMissed("the container has no complete frame index")
            # two frame intervals early, so the keyframe lies before the range's first
            # frame and the sampling state is known when the range starts
            seek_pts = start + max(0, round((lo - 2 * step) / float(time_base)))
        if seek_pts is not None:
            try:
                container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError as e:
                raise SeekMissed(av_reason(e)) from e
        planner = SkipPlanner(req.settings, start_pts=start, time_base=time_base) if skip else None
        mode = "DEFAULT"
        dropped: list[int] = []  # sorted pts sent with NONREF and not (yet) seen decoded
        last_pts = -(2**63)
        first_unchecked = seek_plan is not None
        key_pts: int | None = None  # by index: the keyframe's pts, to be shown first
        checked = False
        index, bad, t_prev, estimated = -1, 0, None, False
        error, past_end = "", False
        damage = Damage()
        try:
            for packet in container.demux(stream):
                if dts is not None and key_pts is None and packet.size:
                    index, key_pts = rank_of_keyframe(dts, packet)
                    index -= 1  # the keyframe's rank = frames decoded (and shown) before
                if planner is not None:
                    want = "DEFAULT"
                    shown = packet.size and packet.pts is not None and not packet.is_discard
                    # unwanted() records every shown packet, keyframes too
                    if shown and planner.unwanted(packet.pts) and not packet.is_keyframe:
                        want = "NONREF"
                        bisect.insort(dropped, packet.pts)
                    if want != mode:
                        ctx.skip_frame = mode = want
                try:
                    decoded = packet.decode()
                    bad = 0
                except av.FFmpegError as e:  # damaged packet: skip it, the decoder resyncs
                    if planner is not None:
                        raise _SkipUnsafe("undecodable packet") from e
                    bad, error = bad + 1, av_reason(e)
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
                for frame in decoded:
                    if planner is not None:  # count the dropped frames shown before it
                        if frame.pts is None or frame.pts <= last_pts or frame.is_corrupt:
                            raise _SkipUnsafe("frame accounting cannot follow this stream")
                        last_pts = frame.pts
                        k = bisect.bisect_left(dropped, frame.pts)
                        if k < len(dropped) and dropped[k] == frame.pts:
                            del dropped[k]  # a reference frame: NONREF decoded it anyway
                        if k:
                            del dropped[:k]
                            progress.skipped += k
                            if seek_plan is None:
                                index += k
                    if frame.pts is not None:
                        t = (frame.pts - start) * tb_num / tb_den
                    else:  # no timestamps in the stream: estimate, and say so once
                        t = 0.0 if t_prev is None else t_prev + step
                        if not estimated:
                            estimated = True
                            progress.warnings.append(
                                "frames carry no timestamps; times estimated from frame rate"
                            )
                    if t < -TIME_TOL_S:
                        continue  # pre-roll a player would not show
                    t_prev = t
                    if seek_plan is not None:
                        index = seek_plan.index_of(frame.pts, index)
                    else:
                        index += 1
                    if by_index and not checked:
                        check_closed_gop(key_pts, frame.pts, t, lo)
                        checked = True
                    progress.last_decoded_t = t
                    if t >= hi:
                        past_end = True
                        break
                    if frame.is_corrupt and t >= lo:  # FFmpeg concealed damage in it
                        damage.add(t, "damaged frame concealed")
                    if t < lo:  # before the range: decoded only to reach it
                        if seek_plan is None:
                            selector.take(index, t)  # the whole video's sampling grid
                        continue
                    if first_unchecked and seek_plan is not None:
                        if frame.pts is None or frame.pts != seek_plan.first_pts:
                            raise SeekMissed(f"range starts at pts {frame.pts}")
                        first_unchecked = False
                    if not selector.take(index, t) or index <= after_index:
                        continue
                    progress.yielded += 1
                    progress.last_yielded_index = index
                    yield Frame(frame_index=index, timestamp_s=t, image=_image(req, frame))
                if past_end:
                    break
        except av.FFmpegError as e:  # demuxing failed: a damaged or cut-off file
            progress.stop_reason = av_reason(e)
        if by_index and not checked:  # the index promised frames the file lacks (cut off)
            raise SeekMissed("no frame decoded after the seek")
        if bad and progress.stop_reason is None:
            progress.stop_reason = f"the last {bad} packets undecodable: {error}"
        if damage.n:
            progress.warnings.append(damage.warning())


def _image(req: DecodeRequest, frame: Any) -> np.ndarray:
    """BGR uint8 ``(H, W, 3)`` of the displayed picture at the analysed size."""
    rotation = req.info.rotation
    if req.scale < 1.0:
        w, h = req.frame_size
        if rotation in (90, 270):
            w, h = h, w  # scale the stored picture, rotate after
        img = frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="AREA")
    else:
        img = frame.to_ndarray(format="bgr24")
    if rotation in _ROTATE:
        img = cv2.rotate(img, _ROTATE[rotation])
    return np.ascontiguousarray(img)
