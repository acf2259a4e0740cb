"""Is a result file whole? Read every page of it, not only the footer.

A part with an intact footer but a damaged data page (a bad sector, a bad copy, a
restore gone wrong) used to pass the store's footer check and then fail every run's
consolidation ("check the disk", exit 4) forever. :func:`part_problem` reads every
column of every row group, verifies the page checksums fervid writes
(``write_page_checksum``; older files have none and rely on decompression failing),
validates the decoded arrays, and compares the row counts with the footer's. The store
quarantines what fails (:func:`quarantine`) and the run redoes those videos;
``fervid verify`` reports the same findings (:mod:`fervid.output.verify`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fervid.output.atomic import move_aside
from fervid.output.schema import TABLES

PART_SUFFIX = ".parquet"
#: Hidden folder (under the parts root) that damaged part files are moved to.
QUARANTINE = ".quarantine"
#: Keyword arguments every fervid Parquet writer passes: a CRC per page, so that a
#: damaged page is found by reading instead of decoding into wrong numbers.
WRITE_OPTIONS = {"compression": "zstd", "write_page_checksum": True}


def part_problem(path: Path) -> str | None:
    """Why the Parquet file at ``path`` cannot be trusted (one line), or None when every
    page reads, checksums match, arrays are valid and row counts agree."""
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as f:
            footer = f.metadata
            table = f.read(use_threads=False)
        table.validate(full=True)
    except (OSError, pa.ArrowException, ValueError) as e:
        return _one_line(e)
    groups = sum(footer.row_group(i).num_rows for i in range(footer.num_row_groups))
    if not table.num_rows == groups == footer.num_rows:
        return (
            f"{table.num_rows} rows read, but its footer says {footer.num_rows} "
            f"({groups} in its row groups)"
        )
    return None


def visible_parts(folder: Path) -> list[Path]:
    """Visible ``*.parquet`` files of a folder (temporaries are hidden and end otherwise)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{PART_SUFFIX}") if not p.name.startswith("."))


def damaged_parts(root: Path) -> dict[str, str]:
    """Part key (video) -> why, for every video with a damaged part under ``root``
    (``root/{frames,segments,videos}/<key>.parquet``); the first problem per video."""
    bad: dict[str, str] = {}
    for t in TABLES:
        for p in visible_parts(root / t):
            problem = part_problem(p)
            if problem is not None:
                bad.setdefault(p.name[: -len(PART_SUFFIX)], f"{t}/{p.name}: {problem}")
    return bad


def quarantine(root: Path, damaged: dict[str, str]) -> list[str]:
    """Move every part of each damaged video to ``root/.quarantine/<table>/`` (so the
    video counts as not done and the next run redoes it); one line per video. The
    caller holds the output's lock."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    lines = []
    for key, why in sorted(damaged.items()):
        for t in TABLES:
            part = root / t / f"{key}{PART_SUFFIX}"
            if part.exists():
                dest = root / QUARANTINE / t / f"{part.name}.{stamp}"
                move_aside(part, dest)
        lines.append(
            f"damaged result file {why}; moved to {QUARANTINE}/, video {key} will be redone"
        )
    return lines


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
