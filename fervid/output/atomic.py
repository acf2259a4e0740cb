"""Atomic file writes: the one way fervid replaces a file on disk.

Every writer (the store's parts and consolidated tables, sessions.parquet, the report's
pages and figures, model files, training checkpoints) writes to a hidden temporary file
in the destination's folder, fsyncs it, renames it over the destination and fsyncs the
folder. A reader or a glob then sees either the old file or the whole new one, and a
power cut after the rename cannot leave an empty file under the final name (the data
is on disk before the rename is).

Temporary names are ``.<name>.tmp-<pid>-<random>``: hidden, and not ending in the
destination's suffix, so ``*.parquet`` globs and dataset readers skip them; a crashed
writer's leftovers can be found with :data:`TEMP_GLOB`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Glob matching the temporary files of :func:`temp_path` in a folder.
TEMP_GLOB = ".*.tmp-*"


def temp_path(dest: Path) -> Path:
    """A fresh temporary name beside ``dest`` (same folder, so the rename is atomic)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk (the writer that made it may have closed it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename in folder ``path`` durable; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(tmp: Path, dest: Path) -> None:
    """fsync ``tmp``, rename it over ``dest``. The caller fsyncs the folder (once for
    several files) with :func:`fsync_dir`. On failure ``tmp`` is removed and ``dest``
    is untouched."""
    try:
        fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def move_aside(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest`` (a quarantine folder, created if needed) and make both
    folders durable: a damaged file set aside is never half-moved after a crash."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    fsync_dir(dest.parent)
    fsync_dir(Path(src).parent)


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """``with atomic_path(dest) as tmp: write(tmp)``: on a clean exit ``tmp`` replaces
    ``dest`` durably; on any exception (or a failed rename) ``tmp`` is removed and
    ``dest`` keeps its old content. The caller creates ``dest``'s folder."""
    dest = Path(dest)
    tmp = temp_path(dest)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit(tmp, dest)
    fsync_dir(dest.parent)


def write_bytes(dest: Path, data: bytes) -> None:
    """Atomically replace ``dest`` with ``data``."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: Path, text: str, *, encoding: str = "utf-8") -> None:
    """Atomically replace ``dest`` with ``text``."""
    write_bytes(dest, text.encode(encoding))
