"""Landmark alignment: the similarity transform, the template, aligned crops of a
synthetic face with known landmarks, and of the real sample face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fervid.extract.align import (
    MAX_WARP_FACTOR,
    TEMPLATE,
    align_faces,
    crop_side_px,
    similarity_transform,
    unit_transforms,
)
from fervid.extract.detect import FaceDetector
from fervid.model.spec import ModelSpec
from fervid.settings import DetectSettings

GRAY = ModelSpec(input_size=64, channels="gray")
RGB = ModelSpec(input_size=48, channels="rgb")


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.column_stack([r, [tx, ty]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize(
    ("angle", "scale", "tx", "ty"),
    [(0, 1, 0, 0), (30, 2.5, 10, -4), (-75, 0.2, 300, 120), (179, 7.0, -50, 60)],
)
def test_similarity_transform_recovers_a_known_one(angle, scale, tx, ty) -> None:
    m = similarity(angle, scale, tx, ty)
    src = TEMPLATE.astype(np.float64) * 100
    np.testing.assert_allclose(similarity_transform(src, apply(m, src)), m, atol=1e-9)


def test_similarity_transform_never_mirrors() -> None:
    src = TEMPLATE.astype(np.float64)
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize(
    ("src", "dst"),
    [(np.zeros((5, 2)), TEMPLATE), (np.ones((1, 2)), np.ones((1, 2))), (TEMPLATE, TEMPLATE[:4])],
)
def test_similarity_transform_refuses_degenerate_input(src, dst) -> None:
    with pytest.raises(ValueError):
        similarity_transform(src, dst)


def test_template_is_a_plausible_upright_face() -> None:
    t = TEMPLATE
    assert t.shape == (5, 2) and np.all((t > 0.2) & (t < 0.8))
    assert t[0, 0] < t[2, 0] < t[1, 0] and t[3, 0] < t[4, 0]  # right eye left in the image
    assert t[:2, 1].max() < t[2, 1] < t[3:, 1].min()  # eyes above nose above mouth
    assert abs(t[:2, 0].mean() - 0.5) < 0.02  # centred


def synthetic_face(m: np.ndarray, side: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A BGR frame with 5 bright dots at the template points moved by ``m`` (template
    units -> frame pixels), and those landmark positions (5, 2)."""
    lm = apply(m, TEMPLATE.astype(np.float64))
    image = np.full((side, side, 3), 40, np.uint8)
    for x, y in lm:
        cv2.circle(image, (round(x), round(y)), 5, (255, 255, 255), -1, cv2.LINE_AA)
    return image, lm.astype(np.float32)


def dot_centres(gray: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Brightness-weighted centre of the dot nearest each expected point (pixels)."""
    out = []
    ys, xs = np.mgrid[0 : gray.shape[0], 0 : gray.shape[1]]
    for ex, ey in expected:
        near = ((xs - ex) ** 2 + (ys - ey) ** 2 < (0.08 * gray.shape[0]) ** 2) & (gray > 100)
        w = gray[near].astype(np.float64)
        out.append((np.average(xs[near], weights=w), np.average(ys[near], weights=w)))
    return np.array(out)


@pytest.mark.parametrize(
    ("angle", "scale", "tx", "ty"),
    [(0, 160, 120, 120), (25, 200, 100, 90), (-40, 120, 150, 170), (10, 60, 20, 300)],
)
def test_synthetic_face_lands_on_the_template(angle, scale, tx, ty) -> None:
    image, lm = synthetic_face(similarity(angle, scale, tx, ty))
    crop = align_faces(image, lm[None], GRAY)[0]
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    expected = TEMPLATE * 64 - 0.5  # pixel centres: template 0..1 spans the crop's edges
    np.testing.assert_allclose(dot_centres(crop, expected), expected, atol=1.0)


def test_crop_side_is_the_face_scale() -> None:
    m = similarity(33, 150, 40, 60)
    _, lm = synthetic_face(m)
    t = unit_transforms(lm[None])
    np.testing.assert_allclose(crop_side_px(t), [150], rtol=1e-5)


def test_align_shapes_and_input_untouched() -> None:
    image, lm = synthetic_face(similarity(5, 900, -200, -250))  # face bigger than the frame
    before = image.copy()
    two = np.stack([lm, lm])
    assert align_faces(image, two, GRAY).shape == (2, 64, 64)
    assert align_faces(image, two, RGB).shape == (2, 48, 48, 3)
    assert align_faces(image, np.zeros((0, 5, 2)), GRAY).shape == (0, 64, 64)
    np.testing.assert_array_equal(image, before)
    assert MAX_WARP_FACTOR >= 1


def test_bad_landmark_shape() -> None:
    with pytest.raises(ValueError, match=r"\(m, 5, 2\)"):
        align_faces(np.zeros((10, 10, 3), np.uint8), np.zeros((1, 4, 2)), GRAY)


def test_real_face_aligned_has_its_landmarks_on_the_template(sample_dir: Path) -> None:
    """Detect the sample face, align it, detect again on the aligned crop (framed by
    half its side of edge pixels): the landmarks are where the transform put them up to
    YuNet's own jitter, which for the same face at another scale and framing is up to
    ~0.03 of the crop side, and near the template (a real face fits the median template
    only up to its own pose and shape)."""
    image = cv2.imread(str(sample_dir / "stills" / "single_face.jpg"))
    det = FaceDetector(settings=DetectSettings(min_face_px=1, long_side=640))
    dets = det(image)
    side = 256
    crop = align_faces(image, dets.landmarks, ModelSpec(input_size=side, channels="rgb"))[0]
    pad = side // 2
    framed = cv2.copyMakeBorder(
        cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), pad, pad, pad, pad, cv2.BORDER_REPLICATE
    )
    again = det(framed)
    assert len(again) == 1
    found = (again.landmarks[0] - pad) / side
    placed = apply(unit_transforms(dets.landmarks)[0], dets.landmarks[0].astype(np.float64))
    np.testing.assert_allclose(found, placed, atol=0.04)
    np.testing.assert_allclose(placed, TEMPLATE, atol=0.04)
