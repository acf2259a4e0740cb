"""Which face is the patient in a two-person call, and phantom one-frame tracks.

Real calls are composed from the sample videos (tests/composed_calls.py): a gallery view
(two 640x360 tiles side by side) and a speaker view (a full picture and a small
self-view inset), processed by fervid; hand-built tables pin the rules' edges."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from composed_calls import gallery_call, process_calls, speaker_call
from longitudinal_tables import frame_rows, segment_rows, tables, video_row, write_dataset

from fervid.errors import ConfigError
from fervid.longitudinal.patient import PatientFace, PatientSettings
from fervid.longitudinal.summary import (
    RULE_NO_FACE,
    patient_warnings,
    summarize_dir,
    summarize_sessions,
)

D = dt.date(2024, 1, 1)


def _rows(t: pa.Table, video: str | None = None) -> list[dict]:
    rows = t.to_pylist()
    return [r for r in rows if video is None or r["file_name"] == video]


def _patient(t: pa.Table, video: str) -> dict:
    (p,) = [r for r in _rows(t, video) if r["is_patient"]]
    return p


# --------------------------------------------------------------------------- real calls
@pytest.fixture(scope="module")
def calls(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gallery.mp4, speaker.mp4 and the face sample videos, processed into a dataset."""
    root = tmp_path_factory.mktemp("calls")
    rec = root / "recordings"
    rec.mkdir()
    wolf, single = sample_dir / "WolfgangLanger_Pexels.mp4", sample_dir / "single_face.mp4"
    gallery_call(rec / "gallery.mp4", wolf, wolf)
    speaker_call(rec / "speaker.mp4", wolf, single)
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "carphone_pristine.mp4",
                 "face_noface.mov", "noface_face.mov"):  # fmt: skip
        (rec / name).symlink_to(sample_dir / name)
    return process_calls(rec, root / "ds")


def test_gallery_view_tie_is_flagged_not_silently_face_0(calls: Path) -> None:
    t = summarize_dir(calls)
    faces = _rows(t, "gallery.mp4")
    assert len(faces) == 2 and {r["n_face_frames"] for r in faces} == {12}  # both always there
    p = _patient(t, "gallery.mp4")
    assert p["patient_rule"] == "longest_present"
    assert all(r["patient_ambiguous"] is True for r in faces)
    (line, *paths) = patient_warnings(t)
    assert "ambiguous patient face" in line and "--patient-face" in line
    assert "  gallery.mp4" in paths


@pytest.mark.parametrize(("rule", "side"), [("left", 0.0), ("right", 1.0)])
def test_gallery_view_left_or_right_tile(calls: Path, rule: str, side: float) -> None:
    t = summarize_dir(calls, patient=PatientSettings(rule=PatientFace(rule)))
    p = _patient(t, "gallery.mp4")
    assert p["patient_rule"] == rule and p["patient_ambiguous"] is False
    assert abs(p["face_x_norm"] - side) < 0.5  # in that half of the 1280 px frame
    other = next(r for r in _rows(t, "gallery.mp4") if not r["is_patient"])
    assert abs(other["face_x_norm"] - side) > 0.5


def test_speaker_view_largest_is_the_speaker_not_the_self_view(calls: Path) -> None:
    longest = _patient(summarize_dir(calls), "speaker.mp4")
    assert longest["patient_ambiguous"] is True  # the inset is present all along too
    t = summarize_dir(calls, patient=PatientSettings(rule=PatientFace.LARGEST))
    p = _patient(t, "speaker.mp4")
    assert p["patient_rule"] == "largest" and p["patient_ambiguous"] is False
    inset = next(r for r in _rows(t, "speaker.mp4") if not r["is_patient"])
    assert p["face_size_norm"] > 0.6 > 0.3 > inset["face_size_norm"]


def test_no_real_face_is_taken_for_a_phantom(calls: Path) -> None:
    t = summarize_dir(calls)
    faces = [r for r in _rows(t) if r["face_id"] is not None]
    assert len(faces) >= 8
    assert not any(r["spurious"] for r in faces), [
        (r["file_name"], r["face_id"], r["n_face_frames"], r["mean_det_score"])
        for r in faces if r["spurious"]
    ]  # fmt: skip
    # the single-face videos have one patient each, unambiguous
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov"):
        assert _patient(t, name)["patient_ambiguous"] is False


# --------------------------------------------------------------------------- hand-built
def _call(faces: dict[int, tuple[list[float], float, tuple[float, float, float, float]]]):
    """One recording: face_id -> (timestamps, det score, normalised box)."""
    frames, segs = [], []
    for fid, (ts, det, box) in faces.items():
        rows = frame_rows("v", fid, ts, ["happy"] * len(ts), det_score=det)
        for r in rows:
            r |= dict(zip(("x1_norm", "y1_norm", "x2_norm", "y2_norm"), box, strict=True))
        frames += rows
        segs += segment_rows("v", fid, [(ts[0], ts[-1] + 0.5, "happy")])
    return tables(frames, segs, [video_row("v", duration_s=10.0, frames_sampled=20)])


