"""Arrow schemas of the three output tables, declared once.

Writers build tables against these schemas and refuse mismatches; nothing is inferred
from the first row. Per-class columns are named from the model's class names
(``prob_<class>``, ``smooth_<class>``, ``mean_prob_<class>``, ``share_<class>``).
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

from fervid.model.classes import EMOTIONS
from fervid.records import LANDMARK_NAMES

# Output file names: ``--out results.parquet`` writes frames there and the others beside
# it; ``--out dir/`` writes one file per video under these sub-folders.
FRAMES, SEGMENTS, VIDEOS = "frames", "segments", "videos"
TABLES = (FRAMES, SEGMENTS, VIDEOS)

# Parquet key-value metadata keys.
META_SETTINGS = b"fervid.settings"
META_VERSION = b"fervid.version"
META_MODEL_SHA256 = b"fervid.model_sha256"
META_SETTINGS_HASH = b"fervid.settings_hash"


class VideoStatus(StrEnum):
    """The ``status`` of a videos row. Members are strings, so ``status == "ok"`` and
    Parquet/DuckDB filters on the text work unchanged."""

    OK = "ok"  # analysed, nothing to report
    OK_WITH_WARNINGS = "ok_with_warnings"  # analysed, but ``warnings`` says what was damaged
    FAILED = "failed"  # no result; ``error`` says why
    SKIPPED = "skipped"  # not analysed on purpose (e.g. same content as another input)

    @property
    def has_result(self) -> bool:
        """True for the statuses whose frames and segments are a result to keep."""
        return self in (VideoStatus.OK, VideoStatus.OK_WITH_WARNINGS)


STATUS_OK, STATUS_OK_WITH_WARNINGS = VideoStatus.OK, VideoStatus.OK_WITH_WARNINGS
STATUS_FAILED, STATUS_SKIPPED = VideoStatus.FAILED, VideoStatus.SKIPPED
#: Statuses of rows that hold an analysis (what queries of results usually keep).
ANALYSED_STATUSES = (STATUS_OK, STATUS_OK_WITH_WARNINGS)

# Identity columns shared by all three tables: where a row comes from.
_IDENTITY = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),  # as given / relative to the input root
    pa.field("file_name", pa.string(), nullable=False),
    pa.field("subject", pa.string()),  # from --id-pattern {subject}
    pa.field("session", pa.string()),  # from --id-pattern {session}
    pa.field("session_date", pa.date32()),  # from --id-pattern {session_date} (ISO date)
    pa.field("path_fields", pa.map_(pa.string(), pa.string())),  # every --id-pattern field
]


def prob_col(c: str) -> str:
    return f"prob_{c}"


def smooth_col(c: str) -> str:
    return f"smooth_{c}"


def mean_prob_col(c: str) -> str:
    return f"mean_prob_{c}"


def share_col(c: str) -> str:
    return f"share_{c}"


def landmark_col(name: str, axis: str, *, norm: bool = False) -> str:
    """Column of one landmark coordinate: ``lm_<name>_<x|y>`` pixels, ``..._norm`` 0..1."""
    return f"lm_{name}_{axis}{'_norm' if norm else ''}"


#: Per-face quality and pose columns of the frames table (``fervid.extract.quality``),
#: float32, null on rows without a face and, for landmarks and pose, with res10.
QUALITY_COLUMNS = ("face_px", "blur", "brightness", "yaw", "pitch", "roll")

#: Not-nullable columns added after the first release, with the value every row of an
#: older output implicitly had: reading a file that lacks one fills it in
#: (``fervid.output.store.conform``). Any other column added later must be nullable, so
#: that older outputs stay readable (docs/schema.md, "Compatibility").
ADDED_COLUMN_DEFAULTS: dict[str, object] = {
    "face_found": True,  # before --keep-empty-frames every frames row was a face
}


def frames_schema(class_names: tuple[str, ...] = EMOTIONS) -> pa.Schema:
    """One row per face per sampled frame; with ``--keep-empty-frames`` also one row per
    sampled frame without a face (``face_found`` false, every face column null)."""
    f32 = pa.float32()
    return pa.schema(
        [
            *_IDENTITY,
            pa.field("frame_index", pa.int64(), nullable=False),  # index in the source stream
            pa.field("timestamp_s", pa.float64(), nullable=False),  # decoder's presentation time
            pa.field("face_found", pa.bool_(), nullable=False),  # false: an empty-frame row
            pa.field("face_id", pa.int32()),  # stable within one video; null: no face
            pa.field("x1", f32),  # box, pixels of the displayed frame
            pa.field("y1", f32),
            pa.field("x2", f32),
            pa.field("y2", f32),
            pa.field("x1_norm", f32),  # box / frame width or height
            pa.field("y1_norm", f32),
            pa.field("x2_norm", f32),
            pa.field("y2_norm", f32),
            pa.field("det_score", f32),
            *[pa.field(c, f32) for c in QUALITY_COLUMNS],
            *[
                pa.field(landmark_col(n, a, norm=norm), f32)
                for norm in (False, True)
                for n in LANDMARK_NAMES
                for a in ("x", "y")
            ],
            *[pa.field(prob_col(c), f32) for c in class_names],
            pa.field("label", pa.string()),  # argmax of prob_*
            pa.field("confidence", f32),  # max of prob_*
            *[pa.field(smooth_col(c), f32) for c in class_names],
            pa.field("smoothed_label", pa.string()),
            pa.field("segment_index", pa.int32()),  # joins to segments
        ]
    )


def segments_schema(class_names: tuple[str, ...] = EMOTIONS) -> pa.Schema:
    """One row per contiguous run of one smoothed emotion of one face."""
    return pa.schema(
        [
            *_IDENTITY,
            pa.field("face_id", pa.int32(), nullable=False),
            pa.field("segment_index", pa.int32(), nullable=False),  # 0.. within a face
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),  # exclusive
            pa.field("duration_s", pa.float64(), nullable=False),
            pa.field("emotion", pa.string(), nullable=False),
            *[pa.field(mean_prob_col(c), pa.float32(), nullable=False) for c in class_names],
            pa.field("mean_confidence", pa.float32(), nullable=False),
            pa.field("n_frames", pa.int32(), nullable=False),
        ]
    )


def videos_schema(class_names: tuple[str, ...] = EMOTIONS) -> pa.Schema:
    """One row per input file, whatever happened to it."""
    return pa.schema(
        [
            *_IDENTITY,
            # Whether the path matched --id-pattern (null without one): a False row has no
            # subject / session_date from its path, so it is listed as unassigned.
            pa.field("id_pattern_matched", pa.bool_()),
            pa.field("status", pa.string(), nullable=False),  # a VideoStatus value
            pa.field("error", pa.string()),  # one-line reason when not ok
            # A later run failed on this video and kept this (earlier) result: its error.
            pa.field("last_error", pa.string()),
            pa.field("duplicate_of", pa.string()),  # skipped duplicate: path of the analysed copy
            pa.field("warnings", pa.string()),  # "; "-joined decode warnings (e.g. truncated file)
            pa.field("decode_errors", pa.int64()),  # damaged packets/frames met; null if failed
            pa.field("size_bytes", pa.int64()),
            pa.field("duration_s", pa.float64()),
            pa.field("fps", pa.float64()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("rotation", pa.int32()),
            pa.field("backend", pa.string()),  # decord | pyav
            pa.field("frames_sampled", pa.int64()),
            # Seconds one sampled frame stands for (1 / --fps, or --every-n / fps), computed
            # once at extraction: segments' end_s, sessions' face_present_s and the report
            # all use it. Null for failed videos (and every_n on a video of unknown fps).
            pa.field("sample_interval_s", pa.float64()),
            pa.field("frames_with_face", pa.int64()),
            pa.field("face_frame_share", pa.float64()),  # frames_with_face / frames_sampled
            pa.field("n_faces", pa.int32()),  # distinct face_id tracks
            pa.field("n_face_rows", pa.int64()),
            *[pa.field(share_col(c), pa.float64()) for c in class_names],  # of face rows, smoothed
            pa.field("processing_s", pa.float64()),
            pa.field("fervid_version", pa.string(), nullable=False),
            pa.field("model_sha256", pa.string()),
            pa.field("settings_hash", pa.string(), nullable=False),
            pa.field("processed_at", pa.timestamp("s", tz="UTC"), nullable=False),
        ]
    )


def schema_for(table: str, class_names: tuple[str, ...] = EMOTIONS) -> pa.Schema:
    return {FRAMES: frames_schema, SEGMENTS: segments_schema, VIDEOS: videos_schema}[table](
        class_names
    )
