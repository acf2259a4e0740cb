"""A face that leaves the frame and comes back is one person: its track's pieces are
joined when that is unambiguous (one face at a time, the same place and size), so that
``longest`` compares people, not fragments; ``track_pieces`` says how many were joined.

Real clips are composed from the sample videos (tests/composed_calls.py) and processed
by fervid; hand-built tables pin the rule's edges."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from composed_calls import broken_track, process_calls
from longitudinal_tables import frame_rows, segment_rows, tables, video_row

from fervid.longitudinal.patient import PatientSettings
from fervid.longitudinal.summary import read_sessions, summarize_dir, summarize_sessions
from fervid.output.store import read_results


@pytest.fixture(scope="module")
def broken(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alone.mp4: single_face 4 s, no_face 4 s, single_face 4 s; beside.mp4: the same
    in the left tile with WolfgangLanger in the right tile all along; processed."""
    root = tmp_path_factory.mktemp("broken")
    rec = root / "recordings"
    rec.mkdir()
    face, gap = sample_dir / "single_face.mp4", sample_dir / "no_face.mp4"
    broken_track(rec / "alone.mp4", face, gap)
    broken_track(rec / "beside.mp4", face, gap, beside=sample_dir / "WolfgangLanger_Pexels.mp4")
    return process_calls(rec, root / "ds")


def _faces(t: pa.Table, name: str) -> list[dict]:
    return [r for r in t.to_pylist() if r["file_name"] == name]


def test_a_face_that_comes_back_is_one_person(broken: Path) -> None:
    frames = read_results(broken, "frames").to_pandas()
    tracks = frames.loc[frames["file_name"] == "alone.mp4"].groupby("face_id")["timestamp_s"]
    # the tracker gives the returning face a new id: two pieces, 4 s apart
    assert tracks.ngroups == 2 and tracks.max().iloc[0] < 4.0 < 8.0 <= tracks.min().iloc[1]

    (person,) = _faces(summarize_dir(broken), "alone.mp4")
    assert person["track_pieces"] == 2 and person["track_face_ids"] == [0, 1]
    assert person["n_faces"] == 1 and person["is_patient"] and not person["patient_ambiguous"]
    assert person["n_face_frames"] == len(frames.loc[frames["file_name"] == "alone.mp4"])
    assert person["face_present_s"] == pytest.approx(8.0, abs=1.0)  # the gap is not counted

    apart = _faces(summarize_dir(broken, patient=PatientSettings(join_tracks=False)), "alone.mp4")
    assert [r["track_pieces"] for r in apart] == [1, 1] and apart[0]["n_faces"] == 2
    assert sum(r["face_present_s"] for r in apart) == pytest.approx(person["face_present_s"])


def test_pieces_beside_another_face_are_not_joined(broken: Path) -> None:
    """Two faces at once: whose piece is whose is not certain, so nothing is joined."""
    rows = _faces(summarize_dir(broken), "beside.mp4")
    assert len(rows) == 3, [(r["face_id"], r["face_x_norm"], r["n_face_frames"]) for r in rows]
    assert all(r["track_pieces"] == 1 for r in rows) and rows[0]["n_faces"] == 3
    (patient,) = [r for r in rows if r["is_patient"]]
    assert patient["face_x_norm"] > 0.5  # the face in the right tile, there all along


