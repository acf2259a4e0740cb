"""Build the three output tables (frames, segments, videos) from one video's results.

Every table is built column by column against the schemas in :mod:`fervid.output.schema`;
a missing, extra or mistyped column, or a null in a non-nullable column, raises
ValueError instead of being inferred. Rows are in time order: frames by
``(timestamp_s, face_id)``, segments by ``(start_s, face_id)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePath
from typing import Any

import numpy as np
import pyarrow as pa

from fervid.output.schema import (
    QUALITY_COLUMNS,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_OK_WITH_WARNINGS,
    STATUS_SKIPPED,
    VideoStatus,
    frames_schema,
    landmark_col,
    mean_prob_col,
    prob_col,
    segments_schema,
    share_col,
    smooth_col,
    videos_schema,
)
from fervid.records import (
    LANDMARK_NAMES,
    FaceQuality,
    VideoInfo,
    VideoInput,
    VideoResult,
    decode_error_count,
)
from fervid.timeline.smooth import segment_index_per_row

_STATUSES = tuple(VideoStatus)


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Where rows come from: the identity columns shared by all three tables.

    ``path`` is the input's path relative to the input root (``VideoInput.rel_path``);
    ``subject``, ``session`` and ``session_date`` come from the ``--id-pattern`` fields of
    the same names; ``path_fields`` holds every field.
    """

    video_id: str
    path: str
    file_name: str
    subject: str | None = None
    session: str | None = None
    session_date: date | None = None
    path_fields: Mapping[str, str] = field(default_factory=dict)
    id_pattern_matched: bool | None = None

    @classmethod
    def of(cls, video: VideoInput) -> Identity:
        """Identity of one input. A ``session_date`` field that is not an ISO date
        (``2024-01-31`` or ``20240131``) gives a null ``session_date``; the raw text stays
        in ``path_fields`` so one oddly named file never fails the run."""
        fields = dict(video.fields)
        return cls(
            video_id=video.video_id,
            path=video.rel_path,
            file_name=PurePath(video.rel_path).name or video.path.name,
            subject=fields.get("subject"),
            session=fields.get("session"),
            session_date=_parse_date(fields.get("session_date")),
            path_fields=fields,
            id_pattern_matched=video.id_pattern_matched,
        )


def _parse_date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


# --------------------------------------------------------------------------- building blocks
def check_schema(table: pa.Table, schema: pa.Schema, *, name: str) -> None:
    """Raise ValueError unless ``table`` has exactly ``schema``'s columns, types and
    nullability (metadata ignored) and no nulls in non-nullable columns."""
    if not table.schema.equals(schema, check_metadata=False):
        raise ValueError(
            f"{name} table does not match its schema: {_schema_diff(table.schema, schema)}"
        )
    for f in schema:
        if not f.nullable and table.column(f.name).null_count:
            raise ValueError(
                f"{name} table column {f.name!r} is not nullable but holds "
                f"{table.column(f.name).null_count} nulls"
            )


def _schema_diff(actual: pa.Schema, expected: pa.Schema) -> str:
    missing = [n for n in expected.names if n not in actual.names]
    extra = [n for n in actual.names if n not in expected.names]
    parts = []
    if missing:
        parts.append(f"missing columns {missing}")
    if extra:
        parts.append(f"unexpected columns {extra}")
    for f in expected:
        if f.name in actual.names:
            a = actual.field(f.name)
            if a.type != f.type or a.nullable != f.nullable:
                parts.append(
                    f"column {f.name!r} is {a.type}{'' if a.nullable else ' not null'}, "
                    f"expected {f.type}{'' if f.nullable else ' not null'}"
                )
    if not parts and actual.names != expected.names:
        parts.append(f"columns in order {actual.names}, expected {expected.names}")
    return "; ".join(parts) or "schemas differ"


def _build(schema: pa.Schema, columns: Mapping[str, Any], *, name: str) -> pa.Table:
    """A table of ``schema`` from ``columns`` (name -> numpy array, list or Arrow array).
    Numpy arrays must already have the column's exact type: nothing is cast silently."""
    missing = [n for n in schema.names if n not in columns]
    extra = [n for n in columns if n not in schema.names]
    if missing or extra:
        raise ValueError(f"{name} table: missing columns {missing}, unexpected columns {extra}")
    arrays = []
    for f in schema:
        v = columns[f.name]
        if isinstance(v, pa.Array):
            arr = v
        elif isinstance(v, np.ndarray) and v.dtype != object:
            if pa.from_numpy_dtype(v.dtype) != f.type:
                raise ValueError(
                    f"{name} table column {f.name!r}: numpy {v.dtype}, expected {f.type}"
                )
            arr = pa.array(v, type=f.type)
        else:
            arr = pa.array(v, type=f.type)
        if arr.type != f.type:
            raise ValueError(f"{name} table column {f.name!r}: {arr.type}, expected {f.type}")
        arrays.append(arr)
    table = pa.Table.from_arrays(arrays, schema=schema)
    check_schema(table, schema, name=name)
    return table


