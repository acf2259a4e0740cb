"""The nightly job (``fervid nightly``): analyse new recordings, then refresh the
sessions, trends and report derived from the dataset.

Steps, all under an exclusive lock (``<dataset>/.fervid-nightly.lock``,
:class:`fervid.output.lock.FileLock`):

0. Check, before hours of analysis, that every place the job writes is writable: the
   dataset, the folder *beside* it that holds the derived files, the report folder and
   the log (a systemd unit's ``ReadWritePaths`` must cover them all). A place that is
   not is a usage error naming it.
1. ``fervid process <in>... --out <dataset>/ [--id-pattern P] [extra args]`` as a
   subprocess (argv list, no shell). fervid skips recordings already done, so only new
   (or previously failed) recordings are analysed.
2. Count the videos table (all rows, and the rows written by this run), and the
   recordings whose path did not match ``--id-pattern`` (no subject: listed in the log
   line and warned about on stderr).
3. Refresh ``<dataset>.sessions.parquet``, ``<dataset>.trends.parquet`` and the HTML
   report (``<dataset>.report/``), all *beside* the dataset folder so that a glob or
   ``pd.read_parquet`` over the folder reads only fervid's tables.
4. Append one JSON line describing the run to the log file
   (``<dataset>.logs/nightly.jsonl`` unless ``log`` is given).

Exit codes: :data:`EXIT_OK` all well; :data:`EXIT_USAGE` usage error (here or from
fervid); :data:`EXIT_FAILED_RECORDINGS` recordings failed in this run;
:data:`EXIT_PROCESS_ERROR` the fervid command could not run, crashed or timed out;
:data:`EXIT_REFRESH_ERROR` the sessions/report refresh failed; :data:`EXIT_LOCKED`
another run holds the lock (nothing was done). When several apply, the most severe
wins: 2, 4, 5, 3. See docs/scheduling.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fervid.errors import ConfigError
from fervid.longitudinal.settings import LongitudinalSettings
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


@dataclass(frozen=True, kw_only=True)
class NightlySettings:
    """One nightly run.

        ``inputs``: recordings folders; ``dataset``: fervid's output folder (one file per
        video), created if missing. ``report_dir`` / ``log`` default to ``<dataset>.report``
        and ``<dataset>.logs/nightly.jsonl``, beside the dataset. ``fervid_cmd``: the argv
        prefix that runs fervid (default :func:`fervid_command`). ``timeout_s``: stop fervid
        after this long. ``report``: also rebuild the HTML report. ``process_args``: passed to
        ``fervid process`` after the job's own arguments. ``config``: the settings file given
    to ``fervid process`` too (its ``[process]`` table; else fervid reads ./fervid.toml).
    ``longitudinal``: the settings the
        sessions, trends and report use (the same as ``fervid summarize / trends / report``).
    """

    inputs: tuple[Path, ...]
    dataset: Path
    id_pattern: str | None = None
    report_dir: Path | None = None
    log: Path | None = None
    fervid_cmd: tuple[str, ...] | None = None
    patient_override: Path | None = None
    timeout_s: float | None = None
    report: bool = True
    process_args: tuple[str, ...] = ()
    config: Path | None = None
    longitudinal: LongitudinalSettings = field(default_factory=LongitudinalSettings)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no --in folder; give the recordings folder with --in DIR")
        if self.timeout_s is not None and not (
            math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise ConfigError(
                f"--timeout-s={self.timeout_s}; expected a positive number of seconds"
            )
        if self.fervid_cmd is not None and not self.fervid_cmd:
            raise ConfigError("--fervid-cmd is empty; give the fervid executable")

    @property
    def log_path(self) -> Path:
        # Beside the dataset folder, never inside it: readers glob the folder (docs/schema.md).
        return self.log or self.dataset.with_name(f"{self.dataset.name}.logs") / "nightly.jsonl"

    @property
    def report_path(self) -> Path:
        return self.report_dir or self.dataset.with_name(f"{self.dataset.name}.report")


def fervid_command(configured: tuple[str, ...] | None = None) -> list[str]:
    """The fervid argv prefix: configured words, else the fervid beside this Python
    (the installed entry point of the same environment), else PATH's."""
    if configured:
        return list(configured)
    beside = Path(sys.executable).parent / "fervid"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("fervid")
    return [found] if found else ["fervid"]


def process_argv(s: NightlySettings) -> list[str]:
    argv = [*fervid_command(s.fervid_cmd), "process", *map(str, s.inputs),
            "--out", f"{s.dataset}{os.sep}"]  # fmt: skip
    if s.id_pattern:
        argv += ["--id-pattern", s.id_pattern]
    if s.config is not None:  # the file whose [longitudinal] table this job read
        argv += ["--config", str(s.config)]
    return argv + list(s.process_args)


# --------------------------------------------------------------------------- steps
def written_places(s: NightlySettings) -> list[Path]:
    """The folders the job writes into: the dataset, the folder beside it holding the
    derived files (sessions, trends, their temporary files), the report folder's parent
    and the log's folder. Atomic writes put a temporary file beside each destination,
    so a folder must be writable, not only the files in it."""
    from fervid.longitudinal.summary import sessions_path

    places = [s.dataset, sessions_path(s.dataset).parent, s.log_path.parent]
    if s.report:
        places.append(s.report_path.parent)
    return list(dict.fromkeys(p.absolute() for p in places))


