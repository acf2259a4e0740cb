"""PyAV (fervid's decoder) against torchcodec (CPU) and decord / decord2: exactness and speed.

Not a test: prints a table. For each video, fervid's ``FrameSampler`` (PyAV, the
pipeline's sampling, 1 decoder thread) gives the reference: the sampled frames'
``frame_index``, ``timestamp_s`` and BGR pixels. Each other decoder then fetches the
same frame indices (in order, 16 at a time, 1 thread) and is compared with it: same
timestamps (to 1 µs), same pixels (md5 of each frame; max abs difference over the first
8). Wall and CPU seconds of each decoder alone.

The other decoders are not fervid dependencies: each runs in a child process with its
package directory first on ``sys.path`` (``pip install --target DIR``), never in the
project's venv:

    pip install --no-deps --target /tmp/tc torchcodec==0.17.0   # needs FFmpeg 4-7 libs
    pip install --no-deps --target /tmp/d2 decord2==3.4.0
    python benchmarks/bench_decoders.py --torchcodec /tmp/tc --decord2 /tmp/d2 VIDEO...
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIRST = 8  # frames whose pixel difference is measured


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def reference(path: Path, fps: float) -> dict[str, Any]:
    from fervid.extract.decode import FrameSampler, probe
    from fervid.settings import SampleSettings

    t0, c0 = time.perf_counter(), _cpu()
    idx, ts, md5, first = [], [], [], []
    for f in FrameSampler(path, SampleSettings(fps=fps), probe(path), backend="pyav"):
        idx.append(f.frame_index)
        ts.append(f.timestamp_s)
        md5.append(hashlib.md5(np.ascontiguousarray(f.image).tobytes()).hexdigest())
        if len(first) < FIRST:
            first.append(f.image)
    return {"idx": idx, "ts": ts, "md5": md5, "first": first,
            "wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - c0}  # fmt: skip


def frames_torchcodec(path: Path, idx: list[int]) -> Any:
    from torchcodec.decoders import VideoDecoder

    d = VideoDecoder(str(path), num_ffmpeg_threads=1, seek_mode="exact", dimension_order="NHWC")
    for k in range(0, len(idx), 16):
        batch = d.get_frames_at(idx[k : k + 16])
        rgb = batch.data.numpy()
        for j, t in enumerate(batch.pts_seconds.tolist()):
            yield rgb[j, :, :, ::-1], t


def frames_decord(path: Path, idx: list[int]) -> Any:
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    for k in range(0, len(idx), 16):
        sel = idx[k : k + 16]
        rgb = vr.get_batch(sel).asnumpy()
        starts = vr.get_frame_timestamp(sel)[:, 0]
        for j, t in enumerate(starts.tolist()):
            yield rgb[j, :, :, ::-1], t


def child(name: str, path: Path, fps: float) -> dict[str, Any]:
    ref = reference(path, fps)
    decode = {"torchcodec": frames_torchcodec, "decord": frames_decord}[name]
    t0, c0 = time.perf_counter(), _cpu()
    importlib.import_module("torchcodec.decoders" if name == "torchcodec" else name)
    import_s = time.perf_counter() - t0  # torchcodec imports torch: not decoding
    t0, c0 = time.perf_counter(), _cpu()
    n = same_px = same_ts = 0
    max_diff = 0
    err = ""
    try:
        for k, (img, t) in enumerate(decode(path, ref["idx"])):
            img = np.ascontiguousarray(img)
            same_px += hashlib.md5(img.tobytes()).hexdigest() == ref["md5"][k]
            same_ts += abs(t - ref["ts"][k]) <= 1e-6
            if k < FIRST:
                a, b = img.astype(np.int16), ref["first"][k].astype(np.int16)
                max_diff = max(max_diff, int(np.abs(a - b).max()) if a.shape == b.shape else 999)
            n += 1
    except Exception as e:  # report, do not hide: a decoder that cannot read the file
        err = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"frames": len(ref["idx"]), "got": n, "same_pixels": same_px, "same_ts": same_ts,
            "max_abs_diff_first": max_diff, "wall_s": wall, "cpu_s": cpu, "error": err,
            "import_s": import_s, "pyav_wall_s": ref["wall_s"], "pyav_cpu_s": ref["cpu_s"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--torchcodec", type=Path, help="folder torchcodec is installed in")
    ap.add_argument("--decord2", type=Path, help="folder decord2 is installed in")
    ap.add_argument("--decord", action="store_true", help="also the venv's decord 0.6")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.videos[0], a.fps)))
        return
    runs: list[tuple[str, str, str]] = []  # (label, module, sys.path entry)
    if a.torchcodec:
        runs.append(("torchcodec", "torchcodec", str(a.torchcodec)))
    if a.decord2:
        runs.append(("decord2", "decord", str(a.decord2)))
    if a.decord:
        runs.append(("decord 0.6", "decord", ""))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()}")
    print("video | decoder | frames equal (pixels / timestamps) | max abs diff | "
          "wall s (PyAV) | CPU s (PyAV) | import s | error")  # fmt: skip
    for video in a.videos:
        for label, module, where in runs:
            paths = [p for p in (where, str(ROOT)) if p]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
            cmd = [sys.executable, __file__, str(video), "--fps", str(a.fps), "--child", module]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{video.name} | {label} | - | - | - | - | - | {out.stderr.strip()[-200:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{video.name} | {label} | {r['same_pixels']}/{r['frames']} / "
                  f"{r['same_ts']}/{r['frames']} (got {r['got']}) | {r['max_abs_diff_first']} | "
                  f"{r['wall_s']:.2f} ({r['pyav_wall_s']:.2f}) | {r['cpu_s']:.2f} "
                  f"({r['pyav_cpu_s']:.2f}) | {r['import_s']:.2f} | {r['error']}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
