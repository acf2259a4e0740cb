"""Trends: baselines, rolling means and departure flags on hand-made session tables."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from longitudinal_tables import PROCESSED_AT, session, tables, write_dataset
from rich.console import Console

from fervid.errors import ConfigError, InputError
from fervid.longitudinal.summary import sessions_schema, summarize_sessions
from fervid.longitudinal.trends import (
    TrendSettings,
    Verdict,
    baseline_status,
    default_indices,
    format_trends,
    trend_settings_of,
    trends_schema,
    trends_table,
    verdict,
    verdict_text,
)

D0 = dt.date(2024, 3, 1)


def _sessions(subject: str | None, valences: list[float | None], **extra: list) -> pa.Table:
    """One patient row per value, a week apart; None: a session without a face."""
    rows = []
    for i, v in enumerate(valences):
        row = {
            "video_id": f"{subject}-{i}", "file_name": f"s{i}.mp4", "subject": subject,
            "session_date": D0 + dt.timedelta(days=7 * i), "status": "ok", "is_patient": True,
            "face_id": None if v is None else 0, "face_present_s": 0.0 if v is None else 60.0,
            "face_present_ratio": 0.0 if v is None else 1.0, "valence": v,
            "processed_at": PROCESSED_AT + dt.timedelta(hours=i),
        }  # fmt: skip
        rows.append(row | {k: vals[i] for k, vals in extra.items()})
    return pa.Table.from_pylist(rows, schema=sessions_schema())


def _col(t: pa.Table, index: str, col: str) -> list:
    return [r[col] for r in t.to_pylist() if r["index"] == index]


def test_single_session_subject_has_no_baseline() -> None:
    t = trends_table(_sessions("P001", [0.3]), indices=["valence"])
    (r,) = t.to_pylist()
    assert r["baseline_mean"] is None and r["baseline_sd"] is None and r["baseline_sessions"] == 0
    assert r["departure"] is None and r["z"] is None and r["change"] is None
    assert r["rolling_mean"] == pytest.approx(0.3) and r["value"] == pytest.approx(0.3)
    assert r["in_baseline"] is False and r["session_number"] == 1


def test_clear_departure_is_flagged_on_the_right_session() -> None:
    # baseline .1 .2 .3: mean .2, SD .1 -> .3 is z=1 (no flag), -.5 is z=-7 (flag)
    t = trends_table(_sessions("P001", [0.1, 0.2, 0.3, 0.3, -0.5]), indices=["valence"])
    assert _col(t, "valence", "in_baseline") == [True, True, True, False, False]
    assert _col(t, "valence", "departure") == [None, None, None, False, True]
    assert _col(t, "valence", "baseline_mean")[0] == pytest.approx(0.2)
    assert _col(t, "valence", "baseline_sd")[0] == pytest.approx(0.1)
    assert _col(t, "valence", "z")[3:] == [pytest.approx(1.0), pytest.approx(-7.0)]
    assert _col(t, "valence", "change")[4] == pytest.approx(-0.7)
    # rolling mean over the last 3 sessions
    assert _col(t, "valence", "rolling_mean") == [
        pytest.approx(x) for x in (0.1, 0.15, 0.2, 0.8 / 3, 0.1 / 3)
    ]


@pytest.mark.parametrize(
    ("value", "threshold", "flag"),
    [
        (0.35, 2.0, True),  # constant baseline: SD 0 -> floor .05, z = 3
        (0.29, 2.0, False),  # z = 1.8
        (0.35, 4.0, False),  # a higher threshold flags less
        (0.0, 2.0, True),  # departures in both directions
    ],
)
def test_sd_floor_and_threshold(value: float, threshold: float, flag: bool) -> None:
    t = trends_table(
        _sessions("P001", [0.2, 0.2, 0.2, value]), threshold=threshold, indices=["valence"]
    )
    assert _col(t, "valence", "baseline_sd")[0] == pytest.approx(0.0, abs=1e-12)
    assert _col(t, "valence", "z")[3] == pytest.approx((value - 0.2) / 0.05)
    assert _col(t, "valence", "departure")[3] is flag


def test_sessions_without_face_or_with_little_face_time_are_skipped() -> None:
    # session 1 has no face, session 2 only 4 s of face: the baseline is sessions 0, 3, 4
    t = trends_table(
        _sessions("P001", [0.1, None, 0.9, 0.2, 0.3, 0.9],
                  face_present_s=[60.0, 0.0, 4.0, 60.0, 60.0, 60.0]),
        indices=["valence"],
    )  # fmt: skip
    assert _col(t, "valence", "usable") == [True, False, False, True, True, True]
    assert _col(t, "valence", "in_baseline") == [True, False, False, True, True, False]
    assert _col(t, "valence", "departure") == [None, None, None, None, None, True]
    assert _col(t, "valence", "value")[1] is None
    assert _col(t, "valence", "value")[2] == pytest.approx(0.9)  # shown, but not judged
    assert _col(t, "valence", "baseline_mean")[0] == pytest.approx(0.2)


def test_too_few_sessions_for_the_baseline_means_no_flags() -> None:
    t = trends_table(_sessions("P001", [0.1, 0.9]), indices=["valence"])
    assert _col(t, "valence", "departure") == [None, None]
    assert _col(t, "valence", "baseline_mean") == [None, None]
    t = trends_table(_sessions("P001", [0.1, 0.2, 0.9]), baseline_n=2, indices=["valence"])
    assert _col(t, "valence", "departure") == [None, None, True]


def test_baseline_by_date_range() -> None:
    s = _sessions("P001", [0.9, 0.1, 0.2, 0.3, 0.9])  # weekly from 2024-03-01
    t = trends_table(
        s, baseline_dates=(dt.date(2024, 3, 8), dt.date(2024, 3, 22)), indices=["valence"]
    )
    assert _col(t, "valence", "in_baseline") == [False, True, True, True, False]
    assert _col(t, "valence", "departure") == [True, None, None, None, True]
    assert trend_settings_of(t).baseline_dates == (dt.date(2024, 3, 8), dt.date(2024, 3, 22))


def test_sessions_are_ordered_by_date_then_processed_order() -> None:
    s = _sessions("P001", [0.1, 0.2, 0.3, 0.4]).to_pylist()
    s[0]["session_date"], s[3]["session_date"] = s[3]["session_date"], s[0]["session_date"]
    s[1]["session_date"] = s[2]["session_date"] = None  # undated: after the dated ones,
    s.reverse()  # in processed order; the input order is not the answer
    t = trends_table(pa.Table.from_pylist(s, schema=sessions_schema()), indices=["valence"])
    assert _col(t, "valence", "value") == [pytest.approx(x) for x in (0.4, 0.1, 0.2, 0.3)]
    assert _col(t, "valence", "session_number") == [1, 2, 3, 4]


def test_pandas_sessions_with_datetime_dates() -> None:
    df = _sessions("P001", [0.1, 0.2, 0.3, 0.9]).to_pandas()
    df["session_date"] = pd.to_datetime(df["session_date"])
    t = trends_table(df, indices=["valence"], baseline_dates=(D0, D0 + dt.timedelta(days=14)))
    assert _col(t, "valence", "departure") == [None, None, None, True]
    assert _col(t, "valence", "session_date")[3] == D0 + dt.timedelta(days=21)


def test_subjects_are_followed_separately_and_filtered() -> None:
    both = pa.concat_tables([_sessions("P001", [0.1, 0.2, 0.3, 0.9]), _sessions("P002", [0.5])])
    t = trends_table(both, indices=["valence"])
    assert [r["subject"] for r in t.to_pylist()] == ["P001"] * 4 + ["P002"]
    assert _col(t, "valence", "departure") == [None, None, None, True, None]
    only = trends_table(both, subject="P002", indices=["valence"])
    assert only.num_rows == 1 and only["subject"][0].as_py() == "P002"
    with pytest.raises(InputError, match=r"subject='P999'.*\['P001', 'P002'\]"):
        trends_table(both, subject="P999")


def test_non_patient_and_failed_rows_are_not_followed() -> None:
    rows = _sessions("P001", [0.1, 0.2]).to_pylist()
    rows.append(rows[0] | {"video_id": "other-face", "is_patient": False, "valence": -1.0})
    rows.append(rows[0] | {"video_id": "failed", "status": "failed", "valence": None})
    t = trends_table(pa.Table.from_pylist(rows, schema=sessions_schema()), indices=["valence"])
    assert _col(t, "valence", "video_id") == ["P001-0", "P001-1"]


def test_end_to_end_from_frames_flags_the_sad_session() -> None:
    """Five sessions of 10 frames, 2 s apart (20 s of face each): valence .1 .2 .3 .3 -.5."""
    plans = [
        ["happy"] * 1 + ["neutral"] * 9,
        ["happy"] * 2 + ["neutral"] * 8,
        ["happy"] * 3 + ["neutral"] * 7,
        ["happy"] * 3 + ["neutral"] * 7,
        ["sad"] * 5 + ["neutral"] * 5,
    ]
    f, s, v = [], [], []
    for i, labels in enumerate(plans):
        fi, si, vi = session(f"v{i}", "P017", D0 + dt.timedelta(days=i), labels, interval=2.0)
        f, s, v = f + fi, s + si, v + vi
    sessions = summarize_sessions(*tables(f, s, v))
    t = trends_table(sessions, subject="P017")
    assert set(t["index"].to_pylist()) == set(default_indices(sessions))
    assert _col(t, "valence", "departure") == [None, None, None, False, True]
    assert _col(t, "share_sad", "departure")[4] is True  # 0 -> 50 % sad
    assert _col(t, "share_happy", "departure")[3] is False  # .3 vs .2 ± .1
    assert t.schema.equals(trends_schema(), check_metadata=False)


def _render(table) -> str:
    console = Console(file=io.StringIO(), width=220, color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_format_trends_marks_departures() -> None:
    t = trends_table(
        _sessions("P017", [0.1, 0.2, 0.3, 0.3, -0.5], share_happy=[0.1, 0.2, 0.3, 0.3, 0.0]),
        indices=["valence", "share_happy"],
    )
    text = _render(format_trends(t, subject="P017"))
    assert "fervid trends — P017" in text
    assert "happy %" in text and "valence" in text
    assert "-0.50 (-0.70) ▼" in text
    assert "first 3 usable sessions" in text and "2 ×" in text
    lines = [ln for ln in text.splitlines() if "s3.mp4" in ln]
    assert len(lines) == 1 and "▼" not in lines[0] and "▲" not in lines[0]


def test_format_trends_lists_subjects_when_several() -> None:
    both = pa.concat_tables([_sessions("P001", [0.1]), _sessions("P002", [0.5, None])])
    text = _render(format_trends(trends_table(both, indices=["valence"])))
    assert "P001" in text and "P002" in text and "(no face)" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"baseline_n": 1}, "baseline_n=1; expected >= 2"),
        ({"window": 0}, "window=0; expected >= 1"),
        ({"threshold": 0.0}, "threshold=0.0; expected a positive"),
        ({"sd_floor": 0.0}, "sd_floor=0.0; expected > 0"),
        ({"min_face_s": -1.0}, "min_face_s=-1.0; expected >= 0"),
        ({"baseline_dates": (dt.date(2024, 2, 1), dt.date(2024, 1, 1))}, "first <= last"),
    ],
)
def test_settings_are_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrendSettings(**kwargs)


def test_recordings_without_subject_form_no_trend() -> None:
    """Seven unrelated people recorded without --id-pattern are not one subject's series."""
    nobody = _sessions(None, [0.1, 0.2, 0.3, 0.3, -0.5, 0.2, 0.1])
    t = trends_table(pa.concat_tables([nobody, _sessions("P001", [0.1, 0.2])]),
                     indices=["valence"])  # fmt: skip
    assert set(t.column("subject").to_pylist()) == {"P001"}
    assert trends_table(nobody, indices=["valence"]).num_rows == 0


