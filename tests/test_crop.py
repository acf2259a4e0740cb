"""Face crops: square-box geometry, edge padding, box vs aligned dispatch, model-ready output.

The alignment itself (template, transform) is tested in ``test_align.py``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fervid.errors import ConfigError
from fervid.extract.align import align_faces
from fervid.extract.crop import crop_faces, cut_square, face_squares
from fervid.model.spec import ModelSpec, resize_faces
from fervid.records import Detections
from fervid.settings import CropSettings

H, W = 100, 200
GRAY = ModelSpec(input_size=48, channels="gray")
RGB = ModelSpec(input_size=64, channels="rgb")


def coded_image(h: int = H, w: int = W) -> np.ndarray:
    """BGR uint8 image whose pixels encode their position (x in B, y in G, mix in R)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x % 256, y % 256, (x * 7 + y * 13) % 256], axis=2).astype(np.uint8)


def dets_of(boxes: list[tuple[float, float, float, float]]) -> Detections:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(boxes=b, scores=np.ones(len(b), np.float32))


# box (xyxy) in a 200x100 frame, margin, expected square (xyxy, end-exclusive)
SQUARES = [
    ((90, 40, 110, 60), 0.1, (88, 38, 112, 62)),  # middle
    ((90, 40, 110, 60), 0.0, (90, 40, 110, 60)),  # no margin: the box itself
    ((90, 30, 110, 70), 0.1, (76, 26, 124, 74)),  # tall box: side from the longer side
    ((0, 40, 20, 60), 0.1, (-2, 38, 22, 62)),  # left border: runs past, not shifted
    ((180, 40, 200, 60), 0.1, (178, 38, 202, 62)),  # right border
    ((90, 0, 110, 20), 0.1, (88, -2, 112, 22)),  # top border
    ((90, 80, 110, 100), 0.1, (88, 78, 112, 102)),  # bottom border
    ((0, 0, 20, 20), 0.5, (-10, -10, 30, 30)),  # top-left corner, wide margin
    ((150, 0, 200, 100), 0.25, (100, -25, 250, 125)),  # taller than the frame
]


@pytest.mark.parametrize(("box", "margin", "expected"), SQUARES)
def test_face_squares(box: tuple, margin: float, expected: tuple) -> None:
    sq = face_squares(np.array([box], np.float32), (H, W, 3), CropSettings(margin=margin))
    assert sq.dtype == np.int64
    assert sq.tolist() == [list(expected)]


def test_face_squares_are_square_and_centred() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, [W, H], (200, 2))
    wh = rng.uniform(2, 80, (200, 2))
    boxes = np.column_stack([xy, xy + wh])
    sq = face_squares(boxes, (H, W), CropSettings(margin=0.2))
    side = sq[:, 2] - sq[:, 0]
    np.testing.assert_array_equal(side, sq[:, 3] - sq[:, 1])
    assert np.all(np.abs(side - wh.max(axis=1) * 1.4) <= 0.5 + 1e-9)
    # Centred on the box (clamped into the frame), within rounding.
    centre = np.clip((boxes[:, :2] + boxes[:, 2:]) / 2, 0, [W - 1, H - 1])
    assert np.all(np.abs((sq[:, :2] + sq[:, 2:]) / 2 - centre) <= 0.5 + 1e-9)


def test_face_squares_empty_and_bad_shape() -> None:
    assert face_squares(np.zeros((0, 4)), (H, W), CropSettings()).shape == (0, 4)
    with pytest.raises(ValueError, match=r"\(m, 4\)"):
        face_squares(np.zeros((3,)), (H, W), CropSettings())


@pytest.mark.parametrize("square", [expected for _, _, expected in SQUARES])
def test_cut_square_replicates_edges(square: tuple) -> None:
    image = coded_image()
    patch = cut_square(image, np.array(square))
    x0, y0, x1, y1 = square
    assert patch.shape == (y1 - y0, x1 - x0, 3)
    # Replicate padding == indexing with coordinates clamped into the frame.
    rows = np.clip(np.arange(y0, y1), 0, H - 1)
    cols = np.clip(np.arange(x0, x1), 0, W - 1)
    np.testing.assert_array_equal(patch, image[np.ix_(rows, cols)])