def test_older_sessions_files_read_with_the_new_columns_null(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    f, s, v = _call({0: ([0.0, 0.5, 1.0], (0.4, 0.2, 0.6, 0.6))})
    table = summarize_sessions(f, s, v).drop_columns(["track_pieces", "track_face_ids"])
    pq.write_table(table, tmp_path / "old.sessions.parquet")
    (row,) = read_sessions(tmp_path / "old.sessions.parquet").to_pylist()
    assert row["track_pieces"] is None and row["track_face_ids"] is None and row["is_patient"]


# --------------------------------------------------------------------------- hand-built
def _call(faces: dict[int, tuple[list[float], tuple[float, float, float, float]]]):
    """One recording: face_id -> (timestamps, normalised box)."""
    frames, segs = [], []
    for fid, (ts, box) in faces.items():
        rows = frame_rows("v", fid, ts, ["happy"] * len(ts), det_score=0.93)
        for r in rows:
            r |= dict(zip(("x1_norm", "y1_norm", "x2_norm", "y2_norm"), box, strict=True))
        frames += rows
        segs += segment_rows("v", fid, [(ts[0], ts[-1] + 0.5, "happy")])
    return tables(frames, segs, [video_row("v", duration_s=20.0, frames_sampled=40)])


CENTRE, MOVED, SMALL = (0.4, 0.2, 0.6, 0.6), (0.7, 0.2, 0.9, 0.6), (0.47, 0.33, 0.53, 0.47)
EARLY, LATE = [i * 0.5 for i in range(8)], [6.0 + i * 0.5 for i in range(10)]


def _people(faces) -> list[tuple[int, list[int]]]:
    t = summarize_sessions(*_call(faces))
    return [(r["track_pieces"], r["track_face_ids"]) for r in t.to_pylist()]


@pytest.mark.parametrize(
    ("second", "joined"),
    [(CENTRE, True), (MOVED, False), (SMALL, False)],
    ids=["same place and size", "moved across the frame", "a third the size"],
)
def test_pieces_join_only_at_the_same_place_and_size(second: tuple, joined: bool) -> None:
    people = _people({0: (EARLY, CENTRE), 1: (LATE, second)})
    assert people == ([(2, [0, 1])] if joined else [(1, [0]), (1, [1])])


def test_a_chain_of_pieces_is_one_person() -> None:
    three = {0: (EARLY[:3], CENTRE), 1: (EARLY[4:], CENTRE), 2: (LATE, CENTRE)}
    assert _people(three) == [(3, [0, 1, 2])]


def test_a_piece_two_earlier_people_both_fit_is_left_alone() -> None:
    # 0 (x 0.4) and 1 (x 0.6) are too far apart to be one person; 2 (x 0.5) fits both
    left, right, middle = (0.3, 0.2, 0.5, 0.6), (0.5, 0.2, 0.7, 0.6), (0.4, 0.2, 0.6, 0.6)
    faces = {0: (EARLY[:3], left), 1: (EARLY[4:], right), 2: (LATE, middle)}
    assert _people(faces) == [(1, [0]), (1, [1]), (1, [2])]


def test_pieces_beside_an_overlapping_face_are_not_joined() -> None:
    overlapping = {0: (EARLY, CENTRE), 1: (EARLY, MOVED), 2: (LATE, CENTRE)}
    assert _people(overlapping) == [(1, [0]), (1, [1]), (1, [2])]


def test_longest_is_not_fooled_by_fragments() -> None:
    # the patient (centre) leaves twice: 3 pieces of 3 s; a visitor stays 5 s at the side
    patient = {0: ([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], CENTRE),
               2: ([7.0, 7.5, 8.0, 8.5, 9.0, 9.5], CENTRE),
               3: ([12.0, 12.5, 13.0, 13.5, 14.0, 14.5], CENTRE)}  # fmt: skip
    visitor = {1: ([3.0 + i * 0.5 for i in range(8)], MOVED)}  # 3.0 .. 6.5, alone
    t = summarize_sessions(*_call(patient | visitor))
    (p,) = [r for r in t.to_pylist() if r["is_patient"]]
    assert p["track_face_ids"] == [0, 2, 3] and p["face_present_s"] == pytest.approx(9.0)
    apart = summarize_sessions(
        *_call(patient | visitor), patient=PatientSettings(join_tracks=False)
    )
    (q,) = [r for r in apart.to_pylist() if r["is_patient"]]
    assert q["face_id"] == 1  # without joining, the visitor's 4 s beat each 3 s piece