@pytest.mark.parametrize(
    ("valences", "expected"),
    [
        ([0.1, 0.2, 0.3, 0.3, -0.5], Verdict.DEPARTURES),
        ([0.1, 0.2, 0.3, 0.25], Verdict.NO_DEPARTURES),
        ([0.1, 0.2], Verdict.NOTHING_JUDGED),  # a baseline needs 3
        ([None, None, None, None], Verdict.NOTHING_JUDGED),  # no usable session at all
    ],
)
def test_verdict_never_says_all_clear_when_nothing_was_judged(valences, expected) -> None:
    t = trends_table(_sessions("P001", valences), indices=["valence"])
    assert verdict(t) is expected
    if expected is Verdict.NOTHING_JUDGED:
        assert "not an all-clear" in verdict_text(t)
        assert "No departures" not in verdict_text(t)


def test_baseline_status_says_what_it_rests_on() -> None:
    t = trends_table(
        pa.concat_tables([_sessions("P001", [0.1, 0.2, None, 0.3, 0.2]),
                          _sessions("P002", [0.1, None])]),
        indices=["valence"],
    )  # fmt: skip
    p1, p2 = baseline_status(t)
    assert p1.describe() == "baseline established from 3 of 4 usable sessions"
    assert (p1.sessions, p1.judged, p1.departing) == (5, 1, 0)
    assert p2.describe() == "baseline not established (needs 3 usable sessions, has 1)"


