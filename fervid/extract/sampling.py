"""Which frames a video is sampled at, decided apart from decoding.

Frames are chosen by *timestamp*. For ``fps`` sampling, each target time ``k/fps``
takes the first frame at or after it (a frame reached by two targets is taken once), so
29.97 fps and variable-frame-rate video are sampled correctly; ``every_n`` takes frames
0, n, 2n, ... by displayed-frame index. A range ``[start_s, end_s)`` keeps the frames of
the *whole video's* grid that fall in it (:func:`range_bounds`), so consecutive ranges
concatenated give exactly the frames of an unbounded run.

:class:`SkipPlanner` tells the decoder, from a packet's timestamp alone (before it is
decoded), when no sampling slot can take that packet's frame, so a decoder may drop it
if nothing else references it (B-frames).
"""

from __future__ import annotations

import math
from fractions import Fraction

from fervid.settings import SampleSettings

#: Timestamps within this many seconds of a target count as "at" it. decord reports
#: float32 seconds, whose rounding error reaches ~0.25 ms at two hours; 0.5 ms is far
#: below any frame interval (8.3 ms at 120 fps).
TIME_TOL_S = 5e-4


class Selector:
    """Decides, frame by frame in presentation order, which frames are sampled.

    ``fps``: the frame is taken when it is the first at or after a not yet served target
    time ``k / fps``; ``every_n``: frames 0, n, 2n, ... Deterministic in (index, time), so
    a replay over the same frames makes the same choices.
    """

    def __init__(self, settings: SampleSettings) -> None:
        self.fps = settings.fps
        self.every_n = settings.every_n
        self.last_slot = -1

    def take(self, index: int, t: float) -> bool:
        if self.every_n is not None:
            return index % self.every_n == 0
        assert self.fps is not None  # SampleSettings guarantees exactly one mode
        slot = slot_of(t, self.fps)
        if slot > self.last_slot:
            self.last_slot = slot
            return True
        return False

    def pass_over(self, t: float) -> None:
        """Account for the frames up to time ``t`` that precede a range, unseen.

        Same state as offering each of them to :meth:`take` in time order: slots grow
        with time, so only the last one counts (``every_n`` keeps no state).
        """
        if self.fps is not None:
            self.last_slot = max(self.last_slot, slot_of(t, self.fps))


def slot_of(t: float, fps: float) -> int:
    """The sampling slot (target ``k/fps``) a frame shown at ``t`` seconds falls in."""
    return math.floor((t + TIME_TOL_S) * fps)


class SkipPlanner:
    """Frames no sampling slot can take, known from their timestamps in decode order.

    With ``fps`` sampling a frame is taken only when it is the first of its slot in
    presentation order. A packet whose slot already holds an *earlier* frame (smaller
    pts) among the packets seen so far can therefore never be taken, whatever comes
    later, so its frame may be left undecoded when no other frame references it. The
    rule only looks back, needs no read-ahead, and errs on the side of decoding: a
    frame whose slot-mates are yet to come is decoded. ``every_n`` sampling depends on
    the frame's rank, which a packet does not carry, so nothing is skipped there.
    """

    def __init__(self, settings: SampleSettings, *, start_pts: int, time_base: Fraction) -> None:
        self.fps = settings.fps
        self._start = start_pts
        self._num, self._den = time_base.numerator, time_base.denominator
        self._first: dict[int, int] = {}  # slot -> smallest pts seen in it

    def unwanted(self, pts: int) -> bool:
        """Record a displayed frame's packet (pts in stream units); True when no slot
        can take it."""
        if self.fps is None:
            return False
        t = (pts - self._start) * self._num / self._den  # the float the decoding pass computes
        if t < -TIME_TOL_S:  # pre-roll: never counted as a frame, never skipped
            return False
        slot = slot_of(t, self.fps)
        first = self._first.get(slot)
        if first is None or pts < first:
            self._first[slot] = pts
        return first is not None and first < pts


def range_bounds(start_s: float, end_s: float | None) -> tuple[float, float]:
    """``[lo, hi)``: the decoder times of a range's frames.

    Lowered by ``TIME_TOL_S`` like the sampling slots, so a frame on a boundary falls
    on the same side with float32 (decord) and exact (PyAV) times.
    """
    lo = start_s - TIME_TOL_S
    hi = math.inf if end_s is None else end_s - TIME_TOL_S
    return lo, hi


def analysed_size(width: int, height: int, max_side: int) -> tuple[float, tuple[int, int]]:
    """(scale, (w, h)) of the analysed frame: longer side at most ``max_side``."""
    longer = max(width, height)
    if longer <= max_side or longer == 0:
        return 1.0, (width, height)
    scale = max_side / longer
    return scale, (max(1, round(width * scale)), max(1, round(height * scale)))
