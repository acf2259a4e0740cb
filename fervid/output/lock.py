"""Exclusive run locks: the one way fervid keeps two runs off the same files.

A lock is an ``fcntl.flock`` on a small file that also holds the holder's pid (for the
message the refused run prints). The lock belongs to the open descriptor, so a run that
crashes or is killed never leaves it held. Used by the output store (one
``fervid process`` per ``--out``) and by the nightly job (one nightly run per dataset).
On systems without ``fcntl`` runs are simply not guarded.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import IO

try:  # POSIX advisory locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class Locked(Exception):
    """Another process holds the lock; ``holder`` is the pid it wrote (or 'unknown')."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by pid {holder}")
        self.path = path
        self.holder = holder


class FileLock:
    """Non-blocking exclusive lock on ``path`` (created with its folder if missing).

    ``acquire()`` raises :class:`Locked` when another process holds it; ``release()``
    (or leaving the ``with`` block) gives it back. Not re-entrant.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> FileLock:
        if self._file is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        if fcntl is None:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise Locked(self.path, holder) from None
        except BaseException:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