def _identity_columns(ident: Identity, n: int) -> dict[str, Any]:
    pairs = sorted(ident.path_fields.items())
    return {
        "video_id": [ident.video_id] * n,
        "path": [ident.path] * n,
        "file_name": [ident.file_name] * n,
        "subject": [ident.subject] * n,
        "session": [ident.session] * n,
        "session_date": [ident.session_date] * n,
        "path_fields": [pairs] * n,
    }


def _names(class_names: tuple[str, ...], idx: np.ndarray) -> np.ndarray:
    return np.asarray(class_names, dtype=object)[idx]


def _check_result(result: VideoResult) -> None:
    n, c = result.faces.n_faces, len(result.class_names)
    for attr in ("probs", "smoothed"):
        shape = getattr(result, attr).shape
        if shape != (n, c):
            raise ValueError(
                f"VideoResult.{attr} must be ({n}, {c}) (faces x class_names), got {shape}"
            )
    if result.face_id.shape != (n,):
        raise ValueError(f"VideoResult.face_id must be ({n},), got {result.face_id.shape}")
    ids = {int(f) for f in np.unique(result.face_id)}
    if ids != set(result.segments):
        raise ValueError(
            f"VideoResult.segments has faces {sorted(result.segments)}, "
            f"but face_id holds {sorted(ids)}: every face needs its segments"
        )


def _segment_rows(result: VideoResult) -> np.ndarray:
    """int32 (n,): each face row's segment index within its face."""
    out = np.zeros(result.faces.n_faces, np.int32)
    for fid, segs in result.segments.items():
        rows = np.flatnonzero(result.face_id == fid)  # that face's rows, in time order
        out[rows] = segment_index_per_row(segs, len(rows))
    return out


# --------------------------------------------------------------------------- tables
def frames_table(
    result: VideoResult, ident: Identity, *, keep_empty_frames: bool = False
) -> pa.Table:
    """One row per face per sampled frame, sorted by ``(timestamp_s, face_id)``.

    ``label``/``confidence``: argmax/max of the calibrated ``prob_*``;
    ``smoothed_label``: argmax of ``smooth_*``; ``*_norm``: box / (width, height) of the
    displayed frame, so 0..1 when the box lies inside the frame. Quality, pose and
    landmark columns come from ``VideoFaces.quality`` (null where unknown: res10 gives no
    landmarks, or quality was not measured). ``keep_empty_frames``: also one row per
    sampled frame without a face (``face_found`` false, every face column null), like
    OpenFace's ``success = 0``.
    """
    _check_result(result)
    faces, names = result.faces, result.class_names
    info = faces.info
    if info.width <= 0 or info.height <= 0:
        raise ValueError(f"VideoInfo size is {info.width}x{info.height}; expected positive pixels")
    seg_idx = _segment_rows(result)
    order = np.lexsort((result.face_id, faces.timestamp_s))  # (n,), time then face
    size = np.array([info.width, info.height, info.width, info.height], np.float32)
    boxes = faces.boxes[order].astype(np.float32)  # (n, 4) xyxy pixels
    norm = (boxes / size).astype(np.float32)
    probs = result.probs[order].astype(np.float32)  # (n, C)
    smoothed = result.smoothed[order].astype(np.float32)  # (n, C)
    quality = faces.quality if faces.quality is not None else FaceQuality.empty(faces.n_faces)
    lms = quality.landmarks[order].astype(np.float32)  # (n, 5, 2) pixels, NaN: unknown
    cols: dict[str, Any] = _identity_columns(ident, len(order))
    cols |= {
        "frame_index": faces.frame_index[order].astype(np.int64),
        "timestamp_s": faces.timestamp_s[order].astype(np.float64),
        "face_found": np.ones(len(order), np.bool_),
        "face_id": result.face_id[order].astype(np.int32),
        "x1": boxes[:, 0], "y1": boxes[:, 1], "x2": boxes[:, 2], "y2": boxes[:, 3],
        "x1_norm": norm[:, 0], "y1_norm": norm[:, 1], "x2_norm": norm[:, 2], "y2_norm": norm[:, 3],
        "det_score": faces.det_scores[order].astype(np.float32),
        "label": _names(names, probs.argmax(axis=1)),
        "confidence": probs.max(axis=1),
        "smoothed_label": _names(names, smoothed.argmax(axis=1)),
        "segment_index": seg_idx[order],
    }  # fmt: skip
    for c in QUALITY_COLUMNS:
        cols[c] = _nan_as_null(getattr(quality, c)[order])
    for k, n in enumerate(LANDMARK_NAMES):
        for a, axis in enumerate(("x", "y")):
            px = np.ascontiguousarray(lms[:, k, a])
            cols[landmark_col(n, axis)] = _nan_as_null(px)
            cols[landmark_col(n, axis, norm=True)] = _nan_as_null(px / size[a])
    for j, c in enumerate(names):
        cols[prob_col(c)] = np.ascontiguousarray(probs[:, j])
        cols[smooth_col(c)] = np.ascontiguousarray(smoothed[:, j])
    schema = frames_schema(names)
    table = _build(schema, cols, name="frames")
    if not keep_empty_frames:
        return table
    empty = ~np.isin(faces.sampled_frame_index, faces.frame_index)  # (k,) frames without a face
    m = int(empty.sum())
    if m == 0:
        return table
    rows: dict[str, Any] = _identity_columns(ident, m)
    rows |= {
        "frame_index": faces.sampled_frame_index[empty].astype(np.int64),
        "timestamp_s": faces.sampled_timestamp_s[empty].astype(np.float64),
        "face_found": np.zeros(m, np.bool_),
    }
    rows |= {f.name: pa.nulls(m, f.type) for f in schema if f.name not in rows}
    both = pa.concat_tables([table, _build(schema, rows, name="frames")])
    return both.sort_by([("timestamp_s", "ascending"), ("face_id", "ascending")])


