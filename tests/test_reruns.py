"""What a later run on the same ``--out`` records and says: a copy of an analysed
recording given alone gets its ``skipped`` row naming the analysed path (``duplicate_of``),
written once; the summary (stderr and ``--json``) names a failed rerun that kept the
earlier result and a damaged result file moved to ``.quarantine/``.

Through the real command line, in-process (``--local``) with a random-weights debug
model, on copies of real sample videos: this is about what lands on disk and is said.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_cli import process
from helpers_model import make_debug_model

import fervid.engine.runner
from fervid.cli import EXIT_FAILED_VIDEOS, EXIT_OK
from fervid.output.schema import FRAMES, VIDEOS
from fervid.output.store import parts_root, read_table

GOOD = "single_face.mp4"  # 2.4 s, one face in every sampled frame
NO_FACE = "no_face.mp4"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


def videos_by_path(out: Path) -> dict[str, dict]:
    return {r["path"]: r for r in read_table(out, VIDEOS).to_pylist()}


# --------------------------------------------------------------------------- duplicates
@pytest.mark.parametrize("layout", ["results.parquet", "results"])
def test_a_copy_given_alone_to_a_later_run_gets_its_duplicate_row_once(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path, layout: str
) -> None:
    first = copy_sample(GOOD, "monday/a.mp4").parent
    later = copy_sample(GOOD, "tuesday/copy_of_a.mp4").parent  # the same bytes
    out = tmp_path / layout
    assert process(first, out, model).exit_code == EXIT_OK

    result = process(later, out, model)
    assert result.exit_code == EXIT_OK, result.output
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (0, 1, [])
    videos = videos_by_path(out)
    assert set(videos) == {"a.mp4", "copy_of_a.mp4"}
    original, copy = videos["a.mp4"], videos["copy_of_a.mp4"]
    assert original["status"] == "ok" and original["n_face_rows"] > 0
    assert copy["status"] == "skipped" and copy["video_id"] == original["video_id"]
    assert copy["duplicate_of"] == "a.mp4" and copy["error"] == "same content as a.mp4"
    frames = read_table(out, FRAMES)
    assert set(frames.column("path").to_pylist()) == {"a.mp4"}  # not analysed twice
    assert frames.num_rows == original["n_face_rows"]

    (dup_part,) = (parts_root(out) / VIDEOS).glob("*-dup-*.parquet")
    written = dup_part.stat().st_mtime_ns
    for inputs in (later, first):  # reruns with either path: nothing rewritten, no new row
        result = process(inputs, out, model)
        assert result.exit_code == EXIT_OK, result.output
        assert json.loads(result.stdout)["skipped"] == 1
    assert dup_part.stat().st_mtime_ns == written  # no fresher processed_at than the original
    assert videos_by_path(out) == videos


# --------------------------------------------------------------------------- the summary
def test_a_failed_rerun_that_kept_the_result_is_named_and_still_exits_3(
    copy_sample: Callable[[str, str], Path],
    tmp_path: Path,
    model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inputs = copy_sample(GOOD, "in/a.mp4").parent
    out = tmp_path / "results.parquet"
    assert process(inputs, out, model).exit_code == EXIT_OK
    copy_sample(NO_FACE, "in/b.mp4")  # new: no earlier result to keep

    def broken_finish(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracker exploded")

    monkeypatch.setattr(fervid.engine.runner, "finish_video", broken_finish)
    result = process(inputs, out, model, "--overwrite")
    assert result.exit_code == EXIT_FAILED_VIDEOS, result.output  # kept is still a failure
    summary = json.loads(result.stdout)
    assert [f["path"] for f in summary["failed"]] == ["a.mp4", "b.mp4"]
    assert summary["kept"] == ["a.mp4"] and summary["warnings"] == []
    assert "kept previous result for 1 video(s) whose rerun failed: a.mp4" in result.stderr
    videos = {r["path"]: r for r in read_table(out, VIDEOS).to_pylist()}
    assert videos["a.mp4"]["status"] == "ok" and "tracker exploded" in videos["a.mp4"]["last_error"]
    assert videos["b.mp4"]["status"] == "failed"

    monkeypatch.undo()
    result = process(inputs, out, model)  # both retried and done: nothing kept any more
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["kept"] == []
    assert "kept previous result" not in result.stderr


def test_a_quarantined_result_file_is_in_the_summary_and_the_json(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    inputs = copy_sample(GOOD, "in/a.mp4").parent
    out = tmp_path / "results"
    assert process(inputs, out, model).exit_code == EXIT_OK
    part = sorted((out / FRAMES).glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])  # torn: no footer

    result = process(inputs, out, model)
    assert result.exit_code == EXIT_OK, result.output  # redone: nothing failed
    summary = json.loads(result.stdout)
    assert summary["ok"] == 1 and summary["kept"] == []
    (warning,) = summary["warnings"]
    assert part.name in warning and ".quarantine/" in warning and "redone" in warning
    summary_lines = [line for line in result.stderr.splitlines() if line == f"warning {warning}"]
    assert len(summary_lines) == 1, result.stderr  # besides the "warning:" logged when found

    result = process(inputs, out, model)  # nothing damaged any more
    assert json.loads(result.stdout)["warnings"] == []
