"""Session summaries on hand-built tables whose indices are worked out by hand."""

from __future__ import annotations

import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from longitudinal_tables import frame_rows, session, tables, video_row, write_dataset

from fervid.errors import ConfigError, DataError
from fervid.longitudinal.summary import (
    RULE_LONGEST,
    RULE_NO_FACE,
    RULE_NOT_ANALYSED,
    RULE_OVERRIDE,
    IndexSettings,
    id_pattern_warnings,
    load_patient_override,
    load_sessions,
    read_sessions,
    sessions_path,
    sessions_schema,
    summarize_dir,
    summarize_sessions,
    unassigned_recordings,
    write_sessions,
)


def _rows(t: pa.Table) -> list[dict]:
    return t.to_pylist()


def _patient(t: pa.Table, video_id: str) -> dict:
    rows = [r for r in _rows(t) if r["video_id"] == video_id and r["is_patient"]]
    assert len(rows) == 1, rows
    return rows[0]


def test_two_emotions_half_and_half() -> None:
    """happy, happy, sad, sad at 0.5 s: shares 1/2, valence 0, valence SD 1, TV 1/2."""
    frames, segs, videos = session("v1", "P001", dt.date(2024, 1, 1), ["happy"] * 2 + ["sad"] * 2)
    r = _patient(summarize_sessions(*tables(frames, segs, videos)), "v1")
    assert r["face_id"] == 0 and r["patient_rule"] == RULE_LONGEST
    assert r["sample_interval_s"] == pytest.approx(0.5)
    assert r["face_present_s"] == pytest.approx(2.0)
    assert r["face_present_ratio"] == pytest.approx(1.0)
    assert r["n_face_frames"] == 4
    assert r["share_happy"] == pytest.approx(0.5) and r["share_sad"] == pytest.approx(0.5)
    assert r["share_neutral"] == 0.0
    assert r["mean_smooth_happy"] == pytest.approx(0.5)
    assert r["valence"] == pytest.approx(0.0)
    assert r["valence_sd"] == pytest.approx(1.0)
    assert r["expressivity"] == pytest.approx(0.5)
    assert r["positive_share"] == pytest.approx(0.5) and r["negative_share"] == pytest.approx(0.5)
    assert r["dominant_emotion"] == "happy"  # a tie goes to the class listed first
    assert r["n_segments"] == 2
    assert r["n_segments_happy"] == 1 and r["mean_segment_s_happy"] == pytest.approx(1.0)
    assert r["n_segments_fear"] == 0 and r["mean_segment_s_fear"] is None
    assert r["mean_det_score"] == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("labels", "expressivity"),
    [
        (["neutral"] * 4, 0.0),
        (["happy"] * 2 + ["sad"] * 2, 0.5),
        (["happy"] * 2 + ["sad", "fear"], 1 - (0.25 + 0.0625 + 0.0625)),
        (["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"], 1 - 1 / 7),
    ],
)
def test_expressivity_of_one_hot_labels_is_gini_simpson(
    labels: list[str], expressivity: float
) -> None:
    """With one-hot probabilities, mean TV distance to the mean = 1 - sum of squared shares."""
    frames, segs, videos = session("v1", "P001", dt.date(2024, 1, 1), labels)
    r = _patient(summarize_sessions(*tables(frames, segs, videos)), "v1")
    assert r["expressivity"] == pytest.approx(expressivity)


def test_flat_session_has_zero_expressivity() -> None:
    frames, segs, videos = session("v1", "P001", dt.date(2024, 1, 1), ["neutral"] * 6)
    r = _patient(summarize_sessions(*tables(frames, segs, videos)), "v1")
    assert (r["expressivity"], r["valence_sd"], r["valence"]) == (0.0, 0.0, 0.0)
    assert r["share_neutral"] == 1.0 and r["dominant_emotion"] == "neutral"


