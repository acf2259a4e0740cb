"""Old outputs keep working: an ``--out`` written by the previous release is read, and
extended by ``fervid process``, after an upgrade (docs/schema.md, "Compatibility").

The old outputs under ``tests/data/old_output/`` were written by the last release's code
(git commit 459250d, run from ``git worktree add /tmp/fervid-old 459250d`` with
``PYTHONPATH=/tmp/fervid-old``), so the test needs neither git history nor that code:

* ``file/``: ``fervid process in --out r.parquet --local`` over ``single_face.mp4`` and
  ``no_face.mp4`` (the consolidated files and the hidden parts folder);
* ``dataset/out/``: the same videos as ``in/P001/2026-01-05_single_face.mp4`` and
  ``in/P001/2026-01-12_no_face.mp4`` with ``--id-pattern
  "{subject}/{session_date}_{name}.mp4"``.

They hold only the Parquet tables (no frames, no face crops), and lack every column
added since (landmarks, quality and pose, ``face_found``, ``sample_interval_s``, ...).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from fervid.cli import EXIT_OK, EXIT_USAGE, app
from fervid.errors import InputError
from fervid.model.classes import EMOTIONS
from fervid.output.schema import FRAMES, SEGMENTS, TABLES, VIDEOS, landmark_col, schema_for
from fervid.output.store import (
    OutputStore,
    conform,
    parts_root,
    read_results,
    schema_problem,
)
from fervid.output.tables import check_schema

OLD = Path(__file__).parent / "data" / "old_output"
OLD_IDS = {"64a7f5d5027dac8f": 5, "9f3875be1006f994": 0}  # single_face, no_face: face rows
NEW_VIDEO = "carphone_pristine.mp4"
#: Columns the old release did not write, by table (a sample: not the full list).
ADDED = {
    FRAMES: ["face_px", "blur", "yaw", landmark_col("left_eye", "x")],
    VIDEOS: ["id_pattern_matched", "duplicate_of", "decode_errors", "sample_interval_s"],
}


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(params=["file", "dataset"])
def old_out(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A writable copy of an old output; the ``--out`` path to give fervid."""
    shutil.copytree(OLD / request.param, tmp_path / request.param)
    return tmp_path / request.param / ("r.parquet" if request.param == "file" else "out")


def part_hashes(out: Path) -> dict[str, str]:
    """table/file name -> sha256 of every part file of ``out``."""
    root = parts_root(out)
    return {
        f"{t}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
        for t in TABLES
        for p in sorted((root / t).glob("*.parquet"))
    }


def test_fixtures_are_old_format() -> None:
    """The committed files really lack the added columns (else this file tests nothing)."""
    for part in (OLD / "dataset" / "out" / FRAMES).glob("*.parquet"):
        names = pq.read_schema(part).names
        assert "face_found" not in names and "face_px" not in names
    names = pq.read_schema(OLD / "file" / "r.videos.parquet").names
    assert "sample_interval_s" not in names and "id_pattern_matched" not in names


def test_old_output_reads_as_current_schema(old_out: Path) -> None:
    before = part_hashes(old_out)
    tables = {t: read_results(old_out, t) for t in TABLES}
    for t, table in tables.items():
        check_schema(table, schema_for(t), name=t)  # exactly today's schema, nulls included
    videos, frames = tables[VIDEOS], tables[FRAMES]
    assert sorted(videos.column("video_id").to_pylist()) == sorted(OLD_IDS)
    assert frames.num_rows == sum(OLD_IDS.values())
    assert tables[SEGMENTS].num_rows == 1
    for t, cols in ADDED.items():
        for c in cols:
            assert tables[t].column(c).null_count == tables[t].num_rows, (t, c)
    # not nullable, added later: every old frames row was a face
    assert frames.column("face_found").to_pylist() == [True] * frames.num_rows
    assert part_hashes(old_out) == before  # reading writes nothing


