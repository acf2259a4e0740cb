"""Ray as a user meets it: a real two-node cluster on this machine, --ray-address errors,
and no Ray at all when there is nothing to do.

Every cluster here keeps all of its sockets on 127.0.0.1 (``--node-ip-address
127.0.0.1``; the worker node is started through a launcher that stops Ray swapping
127.0.0.1 for the network address) and is stopped by killing the process groups this
test started, never with ``ray stop`` (which stops every Ray on the machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers_cluster import clean_env, free_port, is_loopback, listening_ips, loopback_cluster
from helpers_model import make_debug_model

from fervid.engine.runner import run
from fervid.model.spec import file_sha256
from fervid.output.store import read_table
from fervid.settings import ClassifySettings, ExecutorKind, RunSettings


def _fervid(*args: object, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "fervid", "process", *map(str, args)],
        cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """A head node and a second node, 1 CPU each, each started in its own folder."""
    with loopback_cluster(tmp_path, cpus=(1, 1)) as cluster:
        yield cluster


def _same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.num_rows == b.num_rows > 0
    for c in a.column_names:
        x, y = a[c].to_pylist(), b[c].to_pylist()
        if pa.types.is_floating(a.schema.field(c).type):
            np.testing.assert_allclose(np.array(x, float), np.array(y, float), atol=1e-5,
                                       err_msg=c)  # fmt: skip
        else:
            assert x == y, c


@pytest.mark.slow
def test_custom_model_on_a_two_node_cluster_gives_the_rows_of_a_local_run(
    two_node_cluster: tuple[str, list[int]], tmp_path: Path, sample_dir: Path
) -> None:
    address, groups = two_node_cluster
    driver = tmp_path / "driver"  # the user's folder: every relative path is relative to it
    (driver / "in").mkdir(parents=True)
    for name in ("single_face.mp4", "face_noface.mov"):
        shutil.copyfile(sample_dir / name, driver / "in" / name)
    custom = make_debug_model(driver / "models" / "alt.safetensors", seed=7)

    result = _fervid(
        "in", "--out", "out.parquet", "--ray-address", address, "--chunk-seconds", "2",
        "--save-crops", "crops", "--json", "-q", cwd=driver,
        env=clean_env(FERVID_MODEL="models/alt.safetensors"),  # relative, read by the driver
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["executor"]) == (2, "ray")

    local = RunSettings(
        inputs=(driver / "in",), out=tmp_path / "local.parquet", chunk_seconds=0,
        classify=ClassifySettings(model_path=custom), executor=ExecutorKind.LOCAL,
    )  # fmt: skip
    run(local)
    for table in ("frames", "segments"):
        _same_rows(read_table(driver / "out.parquet", table), read_table(local.out, table))
    videos = read_table(driver / "out.parquet", "videos")
    assert set(videos["model_sha256"].to_pylist()) == {file_sha256(custom)}
    # the audit crops went to the user's folder, not to a node's working directory
    assert list((driver / "crops").rglob("*.png"))
    assert not (tmp_path / "node0" / "crops").exists()
    assert not (tmp_path / "node1" / "crops").exists()
    # the whole cluster listened on loopback only
    ips = listening_ips(groups)
    assert ips and all(is_loopback(ip) for ip in ips), ips

    # a plain run while this cluster is up (and RAY_ADDRESS names it) starts its own Ray:
    # attaching would fail ("num_cpus and num_gpus must not be provided") or, worse,
    # send the crops to somebody else's cluster
    plain = _fervid("in", "--out", "plain.parquet", "--executor", "ray", "--workers", "1",
                    "--model", custom, "--json", "-q", cwd=driver,
                    env=clean_env(RAY_ADDRESS=address))  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    _same_rows(read_table(driver / "plain.parquet", "frames"), read_table(local.out, "frames"))


def test_ray_address_to_a_dead_port_is_one_line_and_exit_2(
    tmp_path: Path, sample_dir: Path
) -> None:
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    result = _fervid(
        sample_dir / "single_face.mp4", "--out", tmp_path / "r.parquet",
        "--ray-address", f"127.0.0.1:{port}", cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --ray-address="), lines
    assert "nothing answers there" in lines[0] and "ray start --head" in lines[0]
    assert time.monotonic() - t0 < 60  # not Ray's minute-long retry loop


def test_nothing_to_do_starts_no_ray(tmp_path: Path, sample_dir: Path) -> None:
    model = make_debug_model(tmp_path / "m.safetensors")
    args = (sample_dir / "single_face.mp4", "--out", tmp_path / "r.parquet", "--model", model,
            "--json", "-q")  # fmt: skip
    first = _fervid(*args, "--executor", "local", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = _fervid(*args, "--executor", "ray", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["skipped"], summary["todo"], summary["executor"]) == (1, 0, "none")


@pytest.mark.slow
def test_a_token_auth_cluster_without_the_token_is_one_line_and_exit_2(
    tmp_path: Path, sample_dir: Path
) -> None:
    token = tmp_path / "auth_token"
    with loopback_cluster(tmp_path / "cluster", cpus=(1,), token=token) as (address, _):
        args = (sample_dir / "single_face.mp4", "--out", tmp_path / "r.parquet",
                "--ray-address", address, "--executor", "ray", "-q")  # fmt: skip
        refused = _fervid(*args, cwd=tmp_path, timeout=120)
        allowed = _fervid(*args, cwd=tmp_path, env=clean_env(
            RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token)))  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "RAY_AUTH_MODE=token" in lines[0], lines  # the fix, no log spam
    assert allowed.returncode == 0, allowed.stderr
