"""The one atomic-write helper and the one run lock, under simulated crashes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fervid.output import atomic
from fervid.output.atomic import TEMP_GLOB, atomic_path, write_bytes, write_text
from fervid.output.lock import FileLock, Locked


class Crash(Exception):
    """Stands for the process dying at that point."""


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(TEMP_GLOB))


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "sessions.parquet"
    dest.write_text("old")
    write_text(dest, "new ✓")
    assert dest.read_text(encoding="utf-8") == "new ✓"
    assert leftovers(tmp_path) == []


def test_data_is_fsynced_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_bytes(tmp_path / "a.bin", b"x")
    assert events == ["fsync file", "replace", "fsync dir"]


@pytest.mark.parametrize("existed", [True, False])
def test_crash_at_the_rename_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool
) -> None:
    dest = tmp_path / "report.html"
    if existed:
        dest.write_text("old report")

    def crash(src: object, dst: object) -> None:
        raise Crash("killed during rename")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(Crash):
        write_text(dest, "new report")
    assert (dest.read_text() if existed else dest.exists()) == ("old report" if existed else False)
    assert leftovers(tmp_path) == []


def test_crash_while_writing_leaves_the_old_file_intact(tmp_path: Path) -> None:
    dest = tmp_path / "model.safetensors"
    dest.write_bytes(b"old weights")
    with pytest.raises(Crash), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half of the new")
        raise Crash("killed mid-write")
    assert dest.read_bytes() == b"old weights"
    assert leftovers(tmp_path) == []


def test_temporary_names_are_hidden_and_do_not_end_in_the_suffix(tmp_path: Path) -> None:
    names = {atomic.temp_path(tmp_path / "x.parquet").name for _ in range(20)}
    assert len(names) == 20  # unique per call
    assert all(n.startswith(".x.parquet.tmp-") and not n.endswith(".parquet") for n in names)
    assert all(Path(tmp_path / n).match(TEMP_GLOB) for n in names)


def test_model_save_crash_keeps_the_previous_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers_model import DEBUG_SPEC, make_debug_model

    from fervid.model.header import read_model_header

    path = make_debug_model(tmp_path / "m.safetensors", seed=0)
    before = path.read_bytes()
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        make_debug_model(path, seed=1)
    assert path.read_bytes() == before
    assert read_model_header(path)[0] == DEBUG_SPEC
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- lock
def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    path = tmp_path / "out" / ".fervid.lock"
    with FileLock(path) as first:
        assert first.held and path.read_text().strip() == str(os.getpid())
        with pytest.raises(Locked) as e:
            FileLock(path).acquire()
        assert e.value.holder == str(os.getpid())
    with FileLock(path):  # released on leaving the block
        pass


def test_lock_held_by_another_process_and_released_when_it_dies(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from fervid.output.lock import FileLock\n"
         f"l = FileLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Locked) as e:
            FileLock(path).acquire()
        assert e.value.holder == str(holder.pid)
    finally:
        holder.kill()  # a killed holder never leaves the lock behind
        holder.wait()
    with FileLock(path):
        pass
