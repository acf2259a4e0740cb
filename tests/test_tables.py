"""Building the frames / segments / videos tables from a hand-made VideoResult."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fervid.output.schema import frames_schema, segments_schema, videos_schema
from fervid.output.tables import (
    Identity,
    check_schema,
    failed_video_table,
    frames_table,
    segments_table,
    video_row_table,
)
from fervid.records import Segment, VideoFaces, VideoInfo, VideoInput, VideoResult

CLASSES = ("happy", "neutral", "sad")
WHEN = datetime(2024, 2, 1, 3, 4, 5, tzinfo=UTC)
VIDEO = VideoInput(
    path=Path("/data/s01/2024-01-31_a.mp4"),
    video_id="abc123",
    rel_path="s01/2024-01-31_a.mp4",
    size_bytes=1234,
    fields={"subject": "s01", "session_date": "2024-01-31", "name": "a"},
)
INFO = VideoInfo(width=200, height=100, fps=25.0, duration_s=3.0, n_frames=75, codec="h264")

# Six sampled frames at 2 fps; face 0 in frames 0-4, face 1 in frames 1-2; frame 5 has none.
# Rows come in detection order (frame by frame), face 1 before face 0 in frame 1.
#          frame_idx ts   face  box (x1, y1, x2, y2)     probs (happy, neutral, sad)  smoothed
ROWS = [
    (0, 0.0, 0, (20, 10, 60, 50), (0.2, 0.7, 0.1), (0.2, 0.7, 0.1)),
    (12, 0.5, 1, (100, 0, 150, 50), (0.1, 0.1, 0.8), (0.1, 0.1, 0.8)),
    (12, 0.5, 0, (22, 10, 62, 50), (0.3, 0.6, 0.1), (0.25, 0.65, 0.1)),
    (25, 1.0, 0, (24, 12, 64, 52), (0.5, 0.4, 0.1), (0.35, 0.55, 0.1)),
    (25, 1.0, 1, (102, 0, 152, 50), (0.2, 0.2, 0.6), (0.15, 0.15, 0.7)),
    (37, 1.5, 0, (24, 12, 64, 52), (0.9, 0.05, 0.05), (0.6, 0.3, 0.1)),
    (50, 2.0, 0, (26, 14, 66, 54), (0.8, 0.1, 0.1), (0.7, 0.2, 0.1)),
]
SEGMENTS = {
    0: [
        Segment(start_s=0.0, end_s=1.5, label=1, first_row=0, end_row=3),
        Segment(start_s=1.5, end_s=2.5, label=0, first_row=3, end_row=5),
    ],
    1: [Segment(start_s=0.5, end_s=1.5, label=2, first_row=0, end_row=2)],
}


def make_faces(rows: list = ROWS, warnings: tuple[str, ...] = ()) -> VideoFaces:
    n = len(rows)
    return VideoFaces(
        video=VIDEO,
        info=INFO,
        sampled_frame_index=np.array([0, 12, 25, 37, 50, 62], np.int64),
        sampled_timestamp_s=np.arange(6) * 0.5,
        frame_index=np.array([r[0] for r in rows], np.int64),
        timestamp_s=np.array([r[1] for r in rows], np.float64),
        boxes=np.array([r[3] for r in rows], np.float32).reshape(n, 4),
        det_scores=np.linspace(0.9, 0.99, n).astype(np.float32),
        crops=np.zeros((n, 4, 4), np.uint8),
        warnings=warnings,
        seconds={"extract": 2.0, "decode": 1.0, "detect_crop": 1.0},
    )


def make_result(rows: list = ROWS, segments: dict = SEGMENTS, **faces_kw: object) -> VideoResult:
    n = len(rows)
    return VideoResult(
        faces=make_faces(rows, **faces_kw),
        class_names=CLASSES,
        face_id=np.array([r[2] for r in rows], np.int32),
        probs=np.array([r[4] for r in rows], np.float32).reshape(n, 3),
        smoothed=np.array([r[5] for r in rows], np.float32).reshape(n, 3),
        segments=segments,
        seconds={"classify": 0.5},
    )


IDENT = Identity.of(VIDEO)


# --------------------------------------------------------------------------- identity
@pytest.mark.parametrize(
    ("fields", "subject", "session_date"),
    [
        ({"subject": "s01", "session_date": "2024-01-31"}, "s01", date(2024, 1, 31)),
        ({"session_date": "20240131"}, None, date(2024, 1, 31)),  # ISO basic format
        ({"session_date": "Jan 31"}, None, None),  # not a date: null, raw text kept
        ({}, None, None),
    ],
)
def test_identity_of(fields: dict, subject: str | None, session_date: date | None) -> None:
    v = VideoInput(
        path=Path("/x/y/clip.mov"),
        video_id="id1",
        rel_path="y/clip.mov",
        size_bytes=1,
        fields=fields,
    )
    ident = Identity.of(v)
    assert (ident.video_id, ident.path, ident.file_name) == ("id1", "y/clip.mov", "clip.mov")
    assert ident.subject == subject
    assert ident.session_date == session_date
    assert dict(ident.path_fields) == fields


# --------------------------------------------------------------------------- frames
def test_frames_table_values() -> None:
    t = frames_table(make_result(), IDENT)
    assert t.schema.equals(frames_schema(CLASSES))
    d = t.to_pydict()
    # sorted by (timestamp_s, face_id): face 0 before face 1 at 0.5 s
    assert list(zip(d["timestamp_s"], d["face_id"], strict=True)) == [
        (0.0, 0), (0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1), (1.5, 0), (2.0, 0),
    ]  # fmt: skip
    assert d["frame_index"] == [0, 12, 12, 25, 25, 37, 50]
    assert d["label"] == ["neutral", "neutral", "sad", "happy", "sad", "happy", "happy"]
    np.testing.assert_allclose(d["confidence"], [0.7, 0.6, 0.8, 0.5, 0.6, 0.9, 0.8], rtol=1e-6)
    assert d["smoothed_label"] == ["neutral", "neutral", "sad", "neutral", "sad", "happy", "happy"]
    assert d["segment_index"] == [0, 0, 0, 0, 0, 1, 1]
    # boxes in pixels and divided by the 200 x 100 frame
    assert (d["x1"][2], d["y1"][2], d["x2"][2], d["y2"][2]) == (100, 0, 150, 50)
    np.testing.assert_allclose(
        [d["x1_norm"][2], d["y1_norm"][2], d["x2_norm"][2], d["y2_norm"][2]], [0.5, 0.0, 0.75, 0.5]
    )
    np.testing.assert_allclose(d["prob_happy"], [0.2, 0.3, 0.1, 0.5, 0.2, 0.9, 0.8], rtol=1e-6)
    np.testing.assert_allclose(d["smooth_sad"], [0.1, 0.1, 0.8, 0.1, 0.7, 0.1, 0.1], rtol=1e-6)
    # identity on every row
    assert set(d["video_id"]) == {"abc123"} and set(d["subject"]) == {"s01"}
    assert set(d["session_date"]) == {date(2024, 1, 31)}
    assert d["path_fields"][0] == [
        ("name", "a"),
        ("session_date", "2024-01-31"),
        ("subject", "s01"),
    ]
    assert d["session"] == [None] * 7


def test_frames_table_det_score_follows_its_row() -> None:
    result = make_result()
    t = frames_table(result, IDENT).to_pydict()
    # row 1 of the input (face 1 at 0.5 s) lands at position 2 after sorting
    assert t["det_score"][2] == pytest.approx(float(result.faces.det_scores[1]))


def test_video_without_faces_gives_empty_tables_with_full_schema() -> None:
    result = make_result(rows=[], segments={})
    frames, segs = frames_table(result, IDENT), segments_table(result, IDENT)
    assert frames.num_rows == 0 and frames.schema.equals(frames_schema(CLASSES))
    assert segs.num_rows == 0 and segs.schema.equals(segments_schema(CLASSES))
    row = video_row_table(
        result, IDENT, settings_hash="h", model_sha256="m", fervid_version="0.1", processed_at=WHEN
    )
    d = row.to_pylist()[0]
    assert (d["status"], d["frames_sampled"], d["frames_with_face"], d["face_frame_share"]) == (
        "ok",
        6,
        0,
        0.0,
    )
    assert (d["n_faces"], d["n_face_rows"]) == (0, 0)
    assert d["share_happy"] is None  # no face rows: shares are unknown, not 0


# --------------------------------------------------------------------------- segments
def test_segments_table_values() -> None:
    t = segments_table(make_result(), IDENT)
    assert t.schema.equals(segments_schema(CLASSES))
    d = t.to_pydict()
    # sorted by (start_s, face_id)
    assert list(zip(d["face_id"], d["segment_index"], d["start_s"], d["end_s"], strict=True)) == [
        (0, 0, 0.0, 1.5), (1, 0, 0.5, 1.5), (0, 1, 1.5, 2.5),
    ]  # fmt: skip
    assert d["duration_s"] == [1.5, 1.0, 1.0]
    assert d["emotion"] == ["neutral", "sad", "happy"]
    assert d["n_frames"] == [3, 2, 2]
    # face 0, rows 0-2: happy (0.2 + 0.3 + 0.5) / 3, confidence (0.7 + 0.6 + 0.5) / 3
    assert d["mean_prob_happy"][0] == pytest.approx(1.0 / 3, rel=1e-6)
    assert d["mean_prob_neutral"][0] == pytest.approx(1.7 / 3, rel=1e-6)
    assert d["mean_confidence"][0] == pytest.approx(0.6, rel=1e-6)
    # face 1: sad (0.8 + 0.6) / 2, confidence the same
    assert d["mean_prob_sad"][1] == pytest.approx(0.7, rel=1e-6)
    assert d["mean_confidence"][1] == pytest.approx(0.7, rel=1e-6)
    assert d["mean_confidence"][2] == pytest.approx(0.85, rel=1e-6)


# --------------------------------------------------------------------------- videos
def test_video_row_values() -> None:
    result = make_result(warnings=("decoding stopped at 2.5 s of 3 s: truncated?",))
    t = video_row_table(
        result,
        IDENT,
        settings_hash="h1",
        model_sha256="m1",
        fervid_version="0.1",
        processed_at=WHEN,
    )
    assert t.schema.equals(videos_schema(CLASSES))
    d = t.to_pylist()[0]
    assert d["status"] == "ok_with_warnings" and d["error"] is None  # a warning: damaged
    assert d["warnings"] == "decoding stopped at 2.5 s of 3 s: truncated?"
    assert d["decode_errors"] == 0 and d["last_error"] is None
    assert (d["size_bytes"], d["duration_s"], d["fps"], d["width"], d["height"]) == (
        1234,
        3.0,
        25.0,
        200,
        100,
    )
    assert (d["rotation"], d["backend"]) == (0, "decord")
    assert (d["frames_sampled"], d["frames_with_face"], d["n_faces"], d["n_face_rows"]) == (
        6,
        5,
        2,
        7,
    )
    assert d["face_frame_share"] == pytest.approx(5 / 6)
    # smoothed labels: neutral x3, sad x2, happy x2 of 7 face rows
    assert d["share_neutral"] == pytest.approx(3 / 7)
    assert d["share_sad"] == pytest.approx(2 / 7)
    assert d["share_happy"] == pytest.approx(2 / 7)
    assert d["processing_s"] == pytest.approx(2.5)  # extract 2.0 + classify 0.5
    assert (d["fervid_version"], d["model_sha256"], d["settings_hash"]) == ("0.1", "m1", "h1")
    assert d["processed_at"] == WHEN


@pytest.mark.parametrize("status", ["failed", "skipped"])
def test_failed_video_row_is_valid_with_nulls(status: str) -> None:
    t = failed_video_table(
        IDENT, status=status, error="DecodeError: moov atom not found\ntraceback...",
        settings_hash="h1", model_sha256="m1", fervid_version="0.1", class_names=CLASSES,
        size_bytes=1234,
    )  # fmt: skip
    check_schema(t, videos_schema(CLASSES), name="videos")
    d = t.to_pylist()[0]
    assert d["status"] == status
    assert d["error"] == "DecodeError: moov atom not found"  # one line
    assert d["size_bytes"] == 1234 and d["video_id"] == "abc123"
    for col in (
        "duration_s",
        "fps",
        "width",
        "frames_sampled",
        "n_faces",
        "share_sad",
        "processing_s",
    ):
        assert d[col] is None, col
    assert d["processed_at"].tzinfo is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"status": "ok", "error": "x"}, "expected 'failed' or 'skipped'"),
        ({"status": "failed", "error": "  "}, "needs a one-line reason"),
        ({"status": "failed", "error": "x", "processed_at": datetime(2024, 1, 1)}, "no time zone"),
    ],
)
def test_failed_video_row_refuses(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        failed_video_table(
            IDENT,
            settings_hash="h",
            model_sha256=None,
            fervid_version="0.1",
            class_names=CLASSES,
            **kwargs,
        )


# --------------------------------------------------------------------------- mismatches refused
def _bad_probs() -> VideoResult:
    r = make_result()
    return VideoResult(
        faces=r.faces, class_names=(*CLASSES, "fear"), face_id=r.face_id, probs=r.probs,
        smoothed=r.smoothed, segments=r.segments,
    )  # fmt: skip


def _missing_face_segments() -> VideoResult:
    return make_result(segments={0: SEGMENTS[0]})


def _segments_not_tiling() -> VideoResult:
    return make_result(segments={0: SEGMENTS[0][:1], 1: SEGMENTS[1]})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_bad_probs, r"probs must be \(7, 4\)"),
        (_missing_face_segments, "every face needs its segments"),
        (_segments_not_tiling, r"expected \[0, 5\)"),
    ],
)
@pytest.mark.parametrize("build", [frames_table, segments_table])
def test_inconsistent_result_refused(make, match: str, build) -> None:
    with pytest.raises(ValueError, match=match):
        build(make(), IDENT)


def test_check_schema_refuses_mismatches() -> None:
    good = frames_table(make_result(), IDENT)
    schema = frames_schema(CLASSES)
    check_schema(good, schema, name="frames")  # passes
    with pytest.raises(ValueError, match=r"missing columns \['prob_fear'"):
        check_schema(good, frames_schema((*CLASSES, "fear")), name="frames")
    with pytest.raises(ValueError, match="unexpected columns"):
        check_schema(
            good.append_column("extra", pa.array([1] * good.num_rows)), schema, name="frames"
        )
    retyped = good.set_column(
        good.schema.get_field_index("frame_index"),
        pa.field("frame_index", pa.int32(), nullable=False),
        good.column("frame_index").cast(pa.int32()),
    )  # fmt: skip
    with pytest.raises(
        ValueError, match="'frame_index' is int32 not null, expected int64 not null"
    ):
        check_schema(retyped, schema, name="frames")
    # (face columns are nullable: --keep-empty-frames rows have no face)
    nulls = good.set_column(
        good.schema.get_field_index("face_found"),
        schema.field("face_found"),
        pa.array([None] * good.num_rows, pa.bool_()),
    )
    with pytest.raises(ValueError, match="'face_found' is not nullable but holds 7 nulls"):
        check_schema(nulls, schema, name="frames")
