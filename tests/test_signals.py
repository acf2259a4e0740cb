"""Ctrl-C (SIGINT) and SIGTERM in the middle of a run: what is finished is on disk, the
run says so in one line and exits 130 / 143, and a rerun resumes from the finished
chunks to exactly the rows of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers_model import make_debug_model

from fervid.engine.runner import run
from fervid.output.store import read_table
from fervid.settings import ClassifySettings, ExecutorKind, RunSettings

LONG = "WolfgangLanger_Pexels.mp4"  # 19.7 s: 9 chunks of 2 s, persisted one by one
#: "interrupted: 0 of 3 videos done; 4 of 10 chunks of a_long.mp4 kept; rerun to resume"
MESSAGE = re.compile(
    r"^interrupted: (\d+) of (\d+) videos done((?:; \d+ of \d+ chunks of \S+ kept)*); "
    r"rerun to resume$",
    re.M,
)


def _same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.num_rows == b.num_rows
    for c in a.column_names:
        x, y = a[c].to_pylist(), b[c].to_pylist()
        if pa.types.is_floating(a.schema.field(c).type):
            np.testing.assert_allclose(np.array(x, float), np.array(y, float), atol=1e-6,
                                       err_msg=c)  # fmt: skip
        else:
            assert x == y, c


@pytest.mark.parametrize(
    ("sig", "executor", "code"),
    [
        (signal.SIGINT, "local", 130),
        pytest.param(signal.SIGTERM, "local", 143),
        pytest.param(signal.SIGHUP, "local", 129),  # an ssh session that drops
        pytest.param(signal.SIGTERM, "ray", 143, marks=pytest.mark.slow),
    ],
    ids=["sigint-local", "sigterm-local", "sighup-local", "sigterm-ray"],
)
def test_signal_mid_run_then_rerun_equals_an_uninterrupted_run(
    sig: signal.Signals, executor: str, code: int, tmp_path: Path, sample_dir: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copyfile(sample_dir / LONG, inputs / "a_long.mp4")  # first: its chunks persist
    for name in ("single_face.mp4", "face_noface.mov"):
        shutil.copyfile(sample_dir / name, inputs / f"z_{name}")
    model = make_debug_model(tmp_path / "m.safetensors")
    out = tmp_path / "r.parquet"
    cmd = [sys.executable, "-m", "fervid", "process", str(inputs), "--out", str(out),
           "--model", str(model), "--executor", executor, "--workers", "1",
           "--chunk-seconds", "2", "--json", "-q"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"COLUMNS": "200"}

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)  # fmt: skip
    chunks = tmp_path / ".r.parquet.fervid" / ".chunks"
    deadline = time.monotonic() + 300
    while not list(chunks.glob("*/*/*.parquet")):  # one chunk of the long video is on disk
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chunk was persisted within 300 s"
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)

    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    (line,) = MESSAGE.findall(stderr)
    summary = json.loads(stdout)
    assert summary["interrupted"] == sig.name
    assert (int(line[0]), int(line[1])) == (summary["ok"] + len(summary["failed"]),
                                            summary["todo"])  # fmt: skip
    # the long video was cut short: the line and --json say how many of its chunks stay
    (partial,) = summary["partial"]
    assert (partial["path"], partial["chunks"]) == ("a_long.mp4", 10)
    assert 1 <= partial["chunks_kept"] < 10
    assert line[2] == f"; {partial['chunks_kept']} of 10 chunks of a_long.mp4 kept"

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    # the long video went on from exactly the chunks the line said were kept
    assert resumed["chunks_resumed"] == partial["chunks_kept"]
    assert resumed["ok"] + resumed["skipped"] == 3 and not resumed["failed"]
    assert not list(chunks.glob("*/*/*.parquet"))  # merged into the video and removed

    whole = RunSettings(
        inputs=(inputs,), out=tmp_path / "whole.parquet", chunk_seconds=2.0,
        classify=ClassifySettings(model_path=model), executor=ExecutorKind.LOCAL,
    )  # fmt: skip
    run(whole)
    for table in ("frames", "segments"):
        _same_rows(read_table(out, table), read_table(whole.out, table))
    cols = ["path", "status", "frames_sampled", "n_face_rows", "n_faces"]
    assert (
        read_table(out, "videos")
        .select(cols)
        .sort_by("path")
        .equals(read_table(whole.out, "videos").select(cols).sort_by("path"))
    )


def test_a_sigterm_that_ray_turns_into_keyboardinterrupt_is_still_named() -> None:
    """Ray's blocking calls replace the exception a signal handler raises by a plain
    KeyboardInterrupt; the run must still report SIGTERM (exit 143), not SIGINT."""
    from fervid.engine.interrupt import received, sigterm_as_interrupt

    caught: BaseException | None = None
    with sigterm_as_interrupt():
        try:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises before this ends
            except KeyboardInterrupt:
                raise KeyboardInterrupt() from None  # what ray._raylet.check_status does
        except KeyboardInterrupt as e:
            caught = e
    assert caught is not None and type(caught) is KeyboardInterrupt
    assert received(caught) == "SIGTERM"


def test_stale_private_ray_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    from fervid.engine.ray_setup import remove_stale_private_dirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folders = {}
    for name, pid in (("dead", dead.pid), ("alive", os.getpid()), ("no-pid", None)):
        folders[name] = tmp_path / f"fervid-ray-{name}"
        (folders[name] / "ray").mkdir(parents=True)
        if pid is not None:
            (folders[name] / "driver.pid").write_text(f"{pid}\n")
    (tmp_path / "other-dead").mkdir()
    (tmp_path / "other-dead" / "driver.pid").write_text(f"{dead.pid}\n")

    assert remove_stale_private_dirs(tmp_path) == [folders["dead"]]
    assert not folders["dead"].exists()
    assert folders["alive"].is_dir() and folders["no-pid"].is_dir()
    assert (tmp_path / "other-dead").is_dir()
