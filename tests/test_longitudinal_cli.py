"""One set of longitudinal settings across summarize, trends, report and nightly:
the same options, the report prints the values it used, --json on each, summarize
--out, and an unknown subject is exit 2 everywhere."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from longitudinal_tables import session, write_dataset
from typer.testing import CliRunner

from fervid.cli import app
from fervid.longitudinal.settings import LongitudinalSettings
from fervid.longitudinal.trends import trend_settings_of

D0 = dt.date(2024, 1, 1)


def _dataset(tmp_path: Path) -> Path:
    """P001: 5 weekly sessions, the last one much happier than the baseline."""
    f, s, v = [], [], []
    for i, happy in enumerate([2, 3, 4, 3, 18]):
        fi, si, vi = session(f"P001-{i}", "P001", D0 + dt.timedelta(days=7 * i),
                             ["happy"] * happy + ["neutral"] * (20 - happy), interval=1.0)  # fmt: skip
        f, s, v = f + fi, s + si, v + vi
    return write_dataset(tmp_path / "ds", f, s, v)


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_summarize_out_and_json(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    code, out = _run("summarize", str(ds), "--out", str(tmp_path / "s" / "x.parquet"), "--json")
    assert code == 0, out
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["sessions"] == str(tmp_path / "s" / "x.parquet")
    assert doc["recordings"] == 5 and doc["unassigned"] == 0 and doc["patient_ambiguous"] == 0
    assert doc["settings"] == LongitudinalSettings().to_json()
    assert pq.read_table(tmp_path / "s" / "x.parquet").num_rows == 5
    assert not (tmp_path / "ds.sessions.parquet").exists()  # --out, not the default


def test_trends_and_report_use_the_same_options(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    opts = ["--threshold", "3", "--baseline-n", "4", "--window", "2", "--min-face-s", "5",
            "--sd-floor", "0.02"]  # fmt: skip
    code, out = _run("trends", str(ds), *opts, "--json", "--out", str(tmp_path / "t.parquet"))
    assert code == 0, out
    doc = json.loads(out.strip().splitlines()[-1])
    want = {"baseline_n": 4, "window": 2, "threshold": 3.0, "min_face_s": 5.0, "sd_floor": 0.02}
    assert {k: doc["settings"]["trends"][k] for k in want} == want
    assert doc["verdict"] == "departures" and {d["video_id"] for d in doc["departures"]} == {
        "P001-4"
    }
    stored = trend_settings_of(pq.read_table(tmp_path / "t.parquet"))
    assert stored is not None and stored.threshold == 3.0 and stored.baseline_n == 4
    code, out = _run("report", str(ds), *opts, "--json")
    assert code == 0, out
    doc = json.loads(out.strip().splitlines()[-1])
    html = Path(doc["report"]).read_text()
    assert "Settings used" in html
    for shown in ("--threshold 3", "--baseline-n 4", "--window 2", "--min-face-s 5",
                  "--sd-floor 0.02"):  # fmt: skip
        assert shown in html, shown


@pytest.mark.parametrize("command", ["trends", "report"])
def test_unknown_subject_is_exit_2(tmp_path: Path, command: str) -> None:
    code, out = _run(command, str(_dataset(tmp_path)), "--subject", "NOPE")
    assert code == 2, out
    assert "subject='NOPE' has no analysed session; subjects present: ['P001']" in out
    assert not (tmp_path / "ds.report").exists()


@pytest.mark.parametrize("command", ["summarize", "trends", "report"])
@pytest.mark.parametrize(
    ("option", "value"),
    [("--baseline-n", "1"), ("--window", "0"), ("--threshold", "nan"), ("--min-face-s", "-1"),
     ("--sd-floor", "0"), ("--min-track-frames", "0")],
)  # fmt: skip
def test_bad_longitudinal_options_are_exit_2(
    tmp_path: Path, command: str, option: str, value: str
) -> None:
    if command == "summarize" and option != "--min-track-frames":
        pytest.skip("summarize takes the patient-face options only")
    code, out = _run(command, str(tmp_path / "nowhere"), option, value)
    assert code == 2 and out.count("error:") == 1, out
