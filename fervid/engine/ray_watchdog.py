"""The watchdog of an embedded Ray: when the driver ends, however it ends (SIGKILL
included), the processes of that Ray go at once and its private folder is removed.

Ray's own clean-up stops at its first generation: the daemons the driver starts die
with it (``PR_SET_PDEATHSIG``), but their children (``DashboardAgent``,
``RuntimeEnvAgent``, workers) only notice a minute or two later. fervid starts each
daemon in a session of its own (so a signal to the driver's process group reaches the
driver alone) and appends the daemon's pid, which is that session's id, to
``<private folder>/daemons``. This process, started before Ray in a session of its own
too, holds the read end of a pipe whose only write end is the driver's: end of file
means the driver closed it (``ray.shutdown`` is done) or died. It then kills every
process of this user in one of those sessions, until none is left, and removes the
folder.

Run as a script (``python -I -S ray_watchdog.py FOLDER``): standard library only, so
it starts in a few tens of milliseconds and never imports Ray or fervid.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

#: File of the private folder listing the daemons' pids (= their session ids).
DAEMONS_FILE = "daemons"
#: Seconds the watchdog keeps killing the sessions' processes before it gives up.
SWEEP_S = 10.0


def session_ids(private: Path) -> set[int]:
    """The session ids recorded in ``private``'s daemons file (none if absent)."""
    try:
        text = (private / DAEMONS_FILE).read_text()
    except OSError:
        return set()
    return {int(w) for w in text.split() if w.isdigit()}


def members(sessions: set[int]) -> list[int]:
    """Pids of this user's processes in one of ``sessions`` (Linux ``/proc``)."""
    found = []
    me, uid = os.getpid(), os.getuid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # fields after the command name (which may hold spaces and parentheses):
        # state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) in sessions and fields[0] != b"Z":
            found.append(int(entry.name))
    return found


def sweep(private: Path, *, seconds: float = SWEEP_S) -> int:
    """Kill every process of the recorded sessions until none is left (or ``seconds``
    pass), then remove ``private``; returns how many processes were signalled."""
    sessions = session_ids(private)
    killed: set[int] = set()
    deadline = time.monotonic() + seconds
    while sessions and os.path.isdir("/proc"):
        pids = members(sessions)
        if not pids or time.monotonic() > deadline:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    shutil.rmtree(private, ignore_errors=True)
    return len(killed)


def main(argv: list[str]) -> int:
    private = Path(argv[1])
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # only the pipe ends it
        signal.signal(s, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):  # until end of file: the driver closed or died
        pass
    sweep(private)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