def test_read_one_video_with_added_columns(old_out: Path) -> None:
    """The per-video read (the report's) asks for columns an old part does not have."""
    cols = ["face_id", "timestamp_s", "face_found", "face_px"]
    f = read_results(old_out, FRAMES, columns=cols, video_id="64a7f5d5027dac8f")
    assert f.column_names == cols and f.num_rows == 5
    assert f.column("face_found").to_pylist() == [True] * 5
    assert f.column("face_px").null_count == 5
    assert f.schema.metadata[b"fervid.version"] == b"0.1.0"


def test_rerun_adds_new_video_and_keeps_old_rows(old_out: Path, sample_dir: Path) -> None:
    old_rows = {t: read_results(old_out, t) for t in TABLES}
    before = part_hashes(old_out)
    result = cli("process", sample_dir / NEW_VIDEO, "--out", old_out, "--local", "-q")
    assert result.exit_code == EXIT_OK, result.output
    videos = read_results(old_out, VIDEOS)
    ids = videos.column("video_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3  # the old two and the new one, once each
    new_id = (set(ids) - set(OLD_IDS)).pop()
    by_id = {r["video_id"]: r for r in videos.to_pylist()}
    assert by_id[new_id]["status"] == "ok" and by_id[new_id]["sample_interval_s"] == 0.5
    frames = read_results(old_out, FRAMES)
    counts = dict(zip(*frames.group_by("video_id").aggregate([("frame_index", "count")])
                      .select(["video_id", "frame_index_count"]).to_pydict().values(),
                      strict=True))  # fmt: skip
    assert {v: counts.get(v, 0) for v in OLD_IDS} == OLD_IDS
    assert counts[new_id] > 0
    # the old videos' rows are the same values, nulls in what they never had
    for t in TABLES:
        table = read_results(old_out, t)
        check_schema(table, schema_for(t), name=t)
        kept = table.filter(pc.is_in(table.column("video_id"), pa.array(list(OLD_IDS))))
        sort = [("video_id", "ascending")] + ([("frame_index", "ascending")] if t == FRAMES else [])
        assert kept.sort_by(sort).equals(old_rows[t].sort_by(sort)), t
    old_frames = frames.filter(pc.field("video_id") == "64a7f5d5027dac8f")
    assert old_frames.column("face_px").null_count == 5
    new_frames = frames.filter(pc.field("video_id") == new_id)
    assert new_frames.column("face_px").null_count == 0
    # old parts are left as they were: only the new video's files were added
    after = part_hashes(old_out)
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == sorted(f"{t}/{new_id}.parquet" for t in TABLES)


def test_nightly_rerun_over_the_same_folder(tmp_path: Path, sample_dir: Path) -> None:
    """The clinic's nightly job after the upgrade: the same recordings folder plus a new
    one. The old sessions were made with other settings (their settings_hash differs), so
    they are redone with today's, as any settings change would; one row per video."""
    shutil.copytree(OLD / "dataset", tmp_path / "old")
    out = tmp_path / "old" / "out"
    rec = tmp_path / "in" / "P001"
    rec.mkdir(parents=True)
    shutil.copy(sample_dir / "single_face.mp4", rec / "2026-01-05_single_face.mp4")
    shutil.copy(sample_dir / NEW_VIDEO, rec / "2026-01-19_carphone.mp4")
    pattern = "{subject}/{session_date}_{name}.mp4"
    result = cli("process", tmp_path / "in", "--out", out, "--id-pattern", pattern, "--local", "-q")
    assert result.exit_code == EXIT_OK, result.output
    videos = read_results(out, VIDEOS)
    ids = videos.column("video_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3
    frames = read_results(out, FRAMES)
    keys = list(zip(*(frames.column(c).to_pylist() for c in ("video_id", "frame_index", "face_id")),
                    strict=True))  # fmt: skip
    assert len(keys) == len(set(keys))
    redone = {r["video_id"]: r for r in videos.to_pylist()}["64a7f5d5027dac8f"]
    assert redone["sample_interval_s"] == 0.5 and redone["subject"] == "P001"
    # the old no-face session, not in tonight's folder, is kept as it was
    kept = {r["video_id"]: r for r in videos.to_pylist()}["9f3875be1006f994"]
    assert kept["fervid_version"] == "0.1.0" and kept["sample_interval_s"] is None
    # the longitudinal commands read the mixed folder (old and new parts side by side)
    for command in ("summarize", "report"):
        result = cli(command, out)
        assert result.exit_code == EXIT_OK, (command, result.output)
    sessions = pq.read_table(tmp_path / "old" / "out.sessions.parquet")
    assert sorted(sessions.column("video_id").to_pylist()) == sorted(ids)


def test_longitudinal_commands_read_old_output(tmp_path: Path) -> None:
    shutil.copytree(OLD / "dataset", tmp_path / "d")
    out = tmp_path / "d" / "out"
    for command in ("summarize", "trends", "report"):
        result = cli(command, out)
        assert result.exit_code == EXIT_OK, (command, result.output)
    sessions = pq.read_table(tmp_path / "d" / "out.sessions.parquet")
    assert sorted(sessions.column("session_date").to_pylist()) == sorted(
        read_results(out, VIDEOS).column("session_date").to_pylist()
    )
    assert set(sessions.column("subject").to_pylist()) == {"P001"}
    assert (tmp_path / "d" / "out.report" / "index.html").is_file()


def open_store(out: Path) -> OutputStore:
    return OutputStore(
        out=out, class_names=EMOTIONS, settings_json={}, model_sha256="m" * 64,
        settings_hash="new", fervid_version="test", overwrite=False,
    )  # fmt: skip


def test_failed_rerun_keeps_the_old_result(old_out: Path) -> None:
    """The store's other read points: a rerun that fails on an old video keeps its rows
    and records ``last_error`` on its old videos row (read, conformed, rewritten)."""
    vid = "64a7f5d5027dac8f"
    row = read_results(old_out, VIDEOS, video_id=vid)
    for name, value in (("status", "failed"), ("error", "DecodeError: boom")):
        i = row.schema.get_field_index(name)
        row = row.set_column(i, row.schema.field(i), pa.array([value], pa.string()))
    store = open_store(old_out)
    empty = [schema_for(t).empty_table() for t in (FRAMES, SEGMENTS)]
    assert store.write_video(vid, *empty, row.replace_schema_metadata(None)) is False
    store.finalize()
    kept = read_results(old_out, VIDEOS, video_id=vid).to_pylist()[0]
    assert (kept["status"], kept["last_error"]) == ("ok", "DecodeError: boom")
    assert kept["settings_hash"] == "765b0a8e49cfce24" and kept["sample_interval_s"] is None
    assert read_results(old_out, FRAMES, video_id=vid).num_rows == 5


def test_old_consolidated_files_without_parts_are_adopted(tmp_path: Path) -> None:
    """File mode's old consolidated files alone (the parts folder deleted or not copied)."""
    shutil.copytree(OLD / "file", tmp_path / "f")
    shutil.rmtree(tmp_path / "f" / ".r.parquet.fervid")
    out = tmp_path / "f" / "r.parquet"
    open_store(out).finalize()
    assert sorted(read_results(out, VIDEOS).column("video_id").to_pylist()) == sorted(OLD_IDS)
    frames = read_results(out, FRAMES)
    check_schema(frames, schema_for(FRAMES), name=FRAMES)
    assert frames.num_rows == 5 and frames.column("face_found").to_pylist() == [True] * 5


# --------------------------------------------------------------------------- refused
def _rewrite(part: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    t = pq.read_table(part)
    pq.write_table(change(t), part)


def _retype(t: pa.Table) -> pa.Table:
    i = t.schema.get_field_index("frames_sampled")
    return t.set_column(i, "frames_sampled", t.column(i).cast(pa.string()))


def _extra(t: pa.Table) -> pa.Table:
    return t.append_column("gaze_x", pa.array([0.5] * t.num_rows, pa.float32()))


_FIX = "choose another --out"


@pytest.mark.parametrize(
    ("table", "change", "messages"),
    [
        (
            VIDEOS,
            _retype,
            [
                "videos/64a7f5d5027dac8f.parquet cannot be read as this fervid's videos table",
                "column 'frames_sampled' is string, expected int64",
                "written by fervid 0.1.0",
                _FIX,
            ],
        ),
        (
            VIDEOS,
            _extra,
            ["columns ['gaze_x'] this fervid does not write", "upgrade fervid", _FIX],
        ),
        # another table's file in frames/: the class-column check sees it first
        (FRAMES, "segments", ["holds frames rows with columns", _FIX]),
    ],
)
def test_incompatible_output_is_refused(
    tmp_path: Path, sample_dir: Path, table: str, change: object, messages: list[str]
) -> None:
    shutil.copytree(OLD / "dataset", tmp_path / "d")
    out = tmp_path / "d" / "out"
    part = out / table / "64a7f5d5027dac8f.parquet"
    if change == "segments":
        shutil.copy(out / SEGMENTS / part.name, part)
    else:
        _rewrite(part, change)
    before = part_hashes(out)
    result = cli("process", sample_dir / NEW_VIDEO, "--out", out, "--local", "-q")
    assert result.exit_code == EXIT_USAGE
    lines = [line for line in result.output.splitlines() if line.strip()]
    error = " ".join(result.output.split())
    assert lines[0].startswith("error:"), result.output
    assert [m for m in messages if m not in error] == [], error
    assert part_hashes(out) == before  # nothing was written
    with pytest.raises(InputError, match="cannot be read as fervid's current table"):
        read_results(out, table)


# --------------------------------------------------------------------------- the rule
_VIDEOS = schema_for(VIDEOS)
_FRAMES = schema_for(FRAMES)


@pytest.mark.parametrize(
    ("found", "schema", "problem"),
    [
        (_VIDEOS, _VIDEOS, None),
        (_VIDEOS.remove(_VIDEOS.get_field_index("sample_interval_s")), _VIDEOS, None),
        (_FRAMES.remove(_FRAMES.get_field_index("face_found")), _FRAMES, None),  # default
        (_VIDEOS.remove(_VIDEOS.get_field_index("status")), _VIDEOS, "no column 'status'"),
        (
            _VIDEOS.set(_VIDEOS.get_field_index("n_faces"), pa.field("n_faces", pa.int64())),
            _VIDEOS,
            "column 'n_faces' is int64, expected int32",
        ),
        (
            _VIDEOS.set(
                _VIDEOS.get_field_index("processed_at"),
                pa.field("processed_at", pa.timestamp("ms", tz="UTC")),
            ),
            _VIDEOS,
            None,  # Parquet's own round trip of timestamp[s]
        ),
        (_VIDEOS.append(pa.field("x", pa.int8())), _VIDEOS, "columns ['x'] this fervid"),
    ],
)
def test_schema_problem(found: pa.Schema, schema: pa.Schema, problem: str | None) -> None:
    got = schema_problem(found, schema)
    assert got == problem if problem is None else problem in (got or "")


def test_conform_fills_added_columns_in_schema_order() -> None:
    old = pa.table({"status": ["ok"], "video_id": ["a"]})
    schema = pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("face_found", pa.bool_(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("decode_errors", pa.int64()),
        ]
    )
    t = conform(old.replace_schema_metadata({b"fervid.version": b"0.1.0"}), schema)
    assert t.schema.equals(schema, check_metadata=False)
    assert t.to_pylist() == [
        {"video_id": "a", "face_found": True, "status": "ok", "decode_errors": None}
    ]
    assert t.schema.metadata == {b"fervid.version": b"0.1.0"}
    with pytest.raises(InputError, match="column 'status' is int64"):
        conform(pa.table({"video_id": ["a"], "status": [1]}), schema)
