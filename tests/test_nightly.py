"""`fervid nightly` (and its thin example pipelines/nightly.py) with a substitute fervid
command (a small script writing tables)."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from longitudinal_tables import session, video_row, write_dataset

ROOT = Path(__file__).resolve().parents[1]
NIGHTLY = [sys.executable, "-m", "fervid", "nightly"]
EXIT_FAILED, EXIT_PROCESS, EXIT_USAGE, EXIT_LOCKED = 3, 4, 2, 75

# Stands in for `fervid process IN --out DATASET/`: records its argv, then behaves as
# FAKE_MODE says; "ok" / "fail" copy tables the test built beforehand into the dataset
# (plain Python: no imports to pay for in every run).
FAKE_FERVID = """
import json, os, shutil, sys, time
from pathlib import Path

args = sys.argv[1:]
Path(os.environ["ARGV_FILE"]).write_text(json.dumps(args))
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "wait":  # hold the run open until the test says go
    go = Path(os.environ["GO_FILE"])
    for _ in range(600):
        if go.exists():
            break
        time.sleep(0.1)
    mode = "ok"
if mode == "crash":
    sys.exit(1)
if mode == "usage":
    sys.exit(2)
out = args[args.index("--out") + 1]
shutil.copytree(Path(os.environ["TEMPLATES"]) / mode, out, dirs_exist_ok=True)
sys.exit(3 if mode == "fail" else 0)
"""


def _templates(root: Path) -> Path:
    """What the fake fervid writes: one ok session; or that plus a failed recording.
    processed_at lies ahead so that the rows count as written by the run under test."""
    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    f, s, v = session("rec-1", "P001", dt.date(2024, 1, 1), ["happy"] * 10, interval=2.0)
    v[0]["processed_at"] = later
    write_dataset(root / "ok", f, s, v)
    write_dataset(
        root / "fail", f, s, [*v, video_row("rec-2", status="failed", processed_at=later)]
    )
    stray = video_row("rec-3", subject=None, session_date=None, processed_at=later)
    stray |= {"path": "P003/intake.mp4", "id_pattern_matched": False}
    write_dataset(root / "unmatched", f, s, [*v, stray])
    return root


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fake_fervid.py"
    fake.write_text(FAKE_FERVID)
    (tmp_path / "in").mkdir()
    return {
        **os.environ,
        "FERVID_CMD": f"{sys.executable} {fake}",
        "TEMPLATES": str(_templates(tmp_path / "templates")),
        "ARGV_FILE": str(tmp_path / "argv.json"),
        "GO_FILE": str(tmp_path / "go"),
    }


def _nightly(
    tmp_path: Path, env: dict[str, str], mode: str, *extra: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NIGHTLY, "--in", str(tmp_path / "in"),
         "--dataset", str(tmp_path / "ds"), "--id-pattern", "{subject}/{name}.mp4", *extra],
        env={**env, "FAKE_MODE": mode}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _log(tmp_path: Path) -> list[dict]:
    path = tmp_path / "ds.logs" / "nightly.jsonl"  # beside the dataset, not inside it
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_config_file_reaches_process_and_sets_the_longitudinal_settings(
    tmp_path: Path, env: dict[str, str]
) -> None:
    cfg = tmp_path / "clinic.toml"
    cfg.write_text("[process]\nfps = 2\n\n[longitudinal]\nthreshold = 3\nbaseline_n = 4\n")
    r = _nightly(tmp_path, env, "ok", "--config", str(cfg), "--baseline-n", "5")
    assert r.returncode == 0, r.stderr
    argv = json.loads(Path(env["ARGV_FILE"]).read_text())
    assert argv[-2:] == ["--config", str(cfg)]  # fervid process reads its [process] table
    trends = _log(tmp_path)[-1]["settings"]["trends"]
    assert trends["threshold"] == 3.0 and trends["baseline_n"] == 5  # command line wins


def test_ok_run_processes_logs_and_refreshes(tmp_path: Path, env: dict[str, str]) -> None:
    r = _nightly(tmp_path, env, "ok", "--", "--fps", "2")
    assert r.returncode == 0, r.stderr
    argv = json.loads(Path(env["ARGV_FILE"]).read_text())
    assert argv == ["process", str(tmp_path / "in"), "--out", f"{tmp_path / 'ds'}/",
                    "--id-pattern", "{subject}/{name}.mp4", "--fps", "2"]  # fmt: skip
    (line,) = _log(tmp_path)
    assert line["exit_code"] == 0 and line["process_exit"] == 0
    assert line["videos"] == {"total": 1, "ok": 1}
    assert line["this_run"] == {"total": 1, "ok": 1}
    assert line["start"] <= line["end"] and line["command"][-2:] == ["--fps", "2"]
    sessions = pq.read_table(line["sessions"])
    assert sessions.num_rows == 1 and sessions["share_happy"][0].as_py() == 1.0
    report = Path(line["report"])
    assert report == tmp_path / "ds.report" / "index.html" and report.stat().st_size > 2000
    figures = [p.name for p in (report.parent / "figures").glob("*.png")]
    # a timeline, the whole trend and one panel per index
    assert sorted({n.split("_")[0] for n in figures}) == ["panel", "timeline", "trend"]
    assert len([n for n in figures if not n.startswith("panel_")]) == 2
    assert pq.read_table(line["trends"]).num_rows > 0
    assert Path(line["sessions"]) == tmp_path / "ds.sessions.parquet"
    assert line["id_pattern_unmatched"] == {"total": 0, "paths": []}
    assert "--id-pattern" not in r.stderr


def test_failed_recordings_give_a_nonzero_exit(tmp_path: Path, env: dict[str, str]) -> None:
    r = _nightly(tmp_path, env, "fail", "--no-report")
    assert r.returncode == EXIT_FAILED, r.stderr
    (line,) = _log(tmp_path)
    assert line["exit_code"] == EXIT_FAILED and line["process_exit"] == 3
    assert line["videos"] == {"total": 2, "ok": 1, "failed": 1}
    assert line["failed_recordings"] == [
        {"path": "P001/2024-01-01_rec-2.mp4", "error": "DecodeError: broken file"}
    ]
    assert "1 recording(s) failed" in r.stderr
    assert Path(line["sessions"]).exists() and "report" not in line


@pytest.mark.parametrize(
    ("mode", "code", "message"),
    [
        ("crash", EXIT_PROCESS, "fervid exited with 1"),
        ("usage", EXIT_USAGE, "refused its arguments"),
    ],
)
def test_command_errors(
    tmp_path: Path, env: dict[str, str], mode: str, code: int, message: str
) -> None:
    r = _nightly(tmp_path, env, mode)
    assert r.returncode == code, r.stderr
    (line,) = _log(tmp_path)
    assert line["exit_code"] == code and message in line["message"]
    assert line["videos"] == {"total": 0}


def test_missing_command_is_a_process_error(tmp_path: Path, env: dict[str, str]) -> None:
    r = _nightly(tmp_path, {**env, "FERVID_CMD": str(tmp_path / "no-such-fervid")}, "ok")
    assert r.returncode == EXIT_PROCESS
    assert "cannot run" in _log(tmp_path)[0]["message"]


def test_lock_held_elsewhere_refuses_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "ds").mkdir()
    with (tmp_path / "ds" / ".fervid-nightly.lock").open("a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        r = _nightly(tmp_path, env, "ok")
    assert r.returncode == EXIT_LOCKED
    assert "another nightly run (pid 4242)" in r.stderr
    assert not Path(env["ARGV_FILE"]).exists()  # fervid never started
    (line,) = _log(tmp_path)
    assert line["exit_code"] == EXIT_LOCKED and "command" not in line
    # the lock is released with its holder: the next run goes ahead
    assert _nightly(tmp_path, env, "ok", "--no-report").returncode == 0


def test_two_concurrent_runs_one_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    first = subprocess.Popen(
        [*NIGHTLY, "--in", str(tmp_path / "in"), "--dataset",
         str(tmp_path / "ds"), "--no-report"],
        env={**env, "FAKE_MODE": "wait"}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(600):  # until the first run is inside fervid, holding the lock
            if Path(env["ARGV_FILE"]).exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        second = _nightly(tmp_path, env, "ok", "--no-report")
        assert second.returncode == EXIT_LOCKED
        assert f"another nightly run (pid {first.pid})" in second.stderr
    finally:
        Path(env["GO_FILE"]).touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    codes = sorted(line["exit_code"] for line in _log(tmp_path))
    assert codes == [0, EXIT_LOCKED]


@pytest.mark.parametrize(
    "command", [NIGHTLY, [sys.executable, str(ROOT / "pipelines" / "nightly.py")]],
    ids=["fervid-nightly", "pipelines-example"],
)  # fmt: skip
def test_missing_input_folder_is_a_usage_error(
    tmp_path: Path, env: dict[str, str], command: list[str]
) -> None:
    r = subprocess.run(
        [*command, "--in", str(tmp_path / "nope"),
         "--dataset", str(tmp_path / "ds")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == EXIT_USAGE and "do not exist" in r.stderr


def test_id_pattern_mismatch_is_logged_and_warned(tmp_path: Path, env: dict[str, str]) -> None:
    r = _nightly(tmp_path, env, "unmatched")
    assert r.returncode == 0, r.stderr
    (line,) = _log(tmp_path)
    assert line["id_pattern_unmatched"] == {"total": 1, "paths": ["P003/intake.mp4"]}
    assert "warning: 1 recording(s) do not match --id-pattern" in line["message"]
    assert "P003/intake.mp4" in r.stderr
    report = Path(line["report"]).read_text()
    assert "Unassigned recordings" in report and "P003/intake.mp4" in report
