"""Results kept in memory: the store of ``fervid.analyze``, which writes nothing.

:class:`MemoryStore` has the part of :class:`~fervid.output.store.OutputStore`'s
interface the run loop uses (``write_video``, ``should_skip``, ``has_video``,
``stored_path``, ``supersede``, ``finalize``, ``warnings``, ``kept``, ``replaced``), with the same schema checks and
file metadata, and gives the three tables in the order a consolidated file has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from fervid.output.schema import FRAMES, SEGMENTS, TABLES, VIDEOS, schema_for
from fervid.output.store import file_metadata
from fervid.output.tables import check_schema


class MemoryStore:
    """Every video's rows, by video key, in memory; nothing is ever skipped."""

    def __init__(
        self,
        *,
        class_names: tuple[str, ...],
        settings_json: dict[str, Any],
        model_sha256: str,
        settings_hash: str,
        fervid_version: str,
        out: Path | None = None,  # OutputStore's arguments; nothing is written anywhere
        overwrite: bool = True,
    ) -> None:
        self.schemas = {t: schema_for(t, tuple(class_names)) for t in TABLES}
        self.metadata = file_metadata(settings_json, model_sha256, settings_hash, fervid_version)
        self.kept: list[str] = []
        self.warnings: list[str] = []
        self.replaced: list[str] = []
        self._rows: dict[str, dict[str, pa.Table]] = {t: {} for t in TABLES}

    def should_skip(self, video_id: str) -> bool:
        return False

    def has_video(self, key: str) -> bool:
        return key in self._rows[VIDEOS]

    def stored_path(self, video_id: str) -> str | None:
        return None

    def supersede(self, path: str, current: str) -> list[str]:
        return []  # no earlier run's rows to move aside

    def write_video(
        self, video_id: str, frames: pa.Table, segments: pa.Table, videos_row: pa.Table
    ) -> bool:
        """Keep one video's rows (checked against the schemas as on disk); True."""
        tables = {FRAMES: frames, SEGMENTS: segments, VIDEOS: videos_row}
        for t, table in tables.items():
            check_schema(table, self.schemas[t], name=t)
            self._rows[t][video_id] = table
        return True

    def finalize(self) -> dict[str, Path]:
        return {}  # no files

    def tables(self) -> dict[str, pa.Table]:
        """Table name -> all videos' rows, ordered by path as a consolidated file is, with
        the file metadata."""
        videos = self._rows[VIDEOS]
        keys = sorted(videos, key=lambda k: (videos[k].column("path")[0].as_py(), k))
        return {
            t: pa.concat_tables(
                [self.schemas[t].empty_table(), *(self._rows[t][k] for k in keys)]
            ).replace_schema_metadata(self.metadata)
            for t in TABLES
        }
