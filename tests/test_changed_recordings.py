"""A recording picked up while it was still being copied (issue 20, row 1): one path has
one current result, and a file still growing waits for a later run.

What a nightly job over an upload folder sees: ``head -c 900000 clip.mp4 > in/call.mp4``
(an upload cut short, or still running), a run, then the whole file copied over
``in/call.mp4`` and another run. Through the real command line, in-process
(``--local``) with a random-weights debug model, on the real sample video.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import at_rest
from helpers_cli import process
from helpers_model import make_debug_model

from fervid.cli import EXIT_OK, EXIT_USAGE
from fervid.longitudinal.summary import summarize_dir
from fervid.output.schema import FRAMES, SEGMENTS, VIDEOS
from fervid.output.store import HISTORY, META_SUPERSEDED, parts_root, read_table

CLIP = "WolfgangLanger_Pexels.mp4"  # 19.7 s, its index first: a cut copy still decodes
CUT = 900_000  # bytes: about the first 11 s


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


def cut_copy(sample_dir: Path, dest: Path, *, age_s: float = 0.0) -> Path:
    """``head -c CUT clip.mp4 > dest``, last modified ``age_s`` seconds ago."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes((sample_dir / CLIP).read_bytes()[:CUT])
    return at_rest(dest, age_s) if age_s else dest


def rows_of(out: Path, table: str, path: str) -> list[dict]:
    return [r for r in read_table(out, table).to_pylist() if r["path"] == path]


@pytest.mark.parametrize("layout", ["results.parquet", "results"])
def test_the_complete_copy_replaces_the_partial_result_of_its_path(
    sample_dir: Path, tmp_path: Path, model: Path, layout: str
) -> None:
    # the cut copy has been lying there for an hour: an upload that died, so it is taken
    call = cut_copy(sample_dir, tmp_path / "in" / "call.mp4", age_s=3600)
    out = tmp_path / layout
    first = process(call.parent, out, model)
    assert first.exit_code == EXIT_OK, first.output
    (partial,) = rows_of(out, VIDEOS, "call.mp4")
    assert partial["status"] == "ok_with_warnings" and partial["frames_sampled"] < 30

    shutil.copyfile(sample_dir / CLIP, call)  # the whole file arrives over it
    second = process(call.parent, out, model)
    assert second.exit_code == EXIT_OK, second.output
    summary = json.loads(second.stdout)
    assert summary["replaced"] == ["call.mp4"] and summary["pending"] == []
    assert "replaced 1 changed recording(s)" in second.stderr

    (current,) = rows_of(out, VIDEOS, "call.mp4")  # one current result for the path
    assert current["status"] == "ok" and current["video_id"] != partial["video_id"]
    assert current["frames_sampled"] == 40  # 19.7 s at 2 fps: the full count
    frames = rows_of(out, FRAMES, "call.mp4")
    assert len(frames) == current["n_face_rows"] > 0
    assert {r["video_id"] for r in frames} == {current["video_id"]}
    assert {r["video_id"] for r in rows_of(out, SEGMENTS, "call.mp4")} == {current["video_id"]}
    sessions = summarize_dir(out, None)
    assert set(sessions.column("video_id").to_pylist()) == {
        current["video_id"]
    }  # summaries see the current result only

    # the partial result is history: readable, with why it was replaced
    history = parts_root(out) / HISTORY
    (old_row,) = (history / VIDEOS).glob("*.parquet")
    assert pq.read_table(old_row).column("video_id").to_pylist() == [partial["video_id"]]
    why = json.loads(pq.read_schema(old_row).metadata[META_SUPERSEDED])
    assert why["by"] == current["video_id"] and "call.mp4" in why["reason"]
    (old_frames,) = (history / FRAMES).glob("*.parquet")
    assert pq.read_table(old_frames).num_rows == partial["n_face_rows"]

    third = process(call.parent, out, model)  # nothing changed: nothing replaced again
    assert third.exit_code == EXIT_OK, third.output
    assert json.loads(third.stdout)["replaced"] == []
    assert [r["video_id"] for r in rows_of(out, VIDEOS, "call.mp4")] == [current["video_id"]]


def test_the_issue_scenario_one_current_result_with_the_full_frame_count(
    sample_dir: Path, tmp_path: Path, model: Path
) -> None:
    """Exactly the reported steps, with the defaults: the cut copy is fresh and incomplete,
    so the first run leaves it pending; the complete file is then analysed once."""
    call = cut_copy(sample_dir, tmp_path / "in" / "call.mp4")
    out = tmp_path / "results"
    first = process(call.parent, out, model)
    assert first.exit_code == EXIT_OK, first.output  # pending is not a failure
    summary = json.loads(first.stdout)
    assert summary["pending"] == ["call.mp4"] and summary["failed"] == [] and summary["ok"] == 0
    assert "pending 1 recording(s) still being written" in first.stderr

    shutil.copyfile(sample_dir / CLIP, call)  # fresh too, but complete: taken at once
    second = process(call.parent, out, model)
    assert second.exit_code == EXIT_OK, second.output
    assert json.loads(second.stdout)["pending"] == []
    (row,) = read_table(out, VIDEOS).to_pylist()
    assert (row["path"], row["status"], row["frames_sampled"]) == ("call.mp4", "ok", 40)
    assert read_table(out, FRAMES).num_rows == row["n_face_rows"]


def test_a_growing_file_is_pending_until_it_is_complete_or_settles(
    sample_dir: Path, tmp_path: Path, model: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copyfile(sample_dir / "single_face.mp4", inbox / "done.mp4")
    growing = inbox / "growing.mp4"
    out = tmp_path / "results"
    data = (sample_dir / CLIP).read_bytes()
    for size in (300_000, 900_000, 1_500_000):  # the upload goes on between two runs
        growing.write_bytes(data[:size])
        result = process(inbox, out, model)
        assert result.exit_code == EXIT_OK, result.output
        summary = json.loads(result.stdout)
        assert summary["pending"] == ["growing.mp4"] and summary["failed"] == []
        assert {r["path"] for r in read_table(out, VIDEOS).to_pylist()} == {"done.mp4"}

    # --settle-seconds 0 turns the check off: the cut file is analysed as it is
    off = process(inbox, out, model, "--settle-seconds", 0)
    assert off.exit_code == EXIT_OK, off.output
    assert json.loads(off.stdout)["pending"] == []
    assert rows_of(out, VIDEOS, "growing.mp4")[0]["status"] == "ok_with_warnings"

    # an upload that stopped longer ago than the settle time is taken; a fresh one is not
    stalled = cut_copy(sample_dir, inbox / "stalled.mp4", age_s=300)
    result = process(inbox, out, model, "--settle-seconds", 60)
    assert json.loads(result.stdout)["pending"] == ["growing.mp4"], result.output
    assert rows_of(out, VIDEOS, stalled.name)[0]["status"] == "ok_with_warnings"


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_settle_seconds_is_validated(tmp_path: Path, model: Path, value: str) -> None:
    result = process(tmp_path, tmp_path / "out", model, "--settle-seconds", value)
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: --settle-seconds=") and "Traceback" not in result.output