# f1 = {happy .6, neutral .2, sad .2}, f2 = {surprise .6, neutral .2, angry .2}:
# positive = (.6, .6 w), negative = (.2, .2) -> valence = .1 + .3 w; label shares 1/2 each;
# mean vector {happy .3, surprise .3, neutral .2, sad .1, angry .1} -> TV .4 for both rows.
@pytest.mark.parametrize(
    ("surprise_weight", "valence", "positive_share", "positive_affect"),
    [(0.0, 0.1, 0.5, 0.3), (0.5, 0.25, 0.75, 0.45), (1.0, 0.4, 1.0, 0.6)],
)
def test_valence_and_surprise_weight(
    surprise_weight: float, valence: float, positive_share: float, positive_affect: float
) -> None:
    states = [
        {"happy": 0.6, "neutral": 0.2, "sad": 0.2},
        {"surprise": 0.6, "neutral": 0.2, "angry": 0.2},
    ]
    frames = frame_rows("v1", 0, [0.0, 0.5], states)
    videos = [video_row("v1", duration_s=1.0, frames_sampled=2)]
    t = summarize_sessions(
        *tables(frames, [], videos), settings=IndexSettings(surprise_weight=surprise_weight)
    )
    r = _patient(t, "v1")
    assert r["valence"] == pytest.approx(valence)
    assert r["positive_share"] == pytest.approx(positive_share)
    assert r["positive_affect"] == pytest.approx(positive_affect)
    assert r["negative_affect"] == pytest.approx(0.2)
    assert r["negative_share"] == 0.0
    assert r["expressivity"] == pytest.approx(0.4)
    assert r["valence_sd"] == pytest.approx(abs(0.4 - (0.6 * surprise_weight - 0.2)) / 2)
    assert r["n_segments"] == 0


@pytest.mark.parametrize(
    ("timestamps", "labels", "duration", "sampled", "share_happy", "present_s", "ratio"),
    [
        # a face missed for 3 samples: the gap is absence, not happiness continued
        ([0.0, 0.5, 1.0, 3.0], ["happy"] * 3 + ["sad"], 4.0, 8, 0.75, 2.0, 0.5),
        # rows closer than dt weigh only the time to the next row: (.1) vs (.5 + .5)
        ([0.0, 0.1, 0.6], ["happy", "sad", "sad"], 1.5, 3, 0.1 / 1.1, 1.1, 1.0),
        # no duration / frame count: dt is the median step between face timestamps
        ([0.0, 0.25, 0.5, 0.75], ["happy"] + ["sad"] * 3, None, None, 0.25, 1.0, None),
    ],
)
def test_time_weighting(
    timestamps: list[float],
    labels: list[str],
    duration: float | None,
    sampled: int | None,
    share_happy: float,
    present_s: float,
    ratio: float | None,
) -> None:
    frames = frame_rows("v1", 0, timestamps, labels)
    videos = [video_row("v1", duration_s=duration, frames_sampled=sampled)]
    r = _patient(summarize_sessions(*tables(frames, [], videos)), "v1")
    assert r["share_happy"] == pytest.approx(share_happy)
    assert r["share_happy"] + r["share_sad"] == pytest.approx(1.0)
    assert r["face_present_s"] == pytest.approx(present_s)
    assert r["face_present_ratio"] == (None if ratio is None else pytest.approx(ratio))


def test_face_absent_session_is_one_row_with_zero_presence() -> None:
    t = summarize_sessions(
        *tables([], [], [video_row("empty", duration_s=30.0, frames_sampled=60)])
    )
    assert t.num_rows == 1
    r = _rows(t)[0]
    assert r["is_patient"] is True and r["face_id"] is None and r["patient_rule"] == RULE_NO_FACE
    assert r["face_present_ratio"] == 0.0 and r["face_present_s"] == 0.0 and r["n_face_frames"] == 0
    assert r["n_faces"] == 0 and r["n_segments"] == 0
    for col in ("share_happy", "mean_smooth_sad", "valence", "expressivity", "dominant_emotion"):
        assert r[col] is None, col