def unwritable(places: list[Path]) -> list[str]:
    """'<path> (<why>)' for each place whose nearest existing folder cannot be written."""
    bad = []
    for place in places:
        probe = place
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            why = "read-only file system" if _read_only(probe) else "permission denied"
            bad.append(f"{place} ({why} at {probe})")
    return bad


def _read_only(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    return False


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


def refresh(s: NightlySettings) -> dict[str, Any]:
    """Rewrite sessions.parquet, trends.parquet (and the report); return their paths."""
    import pyarrow.parquet as pq

    from fervid.longitudinal.summary import (
        ambiguous_recordings,
        sessions_path,
        summarize_dir,
        trends_path,
        write_sessions,
    )
    from fervid.longitudinal.trends import trends_with
    from fervid.output.atomic import atomic_path

    lon = s.longitudinal
    sessions = summarize_dir(s.dataset, s.patient_override, settings=lon.index, patient=lon.patient)
    out: dict[str, Any] = {"sessions": str(write_sessions(sessions, sessions_path(s.dataset)))}
    with atomic_path(trends_path(s.dataset)) as tmp:
        pq.write_table(trends_with(sessions, lon.trends), tmp)
    out["trends"] = str(trends_path(s.dataset))
    out["patient_ambiguous"] = {
        "total": len(amb := ambiguous_recordings(sessions)),
        "paths": amb["path"].head(MAX_UNMATCHED_LISTED).tolist(),
    }
    if s.report:
        from fervid.longitudinal.report import build_report

        out["report"] = str(build_report(s.dataset, s.report_path, sessions=sessions, settings=lon))
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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_nightly(
    s: NightlySettings,
    say: Callable[[str], None] = _stderr,
    record: dict[str, Any] | None = None,
) -> int:
    """One nightly run; returns its exit code (module docstring). ``say`` receives the
    closing line (and warnings), for stderr or a log; ``record``, when given, is filled
    with the log line's fields."""
    start = _now()
    t0 = time.monotonic()
    record = record if record is not None else {}
    record |= {
        "event": "fervid.nightly", "start": _iso(start), "host": socket.gethostname(),
        "pid": os.getpid(), "dataset": str(s.dataset), "inputs": [str(p) for p in s.inputs],
        "settings": s.longitudinal.to_json(),
    }  # fmt: skip

    def finish(code: int, message: str) -> int:
        end = _now()
        record.update(end=_iso(end), duration_s=round(time.monotonic() - t0, 3),
                      exit_code=code, message=message)  # fmt: skip
        try:
            write_log(s.log_path, record)
        except OSError as e:  # the run's outcome still reaches stderr and the exit code
            say(f"warning: cannot append to the log {s.log_path}: {e.strerror or e}")
        say(f"fervid nightly: {message} (exit {code})")
        return code

    missing = [str(p) for p in s.inputs if not p.exists()]
    if missing:
        return finish(EXIT_USAGE, f"input folders do not exist: {missing}; check --in")
    bad = unwritable(written_places(s))
    if bad:
        return finish(
            EXIT_USAGE,
            "cannot write where the nightly job writes: " + "; ".join(bad) + "; make them "
            "writable for the job's user (systemd: ReadWritePaths= must cover the folder that "
            "holds the dataset, since sessions, trends and the report are written beside it)",
        )
    lock_path = s.dataset / LOCK_NAME
    try:
        with FileLock(lock_path):  # Locked when another run holds it
            return finish(*_locked_run(s, record, start))
    except Locked as e:
        return finish(
            EXIT_LOCKED,
            f"another nightly run (pid {e.holder}) holds {lock_path}; nothing done, try later",
        )


def _locked_run(s: NightlySettings, record: dict[str, Any], start: dt.datetime) -> tuple[int, str]:
    codes: list[int] = []
    notes: list[str] = []
    argv = process_argv(s)
    record["command"] = argv
    rc, error = run_fervid(argv, s.timeout_s)
    record["process_exit"] = rc
    if rc is None or rc not in (0, FERVID_EXIT_FAILED_VIDEOS, FERVID_EXIT_USAGE):
        codes.append(EXIT_PROCESS_ERROR)
        notes.append(error or f"fervid exited with {rc}")
    elif rc == FERVID_EXIT_USAGE:
        codes.append(EXIT_USAGE)
        notes.append("fervid refused its arguments (exit 2; see its message above)")
    # Whole-second floor: processed_at may be stored in whole seconds.
    record.update(count_videos(s.dataset, start.replace(microsecond=0)))
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
            record.update(refresh(s))
        except Exception as e:  # the run's results stay; only the refresh is lost
            codes.append(EXIT_REFRESH_ERROR)
            record["refresh_error"] = f"{type(e).__name__}: {e}"
            notes.append(f"refresh failed: {record['refresh_error']}")
        ambiguous = record.get("patient_ambiguous", {}).get("total", 0)
        if ambiguous:
            notes.append(
                f"warning: {ambiguous} recording(s) have an ambiguous patient face (rule "
                f"{s.longitudinal.patient.rule}; column patient_ambiguous): set --patient-face"
            )
    else:
        notes.append("no results yet; nothing to summarize")
    n_new = record["this_run"].get("total", 0)
    ok_note = f"{n_new} recording(s) processed, {record['videos']['total']} in the dataset"
    return _worst(codes), "; ".join([ok_note, *notes])