@pytest.mark.parametrize("bad", ["valnce", "share_hapy", "frames"])
def test_unknown_index_is_a_usage_error(bad: str) -> None:
    s = _sessions("P001", [0.1, 0.2])
    with pytest.raises(ConfigError, match=f"--index='{bad}' is not an index"):
        trends_table(s, indices=[bad])
    t = trends_table(s, indices=["valence"])
    with pytest.raises(ConfigError, match="is not an index"):
        format_trends(t, indices=[bad])


def test_index_column_is_dictionary_encoded() -> None:
    t = trends_table(_sessions("P001", [0.1, 0.2]))
    assert pa.types.is_dictionary(t.schema.field("index").type)


# --------------------------------------------------------------------------- the commands
def _cli_dataset(tmp_path) -> Path:
    f, s, v = [], [], []
    for i in range(4):
        fi, si, vi = session(f"P001-{i}", "P001", D0 + dt.timedelta(days=7 * i),
                             ["happy"] * (i + 2) + ["neutral"] * 20, interval=1.0)  # fmt: skip
        f, s, v = f + fi, s + si, v + vi
    fi, si, vi = session("stray", None, None, ["sad"] * 20, interval=1.0)
    vi[0] |= {"path": "P003/intake.mp4", "id_pattern_matched": False}
    return write_dataset(tmp_path / "ds", f + fi, s + si, v + vi)


