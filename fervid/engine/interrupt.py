"""SIGTERM as an interrupt of the run, so a stopped service finishes writing like
Ctrl-C does; put back after Ray replaces it."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it stops a run like Ctrl-C does."""


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
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    _SIGTERM_HANDLER[0] = handler
    try:
        yield
    finally:
        _SIGTERM_HANDLER[0] = None
        signal.signal(signal.SIGTERM, previous)


#: The handler of the run in progress (None: none), re-installed after Ray starts.
_SIGTERM_HANDLER: list[Callable[[int, Any], None] | None] = [None]


def reinstall_sigterm_handler() -> None:
    """Put the run's SIGTERM handler back (``ray.init`` replaces it with its own)."""
    handler = _SIGTERM_HANDLER[0]
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
