"""Hand-built fervid tables for the summary / trends / report / nightly tests.

Rows are built against fervid.output.schema so they stay valid when the schema grows; every
value a test asserts on is chosen here by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fervid.model.modelfile import EMOTIONS
from fervid.output.schema import (
    FRAMES,
    SEGMENTS,
    VIDEOS,
    mean_prob_col,
    prob_col,
    schema_for,
    share_col,
    smooth_col,
)

PROCESSED_AT = dt.datetime(2024, 6, 1, 3, 0, tzinfo=dt.UTC)


def _identity(video_id: str, subject: str | None, session_date: dt.date | None) -> dict:
    name = f"{session_date or 'undated'}_{video_id}.mp4"
    return {
        "video_id": video_id,
        "path": f"{subject or 'nobody'}/{name}",
        "file_name": name,
        "subject": subject,
        "session": None,
        "session_date": session_date,
        "path_fields": None,
    }


def video_row(
    video_id: str,
    *,
    subject: str | None = "P001",
    session_date: dt.date | None = dt.date(2024, 1, 1),
    status: str = "ok",
    duration_s: float | None = 10.0,
    frames_sampled: int | None = 20,
    processed_at: dt.datetime = PROCESSED_AT,
) -> dict:
    return {
        **_identity(video_id, subject, session_date),
        "status": status,
        "error": None if status == "ok" else "DecodeError: broken file",
        "duration_s": duration_s,
        "frames_sampled": frames_sampled,
        "fervid_version": "0.1.0",
        "settings_hash": "0123456789abcdef",
        "processed_at": processed_at,
        **{share_col(c): None for c in EMOTIONS},
    }


def probs_of(label_or_probs: str | Mapping[str, float]) -> dict[str, float]:
    """A full probability vector: one-hot for a label, else the mapping (missing -> 0)."""
    if isinstance(label_or_probs, str):
        return {c: float(c == label_or_probs) for c in EMOTIONS}
    return {c: float(label_or_probs.get(c, 0.0)) for c in EMOTIONS}


def frame_rows(
    video_id: str,
    face_id: int,
    timestamps: Iterable[float],
    states: Iterable[str | Mapping[str, float]],
    *,
    subject: str | None = "P001",
    session_date: dt.date | None = dt.date(2024, 1, 1),
    det_score: float = 0.9,
) -> list[dict]:
    """One frames row per timestamp; ``states``: a label (one-hot) or a probability dict."""
    rows = []
    for i, (t, state) in enumerate(zip(timestamps, states, strict=True)):
        p = probs_of(state)
        label = max(EMOTIONS, key=lambda c: p[c])
        rows.append(
            {
                **_identity(video_id, subject, session_date),
                "frame_index": round(t * 30),
                "timestamp_s": float(t),
                "face_found": True,  # ignored where the frames schema has no such column
                "face_id": face_id,
                **dict(x1=10.0, y1=10.0, x2=110.0, y2=110.0),
                **dict(x1_norm=0.1, y1_norm=0.1, x2_norm=0.5, y2_norm=0.5),
                "det_score": det_score,
                **{prob_col(c): p[c] for c in EMOTIONS},
                "label": label,
                "confidence": p[label],
                **{smooth_col(c): p[c] for c in EMOTIONS},
                "smoothed_label": label,
                "segment_index": i,
            }
        )
    return rows


def segment_rows(
    video_id: str,
    face_id: int,
    spans: Iterable[tuple[float, float, str]],
    *,
    subject: str | None = "P001",
    session_date: dt.date | None = dt.date(2024, 1, 1),
) -> list[dict]:
    rows = []
    for i, (start, end, emotion) in enumerate(spans):
        rows.append(
            {
                **_identity(video_id, subject, session_date),
                "face_id": face_id,
                "segment_index": i,
                "start_s": start,
                "end_s": end,
                "duration_s": end - start,
                "emotion": emotion,
                **{mean_prob_col(c): float(c == emotion) for c in EMOTIONS},
                "mean_confidence": 1.0,
                "n_frames": 2,
            }
        )
    return rows


def tables(
    frames: list[dict], segments: list[dict], videos: list[dict]
) -> tuple[pa.Table, pa.Table, pa.Table]:
    return (
        pa.Table.from_pylist(frames, schema=schema_for(FRAMES)),
        pa.Table.from_pylist(segments, schema=schema_for(SEGMENTS)),
        pa.Table.from_pylist(videos, schema=schema_for(VIDEOS)),
    )


def write_dataset(out: Path, frames: list[dict], segments: list[dict], videos: list[dict]) -> Path:
    """The ``--out dir/`` layout: ``dir/{frames,segments,videos}/<video_id>.parquet``."""
    for name, rows in ((FRAMES, frames), (SEGMENTS, segments), (VIDEOS, videos)):
        (out / name).mkdir(parents=True, exist_ok=True)
        for v in videos:
            mine = [r for r in rows if r["video_id"] == v["video_id"]]
            pq.write_table(
                pa.Table.from_pylist(mine, schema=schema_for(name)),
                out / name / f"{v['video_id']}.parquet",
            )
    return out


def session(
    video_id: str,
    subject: str | None,
    day: dt.date | None,
    labels: list[str],
    *,
    interval: float = 0.5,
) -> tuple[list[dict], list[dict], list[dict]]:
    """A one-face session: one sampled frame per label, ``interval`` seconds apart; each
    run of equal labels is one segment."""
    ts = [i * interval for i in range(len(labels))]
    frames = frame_rows(video_id, 0, ts, labels, subject=subject, session_date=day)
    spans, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            spans.append((ts[start], ts[i - 1] + interval, labels[start]))
            start = i
    segs = segment_rows(video_id, 0, spans, subject=subject, session_date=day)
    video = video_row(
        video_id, subject=subject, session_date=day,
        duration_s=len(labels) * interval, frames_sampled=len(labels),
    )  # fmt: skip
    return frames, segs, [video]