def test_cut_square_copies_and_refuses_outside() -> None:
    image = coded_image()
    patch = cut_square(image, np.array([10, 10, 20, 20]))
    patch[:] = 0
    assert image[15, 15].any(), "the frame is never modified through a crop"
    with pytest.raises(ValueError, match="does not overlap"):
        cut_square(image, np.array([300, 10, 320, 30]))


@pytest.mark.parametrize(
    ("spec", "boxes", "shape"),
    [
        (GRAY, [(90, 40, 110, 60), (0, 0, 30, 40)], (2, 48, 48)),
        (RGB, [(90, 40, 110, 60), (0, 0, 30, 40)], (2, 64, 64, 3)),
        (GRAY, [], (0, 48, 48)),
        (RGB, [], (0, 64, 64, 3)),
    ],
)
def test_crop_faces_shape(spec: ModelSpec, boxes: list, shape: tuple) -> None:
    image = coded_image()
    before = image.copy()
    crops = crop_faces(image, dets_of(boxes), CropSettings(), spec)
    assert crops.shape == shape and crops.dtype == np.uint8
    np.testing.assert_array_equal(image, before)


def test_crop_faces_is_resize_of_square(sample_dir: Path) -> None:
    image = cv2.imread(str(sample_dir / "stills" / "single_face.jpg"))
    dets = dets_of([(193, 143, 375, 393), (400, 480, 572, 562)])  # face, and a bottom-edge box
    settings = CropSettings(margin=0.1)
    squares = face_squares(dets.boxes, image.shape, settings)
    for spec in (GRAY, RGB):
        expected = resize_faces([cut_square(image, s) for s in squares], spec)
        np.testing.assert_array_equal(crop_faces(image, dets, settings, spec), expected)


def test_border_face_stays_centred() -> None:
    """A bright disc cut by the left border keeps its place in the crop: the square is
    padded past the border, not shifted into the frame."""
    image = np.zeros((120, 200, 3), np.uint8)
    cv2.circle(image, (5, 60), 20, (255, 255, 255), -1)  # visible right edge at x = 25
    box = (0, 40, 25, 80)
    ((x0, _, x1, _),) = face_squares(np.array([box]), image.shape, CropSettings(margin=0.0))
    assert x0 < 0  # the square runs past the left border
    crop = crop_faces(image, dets_of([box]), CropSettings(margin=0.0), RGB)[0]
    s = crop.shape[0]
    right_edge = np.flatnonzero(crop[s // 2, :, 0] > 127).max() + 1
    assert abs(right_edge - (25 - x0) / (x1 - x0) * s) <= 1.5
    assert abs(right_edge - 25 / (x1 - x0) * s) > 5  # where a shifted square would put it


def test_align_uses_landmarks_when_present(sample_dir: Path) -> None:
    """With landmarks and align on, crop_faces is align_faces; off, the box crop."""
    from fervid.extract.detect import FaceDetector
    from fervid.settings import DetectSettings

    image = cv2.imread(str(sample_dir / "stills" / "multi_face.jpg"))
    dets = FaceDetector(settings=DetectSettings())(image)
    assert dets.landmarks is not None and len(dets) == 5
    for spec in (GRAY, RGB):
        np.testing.assert_array_equal(
            crop_faces(image, dets, CropSettings(align=True), spec),
            align_faces(image, dets.landmarks, spec),
        )
        squares = face_squares(dets.boxes, image.shape, CropSettings())
        np.testing.assert_array_equal(
            crop_faces(image, dets, CropSettings(align=False), spec),
            resize_faces([cut_square(image, s) for s in squares], spec),
        )


def test_align_without_landmarks_is_a_no_op() -> None:
    image = coded_image()
    dets = dets_of([(90, 40, 110, 60), (0, 0, 30, 40)])
    np.testing.assert_array_equal(
        crop_faces(image, dets, CropSettings(align=True), RGB),
        crop_faces(image, dets, CropSettings(align=False), RGB),
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [({"margin": -0.1}, "--margin"), ({"margin": 1.5}, "--margin"), ({"align": "on"}, "--align")],
)
def test_crop_settings_are_validated(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CropSettings(**options)


def test_default_is_aligned() -> None:
    assert CropSettings().align is True


@pytest.mark.parametrize(
    ("image", "match"),
    [(np.zeros((10, 10), np.uint8), "BGR uint8"), (np.zeros((10, 10, 3), np.float32), "BGR uint8")],
)
def test_crop_faces_bad_image(image: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        crop_faces(image, Detections.empty(), CropSettings(), GRAY)
