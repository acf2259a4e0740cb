"""``fervid verify OUT [--repair]``: find every damaged file of an output, and set the
damaged parts aside so that the next run redoes their videos.

Every part is read whole (:func:`fervid.output.integrity.part_problem`: every page,
checksums, row counts), and in the file layout the consolidated files too. Without
``--repair`` nothing is changed. With it (holding the output's lock, so never beside a
running ``fervid process``), each damaged video's parts move to ``.quarantine/`` and a
damaged consolidated file moves there too (the next run rewrites it from the parts);
a damaged consolidated file with no parts to rebuild it from is left in place, with
what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from fervid.errors import ConfigError, InputError
from fervid.output.atomic import move_aside
from fervid.output.integrity import (
    QUARANTINE,
    damaged_parts,
    part_problem,
    quarantine,
    visible_parts,
)
from fervid.output.lock import FileLock, Locked
from fervid.output.schema import TABLES, VIDEOS
from fervid.output.store import Layout, layout_of, output_paths, parts_root


@dataclass
class VerifyReport:
    """What :func:`verify_output` found (one line each) and, with ``repair``, did."""

    parts: int = 0  # part files read
    damaged: dict[str, str] = field(default_factory=dict)  # video key -> why
    consolidated: dict[str, str] = field(default_factory=dict)  # file name -> why
    repaired: list[str] = field(default_factory=list)  # one line per action taken
    unrepairable: list[str] = field(default_factory=list)  # damage --repair cannot fix

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.consolidated)


def verify_output(out: Path, *, repair: bool = False) -> VerifyReport:
    """Read every file of the fervid output ``out`` (either layout). Raises
    :class:`InputError` when ``out`` holds no fervid output, :class:`ConfigError` when
    ``repair`` is asked while another run writes to it."""
    out = Path(out)
    layout = layout_of(out)
    root = parts_root(out)
    consolidated = output_paths(out) if layout is Layout.FILE else {}
    if not any(visible_parts(root / t) for t in TABLES) and not any(
        p.exists() for p in consolidated.values()
    ):
        raise InputError(
            f"{out} holds no fervid results; expected the --out of a fervid process run "
            "(results.parquet or a results folder)"
        )
    lock = FileLock(root / ".fervid.lock") if repair else None
    try:
        if lock is not None:
            lock.acquire()
    except Locked as e:
        raise ConfigError(
            f"--out={out} is being written by another fervid run (pid {e.holder}); run "
            "verify --repair when it has finished"
        ) from None
    try:
        report = VerifyReport(parts=sum(len(visible_parts(root / t)) for t in TABLES))
        report.damaged = damaged_parts(root)
        for p in consolidated.values():
            problem = part_problem(p) if p.exists() else None
            if problem is not None:
                report.consolidated[p.name] = problem
        if repair:
            _repair(root, report)
        return report
    finally:
        if lock is not None:
            lock.release()


def _repair(root: Path, report: VerifyReport) -> None:
    report.repaired += quarantine(root, report.damaged)
    if not report.consolidated:
        return
    if not visible_parts(root / VIDEOS):  # the consolidated files are the only copy
        report.unrepairable += [
            f"{name} is damaged and no result parts are left to rebuild it from; restore "
            "it from a backup, or move it away and rerun fervid process to redo its videos"
            for name in report.consolidated
        ]
        return
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in report.consolidated:
        path = root.parent / name
        dest = root / QUARANTINE / f"{name}.{stamp}"
        move_aside(path, dest)
        report.repaired.append(
            f"damaged {name} moved to {QUARANTINE}/; the next fervid process run rewrites it "
            "from the parts"
        )
