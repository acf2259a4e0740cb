"""How fast a bad option is answered: `fervid process ... --fps 0` (goal: under 1 s).

Not a test: prints numbers. Each run is a fresh `fervid` process (interpreter start,
typer/rich import, settings validation, the one-line error), as a user or a scheduler
sees it. The settings are validated before numpy, pyarrow, OpenCV, torch or Ray load.

    .venv/bin/python benchmarks/bench_cli_usage_error.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    fervid = Path(sys.executable).parent / "fervid"
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(fervid), "process", tmp, "--out", f"{tmp}/r.parquet", "--fps", "0"]
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = subprocess.run(argv, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if r.returncode != 2:
                sys.exit(f"expected exit 2, got {r.returncode}: {r.stderr}")
    print(f"bad --fps answered (exit 2): median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s over {args.runs} runs")  # fmt: skip


if __name__ == "__main__":
    main()
