"""Where results go on disk: per-video Parquet parts, written atomically as each video
finishes, and (in file mode) three consolidated Parquet files at the end of the run.

Two layouts, chosen from ``--out`` (see docs/schema.md):

* **File mode** (``--out results.parquet``): frames at ``results.parquet``, segments at
  ``results.segments.parquet``, videos at ``results.videos.parquet``. Each video's rows
  are first written as parts under the hidden folder ``.results.parquet.fervid/
  {frames,segments,videos}/<video_id>.parquet``; :meth:`OutputStore.finalize` rewrites
  the three files from all parts. The parts folder is the durable store: a crash loses
  nothing already written, and a later run adds or replaces videos by writing parts,
  without reading or merging the big files.
* **Dataset mode** (``--out results/``, any existing folder, or a path without a
  ``.parquet`` suffix): ``results/{frames,segments,videos}/<video_id>.parquet``, readable
  with one glob such as ``results/frames/*.parquet``; nothing to consolidate.

Every file is written to a hidden temporary name that does not end in ``.parquet``,
fsynced and renamed into place, so a reader or a glob never sees half a file. A
video's videos row is renamed into place last: a video counts as done only when all
its files are in place. One run at a time may write to an ``--out`` (a lock file).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from enum import Enum
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from fervid.errors import ConfigError, InputError
from fervid.output.atomic import (
    TEMP_GLOB,
    atomic_path,
    commit,
    fsync_dir,
    fsync_file,
    temp_path,
)
from fervid.output.integrity import (
    PART_SUFFIX,
    QUARANTINE,
    WRITE_OPTIONS,
    damaged_parts,
    visible_parts,
)
from fervid.output.lock import FileLock, Locked
from fervid.output.schema import (
    ADDED_COLUMN_DEFAULTS,
    FRAMES,
    META_MODEL_SHA256,
    META_SETTINGS,
    META_SETTINGS_HASH,
    META_VERSION,
    SEGMENTS,
    STATUS_SKIPPED,
    TABLES,
    VIDEOS,
    VideoStatus,
    schema_for,
)
from fervid.output.tables import check_schema

#: Rows buffered before a row group is written while consolidating.
ROW_GROUP_ROWS = 128 * 1024
#: Table formats someone may mean instead of Parquet; refused rather than made a folder.
_NOT_PARQUET = {".csv", ".tsv", ".json", ".jsonl", ".feather", ".arrow", ".ipc", ".xlsx",
                ".pq", ".parq", ".db", ".duckdb", ".sqlite"}  # fmt: skip
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
#: Suffix of the hard-linked copy of a part kept while it is being replaced (hidden, and
#: not ending in .parquet, so readers skip it); a crash mid-replace restores it.
_BACKUP_SUFFIX = ".prev"
#: Hidden folder (under the parts root) holding superseded results: a path's earlier
#: result once the file at that path has other content (docs/schema.md, "One current
#: result per path"), as ``<table>/<key>.<time>.parquet``, readable like any part.
HISTORY = ".history"
#: Key-value metadata of a videos file in :data:`HISTORY`: JSON ``{"reason", "by", "at"}``.
META_SUPERSEDED = b"fervid.superseded"

log = logging.getLogger(__name__)


class Layout(Enum):
    FILE = "file"  # one Parquet file per table
    DATASET = "dataset"  # one Parquet file per table per video


def layout_of(out: Path) -> Layout:
    """File mode when ``out`` ends in ``.parquet`` and is not an existing folder; dataset
    mode when it is a folder or has no suffix. Raises ConfigError for other suffixes."""
    out = Path(out)
    if out.is_dir():
        return Layout.DATASET
    if out.suffix.lower() == ".parquet":
        return Layout.FILE
    if out.exists():
        raise ConfigError(
            f"--out={out} is an existing file that is not .parquet; expected results.parquet "
            "(one file per table) or a folder (one file per video)"
        )
    if out.suffix.lower() in _NOT_PARQUET:
        raise ConfigError(
            f"--out={out}: fervid writes Parquet; use {out.with_suffix('.parquet')} "
            f"(one file per table) or {out.with_suffix('')}/ (one file per video)"
        )
    return Layout.DATASET


def output_paths(out: Path) -> dict[str, Path]:
    """Table name -> consolidated file (file mode) or folder of per-video files (dataset)."""
    out = Path(out)
    if layout_of(out) is Layout.DATASET:
        return {t: out / t for t in TABLES}
    return {FRAMES: out} | {t: out.with_name(f"{out.stem}.{t}.parquet") for t in (SEGMENTS, VIDEOS)}


def parts_root(out: Path) -> Path:
    """Folder holding ``{frames,segments,videos}/<video_id>.parquet``."""
    out = Path(out)
    if layout_of(out) is Layout.DATASET:
        return out
    return out.with_name(f".{out.name}.fervid")


def file_metadata(
    settings_json: dict[str, Any], model_sha256: str, settings_hash: str, fervid_version: str
) -> dict[bytes, bytes]:
    """The Parquet key-value metadata every results table carries (on disk or in memory)."""
    return {
        META_SETTINGS: json.dumps(settings_json, sort_keys=True, default=str).encode(),
        META_VERSION: fervid_version.encode(),
        META_MODEL_SHA256: model_sha256.encode(),
        META_SETTINGS_HASH: settings_hash.encode(),
    }


class OutputStore:
    """The results of one run on disk (see the module docstring for the layouts).

    ``settings_json`` (the run settings without paths, ``RunSettings.metadata_json``),
    ``fervid_version``, ``model_sha256`` and ``settings_hash`` go into every file's Parquet
    key-value metadata.
    A video is skipped when it is already done (``ok``/``ok_with_warnings``) with the
    same ``settings_hash``, unless ``overwrite``; failed videos and videos done with other
    settings are redone, their rows replaced by a new result but never by a failure
    (:meth:`write_video`). Unreadable part files (a torn copy, a full disk in another
    tool) are moved to ``.quarantine/`` with a line in ``warnings``, and their videos
    redone.
    """

    def __init__(
        self,
        *,
        out: Path,
        class_names: tuple[str, ...],
        settings_json: dict[str, Any],
        model_sha256: str,
        settings_hash: str,
        fervid_version: str,
        overwrite: bool,
    ) -> None:
        self.out = Path(out)
        self.layout = layout_of(self.out)
        self.class_names = tuple(class_names)
        self.settings_hash = settings_hash
        self.overwrite = overwrite
        self.schemas = {t: schema_for(t, self.class_names) for t in TABLES}
        self.metadata = file_metadata(settings_json, model_sha256, settings_hash, fervid_version)
        self.root = parts_root(self.out)
        self._written = 0
        self._dirty = False  # parts removed: the consolidated files must be rewritten
        self._closed = False
        #: video_ids whose rerun failed and whose earlier result was kept (this run).
        self.kept: list[str] = []
        #: One line per problem found in the existing output (a damaged part moved away).
        self.warnings: list[str] = []
        #: Paths whose earlier result (of other content) this run moved to history.
        self.replaced: list[str] = []
        for t in TABLES:
            (self.root / t).mkdir(parents=True, exist_ok=True)
        self._lock_file = self._lock()
        try:
            self._remove_leftovers()
            self._quarantine_unreadable()
            _check_class_names(self.out, self.root, self.schemas)
            _check_compatible(self.out, self.root, self.layout, self.schemas)
            if self.layout is Layout.FILE:
                self._adopt_consolidated()
            self._done, self._paths, self._key_path = self._scan_completed()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------------- public
    def completed(self) -> dict[str, str]:
        """video_id -> settings_hash of every video already done (``ok`` or
        ``ok_with_warnings``)."""
        return dict(self._done)

    def has_video(self, key: str) -> bool:
        """True when a videos row is stored under ``key`` (whatever its status): a
        duplicate's skipped row is written once, not again on every rerun."""
        return self._part(VIDEOS, key).exists()

    def stored_path(self, video_id: str) -> str | None:
        """``path`` of the stored result of ``video_id`` (None without one): a later run
        given only a copy of a done video under another path records the copy as a
        duplicate of this path instead of leaving it without a row."""
        return self._paths.get(video_id)

    def should_skip(self, video_id: str) -> bool:
        """True when ``video_id`` is done with this run's settings and not ``overwrite``."""
        return not self.overwrite and self._done.get(video_id) == self.settings_hash

    def write_video(
        self, video_id: str, frames: pa.Table, segments: pa.Table, videos_row: pa.Table
    ) -> bool:
        """Write (or replace) one video's rows: three files, each atomically. Returns False
        when the rows were not written because an earlier result is kept (below).

        A rerun never makes things worse: when ``videos_row`` has no result (``failed``)
        and the video already has one (``ok`` / ``ok_with_warnings``, whatever its
        settings), the earlier frames and segments stay, and only the stored row's
        ``last_error`` column records the new failure (the video is then retried by the
        next run with these settings, as a failed one would be).

        Otherwise the new files are first written under temporary names; the old parts
        are hard-linked to hidden backups, the old videos part is removed (so the video
        no longer counts as done), frames and segments are renamed into place, and the
        videos row last. An error on the way (disk full) restores the old parts; a crash
        leaves the backups, which the next run restores. Either way the video ends with
        all its new rows or all its old ones.
        """
        self._check_open()
        if not _SAFE_ID.match(video_id):
            raise ValueError(f"video_id={video_id!r}; expected letters, digits, '_', '-', '.'")
        tables = {FRAMES: frames, SEGMENTS: segments, VIDEOS: videos_row}
        for t, table in tables.items():
            check_schema(table, self.schemas[t], name=t)
        if videos_row.num_rows != 1:
            raise ValueError(f"videos_row has {videos_row.num_rows} rows; expected exactly 1")
        row_id = videos_row.column("video_id")[0].as_py()
        for t in (FRAMES, SEGMENTS):
            ids = set(pc.unique(tables[t].column("video_id")).to_pylist())
            if ids - {row_id}:
                raise ValueError(
                    f"{t} rows belong to videos {sorted(ids)}, but the videos row is {row_id!r}"
                )
        status = VideoStatus(videos_row.column("status")[0].as_py())
        if (
            status is VideoStatus.FAILED
            and video_id in self._done
            and self._part(VIDEOS, video_id).exists()
        ):
            self._keep_previous(video_id, videos_row.column("error")[0].as_py() or "failed")
            return False
        temps: dict[str, Path] = {}
        backups = self._back_up(video_id)
        try:
            for t in TABLES:
                temps[t] = self._write_temp(tables[t], self._part(t, video_id))
            self._part(VIDEOS, video_id).unlink(missing_ok=True)
            for t in (FRAMES, SEGMENTS, VIDEOS):  # the videos row last: it marks the video done
                os.replace(temps[t], self._part(t, video_id))
                del temps[t]
        except BaseException:
            self._restore(video_id, backups)
            raise
        finally:
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
        for backup in backups.values():
            backup.unlink(missing_ok=True)
        for t in TABLES:
            fsync_dir(self.root / t)
        self._written += 1
        path = videos_row.column("path")[0].as_py()
        self._key_path[video_id] = path
        if status.has_result:
            self._done[row_id] = videos_row.column("settings_hash")[0].as_py()
            self._paths[row_id] = path
        elif row_id == video_id:
            self._done.pop(row_id, None)
            self._paths.pop(row_id, None)
        return True

    def supersede(self, path: str, current: str) -> list[str]:
        """Move every stored row of ``path`` other than the part ``current`` (the result,
        or a duplicate's skipped row, of what the file at ``path`` holds now) to
        :data:`HISTORY`: the file's content changed (a copy finished after a partial
        one was analysed, a recording re-exported), and one path has one current
        result. The moved videos row records why in its :data:`META_SUPERSEDED`
        metadata. Returns the keys moved; the path is added to :attr:`replaced`."""
        self._check_open()
        old = sorted(k for k, p in self._key_path.items() if p == path and k != current)
        if not old:
            return []
        stamp = time.strftime("%Y%m%dT%H%M%S")
        why = json.dumps({
            "reason": f"the file at {path} has other content now",
            "by": current, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }).encode()  # fmt: skip
        for key in old:
            self._move_parts(
                key, self.root / HISTORY, f".{stamp}{PART_SUFFIX}", {META_SUPERSEDED: why}
            )
            self._key_path.pop(key, None)
            if self._paths.get(key) == path:  # a result of the old content (key is its id)
                self._done.pop(key, None)
                self._paths.pop(key, None)
        self._dirty = True
        self.replaced.append(path)
        return old

    def _keep_previous(self, video_id: str, error: str) -> None:
        """Record a rerun's failure on the stored row (``last_error``), keeping its result,
        its settings hash and the Parquet metadata of the run that made it."""
        part = self._part(VIDEOS, video_id)
        old = pq.read_schema(part).metadata or {}
        row = _read_files([part], self.schemas[VIDEOS])
        row = row.set_column(
            row.schema.get_field_index("last_error"),
            self.schemas[VIDEOS].field("last_error"),
            pa.array([error.strip().splitlines()[0]] * row.num_rows, pa.string()),
        )
        meta = {k: v for k, v in old.items() if k.startswith(b"fervid.")}
        tmp = self._write_temp(row, part, metadata=meta)
        commit(tmp, part)
        fsync_dir(part.parent)
        self._written += 1
        self.kept.append(video_id)

    def _back_up(self, key: str) -> dict[str, Path]:
        """Hard links to ``key``'s current parts (no data copied), by table."""
        backups: dict[str, Path] = {}
        for t in TABLES:
            part = self._part(t, key)
            if not part.exists():
                continue
            backup = _backup_name(part)
            backup.unlink(missing_ok=True)
            try:
                os.link(part, backup)
            except OSError:  # no hard links here: replace without a safety copy
                continue
            backups[t] = backup
        return backups

    def _restore(self, key: str, backups: dict[str, Path]) -> None:
        """Put ``key``'s backed-up parts back (the videos part last: it marks it done)."""
        if VIDEOS not in backups and not self._part(VIDEOS, key).exists():
            for t in (FRAMES, SEGMENTS):  # not done and nothing to restore: no orphans
                self._part(t, key).unlink(missing_ok=True)
        for t in (FRAMES, SEGMENTS, VIDEOS):
            if t in backups:
                try:
                    os.replace(backups[t], self._part(t, key))
                    # a rename onto another link of the same file does nothing: drop it
                    backups[t].unlink(missing_ok=True)
                except OSError as e:
                    log.warning("could not restore %s/%s: %s", t, self._part(t, key).name, e)

    def finalize(self) -> dict[str, Path]:
        """File mode: rewrite the three consolidated files from all parts (videos ordered
        by path, each video's rows in time order). Dataset mode: nothing to merge.
        Releases the lock; returns table name -> file (file mode) or folder (dataset)."""
        self._check_open()
        try:
            paths = output_paths(self.out)
            if self.layout is Layout.FILE and not (self._written == 0 and self._fresh(paths)):
                keys = self._ordered_keys()
                for t in TABLES:  # videos last, like the parts
                    self._consolidate(t, keys, paths[t])
            return paths
        finally:
            self.close()

    def close(self) -> None:
        """Release the lock without consolidating (what a crash leaves behind: the parts
        are kept and the next run's :meth:`finalize` consolidates them)."""
        self._closed = True
        self._lock_file.release()

    # ----------------------------------------------------------------------- parts
    def _part(self, table: str, key: str) -> Path:
        return self.root / table / f"{key}{PART_SUFFIX}"

    def _keys(self, table: str) -> set[str]:
        return {p.name[: -len(PART_SUFFIX)] for p in visible_parts(self.root / table)}

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this OutputStore is finalized or closed; open a new one")

    def _write_temp(
        self, table: pa.Table, dest: Path, *, metadata: dict[bytes, bytes] | None = None
    ) -> Path:
        tmp = temp_path(dest)
        meta = self.metadata | (metadata or {})
        try:
            pq.write_table(table.replace_schema_metadata(meta), tmp, **WRITE_OPTIONS)
            fsync_file(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _lock(self) -> FileLock:
        try:
            return FileLock(self.root / ".fervid.lock").acquire()
        except Locked as e:
            raise ConfigError(
                f"--out={self.out} is being written by another fervid run (pid {e.holder}); "
                "wait for it to finish or choose another --out"
            ) from None

    def _remove_leftovers(self) -> None:
        """Temporary files of a crashed run, and frames/segments parts of a video whose
        videos part is missing (a crash while it was being replaced: it is not done).
        Safe because this store holds the lock."""
        for t in TABLES:
            for p in (self.root / t).glob(TEMP_GLOB):
                p.unlink(missing_ok=True)
        if self.layout is Layout.FILE:
            for dest in output_paths(self.out).values():
                for p in dest.parent.glob(f".{glob_escape(dest.name)}.tmp-*"):
                    p.unlink(missing_ok=True)
        for t in TABLES:  # backups of a run that died while replacing a video
            for backup in (self.root / t).glob(f".*{PART_SUFFIX}{_BACKUP_SUFFIX}"):
                key = backup.name[1 : -len(PART_SUFFIX + _BACKUP_SUFFIX)]
                if not self._part(VIDEOS, key).exists():  # not replaced: put the old one back
                    os.replace(backup, self._part(t, key))
                    self._dirty = True
        for t in TABLES:
            for backup in (self.root / t).glob(f".*{PART_SUFFIX}{_BACKUP_SUFFIX}"):
                backup.unlink(missing_ok=True)
        done = self._keys(VIDEOS)
        for t in (FRAMES, SEGMENTS):
            for key in self._keys(t) - done:
                self._part(t, key).unlink(missing_ok=True)
                self._dirty = True

    def _quarantine_unreadable(self) -> None:
        """Move the parts of every video with a damaged part file (torn by a crash of
        another tool, a full disk, a bad copy, a damaged page behind an intact footer:
        every page is read, :mod:`fervid.output.integrity`) to ``.quarantine/<table>/``,
        so the video counts as not done and is redone."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for key, why in sorted(damaged_parts(self.root).items()):
            # not ending in .parquet: nothing reads a quarantined file back by accident
            self._move_parts(key, self.root / QUARANTINE, f"{PART_SUFFIX}.{stamp}")
            self._dirty = True
            self.warnings.append(
                f"damaged result file {why}; moved to {QUARANTINE}/, video {key} will be redone"
            )
            log.warning("%s", self.warnings[-1])

    def _move_parts(
        self, key: str, folder: Path, suffix: str, metadata: dict[bytes, bytes] | None = None
    ) -> None:
        """Move ``key``'s parts to ``folder/<table>/<key><suffix>``, the videos part first
        (the key stops counting as done before its rows leave). ``metadata``: added to
        the moved videos file's key-value metadata (the file is rewritten for it)."""
        for t in (VIDEOS, FRAMES, SEGMENTS):
            part = self._part(t, key)
            if not part.exists():
                continue
            dest = folder / t / f"{key}{suffix}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            if metadata and t == VIDEOS:
                try:
                    table = pq.read_table(part)
                except (OSError, pa.ArrowException):  # unreadable: moved as it is
                    table = None
                if table is not None:
                    meta = (table.schema.metadata or {}) | metadata
                    with atomic_path(dest) as tmp:
                        pq.write_table(table.replace_schema_metadata(meta), tmp,
                                       **WRITE_OPTIONS)  # fmt: skip
                    part.unlink()
                    continue
            os.replace(part, dest)
        for t in TABLES:
            fsync_dir(self.root / t)

    def _adopt_consolidated(self) -> None:
        """When consolidated files exist but the parts folder holds no videos (it was
        deleted, or the files were copied here), split the files back into parts so
        that the next finalize keeps their videos. Skipped rows that share a video_id
        with a processed row are dropped (the run that found the duplicate re-adds it)."""
        paths = output_paths(self.out)
        if self._keys(VIDEOS) or not paths[VIDEOS].exists():
            return
        _check_consolidated(self.out, self.root, self.schemas)
        meta = {
            k: v
            for k, v in (pq.read_schema(paths[VIDEOS]).metadata or {}).items()
            if k.startswith(b"fervid.")
        }  # the adopted rows keep the settings they were made with
        try:
            tables = {
                t: _read_files([paths[t]], self.schemas[t]) for t in TABLES if paths[t].exists()
            }
        except (OSError, pa.ArrowException) as e:
            raise _unreadable_consolidated(self.out, e) from None
        videos = tables[VIDEOS]
        ids = videos.column("video_id").to_pylist()
        statuses = videos.column("status").to_pylist()
        processed = {v for v, s in zip(ids, statuses, strict=True) if s != STATUS_SKIPPED}
        last = {}  # video_id -> index of the row kept: one row per part
        for i, (v, s) in enumerate(zip(ids, statuses, strict=True)):
            if s != STATUS_SKIPPED or v not in processed:
                last[v] = i
        videos = videos.take(pa.array(sorted(last.values()), pa.int64()))
        grouped = {t: _split_by_video(tables[t]) for t in (FRAMES, SEGMENTS) if t in tables}
        for vid, row in _split_by_video(videos).items():
            parts = {
                t: grouped.get(t, {}).get(vid, self.schemas[t].empty_table())
                for t in (FRAMES, SEGMENTS)
            }
            for t, table in (*parts.items(), (VIDEOS, row)):  # videos last
                tmp = self._write_temp(table, self._part(t, vid), metadata=meta)
                os.replace(tmp, self._part(t, vid))
        for t in TABLES:
            fsync_dir(self.root / t)

    def _scan_completed(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """video_id -> settings_hash, and video_id -> path, of the videos with a result;
        part key -> path of every videos part (whatever its status)."""
        cols = ["video_id", "status", "settings_hash", "path"]
        done: dict[str, str] = {}
        paths: dict[str, str] = {}
        key_path: dict[str, str] = {}
        for key, row in self._videos_rows(cols):
            key_path[key] = row["path"]
            if VideoStatus(row["status"]).has_result:
                done[row["video_id"]], paths[row["video_id"]] = row["settings_hash"], row["path"]
        return done, paths, key_path

    def _videos_rows(self, columns: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """(part key, ``columns`` of its row) for every videos part, in key order."""
        keys = sorted(self._keys(VIDEOS))
        if not keys:
            return []
        files = [self._part(VIDEOS, k) for k in keys]
        t = ds.dataset(files, format="parquet").to_table(columns=columns)
        if t.num_rows != len(keys):  # parts written by hand with several rows: one by one
            rows = [pq.read_table(f, columns=columns).slice(0, 1).to_pylist()[0] for f in files]
        else:  # one row per part, in file-list order
            rows = t.to_pylist()
        return list(zip(keys, rows, strict=True))

    # ----------------------------------------------------------------------- consolidation
    def _ordered_keys(self) -> list[str]:
        """Part keys in the order their rows appear in the consolidated files: by path."""
        rows = self._videos_rows(["path"])
        return [k for _, k in sorted((row["path"], k) for k, row in rows)]

    def _consolidate(self, table: str, keys: list[str], dest: Path) -> None:
        schema = self.schemas[table].with_metadata(self.metadata)
        tmp = temp_path(dest)
        try:
            with pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as writer:
                buffered: list[pa.Table] = []
                rows = 0
                for k in keys:
                    part = self._part(table, k)
                    if not part.exists():
                        continue
                    buffered.append(_read_files([part], self.schemas[table]))
                    rows += buffered[-1].num_rows
                    if rows >= ROW_GROUP_ROWS:
                        writer.write_table(
                            pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS
                        )
                        buffered, rows = [], 0
                if buffered or not keys:
                    writer.write_table(
                        pa.concat_tables(buffered)
                        if buffered
                        else self.schemas[table].empty_table()
                    )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        commit(tmp, dest)
        fsync_dir(dest.parent)

    def _fresh(self, paths: dict[str, Path]) -> bool:
        """True when every consolidated file exists, holds as many videos as there are
        parts, no part is newer and none was removed by this store."""
        if self._dirty or not all(p.exists() for p in paths.values()):
            return False
        try:
            footers = {t: pq.read_metadata(p) for t, p in paths.items()}
        except (OSError, pa.ArrowException):  # one is damaged: rewrite them from the parts
            return False
        if footers[VIDEOS].num_rows != len(self._keys(VIDEOS)):
            return False  # a part was removed
        oldest = min(p.stat().st_mtime_ns for p in paths.values())
        return all(
            p.stat().st_mtime_ns <= oldest for t in TABLES for p in visible_parts(self.root / t)
        )


# --------------------------------------------------------------------------- checks
def check_output(out: Path, class_names: tuple[str, ...]) -> None:
    """Refuse an ``--out`` a run with ``class_names`` could not add to, reading only:
    the run calls it before it opens anything for writing, so a refused run leaves the
    output byte-identical. Raises :class:`ConfigError` (one line, with the fix) for an
    ``--out`` that is neither ``.parquet`` nor a folder, files of another model's
    classes or of a table this fervid cannot read, and (file layout) consolidated files
    that cannot be read as fervid's tables while no parts are there to rebuild them.
    Part files too damaged to read are left to the store, which quarantines them."""
    out = Path(out)
    layout = layout_of(out)
    root = parts_root(out)
    schemas = {t: schema_for(t, tuple(class_names)) for t in TABLES}
    _check_class_names(out, root, schemas)
    _check_compatible(out, root, layout, schemas)
    if layout is Layout.FILE and not visible_parts(root / VIDEOS):
        _check_consolidated(out, root, schemas)


def _readable_schema(path: Path) -> pa.Schema | None:
    """The schema in ``path``'s footer, or None when the footer cannot be read (a
    damaged part: quarantined by the store)."""
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return None


def _check_class_names(out: Path, root: Path, schemas: dict[str, pa.Schema]) -> None:
    """Refuse to mix tables of models with different classes in one --out."""
    for t in TABLES:
        found = next(
            (f for f in map(_readable_schema, visible_parts(root / t)) if f is not None), None
        )
        if found is None:
            continue
        # Only the class columns must agree: columns added by a later fervid version
        # read as null from older parts.
        if _class_names(t, found.names) != _class_names(t, schemas[t].names):
            raise ConfigError(
                f"--out={out} holds {t} rows with columns {found.names}, but this run "
                f"writes {schemas[t].names} (another model's classes?); choose another --out"
            )


def _check_compatible(out: Path, root: Path, layout: Layout, schemas: dict[str, pa.Schema]) -> None:
    """Refuse an --out holding files this fervid cannot read as its tables (a column
    of another type, columns it does not know, a file of another table), before
    anything is processed; files of an older fervid that lack added columns pass."""
    paths = output_paths(out) if layout is Layout.FILE else {}
    for t in TABLES:
        files = visible_parts(root / t) + [p for p in [paths.get(t)] if p and p.exists()]
        for p in files:
            found = _readable_schema(p)
            if found is None:  # a damaged part is quarantined, a consolidated file rewritten
                continue
            problem = schema_problem(found, schemas[t])
            if problem is None:
                continue
            version = (found.metadata or {}).get(META_VERSION, b"unknown").decode()
            where = f"{t}/{p.name}" if p.parent == root / t else p.name
            raise ConfigError(
                f"--out={out}: {where} cannot be read as this fervid's {t} table "
                f"({problem}; written by fervid {version}); upgrade fervid if it is "
                "newer, else move that file away or choose another --out"
            )


def _check_consolidated(out: Path, root: Path, schemas: dict[str, pa.Schema]) -> None:
    """File layout without parts: the consolidated files are the only copy of the
    results, adopted as parts by the store; refuse them unless their footers read as
    fervid's tables of this run's classes."""
    for t, path in output_paths(out).items():
        if not path.exists():
            continue
        try:
            names = pq.read_schema(path).names
        except (OSError, pa.ArrowException) as e:
            raise _unreadable_consolidated(out, e, path) from None
        if _class_names(t, names) != _class_names(t, schemas[t].names):
            raise ConfigError(
                f"--out={out}: {path.name} has other columns than this run writes "
                "(another model's classes?); choose another --out"
            )


def _unreadable_consolidated(out: Path, e: BaseException, path: Path | None = None) -> ConfigError:
    what = path.name if path is not None else "the existing results"
    others = ", ".join(p.name for p in output_paths(out).values())
    return ConfigError(
        f"--out={out}: {what} cannot be read as fervid's tables ({_one_line(e)}), and no "
        f"result parts are left to rebuild it from; restore it from a backup, or move "
        f"{others} away to start a new output there, or choose another --out"
    )


# --------------------------------------------------------------------------- older outputs
# An output written by an earlier fervid stays usable after an upgrade (docs/schema.md,
# "Compatibility"): its files may lack columns added since, which read as nulls (or as
# ADDED_COLUMN_DEFAULTS); anything else that differs is refused, never guessed at.
def schema_problem(found: pa.Schema, schema: pa.Schema) -> str | None:
    """Why rows stored as ``found`` cannot be read as ``schema``, or None when they can:
    ``found`` must be ``schema`` less some columns added later (nullable, or with an
    entry in ``ADDED_COLUMN_DEFAULTS``), with the same type for every other column.
    Column order, nullability and metadata may differ; timestamps may differ in unit
    (Parquet stores timestamp[s] as ms)."""
    if found.equals(schema, check_metadata=False):  # a file of this release: most of them
        return None
    problems = []
    have = {f.name: f.type for f in found}
    unknown = [n for n in have if schema.get_field_index(n) < 0]
    if unknown:
        problems.append(f"columns {unknown} this fervid does not write")
    for f in schema:
        if f.name not in have:
            if not f.nullable and f.name not in ADDED_COLUMN_DEFAULTS:
                problems.append(f"no column {f.name!r}")
            continue
        a = have[f.name]
        same_time = pa.types.is_timestamp(a) and pa.types.is_timestamp(f.type) and a.tz == f.type.tz
        if a != f.type and not same_time:
            problems.append(f"column {f.name!r} is {a}, expected {f.type}")
    return "; ".join(problems) or None


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (rows of one output table, possibly from a file an older fervid wrote) as
    exactly ``schema``, keeping ``table``'s metadata: columns in ``schema``'s order, a
    missing column added as nulls (or its ``ADDED_COLUMN_DEFAULTS`` value, which also
    fills nulls a reader put in for it), timestamps cast to ``schema``'s unit. Raises
    InputError when :func:`schema_problem` finds the two incompatible."""
    problem = schema_problem(table.schema, schema)
    if problem is not None:
        raise InputError(
            f"these rows cannot be read as fervid's current table: {problem}; they were "
            "written by another tool or a newer fervid (upgrade fervid to read them)"
        )
    n = table.num_rows
    columns = []
    for f in schema:
        default = ADDED_COLUMN_DEFAULTS.get(f.name)
        if f.name not in table.column_names:
            col = pa.nulls(n, f.type) if default is None else pa.array([default] * n, f.type)
        else:
            col = table.column(f.name)
            col = col if col.type == f.type else col.cast(f.type)
            if default is not None and col.null_count:
                col = pc.fill_null(col, pa.scalar(default, f.type))
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(table.schema.metadata))


# --------------------------------------------------------------------------- reading
def read_table(out: Path, table: str) -> pa.Table:
    """Read one table (``frames``, ``segments`` or ``videos``) of either layout, with its
    declared schema and the Parquet metadata of the files.

    File mode reads the consolidated file, or the parts when the run was not finalized.
    Dataset mode reads ``out/<table>/*.parquet``. Frames/segments of a video whose
    videos file is missing (a crash mid-write) are left out.
    """
    if table not in TABLES:
        raise ValueError(f"table={table!r}; expected one of {list(TABLES)}")
    out = Path(out)
    layout = layout_of(out)
    if layout is Layout.FILE and output_paths(out)[table].exists():
        files = [output_paths(out)[table]]
    else:
        root = parts_root(out)
        done = {p.name for p in visible_parts(root / VIDEOS)}
        files = [p for p in visible_parts(root / table) if p.name in done]
    if not files:
        raise InputError(
            f"no {table} results at {out}; expected a fervid process output "
            "(results.parquet or a results folder)"
        )
    schema = schema_for(table, _class_names(table, pq.read_schema(files[0]).names))
    result = _read_files(files, schema)
    meta = pq.read_schema(files[0]).metadata or {}
    return result.replace_schema_metadata(
        {k: v for k, v in meta.items() if k.startswith(b"fervid.")}
    )


def read_results(
    out: Path,
    table: str,
    *,
    columns: list[str] | None = None,
    video_id: str | None = None,
    missing_ok: bool = False,
) -> pa.Table:
    """The public read for analysis code (``fervid.longitudinal``, notebooks): one table
    of either layout, as :func:`read_table`, optionally only ``columns`` and only the
    rows of ``video_id`` (read from that video's part file, not the whole table).

    ``missing_ok``: an output without files for this table gives an empty table of the
    declared schema instead of :class:`InputError` (an output whose videos have no face
    has no frames files in file mode's parts).
    """
    out = Path(out)
    if video_id is not None:
        part = parts_root(out) / table / f"{video_id}{PART_SUFFIX}"
        if part.exists():  # both layouts keep one part per video
            found = pq.read_schema(part)
            # All columns, conformed: an older part may lack some of ``columns``.
            t = _read_files([part], schema_for(table, _class_names(table, found.names)))
            t = t.replace_schema_metadata(found.metadata)
            return t.select(columns) if columns is not None else t
    try:
        t = read_table(out, table)
    except InputError:
        if not missing_ok:
            raise
        t = schema_for(table).empty_table()
    if video_id is not None:
        t = t.filter(pc.field("video_id") == video_id)
    return t.select(columns) if columns is not None else t


def _class_names(table: str, names: list[str]) -> tuple[str, ...]:
    prefix = {FRAMES: "prob_", SEGMENTS: "mean_prob_", VIDEOS: "share_"}[table]
    return tuple(n[len(prefix) :] for n in names if n.startswith(prefix))


def _read_files(files: Iterable[Path], schema: pa.Schema) -> pa.Table:
    """Files of one table as ``schema`` (Parquet stores timestamp[s] as ms: cast back)."""
    files = [Path(f) for f in files]
    if not files:
        return schema.empty_table()
    for f in files:  # refuse by name what cannot be conformed, before reading anything
        problem = schema_problem(pq.read_schema(f), schema)
        if problem is not None:
            raise InputError(
                f"{f} cannot be read as fervid's current table: {problem}; it was written "
                "by another tool or a newer fervid (upgrade fervid, or move it away)"
            )
    # A file lacking an added column gives nulls for it here; conform() fills defaults.
    t = ds.dataset([str(f) for f in files], format="parquet", schema=schema).to_table()
    return conform(t, schema)


def _split_by_video(table: pa.Table) -> dict[str, pa.Table]:
    """video_id -> that video's rows (in their original order)."""
    if table.num_rows == 0:
        return {}
    table = table.take(pc.sort_indices(table, [("video_id", "ascending")]))  # a stable sort
    codes = pc.dictionary_encode(table.column("video_id")).combine_chunks()
    idx = codes.indices.to_numpy()
    starts = [0, *(np.flatnonzero(np.diff(idx)) + 1).tolist()]
    stops = [*starts[1:], len(idx)]
    return {
        codes.dictionary[int(idx[a])].as_py(): table.slice(a, b - a)
        for a, b in zip(starts, stops, strict=True)
    }


def _backup_name(part: Path) -> Path:
    return part.with_name(f".{part.name}{_BACKUP_SUFFIX}")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
