"""Is a file still being copied? Recordings arrive in the input folder by copy or upload,
and a run must not analyse one half-written (``--settle-seconds``).

A file is *pending* when it was modified less than ``settle_seconds`` ago **and** its
container is not complete. A copy or upload writes continuously, so a file that is
still growing has a fresh mtime; a fresh file that is complete (just copied, or
recorded and closed) is analysed at once, so a user who runs fervid on a file they have
just made waits for nothing. "Complete" means the container opens and its video
packets run to the end of the duration its header states (the last ~3 s are demuxed,
nothing decoded): an MP4 copied with its index at the end does not open until the copy
is done, and one with its index first (faststart) lacks the packets past the copied
bytes. A container that states no duration (a live WebM being written) is never
provably complete, so it waits for the settle time.

Only the young files are opened, so a nightly job over thousands of old recordings
pays one ``stat`` per file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Seconds before the stated end that the completeness check demuxes from.
TAIL_S = 3.0


def is_pending(path: Path, settle_seconds: float, *, now: float | None = None) -> bool:
    """True when ``path`` looks still in transfer: modified less than ``settle_seconds``
    ago (or in the future: a clock ahead on a network share) and not a complete
    container. 0 turns the check off. A file that cannot be read is not pending (the
    run records why it fails)."""
    if settle_seconds <= 0:
        return False
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return False
    if not os.access(path, os.R_OK):  # never readable, growing or not: a failed row
        return False
    age = (time.time() if now is None else now) - mtime
    if age >= settle_seconds:
        return False
    return not container_complete(path)


def container_complete(path: Path) -> bool:
    """True when the container opens and its first video stream's packets reach the
    duration the container states (within 1.5 frame intervals). False for a file that
    does not open, states no duration, or whose packets stop early (a truncated copy).
    A file without a video stream counts as complete: decoding fails it clearly."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return True
            stream = container.streams.video[0]
            if not container.duration or stream.time_base is None:
                return False
            duration = container.duration / av.time_base
            rate = float(stream.average_rate or 0) or 25.0
            container.seek(max(0, int((duration - TAIL_S) * av.time_base)), backward=True)
            last = None
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
                last = end if last is None else max(last, end)
    except (av.error.FFmpegError, OSError, ValueError):
        return False
    return last is not None and last >= duration - 1.5 / rate