def _nan_as_null(values: np.ndarray) -> pa.Array:
    """float32 Arrow array of ``values`` with NaN written as null (unknown, not a number)."""
    v = np.ascontiguousarray(values, np.float32)
    return pa.array(v, type=pa.float32(), mask=np.isnan(v))


def segments_table(result: VideoResult, ident: Identity) -> pa.Table:
    """One row per segment, sorted by ``(start_s, face_id)``.

    ``mean_prob_*``: mean calibrated probability over the segment's rows;
    ``mean_confidence``: mean of the frames' ``confidence`` (max probability) over them;
    ``n_frames``: the segment's face rows.
    """
    _check_result(result)
    names = result.class_names
    recs: list[tuple[float, int, int, float, float, int, np.ndarray, float, int]] = []
    for fid, segs in result.segments.items():
        rows = np.flatnonzero(result.face_id == fid)  # that face's rows, in time order
        segment_index_per_row(segs, len(rows))  # refuses segments that do not tile the rows
        for j, s in enumerate(segs):
            p = result.probs[rows[s.first_row : s.end_row]].astype(np.float64)  # (k, C)
            recs.append(
                (s.start_s, fid, j, s.end_s, s.duration_s, s.label, p.mean(axis=0),
                 float(p.max(axis=1).mean()), len(p))
            )  # fmt: skip
    recs.sort(key=lambda r: (r[0], r[1], r[2]))
    m = len(recs)
    means = np.array([r[6] for r in recs], np.float32).reshape(m, len(names))
    cols: dict[str, Any] = _identity_columns(ident, m)
    cols |= {
        "face_id": np.array([r[1] for r in recs], np.int32),
        "segment_index": np.array([r[2] for r in recs], np.int32),
        "start_s": np.array([r[0] for r in recs], np.float64),
        "end_s": np.array([r[3] for r in recs], np.float64),
        "duration_s": np.array([r[4] for r in recs], np.float64),
        "emotion": [names[r[5]] for r in recs],
        "mean_confidence": np.array([r[7] for r in recs], np.float32),
        "n_frames": np.array([r[8] for r in recs], np.int32),
    }
    for j, c in enumerate(names):
        cols[mean_prob_col(c)] = np.ascontiguousarray(means[:, j])
    return _build(segments_schema(names), cols, name="segments")


