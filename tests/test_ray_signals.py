"""Signals through an embedded Ray, whenever they arrive (issue 19 rows 7 and 8).

SIGTERM and SIGINT from the first line of the command to the run's end give one line,
exit 143 / 130 and, with ``--json``, one document naming the signal: never Ray's
``sys.exit(15)``, its C++ "SIGTERM received" stack dump, or SIGABRT. SIGKILL of the
driver leaves no process of its Ray behind (the watchdog) and no private folder."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers_model import make_debug_model

from fervid.engine.ray_watchdog import DAEMONS_FILE, members

pytestmark = [
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc"),
    pytest.mark.slow,  # each starts an embedded Ray
]

LONG = "WolfgangLanger_Pexels.mp4"  # 19.7 s: 10 chunks of 2 s, persisted one by one
CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
LINE = re.compile(r"^interrupted(: \d+ of \d+ videos done.*| before the run started.*|;.*)$")


class Run:
    """``fervid process --executor ray --json`` in a session of its own (its process
    group is the driver's alone, as a terminal's job would be)."""

    def __init__(self, tmp_path: Path, sample_dir: Path, video: str) -> None:
        inputs = tmp_path / "in"
        inputs.mkdir(exist_ok=True)
        shutil.copyfile(sample_dir / video, inputs / video)
        model = make_debug_model(tmp_path / "m.safetensors")
        self.chunks = tmp_path / ".r.parquet.fervid" / ".chunks"
        cmd = [sys.executable, "-m", "fervid", "process", str(inputs), "--out",
               str(tmp_path / "r.parquet"), "--model", str(model), "--executor", "ray",
               "--workers", "1", "--chunk-seconds", "2", "--settle-seconds", "0", "--json",
               "-q"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"COLUMNS": "200"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=tmp_path, start_new_session=True)  # fmt: skip
        self.t0 = time.monotonic()
        self.sessions: set[int] = set()

    def private_dir(self) -> Path | None:
        """The run's private Ray folder (its driver.pid names this driver)."""
        for pid_file in Path(tempfile.gettempdir()).glob("fervid-ray-*/driver.pid"):
            try:
                if int(pid_file.read_text()) == self.proc.pid:
                    return pid_file.parent
            except (OSError, ValueError):
                continue
        return None

    def note_sessions(self) -> None:
        """Remember the session ids of the Ray daemons started so far."""
        folder = self.private_dir()
        if folder is not None:
            with contextlib.suppress(OSError, ValueError):
                self.sessions |= {int(w) for w in (folder / DAEMONS_FILE).read_text().split()}

    def wait_for(self, ready: object, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            self.note_sessions()
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.02)
        self.note_sessions()

    def mid_run(self) -> bool:
        return bool(list(self.chunks.glob("*/*/*.parquet")))

    def in_ray_init(self) -> bool:
        """Ray's GCS or raylet is started: ``ray.init`` is under way."""
        folder = self.private_dir()
        return folder is not None and (folder / DAEMONS_FILE).is_file()

    def stop(self, sig: signal.Signals, times: int = 1) -> tuple[str, str]:
        for _ in range(times):
            os.killpg(self.proc.pid, sig)  # the whole group, as a terminal's Ctrl-C
            time.sleep(0.2)
        return self.proc.communicate(timeout=120)


def _one_interrupt(run: Run, sig: signal.Signals, stdout: str, stderr: str) -> None:
    assert run.proc.returncode == CODES[sig], (run.proc.returncode, stderr)
    assert "Traceback" not in stderr and "received at" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]), stderr
    doc = json.loads(stdout)  # exactly one document
    assert doc["interrupted"] == sig.name


def _no_leftovers(run: Run, timeout: float = 10.0) -> float:
    """Seconds until no process of the run's Ray sessions is left (by session id)."""
    t0 = time.monotonic()
    while members(run.sessions):
        assert time.monotonic() - t0 < timeout, f"left after {timeout} s: {members(run.sessions)}"
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.mark.parametrize(
    ("moment", "sig"),
    [
        ("0.5s", signal.SIGTERM),  # imports, options, the output opened
        ("2s", signal.SIGTERM),  # the model read, the videos probed, or Ray starting
        ("ray.init", signal.SIGTERM),  # Ray's daemons are starting
        ("ray.init", signal.SIGINT),
        ("mid-run", signal.SIGTERM),
    ],
)
def test_a_stop_signal_at_any_moment_is_one_line_and_its_exit_code(
    moment: str, sig: signal.Signals, tmp_path: Path, sample_dir: Path
) -> None:
    run = Run(tmp_path, sample_dir, LONG if moment == "mid-run" else "single_face.mp4")
    if moment.endswith("s"):
        time.sleep(float(moment[:-1]))
    else:
        run.wait_for(run.in_ray_init if moment == "ray.init" else run.mid_run, moment)
    stdout, stderr = run.stop(sig)
    _one_interrupt(run, sig, stdout, stderr)
    _no_leftovers(run)
    folder = run.private_dir()
    assert folder is None, f"{folder} left behind"


def test_a_triple_ctrl_c_mid_run_keeps_the_counts_and_prints_no_traceback(
    tmp_path: Path, sample_dir: Path
) -> None:
    run = Run(tmp_path, sample_dir, LONG)
    run.wait_for(run.mid_run, "persisted chunk")
    stdout, stderr = run.stop(signal.SIGINT, times=3)
    _one_interrupt(run, signal.SIGINT, stdout, stderr)
    assert "chunks of" in stderr  # the line of the first Ctrl-C: what was kept
    assert run.sessions and not members(run.sessions)


def test_sigkill_of_the_driver_leaves_no_ray_process_and_no_private_folder(
    tmp_path: Path, sample_dir: Path
) -> None:
    run = Run(tmp_path, sample_dir, LONG)
    run.wait_for(run.mid_run, "persisted chunk")
    folder = run.private_dir()
    assert folder is not None and len(members(run.sessions)) >= 3  # gcs, raylet, workers...
    run.proc.kill()
    run.proc.wait()
    _no_leftovers(run, timeout=5.0)  # issue 19: none more than 5 s after the driver ends
    deadline = time.monotonic() + 5
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not folder.exists()
