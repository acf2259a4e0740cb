"""The on-disk output store: both layouts, reruns, overwrite, atomicity, metadata."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fervid.errors import ConfigError, InputError
from fervid.model.modelfile import EMOTIONS
from fervid.output.schema import (
    META_MODEL_SHA256,
    META_SETTINGS,
    META_SETTINGS_HASH,
    META_VERSION,
    frames_schema,
    segments_schema,
    videos_schema,
)
from fervid.output.store import Layout, OutputStore, layout_of, output_paths, parts_root, read_table
from fervid.output.tables import (
    Identity,
    failed_video_table,
    frames_table,
    segments_table,
    video_row_table,
)
from fervid.records import VideoFaces, VideoInfo, VideoInput, VideoResult
from fervid.settings import SmoothSettings
from fervid.timeline.smooth import segment

WHEN = datetime(2024, 2, 1, tzinfo=UTC)
SETTINGS = {"smooth": {"seconds": 1.5}, "sample": {"fps": 2.0}}


def make_video(vid: str, rel_path: str) -> VideoInput:
    return VideoInput(path=Path("/in") / rel_path, video_id=vid, rel_path=rel_path, size_bytes=100)


def video_tables(
    v: VideoInput, n_rows: int, settings_hash: str = "h1"
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """frames, segments and the videos row of a video with one face seen in ``n_rows``
    frames at 2 fps (happy, then sad)."""
    t = np.arange(n_rows) * 0.5
    probs = np.full((n_rows, 7), 0.05, np.float32)
    probs[np.arange(n_rows), np.where(np.arange(n_rows) < n_rows // 2, 3, 5)] = 0.7
    faces = VideoFaces(
        video=v,
        info=VideoInfo(width=640, height=480, fps=25.0, duration_s=n_rows * 0.5 + 1, n_frames=100),
        sampled_frame_index=np.arange(n_rows + 2, dtype=np.int64) * 12,
        sampled_timestamp_s=np.arange(n_rows + 2) * 0.5,
        frame_index=np.arange(n_rows, dtype=np.int64) * 12, timestamp_s=t,
        boxes=np.tile(np.array([[10, 20, 110, 140]], np.float32), (n_rows, 1)),
        det_scores=np.full(n_rows, 0.9, np.float32), crops=np.zeros((n_rows, 2, 2), np.uint8),
    )  # fmt: skip
    segs = segment(t, probs, SmoothSettings(min_segment_s=0.0), max_gap_s=2.0, frame_interval_s=0.5)
    result = VideoResult(
        faces=faces, class_names=EMOTIONS, face_id=np.zeros(n_rows, np.int32), probs=probs,
        smoothed=probs, segments={0: segs} if n_rows else {},
    )  # fmt: skip
    ident = Identity.of(v)
    row = video_row_table(
        result,
        ident,
        settings_hash=settings_hash,
        model_sha256="m" * 64,
        fervid_version="0.1.0",
        processed_at=WHEN,
    )
    return frames_table(result, ident), segments_table(result, ident), row


def failed_row(v: VideoInput, settings_hash: str = "h1", status: str = "failed") -> pa.Table:
    return failed_video_table(
        Identity.of(v), status=status, error="DecodeError: cannot open",
        settings_hash=settings_hash, model_sha256="m" * 64, fervid_version="0.1.0",
        class_names=EMOTIONS, size_bytes=v.size_bytes,
    )  # fmt: skip


def empty_tables() -> tuple[pa.Table, pa.Table]:
    return frames_schema(EMOTIONS).empty_table(), segments_schema(EMOTIONS).empty_table()


def open_store(out: Path, settings_hash: str = "h1", overwrite: bool = False) -> OutputStore:
    return OutputStore(
        out=out, class_names=EMOTIONS, settings_json=SETTINGS, model_sha256="m" * 64,
        settings_hash=settings_hash, fervid_version="0.1.0", overwrite=overwrite,
    )  # fmt: skip


A = make_video("aaaa", "s02/a.mp4")
B = make_video("bbbb", "s01/b.mp4")  # sorts before A by path
C = make_video("cccc", "s03/c.mp4")


@pytest.fixture(params=["file", "dataset"])
def out(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / ("results.parquet" if request.param == "file" else "results")


def globs(out: Path) -> dict[str, str]:
    """What a user passes to DuckDB / polars for each table."""
    if layout_of(out) is Layout.FILE:
        return {t: str(p) for t, p in output_paths(out).items()}
    return {t: str(out / t / "*.parquet") for t in ("frames", "segments", "videos")}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".tmp-" in p.name]


def write_two(out: Path) -> dict[str, Path]:
    store = open_store(out)
    store.write_video(A.video_id, *video_tables(A, 6))
    store.write_video(B.video_id, *video_tables(B, 0))  # no faces: empty frames and segments
    return store.finalize()


# --------------------------------------------------------------------------- layouts
@pytest.mark.parametrize(
    ("name", "make_dir", "expected"),
    [
        ("results.parquet", False, Layout.FILE),
        ("Results.PARQUET", False, Layout.FILE),
        ("results", False, Layout.DATASET),
        ("run.2024-01-31", False, Layout.DATASET),
        ("results.parquet", True, Layout.DATASET),  # an existing folder is always a dataset
    ],
)
def test_layout_of(tmp_path: Path, name: str, make_dir: bool, expected: Layout) -> None:
    if make_dir:
        (tmp_path / name).mkdir()
    assert layout_of(tmp_path / name) is expected


@pytest.mark.parametrize(("name", "make_file"), [("results.csv", False), ("notes.txt", True)])
def test_layout_refuses_other_files(tmp_path: Path, name: str, make_file: bool) -> None:
    if make_file:
        (tmp_path / name).write_text("x")
    with pytest.raises(ConfigError, match="--out="):
        layout_of(tmp_path / name)


def test_file_mode_names(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    assert output_paths(out) == {
        "frames": out,
        "segments": tmp_path / "results.segments.parquet",
        "videos": tmp_path / "results.videos.parquet",
    }
    assert parts_root(out) == tmp_path / ".results.parquet.fervid"


# --------------------------------------------------------------------------- round trip
def test_write_finalize_and_read_with_every_reader(out: Path) -> None:
    paths = write_two(out)
    g = globs(out)
    if layout_of(out) is Layout.FILE:
        assert all(p.is_file() for p in paths.values())
        assert sorted(p.name for p in out.parent.glob("*.parquet")) == [
            "results.parquet", "results.segments.parquet", "results.videos.parquet",
        ]  # fmt: skip
    else:
        assert sorted(p.name for p in (out / "frames").glob("*.parquet")) == [
            "aaaa.parquet",
            "bbbb.parquet",
        ]

    # pyarrow, via read_table: the declared schemas come back exactly
    frames, segs, videos = (read_table(out, t) for t in ("frames", "segments", "videos"))
    assert frames.schema.equals(frames_schema(EMOTIONS))
    assert segs.schema.equals(segments_schema(EMOTIONS))
    assert videos.schema.equals(videos_schema(EMOTIONS))
    assert frames.num_rows == 6 and set(frames.column("video_id").to_pylist()) == {"aaaa"}
    assert segs.column("emotion").to_pylist() == ["happy", "sad"]
    assert sorted(videos.column("video_id").to_pylist()) == ["aaaa", "bbbb"]
    assert videos.column("processed_at").to_pylist() == [WHEN, WHEN]

    # pandas
    src = {t: (p if layout_of(out) is Layout.FILE else out / t) for t, p in paths.items()}
    pdf = pd.read_parquet(src["frames"])
    assert len(pdf) == 6 and list(pdf["label"]) == ["happy"] * 3 + ["sad"] * 3
    pvid = pd.read_parquet(src["videos"]).set_index("video_id")
    assert pvid.loc["aaaa", "n_face_rows"] == 6 and pvid.loc["bbbb", "n_face_rows"] == 0
    assert pvid.loc["aaaa", "share_happy"] == pytest.approx(0.5)

    # polars
    pf = pl.read_parquet(g["frames"])
    assert pf.height == 6
    assert pf.group_by("label").len().sort("label").rows() == [("happy", 3), ("sad", 3)]
    assert pl.read_parquet(g["videos"]).height == 2

    # DuckDB
    rows = duckdb.sql(
        f"SELECT smoothed_label, count(*) FROM read_parquet('{g['frames']}') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("happy", 3), ("sad", 3)]
    [(n,)] = duckdb.sql(f"SELECT sum(duration_s) FROM read_parquet('{g['segments']}')").fetchall()
    assert n == pytest.approx(3.0)  # 6 rows at 2 fps
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{g['videos']}')").fetchall() == [(2,)]


def test_consolidated_files_are_ordered_by_path(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    store = open_store(out)
    for v in (C, A, B):
        store.write_video(v.video_id, *video_tables(v, 2))
    store.finalize()
    assert (
        pq.read_table(out).column("path").to_pylist()
        == ["s01/b.mp4"] * 2 + ["s02/a.mp4"] * 2 + ["s03/c.mp4"] * 2
    )
    assert pq.read_table(output_paths(out)["videos"]).column("video_id").to_pylist() == [
        "bbbb",
        "aaaa",
        "cccc",
    ]


def test_empty_run_still_writes_full_schemas(out: Path) -> None:
    open_store(out).finalize()
    if layout_of(out) is Layout.FILE:
        for t, p in output_paths(out).items():
            got = pq.read_table(p)
            assert (
                got.num_rows == 0
                and got.column_names
                == {"frames": frames_schema, "segments": segments_schema, "videos": videos_schema}[
                    t
                ](EMOTIONS).names
            )
    else:
        with pytest.raises(InputError, match="no videos results"):
            read_table(out, "videos")


def test_metadata_in_every_file(out: Path) -> None:
    write_two(out)
    files = [p for p in out.parent.rglob("*.parquet")]
    assert len(files) >= 6
    for f in files:
        meta = pq.read_schema(f).metadata
        assert json.loads(meta[META_SETTINGS]) == SETTINGS, f
        assert meta[META_VERSION] == b"0.1.0"
        assert meta[META_MODEL_SHA256] == b"m" * 64
        assert meta[META_SETTINGS_HASH] == b"h1"
    assert read_table(out, "frames").schema.metadata[META_SETTINGS_HASH] == b"h1"


# --------------------------------------------------------------------------- reruns
def test_rerun_skips_done_videos(out: Path) -> None:
    write_two(out)
    store = open_store(out)
    assert store.completed() == {"aaaa": "h1", "bbbb": "h1"}
    assert store.should_skip("aaaa") and store.should_skip("bbbb")
    assert not store.should_skip("cccc")
    store.finalize()


def test_failed_videos_are_retried(out: Path) -> None:
    store = open_store(out)
    store.write_video(C.video_id, *empty_tables(), failed_row(C))
    store.write_video(A.video_id, *video_tables(A, 4))
    store.finalize()
    assert read_table(out, "videos").to_pydict()["status"] == ["ok", "failed"]

    store = open_store(out)
    assert store.completed() == {"aaaa": "h1"}
    assert not store.should_skip("cccc")  # failed: retried
    store.write_video(C.video_id, *video_tables(C, 2))
    assert store.should_skip("cccc")
    store.finalize()
    videos = read_table(out, "videos").to_pydict()
    assert sorted(zip(videos["video_id"], videos["status"], strict=True)) == [
        ("aaaa", "ok"),
        ("cccc", "ok"),
    ]
    assert read_table(out, "frames").num_rows == 6


def test_changed_settings_redo_without_duplicates(out: Path) -> None:
    write_two(out)
    store = open_store(out, settings_hash="h2")
    assert store.completed() == {"aaaa": "h1", "bbbb": "h1"}
    assert not store.should_skip("aaaa")
    store.write_video(A.video_id, *video_tables(A, 4, settings_hash="h2"))  # now 4 rows
    store.finalize()
    frames = read_table(out, "frames")
    assert frames.num_rows == 4  # the 6 old rows are gone, not appended to
    videos = read_table(out, "videos").to_pydict()
    assert sorted(zip(videos["video_id"], videos["settings_hash"], strict=True)) == [
        ("aaaa", "h2"),
        ("bbbb", "h1"),
    ]
    assert open_store(out, settings_hash="h2").should_skip("aaaa")


def test_overwrite_redoes_inputs_and_keeps_other_videos(out: Path) -> None:
    write_two(out)
    store = open_store(out, overwrite=True)
    assert not store.should_skip("aaaa") and not store.should_skip("bbbb")
    store.write_video(A.video_id, *video_tables(A, 2))
    store.finalize()
    assert read_table(out, "frames").num_rows == 2
    assert sorted(read_table(out, "videos").column("video_id").to_pylist()) == ["aaaa", "bbbb"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_failure_on_rerun_keeps_the_earlier_result(out: Path, overwrite: bool) -> None:
    write_two(out)
    before = read_table(out, "frames")
    store = open_store(out, settings_hash="h2", overwrite=overwrite)
    failed = failed_video_table(
        Identity.of(A), error="ValueError: max_gap_s must be > 0", settings_hash="h2",
        model_sha256="m" * 64, fervid_version="0.1.0", class_names=EMOTIONS,
    )  # fmt: skip
    assert store.write_video(A.video_id, *empty_tables(), failed) is False
    assert store.kept == ["aaaa"]
    store.finalize()
    after = read_table(out, "frames")
    assert after.num_rows == before.num_rows == 6
    assert after.drop_columns([]).equals(before)  # the rows themselves, unchanged
    videos = {r["video_id"]: r for r in read_table(out, "videos").to_pylist()}
    assert videos["aaaa"]["status"] == "ok" and videos["aaaa"]["settings_hash"] == "h1"
    assert videos["aaaa"]["last_error"] == "ValueError: max_gap_s must be > 0"
    assert videos["bbbb"]["last_error"] is None
    meta = pq.read_schema(parts_root(out) / "videos" / "aaaa.parquet").metadata
    assert meta[META_SETTINGS_HASH] == b"h1"  # still says which settings made the rows
    # still done with its own settings; the new settings retry it next time
    again = open_store(out, settings_hash="h2")
    assert again.completed() == {"aaaa": "h1", "bbbb": "h1"} and not again.should_skip("aaaa")
    again.write_video(A.video_id, *video_tables(A, 3, settings_hash="h2"))  # a success replaces
    again.finalize()
    row = next(r for r in read_table(out, "videos").to_pylist() if r["video_id"] == "aaaa")
    assert row["settings_hash"] == "h2" and row["last_error"] is None
    assert read_table(out, "frames").num_rows == 3


def test_failure_replaces_a_failure(out: Path) -> None:
    store = open_store(out)
    store.write_video(C.video_id, *empty_tables(), failed_row(C))
    assert store.write_video(C.video_id, *empty_tables(), failed_row(C, settings_hash="h2"))
    store.finalize()
    row = read_table(out, "videos").to_pylist()[0]
    assert (row["status"], row["settings_hash"], row["last_error"]) == ("failed", "h2", None)


def test_ok_with_warnings_counts_as_done(out: Path) -> None:
    store = open_store(out)
    frames, segs, row = video_tables(A, 2)
    i = row.schema.get_field_index("status")
    row = row.set_column(i, row.schema.field(i), pa.array(["ok_with_warnings"]))
    store.write_video(A.video_id, frames, segs, row)
    store.finalize()
    assert open_store(out).should_skip("aaaa")


def test_duplicate_content_row_does_not_undo_the_original(out: Path) -> None:
    store = open_store(out)
    store.write_video(A.video_id, *video_tables(A, 2))
    dup = make_video("aaaa", "copy/a.mp4")  # same content: same video_id
    store.write_video("aaaa-dup-1234", *empty_tables(), failed_row(dup, status="skipped"))
    assert store.should_skip("aaaa")
    store.finalize()
    assert open_store(out).completed() == {"aaaa": "h1"}
    videos = read_table(out, "videos").to_pydict()
    assert sorted(zip(videos["path"], videos["video_id"], videos["status"], strict=True)) == [
        ("copy/a.mp4", "aaaa", "skipped"), ("s02/a.mp4", "aaaa", "ok"),
    ]  # fmt: skip


# --------------------------------------------------------------------------- atomicity
def test_no_temporary_files_left(out: Path) -> None:
    write_two(out)
    store = open_store(out, overwrite=True)
    store.write_video(A.video_id, *video_tables(A, 3))
    store.finalize()
    assert temp_files(out.parent) == []


def test_parts_of_a_crashed_run_are_finalized_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    store = open_store(out)
    store.write_video(A.video_id, *video_tables(A, 6))
    store.write_video(B.video_id, *video_tables(B, 2))
    store.close()  # the run dies before finalize: no consolidated file yet
    assert not out.exists()
    assert read_table(out, "frames").num_rows == 8  # the parts are readable meanwhile
    store = open_store(out)
    assert store.should_skip("aaaa") and store.should_skip("bbbb")
    store.finalize()
    assert pq.read_table(out).num_rows == 8


def test_leftovers_of_a_crash_mid_write_are_cleaned(out: Path) -> None:
    write_two(out)
    root = parts_root(out)
    # a temporary file and a video whose frames were replaced but whose videos row was not
    (root / "frames" / ".cccc.parquet.tmp-1-abcd").write_bytes(b"partial")
    shutil.copy(root / "frames" / "aaaa.parquet", root / "frames" / "cccc.parquet")
    assert read_table(out, "frames").num_rows == 6  # dataset readers skip the orphan too
    store = open_store(out)
    assert not (root / "frames" / ".cccc.parquet.tmp-1-abcd").exists()
    assert not (root / "frames" / "cccc.parquet").exists()
    assert not store.should_skip("cccc")
    store.finalize()
    assert read_table(out, "frames").num_rows == 6


@pytest.mark.parametrize("fail_in", ["frames", "segments", "videos"])
def test_write_failure_keeps_the_old_rows(
    out: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    write_two(out)
    store = open_store(out, settings_hash="h2")
    real_replace = os.replace
    calls = []

    def failing_replace(src: os.PathLike, dst: os.PathLike) -> None:
        if Path(dst).suffix == ".parquet":
            calls.append(Path(dst).parent.name)
            if calls.count(fail_in) == 1 and calls[-1] == fail_in:  # the new file, once
                raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        store.write_video(A.video_id, *video_tables(A, 2, settings_hash="h2"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert fail_in in calls
    assert temp_files(out.parent) == []
    assert not list(parts_root(out).rglob("*.prev"))
    assert store.completed() == {"aaaa": "h1", "bbbb": "h1"}
    store.close()
    store = open_store(out, settings_hash="h2")
    assert store.completed() == {"aaaa": "h1", "bbbb": "h1"}  # the old result is back
    store.finalize()
    assert read_table(out, "frames").num_rows == 6


def test_crash_mid_replace_restores_the_old_rows(out: Path) -> None:
    """What a SIGKILL between "old videos row removed" and "new one renamed in" leaves:
    new frames in place, the old parts as backups. The next run puts the old ones back."""
    write_two(out)
    root = parts_root(out)
    for t in ("frames", "segments", "videos"):
        os.link(root / t / "aaaa.parquet", root / t / ".aaaa.parquet.prev")
    (root / "videos" / "aaaa.parquet").unlink()
    new_frames = video_tables(A, 2, settings_hash="h2")[0]
    pq.write_table(new_frames, root / "frames" / "new.tmp")  # renamed in, as the store does
    os.replace(root / "frames" / "new.tmp", root / "frames" / "aaaa.parquet")
    store = open_store(out, settings_hash="h2")
    assert store.completed() == {"aaaa": "h1", "bbbb": "h1"}
    store.finalize()
    assert read_table(out, "frames").num_rows == 6
    assert not list(root.rglob("*.prev"))


@pytest.mark.parametrize("table", ["frames", "videos"])
def test_torn_part_is_quarantined_and_its_video_redone(out: Path, table: str) -> None:
    write_two(out)
    root = parts_root(out)
    part = root / table / "aaaa.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # torn mid-write
    store = open_store(out)
    assert len(store.warnings) == 1
    assert f"{table}/aaaa.parquet" in store.warnings[0] and "redone" in store.warnings[0]
    assert str(out.parent) not in store.warnings[0]  # no absolute paths in the message
    assert store.completed() == {"bbbb": "h1"} and not store.should_skip("aaaa")
    assert sorted(p.parent.name for p in (root / ".quarantine").rglob("aaaa.parquet.*")) == [
        "frames", "segments", "videos"
    ]  # fmt: skip
    store.write_video(A.video_id, *video_tables(A, 4))
    store.finalize()
    assert read_table(out, "frames").num_rows == 4
    assert open_store(out).warnings == []  # moved away once, not reported again


def test_parts_of_an_older_version_are_read_with_new_columns_null(out: Path) -> None:
    write_two(out)
    part = parts_root(out) / "videos" / "bbbb.parquet"
    old = pq.read_table(part)
    pq.write_table(old.drop_columns(["last_error", "decode_errors"]), part)
    store = open_store(out)  # not refused as "another model's classes"
    assert store.completed() == {"aaaa": "h1", "bbbb": "h1"}
    store.write_video(C.video_id, *video_tables(C, 1))
    store.finalize()
    rows = {r["video_id"]: r for r in read_table(out, "videos").to_pylist()}
    assert rows["bbbb"]["last_error"] is None and rows["bbbb"]["decode_errors"] is None


def test_one_run_at_a_time(out: Path) -> None:
    first = open_store(out)
    with pytest.raises(ConfigError, match="another fervid run"):
        open_store(out)
    first.close()
    open_store(out).finalize()


def test_consolidated_files_are_adopted_when_parts_are_gone(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    write_two(out)
    shutil.rmtree(parts_root(out))  # someone cleaned up the hidden folder
    store = open_store(out, settings_hash="h2")
    assert store.completed() == {"aaaa": "h1", "bbbb": "h1"}
    adopted = pq.read_schema(parts_root(out) / "videos" / "aaaa.parquet").metadata
    assert adopted[META_SETTINGS_HASH] == b"h1"  # the settings the rows were made with
    store.write_video(C.video_id, *video_tables(C, 2, settings_hash="h2"))
    store.finalize()
    assert sorted(read_table(out, "videos").column("video_id").to_pylist()) == [
        "aaaa",
        "bbbb",
        "cccc",
    ]
    assert read_table(out, "frames").num_rows == 8


# --------------------------------------------------------------------------- refusals
def test_write_refuses_schema_mismatch(out: Path) -> None:
    store = open_store(out)
    frames, segs, row = video_tables(A, 2)
    with pytest.raises(ValueError, match="frames table does not match its schema"):
        store.write_video(A.video_id, frames.drop_columns(["label"]), segs, row)
    with pytest.raises(ValueError, match="videos table does not match"):
        store.write_video(A.video_id, frames, segs, frames)
    with pytest.raises(ValueError, match="exactly 1"):
        store.write_video(A.video_id, frames, segs, pa.concat_tables([row, row]))
    with pytest.raises(ValueError, match="rows belong to videos"):
        store.write_video(B.video_id, frames, segs, video_tables(B, 0)[2])
    with pytest.raises(ValueError, match="video_id="):
        store.write_video("../escape", frames, segs, row)
    assert store.completed() == {}
    store.finalize()


def test_other_class_names_refused(out: Path) -> None:
    write_two(out)
    with pytest.raises(ConfigError, match="another model's classes"):
        OutputStore(
            out=out, class_names=(*EMOTIONS, "contempt"), settings_json={}, model_sha256="x",
            settings_hash="h", fervid_version="0.1.0", overwrite=False,
        )  # fmt: skip
    open_store(out).finalize()  # the refused store released its lock


def test_closed_store_refuses_writes(out: Path) -> None:
    store = open_store(out)
    store.finalize()
    with pytest.raises(RuntimeError, match="finalized or closed"):
        store.write_video(A.video_id, *video_tables(A, 1))


def test_rerun_without_changes_keeps_the_consolidated_files(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    paths = write_two(out)
    before = {t: p.stat().st_mtime_ns for t, p in paths.items()}
    open_store(out).finalize()  # everything skipped, nothing written
    assert {t: p.stat().st_mtime_ns for t, p in paths.items()} == before
    (parts_root(out) / "videos" / "bbbb.parquet").unlink()  # a video's part removed by hand
    open_store(out).finalize()
    assert read_table(out, "videos").column("video_id").to_pylist() == ["aaaa"]


def test_stored_path_names_the_analysed_copy(out: Path) -> None:
    write_two(out)
    store = open_store(out)
    assert store.stored_path("aaaa") == "s02/a.mp4" and store.stored_path("cccc") is None
    store.write_video(C.video_id, *empty_tables(), failed_row(C))
    assert store.stored_path("cccc") is None  # a failure is no result to point at
    store.write_video(C.video_id, *video_tables(C, 1))
    assert store.stored_path("cccc") == "s03/c.mp4"
    store.finalize()


def test_torn_consolidated_file_is_rewritten_from_the_parts(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    write_two(out)
    out.write_bytes(out.read_bytes()[:50])  # frames file torn; the parts are intact
    open_store(out).finalize()  # nothing to redo, but the file is not fresh
    assert pq.read_table(out).num_rows == 6


def test_write_failure_without_hard_links_keeps_a_done_video_whole(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where hard links are refused (some network shares) there is no backup; a write
    that fails before the old videos row is touched must still leave the old result."""
    write_two(out)
    store = open_store(out, settings_hash="h2")

    def no_links(*args: object) -> None:
        raise OSError(1, "Operation not permitted")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.write_video(A.video_id, *video_tables(A, 2, settings_hash="h2"))
    monkeypatch.undo()
    store.finalize()
    assert read_table(out, "frames").num_rows == 6
    assert open_store(out, settings_hash="h2").completed() == {"aaaa": "h1", "bbbb": "h1"}
