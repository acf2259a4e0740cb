"""Atomic file writes: the one way fervid replaces a file on disk.

Every writer (the store's parts and consolidated tables, sessions.parquet, the report's
pages and figures, model files, training checkpoints) writes to a hidden temporary file
in the destination's folder, fsyncs it, renames it over the destination and fsyncs the
folder. A reader or a glob then sees either the old file or the whole new one, and a
power cut after the rename cannot leave an empty file under the final name (the data
is on disk before the rename is).

Modes: results (the store's parts and consolidated tables, reports) follow the umask,
as any file a program writes does. Patient-derived files that are not results (face
crops, the chunks of long videos) are created 0600 in folders 0700 whatever the umask
(:func:`private_dir`, ``atomic_path(dest, private=True)``, :func:`write_private`):
``mkdir`` and ``open`` modes are masked by the umask, so the exact mode is set with
``chmod`` / ``fchmod`` as well.

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
#: Modes of the patient-derived files that are not results, and of their folders.
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


def private_dir(path: Path, *, root: Path | None = None) -> Path:
    """Create folder ``path`` (and its missing parents) with mode 0700 whatever the
    umask; folders that exist keep their mode, except those below ``root`` (created by
    fervid for private files), which are set to 0700."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is masked by the umask
    if root is not None:
        for folder in (path, *path.parents):
            if folder == Path(root) or Path(root) not in folder.parents:
                break
            if folder.stat().st_mode & 0o777 != PRIVATE_DIR:
                os.chmod(folder, PRIVATE_DIR)
    return path


def _create_private(path: Path) -> int:
    """Open a new file ``path`` for writing with mode exactly 0600 (a descriptor)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return fd


def write_private(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` with mode 0600 whatever the umask (a file replaced is
    removed first, so it never keeps a wider mode). Not atomic: for files such as face
    crops that nothing reads back as a whole result."""
    Path(dest).unlink(missing_ok=True)
    fd = _create_private(Path(dest))
    with open(fd, "wb") as f:
        f.write(data)


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
def atomic_path(dest: Path, *, private: bool = False) -> Iterator[Path]:
    """``with atomic_path(dest) as tmp: write(tmp)``: on a clean exit ``tmp`` replaces
    ``dest`` durably; on any exception (or a failed rename) ``tmp`` is removed and
    ``dest`` keeps its old content. The caller creates ``dest``'s folder. ``private``:
    ``tmp`` exists already, empty, with mode 0600 (the writer truncates it, keeping
    the mode); else the writer creates it and the umask decides."""
    dest = Path(dest)
    tmp = temp_path(dest)
    if private:
        os.close(_create_private(tmp))
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
