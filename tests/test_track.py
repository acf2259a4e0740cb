"""Face ids across sampled frames: synthetic box sequences and one real video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fervid.errors import ConfigError
from fervid.extract.detect import FaceDetector
from fervid.records import Detections
from fervid.sample_data import fetch_samples
from fervid.settings import DetectSettings, TrackSettings
from fervid.timeline.track import FaceTracker, assign_face_ids, iou_matrix

DT = 0.5  # seconds between sampled frames (2 fps)
SETTINGS = TrackSettings(min_iou=0.3, max_center_dist=0.5, max_gap_s=2.0)


@pytest.fixture(scope="module")
def sample_dir() -> Path:
    # Local stand-in until tests/conftest.py provides a shared one.
    folder = Path(__file__).resolve().parents[1] / "sample_videos"
    fetch_samples(folder)
    return folder


def box(cx: float, cy: float, side: float = 100.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def run(frames: list[list[list[float]]], settings: TrackSettings = SETTINGS) -> list[list[int]]:
    """Feed one box list per frame, DT apart; returns the ids per frame."""
    tracker = FaceTracker(settings=settings)
    out = []
    for i, boxes in enumerate(frames):
        ids = tracker.update(i * DT, np.asarray(boxes, np.float32).reshape(-1, 4))
        assert ids.dtype == np.int32 and ids.shape == (len(boxes),)
        assert len(set(ids.tolist())) == len(ids), "ids are distinct within a frame"
        out.append(ids.tolist())
    return out


@pytest.mark.parametrize(
    ("boxes_a", "boxes_b", "expected"),
    [
        ([[0, 0, 10, 10]], [[0, 0, 10, 10]], [[1.0]]),
        ([[0, 0, 10, 10]], [[5, 0, 15, 10]], [[50 / 150]]),
        ([[0, 0, 10, 10]], [[10, 0, 20, 10], [20, 20, 30, 30]], [[0.0, 0.0]]),
        ([[0, 0, 10, 10], [0, 0, 20, 20]], [[0, 0, 10, 10]], [[1.0], [0.25]]),
        ([[0, 0, 0, 0]], [[0, 0, 0, 0]], [[0.0]]),  # degenerate: no division by zero
    ],
)
def test_iou_matrix(boxes_a: list, boxes_b: list, expected: list) -> None:
    np.testing.assert_allclose(iou_matrix(np.array(boxes_a), np.array(boxes_b)), expected)


def test_slow_moving_face_keeps_id() -> None:
    frames = [[box(200 + 8 * i, 150 + 3 * i)] for i in range(30)]
    assert run(frames) == [[0]] * 30


@pytest.mark.parametrize(
    ("step_px", "same_face"),
    [
        (20, True),  # IoU 0.67: linked by overlap
        (60, True),  # IoU 0.25 < 0.3, centres 60 px <= 0.5 * 141 px diagonal: linked by distance
        (80, False),  # IoU 0.11, centres 80 px > 70.7 px: a different face
    ],
)
def test_jump_between_frames(step_px: float, same_face: bool) -> None:
    ids = run([[box(200, 200)], [box(200 + step_px, 200)]])
    assert ids == [[0], [0 if same_face else 1]]


def test_two_faces_side_by_side_keep_ids_whatever_the_row_order() -> None:
    frames = []
    for i in range(20):
        a, b = box(150 + (i % 3), 200), box(400 - (i % 2), 210)
        frames.append([a, b] if i % 2 == 0 or i == 0 else [b, a])
    ids = run(frames)
    assert ids[0] == [0, 1]
    for i, frame_ids in enumerate(ids):
        expected = [0, 1] if i % 2 == 0 else [1, 0]
        assert frame_ids == expected, f"frame {i}"


def test_faces_crossing_do_not_swap() -> None:
    """Two overlapping faces pass each other (one a little above the other). From frame
    5 to 6 each face's new box overlaps the *other* face's previous box by IoU 0.33,
    above ``min_iou``, yet its own previous box by 0.43: best-first matching keeps the
    ids, where taking the first track above the threshold would swap them."""
    frames = []
    for i in range(11):
        a = box(100 + 40 * i, 200)  # moves right
        b = box(540 - 40 * i, 250)  # moves left, 50 px lower
        # a is face 0; after the first frame b's row comes first, so a naive matcher
        # meets the pair (track a, box b) before (track b, box b).
        frames.append([a, b] if i == 0 else [b, a])
    iou = iou_matrix(np.array(frames[5]), np.array(frames[6]))
    np.testing.assert_allclose(iou, [[0.43, 1 / 3], [1 / 3, 0.43]], atol=0.01)
    ids = run(frames)
    assert ids == [[0, 1]] + [[1, 0]] * 10


@pytest.mark.parametrize(
    ("absent_s", "expected_id"),
    [
        (1.0, 0),  # back within max_gap_s: same face
        (2.0, 0),  # exactly max_gap_s: still the same face
        (2.5, 1),  # longer: a new face
        (10.0, 1),
    ],
)
def test_absence_and_return(absent_s: float, expected_id: int) -> None:
    tracker = FaceTracker(settings=SETTINGS)
    b = np.array([box(300, 200)], np.float32)
    assert tracker.update(0.0, b).tolist() == [0]
    assert tracker.update(0.5, b).tolist() == [0]
    # frames in between have no face (an empty update) or are not sampled at all
    assert tracker.update(1.0, np.zeros((0, 4), np.float32)).shape == (0,)
    assert tracker.update(0.5 + absent_s, b).tolist() == [expected_id]


def test_new_faces_numbered_in_order_of_appearance() -> None:
    frames = [[box(100, 100)], [box(100, 100), box(400, 100)], [], [box(400, 100), box(700, 300)]]
    assert run(frames) == [[0], [0, 1], [], [1, 2]]


def test_empty_frames_only() -> None:
    assert run([[], [], []]) == [[], [], []]


def test_duplicate_boxes_in_one_frame_get_distinct_ids() -> None:
    ids = run([[box(200, 200)], [box(200, 200), box(205, 200)]])
    assert ids == [[0], [0, 1]]


def test_time_must_not_go_back() -> None:
    tracker = FaceTracker(settings=SETTINGS)
    tracker.update(1.0, np.array([box(10, 10)]))
    with pytest.raises(ValueError, match="time order"):
        tracker.update(0.5, np.array([box(10, 10)]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_iou": 1.5}, "min_iou"),
        ({"max_center_dist": -1}, "max_center_dist"),
        ({"max_gap_s": -1}, "--max-gap-seconds"),
    ],
)
def test_bad_settings(kwargs: dict, match: str) -> None:
    # refused when the settings are built, before any video (tests/test_settings.py)
    with pytest.raises(ConfigError, match=match):
        TrackSettings(**kwargs)


def rows_of(frames: list[list[list[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts, fi, bx = [], [], []
    for i, boxes in enumerate(frames):
        for b in boxes:
            ts.append(i * DT)
            fi.append(i * 15)
            bx.append(b)
    return np.array(ts), np.array(fi), np.array(bx, np.float32).reshape(-1, 4)


def test_assign_face_ids_matches_tracker_and_ignores_row_order() -> None:
    frames = [[box(100, 100), box(400, 100)] for _ in range(5)] + [[box(400, 100)]] * 3
    ts, fi, bx = rows_of(frames)
    expected = np.concatenate([np.array(f) for f in run(frames)])
    ids = assign_face_ids(ts, fi, bx, SETTINGS, by_presence=False)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, expected)
    perm = np.random.default_rng(3).permutation(len(ts))
    shuffled = assign_face_ids(ts[perm], fi[perm], bx[perm], SETTINGS, by_presence=False)
    # Rows within one frame may swap places, so compare each row's id through its box.
    assert dict(zip(map(tuple, bx[perm]), shuffled, strict=True)) == dict(
        zip(map(tuple, bx), ids, strict=True)
    )


@pytest.mark.parametrize(("by_presence", "expected_first"), [(True, 1), (False, 0)])
def test_by_presence_puts_longest_present_face_first(
    by_presence: bool, expected_first: int
) -> None:
    # A visitor appears first for 2 frames; the patient is there for all 10.
    frames = [[box(600, 100), box(100, 100)]] * 2 + [[box(100, 100)]] * 8
    ts, fi, bx = rows_of(frames)
    ids = assign_face_ids(ts, fi, bx, SETTINGS, by_presence=by_presence)
    visitor = ids[0]
    assert visitor == expected_first
    assert set(ids.tolist()) == {0, 1}
    assert np.sum(ids == (1 - visitor)) == 10


def test_assign_face_ids_empty_and_bad_shapes() -> None:
    ids = assign_face_ids(np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 4)), SETTINGS)
    assert ids.shape == (0,) and ids.dtype == np.int32
    with pytest.raises(ValueError, match="one n"):
        assign_face_ids(np.zeros(2), np.zeros(3, np.int64), np.zeros((2, 4)), SETTINGS)


def test_real_video_one_person_one_id(sample_dir: Path) -> None:
    """single_face.mp4 at ~5 fps: every detected face is the same person, id 0."""
    detector = FaceDetector(settings=DetectSettings())
    cap = cv2.VideoCapture(str(sample_dir / "single_face.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    ts, fi, boxes = [], [], []
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % 6 == 0:
            dets: Detections = detector(frame)
            for b in dets.boxes:
                ts.append(index / fps)
                fi.append(index)
                boxes.append(b)
        index += 1
    cap.release()
    assert len(boxes) >= 10
    ids = assign_face_ids(np.array(ts), np.array(fi), np.array(boxes), SETTINGS)
    assert ids.tolist() == [0] * len(boxes)
