"""A real multi-node Ray cluster on this machine, on loopback only (tests and
``benchmarks/bench_scaling.py``).

Nodes are ``ray start --block`` processes, each in its own working directory and
process group; :func:`loopback_cluster` stops exactly those groups (SIGTERM, then
SIGKILL), never with ``ray stop``, which would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

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


#: A line of Ray's C++ logger ("[2026-12-07 14:02:11,123 E 4242 4243] core_worker.cc:..."),
#: of its raylet relay ("(raylet) ..."), or of a worker ("(pid=4242) ...", "(_extract_task
#: pid=...)"): what must never reach fervid's terminal.
RAY_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [A-Z] \d+ \d+\]|\(raylet\)|\(\w* ?pid=\d+", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Ray/fervid overrides, plus ``extra``."""
    # the auth variables too: an embedded Ray of this process (a test fixture) sets them,
    # and a head node that sees a token turns token auth on for a cluster whose other
    # nodes (started with an explicit address) then cannot join
    drop = ("RAY_ADDRESS", "FERVID_MODEL", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"COLUMNS": "200"} | extra


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
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


@contextlib.contextmanager
def loopback_cluster(
    workdir: Path, cpus: tuple[int, ...] = (1, 1), *, token: Path | None = None
) -> Iterator[tuple[str, list[int]]]:
    """One Ray node per entry of ``cpus`` (the first is the head), node ``k`` started in
    ``workdir/node<k>``; yields (GCS address, process group ids of the nodes).
    ``token``: run the cluster with token auth, this file holding a new token."""
    # short (AF_UNIX socket paths under it must stay below 108 bytes) and private (0700)
    private = Path(tempfile.mkdtemp(prefix="fervid-cluster-", dir="/tmp"))
    # HOME for the Ray processes: an empty bootstrap config stops the dashboard's
    # cloud-provider probe (see fervid.engine.ray_setup)
    (private / "ray_bootstrap_config.yaml").write_text("{}\n")
    env = clean_env(HOME=str(private), RAY_USAGE_STATS_ENABLED="0",
                    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")  # fmt: skip
    if token is not None:
        token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port()
    procs: list[subprocess.Popen] = []

    def start(k: int, *args: str) -> Path:
        cwd = Path(workdir) / f"node{k}"
        cwd.mkdir(parents=True)
        log = cwd / "ray.log"
        with log.open("w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", LAUNCH, "start", *args, "--num-cpus", str(cpus[k]),
                 "--node-ip-address", "127.0.0.1", "--block"],
                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
        return log

    def alive(check: Callable[[], bool]) -> Callable[[], bool]:
        def checked() -> bool:
            dead = [p.pid for p in procs if p.poll() is not None]
            assert not dead, f"ray start exited (pids {dead}); see the ray.log files in {workdir}"
            return check()

        return checked

    try:
        start(0, "--head", "--port", str(port), "--include-dashboard", "false",
              "--temp-dir", str(private / "ray"))  # fmt: skip
        _wait_for("the head node's GCS port", alive(lambda: _port_open(port)), 90)
        for k in range(1, len(cpus)):
            log = start(k, "--address", f"127.0.0.1:{port}")
            _wait_for(
                f"node {k}", alive(lambda log=log: "Ray runtime started" in log.read_text()), 90
            )
        yield f"127.0.0.1:{port}", [p.pid for p in procs]
    finally:
        kill_groups([p.pid for p in procs])
        shutil.rmtree(private, ignore_errors=True)


def kill_groups(groups: list[int]) -> None:
    """The process groups started here: SIGTERM, then SIGKILL (a head node drains for up
    to 30 s on SIGTERM)."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    time.sleep(3)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def listening_ips(groups: list[int]) -> set[str]:
    """Addresses the processes of ``groups`` listen on."""
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


def is_loopback(ip: str) -> bool:
    import ipaddress

    a = ipaddress.ip_address(ip)
    mapped = getattr(a, "ipv4_mapped", None)
    return a.is_loopback or (mapped is not None and mapped.is_loopback)
