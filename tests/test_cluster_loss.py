"""An attached cluster that loses its raylet mid-run (issue 20, row 2): one ``error:``
line naming the lost node, exit code 5, the summary of what finished, within seconds,
stdout still one JSON document; the rerun resumes from the finished chunks.

A real loopback cluster (``helpers_cluster``), the raylet killed with SIGKILL as an
out-of-memory killer or a crash would; ``ray start --block`` then stops the node's other
processes, its GCS included.
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
from helpers_cluster import RAY_LINE, clean_env, loopback_cluster
from helpers_model import make_debug_model

from fervid.cli import EXIT_CLUSTER_LOST

LONG = "WolfgangLanger_Pexels.mp4"  # 19.7 s: 10 chunks of 2 s


def _raylet(groups: list[int]) -> psutil.Process:
    for p in psutil.process_iter(["name"]):
        try:
            if p.info["name"] == "raylet" and os.getpgid(p.pid) in groups:
                return p
        except (psutil.Error, ProcessLookupError):
            continue
    raise AssertionError(f"no raylet in process groups {groups}")


@pytest.mark.slow
def test_losing_the_raylet_is_one_line_exit_5_within_seconds_and_a_rerun_resumes(
    tmp_path: Path, copy_sample: Callable[[str, str], Path]
) -> None:
    inputs = copy_sample(LONG, "in/a_long.mp4").parent
    model = make_debug_model(tmp_path / "m.safetensors")
    out = tmp_path / "r.parquet"
    args = ["process", str(inputs), "--out", str(out), "--model", str(model),
            "--chunk-seconds", "2", "--workers", "1", "--json"]  # fmt: skip
    env = clean_env()
    chunks = tmp_path / ".r.parquet.fervid" / ".chunks"
    with loopback_cluster(tmp_path / "nodes", cpus=(2,)) as (address, groups):
        proc = subprocess.Popen(
            [sys.executable, "-m", "fervid", *args, "--ray-address", address], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while not list(chunks.glob("*/*/*.parquet")):  # the run is under way
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no chunk was persisted within 300 s"
                time.sleep(0.05)
            _raylet(groups).send_signal(signal.SIGKILL)
            killed = time.monotonic()
            stdout, stderr = proc.communicate(timeout=120)
            took = time.monotonic() - killed
        finally:
            if proc.poll() is None:
                proc.kill()

    assert proc.returncode == EXIT_CLUSTER_LOST, stderr
    assert took < 15, f"{took:.1f} s to notice the lost node"  # Ray alone: 60 s, exit 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lost node 127.0.0.1" in errors[0], stderr
    assert not RAY_LINE.search(stderr) and "Traceback" not in stderr, stderr
    assert "videos ok" in stderr  # the summary of what finished
    summary = json.loads(stdout)
    assert summary["exit_code"] == EXIT_CLUSTER_LOST and summary["error"] in errors[0]
    (partial,) = summary["partial"]
    assert partial["path"] == "a_long.mp4" and partial["chunks_kept"] >= 1
    assert re.search(rf"0 of 1 videos done; {partial['chunks_kept']} of 10 chunks", stderr)

    again = subprocess.run(  # the cluster is gone: the rerun runs here, from the kept chunks
        [sys.executable, "-m", "fervid", *args, "--executor", "local"], env=env,
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["ok"] == 1 and resumed["chunks_resumed"] == partial["chunks_kept"]