def test_cli_index_typo_is_a_usage_error(tmp_path) -> None:
    from typer.testing import CliRunner

    from fervid.cli import app

    ds = _cli_dataset(tmp_path)
    r = CliRunner().invoke(app, ["trends", str(ds), "--index", "valnce"])
    assert r.exit_code == 2, r.output
    assert "--index='valnce' is not an index; did you mean 'valence'?" in r.output
    ok = CliRunner().invoke(app, ["trends", str(ds), "--index", "valence"])
    assert ok.exit_code == 0, ok.output
    assert "P001: baseline established from 3 of 4 usable sessions" in ok.output


@pytest.mark.parametrize("command", ["summarize", "trends", "report"])
def test_cli_warns_about_recordings_without_subject(tmp_path, command) -> None:
    from typer.testing import CliRunner

    from fervid.cli import app

    ds = _cli_dataset(tmp_path)
    r = CliRunner().invoke(app, [command, str(ds)])
    assert r.exit_code == 0, r.output
    assert "warning: 1 of 5 recording(s) have no subject" in r.output
    assert "1 path does not match --id-pattern" in r.output and "P003/intake.mp4" in r.output
    derived = {"summarize": "ds.sessions.parquet", "report": "ds.report"}.get(command)
    if derived:  # beside the dataset folder, not inside it
        assert (tmp_path / derived).exists()
    assert sorted(p.name for p in ds.iterdir()) == ["frames", "segments", "videos"]


def test_cli_warns_about_derived_files_left_inside_the_dataset(tmp_path) -> None:
    from typer.testing import CliRunner

    from fervid.cli import app

    ds = _cli_dataset(tmp_path)
    (ds / "sessions.parquet").write_bytes(b"left by an older fervid")
    r = CliRunner().invoke(app, ["summarize", str(ds)])
    assert r.exit_code == 0, r.output
    assert f"{ds / 'sessions.parquet'} was written inside the dataset" in r.output.replace("\n", "")
    assert (ds / "sessions.parquet").read_bytes() == b"left by an older fervid"  # not touched


def test_cli_trends_without_any_subject_says_so(tmp_path) -> None:
    from typer.testing import CliRunner

    from fervid.cli import app

    f, s, v = [], [], []
    for i in range(3):
        fi, si, vi = session(f"p{i}", None, None, ["happy"] * 30, interval=1.0)
        f, s, v = f + fi, s + si, v + vi
    r = CliRunner().invoke(app, ["trends", str(write_dataset(tmp_path / "ds", f, s, v))])
    assert r.exit_code == 0, r.output
    assert "3 of 3 recording(s) have no subject" in r.output
    assert "Nothing could be judged" in r.output
