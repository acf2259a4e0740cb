"""Nothing lost: a rerun never destroys results, output I/O errors are one line with
their own exit code, damaged input and damaged result files are reported (issue #9).

Through the real command line, in-process (``--local``) with a random-weights debug
model: these tests are about what lands on disk, not about the emotions.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import at_rest
from helpers_model import make_debug_model
from typer.testing import CliRunner, Result

import fervid.engine.runner
from fervid.cli import EXIT_FAILED_VIDEOS, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, app
from fervid.output.schema import FRAMES, VIDEOS
from fervid.output.store import parts_root, read_table

GOOD = "single_face.mp4"  # 2.4 s, one face in every sampled frame
FACE_THEN_NONE = "face_noface.mov"  # 6.4 s, a face leaves the picture


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


@pytest.fixture
def inputs(copy_sample) -> Path:
    copy_sample(GOOD, "in/a.mp4")
    return copy_sample(FACE_THEN_NONE, "in/b.mov").parent


def process(inputs: Path, out: Path, model: Path, *extra: object) -> Result:
    args = ["process", inputs, "--out", out, "--model", model, "-q", "--local", *extra]
    return CliRunner().invoke(app, [str(a) for a in args])


def snapshot(out: Path) -> tuple[int, list[tuple]]:
    """Frame row count and the (video, frame, face, label) keys of every frame row."""
    frames = read_table(out, FRAMES)
    cols = [frames.column(c).to_pylist() for c in ("video_id", "frame_index", "face_id")]
    return frames.num_rows, sorted(zip(*cols, strict=True))


def assert_one_line_error(result: Result, *needles: str) -> None:
    text = result.stderr
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    for needle in needles:
        assert needle in errors[0], errors[0]


# --------------------------------------------------------------------------- invalid tunables
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-gap-seconds", "0"),
        ("--smoothing-seconds", "nan"),
        ("--smoothing-seconds", "inf"),
        ("--margin", "-1"),
        ("--fps", "inf"),
        ("--min-segment-seconds", "nan"),
        ("--hysteresis", "nan"),
        ("--det-threshold", "nan"),
    ],
)
@pytest.mark.parametrize("layout", ["results.parquet", "results"])
def test_rerun_with_an_invalid_tunable_keeps_every_row(
    inputs: Path, tmp_path: Path, model: Path, option: str, value: str, layout: str
) -> None:
    out = tmp_path / layout
    assert process(inputs, out, model).exit_code == EXIT_OK
    before = snapshot(out)
    assert before[0] > 0
    files = sorted(p for p in out.parent.rglob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in files]

    result = process(inputs, out, model, option, value)
    assert result.exit_code == EXIT_USAGE, result.output
    assert_one_line_error(result, option)
    assert snapshot(out) == before  # 63 -> 63 in the case
    assert [p.stat().st_mtime_ns for p in files] == mtimes  # nothing was even rewritten


# --------------------------------------------------------------------------- failed reruns
def test_failure_on_rerun_keeps_the_earlier_result(
    inputs: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results.parquet"
    assert process(inputs, out, model).exit_code == EXIT_OK
    before = snapshot(out)

    def broken_finish(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracker exploded")

    monkeypatch.setattr(fervid.engine.runner, "finish_video", broken_finish)
    result = process(inputs, out, model, "--overwrite")
    assert result.exit_code == EXIT_FAILED_VIDEOS, result.output
    assert snapshot(out) == before
    videos = read_table(out, VIDEOS).to_pylist()
    assert {v["status"] for v in videos} == {"ok"}
    assert all("tracker exploded" in v["last_error"] for v in videos), videos

    monkeypatch.undo()  # the next good run replaces the rows and clears last_error
    assert process(inputs, out, model, "--overwrite").exit_code == EXIT_OK
    assert snapshot(out) == before
    assert all(v["last_error"] is None for v in read_table(out, VIDEOS).to_pylist())


# --------------------------------------------------------------------------- output I/O errors
@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "No space left on device; free some space"),
        (errno.EROFS, "Read-only file system; make it writable"),
        (errno.EIO, "Input/output error; check the disk"),
    ],
)
@pytest.mark.parametrize("layout", ["results.parquet", "results"])
def test_output_io_error_is_one_line_exit_4_and_keeps_earlier_rows(
    inputs: Path,
    tmp_path: Path,
    model: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    says: str,
    layout: str,
) -> None:
    out = tmp_path / layout
    assert process(inputs, out, model).exit_code == EXIT_OK
    before = snapshot(out)
    real_write = pq.write_table

    def failing_write(table: object, where: object, *args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(where))

    monkeypatch.setattr(pq, "write_table", failing_write)
    result = process(inputs, out, model, "--overwrite")
    monkeypatch.setattr(pq, "write_table", real_write)
    assert result.exit_code == EXIT_OUTPUT, result.output
    assert_one_line_error(result, "cannot write the results to --out=", says)
    assert str(tmp_path) not in result.stderr.replace(str(out), "--out")  # no other paths
    assert snapshot(out) == before
    assert not list(tmp_path.rglob(".*.tmp-*")) and not list(tmp_path.rglob("*.prev"))
    assert process(inputs, out, model).exit_code == EXIT_OK  # a rerun just works
    assert snapshot(out) == before


def test_full_disk_while_consolidating_is_one_line_exit_4(
    inputs: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results.parquet"
    assert process(inputs, out, model).exit_code == EXIT_OK
    before = snapshot(out)
    consolidated = pq.read_table(out).num_rows

    class FullDisk:
        def __init__(self, where: object, *args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pq, "ParquetWriter", FullDisk)  # the parts fit, the big files not
    result = process(inputs, out, model, "--overwrite")
    monkeypatch.undo()
    assert result.exit_code == EXIT_OUTPUT, result.output
    assert_one_line_error(result, "No space left on device; free some space")
    assert pq.read_table(out).num_rows == consolidated  # the old consolidated file stands
    assert process(inputs, out, model).exit_code == EXIT_OK  # space again: it consolidates
    assert snapshot(out) == before


def test_unwritable_out_folder_is_one_line_exit_4(
    inputs: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results"

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # root may write anywhere: inject it
    result = process(inputs, out, model)
    assert result.exit_code == EXIT_OUTPUT, result.output
    assert_one_line_error(result, "Permission denied; make it writable")


# --------------------------------------------------------------------------- damaged files
def test_torn_part_file_is_quarantined_and_its_video_redone(
    inputs: Path, tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "results"
    assert process(inputs, out, model).exit_code == EXIT_OK
    before = snapshot(out)
    part = sorted((out / FRAMES).glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])  # torn: no footer

    result = process(inputs, out, model)
    assert result.exit_code == EXIT_OK, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and part.name in warnings[0] and "redone" in warnings[0]
    assert str(tmp_path) not in warnings[0]
    assert snapshot(out) == before  # redone: the same rows again
    assert list((parts_root(out) / ".quarantine" / FRAMES).glob(f"{part.name}.*"))
    assert process(inputs, out, model).stderr.count("warning:") == 0


def test_damaged_video_is_ok_with_warnings_and_a_count(
    damaged_video: Path, tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "results.parquet"
    assert process(damaged_video, out, model).exit_code == EXIT_OK
    (row,) = read_table(out, VIDEOS).to_pylist()
    assert row["status"] == "ok_with_warnings", row
    assert row["decode_errors"] >= 10 and "decode errors between" in row["warnings"]
    assert row["frames_sampled"] == 40  # still analysed through the damage
    assert process(damaged_video, out, model).exit_code == EXIT_OK  # done: skipped
    assert read_table(out, VIDEOS).num_rows == 1


# --------------------------------------------------------------------------- odd inputs
def test_empty_folder_among_inputs_is_a_warning_not_an_abort(
    inputs: Path, tmp_path: Path, model: Path
) -> None:
    (tmp_path / "monday").mkdir()  # a day without recordings
    out = tmp_path / "results"
    result = process(inputs, out, model, tmp_path / "monday")  # extra input after the options
    assert result.exit_code == EXIT_OK, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no videos found under" in warnings[0], result.stderr
    assert read_table(out, VIDEOS).num_rows == 2


def test_jpeg_renamed_mp4_is_a_failed_row_without_folders_in_the_error(
    inputs: Path, tmp_path: Path, model: Path, sample_dir: Path
) -> None:
    fake = inputs / "visit.mp4"
    fake.write_bytes((sample_dir / "stills" / "single_face.jpg").read_bytes())
    at_rest(fake)  # a finished (misnamed) file, not a copy in progress
    out = tmp_path / "results.parquet"
    result = process(inputs, out, model)
    assert result.exit_code == EXIT_FAILED_VIDEOS, result.output
    rows = {r["path"]: r for r in read_table(out, VIDEOS).to_pylist()}
    assert rows["visit.mp4"]["status"] == "failed"
    assert rows["visit.mp4"]["error"] == (
        "visit.mp4: is a still image (JPEG), not a video; pass the recording itself"
    )
    assert all(str(tmp_path) not in (r["error"] or "") for r in rows.values())
    assert {rows[p]["status"] for p in ("a.mp4", "b.mov")} == {"ok"}
