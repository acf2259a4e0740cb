"""Per-face quality and pose, and the frames-table columns that carry them (with
--keep-empty-frames rows), on synthetic landmarks and the real sample videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from fervid.cli import EXIT_OK, app
from fervid.extract.align import TEMPLATE
from fervid.extract.quality import crop_quality, face_px, head_pose, measure_faces
from fervid.output.schema import FRAMES, QUALITY_COLUMNS, frames_schema, landmark_col
from fervid.output.store import read_table
from fervid.records import LANDMARK_NAMES, Detections


def rotate(points: np.ndarray, deg: float) -> np.ndarray:
    a = np.radians(deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - 0.5) @ r.T + 0.5


def pose_of(points: np.ndarray) -> tuple[float, float, float]:
    yaw, pitch, roll = head_pose(np.asarray(points, np.float64)[None] * 200)
    return float(yaw[0]), float(pitch[0]), float(roll[0])


def test_template_face_is_frontal() -> None:
    yaw, pitch, roll = pose_of(TEMPLATE)
    # FER-2013's median nose sits a little left of the midline: yaw -3.5°, not 0.
    assert abs(yaw) < 4 and abs(pitch) < 0.05 and abs(roll) < 0.5


@pytest.mark.parametrize("deg", [-30.0, -10.0, 15.0, 40.0])
def test_roll_is_the_in_plane_rotation(deg: float) -> None:
    base = pose_of(TEMPLATE)
    yaw, pitch, roll = pose_of(rotate(TEMPLATE, deg))
    assert roll == pytest.approx(base[2] + deg, abs=1e-3)
    assert yaw == pytest.approx(base[0], abs=1e-3) and pitch == pytest.approx(base[1], abs=1e-3)


@pytest.mark.parametrize(
    ("dx", "dy", "yaw_sign", "pitch_sign"),
    [(0.08, 0, 1, 0), (-0.08, 0, -1, 0), (0, 0.06, 0, 1), (0, -0.06, 0, -1)],
)
def test_nose_offset_gives_yaw_and_pitch_signs(dx, dy, yaw_sign, pitch_sign) -> None:
    base = pose_of(TEMPLATE)
    moved = TEMPLATE.copy()
    moved[2] += (dx, dy)  # nose tip towards the image's right / down
    yaw, pitch, _ = pose_of(moved)
    for value, b, sign in ((yaw, base[0], yaw_sign), (pitch, base[1], pitch_sign)):
        if sign == 0:
            assert value == pytest.approx(b, abs=0.3)  # the template's slight roll mixes axes
        else:
            assert np.sign(value - b) == sign and abs(value - b) > 5


def test_pose_is_scale_invariant() -> None:
    moved = TEMPLATE.copy()
    moved[2] += (0.05, 0.03)
    a = head_pose(moved[None] * 50)
    b = head_pose(moved[None] * 500 + 17)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_blur_and_brightness() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    flat = np.full((64, 64), 51, np.uint8)
    blur, bright = crop_quality(np.stack([sharp, blurred, flat]))
    assert blur[0] > 20 * blur[1] > 0 and blur[2] == 0
    assert bright[2] == pytest.approx(0.2)
    rgb_blur, _ = crop_quality(np.repeat(flat[None, :, :, None], 3, axis=3))
    assert rgb_blur[0] == 0


def test_face_px() -> None:
    np.testing.assert_allclose(face_px(np.array([[0, 0, 40, 90], [10, 10, 110, 110]])), [60, 100])


def test_measure_faces_without_landmarks_is_nan() -> None:
    dets = Detections(boxes=np.array([[0, 0, 50, 50]], np.float32), scores=np.ones(1, np.float32))
    q = measure_faces(dets, np.zeros((1, 64, 64), np.uint8), scale=0.5)
    assert q.face_px[0] == pytest.approx(100)  # back to displayed-frame pixels
    assert np.isnan(q.landmarks).all() and np.isnan(q.yaw).all()


@pytest.fixture(scope="module")
def frames(
    sample_dir: Path, model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> pa.Table:
    out = tmp_path_factory.mktemp("quality") / "results.parquet"
    videos = [str(sample_dir / v) for v in ("face_noface.mov", "single_face.mp4")]
    args = ["process", *videos, "--out", str(out), "--model", str(model_path)]
    result = CliRunner().invoke(app, [*args, "--keep-empty-frames", "--local", "-q"])
    assert result.exit_code == EXIT_OK, result.output
    return read_table(out, FRAMES)


def test_new_columns_in_the_schema() -> None:
    schema = frames_schema()
    assert schema.field("face_found").type == pa.bool_() and not schema.field("face_found").nullable
    for c in QUALITY_COLUMNS:
        assert schema.field(c).type == pa.float32() and schema.field(c).nullable
    for n in LANDMARK_NAMES:
        for axis in ("x", "y"):
            for norm in (False, True):
                assert schema.field(landmark_col(n, axis, norm=norm)).type == pa.float32()
    for c in ("face_id", "det_score", "prob_happy", "label", "segment_index"):
        assert schema.field(c).nullable  # null on an empty-frame row


def test_quality_columns_on_real_faces(frames: pa.Table) -> None:
    df = frames.to_pandas()
    faces = df[df["face_found"]]
    single = faces[faces["file_name"] == "single_face.mp4"]
    assert len(single) == 5 and single["face_id"].nunique() == 1
    # A calm webcam face, frontal and sharp: small angles, a real blur score.
    for c in ("yaw", "pitch", "roll"):
        assert single[c].abs().max() < 20, single[c]
    assert single["blur"].min() > 100 and single["brightness"].between(0.2, 0.9).all()
    assert single["face_px"].between(100, 400).all()
    # Landmarks lie in their box; normalised = pixels / frame size.
    for n in LANDMARK_NAMES:
        x, y = faces[landmark_col(n, "x")], faces[landmark_col(n, "y")]
        assert ((x > faces["x1"]) & (x < faces["x2"]) & (y > faces["y1"]) & (y < faces["y2"])).all()
    w = 960  # face_noface.mov is 960x540
    mov = faces[faces["file_name"] == "face_noface.mov"]
    np.testing.assert_allclose(
        mov[landmark_col("nose", "x", norm=True)], mov[landmark_col("nose", "x")] / w, rtol=1e-6
    )


def test_keep_empty_frames_rows(frames: pa.Table) -> None:
    df = frames.to_pandas()
    mov = df[df["file_name"] == "face_noface.mov"].sort_values("timestamp_s")
    assert len(mov) == 13  # every sampled frame (6.4 s at 2 fps) has a row
    assert mov["face_found"].tolist() == [True] * 5 + [False] * 8  # the face leaves at 2.7 s
    empty = mov[~mov["face_found"]]
    face_cols = ["face_id", "x1", "det_score", "prob_happy", "label", "smoothed_label", "blur"]
    assert empty[face_cols].isna().all().all()
    assert (df[df["file_name"] == "single_face.mp4"]["face_found"]).all()