def test_failed_video_is_one_row_not_analysed() -> None:
    frames, segs, videos = session("ok1", "P001", dt.date(2024, 1, 1), ["happy"] * 4)
    videos.append(video_row("bad", status="failed", duration_s=None, frames_sampled=None))
    t = summarize_sessions(*tables(frames, segs, videos))
    r = _patient(t, "bad")
    assert r["status"] == "failed" and r["patient_rule"] == RULE_NOT_ANALYSED
    assert r["face_present_ratio"] is None and r["valence"] is None
    assert _patient(t, "ok1")["share_happy"] == 1.0


def _two_faces(n0: int, n1: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    frames = frame_rows("v2", 0, [i * 0.5 for i in range(n0)], ["happy"] * n0)
    frames += frame_rows("v2", 1, [i * 0.5 for i in range(n1)], ["sad"] * n1)
    return tables(frames, [], [video_row("v2", duration_s=5.0, frames_sampled=10)])


@pytest.mark.parametrize(
    ("n0", "n1", "override", "patient", "rule"),
    [
        (4, 6, None, 1, RULE_LONGEST),  # the face present longest
        (6, 4, None, 0, RULE_LONGEST),
        (5, 5, None, 0, RULE_LONGEST),  # tie -> the lower face_id
        (4, 6, {"v2": 0}, 0, RULE_OVERRIDE),
        (4, 6, {"other-video": 0}, 1, RULE_LONGEST),  # entries for other videos are ignored
    ],
)
def test_patient_face_rule(
    n0: int, n1: int, override: dict | None, patient: int, rule: str
) -> None:
    t = summarize_sessions(*_two_faces(n0, n1), patient_override=override)
    assert t.num_rows == 2
    r = _patient(t, "v2")
    assert (r["face_id"], r["patient_rule"], r["n_faces"]) == (patient, rule, 2)
    assert r["share_happy" if patient == 0 else "share_sad"] == 1.0
    other = next(x for x in _rows(t) if not x["is_patient"])
    assert other["patient_rule"] is None and other["face_id"] == 1 - patient
    assert r["face_present_ratio"] == pytest.approx((n0, n1)[patient] / 10)


@pytest.mark.parametrize("fmt", ["json", "json-list", "csv"])
def test_override_files(tmp_path, fmt: str) -> None:
    if fmt == "json":
        path = tmp_path / "o.json"
        path.write_text(json.dumps({"v2": 0}))
    elif fmt == "json-list":
        path = tmp_path / "o.json"
        path.write_text(json.dumps([{"video_id": "v2", "face_id": "0"}]))
    else:
        path = tmp_path / "o.csv"
        path.write_text("video_id,face_id\nv2,0\n")
    assert load_patient_override(path) == {"v2": 0}
    r = _patient(summarize_sessions(*_two_faces(4, 6), patient_override=str(path)), "v2")
    assert (r["face_id"], r["patient_rule"]) == (0, RULE_OVERRIDE)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"v2": 7}, r"face_id=7 does not occur.*faces present: \[0, 1\]"),
        ({"v2": "zero"}, r"expected an integer face_id"),
    ],
)
def test_bad_override_is_a_config_error(override: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        summarize_sessions(*_two_faces(4, 6), patient_override=override)


def test_override_on_faceless_video_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"faces present: \[\]"):
        summarize_sessions(*tables([], [], [video_row("empty")]), patient_override={"empty": 0})


def test_bad_override_file_suffix(tmp_path) -> None:
    (tmp_path / "o.txt").write_text("v2 0")
    with pytest.raises(ConfigError, match=r"expected \.json or \.csv"):
        load_patient_override(tmp_path / "o.txt")


def test_surprise_weight_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"surprise_weight=1.5; expected a value in \[0, 1\]"):
        IndexSettings(surprise_weight=1.5)


