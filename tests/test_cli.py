"""``fervid process`` through the real command line: Parquet contents, bad inputs, usage
errors, reruns, duplicates and ``--id-pattern``.

Most tests run in-process with the hidden ``--local`` executor and a random-weights debug
model (:mod:`helpers_model`): they are about plumbing, not about the emotions. One test
goes through Ray, as a nightly run does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import at_rest
from helpers_model import (
    DEBUG_SPEC,
    make_debug_model,
    ray_session,  # noqa: F401 (a session fixture)
)
from typer.testing import CliRunner, Result

import fervid.extract.discover
import fervid.extract.filecheck
from fervid.cli import EXIT_FAILED_VIDEOS, EXIT_OK, EXIT_USAGE, app
from fervid.model.classes import EMOTIONS
from fervid.model.modelfile import file_sha256
from fervid.output.schema import (
    FRAMES,
    META_MODEL_SHA256,
    META_SETTINGS,
    META_VERSION,
    SEGMENTS,
    TABLES,
    VIDEOS,
    prob_col,
    schema_for,
    smooth_col,
)
from fervid.output.store import output_paths, read_table

GOOD = "single_face.mp4"  # 2.4 s, one face in every sampled frame
NO_FACE = "no_face.mp4"  # 3.9 s, nobody in view
FACE_THEN_NONE = "face_noface.mov"  # 6.4 s, a face leaves the picture

PROBS = [prob_col(c) for c in EMOTIONS]
SMOOTH = [smooth_col(c) for c in EMOTIONS]


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


def cli(*args: object) -> Result:
    """``fervid ARGS...`` in this process; stdout and stderr kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args])


def process(
    inputs: list[Path] | Path, out: Path, model: Path, *extra: object, local: bool = True
) -> Result:
    inputs = inputs if isinstance(inputs, list) else [inputs]
    local_flag = ["--local"] if local else []
    result = cli("process", *inputs, "--out", out, "--model", model, *local_flag, *extra)
    if result.exit_code not in (EXIT_OK, EXIT_USAGE, EXIT_FAILED_VIDEOS):  # a crash
        raise AssertionError(f"exit {result.exit_code}\n{result.output}") from result.exception
    return result


def summary_count(result: Result, what: str) -> int:
    """A number from the printed run summary, e.g. ``summary_count(r, "videos ok")``."""
    m = re.search(rf"{what}\D*(\d+)", result.stderr)
    assert m, f"no {what!r} in the summary:\n{result.stderr}"
    return int(m.group(1))


def one_line(text: str) -> str:
    return " ".join(text.split())


def videos_by_path(out: Path) -> dict[str, dict]:
    rows = read_table(out, VIDEOS).to_pylist()
    return {r["path"]: r for r in rows}


def frame_rows(out: Path, path: str) -> int:
    frames = read_table(out, FRAMES)
    return sum(p == path for p in frames.column("path").to_pylist())