LEFT_TILE, RIGHT_TILE = (0.1, 0.1, 0.4, 0.9), (0.6, 0.1, 0.9, 0.9)
ALL = [i * 0.5 for i in range(20)]


def test_a_one_frame_low_score_track_is_spurious_and_never_the_patient() -> None:
    f, s, v = _call({0: ([3.0], 0.72, LEFT_TILE), 1: (ALL[:8], 0.93, RIGHT_TILE)})
    t = summarize_sessions(f, s, v)
    by_face = {r["face_id"]: r for r in t.to_pylist()}
    assert by_face[0]["spurious"] is True and by_face[0]["is_patient"] is False
    assert by_face[1]["spurious"] is False and by_face[1]["is_patient"] is True
    assert by_face[1]["n_faces"] == 1  # the phantom is not counted as a face
    # ... whatever the rule: the phantom sits in the left tile
    left = summarize_sessions(f, s, v, patient=PatientSettings(rule=PatientFace.LEFT))
    assert [r["face_id"] for r in left.to_pylist() if r["is_patient"]] == [1]


def test_a_one_frame_confident_face_is_kept() -> None:
    f, s, v = _call({0: ([3.0], 0.93, LEFT_TILE), 1: (ALL, 0.93, RIGHT_TILE)})
    rows = summarize_sessions(f, s, v).to_pylist()
    assert not any(r["spurious"] for r in rows) and rows[0]["n_faces"] == 2
    # min_track_frames=1 keeps every track, however low its score
    f, s, v = _call({0: ([3.0], 0.5, LEFT_TILE), 1: (ALL, 0.93, RIGHT_TILE)})
    keep = summarize_sessions(f, s, v, patient=PatientSettings(min_track_frames=1))
    assert not any(r["spurious"] for r in keep.to_pylist())


def test_only_phantoms_is_a_session_without_a_face() -> None:
    f, s, v = _call({0: ([3.0], 0.63, LEFT_TILE)})
    rows = summarize_sessions(f, s, v).to_pylist()
    patient = [r for r in rows if r["is_patient"]]
    assert len(patient) == 1 and patient[0]["patient_rule"] == RULE_NO_FACE
    assert patient[0]["face_id"] is None and patient[0]["face_present_s"] == 0.0
    assert [r["spurious"] for r in rows if r["face_id"] is not None] == [True]  # kept, flagged


def test_near_tie_is_ambiguous_a_clear_winner_is_not() -> None:
    near = summarize_sessions(*_call({0: (ALL[:17], 0.9, LEFT_TILE), 1: (ALL, 0.9, RIGHT_TILE)}))
    clear = summarize_sessions(*_call({0: (ALL[:10], 0.9, LEFT_TILE), 1: (ALL, 0.9, RIGHT_TILE)}))
    for t, ambiguous in ((near, True), (clear, False)):
        (p,) = [r for r in t.to_pylist() if r["is_patient"]]
        assert p["face_id"] == 1 and p["patient_ambiguous"] is ambiguous


def test_position_rules_ignore_a_passer_by() -> None:
    # face 0 crosses the left tile for 2 s; the patient sits in the right tile all along
    f, s, v = _call({0: (ALL[:4], 0.9, LEFT_TILE), 1: (ALL, 0.9, RIGHT_TILE)})
    t = summarize_sessions(f, s, v, patient=PatientSettings(rule=PatientFace.LEFT))
    (p,) = [r for r in t.to_pylist() if r["is_patient"]]
    assert p["face_id"] == 1 and p["patient_ambiguous"] is False


@pytest.mark.parametrize(
    "kwargs",
    [{"rule": "diagonal"}, {"min_track_frames": 0}, {"near_tie": 0.0}, {"phantom_det": 1.5}],
)
def test_bad_patient_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        PatientSettings(**kwargs)


def test_cli_patient_face_on_every_longitudinal_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fervid.cli import app

    f, s, v = _call({0: (ALL, 0.9, LEFT_TILE), 1: (ALL, 0.9, RIGHT_TILE)})
    ds = write_dataset(tmp_path / "ds", f.to_pylist(), s.to_pylist(), v.to_pylist())
    for command in ("summarize", "trends", "report"):
        r = CliRunner().invoke(app, [command, str(ds)])
        assert r.exit_code == 0, r.output
        assert "warning: 1 recording(s) have an ambiguous patient face" in r.output, command
        r = CliRunner().invoke(app, [command, str(ds), "--patient-face", "right"])
        assert r.exit_code == 0 and "ambiguous" not in r.output, (command, r.output)
        bad = CliRunner().invoke(app, [command, str(ds), "--patient-face", "diagonal"])
        assert bad.exit_code == 2 and "--patient-face='diagonal'" in bad.output, bad.output


