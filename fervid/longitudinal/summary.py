"""Per-session summaries: one row per (video, face) with affect indices and data quality.

A *session* is one recording (one row of the videos table). For every face track in it
this module computes, from the smoothed per-frame probabilities:

- ``share_<c>``: share of the face-present time whose smoothed label is ``c``;
- ``mean_smooth_<c>``: time-weighted mean smoothed probability of ``c``;
- ``n_segments_<c>`` / ``mean_segment_s_<c>``: emotion segments (from the segments table);
- ``dominant_emotion``; ``positive_share`` / ``negative_share`` (label time shares);
  ``positive_affect`` / ``negative_affect`` / ``valence`` (from probabilities);
- ``valence_sd`` and ``expressivity``: how much affect varies within the session;
- data quality: ``n_face_frames``, ``face_present_s``, ``face_present_ratio``,
  ``mean_det_score``, ``frames_sampled``, ``sample_interval_s``.

A recording without a subject (no ``--id-pattern``, or a path it did not match) keeps
``subject`` null: it is *unassigned* and never enters a subject's trend
(:func:`unassigned_recordings` lists them). When the videos table holds several rows of
one ``video_id`` (a duplicate recording's ``skipped`` row beside the analysed one), the
``ok`` row wins over ``failed`` over ``skipped``, then the latest ``processed_at``.

Every formula, its range and its caveats are in ``docs/indices.md``. One row per video is
flagged ``is_patient``: the face present longest (ties -> lower ``face_id``) unless a
per-video override names another face. A video with no face, or one that failed, still
gets exactly one row (``face_id`` null, ``is_patient`` true) so that filtering
``is_patient`` always yields one row per session.

Time weighting: each face row stands for the time until the same face's next sample,
capped at the video's sampling interval ``dt`` (the videos table's ``sample_interval_s``,
computed once at extraction; ``duration_s / frames_sampled`` for older outputs); the
last row of a track stands for ``dt``. Frames in which the face was not detected count as
absent, never as the previous emotion.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fervid.errors import ConfigError, DataError, InputError
from fervid.longitudinal.missing import plain
from fervid.longitudinal.patient import (
    DEFAULT_PATIENT,
    RULE_NAMES,
    PatientFace,
    PatientSettings,
    Piece,
    Track,
    choose,
    is_spurious,
    join_pieces,
)
from fervid.model.classes import EMOTIONS
from fervid.output.atomic import atomic_path
from fervid.output.schema import (
    ANALYSED_STATUSES,
    FRAMES,
    SEGMENTS,
    STATUS_FAILED,
    STATUS_SKIPPED,
    VIDEOS,
    share_col,
    smooth_col,
)
from fervid.output.store import Layout, layout_of, read_results

# --------------------------------------------------------------------------- indices
#: Classes counted as positive / negative affect. Classes a model lacks are ignored.
POSITIVE_EMOTIONS: tuple[str, ...] = ("happy",)
NEGATIVE_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "sad")
#: Surprise can be pleasant or not: it counts as positive only through ``surprise_weight``.
AMBIGUOUS_EMOTION = "surprise"

#: Sampling interval assumed when a video row gives neither duration nor frame count and
#: the face rows have a single timestamp (the default ``--fps 2``).
FALLBACK_INTERVAL_S = 0.5

# How the patient row of a session was chosen (column ``patient_rule``).
RULE_LONGEST, RULE_OVERRIDE = "longest_present", "override"
RULE_NO_FACE, RULE_NOT_ANALYSED = "no_face", "not_analysed"

#: Parquet key-value metadata: the index settings a sessions table was computed with.
META_INDEX_SETTINGS = b"fervid.index_settings"
#: Parquet key-value metadata: hash of everything a sessions table was computed from (index
#: settings, patient override, every videos row's id, status, settings and processed_at).
META_SESSIONS_KEY = b"fervid.sessions_key"
#: Parquet key-value metadata: the patient-face settings a sessions table was computed with.
META_PATIENT_SETTINGS = b"fervid.patient_settings"
#: Part of the sessions key: bump it when the summary code changes what it computes.
SUMMARY_VERSION = "4"

#: Which of a video's several videos rows is the truth: analysed beats failed beats skipped
#: (a duplicate's skipped row must never hide the analysed copy), then the latest.
_STATUS_RANK = {**{str(s): 2 for s in ANALYSED_STATUSES}, STATUS_FAILED: 1, STATUS_SKIPPED: 0}

#: Statuses whose frames and segments are a result (``ok``, ``ok_with_warnings``).
_ANALYSED = frozenset(str(s) for s in ANALYSED_STATUSES)

#: Dictionary-encoded (categorical) string columns: few distinct values, many rows.
_LABELS = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True, kw_only=True)
class IndexSettings:
    """Tunables of the session indices.

    ``surprise_weight`` in [0, 1]: the fraction of surprise counted as positive affect.
    0 (default) leaves surprise out of valence; raising it makes sessions with startled
    or amazed faces look more positive, which is right for pleasant surprise only.
    """

    surprise_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.surprise_weight <= 1.0:
            raise ConfigError(
                f"surprise_weight={self.surprise_weight}; expected a value in [0, 1] "
                "(0 leaves surprise out of valence, 1 counts it as fully positive)"
            )


# --------------------------------------------------------------------------- schema
def mean_smooth_col(c: str) -> str:
    return f"mean_smooth_{c}"


def n_segments_col(c: str) -> str:
    return f"n_segments_{c}"


def mean_segment_col(c: str) -> str:
    return f"mean_segment_s_{c}"


#: Session-level columns that do not depend on the class names.
SESSION_COLUMNS = frozenset(
    {
        "video_id", "path", "file_name", "subject", "session", "session_date",
        "id_pattern_matched", "status",
        "face_id", "is_patient", "patient_rule", "patient_ambiguous", "spurious",
        "track_pieces", "track_face_ids", "n_faces",
        "face_size_norm", "face_x_norm", "face_y_norm", "video_duration_s",
        "frames_sampled", "sample_interval_s", "n_face_frames", "face_present_s",
        "face_present_ratio", "mean_det_score", "n_segments", "dominant_emotion",
        "positive_share", "negative_share", "positive_affect", "negative_affect", "valence",
        "valence_sd", "expressivity", "settings_hash", "processed_at",
    }
)  # fmt: skip

#: The indices (all in probability / fraction units) that trends follow by default.
INDEX_COLUMNS = ("valence", "expressivity", "valence_sd", "positive_affect", "negative_affect")


def sessions_schema(class_names: tuple[str, ...] = EMOTIONS) -> pa.Schema:
    """One row per face track per video (plus one placeholder row for a faceless video)."""
    f64 = pa.float64()
    return pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("path", pa.string()),
            pa.field("file_name", pa.string()),
            pa.field("subject", pa.string()),
            pa.field("session", pa.string()),
            pa.field("session_date", pa.date32()),
            pa.field("id_pattern_matched", pa.bool_()),  # null: no --id-pattern (or older data)
            pa.field("status", _LABELS, nullable=False),  # the video's: ok | failed | skipped
            pa.field("face_id", pa.int32()),  # null: no face in the video / not analysed
            pa.field("is_patient", pa.bool_(), nullable=False),  # exactly one per video
            pa.field("patient_rule", _LABELS),  # on the patient row: how it was chosen
            # every row of a video: the rule could not tell the patient clearly
            pa.field("patient_ambiguous", pa.bool_()),
            pa.field("spurious", pa.bool_()),  # a phantom track: never the patient
            # pieces of one person's broken track joined into this row (1: unbroken) ...
            pa.field("track_pieces", pa.int32()),
            # ... and their face_ids in the frames table, in time order (face_id first)
            pa.field("track_face_ids", pa.list_(pa.int32())),
            pa.field("n_faces", pa.int32()),  # face tracks in the video, phantoms left out
            pa.field("face_size_norm", f64),  # median box height / frame height
            pa.field("face_x_norm", f64),  # median box centre / frame width
            pa.field("face_y_norm", f64),  # median box centre / frame height
            pa.field("video_duration_s", f64),
            pa.field("frames_sampled", pa.int64()),
            pa.field("sample_interval_s", f64),  # dt: the weight of one sampled frame
            pa.field("n_face_frames", pa.int64()),  # sampled frames with this face
            pa.field("face_present_s", f64),  # sum of row weights (seconds)
            pa.field("face_present_ratio", f64),  # n_face_frames / frames_sampled
            pa.field("mean_det_score", f64),
            *[pa.field(share_col(c), f64) for c in class_names],
            *[pa.field(mean_smooth_col(c), f64) for c in class_names],
            pa.field("n_segments", pa.int32()),
            *[pa.field(n_segments_col(c), pa.int32()) for c in class_names],
            *[pa.field(mean_segment_col(c), f64) for c in class_names],
            pa.field("dominant_emotion", _LABELS),
            pa.field("positive_share", f64),
            pa.field("negative_share", f64),
            pa.field("positive_affect", f64),
            pa.field("negative_affect", f64),
            pa.field("valence", f64),  # positive_affect - negative_affect, in [-1, 1]
            pa.field("valence_sd", f64),  # time-weighted SD of per-frame valence, [0, 1]
            pa.field("expressivity", f64),  # mean TV distance to the session mean, [0, 1 - 1/C]
            pa.field("settings_hash", pa.string()),
            pa.field("processed_at", pa.timestamp("s", tz="UTC")),
        ]
    )


def class_names_of(table: pa.Table | pd.DataFrame, prefix: str) -> tuple[str, ...]:
    """Class names from the ``<prefix><class>`` columns, in column order."""
    cols = table.schema.names if isinstance(table, pa.Table) else [str(c) for c in table.columns]
    return tuple(c[len(prefix) :] for c in cols if c.startswith(prefix))


# --------------------------------------------------------------------------- where
def derived_path(out: Path, name: str) -> Path:
    """Where a file derived from a fervid output goes: *beside* it, never inside a
    dataset folder (a glob or ``pd.read_parquet`` over the folder must read only
    fervid's own tables). ``results.parquet`` -> ``results.<name>``; ``ds/`` ->
    ``ds.<name>``. ``name``: e.g. ``sessions.parquet``, ``trends.parquet``, ``report``."""
    out = Path(out)
    stem = out.stem if layout_of(out) is Layout.FILE else out.name
    return out.with_name(f"{stem}.{name}")


def sessions_path(out: Path) -> Path:
    """``ds.sessions.parquet`` beside ``ds/``; ``results.sessions.parquet`` beside
    ``results.parquet``."""
    return derived_path(out, "sessions.parquet")


def trends_path(out: Path) -> Path:
    """``ds.trends.parquet`` beside ``ds/`` (``results.trends.parquet``)."""
    return derived_path(out, "trends.parquet")


def report_path(out: Path) -> Path:
    """``ds.report/`` beside ``ds/`` (``results.report/``)."""
    return derived_path(out, "report")


#: Where earlier fervid versions wrote derived files: inside a dataset folder.
_OLD_INSIDE = ("sessions.parquet", "trends.parquet", "report")


def stale_derived_files(out: Path) -> list[Path]:
    """Derived files an older fervid left *inside* a dataset folder: no longer read or
    updated, and a reader of the whole folder would mix them with fervid's tables."""
    out = Path(out)
    if layout_of(out) is not Layout.DATASET:
        return []
    return [out / n for n in _OLD_INSIDE if (out / n).exists()]


def latest_video_rows(videos: pd.DataFrame) -> pd.DataFrame:
    """One row per ``video_id``: ``ok`` over ``failed`` over ``skipped``, then the latest
    ``processed_at``, so that a duplicate's skipped row never hides the analysed copy."""
    rank = videos["status"].astype(str).map(_STATUS_RANK).fillna(-1)
    order = videos.assign(_rank=rank).sort_values(
        ["_rank", "processed_at"], kind="stable", na_position="first"
    )
    return order.drop_duplicates("video_id", keep="last").drop(columns="_rank")


# --------------------------------------------------------------------------- subjects
def unassigned_recordings(sessions: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """Patient rows without a subject, with ``path``, ``status``, ``id_pattern_matched``
    and a one-line ``reason``; they are listed, never followed as a trend."""
    df = sessions.to_pandas() if isinstance(sessions, pa.Table) else sessions
    rows = df.loc[df["is_patient"].astype(bool) & df["subject"].isna()].copy()
    matched = rows.get("id_pattern_matched", pd.Series([None] * len(rows), index=rows.index))
    rows["reason"] = [
        "path does not match --id-pattern" if m is False or m is np.False_
        else "pattern gives no {subject}" if m is True or m is np.True_
        else "processed without --id-pattern"
        for m in matched.astype(object)
    ]  # fmt: skip
    return rows.sort_values("path").reset_index(drop=True)


def id_pattern_warnings(sessions: pa.Table | pd.DataFrame, *, limit: int = 20) -> list[str]:
    """Lines that warn about recordings without a subject (empty when every recording
    has one): the count per reason, then up to ``limit`` paths."""
    un = unassigned_recordings(sessions)
    if un.empty:
        return []
    n_all = int((sessions["is_patient"] if isinstance(sessions, pd.DataFrame)
                 else sessions.column("is_patient").to_pandas()).astype(bool).sum())  # fmt: skip
    lines = [
        f"{len(un)} of {n_all} recording(s) have no subject and are listed as unassigned "
        "(they form no trend): "
        + "; ".join(f"{n} {r}" for r, n in un["reason"].value_counts().sort_index().items())
        + "; give them a subject with --id-pattern (e.g. '{subject}/{session_date}_{name}.mp4') "
        "and process again"
    ]
    lines += [f"  {p}" for p in un["path"].head(limit)]
    if len(un) > limit:
        lines.append(f"  … and {len(un) - limit} more")
    return lines


def ambiguous_recordings(sessions: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """Patient rows whose face the rule could not tell clearly, by path."""
    df = sessions.to_pandas() if isinstance(sessions, pa.Table) else sessions
    if "patient_ambiguous" not in df.columns:  # an older sessions table
        return df.iloc[0:0]
    flagged = df["patient_ambiguous"].map(lambda x: x is True or x is np.True_)
    return df.loc[df["is_patient"].astype(bool) & flagged].sort_values("path")


def patient_warnings(sessions: pa.Table | pd.DataFrame, *, limit: int = 20) -> list[str]:
    """Lines that warn about recordings whose patient face the rule could not tell
    clearly (``patient_ambiguous``); empty when there are none."""
    rows = ambiguous_recordings(sessions)
    if rows.empty:
        return []
    rules = ", ".join(sorted({str(r) for r in rows["patient_rule"].dropna()}))
    lines = [
        f"{len(rows)} recording(s) have an ambiguous patient face (rule {rules}: another "
        "face is about as present, as large or as placed; column patient_ambiguous): choose "
        "a rule that fits the layout with --patient-face (largest: speaker view with a "
        "self-view inset; left/right: gallery tiles), or name the face with --patient"
    ]
    lines += [f"  {p}" for p in rows["path"].head(limit)]
    if len(rows) > limit:
        lines.append(f"  … and {len(rows) - limit} more")
    return lines


# --------------------------------------------------------------------------- override
def load_patient_override(source: Mapping[str, int] | Path | str | None) -> dict[str, int]:
    """The patient face per video: a mapping, or a JSON / CSV file.

    JSON: ``{"<video_id>": <face_id>, ...}`` or ``[{"video_id": ..., "face_id": ...}]``.
    CSV: a header with ``video_id`` and ``face_id`` columns.
    """
    if source is None:
        return {}
    items: list[tuple[Any, Any]]  # (video_id, face_id) as given: checked below
    if isinstance(source, Mapping):
        items = list(source.items())
        where = "patient_override"
    else:
        path = Path(source)
        where = f"patient override file {path}"
        if not path.is_file():
            raise InputError(f"{where} does not exist; give a JSON or CSV file")
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                items = list(data.items())
            elif isinstance(data, list):
                items = [(d.get("video_id"), d.get("face_id")) for d in data]
            else:
                raise ConfigError(
                    f"{where}: expected a JSON object or list, got {type(data).__name__}"
                )
        elif path.suffix.lower() == ".csv":
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or not {"video_id", "face_id"} <= set(reader.fieldnames):
                    raise ConfigError(
                        f"{where}: header {reader.fieldnames}; expected columns video_id,face_id"
                    )
                items = [(r["video_id"], r["face_id"]) for r in reader]
        else:
            raise ConfigError(f"{where}: suffix {path.suffix!r}; expected .json or .csv")
    out: dict[str, int] = {}
    for vid, fid in items:
        try:
            face = int(fid)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: face_id={fid!r} for video {vid!r}; expected an integer face_id"
            ) from None
        if not isinstance(vid, str) or not vid:
            raise ConfigError(f"{where}: video_id={vid!r}; expected a non-empty string")
        out[vid] = face
    return out


# --------------------------------------------------------------------------- summarize
_FRAME_COLS = ["video_id", "face_id", "timestamp_s", "det_score", "smoothed_label"]
#: Normalised boxes, for the size and position rules (null in outputs that lack them).
_BOX_COLS = ["x1_norm", "y1_norm", "x2_norm", "y2_norm"]
_SEGMENT_COLS = ["video_id", "face_id", "emotion", "duration_s"]


def _column(t: pa.Table | pd.DataFrame, name: str) -> list[Any]:
    """A column as a list, all None when the table lacks it."""
    names = t.schema.names if isinstance(t, pa.Table) else list(t.columns)
    if name not in names:
        return [None] * len(t)
    return t.column(name).to_pylist() if isinstance(t, pa.Table) else t[name].tolist()


def _df(t: pa.Table | pd.DataFrame, cols: list[str], what: str) -> pd.DataFrame:
    names = t.schema.names if isinstance(t, pa.Table) else list(t.columns)
    missing = [c for c in cols if c not in names]
    if missing:
        raise DataError(f"{what} table lacks columns {missing}; expected a fervid {what} table")
    if isinstance(t, pa.Table):
        return t.select(cols).to_pandas()
    return t.loc[:, cols].reset_index(drop=True)


def summarize_sessions(
    frames: pa.Table | pd.DataFrame,
    segments: pa.Table | pd.DataFrame,
    videos: pa.Table | pd.DataFrame,
    patient_override: Mapping[str, int] | Path | str | None = None,
    *,
    settings: IndexSettings = IndexSettings(),
    patient: PatientSettings = DEFAULT_PATIENT,
    class_names: tuple[str, ...] | None = None,
) -> pa.Table:
    """Summarize every session (row of ``videos``) per face; see the module docstring.

    ``frames``/``segments``/``videos``: fervid's tables (Arrow or pandas), any number of
    videos. Frames of videos missing from ``videos`` are ignored (the videos table is the
    list of sessions). ``patient_override``: video_id -> face_id, or a JSON/CSV file
    (:func:`load_patient_override`); an entry naming a face absent from its video is a
    :class:`ConfigError`. ``class_names``: default, the frames table's ``smooth_*``
    columns. Returns a table with :func:`sessions_schema`, ordered by video then face.
    """
    classes = class_names or class_names_of(frames, "smooth_") or EMOTIONS
    override = load_patient_override(patient_override)
    if patient.rule is PatientFace.OVERRIDE and not override:
        raise ConfigError(
            "--patient-face override needs --patient FILE (JSON or CSV: video_id -> face_id)"
        )
    schema = sessions_schema(classes)

    v = _df(videos, ["video_id", "path", "file_name", "subject", "session", "session_date",
                     "status", "duration_s", "frames_sampled", "settings_hash",
                     "processed_at"], "videos")  # fmt: skip
    v["id_pattern_matched"] = _column(videos, "id_pattern_matched")  # absent in older outputs
    v["sample_interval_s"] = _column(videos, "sample_interval_s")  # absent in older outputs
    v = latest_video_rows(v).sort_values("video_id", kind="stable")

    f = _df(frames, [*_FRAME_COLS, *[smooth_col(c) for c in classes]], "frames")
    for c in _BOX_COLS:
        f[c] = pd.to_numeric(pd.Series(_column(frames, c), index=f.index), errors="coerce")
    f = f.loc[f["face_id"].notna()]  # rows of sampled frames without a face, if kept
    f = f.sort_values(["video_id", "face_id", "timestamp_s"], kind="stable").reset_index(drop=True)
    ts = f["timestamp_s"].to_numpy(np.float64)
    det = f["det_score"].to_numpy(np.float64)
    probs = f[[smooth_col(c) for c in classes]].to_numpy(np.float64)  # (n, C)
    box = f[_BOX_COLS].to_numpy(np.float64)  # (n, 4) normalised xyxy, NaN: absent
    codes = pd.Categorical(f["smoothed_label"], categories=list(classes)).codes  # -1: unknown
    by_video: dict[str, dict[int, np.ndarray]] = {}
    for (vid, fid), idx in f.groupby(["video_id", "face_id"], sort=False).indices.items():
        by_video.setdefault(str(vid), {})[int(fid)] = np.asarray(idx)

    s = _df(segments, _SEGMENT_COLS, "segments")
    seg_stats = s.groupby(["video_id", "face_id", "emotion"]).agg(
        n=("duration_s", "size"), mean_s=("duration_s", "mean")
    )
    seg_lookup: dict[tuple[str, int], dict[str, tuple[int, float]]] = {}
    for (vid, fid, emo), r in seg_stats.iterrows():
        seg_lookup.setdefault((str(vid), int(fid)), {})[str(emo)] = (
            int(r["n"]),
            float(r["mean_s"]),
        )

    rows: list[dict[str, Any]] = []
    for video in v.to_dict("records"):
        vid = str(video["video_id"])
        base = {
            "video_id": vid, "path": video["path"], "file_name": video["file_name"],
            "subject": _none(video["subject"]), "session": _none(video["session"]),
            "session_date": _none(video["session_date"]), "status": str(video["status"]),
            "id_pattern_matched": _bool(video["id_pattern_matched"]),
            "settings_hash": _none(video["settings_hash"]),
            "processed_at": _none(video["processed_at"]),
            "video_duration_s": _float(video["duration_s"]),
            "frames_sampled": _int(video["frames_sampled"]),
        }  # fmt: skip
        if video["status"] not in _ANALYSED:  # failed or skipped: nothing to summarize
            rows.append({**base, "is_patient": True, "patient_rule": RULE_NOT_ANALYSED})
            continue
        faces = by_video.get(vid, {})
        dt = _sample_interval(
            _float(video["sample_interval_s"]), base["video_duration_s"], base["frames_sampled"],
            faces, ts,
        )  # fmt: skip
        base["sample_interval_s"] = dt
        base["n_faces"] = len(faces)
        if not faces:
            if vid in override:
                _bad_override(vid, override[vid], [])
            rows.append(
                {
                    **base,
                    "is_patient": True,
                    "patient_rule": RULE_NO_FACE,
                    "n_face_frames": 0,
                    "face_present_s": 0.0,
                    "n_segments": 0,
                    "face_present_ratio": 0.0 if base["frames_sampled"] else None,
                    **{n_segments_col(c): 0 for c in classes},
                }
            )
            continue

        def stats_of(r: np.ndarray, dt: float = dt) -> dict[str, Any]:
            return {
                **_face_stats(ts[r], det[r], probs[r], codes[r], dt, classes, settings),
                **_face_place(box[r]),
            }

        pieces = {fid: stats_of(r) for fid, r in sorted(faces.items())}
        spurious = {f for f, st in pieces.items() if is_spurious(_track(f, st), patient)}
        people = _people(faces, pieces, spurious, ts, patient.join_tracks)  # head -> pieces
        stats = {
            head: pieces[head] if len(ids) == 1
            else stats_of(np.sort(np.concatenate([faces[i] for i in ids])))  # by time
            for head, ids in people.items()
        }  # fmt: skip
        tracks = [_track(fid, st) for fid, st in stats.items()]
        head_of = {i: head for head, ids in people.items() for i in ids}
        base["n_faces"] = len(people) - len(spurious)
        ambiguous: bool | None = None
        chosen: int | None
        if vid in override:
            chosen, rule = override[vid], RULE_OVERRIDE
            if chosen not in head_of:
                _bad_override(vid, chosen, sorted(faces))
            chosen = head_of[chosen]
        else:
            picked = choose(tracks, patient)
            chosen, ambiguous = picked if picked is not None else (None, None)
            rule = RULE_NAMES[patient.rule]
        base["patient_ambiguous"] = ambiguous
        # only phantoms, or the region rule's tile empty: a faceless session, the rows kept
        if chosen is None:
            rows.append({**base, "is_patient": True, "patient_rule": RULE_NO_FACE,
                         "n_face_frames": 0, "face_present_s": 0.0, "n_segments": 0,
                         "face_present_ratio": 0.0 if base["frames_sampled"] else None,
                         **{n_segments_col(c): 0 for c in classes}})  # fmt: skip
        for fid, st in stats.items():
            ratio = st["n_face_frames"] / base["frames_sampled"] if base["frames_sampled"] else (
                st["face_present_s"] / base["video_duration_s"]
                if base["video_duration_s"] else None
            )  # fmt: skip
            seg = _segments_of(seg_lookup, vid, people[fid])
            rows.append(
                {
                    **base,
                    **st,
                    "face_id": fid,
                    "is_patient": fid == chosen,
                    "patient_rule": rule if fid == chosen else None,
                    "spurious": fid in spurious,
                    "track_pieces": len(people[fid]),
                    "track_face_ids": people[fid],
                    "face_present_ratio": None if ratio is None else min(1.0, ratio),
                    "n_segments": sum(n for n, _ in seg.values()),
                    **{n_segments_col(c): seg.get(c, (0, 0.0))[0] for c in classes},
                    **{mean_segment_col(c): seg[c][1] if c in seg else None for c in classes},
                }
            )
    table = pa.Table.from_pylist(rows, schema=schema)
    meta = {
        META_INDEX_SETTINGS: json.dumps({"surprise_weight": settings.surprise_weight}),
        META_PATIENT_SETTINGS: json.dumps(patient.to_json()),
    }
    return table.replace_schema_metadata(meta)


def _people(
    faces: Mapping[int, np.ndarray],
    pieces: Mapping[int, Mapping[str, Any]],
    spurious: set[int],
    ts: np.ndarray,
    join: bool,
) -> dict[int, list[int]]:
    """face_id of each person's first piece -> the face_ids of its pieces (time order).
    Phantoms are never joined; with ``join`` False every track is a person."""
    real = [f for f in faces if f not in spurious]
    if join:
        groups = join_pieces([
            Piece(face_id=f, first_s=float(ts[faces[f]].min()), last_s=float(ts[faces[f]].max()),
                  size=pieces[f]["face_size_norm"], x=pieces[f]["face_x_norm"],
                  y=pieces[f]["face_y_norm"])
            for f in real
        ])  # fmt: skip
    else:
        groups = [[f] for f in real]
    groups += [[f] for f in spurious]
    return {ids[0]: ids for ids in sorted(groups)}


def _segments_of(
    lookup: Mapping[tuple[str, int], Mapping[str, tuple[int, float]]], vid: str, ids: list[int]
) -> dict[str, tuple[int, float]]:
    """Segment count and mean duration per emotion over the pieces ``ids`` of a person."""
    if len(ids) == 1:
        return dict(lookup.get((vid, ids[0]), {}))
    total: dict[str, tuple[int, float]] = {}
    for i in ids:
        for emo, (n, mean_s) in lookup.get((vid, i), {}).items():
            n0, sum0 = total.get(emo, (0, 0.0))
            total[emo] = (n0 + n, sum0 + n * mean_s)  # (count, total seconds) for now
    return {emo: (n, sum_s / n) for emo, (n, sum_s) in total.items()}


def _face_place(b: np.ndarray) -> dict[str, float | None]:
    """Median size and centre of one track's normalised boxes ``b`` (n, 4) xyxy."""
    ok = ~np.isnan(b).any(axis=1)
    if not ok.any():
        return {"face_size_norm": None, "face_x_norm": None, "face_y_norm": None}
    b = b[ok]
    return {
        "face_size_norm": float(np.median(b[:, 3] - b[:, 1])),
        "face_x_norm": float(np.median((b[:, 0] + b[:, 2]) / 2)),
        "face_y_norm": float(np.median((b[:, 1] + b[:, 3]) / 2)),
    }


def _track(fid: int, st: Mapping[str, Any]) -> Track:
    return Track(
        face_id=fid, present_s=st["face_present_s"], n_frames=st["n_face_frames"],
        max_det=st["max_det_score"], size=st["face_size_norm"], x=st["face_x_norm"],
        y=st["face_y_norm"],
    )  # fmt: skip


def _face_stats(
    t: np.ndarray,
    det: np.ndarray,
    p: np.ndarray,
    codes: np.ndarray,
    dt: float,
    classes: tuple[str, ...],
    settings: IndexSettings,
) -> dict[str, Any]:
    """Indices of one face track. ``t`` (n,) seconds ascending, ``det`` (n,), ``p`` (n, C)
    smoothed probabilities, ``codes`` (n,) smoothed label index (-1 unknown), ``dt`` s."""
    n = len(t)
    w = np.full(n, dt, np.float64)  # seconds each row stands for
    w[:-1] = np.clip(np.diff(t), 0.0, dt)
    total = float(w.sum())  # > 0: the last row always stands for dt
    known = codes >= 0
    shares = np.bincount(codes[known], weights=w[known], minlength=len(classes)) / total
    mean_p = (w[:, None] * p).sum(axis=0) / total

    idx = {c: i for i, c in enumerate(classes)}
    pos_i = [idx[c] for c in POSITIVE_EMOTIONS if c in idx]
    neg_i = [idx[c] for c in NEGATIVE_EMOTIONS if c in idx]
    sw = settings.surprise_weight if AMBIGUOUS_EMOTION in idx else 0.0
    sur = p[:, idx[AMBIGUOUS_EMOTION]] if AMBIGUOUS_EMOTION in idx else np.zeros(n)
    pos_t = p[:, pos_i].sum(axis=1) + sw * sur  # (n,) per-frame positive affect
    neg_t = p[:, neg_i].sum(axis=1)
    val_t = pos_t - neg_t  # (n,) per-frame valence in [-1, 1]
    valence = float(np.average(val_t, weights=w))
    tv_t = 0.5 * np.abs(p - mean_p).sum(axis=1)  # (n,) total-variation distance to the mean
    sur_share = shares[idx[AMBIGUOUS_EMOTION]] if AMBIGUOUS_EMOTION in idx else 0.0
    return {
        "n_face_frames": n,
        "face_present_s": total,
        "mean_det_score": float(det.mean()),
        "max_det_score": float(det.max()),
        **{share_col(c): float(shares[i]) for i, c in enumerate(classes)},
        **{mean_smooth_col(c): float(mean_p[i]) for i, c in enumerate(classes)},
        "dominant_emotion": classes[int(np.argmax(shares))] if known.any() else None,
        "positive_share": float(shares[pos_i].sum() + sw * sur_share),
        "negative_share": float(shares[neg_i].sum()),
        "positive_affect": float(np.average(pos_t, weights=w)),
        "negative_affect": float(np.average(neg_t, weights=w)),
        "valence": valence,
        "valence_sd": float(math.sqrt(np.average((val_t - valence) ** 2, weights=w))),
        "expressivity": float(np.average(tv_t, weights=w)),
    }


def _sample_interval(
    stored: float | None,
    duration: float | None,
    sampled: int | None,
    faces: dict[int, np.ndarray],
    ts: np.ndarray,
) -> float:
    """Seconds one sampled frame stands for: the videos row's ``sample_interval_s`` (the
    interval the segments used), else (older outputs) duration / frames sampled, else the
    median step between distinct face timestamps, else :data:`FALLBACK_INTERVAL_S`."""
    if stored is not None and stored > 0:
        return stored
    if duration and sampled and duration > 0 and sampled > 0:
        return float(duration) / float(sampled)
    if faces:
        uniq = np.unique(np.concatenate([ts[r] for r in faces.values()]))
        if len(uniq) > 1:
            return float(np.median(np.diff(uniq)))
    return FALLBACK_INTERVAL_S


def _bad_override(vid: str, face: int, present: list[int]) -> None:
    raise ConfigError(
        f"patient override for video {vid!r}: face_id={face} does not occur in that video "
        f"(faces present: {present}); fix the override or remove the entry"
    )


_none = plain  # None for NaN/NaT/None, plain Python values otherwise


def _float(x: Any) -> float | None:
    x = _none(x)
    return None if x is None else float(x)


def _int(x: Any) -> int | None:
    x = _none(x)
    return None if x is None else int(x)


def _bool(x: Any) -> bool | None:
    x = _none(x)
    return None if x is None else bool(x)


# --------------------------------------------------------------------------- files
_VIDEO_KEY_COLS = ["video_id", "path", "status", "settings_hash", "processed_at"]


def summarize_dir(
    out: Path,
    patient_override: Mapping[str, int] | Path | str | None = None,
    *,
    settings: IndexSettings = IndexSettings(),
    patient: PatientSettings = DEFAULT_PATIENT,
) -> pa.Table:
    """:func:`summarize_sessions` over a fervid output (``dir/`` or ``results.parquet``),
    read through :func:`fervid.output.store.read_results`. The result's metadata holds
    :func:`sessions_key`, so :func:`load_sessions` can tell a cached file is current."""
    videos = read_results(out, VIDEOS)
    frames = read_results(out, FRAMES, missing_ok=True)
    classes = class_names_of(frames, "smooth_") or EMOTIONS
    boxes = [c for c in _BOX_COLS if c in frames.schema.names]
    frames = frames.select([*_FRAME_COLS, *boxes, *[smooth_col(c) for c in classes]])
    segments = read_results(out, SEGMENTS, columns=_SEGMENT_COLS, missing_ok=True)
    override = load_patient_override(patient_override)
    table = summarize_sessions(
        frames, segments, videos, override, settings=settings, patient=patient,
        class_names=classes,
    )  # fmt: skip
    key = sessions_key(videos, override, settings, patient)
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_SESSIONS_KEY: key.encode()}
    )


