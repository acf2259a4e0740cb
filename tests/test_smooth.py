"""Smoothing and segmentation of one face's probabilities (fervid.timeline.smooth)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fervid.settings import Smoothing, SmoothSettings
from fervid.timeline.smooth import sampling_interval, segment, segment_index_per_row, smooth_probs

EMA = SmoothSettings(method=Smoothing.EMA, seconds=1.5, min_segment_s=0.0, hysteresis=0.0)


def two_class(p1: np.ndarray) -> np.ndarray:
    """(n, 2) float32 rows [1 - p1, p1]."""
    p1 = np.asarray(p1, np.float64)
    return np.stack([1 - p1, p1], axis=1).astype(np.float32)


def one_hot(labels: list[int], c: int = 3, p: float = 0.8) -> np.ndarray:
    """(n, c) rows with ``p`` on the label and the rest spread evenly."""
    out = np.full((len(labels), c), (1 - p) / (c - 1), np.float32)
    out[np.arange(len(labels)), labels] = p
    return out


def runs(segs: list) -> list[tuple[int, int, int]]:
    return [(s.label, s.first_row, s.end_row) for s in segs]


# --------------------------------------------------------------------------- smooth_probs
@pytest.mark.parametrize("seconds", [0.1, 1.5, 30.0])
def test_constant_probabilities_stay_constant(seconds: float) -> None:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.05, 3.0, size=50))  # irregular spacing, some long gaps
    probs = np.tile(np.array([[0.1, 0.2, 0.7]], np.float32), (50, 1))
    out = smooth_probs(t, probs, SmoothSettings(seconds=seconds))
    np.testing.assert_allclose(out, probs, atol=1e-6)


def test_step_reaches_63_percent_after_tau() -> None:
    # The sample at t_i stands for (t_{i-1}, t_i], so a step first seen at 5.0 s (last old
    # sample 4.9 s) is smoothed as a step at 4.9 s: s(t) = 1 - exp(-(t - 4.9) / tau).
    tau, dt = 1.5, 0.1
    t = np.round(np.arange(0, 100) * dt, 10)
    p1 = (t >= 5.0).astype(np.float64)
    out = smooth_probs(t, two_class(p1), SmoothSettings(seconds=tau))
    after = t >= 5.0
    expected = 1 - np.exp(-(t[after] - 4.9) / tau)
    np.testing.assert_allclose(out[after, 1], expected, atol=1e-5)
    i = int(np.flatnonzero(np.isclose(t, 4.9 + tau))[0])
    assert out[i, 1] == pytest.approx(1 - math.exp(-1), abs=1e-5)  # 63.2 % after tau
    np.testing.assert_allclose(out[~after, 1], 0.0, atol=1e-7)  # nothing leaks backwards


def test_sampling_rate_invariance() -> None:
    """The same slowly varying signal at 2 fps and 10 fps is smoothed alike."""
    settings = SmoothSettings(seconds=1.5)

    def signal(t: np.ndarray) -> np.ndarray:
        return two_class(0.5 + 0.4 * np.sin(2 * np.pi * t / 20))

    t2 = np.arange(120) * 0.5
    t10 = np.arange(600) * 0.1
    s2 = smooth_probs(t2, signal(t2), settings)
    s10 = smooth_probs(t10, signal(t10), settings)
    common = np.isin(np.round(t10 * 10).astype(int), np.round(t2 * 10).astype(int))
    assert common.sum() == len(t2)
    settled = slice(10, None)  # the first seconds depend on the initial value
    diff = np.abs(s2[settled, 1] - s10[common][settled, 1]).max()
    assert diff < 0.025
    # a per-row EMA (alpha fixed for 10 fps) applied at 2 fps is far off: the test discriminates
    a = 1 - math.exp(-0.1 / 1.5)
    naive = [float(signal(t2)[0, 1])]
    for v in signal(t2)[1:, 1]:
        naive.append(naive[-1] + a * (float(v) - naive[-1]))
    assert np.abs(np.array(naive)[settled] - s10[common][settled, 1]).max() > 0.1


@pytest.mark.parametrize(
    ("gap_s", "reset"),
    [(60.0, True), (0.5, False)],
)
def test_long_gap_resets(gap_s: float, reset: bool) -> None:
    t = np.concatenate([np.arange(10) * 0.5, 4.5 + gap_s + np.arange(3) * 0.5])
    p1 = np.r_[np.zeros(10), np.ones(3)]
    out = smooth_probs(t, two_class(p1), SmoothSettings(seconds=1.5))
    first_after = out[10, 1]
    if reset:
        assert first_after == pytest.approx(1.0, abs=1e-6)
    else:
        assert first_after == pytest.approx(1 - math.exp(-gap_s / 1.5), abs=1e-6)


def test_rows_sum_to_one_and_stay_probabilities() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(7), size=500).astype(np.float32)
    t = np.cumsum(rng.uniform(0.0, 2.0, size=500))  # includes repeated-ish tiny steps
    out = smooth_probs(t, probs, SmoothSettings(seconds=1.5))
    assert out.dtype == np.float32 and out.shape == probs.shape
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize(
    "settings",
    [SmoothSettings(method=Smoothing.NONE, seconds=1.5), SmoothSettings(seconds=0.0)],
)
def test_no_smoothing_passes_through(settings: SmoothSettings) -> None:
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(3), size=20).astype(np.float32)
    out = smooth_probs(np.arange(20) * 0.5, probs, settings)
    np.testing.assert_array_equal(out, probs)
    out[0, 0] = 99.0  # a copy: the caller's array is never changed
    assert probs[0, 0] != 99.0


def test_smoothing_does_not_change_its_input() -> None:
    probs = two_class(np.r_[np.zeros(5), np.ones(5)])
    before = probs.copy()
    smooth_probs(np.arange(10) * 0.5, probs, EMA)
    np.testing.assert_array_equal(probs, before)


@pytest.mark.parametrize(
    ("t", "probs", "match"),
    [
        (np.array([0.0, 1.0, 0.5]), np.full((3, 2), 0.5, np.float32), "time order"),
        (np.array([0.0, 1.0]), np.full((3, 2), 0.5, np.float32), r"must be \(2, C\)"),
        (np.zeros((2, 1)), np.full((2, 2), 0.5, np.float32), "1-D"),
    ],
)
def test_smooth_refuses_bad_input(t: np.ndarray, probs: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        smooth_probs(t, probs, EMA)


def test_empty_input_smooths_to_empty() -> None:
    out = smooth_probs(np.zeros(0), np.zeros((0, 7), np.float32), EMA)
    assert out.shape == (0, 7) and out.dtype == np.float32


# --------------------------------------------------------------------------- segment
def seg_settings(*, hysteresis: float = 0.0, min_segment_s: float = 0.0) -> SmoothSettings:
    return SmoothSettings(seconds=1.5, min_segment_s=min_segment_s, hysteresis=hysteresis)


def test_empty_input_gives_no_segments() -> None:
    assert segment(np.zeros(0), np.zeros((0, 3)), seg_settings(), max_gap_s=2.0) == []


def test_one_noisy_frame_does_not_split() -> None:
    labels = [0] * 10 + [1] + [0] * 9
    t = np.arange(20) * 0.5
    probs = one_hot(labels, p=0.9)  # the odd frame is confidently "1"
    segs = segment(t, probs, seg_settings(hysteresis=0.1, min_segment_s=1.0), max_gap_s=2.0)
    assert runs(segs) == [(0, 0, 20)]
    # the usual pipeline (smooth, then segment) agrees
    smoothed = smooth_probs(t, probs, SmoothSettings(seconds=1.5))
    segs = segment(t, smoothed, SmoothSettings(seconds=1.5), max_gap_s=2.0)
    assert runs(segs) == [(0, 0, 20)]


@pytest.mark.parametrize(
    ("hysteresis", "expected"),
    [
        # p1 per row:  0.2  0.54  0.56  0.7  0.52  0.3
        (0.0, [(0, 0, 1), (1, 1, 5), (0, 5, 6)]),  # follows the argmax
        (0.1, [(0, 0, 2), (1, 2, 5), (0, 5, 6)]),  # needs p1 - p0 >= 0.1: p1 >= 0.55
        (0.4, [(0, 0, 3), (1, 3, 5), (0, 5, 6)]),  # exactly 0.4 at 0.7 and at 0.3: switches
        (0.5, [(0, 0, 6)]),  # never enough
    ],
)
def test_hysteresis(hysteresis: float, expected: list[tuple[int, int, int]]) -> None:
    probs = two_class(np.array([0.2, 0.54, 0.56, 0.7, 0.52, 0.3]))
    segs = segment(np.arange(6) * 0.5, probs, seg_settings(hysteresis=hysteresis), max_gap_s=2.0)
    assert runs(segs) == expected


def _support(labels: list[int], overrides: dict[int, list[float]]) -> np.ndarray:
    probs = one_hot(labels)
    for row, p in overrides.items():
        probs[row] = p
    return probs


@pytest.mark.parametrize(
    ("labels", "overrides", "min_s", "expected"),
    [
        # a short run between two equal neighbours: all three join
        ([0, 0, 0, 0, 1, 0, 0, 0], {}, 2.5, [(0, 0, 8)]),
        # a 2 s run of 1 between 0 and 2; its rows support 2 more than 0: merged right
        (
            [0, 0, 0, 0, 1, 1, 2, 2, 2, 2],
            {4: [0.2, 0.5, 0.3], 5: [0.2, 0.5, 0.3]},
            2.5,
            [(0, 0, 4), (2, 4, 10)],
        ),
        # ... and supporting 0 more: merged left
        (
            [0, 0, 0, 0, 1, 1, 2, 2, 2, 2],
            {4: [0.3, 0.5, 0.2], 5: [0.3, 0.5, 0.2]},
            2.5,
            [(0, 0, 6), (2, 6, 10)],
        ),
        # equal support: into the longer neighbour (2 is 5 s, 0 is 3 s)
        ([0, 0, 0, 1, 2, 2, 2, 2, 2], {}, 2.5, [(0, 0, 3), (2, 3, 9)]),
        # a short run at the start has one neighbour
        ([1, 0, 0, 0, 0], {}, 2.5, [(0, 0, 5)]),
        # min_segment_s = 0 keeps every run
        ([0, 0, 1, 0, 0], {}, 0.0, [(0, 0, 2), (1, 2, 3), (0, 3, 5)]),
        # runs exactly min_segment_s long are kept (3 rows at 1 s = 3 s)
        ([0, 0, 0, 1, 1, 1], {}, 3.0, [(0, 0, 3), (1, 3, 6)]),
        # a whole face seen shorter than min_segment_s stays one short segment
        ([2, 2], {}, 5.0, [(2, 0, 2)]),
    ],
)
def test_min_duration_merging(
    labels: list[int], overrides: dict[int, list[float]], min_s: float, expected: list
) -> None:
    probs = _support(labels, overrides)
    t = np.arange(len(labels), dtype=np.float64)  # 1 row per second
    segs = segment(t, probs, seg_settings(min_segment_s=min_s), max_gap_s=2.0, frame_interval_s=1.0)
    assert runs(segs) == expected


@pytest.mark.parametrize(
    ("gap_s", "expected"),
    [
        (1.9, [(0, 0, 8)]),  # within max_gap_s: one segment
        (2.0, [(0, 0, 8)]),  # exactly max_gap_s is not "longer than"
        (2.1, [(0, 0, 4), (0, 4, 8)]),  # longer: the face was absent, two segments
    ],
)
def test_gap_splits(gap_s: float, expected: list) -> None:
    t = np.r_[np.arange(4) * 0.5, 1.5 + gap_s + np.arange(4) * 0.5]
    segs = segment(t, one_hot([0] * 8), seg_settings(), max_gap_s=2.0, frame_interval_s=0.5)
    assert runs(segs) == expected
    if len(segs) == 2:
        assert segs[0].end_s == pytest.approx(2.0)  # last row 1.5 s + interval, not the gap
        assert segs[1].start_s == pytest.approx(1.5 + gap_s)


def test_short_run_is_not_merged_across_a_gap() -> None:
    t = np.r_[np.arange(6) * 0.5, 20.0]  # one lone row of another emotion after a gap
    segs = segment(
        t,
        one_hot([0] * 6 + [1]),
        seg_settings(min_segment_s=2.0),
        max_gap_s=2.0,
        frame_interval_s=0.5,
    )
    assert runs(segs) == [(0, 0, 6), (1, 6, 7)]
    assert segs[1].duration_s == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("frame_interval_s", "end_s"),
    [(0.5, 5.0), (None, 5.0), (1.0, 5.5)],
)
def test_end_is_exclusive(frame_interval_s: float | None, end_s: float) -> None:
    t = np.arange(10) * 0.5  # 0.0 .. 4.5 s
    probs = one_hot([0] * 6 + [1] * 4)
    segs = segment(t, probs, seg_settings(), max_gap_s=2.0, frame_interval_s=frame_interval_s)
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 3.0), (3.0, end_s)]
    assert segs[0].duration_s == pytest.approx(3.0)  # 6 rows x 0.5 s


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_segments_tile_the_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    t = np.cumsum(rng.choice([0.5, 0.5, 0.5, 0.5, 3.0, 10.0], size=n))  # some gaps
    probs = rng.dirichlet(np.ones(4) * 0.5, size=n).astype(np.float32)
    settings = SmoothSettings(seconds=1.0, min_segment_s=1.5, hysteresis=0.1)
    smoothed = smooth_probs(t, probs, settings)
    segs = segment(t, smoothed, settings, max_gap_s=2.0)
    assert segs[0].first_row == 0 and segs[-1].end_row == n
    for a, b in itertools.pairwise(segs):
        assert a.end_row == b.first_row  # contiguous, no overlap
        if t[b.first_row] - t[a.end_row - 1] <= 2.0:  # same stretch of presence
            assert a.end_s == b.start_s
            assert a.label != b.label  # equal neighbours would have been one segment
            assert min(a.duration_s, b.duration_s) >= 1.5
        else:
            assert a.end_s < b.start_s  # the gap is not covered
    idx = segment_index_per_row(segs, n)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(idx), [s.end_row - s.first_row for s in segs])


def test_flickering_face_is_fast_enough_to_segment() -> None:
    # 2 h at 2 fps of alternating labels: the merge must not be quadratic
    n = 14_400
    probs = one_hot([i % 2 for i in range(n)], c=2, p=0.9)
    segs = segment(np.arange(n) * 0.5, probs, seg_settings(min_segment_s=1.0), max_gap_s=2.0)
    assert sum(s.end_row - s.first_row for s in segs) == n
    assert all(s.duration_s >= 1.0 for s in segs)


@pytest.mark.parametrize(
    ("ranges", "n", "match"),
    [
        ([(0, 3), (4, 6)], 6, "start at row 3"),  # a hole
        ([(0, 3), (2, 6)], 6, "start at row 3"),  # an overlap
        ([(0, 3)], 6, r"expected \[0, 6\)"),  # rows left over
    ],
)
def test_segment_index_refuses_bad_tiling(ranges: list, n: int, match: str) -> None:
    from fervid.records import Segment

    segs = [Segment(start_s=a, end_s=b, label=0, first_row=a, end_row=b) for a, b in ranges]
    with pytest.raises(ValueError, match=match):
        segment_index_per_row(segs, n)


@pytest.mark.parametrize(
    ("t", "given", "expected"),
    [
        (np.array([0.0, 0.5, 1.0, 5.0]), None, 0.5),
        (np.array([0.0]), None, 0.0),
        (np.zeros(3), 0.25, 0.25),
    ],
)
def test_sampling_interval(t: np.ndarray, given: float | None, expected: float) -> None:
    assert sampling_interval(t, given) == expected