# --------------------------------------------------------------------------- region, override
def test_gallery_view_region_picks_the_face_in_that_tile(calls: Path) -> None:
    right = PatientSettings(rule=PatientFace.REGION, region="0.5,0,1,1")
    p = _patient(summarize_dir(calls, patient=right), "gallery.mp4")
    assert p["patient_rule"] == "region" and p["patient_ambiguous"] is False
    assert p["face_x_norm"] > 0.5
    # a tile nobody sits in: no patient face, said aloud (never the other person)
    corner = PatientSettings(rule=PatientFace.REGION, region=(0.0, 0.0, 0.05, 0.05))
    rows = _rows(summarize_dir(calls, patient=corner), "gallery.mp4")
    (p,) = [r for r in rows if r["is_patient"]]
    assert p["patient_rule"] == RULE_NO_FACE and p["face_id"] is None
    assert all(r["patient_ambiguous"] is True for r in rows)


def test_region_rule_on_hand_built_tiles() -> None:
    f, s, v = _call({0: (ALL, 0.9, LEFT_TILE), 1: (ALL, 0.9, RIGHT_TILE)})
    for region, face in (((0, 0, 0.5, 1), 0), ((0.5, 0, 1, 1), 1)):
        t = summarize_sessions(f, s, v, patient=PatientSettings(rule="region", region=region))
        (p,) = [r for r in t.to_pylist() if r["is_patient"]]
        assert p["face_id"] == face and p["patient_ambiguous"] is False


@pytest.mark.parametrize(
    "kwargs",
    [{"rule": "region"}, {"rule": "region", "region": "0,0,1"},
     {"rule": "region", "region": (0.5, 0, 0.4, 1)}, {"rule": "region", "region": "0,0,1.5,1"},
     {"rule": "left", "region": "0,0,0.5,1"}],
)  # fmt: skip
def test_bad_regions_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=r"--patient-region|--patient-face region"):
        PatientSettings(**kwargs)


def test_override_rule_needs_the_file_and_flags_what_it_does_not_list(tmp_path: Path) -> None:
    f, s, v = _call({0: (ALL, 0.9, LEFT_TILE), 1: (ALL[:5], 0.9, RIGHT_TILE)})
    rule = PatientSettings(rule=PatientFace.OVERRIDE)
    with pytest.raises(ConfigError, match="override needs --patient FILE"):
        summarize_sessions(f, s, v, patient=rule)
    named = summarize_sessions(f, s, v, {"v": 1}, patient=rule)
    (p,) = [r for r in named.to_pylist() if r["is_patient"]]
    assert p["face_id"] == 1 and p["patient_rule"] == "override"
    unlisted = summarize_sessions(f, s, v, {"other": 1}, patient=rule)
    (p,) = [r for r in unlisted.to_pylist() if r["is_patient"]]
    assert p["face_id"] == 0 and p["patient_ambiguous"] is True  # longest, warned about


def test_region_and_settings_from_the_cli_and_fervid_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from fervid.cli import app

    f, s, v = _call({0: (ALL, 0.9, LEFT_TILE), 1: (ALL, 0.9, RIGHT_TILE)})
    ds = write_dataset(tmp_path / "ds", f.to_pylist(), s.to_pylist(), v.to_pylist())
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for command in ("summarize", "trends", "report"):
        r = runner.invoke(app, [command, str(ds), "--patient-region", "0.5,0,1,1", "--json"])
        assert r.exit_code == 0 and "ambiguous" not in r.stderr, (command, r.output)
        assert json.loads(r.stdout)["settings"]["patient"]["region"] == [0.5, 0, 1, 1]
    (tmp_path / "fervid.toml").write_text(
        '[longitudinal]\npatient_face = "region"\npatient_region = "0,0,0.5,1"\n'
        "threshold = 3\nbaseline_n = 4\n"
    )
    r = runner.invoke(app, ["trends", str(ds), "--json", "--baseline-n", "5"])
    assert r.exit_code == 0, r.output
    settings = json.loads(r.stdout)["settings"]
    assert settings["patient"]["rule"] == "region"
    assert settings["trends"]["threshold"] == 3.0 and settings["trends"]["baseline_n"] == 5
    (tmp_path / "fervid.toml").write_text('[longitudinal]\npatient_region = "0,0,2,1"\n')
    bad = runner.invoke(app, ["report", str(ds)])
    assert bad.exit_code == 2 and "fervid.toml [longitudinal] patient_region" in bad.output
    (tmp_path / "fervid.toml").write_text("[longitudinal]\nthreshhold = 3\n")
    bad = runner.invoke(app, ["summarize", str(ds)])
    assert bad.exit_code == 2 and "did you mean 'threshold'" in bad.output, bad.output
    (tmp_path / "fervid.toml").unlink()
    bad = runner.invoke(app, ["summarize", str(ds), "--patient-face", "override"])
    assert bad.exit_code == 2 and "--patient FILE" in bad.output, bad.output
