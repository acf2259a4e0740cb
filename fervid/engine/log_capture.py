"""Keep the libraries' lines off the terminal: what Ray and OpenCV print during a run
goes to a log file (``--log-file``), to stderr (``--verbose``), or nowhere.

Python's logging reaches only part of it. Ray's C++ core (``core_worker.cc: ...``) and
OpenCV's C++ warnings write straight to file descriptor 2; Ray's driver-side error
listener prints raylet messages ("(raylet) A worker died ...") to ``sys.stdout``,
whatever ``log_to_driver`` says, which broke ``--json``; with ``log_to_driver`` the
workers' own lines are printed to ``sys.stdout`` / ``sys.stderr`` as ``(pid=...)``.
So while a run goes on, descriptors 1 and 2 *and* ``sys.stdout`` / ``sys.stderr`` all
point at the sink, and fervid's own terminal output (progress bar, per-video lines,
warnings) goes through a console given the original stderr (:func:`captured`
yields it). The caller prints its summary and the ``--json`` document after the
capture ends, so stdout holds exactly that document.

The sink stays open after the capture: logging handlers Ray created during the run
hold it, and a line they write later (at exit) must not fail on a closed file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from fervid.errors import ConfigError

#: Format of fervid's own lines in a ``--log-file`` (Ray's keep their own format).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def captured(log_file: Path | None, *, verbose: bool) -> Iterator[TextIO]:
    """Send everything written to stdout and stderr (descriptors and Python streams)
    to ``log_file`` (appended; fervid's INFO lines, such as per-video timings, too), else
    to stderr with ``verbose``, else nowhere, until the block ends. Yields the stream
    the caller's own terminal output must use (the original stderr).

    Raises :class:`ConfigError` when ``log_file`` cannot be opened (before anything is
    redirected).
    """
    sink = _open_sink(log_file, verbose=verbose)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    terminal, owned = _terminal(sys.stderr)
    saved_streams = sys.stdout, sys.stderr
    saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
    text = open(sink, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    handler = _fervid_handler(text) if log_file is not None else None
    try:
        for fd in (1, 2):
            os.dup2(sink, fd)
        sys.stdout = sys.stderr = text
        yield terminal
    finally:
        with contextlib.suppress(Exception):
            text.flush()
        if handler is not None:
            logging.getLogger("fervid").removeHandler(handler)
        sys.stdout, sys.stderr = saved_streams
        for fd, saved in saved_fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        if owned:
            with contextlib.suppress(OSError):
                terminal.close()


def _open_sink(log_file: Path | None, *, verbose: bool) -> int:
    if log_file is not None:
        try:  # private (0600) when created: it names the recordings
            return os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise ConfigError(
                f"--log-file={log_file}: cannot write it ({e.strerror or e}); create its "
                "folder or choose another path"
            ) from None
    if verbose:
        return os.dup(2)
    return os.open(os.devnull, os.O_WRONLY)


def _terminal(stderr: TextIO) -> tuple[TextIO, bool]:
    """A stream to the terminal that survives descriptor 2 being redirected, and whether
    it was opened here: a new descriptor on the same file when ``stderr`` is
    descriptor 2, else ``stderr`` itself (a test runner's in-memory capture)."""
    try:
        if stderr.fileno() != 2:
            return stderr, False
    except (AttributeError, OSError, io.UnsupportedOperation):
        return stderr, False
    encoding = getattr(stderr, "encoding", None) or "utf-8"
    return open(os.dup(2), "w", buffering=1, encoding=encoding, errors="replace"), True


def _fervid_handler(stream: TextIO) -> logging.Handler:
    """fervid's INFO lines (per-video timings) into the log file, for this run."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("fervid")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler
