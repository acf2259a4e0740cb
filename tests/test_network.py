"""Patient data never leaves the machine: the embedded Ray listens on loopback only,
keeps its session in a private folder, and a whole run connects to nothing outside
127.0.0.0/8 (checked with strace on every process of the run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_cluster import is_loopback
from helpers_model import make_debug_model

#: Starts the embedded Ray as a run does, uses a task and an actor (so workers listen
#: too), and reports every listening address of this process and its descendants.
LISTEN_SCRIPT = """
import json, os, stat
import psutil
from fervid.engine.ray_setup import start_ray

before = os.environ.get("RAY_AUTH_MODE")
session = start_ray(address=None, num_cpus=1)
ray = session.ray

@ray.remote
class Echo:
    def pid(self):
        return os.getpid()

echo = Echo.remote()
ray.get(echo.pid.remote())
ray.get(ray.remote(lambda: 1).remote())
me = psutil.Process()
listening = []
for p in [me, *me.children(recursive=True)]:
    try:
        listening += [[p.name(), c.laddr.ip] for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        pass
private = session.private_dir
report = {
    "listening": listening,
    "mode": stat.S_IMODE(private.stat().st_mode),
    "token_mode": stat.S_IMODE((private / "auth_token").stat().st_mode),
}
session.close()
report["removed"] = not private.exists()
report["auth_mode_restored"] = os.environ.get("RAY_AUTH_MODE") == before
print(json.dumps(report))
"""

_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)} | {"COLUMNS": "200"}


@pytest.mark.slow
def test_embedded_ray_listens_on_loopback_only_in_a_private_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LISTEN_SCRIPT], cwd=tmp_path, env=_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    names = {name for name, _ in report["listening"]}
    assert {"gcs_server", "raylet"} <= names, report  # the test saw Ray's servers
    outside = [(n, ip) for n, ip in report["listening"] if not is_loopback(ip)]
    assert outside == [], outside
    assert report["mode"] == 0o700 and report["token_mode"] == 0o600
    assert report["removed"] and report["auth_mode_restored"]


@pytest.mark.slow
def test_a_ray_run_connects_to_nothing_beyond_loopback(tmp_path: Path, sample_dir: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install -y strace; .ci/run installs it)")
    model = make_debug_model(tmp_path / "m.safetensors")
    log = tmp_path / "strace.log"
    result = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log),
         sys.executable, "-m", "fervid", "process", str(sample_dir / "single_face.mp4"),
         "--out", str(tmp_path / "r.parquet"), "--model", str(model),
         "--executor", "ray", "--workers", "1", "-q"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if "ptrace" in result.stderr and "Operation not permitted" in result.stderr:
        pytest.skip("this machine does not allow ptrace (strace cannot attach)")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [a or b for a, b in _ADDRESS.findall(log.read_text(errors="replace"))]
    assert any(is_loopback(ip) for ip in seen)  # strace did see the run's traffic
    outside = sorted({ip for ip in seen if not is_loopback(ip)})
    assert outside == [], f"connections outside loopback: {outside}"
