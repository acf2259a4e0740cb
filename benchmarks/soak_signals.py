"""Soak: signals at random moments of real runs, then a resume, then the checks.

Not a test: prints what it saw. Each of ``--runs`` rounds starts ``fervid process`` (Ray
or in-process, alternating) on a few short sample videos and the 20 s one (kept in
chunks), into a fresh output; at a random moment of a run's usual length it sends
SIGINT, SIGTERM, SIGHUP or SIGKILL, to the driver or to its whole process group (what a
terminal's Ctrl-C or a service manager does). Then:

- the stopped run: exit code 130 / 143 / 129 (or -9; 0 when it had finished first), no
  traceback, no Ray stack dump, and with ``--json`` one document naming the signal;
- leftovers: the processes of the run's Ray sessions (the session ids its private
  folder recorded, never names) 5 s after the driver ended, and its private folder;
- the resume: exit 0, then every video exactly once in the videos table, no duplicate
  frame row (``video_id``, ``frame_index``, ``face_id``), and each video's frame rows
  equal in number to an uninterrupted run's.

    nice -n 10 python benchmarks/soak_signals.py --runs 20
    python benchmarks/soak_signals.py --runs 4 --executor ray --seed 7
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fervid.engine.ray_watchdog import DAEMONS_FILE, members
from fervid.output.store import read_table

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ("single_face.mp4", "face_noface.mov", "noface_face.mov", "WolfgangLanger_Pexels.mp4")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL)
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGKILL: -9}
LEFTOVER_WAIT_S = 5.0


def command(inputs: Path, out: Path, executor: str) -> list[str]:
    return [sys.executable, "-m", "fervid", "process", str(inputs), "--out", str(out),
            "--executor", executor, "--workers", "1", "--chunk-seconds", "4", "--fps", "1",
            "--settle-seconds", "0", "--json", "-q"]  # fmt: skip


def private_dir(pid: int) -> Path | None:
    for pid_file in Path(tempfile.gettempdir()).glob("fervid-ray-*/driver.pid"):
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text()) == pid:
                return pid_file.parent
    return None


class Watched:
    """A run in a session of its own, with the Ray sessions it recorded."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                     start_new_session=True)  # fmt: skip
        self.sessions: set[int] = set()
        self.folder: Path | None = None

    def poll_sessions(self) -> None:
        folder = private_dir(self.proc.pid) or self.folder
        if folder is not None:
            self.folder = folder
            with contextlib.suppress(OSError, ValueError):
                self.sessions |= {int(w) for w in (folder / DAEMONS_FILE).read_text().split()}

    def wait(self, until: float | None = None) -> bool:
        """Poll until the run ends (True) or ``until`` (monotonic) passes (False)."""
        while self.proc.poll() is None:
            self.poll_sessions()
            if until is not None and time.monotonic() >= until:
                return False
            time.sleep(0.02)
        return True

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=600)
        return self.proc.returncode, out, err


def frame_counts(out: Path) -> dict[str, int]:
    frames = read_table(out, "frames")
    counts = collections.Counter(frames.column("path").to_pylist())
    return dict(counts)


def check_rows(out: Path, paths: set[str], reference: dict[str, int]) -> list[str]:
    """Exactly-once: every video once in videos, no duplicate frame row, and each
    video's frame rows as many as an uninterrupted run's."""
    problems = []
    videos = read_table(out, "videos")
    seen = collections.Counter(videos.column("path").to_pylist())
    if set(seen) != paths or any(n != 1 for n in seen.values()):
        problems.append(f"videos rows {dict(seen)}")
    bad = [s for s in videos.column("status").to_pylist() if s not in ("ok", "ok_with_warnings")]
    if bad:
        problems.append(f"statuses {bad}")
    frames = read_table(out, "frames")
    keys = list(zip(*(frames.column(c).to_pylist() for c in ("video_id", "frame_index",
                                                             "face_id")), strict=True))  # fmt: skip
    if len(keys) != len(set(keys)):
        problems.append(f"{len(keys) - len(set(keys))} duplicate frame rows")
    if frame_counts(out) != reference:
        problems.append(f"frame rows {frame_counts(out)} != {reference}")
    return problems


def check_stopped(sig: signal.Signals | None, code: int, stdout: str, stderr: str) -> list[str]:
    """The run's ending: ``sig`` None when it finished before the moment came."""
    problems = []
    if code not in (0 if sig is None else CODES[sig], 0):
        problems.append(f"exit {code}: {stderr.strip()[-300:]!r}")
    if "Traceback" in stderr or "received at" in stderr or "Aborted" in stderr:
        problems.append("traceback or Ray stack dump: " + stderr.strip()[-300:])
    if sig is not signal.SIGKILL:
        try:
            doc = json.loads(stdout)
        except ValueError:
            problems.append(f"stdout is not one JSON document: {stdout[:200]!r}")
        else:
            if code != 0 and sig is not None and doc.get("interrupted") != sig.name:
                problems.append(f"--json says {doc.get('interrupted')}")
        lines = [ln for ln in stderr.splitlines() if ln.startswith("interrupted")]
        if code != 0 and len(lines) != 1:
            problems.append(f"{len(lines)} interrupted lines")
    return problems