def test_pandas_input_gives_the_same_table() -> None:
    frames, segs, videos = session("v1", "P001", dt.date(2024, 1, 1), ["happy", "sad", "sad"])
    f, s, v = tables(frames, segs, videos)
    a = summarize_sessions(f, s, v)
    b = summarize_sessions(f.to_pandas(), s.to_pandas(), v.to_pandas())
    assert a.equals(b)
    assert a.schema.equals(sessions_schema(), check_metadata=False)


def test_latest_video_row_wins() -> None:
    frames, segs, videos = session("v1", "P001", dt.date(2024, 1, 1), ["happy"] * 2)
    old = video_row("v1", status="failed", processed_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    t = summarize_sessions(*tables(frames, segs, [old, *videos]))
    assert t.num_rows == 1 and _rows(t)[0]["status"] == "ok"


def _three_sessions() -> tuple[list, list, list]:
    f, s, v = [], [], []
    for i, labels in enumerate([["happy"] * 4, ["sad"] * 2 + ["fear"] * 2, []]):
        fi, si, vi = session(f"v{i}", "P001", dt.date(2024, 1, 1 + i), labels)
        f, s, v = f + fi, s + si, v + vi
    return f, s, v


def test_summarize_dir_reads_both_layouts(tmp_path) -> None:
    f, s, v = _three_sessions()
    expected = summarize_sessions(*tables(f, s, v))
    got_dir = summarize_dir(write_dataset(tmp_path / "ds", f, s, v))
    assert got_dir.equals(expected)
    ft, st, vt = tables(f, s, v)
    pq.write_table(ft, tmp_path / "results.parquet")
    pq.write_table(st, tmp_path / "results.segments.parquet")
    pq.write_table(vt, tmp_path / "results.videos.parquet")
    assert summarize_dir(tmp_path / "results.parquet").equals(expected)
    assert sessions_path(tmp_path / "results.parquet") == tmp_path / "results.sessions.parquet"
    # beside the dataset folder, never inside it (a glob over the folder reads fervid's tables only)
    assert sessions_path(tmp_path / "ds") == tmp_path / "ds.sessions.parquet"


def test_write_sessions_round_trip_and_refuses_other_schemas(tmp_path) -> None:
    t = summarize_sessions(*tables(*_three_sessions()))
    path = write_sessions(t, tmp_path / "sessions.parquet")
    back = read_sessions(path)
    assert back.equals(t) and back.schema.metadata == t.schema.metadata
    with pytest.raises(DataError, match="does not match sessions_schema"):
        write_sessions(t.drop_columns(["valence"]), tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def _cached_marker(out) -> pa.Table:
    """Write a 1-row sessions file carrying the key of the full summary: a read that
    returns 1 row came from the cache."""
    fresh = summarize_dir(out)
    marker = fresh.filter(pc.equal(fresh["video_id"], "v0"))
    write_sessions(marker, sessions_path(out))
    return fresh


def test_load_sessions_uses_the_file_only_while_it_is_current(tmp_path) -> None:
    f, s, v = _three_sessions()
    out = write_dataset(tmp_path / "ds", f, s, v)
    fresh = _cached_marker(out)
    assert load_sessions(out).num_rows == 1  # same inputs and settings: the cache
    # a video reprocessed (new processed_at), even with an older file time: recomputed
    v[1]["processed_at"] = v[1]["processed_at"] + dt.timedelta(hours=1)
    write_dataset(out, f, s, v)
    os.utime(out / "videos" / "v1.parquet", ns=(0, 0))
    assert load_sessions(out).num_rows == fresh.num_rows


@pytest.mark.parametrize(
    "kwargs",
    [
        {"settings": IndexSettings(surprise_weight=0.5)},
        {"patient_override": {"v0": 0}},
    ],
    ids=["other index settings", "a patient override"],
)
def test_sessions_cache_is_keyed_by_settings(tmp_path, kwargs) -> None:
    out = write_dataset(tmp_path / "ds", *_three_sessions())
    _cached_marker(out)
    assert load_sessions(out).num_rows == 1
    got = load_sessions(out, **kwargs)
    assert got.num_rows == 3  # not the cached file computed with the defaults
    if "settings" in kwargs:
        meta = json.loads(got.schema.metadata[b"fervid.index_settings"])
        assert meta == {"surprise_weight": 0.5}


def test_duplicate_recording_rerun_keeps_the_analysed_session(tmp_path) -> None:
    """A duplicate's skipped row shares the video_id of the analysed copy; even when it is
    newer (written by a later run) the session stays analysed."""
    f, s, v = session("v1", "P001", dt.date(2024, 1, 1), ["happy"] * 4)
    dup = video_row("v1", status="skipped",
                    processed_at=v[0]["processed_at"] + dt.timedelta(days=1))  # fmt: skip
    dup |= {"path": "P001/copy.mp4", "error": "same content as P001/2024-01-01_v1.mp4",
            "duplicate_of": "P001/2024-01-01_v1.mp4"}  # fmt: skip
    for videos in ([*v, dup], [dup, *v]):  # whatever the row order
        r = _patient(summarize_sessions(*tables(f, s, videos)), "v1")
        assert r["status"] == "ok" and r["patient_rule"] == RULE_LONGEST
        assert r["share_happy"] == 1.0
    # a failed attempt that is newer than the ok row does not hide it either
    failed = video_row("v1", status="failed", processed_at=dup["processed_at"])
    assert _patient(summarize_sessions(*tables(f, s, [*v, failed])), "v1")["status"] == "ok"


def test_recordings_without_subject_are_unassigned(tmp_path) -> None:
    f, s, v = session("v1", "P001", dt.date(2024, 1, 1), ["happy"] * 4)
    f2, s2, v2 = session("v2", None, None, ["sad"] * 4)
    v2[0]["id_pattern_matched"] = False
    t = summarize_sessions(*tables(f + f2, s + s2, v + v2))
    un = unassigned_recordings(t)
    assert un["video_id"].tolist() == ["v2"]
    assert un["reason"].tolist() == ["path does not match --id-pattern"]
    lines = id_pattern_warnings(t)
    assert lines[0].startswith("1 of 2 recording(s) have no subject")
    assert "1 path does not match --id-pattern" in lines[0]
    assert lines[1].strip() == v2[0]["path"]


def test_labels_and_status_are_dictionary_columns() -> None:
    t = summarize_sessions(*tables(*_three_sessions()))
    for name in ("status", "dominant_emotion", "patient_rule"):
        assert pa.types.is_dictionary(t.schema.field(name).type), name


def test_derived_files_stay_out_of_the_dataset_folder(tmp_path) -> None:
    """After summarize, trends and report, a glob over the dataset's frames reads only
    frames rows (DuckDB, polars, pandas), and nothing derived lies inside the folder."""
    import duckdb
    import pandas as pd
    import polars as pl

    from fervid.longitudinal.report import build_report
    from fervid.longitudinal.summary import report_path, trends_path
    from fervid.longitudinal.trends import trends_table

    f, s, v = _three_sessions()
    ds = write_dataset(tmp_path / "ds", f, s, v)
    sessions = summarize_dir(ds)
    write_sessions(sessions, sessions_path(ds))
    pq.write_table(trends_table(sessions), trends_path(ds))
    build_report(ds, report_path(ds), sessions=sessions)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ds", "ds.report", "ds.sessions.parquet", "ds.trends.parquet",
    ]  # fmt: skip
    assert sorted(p.name for p in ds.iterdir()) == ["frames", "segments", "videos"]
    assert list(ds.glob("*.parquet")) == []
    n = len(f)
    con = duckdb.connect()
    got = con.execute(
        f"SELECT count(*), count(frame_index) FROM read_parquet('{ds}/frames/*.parquet')"
    ).fetchall()
    assert got == [(n, n)]
    assert pl.read_parquet(f"{ds}/frames/*.parquet").height == n
    frames = pd.read_parquet(ds / "frames")
    assert len(frames) == n and frames["frame_index"].notna().all()
    # the derived tables read back beside it with one call each
    assert pd.read_parquet(tmp_path / "ds.sessions.parquet")["video_id"].nunique() == 3


def test_duplicate_recording_is_recorded_once_across_reruns(tmp_path, sample_dir) -> None:
    """Two copies of one recording, processed twice: the copy's skipped row (with
    duplicate_of) is written once, and the session stays analysed after the rerun. A
    third recording whose path misses --id-pattern is listed by the run summary."""
    import io
    import shutil

    from helpers_model import make_debug_model
    from rich.console import Console

    from fervid.engine.progress import print_summary
    from fervid.engine.runner import LocalExecutor, run
    from fervid.output.store import read_results
    from fervid.settings import ClassifySettings, DiscoverSettings, RunSettings

    rec = tmp_path / "rec"
    (rec / "P001").mkdir(parents=True)
    shutil.copy(sample_dir / "single_face.mp4", rec / "P001" / "2024-01-01_a.mp4")
    shutil.copy(sample_dir / "single_face.mp4", rec / "P001" / "2024-01-08_b.mp4")
    (rec / "P003").mkdir()
    shutil.copy(sample_dir / "no_face.mp4", rec / "P003" / "intake.mp4")  # no date: no match
    out = tmp_path / "ds"
    settings = RunSettings(
        inputs=(rec,), out=out,
        discover=DiscoverSettings(id_pattern="{subject}/{session_date}_{name}.mp4"),
        classify=ClassifySettings(model_path=make_debug_model(tmp_path / "debug.safetensors")),
    )  # fmt: skip

    def local(s, model, hooks):
        return LocalExecutor(s, model)

    first_run = run(settings, executor_factory=local)
    assert first_run.id_pattern_unmatched == ["P003/intake.mp4"]
    buf = io.StringIO()
    print_summary(Console(file=buf, width=200), first_run)
    assert "1 recording(s) do not match --id-pattern" in buf.getvalue()
    assert "P003/intake.mp4" in buf.getvalue()
    (dup_part,) = (out / "videos").glob("*-dup-*.parquet")
    first = dup_part.stat().st_mtime_ns
    summary = run(settings, executor_factory=local)  # the rerun: everything already done
    assert summary.ok == 0 and summary.skipped == 3
    assert dup_part.stat().st_mtime_ns == first  # not rewritten with a fresh processed_at
    videos = read_results(out, "videos").to_pylist()
    dup = next(r for r in videos if r["status"] == "skipped")
    assert dup["duplicate_of"] == "P001/2024-01-01_a.mp4"
    assert dup["path"] == "P001/2024-01-08_b.mp4" and dup["id_pattern_matched"] is True
    stray = next(r for r in videos if r["path"] == "P003/intake.mp4")
    assert stray["id_pattern_matched"] is False and stray["subject"] is None
    sessions = summarize_dir(out)
    patient = next(r for r in sessions.to_pylist() if r["is_patient"] and r["subject"])
    assert patient["status"] == "ok" and patient["face_id"] is not None
    assert unassigned_recordings(sessions)["path"].tolist() == ["P003/intake.mp4"]


def test_a_session_analysed_with_warnings_is_summarized() -> None:
    """ok_with_warnings (damaged but analysed) is a result like ok, and beats a newer
    skipped duplicate row."""
    f, s, v = session("v1", "P001", dt.date(2024, 1, 1), ["happy"] * 4)
    v[0]["status"] = "ok_with_warnings"
    dup = video_row("v1", status="skipped",
                    processed_at=v[0]["processed_at"] + dt.timedelta(days=1))  # fmt: skip
    r = _patient(summarize_sessions(*tables(f, s, [dup, *v])), "v1")
    assert r["status"] == "ok_with_warnings" and r["share_happy"] == 1.0
