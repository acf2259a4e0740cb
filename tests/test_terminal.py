"""What reaches the terminal (issue 20 row 3, issue 17's clean terminal): with ``--json``
stdout is exactly one JSON document in every ending, and no line of Ray's (its C++
logger, its raylet messages, its workers) reaches stdout or stderr unless ``--verbose``;
``--log-file`` gets them, with fervid's per-video timings.

The Ray case is a real run as a user starts it (a subprocess, real file descriptors),
with an extraction worker killed mid-run: Ray retries the chunk and prints "(raylet) A
worker died ..." on the driver's stdout, which used to come before the JSON.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helpers_cli import process
from helpers_cluster import RAY_LINE
from helpers_model import make_debug_model

from fervid.cli import EXIT_USAGE

LONG = "WolfgangLanger_Pexels.mp4"  # 19.7 s: 10 chunks of 2 s


def _kill_one_extraction_worker(proc: subprocess.Popen, deadline: float) -> int:
    """SIGKILL the first Ray worker seen running a chunk; returns its pid."""
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for p in psutil.Process(proc.pid).children(recursive=True):
            try:
                if "_extract_task" in " ".join(p.cmdline()):
                    p.send_signal(signal.SIGKILL)
                    return p.pid
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError("no Ray worker ran an extraction task in time")


@pytest.mark.slow
def test_a_ray_worker_killed_mid_run_leaves_stdout_one_json_document(
    tmp_path: Path, copy_sample: Callable[[str, str], Path]
) -> None:
    inputs = copy_sample(LONG, "in/a.mp4").parent
    model = make_debug_model(tmp_path / "m.safetensors")
    log = tmp_path / "logs" / "run.log"
    log.parent.mkdir()
    cmd = [sys.executable, "-m", "fervid", "process", str(inputs), "--out",
           str(tmp_path / "r.parquet"), "--model", str(model), "--executor", "ray",
           "--workers", "1", "--chunk-seconds", "2", "--json", "--log-file", str(log)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"COLUMNS": "200"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)  # fmt: skip
    try:
        killed = _kill_one_extraction_worker(proc, time.monotonic() + 240)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 0, stderr  # the chunk was retried
    summary = json.loads(stdout)  # the whole of stdout is one document
    assert summary["ok"] == 1 and summary["failed"] == [] and summary["executor"] == "ray"
    assert not RAY_LINE.search(stderr), stderr
    assert "Traceback" not in stderr
    logged = log.read_text()
    assert "A worker died" in logged and str(killed) in logged  # Ray's line, in the log
    assert re.search(
        r"INFO fervid\.engine\.runner: done a\.mp4: 19\.7 s of video, 40 frames", logged
    )
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_json_is_one_document_when_the_run_cannot_start(tmp_path: Path) -> None:
    model = make_debug_model(tmp_path / "m.safetensors")
    for extra in ([], ["--fps", "-1"]):  # a missing input; a bad option
        result = process(tmp_path / "missing", tmp_path / "out", model, *extra)
        assert result.exit_code == EXIT_USAGE
        doc = json.loads(result.stdout)
        assert doc["exit_code"] == EXIT_USAGE and result.stderr.startswith("error: ")
        assert doc["error"] in result.stderr


def test_log_file_that_cannot_be_written_is_one_line(tmp_path: Path, sample_dir: Path) -> None:
    model = make_debug_model(tmp_path / "m.safetensors")
    bad = tmp_path / "no such folder" / "run.log"
    result = process(sample_dir / "single_face.mp4", tmp_path / "out", model, "--log-file", bad)
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith(f"error: --log-file={bad}: cannot write it")
    assert json.loads(result.stdout)["exit_code"] == EXIT_USAGE
