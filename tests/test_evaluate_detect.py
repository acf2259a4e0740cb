"""``fervid evaluate --detect``: full photos go through the pipeline's detector and
cropper first; photos without a face are counted and reported, never scored.

The photos are full frames cut from the sample videos: WolfgangLanger laughing (happy)
and crying (sad), and a frame of no_face.mp4 filed under "neutral".
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from fervid.cli import EXIT_OK, EXIT_USAGE, app
from fervid.training.evaluate import evaluate_model

FRAMES = {  # class folder -> (video, seconds)
    "happy": [("WolfgangLanger_Pexels.mp4", 15.0), ("WolfgangLanger_Pexels.mp4", 17.0)],
    "sad": [("WolfgangLanger_Pexels.mp4", 5.0), ("WolfgangLanger_Pexels.mp4", 6.0)],
    "neutral": [("no_face.mp4", 1.0)],
}


def _frame(video: Path, t: float):  # type: ignore[no-untyped-def]
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_MSEC, t * 1000)
    ok, img = cap.read()
    cap.release()
    assert ok, f"cannot read {video} at {t} s"
    return img


@pytest.fixture(scope="module")
def photos(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for cls, items in FRAMES.items():
        (root / cls).mkdir()
        for i, (video, t) in enumerate(items):
            cv2.imwrite(str(root / cls / f"{i}.jpg"), _frame(sample_dir / video, t))
    return root


def test_detect_scores_faces_and_reports_faceless_photos(photos: Path, model_path: Path) -> None:
    r = evaluate_model(model_path, photos, detect=True, batch_size=8)
    assert r.detected and r.num_images == 4
    assert r.no_face == ("neutral/0.jpg",) and r.multi_face == 0
    # the laughing frames are read as happy (the crying ones are harder: not asserted)
    happy = r.class_names.index("happy")
    happy_rows = r.labels == happy
    assert (r.probs[happy_rows].argmax(1) == happy).all()


def test_detect_cli_prints_the_faceless_count(photos: Path, model_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["evaluate", "--data", str(photos), "--model", str(model_path), "--detect"]
    )
    assert res.exit_code == EXIT_OK, res.output
    assert "1 image(s) without a face were not scored (neutral/0.jpg)" in res.output


def test_detect_refuses_ferplus_crops(data_root: Path, model_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["evaluate", "--data", str(data_root / "ferplus" / "FER2013Valid"), "--model",
         str(model_path), "--detect", "--limit", "5"],
    )  # fmt: skip
    assert res.exit_code == EXIT_USAGE and "--detect reads full photos" in res.output
