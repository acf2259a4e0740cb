"""Smoothing of one face's class probabilities over time, and segmentation into runs.

Both functions work on one face (one track) at a time: rows in time order, timestamps
in seconds from the start of the video (float64, as the decoder reported them). Time
is always measured in seconds, never in rows, so results do not depend on the sampling
rate and a face that vanishes for a while is not smoothed across its absence.

``smooth_probs`` is an exponential moving average with a time constant in seconds;
``segment`` is the one function that turns (smoothed) probabilities into
:class:`~fervid.records.Segment` runs, with hysteresis and a minimum duration.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import numpy as np

from fervid.records import Segment
from fervid.settings import Smoothing, SmoothSettings

#: Slack on the hysteresis comparison: float32 probabilities make ``0.6 - 0.5`` come out
#: as 0.0999999, and a margin of exactly ``hysteresis`` should count as enough.
_HYSTERESIS_EPS = 1e-6


def _check_rows(
    timestamps_s: np.ndarray, probs: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(timestamps_s, dtype=np.float64)
    p = np.asarray(probs)
    if t.ndim != 1:
        raise ValueError(f"timestamps_s must be 1-D (n,), got shape {t.shape}")
    if p.ndim != 2 or p.shape[0] != t.shape[0]:
        raise ValueError(
            f"{name} must be ({t.shape[0]}, C) to match timestamps_s, got shape {p.shape}"
        )
    if t.size > 1 and np.any(np.diff(t) < 0):
        i = int(np.flatnonzero(np.diff(t) < 0)[0])
        raise ValueError(
            f"timestamps_s must be in time order; row {i + 1} ({t[i + 1]} s) comes before "
            f"row {i} ({t[i]} s): pass one face's rows sorted by timestamp"
        )
    return t, p


def smooth_probs(
    timestamps_s: np.ndarray, probs: np.ndarray, settings: SmoothSettings
) -> np.ndarray:
    """Time-aware exponential smoothing of one face's class probabilities.

    ``timestamps_s``: float64 (n,), seconds, non-decreasing (one face's rows in time
    order). ``probs``: float32 (n, C), each row a probability distribution.
    Returns float32 (n, C); rows are convex combinations of input rows, so they still
    sum to 1.

    ``s_0 = p_0`` and ``s_i = s_{i-1} + a_i (p_i - s_{i-1})`` with
    ``a_i = 1 - exp(-(t_i - t_{i-1}) / tau)``, ``tau = settings.seconds``. The weight
    depends on the time elapsed, not on the row count, so the same signal sampled at
    2 fps or 10 fps is smoothed alike, and after a gap much longer than ``tau`` the
    state is effectively reset to the new observation. After a step change the smoothed
    value covers 63 % of the step ``tau`` seconds later. A larger ``tau`` is steadier
    but reacts later. ``Smoothing.NONE`` or ``seconds == 0`` returns a copy of ``probs``.
    """
    t, p = _check_rows(timestamps_s, probs, "probs")
    if settings.method is Smoothing.NONE or settings.seconds == 0 or len(t) == 0:
        return np.array(p, dtype=np.float32, copy=True)
    if settings.method is not Smoothing.EMA:  # a new mode must be handled here, not ignored
        raise ValueError(
            f"smoothing method {settings.method!r}; expected one of {[m.value for m in Smoothing]}"
        )
    alpha = -np.expm1(-np.diff(t) / settings.seconds)  # (n-1,), 1 - exp(-dt/tau), exact for tiny dt
    x = p.astype(np.float64)
    out = np.empty_like(x)
    s = x[0].copy()
    out[0] = s
    for i in range(1, len(t)):  # sequential by nature; n is one face's rows (thousands at most)
        s += alpha[i - 1] * (x[i] - s)
        out[i] = s
    return out.astype(np.float32)


def sampling_interval(timestamps_s: np.ndarray, frame_interval_s: float | None = None) -> float:
    """Seconds one row stands for: ``frame_interval_s`` if given, else the median spacing
    of ``timestamps_s`` (0.0 with fewer than two rows)."""
    if frame_interval_s is not None:
        if not frame_interval_s >= 0:
            raise ValueError(f"frame_interval_s={frame_interval_s}; expected seconds >= 0 or None")
        return float(frame_interval_s)
    t = np.asarray(timestamps_s, dtype=np.float64)
    if t.size < 2:
        return 0.0
    return float(np.median(np.diff(t)))


def segment(
    timestamps_s: np.ndarray,
    smoothed: np.ndarray,
    settings: SmoothSettings,
    *,
    max_gap_s: float,
    frame_interval_s: float | None = None,
) -> list[Segment]:
    """Turn one face's smoothed probabilities into contiguous runs of one emotion.

    ``timestamps_s``: float64 (n,), seconds, non-decreasing. ``smoothed``: float (n, C)
    probabilities (usually :func:`smooth_probs` output). Returns segments in time order
    whose row ranges ``[first_row, end_row)`` tile ``0..n`` exactly once; ``label`` is a
    class index into the C columns.

    Steps:

    1. **Gaps.** Where consecutive rows are more than ``max_gap_s`` apart the face was
       absent; segments never span such a gap (nor are they merged across it).
    2. **Hysteresis.** Each stretch starts with the argmax class ``a``; the label switches
       to the row's argmax ``b`` only when ``p_b - p_a >= settings.hysteresis``. Raising
       it ignores more flicker but delays real changes.
    3. **Minimum duration.** Runs shorter than ``settings.min_segment_s`` are merged,
       shortest first, into the neighbour (within the same stretch) whose emotion the
       short run's rows support most, i.e. the larger mean smoothed probability of that
       neighbour's label over the short run's rows; on a tie, into the longer neighbour,
       then the earlier one. Its rows take the neighbour's label, and equal neighbours
       on both sides join into one segment. A stretch that is shorter than
       ``min_segment_s`` as a whole (a face seen only briefly) stays one short segment.
       Raising it gives fewer, longer segments but hides brief expressions.

    Times: ``start_s`` is the first row's timestamp; ``end_s`` is exclusive: the next
    row's timestamp when the next row belongs to the same stretch, otherwise the last
    row's timestamp plus the sampling interval (``frame_interval_s``, or the median row
    spacing when None; see :func:`sampling_interval`).
    """
    t, p = _check_rows(timestamps_s, smoothed, "smoothed")
    if not max_gap_s > 0:
        raise ValueError(f"max_gap_s={max_gap_s}; expected a positive number of seconds")
    n = len(t)
    if n == 0:
        return []
    interval = sampling_interval(t, frame_interval_s)
    p = p.astype(np.float64)

    # 1. stretches of presence: [start, stop) row ranges split where the face was absent
    breaks = np.flatnonzero(np.diff(t) > max_gap_s) + 1
    bounds = np.concatenate([[0], breaks, [n]]).astype(np.int64)

    # end time of every row (exclusive): the next row's time, or + interval at a stretch end
    row_end = np.empty(n, np.float64)
    row_end[:-1] = t[1:]
    row_end[bounds[1:] - 1] = t[bounds[1:] - 1] + interval

    # 2. hysteresis labels, reset at every stretch
    argmax = p.argmax(axis=1)
    labels = np.empty(n, np.int64)
    stretch_start = np.zeros(n, dtype=bool)
    stretch_start[bounds[:-1]] = True
    current = 0
    for i in range(n):
        b = int(argmax[i])
        if stretch_start[i] or (
            b != current and p[i, b] - p[i, current] >= settings.hysteresis - _HYSTERESIS_EPS
        ):
            current = b
        labels[i] = current

    # 3. runs per stretch, short ones merged into a neighbour
    segments: list[Segment] = []
    for s0, s1 in itertools.pairwise(bounds):
        runs = _merge_short_runs(t, row_end, p, labels, int(s0), int(s1), settings.min_segment_s)
        segments.extend(
            Segment(
                start_s=float(t[a]), end_s=float(row_end[b - 1]), label=lab, first_row=a, end_row=b
            )
            for a, b, lab in runs
        )
    return segments


def _merge_short_runs(
    t: np.ndarray,
    row_end: np.ndarray,
    p: np.ndarray,
    labels: np.ndarray,
    start: int,
    stop: int,
    min_s: float,
) -> list[tuple[int, int, int]]:
    """Runs ``(first_row, end_row, label)`` of rows ``[start, stop)`` after merging runs
    shorter than ``min_s`` seconds, shortest first (a heap over a linked list of runs,
    so a flickering face costs O(runs log runs), not O(runs^2))."""
    change = np.flatnonzero(np.diff(labels[start:stop]) != 0) + 1 + start
    firsts = [start, *change.tolist()]
    ends = [*change.tolist(), stop]
    first = dict(enumerate(firsts))
    end = dict(enumerate(ends))
    label = {k: int(labels[a]) for k, a in first.items()}
    prev = {k: (k - 1 if k > 0 else None) for k in first}
    nxt = {k: (k + 1 if k + 1 < len(firsts) else None) for k in first}

    def dur(k: int) -> float:
        return float(row_end[end[k] - 1] - t[first[k]])

    heap = [(dur(k), first[k], k) for k in first]
    heapq.heapify(heap)
    while heap:
        d, f, k = heapq.heappop(heap)
        if k not in first or first[k] != f or dur(k) != d:
            continue  # stale entry: the run was absorbed or has grown since
        if d >= min_s:
            break  # the shortest live run is long enough, so are all others
        left, right = prev[k], nxt[k]
        if left is None and right is None:
            continue  # alone in its stretch: nothing to merge into
        into = _choose_neighbour(p, first[k], end[k], left, right, label, dur)
        # k's rows join `into`; then k's other neighbour joins too if it has the same label
        other = right if into == left else left
        lo, hi = min(first[k], first[into]), max(end[k], end[into])
        first[into], end[into] = lo, hi
        _unlink(k, prev, nxt)
        for d_ in (first, end, label, prev, nxt):
            del d_[k]
        if other is not None and label[other] == label[into]:
            first[into], end[into] = min(first[into], first[other]), max(end[into], end[other])
            _unlink(other, prev, nxt)
            for d_ in (first, end, label, prev, nxt):
                del d_[other]
        heapq.heappush(heap, (dur(into), first[into], into))
    return sorted((first[k], end[k], label[k]) for k in first)


def _choose_neighbour(
    p: np.ndarray,
    a: int,
    b: int,
    left: int | None,
    right: int | None,
    label: dict[int, int],
    dur: Callable[[int], float],
) -> int:
    if left is None or right is None:
        return right if left is None else left  # type: ignore[return-value]
    support_l = float(p[a:b, label[left]].mean())
    support_r = float(p[a:b, label[right]].mean())
    if support_l != support_r:
        return left if support_l > support_r else right
    return right if dur(right) > dur(left) else left


def _unlink(k: int, prev: dict[int, int | None], nxt: dict[int, int | None]) -> None:
    lp, rn = prev[k], nxt[k]
    if lp is not None:
        nxt[lp] = rn
    if rn is not None:
        prev[rn] = lp


def segment_index_per_row(segments: list[Segment], n: int) -> np.ndarray:
    """int32 (n,): for each of a face's ``n`` rows, the index of its segment in
    ``segments`` (the frames table's ``segment_index`` column). Raises ValueError when the
    segments' row ranges do not tile ``0..n`` exactly once, in order."""
    out = np.empty(n, np.int32)
    expected_first = 0
    for i, s in enumerate(segments):
        if s.first_row != expected_first or s.end_row <= s.first_row:
            raise ValueError(
                f"segment {i} covers rows [{s.first_row}, {s.end_row}); expected it to start at "
                f"row {expected_first} and be non-empty (segments tile the rows in order)"
            )
        out[s.first_row : s.end_row] = i
        expected_first = s.end_row
    if expected_first != n:
        raise ValueError(
            f"segments cover rows [0, {expected_first}); expected [0, {n}): "
            "every row needs a segment"
        )
    return out
