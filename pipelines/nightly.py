#!/usr/bin/env python
"""The nightly job: analyse new recordings, then refresh sessions.parquet and the report.

    python pipelines/nightly.py --in /recordings --dataset /data/fervid \\
        --id-pattern "{subject}/{session_date}_{name}.mp4"

Steps, all under an exclusive lock (``<dataset>/.fervid-nightly.lock``,
:class:`fervid.output.lock.FileLock`):

1. ``fervid process <in>... --out <dataset>/ [--id-pattern P] [extra args]`` as a
   subprocess (argv list, no shell). fervid skips recordings already done, so only new
   (or previously failed) recordings are analysed.
2. Count the videos table (all rows, and the rows written by this run), and the
   recordings whose path did not match ``--id-pattern`` (they have no subject: listed in
   the log line and warned about on stderr).
3. Refresh ``<dataset>.sessions.parquet``, ``<dataset>.trends.parquet`` and the HTML
   report (``<dataset>.report/``), all *beside* the dataset folder so that a glob or
   ``pd.read_parquet`` over the folder reads only fervid's tables.
4. Append one JSON line describing the run to the log file
   (``<dataset>.logs/nightly.jsonl``).

Exit codes: 0 all well; 2 usage error (here or from fervid); 3 recordings failed in this
run (listed in the log line and the videos table); 4 the fervid command could not run,
crashed or timed out; 5 sessions/report refresh failed; 75 another run holds the lock
(nothing was done). When several apply, the most severe wins: 2, 4, 5, 3.

``--fervid-cmd`` (or ``$FERVID_CMD``) replaces the fervid executable, e.g. for tests.
See docs/scheduling.md for the systemd units and a cron line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fervid.output.lock import FileLock, Locked

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED_RECORDINGS = 3
EXIT_PROCESS_ERROR = 4
EXIT_REFRESH_ERROR = 5
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
_SEVERITY = (EXIT_USAGE, EXIT_PROCESS_ERROR, EXIT_REFRESH_ERROR, EXIT_FAILED_RECORDINGS, EXIT_OK)

LOCK_NAME = ".fervid-nightly.lock"  # not fervid's own .fervid.lock: the child takes that one
FERVID_EXIT_FAILED_VIDEOS = 3  # fervid process: some videos failed
FERVID_EXIT_USAGE = 2
MAX_FAILED_LISTED = 50
MAX_UNMATCHED_LISTED = 50


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="nightly.py",
        description="Analyse new recordings with fervid, then refresh sessions.parquet and "
        "the report.",
        epilog="Arguments after -- are passed to `fervid process` (e.g. -- --fps 2 --quiet).",
    )
    p.add_argument(
        "--in",
        dest="inputs",
        type=Path,
        action="append",
        required=True,
        help="Recordings folder (repeatable).",
    )
    p.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="fervid output folder (one file per video); created if missing.",
    )
    p.add_argument(
        "--id-pattern", help='Passed to fervid, e.g. "{subject}/{session_date}_{name}.mp4".'
    )
    p.add_argument("--report-dir", type=Path, help="Report folder (default: <dataset>.report).")
    p.add_argument(
        "--log", type=Path, help="JSON-lines log (default: <dataset>.logs/nightly.jsonl)."
    )
    p.add_argument(
        "--fervid-cmd",
        default=os.environ.get("FERVID_CMD"),
        help="fervid executable and leading args (shell-style words; default: the "
        "fervid next to this Python, else on PATH; env FERVID_CMD).",
    )
    p.add_argument("--patient-override", type=Path, help="JSON/CSV video_id -> patient face_id.")
    p.add_argument("--timeout-s", type=float, help="Stop fervid after this many seconds.")
    p.add_argument("--no-report", action="store_true", help="Refresh sessions.parquet only.")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def fervid_command(configured: str | None) -> list[str]:
    """The fervid argv prefix: configured words, else the venv's fervid, else PATH's."""
    if configured:
        return shlex.split(configured)
    beside = Path(sys.executable).parent / "fervid"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("fervid")
    return [found] if found else ["fervid"]


def process_argv(args: argparse.Namespace) -> list[str]:
    argv = [*fervid_command(args.fervid_cmd), "process", *map(str, args.inputs),
            "--out", f"{args.dataset}{os.sep}"]  # fmt: skip
    if args.id_pattern:
        argv += ["--id-pattern", args.id_pattern]
    return argv + list(args.extra)


# --------------------------------------------------------------------------- steps
def run_fervid(argv: list[str], timeout_s: float | None) -> tuple[int | None, str | None]:
    """Run fervid; (exit code, error) — exit code None when it could not run or timed out.
    It runs in its own process group so that a timeout also stops its Ray workers."""
    try:
        proc = subprocess.Popen(argv, start_new_session=True)
    except OSError as e:
        return None, f"cannot run {argv[0]!r}: {e}; set --fervid-cmd"
    try:
        return proc.wait(timeout=timeout_s), None
    except subprocess.TimeoutExpired:
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        return None, f"fervid ran longer than --timeout-s={timeout_s:g} and was stopped"
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        raise


def count_videos(dataset: Path, since: dt.datetime) -> dict[str, Any]:
    """Status counts of the whole videos table and of the rows processed since ``since``."""
    from fervid.errors import InputError
    from fervid.output.store import read_results

    try:
        v = read_results(dataset, "videos")
    except InputError:
        return {"videos": {"total": 0}, "this_run": {"total": 0}, "failed_recordings": [],
                "id_pattern_unmatched": {"total": 0, "paths": []}}  # fmt: skip
    cols = ["path", "status", "error", "processed_at", "id_pattern_matched"]
    rows = v.select([c for c in cols if c in v.schema.names]).to_pylist()
    new = [r for r in rows if r["processed_at"] is not None and r["processed_at"] >= since]

    def counts(rs: list[dict[str, Any]]) -> dict[str, int]:
        out = {"total": len(rs)}
        for r in rs:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    failed = sorted((r for r in new if r["status"] == "failed"), key=lambda r: r["path"])
    unmatched = sorted({r["path"] for r in rows if r.get("id_pattern_matched") is False})
    return {
        "videos": counts(rows),
        "this_run": counts(new),
        "failed_recordings": [{"path": r["path"], "error": r["error"]} for r in failed][
            :MAX_FAILED_LISTED
        ],
        # No subject from their path: they are listed as unassigned and form no trend.
        "id_pattern_unmatched": {
            "total": len(unmatched),
            "paths": unmatched[:MAX_UNMATCHED_LISTED],
        },
    }


def refresh(args: argparse.Namespace, report_dir: Path) -> dict[str, Any]:
    """Rewrite sessions.parquet, trends.parquet (and the report); return their paths."""
    import pyarrow.parquet as pq

    from fervid.longitudinal.summary import (
        sessions_path,
        summarize_dir,
        trends_path,
        write_sessions,
    )
    from fervid.longitudinal.trends import trends_table
    from fervid.output.atomic import atomic_path

    sessions = summarize_dir(args.dataset, args.patient_override)
    out = {"sessions": str(write_sessions(sessions, sessions_path(args.dataset)))}
    with atomic_path(trends_path(args.dataset)) as tmp:
        pq.write_table(trends_table(sessions), tmp)
    out["trends"] = str(trends_path(args.dataset))
    if not args.no_report:
        from fervid.longitudinal.report import build_report

        out["report"] = str(build_report(args.dataset, report_dir, sessions=sessions))
    return out


def write_log(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a single write: concurrent appends do not interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=str, sort_keys=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _worst(codes: list[int]) -> int:
    return next((c for c in _SEVERITY if c in codes), EXIT_OK)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dataset: Path = args.dataset
    # Beside the dataset folder, never inside it: readers glob the folder (docs/schema.md).
    log_path = args.log or dataset.with_name(f"{dataset.name}.logs") / "nightly.jsonl"
    report_dir = args.report_dir or dataset.with_name(f"{dataset.name}.report")
    start = _now()
    t0 = time.monotonic()
    record: dict[str, Any] = {
        "event": "fervid.nightly", "start": _iso(start), "host": socket.gethostname(),
        "pid": os.getpid(), "dataset": str(dataset), "inputs": [str(p) for p in args.inputs],
    }  # fmt: skip

    def finish(code: int, message: str) -> int:
        end = _now()
        record.update(end=_iso(end), duration_s=round(time.monotonic() - t0, 3),
                      exit_code=code, message=message)  # fmt: skip
        write_log(log_path, record)
        print(f"fervid nightly: {message} (exit {code})", file=sys.stderr)
        return code

    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        return finish(EXIT_USAGE, f"input folders do not exist: {missing}; check --in")
    lock_path = dataset / LOCK_NAME
    try:
        with FileLock(lock_path):  # Locked when another run holds it
            codes: list[int] = []
            notes: list[str] = []
            argv = process_argv(args)
            record["command"] = argv
            rc, error = run_fervid(argv, args.timeout_s)
            record["process_exit"] = rc
            if rc is None or rc not in (0, FERVID_EXIT_FAILED_VIDEOS, FERVID_EXIT_USAGE):
                codes.append(EXIT_PROCESS_ERROR)
                notes.append(error or f"fervid exited with {rc}")
            elif rc == FERVID_EXIT_USAGE:
                codes.append(EXIT_USAGE)
                notes.append("fervid refused its arguments (exit 2; see its message above)")
            # Whole-second floor: processed_at is stored in seconds.
            record.update(count_videos(dataset, start.replace(microsecond=0)))
            unmatched = record["id_pattern_unmatched"]["total"]
            if unmatched:
                notes.append(
                    f"warning: {unmatched} recording(s) do not match --id-pattern (no subject; "
                    "listed as unassigned, in no trend): "
                    + ", ".join(record["id_pattern_unmatched"]["paths"][:5])
                    + (" …" if unmatched > 5 else "")
                )
            failed_now = record["this_run"].get("failed", 0)
            if failed_now or rc == FERVID_EXIT_FAILED_VIDEOS:
                codes.append(EXIT_FAILED_RECORDINGS)
                notes.append(f"{failed_now} recording(s) failed")
            if record["videos"]["total"]:
                try:
                    record.update(refresh(args, report_dir))
                except Exception as e:  # the run's results stay; only the refresh is lost
                    codes.append(EXIT_REFRESH_ERROR)
                    record["refresh_error"] = f"{type(e).__name__}: {e}"
                    notes.append(f"refresh failed: {record['refresh_error']}")
            else:
                notes.append("no results yet; nothing to summarize")
            n_new = record["this_run"].get("total", 0)
            ok_note = f"{n_new} recording(s) processed, {record['videos']['total']} in the dataset"
            return finish(_worst(codes), "; ".join([ok_note, *notes]))
    except Locked as e:
        return finish(
            EXIT_LOCKED,
            f"another nightly run (pid {e.holder}) holds {lock_path}; nothing done, try later",
        )


if __name__ == "__main__":
    sys.exit(main())
