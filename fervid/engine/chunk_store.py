"""Finished chunks of a long video, kept on disk until the whole video is written.

Each classified chunk of a video planned in more than one chunk is written at once as
one small Parquet file (the chunk's per-frame and per-face arrays and their
probabilities; never crops), so an interrupted or killed run resumes a 2-hour recording
from its last finished chunk instead of from the start. Files live beside the run's
parts, ``<parts root>/.chunks/<video_id>/<settings_hash>/<k>of<n>-c<chunk length>.parquet``:
another tunable or model is another folder and another plan another name, so a chunk is
only ever reused by a run that would compute exactly the same rows. The folder of a video is
removed once its result is written. Chunk files are mode 0600 in folders 0700 (the
``.chunks`` folder included) whatever the umask. Files are written to a temporary name and renamed
into place; an unreadable one (a torn write) is removed and its chunk redone.

Layout of a file: one row; one ``list<primitive>`` column per array field of
:class:`~fervid.records.VideoFaces` except ``crops`` (whatever fields the records
module defines, so new per-face columns are kept without a change here) plus ``probs``;
nested records of arrays (``quality``) as one column per array, ``quality.blur``; the
arrays' dtypes and shapes and the JSON-able fields (``warnings``, ``seconds``) in the
schema metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fervid.output.atomic import atomic_path, private_dir
from fervid.records import VideoFaces, VideoInfo, VideoInput

_META = b"fervid.chunk"
_NOT_STORED = {"video", "info", "crops"}  # known from the run; crops are never written


class ChunkStore:
    """Persisted chunks of the videos of one output (see the module docstring)."""

    def __init__(self, root: Path, settings_hash: str) -> None:
        self.root = Path(root)
        self.key = settings_hash

    def _dir(self, video_id: str) -> Path:
        return self.root / video_id / self.key

    def _file(self, video_id: str, index: int, count: int, chunk_s: float) -> Path:
        return self._dir(video_id) / f"{index}of{count}-c{chunk_s:g}.parquet"

    def save(
        self, faces: VideoFaces, probs: np.ndarray, index: int, count: int, chunk_s: float
    ) -> None:
        """Write chunk ``index`` of the ``count`` chunks of ``chunk_s`` seconds of
        ``faces.video`` (crops left out)."""
        arrays: dict[str, np.ndarray] = {"probs": np.asarray(probs)}
        plain: dict[str, Any] = {}
        tuples: list[str] = []
        nested: dict[str, str] = {}
        for f in dataclasses.fields(faces):
            value = getattr(faces, f.name)
            if f.name in _NOT_STORED or value is None:
                continue
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            elif dataclasses.is_dataclass(value):  # a record of arrays (e.g. FaceQuality)
                cls = type(value)
                nested[f.name] = f"{cls.__module__}:{cls.__qualname__}"
                for sub in dataclasses.fields(value):
                    arrays[f"{f.name}.{sub.name}"] = np.asarray(getattr(value, sub.name))
            else:
                if isinstance(value, tuple):
                    tuples.append(f.name)
                plain[f.name] = list(value) if isinstance(value, tuple) else value
        meta = {
            "arrays": {k: [v.dtype.str, list(v.shape)] for k, v in arrays.items()},
            "plain": plain,
            "tuples": tuples,
            "nested": nested,
        }
        schema = pa.schema(
            [pa.field(k, pa.list_(pa.from_numpy_dtype(v.dtype))) for k, v in arrays.items()],
            metadata={_META: json.dumps(meta).encode()},
        )
        table = pa.table(
            {k: pa.array([np.ascontiguousarray(v).reshape(-1)]) for k, v in arrays.items()},
            schema=schema,
        )
        dest = self._file(faces.video.video_id, index, count, chunk_s)
        # patient-derived: 0600 in folders 0700 whatever the umask (fervid.output.atomic)
        private_dir(dest.parent, root=self.root.parent)
        with atomic_path(dest, private=True) as tmp:  # a torn chunk is never read as whole
            pq.write_table(table, tmp)

    def load(
        self, video: VideoInput, info: VideoInfo, count: int, chunk_s: float
    ) -> dict[int, tuple[VideoFaces, np.ndarray]]:
        """Chunk number -> (faces without crops, probs) of every chunk of ``video``
        already on disk for a plan of ``count`` chunks of ``chunk_s`` seconds."""
        found: dict[int, tuple[VideoFaces, np.ndarray]] = {}
        folder = self._dir(video.video_id)
        if not folder.is_dir():
            return found
        for k in range(count):
            path = self._file(video.video_id, k, count, chunk_s)
            if not path.is_file():
                continue
            try:
                found[k] = _read(path, video, info)
            except Exception:  # a torn or foreign file: redo that chunk
                path.unlink(missing_ok=True)
        return found

    def clear(self, video_id: str) -> None:
        """Remove every persisted chunk of ``video_id`` (its result is written)."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root / video_id)


def _read(path: Path, video: VideoInput, info: VideoInfo) -> tuple[VideoFaces, np.ndarray]:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[_META])
    arrays: dict[str, Any] = {}
    for name, (dtype, shape) in meta["arrays"].items():
        flat = table.column(name)[0].values.to_numpy(zero_copy_only=False)
        arrays[name] = np.asarray(flat, dtype=np.dtype(dtype)).reshape(shape)
    probs = arrays.pop("probs")
    for name, where in meta["nested"].items():
        module, qualname = where.split(":")
        if module != "fervid.records":  # a file in --out never names code to import
            raise ValueError(f"chunk file names record type {where!r}")
        cls = getattr(importlib.import_module(module), qualname)
        prefix = f"{name}."
        subs = {k[len(prefix) :]: arrays.pop(k) for k in list(arrays) if k.startswith(prefix)}
        arrays[name] = cls(**subs)
    plain: dict[str, Any] = {
        k: tuple(v) if k in meta["tuples"] else v for k, v in meta["plain"].items()
    }
    n = len(arrays["frame_index"])
    faces = VideoFaces(video=video, info=info, crops=np.zeros((n, 0), np.uint8), **arrays, **plain)
    return faces, probs
