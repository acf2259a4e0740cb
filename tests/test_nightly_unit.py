"""The shipped systemd unit's command, run where only the unit's writable paths are
writable: a mount namespace (``unshare -m``, as root) whose root is read-only, with the
unit's ``ReadWritePaths``, its Logs/State/Cache directories and a private tmp bound
writable, all mapped under the test's folder. The folders an administrator makes are
the ones docs/scheduling.md's ``install -d`` lines make.

The job runs the real ``fervid process`` on a sample video, then refreshes sessions,
trends and the report: it must succeed. Under the old unit's writable paths (the
dataset folder only) it must fail and name the place it cannot write.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "pipelines" / "fervid-nightly.service"
DOCS = ROOT / "docs" / "scheduling.md"


def _unshare_or_skip() -> None:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs unshare(1) and mount(8) (util-linux) to confine the job's writes")
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(
            f"unshare -m is not permitted here ({r.stderr.strip() or r.returncode}); it needs "
            "root (or CAP_SYS_ADMIN) to build a mount namespace with read-only paths"
        )


def service_settings(text: str) -> dict[str, list[str]]:
    """The [Service] section's key -> values (repeated keys kept), continuation lines
    joined and comments dropped."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def installed_folders(docs: str) -> list[str]:
    """The folders docs/scheduling.md tells the administrator to create (``install -d``)."""
    return [
        words[-1]
        for line in docs.splitlines()
        if "install -d" in line
        for words in [shlex.split(line.strip(), comments=True)]
    ]


class Mapped:
    """The unit's absolute paths, mapped under a test folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def arg(self, word: str) -> str:
        return str(self(word)) if word.startswith("/") else word


def _run_unit(tmp_path: Path, sample_dir: Path, writable_override: list[str] | None = None):
    unit = service_settings(UNIT.read_text())
    m = Mapped(tmp_path / "root")
    folders = installed_folders(DOCS.read_text())
    assert folders, "docs/scheduling.md lost its `install -d` line"
    for folder in folders:
        m(folder).mkdir(parents=True, exist_ok=True)
    # What systemd makes: the Logs/State/Cache directories, a private /tmp.
    writable = [str(m(p)) for v in unit.get("ReadWritePaths", []) for p in v.split()]
    for key, base in (("LogsDirectory", "/var/log"), ("StateDirectory", "/var/lib"),
                      ("CacheDirectory", "/var/cache")):  # fmt: skip
        for name in unit.get(key, []):
            d = m(f"{base}/{name}")
            d.mkdir(parents=True, exist_ok=True)
            writable.append(str(d))
    private_tmp = m("/tmp")
    private_tmp.mkdir(parents=True)
    writable.append(str(private_tmp))
    if writable_override is not None:
        writable = [str(m(p)) for p in writable_override] + [str(private_tmp)]
        for w in writable:
            Path(w).mkdir(parents=True, exist_ok=True)
    m(unit["WorkingDirectory"][0]).mkdir(parents=True, exist_ok=True)
    recordings = m("/recordings") / "P001"
    recordings.mkdir(parents=True)
    shutil.copy(sample_dir / "single_face.mp4", recordings / "2024-01-01_call.mp4")
    shutil.copy(sample_dir / "carphone_pristine.mp4", recordings.parent / "unmatched.mp4")

    (exec_start,) = unit["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/bin/fervid") and argv[1] == "nightly", argv
    command = [sys.executable, "-m", "fervid", *map(m.arg, argv[1:])]
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    for assignment in unit.get("Environment", []):
        key, value = assignment.split("=", 1)
        env[key] = m.arg(value)
    script = "set -e\n"
    script += "".join(f"mount --bind {shlex.quote(w)} {shlex.quote(w)}\n" for w in writable)
    script += "mount -o remount,bind,ro /\n"
    script += f"cd {shlex.quote(str(m(unit['WorkingDirectory'][0])))}\n"
    script += "exec " + shlex.join(command) + "\n"
    _unshare_or_skip()
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return r, m


def test_the_units_command_succeeds_with_only_its_writable_paths(
    tmp_path: Path, sample_dir: Path
) -> None:
    r, m = _run_unit(tmp_path, sample_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    unit = service_settings(UNIT.read_text())
    argv = shlex.split(unit["ExecStart"][0])
    dataset = m(argv[argv.index("--dataset") + 1])
    log = m(argv[argv.index("--log") + 1])
    (line,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert line["exit_code"] == 0 and line["process_exit"] == 0, line
    assert line["videos"]["ok"] == 2
    sessions = pq.read_table(dataset.with_name(f"{dataset.name}.sessions.parquet"))
    assert set(sessions.column("subject").to_pylist()) == {"P001", None}  # one unassigned
    assert pq.read_table(dataset.with_name(f"{dataset.name}.trends.parquet")).num_rows > 0
    assert (dataset.with_name(f"{dataset.name}.report") / "index.html").stat().st_size > 2000


def test_a_write_outside_the_writable_paths_fails_the_job(tmp_path: Path, sample_dir: Path) -> None:
    # The old unit: only the dataset folder writable, derived files beside it are not.
    unit = service_settings(UNIT.read_text())
    argv = shlex.split(unit["ExecStart"][0])
    dataset = argv[argv.index("--dataset") + 1]
    log_dir = str(Path(argv[argv.index("--log") + 1]).parent)
    r, m = _run_unit(tmp_path, sample_dir, writable_override=[dataset, log_dir])
    assert r.returncode == 2, r.stderr[-3000:]
    assert "cannot write where the nightly job writes" in r.stderr
    assert f"{m(dataset).parent} (read-only file system" in r.stderr
    assert not list(m(dataset).glob("frames/*.parquet"))  # refused before any analysis