def leftovers(run: Watched) -> tuple[int, float, bool]:
    """Processes of the run's Ray sessions left 5 s after the driver ended, seconds
    until none was left, and whether its private folder is still there 5 s after."""
    t0 = time.monotonic()
    while members(run.sessions) and time.monotonic() - t0 < LEFTOVER_WAIT_S:
        time.sleep(0.05)
    gone_s = time.monotonic() - t0
    left = members(run.sessions)
    for pid in left:  # the soak cleans up after a failure, by pid
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    # the watchdog removes the folder after its sweep: give it the same 5 s
    while run.folder is not None and run.folder.exists():
        if time.monotonic() - t0 >= LEFTOVER_WAIT_S:
            break
        time.sleep(0.05)
    folder_left = run.folder is not None and run.folder.exists()
    return len(left), gone_s, folder_left


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--executor", choices=["both", "ray", "local"], default="both")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    # A job started in the background by a non-interactive shell ignores Ctrl-C, and so
    # would every run it starts: give them the ordinary disposition.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"COLUMNS": "200"}
    work = Path(tempfile.mkdtemp(prefix="fervid-soak-"))
    inputs = work / "in"
    inputs.mkdir()
    for name in VIDEOS:
        shutil.copyfile(ROOT / "sample_videos" / name, inputs / name)
    paths = set(VIDEOS)
    executors = ["ray", "local"] if args.executor == "both" else [args.executor]

    durations: dict[str, float] = {}
    reference: dict[str, int] = {}
    for ex in executors:  # uninterrupted runs: the rows to expect, the moments to aim at
        t0 = time.monotonic()
        done = subprocess.run(command(inputs, work / f"ref-{ex}.parquet", ex), env=env,
                              capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"reference run ({ex}) failed: {done.stderr[-500:]}")
        durations[ex] = time.monotonic() - t0
        counts = frame_counts(work / f"ref-{ex}.parquet")
        if reference and counts != reference:
            sys.exit(f"ray and local disagree: {counts} != {reference}")
        reference = counts
    print(
        f"seed {seed}; uninterrupted: " + ", ".join(f"{k} {v:.1f} s" for k, v in durations.items()),
        flush=True,
    )

    signals: collections.Counter[str] = collections.Counter()
    codes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    rows_checked = left_total = folders_left = 0
    worst_gone = 0.0
    for i in range(args.runs):
        ex = executors[i % len(executors)]
        sig = rng.choice(SIGNALS)
        group = rng.random() < 0.5
        delay = rng.uniform(0.2, 0.8 * durations[ex])  # later runs are a little faster
        out = work / f"run{i}.parquet"
        run = Watched(command(inputs, out, ex), env)
        started = time.monotonic()
        sent = not run.wait(until=started + delay)
        if not sent:  # aim the next ones within this run's length
            durations[ex] = min(durations[ex], time.monotonic() - started)
        if sent:
            (os.killpg if group else os.kill)(run.proc.pid, sig)
        code, stdout, stderr = run.finish()
        run.poll_sessions()
        signals[sig.name if sent else "none (finished first)"] += 1
        codes[f"{sig.name if sent else 'none'}->{code}"] += 1
        problems = check_stopped(sig if sent else None, code, stdout, stderr)
        n_left, gone_s, folder_left = leftovers(run)
        worst_gone = max(worst_gone, gone_s)
        left_total += n_left
        folders_left += folder_left
        if n_left:
            problems.append(f"{n_left} Ray processes left after {LEFTOVER_WAIT_S:.0f} s")
        if folder_left:
            problems.append(f"private folder {run.folder} left")
        resumed = subprocess.run(command(inputs, out, ex), env=env, capture_output=True,
                                 text=True, cwd=ROOT)  # fmt: skip
        if resumed.returncode != 0:
            problems.append(f"resume exit {resumed.returncode}: {resumed.stderr[-300:]}")
        else:
            problems += check_rows(out, paths, reference)
            rows_checked += sum(reference.values()) + len(paths)
        where = "group" if group else "driver"
        status = "ok" if not problems else "FAIL " + "; ".join(problems)
        what = f"{sig.name:<7} to {where:<6} at {delay:5.1f} s" if sent else "(finished first)"
        print(f"run {i + 1:>3} {ex:<5} {what}: exit "
              f"{code:>4}, {len(run.sessions)} Ray sessions, gone in {gone_s:.2f} s: {status}",
              flush=True)  # fmt: skip
        if problems:
            failures.append(f"run {i + 1}: {'; '.join(problems)}")
    print()
    print(f"runs {args.runs} ({', '.join(executors)}), seed {seed}")
    print("signals " + ", ".join(f"{k} {v}" for k, v in sorted(signals.items())))
    print("exit codes " + ", ".join(f"{k} x{v}" for k, v in sorted(codes.items())))
    print(
        f"leftover Ray processes 5 s after the driver ended: {left_total}; private folders "
        f"left: {folders_left}; slowest clean-up {worst_gone:.2f} s"
    )
    print(f"rows checked after resume: {rows_checked} (every video once, no duplicate frame row)")
    print(f"failures: {len(failures)}")
    for f in failures:
        print("  " + f)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
