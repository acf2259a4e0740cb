"""Decode cost per backend: bytes read / file size, decoded frames/s, peak RSS.

Not a test: prints numbers. For each backend (decord, PyAV) two cases run, each in a
fresh process so ``/proc/self/io`` (``rchar``: bytes the process read through read()
calls, page cache or not) and the peak RSS belong to that case alone:

* ``one chunk``: one ``--chunk-seconds`` range in the middle of the clip, as one Ray task
  of a long video decodes it;
* ``all chunks``: probe once, then every chunk of the clip in turn (what the extract
  tasks of one video read together, here in one process).

    python benchmarks/bench_decode.py CLIP [--fps 2] [--chunk-seconds 60] [--at 7000]
        [--backends pyav decord] [--cases "one chunk" "all chunks"]

Make a long 720p clip by looping a sample video (not committed), e.g. 10 minutes::

    ffmpeg -i sample_videos/WolfgangLanger_Pexels.mp4 -vf scale=1280:720 -c:v libx264 \\
        -preset veryfast -g 48 -an /tmp/w720.mp4
    ffmpeg -stream_loop 29 -i /tmp/w720.mp4 -c copy /tmp/long720.mp4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def _case(
    clip: Path, backend: str, case: str, fps: float, chunk_s: float, at: float | None
) -> dict:
    """Run one case in this process; returns its numbers."""
    from fervid.extract.decode import FrameSampler, probe
    from fervid.settings import SampleSettings

    before = _rchar()
    t0 = time.perf_counter()
    info = probe(clip, backend=backend)
    n_chunks = max(1, math.floor(info.duration_s / chunk_s))
    starts = [k * chunk_s for k in range(n_chunks)]
    ranges = [(a, starts[k + 1] if k + 1 < n_chunks else None) for k, a in enumerate(starts)]
    if case == "one chunk":
        k = len(ranges) // 2 if at is None else min(int(at // chunk_s), len(ranges) - 1)
        ranges = [ranges[k]]
    frames = 0
    for a, b in ranges:
        sampler = FrameSampler(
            clip, SampleSettings(fps=fps), info, backend=backend, start_s=a, end_s=b
        )
        frames += sum(1 for _ in sampler)
    wall = time.perf_counter() - t0
    video_s = sum((b if b is not None else info.duration_s) - a for a, b in ranges)
    return {
        "backend": backend,
        "case": case,
        "ranges": len(ranges),
        "start_s": ranges[0][0],
        "video_s": video_s,
        "read_ratio": (_rchar() - before) / clip.stat().st_size,
        "read_mb": (_rchar() - before) / 1e6,
        "wall_s": wall,
        "sampled_frames": frames,
        "decoded_fps": video_s * info.fps / wall,  # source frames decoded per second
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("clip", type=Path)
    p.add_argument("--fps", type=float, default=2.0, help="sampling rate (frames/s)")
    p.add_argument("--chunk-seconds", type=float, default=60.0)
    p.add_argument("--at", type=float, default=None, help="one chunk: the one holding this time")
    p.add_argument("--backends", nargs="+", default=["pyav", "decord"])
    p.add_argument("--cases", nargs="+", default=["one chunk", "all chunks"])
    p.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._child:
        backend, case = a._child
        print(json.dumps(_case(a.clip, backend, case, a.fps, a.chunk_seconds, a.at)))
        return
    size_mb = a.clip.stat().st_size / 1e6
    print(f"# {a.clip.name}: {size_mb:.0f} MB, --fps {a.fps}, chunks of {a.chunk_seconds:g} s")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread")
    header = (
        "backend  case        chunks  from_s  video_s  read/size  read_MB  wall_s  dec_fps  rss_MB"
    )
    print(header)
    for backend in a.backends:
        for case in a.cases:
            cmd = [sys.executable, __file__, str(a.clip), "--fps", str(a.fps),
                   "--chunk-seconds", str(a.chunk_seconds), "--_child", backend, case]  # fmt: skip
            if a.at is not None:
                cmd += ["--at", str(a.at)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
            print(
                f"{r['backend']:<8} {r['case']:<11} {r['ranges']:>6} {r['start_s']:>7.0f} "
                f"{r['video_s']:>8.0f} "
                f"{r['read_ratio']:>10.2f} {r['read_mb']:>8.0f} {r['wall_s']:>7.1f} "
                f"{r['decoded_fps']:>8.0f} {r['peak_rss_mb']:>7.0f}"
            )


if __name__ == "__main__":
    main()