def assert_no_duplicates(out: Path) -> None:
    frames = read_table(out, FRAMES).select(["video_id", "frame_index", "face_id"])
    keys = list(zip(*(c.to_pylist() for c in frames.columns), strict=True))
    assert len(keys) == len(set(keys)), "duplicate frame rows"
    videos = read_table(out, VIDEOS)
    keys = list(zip(videos["video_id"].to_pylist(), videos["path"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)), "duplicate videos rows"


# --------------------------------------------------------------------------- content checks
def as_stored(schema: pa.Schema) -> pa.Schema:
    """``schema`` as a Parquet file holds it: Parquet has no seconds unit, so timestamp[s]
    is stored as milliseconds (:func:`fervid.output.store.read_table` casts it back)."""
    fields = [
        f.with_type(pa.timestamp("ms", tz=f.type.tz))
        if pa.types.is_timestamp(f.type) and f.type.unit == "s"
        else f
        for f in schema
    ]
    return pa.schema(fields)


def check_frames(frames: pd.DataFrame) -> None:
    """Per-row invariants of a frames table."""
    probs = frames[PROBS].to_numpy(np.float64)
    smooth = frames[SMOOTH].to_numpy(np.float64)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(smooth.sum(axis=1), 1.0, atol=1e-3)
    assert (frames["label"] == np.asarray(EMOTIONS)[probs.argmax(axis=1)]).all()
    assert (frames["smoothed_label"] == np.asarray(EMOTIONS)[smooth.argmax(axis=1)]).all()
    np.testing.assert_allclose(frames["confidence"], probs.max(axis=1), rtol=1e-6)
    for _, face in frames.groupby(["video_id", "face_id"]):
        assert np.all(np.diff(face["timestamp_s"].to_numpy()) > 0), "time runs backwards"
        assert np.all(np.diff(face["frame_index"].to_numpy()) > 0)


def check_segments_cover_frames(frames: pd.DataFrame, segments: pd.DataFrame) -> None:
    """Each face's segments cover exactly its frame rows, in time."""
    assert set(map(tuple, frames[["video_id", "face_id"]].drop_duplicates().to_numpy())) == set(
        map(tuple, segments[["video_id", "face_id"]].drop_duplicates().to_numpy())
    )
    for (vid, fid), segs in segments.groupby(["video_id", "face_id"]):
        rows = frames[(frames.video_id == vid) & (frames.face_id == fid)]
        assert sorted(segs["segment_index"]) == list(range(len(segs)))
        assert set(rows["segment_index"]) == set(segs["segment_index"])
        assert segs["n_frames"].sum() == len(rows)
        for seg in segs.itertuples():
            mine = rows[rows.segment_index == seg.segment_index]
            assert len(mine) == seg.n_frames
            assert (mine["timestamp_s"] >= seg.start_s).all()
            assert (mine["timestamp_s"] < seg.end_s).all()
            assert seg.start_s == mine["timestamp_s"].min()
            assert seg.duration_s == pytest.approx(seg.end_s - seg.start_s)


# --------------------------------------------------------------------------- 1. through Ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_process_through_ray_writes_consistent_tables(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    import ray

    for name in (GOOD, NO_FACE, FACE_THEN_NONE):
        copy_sample(name, f"in/{name}")
    out = tmp_path / "results.parquet"

    result = process(tmp_path / "in", out, model, "--workers", 2, "--executor", "ray", local=False)

    assert result.exit_code == EXIT_OK, result.output
    assert summary_count(result, "videos ok") == 3
    assert summary_count(result, "videos failed") == 0
    assert ray.is_initialized(), "the run shut down a Ray session it did not start"

    paths = output_paths(out)
    for t in TABLES:  # the files on disk carry exactly the declared schemas
        assert pq.read_schema(paths[t]).equals(as_stored(schema_for(t)), check_metadata=False), t
        assert read_table(out, t).schema.equals(schema_for(t), check_metadata=False), t
        meta = pq.read_schema(paths[t]).metadata
        assert meta[META_MODEL_SHA256].decode() == file_sha256(model)
        assert meta[META_VERSION]
        settings = json.loads(meta[META_SETTINGS])
        assert settings["sample"]["fps"] == 2.0
        assert settings["classify"]["model_path"] == model.name  # no folders: no names

    frames = pq.read_table(paths[FRAMES]).to_pandas()
    segments = pq.read_table(paths[SEGMENTS]).to_pandas()
    videos = pq.read_table(paths[VIDEOS]).to_pandas().set_index("path")
    check_frames(frames)
    check_segments_cover_frames(frames, segments)

    assert set(videos.index) == {GOOD, NO_FACE, FACE_THEN_NONE}
    assert (videos["status"] == "ok").all() and videos["error"].isna().all()
    assert (videos["frames_sampled"] > 0).all()
    counts = frames.groupby("path").size()
    for path, row in videos.iterrows():
        assert row["n_face_rows"] == counts.get(path, 0)
    assert NO_FACE not in counts and videos.loc[NO_FACE, "n_faces"] == 0
    assert counts[GOOD] > 0 and counts[FACE_THEN_NONE] > 0
    # face_noface: the face leaves, so fewer frames have a face than were sampled
    assert (
        videos.loc[FACE_THEN_NONE, "frames_with_face"]
        < videos.loc[FACE_THEN_NONE, "frames_sampled"]
    )

    # one table whatever reads it
    n = len(frames)
    assert pd.read_parquet(paths[FRAMES]).shape == frames.shape
    assert pl.read_parquet(paths[FRAMES]).shape == frames.shape
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{paths[FRAMES]}')").fetchall() == [(n,)]
    assert pq.read_table(paths[FRAMES]).num_rows == n


# --------------------------------------------------------------------------- 2. bad inputs
@pytest.fixture
def unreadable_video(
    copy_sample: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A video without read permission. root reads anything, so there the refusal is
    simulated where fervid opens files (fingerprint and the decoders' file check)."""
    path = copy_sample(NO_FACE, "locked.mp4")
    path.chmod(0)
    if os.geteuid() == 0:

        def guarded_open(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return open(file, *args, **kwargs)

        monkeypatch.setattr(fervid.extract.filecheck, "open", guarded_open, raising=False)
        monkeypatch.setattr(fervid.extract.discover, "open", guarded_open, raising=False)
    yield path
    path.chmod(0o644)


@pytest.fixture
def markup_named_text(tmp_path: Path) -> Path:
    """Not a video, named like rich markup: the CLI must print it, not interpret it."""
    path = tmp_path / "visit [" / "x] [bold].mp4"  # path "visit [/x] [bold].mp4"
    path.parent.mkdir()
    path.write_text("not a video\n")
    return at_rest(path)


@pytest.fixture
def face_in_odd_path(copy_sample: Callable[[str, str], Path]) -> Path:
    return copy_sample(FACE_THEN_NONE, "séance 2/visit [draft] é.mov")


@pytest.fixture
def no_face_video(copy_sample: Callable[[str, str], Path]) -> Path:
    return copy_sample(NO_FACE, "empty room.mp4")


BAD_INPUTS = {
    # fixture: (status, key phrase of the error or None, face rows expected, exit code)
    "text_video": ("failed", "not a video", False, EXIT_FAILED_VIDEOS),
    "empty_video": ("failed", "file is empty (0 bytes)", False, EXIT_FAILED_VIDEOS),
    "audio_only_file": ("failed", "no video stream", False, EXIT_FAILED_VIDEOS),
    "unreadable_video": ("failed", "permission denied", False, EXIT_FAILED_VIDEOS),
    "markup_named_text": ("failed", "not a video", False, EXIT_FAILED_VIDEOS),
    "truncated_video": ("ok_with_warnings", None, True, EXIT_OK),  # the first ~7.5 s decode
    "no_face_video": ("ok", None, False, EXIT_OK),
    "unicode_video": ("ok", None, False, EXIT_OK),  # synthetic clip: nobody in it
    "face_in_odd_path": ("ok", None, True, EXIT_OK),
}


@pytest.mark.parametrize(
    ("fixture", "status", "phrase", "has_faces", "code"),
    [(k, *v) for k, v in BAD_INPUTS.items()],
    ids=list(BAD_INPUTS),
)
def test_bad_input_is_a_row_and_never_takes_good_work_down(
    fixture: str,
    status: str,
    phrase: str | None,
    has_faces: bool,
    code: int,
    request: pytest.FixtureRequest,
    copy_sample: Callable[[str, str], Path],
    tmp_path: Path,
    model: Path,
) -> None:
    bad = request.getfixturevalue(fixture)
    copy_sample(GOOD, "good.mp4")
    out = tmp_path / "out" / "results.parquet"

    # the folder, plus the file by name (voice.m4a has no video extension)
    result = process([tmp_path, bad], out, model)

    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    videos = videos_by_path(out)
    assert len(videos) == 2
    good = videos["good.mp4"]
    assert good["status"] == "ok" and good["error"] is None
    assert frame_rows(out, "good.mp4") == good["n_face_rows"] > 0

    row = next(r for p, r in videos.items() if p != "good.mp4")
    assert row["file_name"] == bad.name
    assert row["status"] == status
    if status == "failed":
        assert phrase in row["error"] and "\n" not in row["error"]
        assert summary_count(result, "videos failed") == 1
        # the summary names the file and why, on one line
        assert f"failed {row['path']}: {row['error']}" in result.stderr
    else:
        assert row["error"] is None
        assert row["frames_sampled"] > 0
        assert (frame_rows(out, row["path"]) > 0) == has_faces
        assert row["n_face_rows"] == frame_rows(out, row["path"])


def test_truncated_video_keeps_what_decodes_and_warns(
    truncated_video: Path, tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "results.parquet"
    result = process(truncated_video, out, model)
    assert result.exit_code == EXIT_OK, result.output
    (row,) = read_table(out, VIDEOS).to_pylist()
    assert row["status"] == "ok_with_warnings" and row["warnings"], row
    full_s = row["duration_s"]
    last_t = max(read_table(out, FRAMES).column("timestamp_s").to_pylist())
    assert 5.0 < last_t < full_s  # ~7.5 s of the 19.7 s decode


# --------------------------------------------------------------------------- 3. usage errors
def _text_model(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_text("this is not a model\n")
    return path


def _plain_safetensors(tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))
    return path


USAGE_ERRORS = {
    # case: (inputs(tmp, good) -> list, extra options(tmp) -> list, key phrase)
    "missing path": (lambda t, g: [t / "nowhere"], lambda t: [], "input not found"),
    "folder without videos": (lambda t, g: [t / "docs"], lambda t: [], "no videos found"),
    "text model": (
        lambda t, g: [g],
        lambda t: ["--model", _text_model(t)],
        "not a safetensors file",
    ),
    "safetensors without metadata": (
        lambda t, g: [g],
        lambda t: ["--model", _plain_safetensors(t)],
        "lacks fervid metadata",
    ),
    "missing model": (
        lambda t, g: [g],
        lambda t: ["--model", t / "nope.safetensors"],
        "does not exist",
    ),
    "fps 0": (lambda t, g: [g], lambda t: ["--fps", 0], "--fps=0.0; expected a positive"),
    "fps and every-n": (
        lambda t, g: [g],
        lambda t: ["--fps", 1, "--every-n", 5],
        "exactly one of --fps",
    ),
    "every-n 0": (lambda t, g: [g], lambda t: ["--every-n", 0], "--every-n=0"),
    "bogus device": (lambda t, g: [g], lambda t: ["--device", "bogus"], "--device='bogus'"),
    "bogus smoothing": (
        lambda t, g: [g],
        lambda t: ["--smoothing", "bogus"],
        "--smoothing='bogus'",
    ),
    "negative smoothing": (
        lambda t, g: [g],
        lambda t: ["--smoothing-seconds", -1],
        "--smoothing-seconds=-1.0",
    ),
    "det threshold 1": (lambda t, g: [g], lambda t: ["--det-threshold", 1], "--det-threshold"),
    "batch size 0": (lambda t, g: [g], lambda t: ["--batch-size", 0], "--batch-size=0"),
    "csv out": (
        lambda t, g: [g],
        lambda t: ["--out", t / "res" / "results.csv"],
        "fervid writes Parquet",
    ),
    "bad id pattern": (
        lambda t, g: [g],
        lambda t: ["--id-pattern", "{subject"],
        "--id-pattern='{subject'",
    ),
    "tiny chunks": (lambda t, g: [g], lambda t: ["--chunk-seconds", 0.5], "--chunk-seconds=0.5"),
    # Every tunable is checked in its settings class, NaN and inf included, so a bad value
    # is a usage error before any video instead of a failure inside every video.
    **{
        f"{flag} {value}": (lambda t, g: [g], lambda t, f=flag, v=value: [f, v], phrase)
        for flag, value, phrase in [
            ("--fps", "nan", "--fps=nan; expected a positive, finite"),
            ("--fps", "inf", "--fps=inf"),
            ("--det-threshold", "nan", "--det-threshold=nan"),
            ("--min-face", 0, "--min-face=0"),
            ("--smoothing-seconds", "nan", "--smoothing-seconds=nan"),
            ("--smoothing-seconds", "inf", "--smoothing-seconds=inf"),
            ("--min-segment-seconds", -1, "--min-segment-seconds=-1.0"),
            ("--min-segment-seconds", "nan", "--min-segment-seconds=nan"),
            ("--hysteresis", -0.1, "--hysteresis=-0.1"),
            ("--hysteresis", 1, "--hysteresis=1.0; expected a probability margin"),
            ("--hysteresis", "nan", "--hysteresis=nan"),
            ("--max-gap-seconds", 0, "--max-gap-seconds=0.0; expected a positive"),
            ("--max-gap-seconds", "inf", "--max-gap-seconds=inf"),
            ("--max-gap-seconds", "nan", "--max-gap-seconds=nan"),
            ("--workers", -1, "--workers=-1"),
            ("--workers", 0, "--workers=0"),
            ("--chunk-seconds", "inf", "--chunk-seconds=inf"),
            ("--chunk-seconds", "nan", "--chunk-seconds=nan"),
            ("--margin", -0.1, "--margin=-0.1"),
            ("--margin", "nan", "--margin=nan"),
            ("--det-nms", 0, "--det-nms=0.0"),
            ("--det-nms", "nan", "--det-nms=nan"),
            ("--det-long-side", 8, "--det-long-side=8"),
            ("--detector", "bogus", "--detector='bogus'"),
            ("--align", "maybe", "--align='maybe'"),
            ("--executor", "bogus", "--executor='bogus'"),
            ("--gpus", -1, "--gpus=-1"),
        ]
    },
}


@pytest.mark.parametrize(
    ("make_inputs", "make_extra", "phrase"), list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS)
)
def test_usage_error_is_one_line_and_exit_2(
    make_inputs: Callable[[Path, Path], list[Path]],
    make_extra: Callable[[Path], list[object]],
    phrase: str,
    copy_sample: Callable[[str, str], Path],
    tmp_path: Path,
    model: Path,
) -> None:
    good = copy_sample(GOOD, "in/good.mp4")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no videos here\n")
    out = tmp_path / "res" / "results.parquet"
    extra = make_extra(tmp_path)
    model_args = [] if "--model" in extra else ["--model", model]
    out_args = [] if "--out" in extra else ["--out", out]
    inputs = make_inputs(tmp_path, good)

    # the progress bar stays on: it must not get in the way of the message
    result = cli("process", *inputs, *out_args, *model_args, "--local", *extra)

    assert result.exit_code == EXIT_USAGE, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and phrase in lines[0], lines[0]
    assert not (tmp_path / "res").exists(), "a usage error wrote output"


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="a GPU is visible: --device cuda works"
)
def test_cuda_without_gpu_is_a_usage_error(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    good = copy_sample(GOOD, "good.mp4")
    result = process(good, tmp_path / "r.parquet", model, "--device", "cuda")
    assert result.exit_code == EXIT_USAGE
    assert "no CUDA GPU is visible" in one_line(result.stderr)


def test_no_crops_are_written_unless_asked(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    good = copy_sample(GOOD, "in/good.mp4")
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / "res" / "results.parquet"
    assert process(good, out, model).exit_code == EXIT_OK
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    images = [p for p in written if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"}]
    assert images == []

    crops = tmp_path / "crops"
    assert process(good, tmp_path / "res2.parquet", model, "--save-crops", crops).exit_code == 0
    frames = read_table(tmp_path / "res2.parquet", FRAMES).to_pandas()
    files = sorted(crops.rglob("*.png"))
    assert len(files) == len(frames) > 0  # one crop per face row
    assert {f.parent.name for f in files} == set(frames["video_id"])
    import cv2

    image = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    size = DEBUG_SPEC.input_size
    assert image.shape == (size, size)  # exactly what the model saw, gray


# --------------------------------------------------------------------------- 4. reruns
@pytest.fixture
def two_videos(copy_sample: Callable[[str, str], Path], tmp_path: Path) -> Path:
    copy_sample(GOOD, "in/a.mp4")
    copy_sample(NO_FACE, "in/b.mp4")
    return tmp_path / "in"


def test_rerun_skips_finished_videos(two_videos: Path, tmp_path: Path, model: Path) -> None:
    out = tmp_path / "results.parquet"
    first = process(two_videos, out, model)
    assert first.exit_code == EXIT_OK and summary_count(first, "videos ok") == 2
    before = {t: read_table(out, t) for t in TABLES}

    second = process(two_videos, out, model)

    assert second.exit_code == EXIT_OK
    assert summary_count(second, "videos ok") == 0
    assert summary_count(second, "videos skipped") == 2
    for t in TABLES:  # untouched: same rows, same processing times
        assert read_table(out, t).equals(before[t]), t
    assert_no_duplicates(out)


def test_rerun_processes_only_a_new_video(
    two_videos: Path, copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "results.parquet"
    process(two_videos, out, model)
    before = videos_by_path(out)
    copy_sample(FACE_THEN_NONE, "in/c.mov")

    result = process(two_videos, out, model)

    assert result.exit_code == EXIT_OK
    assert summary_count(result, "videos ok") == 1
    assert summary_count(result, "videos skipped") == 2
    after = videos_by_path(out)
    assert set(after) == {"a.mp4", "b.mp4", "c.mov"}
    for path in before:  # the old rows were kept as they were, not redone
        assert after[path]["processing_s"] == before[path]["processing_s"]
    assert frame_rows(out, "c.mov") == after["c.mov"]["n_face_rows"] > 0
    assert frame_rows(out, "a.mp4") == before["a.mp4"]["n_face_rows"]
    assert_no_duplicates(out)


def test_overwrite_redoes_without_duplicates(two_videos: Path, tmp_path: Path, model: Path) -> None:
    out = tmp_path / "results.parquet"
    process(two_videos, out, model)
    n_frames = read_table(out, FRAMES).num_rows

    result = process(two_videos, out, model, "--overwrite")

    assert result.exit_code == EXIT_OK
    assert summary_count(result, "videos ok") == 2
    assert summary_count(result, "videos skipped") == 0
    assert read_table(out, FRAMES).num_rows == n_frames
    assert read_table(out, VIDEOS).num_rows == 2
    assert_no_duplicates(out)


def test_changed_tunable_redoes_the_videos(two_videos: Path, tmp_path: Path, model: Path) -> None:
    out = tmp_path / "results.parquet"
    process(two_videos, out, model)
    old_hash = set(read_table(out, VIDEOS).column("settings_hash").to_pylist())

    result = process(two_videos, out, model, "--smoothing-seconds", 0)

    assert result.exit_code == EXIT_OK
    assert summary_count(result, "videos ok") == 2
    videos = read_table(out, VIDEOS)
    assert videos.num_rows == 2
    new_hash = set(videos.column("settings_hash").to_pylist())
    assert len(new_hash) == 1 and new_hash != old_hash
    frames = read_table(out, FRAMES)
    assert json.loads(frames.schema.metadata[META_SETTINGS])["smooth"]["seconds"] == 0.0
    # a zero time constant smooths nothing: the rows really were recomputed
    df = frames.to_pandas()
    assert len(df) > 0
    np.testing.assert_allclose(df[SMOOTH].to_numpy(), df[PROBS].to_numpy(), atol=1e-6)
    assert_no_duplicates(out)


def test_dataset_layout_one_file_per_video(
    two_videos: Path, copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "results"
    result = process(two_videos, f"{out}/", model)
    assert result.exit_code == EXIT_OK, result.output
    ids = set(read_table(out, VIDEOS).column("video_id").to_pylist())
    assert len(ids) == 2
    for t in TABLES:
        assert {p.stem for p in (out / t).glob("*.parquet")} == ids, t
    assert not list(out.glob("*.parquet")), "dataset mode wrote consolidated files"

    copy_sample(FACE_THEN_NONE, "in/c.mov")
    result = process(two_videos, f"{out}/", model)
    assert summary_count(result, "videos ok") == 1
    for t in TABLES:
        assert len(list((out / t).glob("*.parquet"))) == 3
        glob = out / t / "*.parquet"
        [(n,)] = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()
        assert n == read_table(out, t).num_rows
    assert_no_duplicates(out)


# --------------------------------------------------------------------------- 5. duplicates
def test_same_content_under_two_paths_is_processed_once(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    copy_sample(GOOD, "in/site_a/visit.mp4")
    copy_sample(GOOD, "in/site_b/copy of visit.mp4")
    out = tmp_path / "results.parquet"

    for _ in range(2):  # and a rerun keeps it that way
        result = process(tmp_path / "in", out, model)
        assert result.exit_code == EXIT_OK, result.output

    videos = videos_by_path(out)
    assert set(videos) == {"site_a/visit.mp4", "site_b/copy of visit.mp4"}
    original, copy = videos["site_a/visit.mp4"], videos["site_b/copy of visit.mp4"]
    assert original["status"] == "ok" and original["n_face_rows"] > 0
    assert copy["status"] == "skipped"
    assert copy["error"] == "same content as site_a/visit.mp4"
    assert copy["video_id"] == original["video_id"]
    frames = read_table(out, FRAMES)
    assert set(frames.column("path").to_pylist()) == {"site_a/visit.mp4"}
    assert frames.num_rows == original["n_face_rows"]


# --------------------------------------------------------------------------- 6. --id-pattern
def test_id_pattern_fills_identity_columns(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    copy_sample(GOOD, "in/P001/2024-01-05_intake.mp4")
    copy_sample(NO_FACE, "in/P002/20240212_followup.mp4")
    out = tmp_path / "results.parquet"

    result = process(
        tmp_path / "in", out, model, "--id-pattern", "{subject}/{session_date}_{name}.mp4"
    )

    assert result.exit_code == EXIT_OK, result.output
    videos = videos_by_path(out)
    expected = {
        "P001/2024-01-05_intake.mp4": ("P001", dt.date(2024, 1, 5), "intake"),
        "P002/20240212_followup.mp4": ("P002", dt.date(2024, 2, 12), "followup"),
    }
    for path, (subject, date, name) in expected.items():
        row = videos[path]
        assert (row["subject"], row["session_date"]) == (subject, date)
        assert dict(row["path_fields"]) == {
            "subject": subject,
            "session_date": date.isoformat(),
            "name": name,
        }
    frames = read_table(out, FRAMES).to_pylist()
    assert frames and all(
        (r["subject"], r["session_date"]) == ("P001", dt.date(2024, 1, 5)) for r in frames
    )
    segments = read_table(out, SEGMENTS).to_pylist()
    assert segments and all(r["subject"] == "P001" for r in segments)


def test_file_mode_outputs_sit_beside_each_other(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    good = copy_sample(GOOD, "good.mp4")
    out = tmp_path / "nightly" / "results.parquet"
    result = process(good, out, model)
    assert result.exit_code == EXIT_OK
    names = sorted(p.name for p in out.parent.iterdir() if not p.name.startswith("."))
    assert names == ["results.parquet", "results.segments.parquet", "results.videos.parquet"]
    for table, path in output_paths(out).items():  # the summary says where each table went
        assert f"{table}: {path}" in result.stderr.splitlines()


def test_progress_bar_reports_failures_verbatim(
    markup_named_text: Path, copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    """With the progress bar on (no -q), a failed file is named as it is, on one line,
    even when its name looks like rich markup."""
    copy_sample(GOOD, "good.mp4")
    out = tmp_path / "out" / "results.parquet"
    result = cli("process", tmp_path, "--out", out, "--model", model, "--local")
    assert result.exit_code == EXIT_FAILED_VIDEOS, result.output
    failed = [ln for ln in result.stderr.splitlines() if ln.startswith("failed ")]
    assert failed and all(ln.startswith("failed visit [/x] [bold].mp4: ") for ln in failed)
    assert all("not a video" in ln for ln in failed)
    assert summary_count(result, "videos ok") == 1


# --------------------------------------------------------------------------- conventions
def test_counts_say_what_they_count_and_quiet_prints_only_problems(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    good = copy_sample(GOOD, "in/good.mp4")
    result = process(good, tmp_path / "a.parquet", model)
    assert result.exit_code == EXIT_OK
    rows = read_table(tmp_path / "a.parquet", FRAMES).num_rows
    assert f"done good.mp4: {rows} face rows, 1 face\n" in result.stderr
    assert re.search(r"faces \(tracked people\)\D*1\b", result.stderr)
    quiet = process(good, tmp_path / "b.parquet", model, "--quiet")
    assert quiet.exit_code == EXIT_OK and quiet.stderr == ""


def test_version() -> None:
    from fervid import __version__

    result = cli("--version")
    assert result.exit_code == EXIT_OK
    assert result.stdout.strip() == f"fervid {__version__}"


#: Every command's help, as `fervid ... --help` prints it.
COMMANDS = [[], ["process"], ["fetch-samples"], ["train"], ["evaluate"], ["summarize"],
            ["trends"], ["report"], ["nightly"], ["config"], ["config", "show"], ["config", "init"]]  # fmt: skip


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == EXIT_OK, result.output
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fervid")
def test_help_shows_no_python_types(command: list[str]) -> None:
    """Flags show no value (`--help <bool>` read as if it took one) and repeatable
    options and arguments no `list[...]`, on every command, --help and completion too."""
    text = help_text(*command)
    assert "--help" in text
    assert "<bool>" not in text
    assert "list[" not in text


def test_process_help_groups_options_and_shows_defaults() -> None:
    text = help_text("process")
    rows = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith("│ ") and "--" in ln}
    for option, choices in [("--device", "[auto|cpu|cuda]"), ("--smoothing", "[ema|none]")]:
        assert choices in rows[option], rows[option]
    assert "[default: 2.0]" in rows["--fps"]
    assert "[default: (all cores)]" in rows["--workers"]
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert panels == ["Arguments", "Options", "Input and sampling", "Detection", "Model",
                      "Tracking and smoothing", "Engine", "Output"]  # fmt: skip


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("fervid process x.mp4 --device c", ["cpu", "cuda"]),
        ("fervid process x.mp4 --smoothing ", ["ema", "none"]),
        ("fervid evaluate --ferplus-mode s", ["soft"]),
    ],
)
def test_shell_completion_offers_the_choices(words: str, expected: list[str]) -> None:
    env = {"_FERVID_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}  # fmt: skip
    result = CliRunner().invoke(app, [], env=env, prog_name="fervid")
    assert result.stdout.split() == expected


def test_ferplus_choices_match_the_loader() -> None:
    from fervid.cli import FERPLUS_MODES
    from fervid.training.data import FerPlusMode

    assert [m.value for m in FerPlusMode] == FERPLUS_MODES


def test_bad_option_answers_before_the_heavy_imports(tmp_path: Path) -> None:
    """A usage error is reported before numpy, pyarrow, OpenCV, torch or Ray load (what
    makes `fervid process --fps 0` answer in well under a second)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from fervid.cli import app\n"
        "try:\n"
        f"    app(['process', {str(tmp_path)!r}, '--out', 'r.parquet', '--fps', '0'])\n"
        "except SystemExit as e:\n"
        "    heavy = sorted(m for m in ('numpy', 'pyarrow', 'cv2', 'torch', 'ray') if m in sys.modules)\n"
        "    print(e.code, heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "2 []", r.stdout + r.stderr
    assert "--fps=0.0" in r.stderr


@pytest.mark.parametrize(("sampling", "interval"), [(["--fps", 2], 0.5), (["--every-n", 6], None)])
def test_one_sample_interval_for_segments_and_sessions(
    sampling: list[object],
    interval: float | None,
    copy_sample: Callable[[str, str], Path],
    tmp_path: Path,
    model: Path,
) -> None:
    """sample_interval_s is computed once at extraction, stored in the videos table, and
    is the step a segment's end_s and a session's face time are counted in."""
    from fervid.longitudinal.summary import summarize_dir

    good = copy_sample(GOOD, "good.mp4")
    out = tmp_path / "results.parquet"
    assert process(good, out, model, *sampling).exit_code == EXIT_OK
    (video,) = read_table(out, VIDEOS).to_pylist()
    dt = video["sample_interval_s"]
    assert dt == pytest.approx(interval if interval is not None else 6 / video["fps"])
    frames = read_table(out, FRAMES).to_pandas()
    segments = read_table(out, SEGMENTS).to_pandas()
    for face_id, rows in frames.groupby("face_id"):
        last = segments.loc[segments["face_id"] == face_id, "end_s"].max()
        assert last == pytest.approx(rows["timestamp_s"].max() + dt)
    sessions = summarize_dir(out).to_pylist()
    assert [r["sample_interval_s"] for r in sessions] == [pytest.approx(dt)] * len(sessions)
