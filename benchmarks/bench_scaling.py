"""Scaling of `fervid process` with the number of worker processes and Ray nodes.

Not a test: prints numbers. Runs the same clip (the looped 720p telemedicine-like clip
of ``bench_pipeline.py``, cached in ``benchmarks/.cache/``) cut into ``--chunk-seconds``
chunks, so every worker has work, through:

- the in-process executor (1 process: extraction and classification in turn),
- embedded Ray with 1, 2 and 4 extraction workers (plus the classifier actor),
- a 2-node Ray cluster on this machine, 1 CPU per node (loopback only; nodes are
  ``ray start --block`` processes, stopped by their process group), 2 workers in all:
  the same total CPUs as "ray, 2 workers".

Each configuration is a fresh ``fervid process --json`` subprocess (Ray start-up
included in the wall time, as a user sees it) and reports video-seconds per
wall-second, with and without the executor's start-up (the 2-node cluster is started
before its run, so only the second figure compares it with embedded Ray).

    python benchmarks/bench_scaling.py [--minutes 3] [--chunk-seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]

from bench_pipeline import CACHE, build_clip  # noqa: E402
from helpers_cluster import clean_env, loopback_cluster  # noqa: E402


def fervid(clip: Path, out: Path, *args: str) -> dict:
    cmd = [sys.executable, "-m", "fervid", "process", str(clip), "--out", str(out),
           "--overwrite", "--json", "-q", *args]  # fmt: skip
    done = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--chunk-seconds", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=1, help="rounds, configurations interleaved")
    ap.add_argument(
        "--pair",
        action="store_true",
        help="only 'ray, 1 node, 2 workers' and '2 nodes x 1 CPU' (the 10 %% target)",
    )
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    a = ap.parse_args()
    clip = build_clip(a.minutes, CACHE / f"telemed_{a.minutes:g}min_720p.mp4")
    chunks = ["--chunk-seconds", f"{a.chunk_seconds:g}"]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fervid-bench-scaling-") as tmp:
        work = Path(tmp)

        def measure(name: str, *args: str) -> None:
            s = fervid(clip, work / f"{len(rows)}.parquet", *chunks, *args)
            busy = s["wall_s"] - s["executor_start_s"]
            rows.append({"config": name, "wall_s": s["wall_s"], "video_s": s["video_seconds"],
                         "start_s": s["executor_start_s"], "rate": s["realtime_factor"],
                         "rate_after_start": s["video_seconds"] / busy})  # fmt: skip
            r = rows[-1]
            print(f"{name:26s} {r['wall_s']:6.1f} s wall ({r['start_s']:4.1f} s start-up)  "
                  f"{r['rate']:5.2f} video-s/wall-s, {r['rate_after_start']:5.2f} after start-up",
                  flush=True)  # fmt: skip

        load = os.getloadavg()[0]
        print(f"clip: {clip.name}, {a.chunk_seconds:g} s chunks, {os.cpu_count()} CPUs, "
              f"load average {load:.1f} before the first run")  # fmt: skip
        with loopback_cluster(work / "cluster", cpus=(1, 1)) as (address, _):
            for _ in range(a.repeat):
                if not a.pair:
                    measure("local (1 process)", "--executor", "local")
                for n in (2,) if a.pair else (1, 2, 4):
                    measure(f"ray, 1 node, {n} worker{'s' if n > 1 else ''}", "--executor",
                            "ray", "--workers", str(n))  # fmt: skip
                measure("ray, 2 nodes x 1 CPU", "--ray-address", address, "--workers", "2")
    by: dict[str, list[float]] = {}
    for r in rows:  # the 2 nodes were up already: compare rates after start-up
        by.setdefault(r["config"], []).append(r["rate_after_start"])
    one, two = (statistics.median(by[k]) for k in ("ray, 1 node, 2 workers",
                                                    "ray, 2 nodes x 1 CPU"))  # fmt: skip
    print(f"2 nodes vs 1 node (2 workers each, after start-up, median of {a.repeat}): "
          f"{100 * (two / one - 1):+.1f} %")  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
