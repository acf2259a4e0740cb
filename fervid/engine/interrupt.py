"""SIGTERM and SIGHUP as an interrupt of the run, so a stopped service (or a dropped
ssh session) finishes writing like Ctrl-C does; put back after Ray replaces it.

The signal received is also recorded (:func:`received`): Ray's blocking calls turn any
exception a signal handler raises into a plain ``KeyboardInterrupt`` (its
``check_signals``), which would otherwise read as Ctrl-C (exit 130, ``--json`` saying
SIGINT) for a SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that it stops a run like Ctrl-C
    does; ``signal_name`` says which."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


#: Exit code per signal that stops a run: 128 + the signal number, as shells report it.
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: The last stop signal the run's handler received (None: none, or Ctrl-C).
_RECEIVED: list[str | None] = [None]


def received(e: BaseException) -> str:
    """The name of the signal behind the interrupt ``e``: SIGTERM or SIGHUP when the
    run's handler saw one (whatever exception Ray turned it into), else SIGINT."""
    if isinstance(e, Terminated):
        return e.signal_name
    return _RECEIVED[0] or "SIGINT"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread, so a stopped service
    finishes writing like Ctrl-C does (Ray's own handler would ``sys.exit`` with a C++
    stack dump). Ray installs its handler in ``ray.init``, so this one is put back after
    every chunk outcome too; restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        _RECEIVED[0] = name
        raise Terminated(name)

    previous = {s: signal.signal(s, handler) for s in _STOP_SIGNALS}
    _RECEIVED[0] = None
    _SIGTERM_HANDLER[0] = handler
    try:
        yield
    finally:
        _SIGTERM_HANDLER[0] = None
        for s, h in previous.items():
            signal.signal(s, h)


#: The handler of the run in progress (None: none), re-installed after Ray starts.
_SIGTERM_HANDLER: list[Callable[[int, Any], None] | None] = [None]


def reinstall_sigterm_handler() -> None:
    """Put the run's SIGTERM/SIGHUP handler back (``ray.init`` replaces it with its own)."""
    handler = _SIGTERM_HANDLER[0]
    if handler is not None and threading.current_thread() is threading.main_thread():
        for s in _STOP_SIGNALS:
            signal.signal(s, handler)


#: Every signal that stops a run, Ctrl-C included.
ALL_STOPS = (signal.SIGINT, *_STOP_SIGNALS)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold the stop signals while the block runs, then act on the first one.

    For ``ray.init``: a signal inside it used to meet Ray's own handlers (``sys.exit(15)``
    without a word, or its node's handler that exits 1), or break its start-up half-way.
    Here the first SIGINT, SIGTERM or SIGHUP is only recorded; on leaving the block the
    handlers in place before it are restored (``signal.signal``, which also removes any
    handler Ray's C++ core set with ``sigaction``) and the recorded signal is raised
    again, so it reaches the run's handler (Terminated / KeyboardInterrupt) at a point
    where the caller can shut down what started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if not got:
            got.append(signum)

    previous = {s: signal.getsignal(s) for s in ALL_STOPS}
    for s in ALL_STOPS:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for s, h in previous.items():  # None: a handler not set from Python
            signal.signal(s, h if h is not None else signal.SIG_DFL)
    if got:
        signal.raise_signal(got[0])  # runs the restored handler now


@contextlib.contextmanager
def swallowed() -> Iterator[None]:
    """Stop signals do nothing while the block runs (handlers restored after): an
    interrupted run finalizing its output and stopping Ray is not interrupted again by
    the second and third Ctrl-C, so its line still says what was kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda signum, frame: None) for s in ALL_STOPS}
    try:
        yield
    finally:
        for s, h in previous.items():
            if signal.getsignal(s) is not signal.SIG_IGN:  # ignore_further_stops stays
                signal.signal(s, h if h is not None else signal.SIG_DFL)


#: True in the command line's own process (:func:`install_early` ran), never in a
#: program that calls fervid in-process.
_CLI_PROCESS = [False]


def install_early() -> None:
    """SIGTERM and SIGHUP raise :class:`Terminated` from the start of the command line
    (``python -m fervid``), before the run installs its own handler: a signal during the
    imports or option parsing is one line and 143 / 129, not a silent death."""
    if threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            _RECEIVED[0] = name
            raise Terminated(name)

        for s in _STOP_SIGNALS:
            signal.signal(s, handler)
        _CLI_PROCESS[0] = True


def run_has_ended() -> None:
    """The run wrote its last row: in the command line's process, stop signals are
    ignored from now on (the exit code says how the run went; Ray's exit handler must
    not print a traceback). A program calling fervid in-process keeps its handlers."""
    if _CLI_PROCESS[0]:
        ignore_further_stops()


def exit_now(code: int) -> None:
    """End the command line's process with ``code`` at once, once a stopped run's output
    is final and Ray is shut down: the interpreter's own shutdown would meet threads
    the run no longer waits for (the classifier's loader importing torch) and can end in
    SIGABRT ("exception not rethrown"). Returns without exiting in-process (the
    caller raises its ``typer.Exit``)."""
    if not _CLI_PROCESS[0]:
        return
    import logging
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        logging.shutdown()
    os._exit(code)


def ignore_further_stops() -> None:
    """The run has ended on a signal and its exit code is decided: one more Ctrl-C or
    SIGTERM while the interpreter exits (Ray's atexit shutdown) must not print a
    ``KeyboardInterrupt`` traceback or change the code."""
    if threading.current_thread() is threading.main_thread():
        for s in ALL_STOPS:
            signal.signal(s, signal.SIG_IGN)
