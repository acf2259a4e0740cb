"""What reading an older release's output costs: store open and ``read_results`` over a
dataset folder of N videos whose parts an older fervid wrote, against the same folder
in today's schema.

Not a test: prints numbers. The old parts are copies of ``tests/data/old_output/``
(written by release 459250d; one 5-face-row video), each under its own name; the
current ones are the same rows conformed (``fervid.output.store.conform``) and written
in today's schema. Opening the store checks every part's schema
(``schema_problem``; the "(check)" column times that alone, and is part of "open");
reading conforms every file.

    python benchmarks/bench_old_output.py [--videos 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq

from fervid.model.classes import EMOTIONS
from fervid.output.schema import TABLES, schema_for
from fervid.output.store import OutputStore, conform, read_results, schema_problem

OLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "old_output" / "dataset" / "out"
VIDEO = "64a7f5d5027dac8f.parquet"


def make(root: Path, n: int, *, current: bool) -> Path:
    """``root/out``: n copies of the old video's three parts, old or current schema."""
    out = root / "out"
    for t in TABLES:
        (out / t).mkdir(parents=True)
        src = OLD / t / VIDEO
        if current:
            table = conform(pq.read_table(src), schema_for(t))
            src = root / f"{t}.parquet"
            pq.write_table(table, src, compression="zstd")
        for i in range(n):
            shutil.copyfile(src, out / t / f"v{i:06d}.parquet")
    return out


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` wall seconds (the machine is shared)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def open_and_close(out: Path) -> None:
    OutputStore(
        out=out, class_names=EMOTIONS, settings_json={}, model_sha256="m" * 64,
        settings_hash="h", fervid_version="bench", overwrite=False,
    ).close()  # fmt: skip


def check_all(out: Path) -> None:
    """The part of the store's open that is new: every part's schema read and checked."""
    for t in TABLES:
        schema = schema_for(t)
        for f in (out / t).glob("*.parquet"):
            assert schema_problem(pq.read_schema(f), schema) is None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--videos", type=int, default=2000, help="videos in the folder")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    a = p.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, {a.videos} videos, best of {a.repeats}")
    print(
        f"{'parts':8s} {'open':>8s} {'(check)':>8s} {'frames':>8s} {'segments':>8s} {'videos':>8s}  (s)"
    )
    for current in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            out = make(Path(tmp), a.videos, current=current)
            cols = [timed(partial(open_and_close, out), a.repeats)]
            cols += [timed(partial(check_all, out), a.repeats)]
            cols += [timed(partial(read_results, out, t), a.repeats) for t in TABLES]
            name = "current" if current else "old"
            print(f"{name:8s} " + " ".join(f"{c:8.2f}" for c in cols))


if __name__ == "__main__":
    main()