def video_row_table(
    result: VideoResult,
    ident: Identity,
    *,
    settings_hash: str,
    model_sha256: str | None,
    fervid_version: str,
    processing_s: float | None = None,
    processed_at: datetime | None = None,
) -> pa.Table:
    """The one-row videos table of an analysed video: status ``ok``, or
    ``ok_with_warnings`` when the decoder reported damage (``warnings``, with the count of
    decode errors in ``decode_errors``).

    ``share_<class>``: fraction of face rows whose ``smoothed_label`` is that class (null
    when the video has no face rows). ``processing_s``: when not given, the
    ``VideoFaces.seconds["extract"]`` (decode + detect + crop) plus every entry of
    ``VideoResult.seconds``; null when neither holds timings.
    """
    _check_result(result)
    faces, names = result.faces, result.class_names
    info, n = faces.info, faces.n_faces
    k = len(faces.sampled_frame_index)
    with_face = len(np.unique(faces.frame_index))
    if processing_s is None and ("extract" in faces.seconds or result.seconds):
        processing_s = float(faces.seconds.get("extract", 0.0) + sum(result.seconds.values()))
    shares: dict[str, float | None] = {c: None for c in names}
    if n:
        counts = np.bincount(result.smoothed.argmax(axis=1), minlength=len(names))
        shares = {c: float(counts[j] / n) for j, c in enumerate(names)}
    return _video_row(
        ident,
        names,
        status=STATUS_OK_WITH_WARNINGS if faces.warnings else STATUS_OK,
        warnings="; ".join(faces.warnings) or None,
        decode_errors=decode_error_count(faces.warnings),
        size_bytes=faces.video.size_bytes,
        info=info,
        frames_sampled=k,
        sample_interval_s=faces.sample_interval_s,
        frames_with_face=with_face,
        face_frame_share=with_face / k if k else None,
        n_faces=len(np.unique(result.face_id)),
        n_face_rows=n,
        shares=shares,
        processing_s=processing_s,
        fervid_version=fervid_version,
        model_sha256=model_sha256,
        settings_hash=settings_hash,
        processed_at=processed_at,
    )


def failed_video_table(
    ident: Identity,
    *,
    status: str = STATUS_FAILED,
    error: str,
    settings_hash: str,
    model_sha256: str | None,
    fervid_version: str,
    class_names: tuple[str, ...],
    size_bytes: int | None = None,
    info: VideoInfo | None = None,
    processing_s: float | None = None,
    processed_at: datetime | None = None,
    duplicate_of: str | None = None,
) -> pa.Table:
    """The one-row videos table of a video that has no result: ``failed`` (decode error,
    worker crash...) or ``skipped`` (e.g. same content as another input, whose path is
    ``duplicate_of``). Facts not known are null; ``error`` says why in one line."""
    if status not in (STATUS_FAILED, STATUS_SKIPPED):
        raise ValueError(
            f"status={status!r}; expected {STATUS_FAILED.value!r} or {STATUS_SKIPPED.value!r}"
        )
    if not error.strip():
        raise ValueError("error is empty; a failed or skipped video needs a one-line reason")
    return _video_row(
        ident,
        class_names,
        status=status,
        error=error.strip().splitlines()[0],
        size_bytes=size_bytes,
        info=info,
        shares={c: None for c in class_names},
        processing_s=processing_s,
        fervid_version=fervid_version,
        model_sha256=model_sha256,
        settings_hash=settings_hash,
        processed_at=processed_at,
        duplicate_of=duplicate_of,
    )


def _video_row(
    ident: Identity,
    class_names: tuple[str, ...],
    *,
    status: str,
    shares: Mapping[str, float | None],
    fervid_version: str,
    model_sha256: str | None,
    settings_hash: str,
    error: str | None = None,
    warnings: str | None = None,
    decode_errors: int | None = None,
    size_bytes: int | None = None,
    info: VideoInfo | None = None,
    frames_sampled: int | None = None,
    sample_interval_s: float | None = None,
    frames_with_face: int | None = None,
    face_frame_share: float | None = None,
    n_faces: int | None = None,
    n_face_rows: int | None = None,
    processing_s: float | None = None,
    processed_at: datetime | None = None,
    duplicate_of: str | None = None,
) -> pa.Table:
    if status not in _STATUSES:
        raise ValueError(f"status={status!r}; expected one of {[s.value for s in _STATUSES]}")
    when = processed_at if processed_at is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError(f"processed_at={when!r} has no time zone; pass an aware datetime (UTC)")
    when = when.astimezone(UTC).replace(microsecond=0)
    cols: dict[str, Any] = _identity_columns(ident, 1)
    cols |= {
        "id_pattern_matched": [ident.id_pattern_matched],
        "status": [VideoStatus(status).value],
        "error": [error],
        "last_error": [None],
        "duplicate_of": [duplicate_of],
        "warnings": [warnings],
        "decode_errors": [decode_errors],
        "size_bytes": [size_bytes],
        "duration_s": [info.duration_s if info else None],
        "fps": [info.fps if info else None],
        "width": [info.width if info else None],
        "height": [info.height if info else None],
        "rotation": [info.rotation if info else None],
        "backend": [info.backend if info else None],
        "frames_sampled": [frames_sampled],
        "sample_interval_s": [sample_interval_s],
        "frames_with_face": [frames_with_face],
        "face_frame_share": [face_frame_share],
        "n_faces": [n_faces],
        "n_face_rows": [n_face_rows],
        "processing_s": [processing_s],
        "fervid_version": [fervid_version],
        "model_sha256": [model_sha256],
        "settings_hash": [settings_hash],
        "processed_at": [when],
    }
    for c in class_names:
        cols[share_col(c)] = [shares[c]]
    return _build(videos_schema(class_names), cols, name="videos")
