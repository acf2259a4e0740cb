"""Ray as a user meets it: a real two-node cluster on this machine, --ray-address errors,
and no Ray at all when there is nothing to do.

Every cluster here keeps all of its sockets on 127.0.0.1 (``--node-ip-address
127.0.0.1``; the worker node is started through a launcher that stops Ray swapping
127.0.0.1 for the network address) and is stopped by killing the process groups this
test started, never with ``ray stop`` (which stops every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers_model import make_debug_model

from fervid.engine.runner import run
from fervid.model.spec import file_sha256
from fervid.output.store import read_table
from fervid.settings import ClassifySettings, ExecutorKind, RunSettings

#: `ray start` with services.resolve_ip_for_localhost disabled: with multi-node clusters
#: enabled (needed for a second node) Ray would otherwise turn --node-ip-address
#: 127.0.0.1 into the machine's network address.
LAUNCH = """
import sys
from ray._private import services
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fervid(*args: object, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "fervid", "process", *map(str, args)],
        cwd=cwd, env=env or _clean_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "FERVID_MODEL")}
    return env | {"COLUMNS": "200"} | extra


def _wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.5)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """A head node and a second node (1 CPU each), each started in its own folder, on
    loopback; yields (address, process group ids)."""
    # short (AF_UNIX socket paths under it must stay below 108 bytes) and private (0700)
    private = Path(tempfile.mkdtemp(prefix="fervid-test-cluster-", dir="/tmp"))
    # HOME for the Ray processes: an empty bootstrap config stops the dashboard's
    # cloud-provider probe (see fervid.engine.ray_setup)
    (private / "ray_bootstrap_config.yaml").write_text("{}\n")
    env = _clean_env(HOME=str(private), RAY_USAGE_STATS_ENABLED="0",
                     RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")  # fmt: skip
    env.pop("RAY_AUTH_MODE", None)
    port = _free_port()
    groups: list[int] = []
    procs: list[subprocess.Popen] = []

    def alive(check):
        def checked() -> bool:
            dead = [p.args[4:6] for p in procs if p.poll() is not None]
            assert not dead, f"ray start {dead} exited; see its ray.log under {tmp_path}"
            return check()

        return checked

    def start(name: str, *args: str) -> Path:
        cwd = tmp_path / name
        cwd.mkdir()
        log = cwd / "ray.log"
        with log.open("w") as out:
            p = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, "start", *args, "--block"], cwd=cwd, env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        groups.append(p.pid)
        procs.append(p)
        return log

    try:
        start("head", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
              "--num-cpus", "1", "--include-dashboard", "false",
              "--temp-dir", str(private / "ray"))  # fmt: skip
        _wait_for("the head node's GCS port", alive(lambda: _port_open(port)), 90)
        log = start("node2", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1",
                    "--num-cpus", "1")  # fmt: skip
        _wait_for("the second node", alive(lambda: "Ray runtime started" in log.read_text()), 90)
        yield f"127.0.0.1:{port}", groups
    finally:
        _kill_groups(groups)
        shutil.rmtree(private, ignore_errors=True)


def _kill_groups(groups: list[int]) -> None:
    """The processes this test started, by process group: SIGTERM, then SIGKILL (a head
    node drains for up to 30 s on SIGTERM)."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    time.sleep(3)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _listening(groups: list[int]) -> set[str]:
    import psutil

    ips = set()
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) not in groups:
                continue
            ips |= {c.laddr.ip for c in p.net_connections(kind="inet") if c.status == "LISTEN"}
        except (psutil.Error, ProcessLookupError):
            continue
    return ips


def _is_loopback(ip: str) -> bool:
    import ipaddress

    a = ipaddress.ip_address(ip)
    mapped = getattr(a, "ipv4_mapped", None)
    return a.is_loopback or (mapped is not None and mapped.is_loopback)


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
        env=_clean_env(FERVID_MODEL="models/alt.safetensors"),  # relative, read by the driver
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
    assert not (tmp_path / "head" / "crops").exists()
    assert not (tmp_path / "node2" / "crops").exists()
    # the whole cluster listened on loopback only
    ips = _listening(groups)
    assert ips and all(_is_loopback(ip) for ip in ips), ips


def test_ray_address_to_a_dead_port_is_one_line_and_exit_2(
    tmp_path: Path, sample_dir: Path
) -> None:
    port = _free_port()  # nothing listens there
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