def sessions_key(
    videos: pa.Table,
    override: Mapping[str, int],
    settings: IndexSettings,
    patient: PatientSettings = DEFAULT_PATIENT,
) -> str:
    """Hash of what a sessions table is computed from: the summary version, the index
    and patient-face settings, the patient override and each videos row's identity, status, settings hash
    and ``processed_at`` (a reprocessed video gets a new one). Frames and segments are
    written with their videos row, so the videos rows stand for them."""
    rows = sorted(
        tuple(str(x) for x in r)
        for r in zip(*(_column(videos, c) for c in _VIDEO_KEY_COLS), strict=True)
    )
    blob = json.dumps(
        [SUMMARY_VERSION, {"surprise_weight": settings.surprise_weight},
         patient.to_json(), sorted(override.items()), rows]
    )  # fmt: skip
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def write_sessions(table: pa.Table, path: Path) -> Path:
    """Write a sessions table atomically; refuse a table that does not match the schema."""
    classes = class_names_of(table, "share_")
    expected = sessions_schema(classes)
    if not table.schema.equals(expected, check_metadata=False):
        diff = sorted(set(map(str, expected)) ^ set(map(str, table.schema)))
        raise DataError(
            f"sessions table does not match sessions_schema({classes}); differing fields: "
            f"{diff[:6]}; build it with summarize_sessions()"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # readers never see a half-written file
        pq.write_table(table, tmp)
    return path


def load_sessions(
    out: Path,
    patient_override: Mapping[str, int] | Path | str | None = None,
    *,
    settings: IndexSettings = IndexSettings(),
    patient: PatientSettings = DEFAULT_PATIENT,
) -> pa.Table:
    """The sessions of a fervid output: its ``sessions.parquet`` (:func:`sessions_path`)
    when that was computed from exactly the current videos rows with the same index
    settings and patient override (:func:`sessions_key`), else summarized afresh (not
    written)."""
    path = sessions_path(out)
    if path.is_file():
        stored = (pq.read_schema(path).metadata or {}).get(META_SESSIONS_KEY)
        videos = read_results(out, VIDEOS, columns=_VIDEO_KEY_COLS)
        key = sessions_key(videos, load_patient_override(patient_override), settings, patient)
        if stored is not None and stored.decode() == key:
            return read_sessions(path)
    return summarize_dir(out, patient_override, settings=settings, patient=patient)


def read_sessions(path: Path) -> pa.Table:
    """A ``sessions.parquet`` written by :func:`write_sessions`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; build it with summarize_dir() + write_sessions()")
    t = pq.read_table(path)
    schema = sessions_schema(class_names_of(t, "share_"))
    for fld in schema:  # a file written before a column existed: the column as null
        if fld.name not in t.schema.names:
            t = t.append_column(fld.name, pa.nulls(t.num_rows, fld.type))
    # Parquet has no second-resolution timestamps: cast back to the declared schema.
    return t.select(schema.names).cast(schema.with_metadata(t.schema.metadata))
