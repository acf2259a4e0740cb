"""probe() and FrameSampler: facts, timestamp sampling, rotation, backends, broken files."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import frame_number, vfr_times

from fervid.errors import ConfigError, DecodeError
from fervid.extract import decode, decode_decord, filecheck, pyav_seek, sampling
from fervid.extract.decode import Backend, FrameSampler, probe
from fervid.records import Frame, decode_error_count
from fervid.settings import SampleSettings

BACKENDS = ["decord", "pyav"]
NTSC = 30000 / 1001


def _sample(
    path: Path, backend: str = "auto", **settings: object
) -> tuple[list[Frame], FrameSampler]:
    sampler = FrameSampler(path, SampleSettings(**settings), backend=backend)  # type: ignore[arg-type]
    return list(sampler), sampler


def _first_at_or_after(times: list[float], fps: float) -> list[int]:
    """Reference selection: for each target k/fps, the first frame at or after it, once."""
    picked: list[int] = []
    k = 0
    while k / fps <= times[-1] + 1e-9:
        i = next(i for i, t in enumerate(times) if t >= k / fps - 1e-6)
        if not picked or i != picked[-1]:
            picked.append(i)
        k += 1
    return picked


# --------------------------------------------------------------------------- probe
@pytest.mark.parametrize(
    ("name", "width", "height", "fps", "duration_s", "n_frames", "codec", "backend"),
    [
        ("WolfgangLanger_Pexels.mp4", 640, 360, 23.976, 19.69, 472, "h264", "decord"),
        ("single_face.mp4", 640, 360, 30.0, 2.40, 72, "h264", "decord"),
        ("carphone_pristine.mp4", 176, 144, 29.97, 4.00, 120, "h264", "decord"),
        ("face_noface.mov", 960, 540, 26.40, 6.39, 169, "hevc", "decord"),
        ("noface_face.mov", 960, 540, 26.49, 6.35, 169, "hevc", "decord"),
        # MP4 edit list: decord would misalign frames and times, so PyAV reads it.
        ("no_face.mp4", 960, 540, 23.67, 3.94, 98, "h264", "pyav"),
    ],
)
def test_probe_samples(
    sample_dir: Path, name: str, width: int, height: int, fps: float,
    duration_s: float, n_frames: int, codec: str, backend: str,
) -> None:  # fmt: skip
    info = probe(sample_dir / name, backend="auto" if backend == "pyav" else backend)
    assert (info.width, info.height, info.rotation) == (width, height, 0)
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert info.duration_s == pytest.approx(duration_s, abs=0.05)
    assert info.n_frames == n_frames
    assert (info.codec, info.backend) == (codec, backend)


def test_auto_probes_with_pyav_by_default(sample_dir: Path) -> None:
    assert not decode.PREFER_DECORD  # measured in docs/dependencies.md
    assert probe(sample_dir / "single_face.mp4").backend == "pyav"


def test_probe_forced_pyav(sample_dir: Path) -> None:
    info = probe(sample_dir / "single_face.mp4", backend="pyav")
    assert info.backend == "pyav" and info.n_frames == 72 and info.duration_s == pytest.approx(2.4)


# --------------------------------------------------------------------------- timestamps
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("clip", "times"),
    [
        ({"fps": 30.0, "seconds": 3.0}, [i / 30 for i in range(90)]),
        ({"fps": NTSC, "seconds": 4.0}, [i * 1001 / 30000 for i in range(120)]),
        ({"fps": 30.0, "seconds": 3.0, "vfr": True}, vfr_times(90)),
        ({"fps": 25.0, "seconds": 2.0, "codec": "mpeg4"}, [i / 25 for i in range(50)]),
    ],
    ids=["30fps", "29.97fps", "vfr", "mpeg4"],
)
@pytest.mark.parametrize("fps", [2.0, 7.0])
def test_fps_sampling_by_timestamp(
    make_clip, backend: str, clip: dict, times: list[float], fps: float
) -> None:
    path = make_clip("clip.mp4", **clip)
    frames, _ = _sample(path, backend, fps=fps)
    expected = _first_at_or_after(times, fps)
    assert [f.frame_index for f in frames] == expected
    assert [f.timestamp_s for f in frames] == pytest.approx([times[i] for i in expected], abs=1e-3)
    assert [frame_number(f.image) for f in frames] == expected  # the image is that frame


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_on_a_real_30fps_video(sample_dir: Path, backend: str) -> None:
    frames, _ = _sample(sample_dir / "single_face.mp4", backend, fps=2.0)
    ts = np.array([f.timestamp_s for f in frames])
    assert len(frames) == 5 and ts[0] == 0.0
    assert np.diff(ts) == pytest.approx(0.5, abs=1 / 30)
    assert all(f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8 for f in frames)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("every_n", [1, 7, 100])
def test_every_n(make_clip, backend: str, every_n: int) -> None:
    path = make_clip("clip.mp4", fps=30.0, seconds=2.0)
    frames, _ = _sample(path, backend, fps=None, every_n=every_n)
    expected = list(range(0, 60, every_n))
    assert [f.frame_index for f in frames] == expected
    assert [f.timestamp_s for f in frames] == pytest.approx([i / 30 for i in expected], abs=1e-3)
    assert [frame_number(f.image) for f in frames] == expected


# --------------------------------------------------------------------------- size and rotation
# Where the red marker of the stored top-left corner ends up once the player has turned it.
CORNER = {0: (0, 0), 90: (0, -1), 180: (-1, -1), 270: (-1, 0)}


def _corner_patch(image: np.ndarray, corner: tuple[int, int]) -> np.ndarray:
    """The 8x8 patch 4 px inside a corner given as (row, col) in {0, -1}."""
    h, w = image.shape[:2]
    y0 = 4 if corner[0] == 0 else h - 12
    x0 = 4 if corner[1] == 0 else w - 12
    return image[y0 : y0 + 8, x0 : x0 + 8]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_applied(make_clip, backend: str, rotation: int) -> None:
    path = make_clip(f"rot{rotation}.mp4", rotation=rotation, size=(160, 120), seconds=1.0)
    info = probe(path, backend=backend)
    turned = rotation in (90, 270)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((120, 160) if turned else (160, 120))
    frames, _ = _sample(path, backend, fps=2.0)
    image = frames[0].image
    assert image.shape == ((160, 120, 3) if turned else (120, 160, 3))
    b, g, r = _corner_patch(image, CORNER[rotation]).reshape(-1, 3).mean(axis=0)
    assert r > 180 and b < 80 and g < 80, f"red marker not at corner {CORNER[rotation]}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("size", "rotation", "max_side", "shape", "scale"),
    [
        ((160, 120), 0, 80, (60, 80, 3), 0.5),
        ((160, 120), 90, 80, (80, 60, 3), 0.5),
        ((160, 120), 0, 160, (120, 160, 3), 1.0),
        ((160, 120), 0, 4000, (120, 160, 3), 1.0),
        ((320, 176), 0, 100, (55, 100, 3), 100 / 320),
    ],
)
def test_downscale(make_clip, backend, size, rotation, max_side, shape, scale) -> None:
    path = make_clip("clip.mp4", size=size, rotation=rotation, seconds=1.0)
    frames, sampler = _sample(path, backend, fps=2.0, max_side=max_side)
    assert {f.image.shape for f in frames} == {shape}
    assert sampler.scale == pytest.approx(scale)
    assert sampler.frame_size == (shape[1], shape[0])
    assert (sampler.info.width, sampler.info.height) == ((size[1], size[0]) if rotation else size)


# --------------------------------------------------------------------------- backends agree
@pytest.mark.parametrize(
    "name",
    ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "carphone_pristine.mp4",
     "face_noface.mov", "noface_face.mov"],
)  # fmt: skip
def test_decord_and_pyav_agree(sample_dir: Path, name: str) -> None:
    by_decord, s1 = _sample(sample_dir / name, "decord", fps=2.0)
    by_pyav, s2 = _sample(sample_dir / name, "pyav", fps=2.0)
    assert (s1.backend_used, s2.backend_used) == ("decord", "pyav")
    assert [f.frame_index for f in by_decord] == [f.frame_index for f in by_pyav]
    frame_s = 1 / s1.info.fps
    for a, b in zip(by_decord, by_pyav, strict=True):
        assert abs(a.timestamp_s - b.timestamp_s) < frame_s
        assert a.image.shape == b.image.shape
        # Two FFmpeg builds convert YUV->BGR slightly differently; a wrong frame differs a lot.
        assert np.abs(a.image.astype(np.int16) - b.image).mean() < 4
    ts = [f.timestamp_s for f in by_pyav]
    assert ts == sorted(ts) and ts[0] == 0.0


def test_edit_list_video_uses_pyav(sample_dir: Path) -> None:
    path = sample_dir / "no_face.mp4"
    frames, sampler = _sample(path, "auto", fps=2.0)
    assert sampler.backend_used == "pyav"
    assert [f.timestamp_s for f in frames] == pytest.approx([0.5 * k for k in range(8)])
    with pytest.raises(DecodeError, match="edit list"):
        list(FrameSampler(path, SampleSettings(fps=2.0), backend="decord"))


def test_auto_prefers_decord_for_short_keyframe_intervals(sample_dir: Path) -> None:
    _, sampler = _sample(sample_dir / "single_face.mp4", "auto", fps=2.0)
    assert sampler.backend_used == ("decord" if decode.PREFER_DECORD else "pyav")


@pytest.mark.parametrize(
    ("picked", "chunk_size", "expected"),
    [
        ([], 4, []),
        ([0, 5, 10, 15, 20], 4, [([0, 5, 10, 15], True), ([20], True)]),
        ([0, 12, 25], 1, [([0], True), ([12], True), ([25], True)]),
        ([0, 1, 2, 10], 3, [([0, 1, 2], True), ([10], True)]),
        ([0, 1, 2, 3, 4, 5], 4, [([0, 1, 2, 3], False), ([4, 5], True)]),  # one long interval
        ([0, 11, 12, 13, 14, 15], 4, [([0], True), ([11, 12, 13, 14], False), ([15], True)]),
    ],
)
def test_chunks_cover_whole_keyframe_intervals(
    picked: list[int], chunk_size: int, expected: list[tuple[list[int], bool]]
) -> None:
    # keyframes every 10 frames; a chunk may be reset after only when it ends an interval
    assert decode_decord.chunks_by_keyframe(picked, lambda i: i // 10, chunk_size) == expected


@pytest.mark.parametrize(
    ("gop", "fps", "used"),
    [
        (10, 10.0, "decord"),  # 3-4 samples per keyframe interval
        (300, 2.0, "decord"),  # one interval, 6 samples: fits one chunk
        (300, 10.0, "pyav"),  # one interval, 30 samples: decord would read far ahead
    ],
)
def test_auto_backend_follows_keyframe_spacing(
    make_clip, monkeypatch: pytest.MonkeyPatch, gop: int, fps: float, used: str
) -> None:
    monkeypatch.setattr(decode, "PREFER_DECORD", True)
    path = make_clip("clip.mp4", seconds=3.0, fps=30.0, gop=gop)
    frames, sampler = _sample(path, "auto", fps=fps)
    assert sampler.backend_used == used
    assert [frame_number(f.image) for f in frames] == [f.frame_index for f in frames]
    forced, _ = _sample(path, "decord", fps=fps)  # forced decord splits the long interval
    assert [f.frame_index for f in forced] == [f.frame_index for f in frames]


@pytest.mark.usefixtures("decord_fails_on_second_batch")
def test_decord_failing_mid_stream_continues_with_pyav(sample_dir: Path) -> None:
    path = sample_dir / "WolfgangLanger_Pexels.mp4"
    reference, _ = _sample(path, "pyav", fps=2.0)
    frames, sampler = _sample(path, "auto", fps=2.0)
    assert sampler.backend_used == "decord+pyav"
    assert [f.frame_index for f in frames] == [f.frame_index for f in reference]
    assert [f.timestamp_s for f in frames] == pytest.approx(
        [f.timestamp_s for f in reference], abs=1e-4
    )
    assert len(sampler.warnings) == 1 and "continued with PyAV" in sampler.warnings[0]


def test_iterating_twice_decodes_again(sample_dir: Path) -> None:
    sampler = FrameSampler(sample_dir / "single_face.mp4", SampleSettings(fps=1.0))
    first = [(f.frame_index, f.timestamp_s) for f in sampler]
    assert (
        first
        == [(f.frame_index, f.timestamp_s) for f in sampler]
        == [(0, 0.0), (30, 1.0), (60, 2.0)]
    )


def test_unknown_backend_is_a_config_error(sample_dir: Path) -> None:
    with pytest.raises(ConfigError, match="expected one of auto, decord, pyav"):
        probe(sample_dir / "single_face.mp4", backend="opencv")
    assert Backend.parse("pyav") is Backend.PYAV


# --------------------------------------------------------------------------- broken files
@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("empty_video", "file is empty (0 bytes)"),
        ("text_video", "not a video or unknown format"),
        ("audio_only_file", "no video stream (audio-only file?)"),
        ("missing_file", "file not found"),
        ("folder", "is not a regular file"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_bad_files(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str, message: str, backend: str
) -> None:
    if fixture == "missing_file":
        path = tmp_path / "gone.mp4"
    elif fixture == "folder":
        path = tmp_path / "dir.mp4"
        path.mkdir()
    else:
        path = request.getfixturevalue(fixture)
    with pytest.raises(DecodeError) as err:
        probe(path, backend=backend)
    text = str(err.value)
    assert message in text and "\n" not in text
    # the file's name, never its folders (they land in the videos table's error column)
    assert text.startswith(f"{path.name}: ") and str(tmp_path) not in text
    with pytest.raises(DecodeError, match=re.escape(message)):
        FrameSampler(path, SampleSettings(fps=2.0), backend=backend)


def test_wav_without_video(make_clip) -> None:
    with pytest.raises(DecodeError, match=r"no video stream \(audio-only file\?\)"):
        probe(make_clip("voice.wav", audio_only=True))


def test_permission_denied_simulated(make_clip, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_clip("locked.mp4", seconds=1.0)
    real_open = open

    def deny(p, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(p) == path:
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, *args, **kwargs)

    monkeypatch.setattr(filecheck, "open", deny, raising=False)  # as chmod 000 does for non-root
    with pytest.raises(DecodeError, match="permission denied; make the file readable"):
        probe(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(make_clip) -> None:
    path = make_clip("locked.mp4", seconds=1.0)
    path.chmod(0)
    try:
        with pytest.raises(DecodeError, match="permission denied"):
            probe(path)
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_truncated_file_yields_frames_and_a_warning(truncated_video: Path, backend: str) -> None:
    frames, sampler = _sample(truncated_video, backend, fps=2.0)
    assert sampler.backend_used == "pyav"  # decord cannot even index a cut-off file
    ts = [f.timestamp_s for f in frames]
    assert len(frames) == 16 and ts == sorted(ts) and 7.0 < ts[-1] < 8.0
    assert sampler.warnings == ["decoding stopped at 7.5 s of 19.7 s: file truncated?"]


def test_truncated_file_with_forced_decord_fails_clearly(truncated_video: Path) -> None:
    with pytest.raises(DecodeError, match="decord cannot read it"):
        probe(truncated_video, backend="decord")


def test_no_decodable_frame_raises(make_clip) -> None:
    path = make_clip("zeroed.mp4", seconds=2.0)
    data = bytearray(path.read_bytes())
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") - 4  # PyAV writes the index after the coded frames
    data[start:end] = bytes(end - start)  # wipe every coded frame, keep the index
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="no frame could be decoded"):
        list(FrameSampler(path, SampleSettings(fps=2.0), backend="pyav"))


def test_unicode_path(unicode_video: Path) -> None:
    frames, _ = _sample(unicode_video, "auto", fps=2.0)
    assert [f.frame_index for f in frames] == [0, 15, 30, 45]


def test_selector_tolerates_float32_times() -> None:
    # decord reports float32 seconds: 0.5 s may arrive as 0.49999997.
    sel = sampling.Selector(SampleSettings(fps=2.0))
    taken = [
        sel.take(i, float(np.float32(t))) for i, t in enumerate([0.0, 0.25, 0.5 - 3e-8, 0.75, 1.0])
    ]
    assert taken == [True, False, True, False, True]
    assert math.isclose(sampling.TIME_TOL_S, 5e-4)


# --------------------------------------------------------------------------- damage, seeking
@pytest.mark.parametrize("backend", BACKENDS)
def test_damaged_video_reports_its_decode_errors(damaged_video: Path, backend: str) -> None:
    frames, sampler = _sample(damaged_video, backend, fps=2.0)
    assert sampler.backend_used == backend  # concealed, not fatal: no fallback
    assert len(frames) == 40  # every sampled frame still comes out
    (warning,) = sampler.warnings
    assert decode_error_count(sampler.warnings) >= 10, warning
    m = re.match(r"(\d+) decode errors between ([\d.]+) s and ([\d.]+) s", warning)
    assert m, warning
    assert 5.0 <= float(m.group(2)) <= float(m.group(3)) <= 14.0  # bytes 40-60 %: ~8-12 s


@pytest.mark.parametrize("backend", BACKENDS)
def test_clean_video_has_no_decode_errors(sample_dir: Path, backend: str) -> None:
    _, sampler = _sample(sample_dir / "WolfgangLanger_Pexels.mp4", backend, fps=2.0)
    assert sampler.warnings == [] and decode_error_count(sampler.warnings) == 0


def test_damage_is_counted_once_across_chunks(damaged_video: Path) -> None:
    info = probe(damaged_video, backend="pyav")
    whole = FrameSampler(damaged_video, SampleSettings(fps=2.0), info, backend="pyav")
    list(whole)
    parts = []
    for a, b in [(0.0, 9.0), (9.0, None)]:
        s = FrameSampler(damaged_video, SampleSettings(fps=2.0), info, backend="pyav",
                         start_s=a, end_s=b)  # fmt: skip
        list(s)
        parts += s.warnings
    assert len(parts) == 2  # each chunk names its own range, so a merge keeps both
    assert decode_error_count(parts) == decode_error_count(whole.warnings)


def _read_bytes_during(fn) -> int:
    def rchar() -> int:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))

    before = rchar()
    fn()
    return rchar() - before


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_pyav_range_seeks_by_the_index_and_reads_only_its_part(
    make_clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A late range of a clip seeks by the container's index: it reads far less than the
    demux plan (which reads the file from the start up to the range), and yields exactly
    the frames an unbounded run yields there."""
    path = make_clip("long.mp4", seconds=60.0, fps=30.0, size=(320, 240), gop=30)
    info = probe(path, backend="pyav")
    settings = SampleSettings(fps=2.0)

    def late_range() -> list[Frame]:
        return list(FrameSampler(path, settings, info, backend="pyav", start_s=50.0, end_s=55.0))

    late: list[Frame] = []
    by_index = _read_bytes_during(lambda: late.extend(late_range()))
    whole = list(FrameSampler(path, settings, info, backend="pyav"))
    expected = [(f.frame_index, f.timestamp_s) for f in whole if 50.0 <= f.timestamp_s < 55.0]
    assert [(f.frame_index, f.timestamp_s) for f in late] == expected
    monkeypatch.setattr(pyav_seek, "index_dts", lambda stream: None)  # the demux plan instead
    planned: list[Frame] = []
    by_plan = _read_bytes_during(lambda: planned.extend(late_range()))
    assert [(f.frame_index, f.timestamp_s) for f in planned] == expected
    # the file header (~85 kB here) is read either way; the plan also reads 50 s of frames
    assert by_index < 0.5 * by_plan, (by_index, by_plan, path.stat().st_size)


def test_edit_list_video_falls_back_to_the_demux_plan(sample_dir: Path) -> None:
    path = sample_dir / "no_face.mp4"  # MP4 edit list: pre-roll frames flagged discard
    info = probe(path, backend="pyav")
    settings = SampleSettings(fps=2.0)
    whole = [
        (f.frame_index, f.timestamp_s) for f in FrameSampler(path, settings, info, backend="pyav")
    ]
    late = FrameSampler(path, settings, info, backend="pyav", start_s=1.5)
    assert [(f.frame_index, f.timestamp_s) for f in late] == [w for w in whole if w[1] >= 1.5]


@pytest.mark.parametrize(
    ("still", "kind"), [("single_face.jpg", "JPEG"), ("multi_face.jpg", "JPEG")]
)
def test_still_image_renamed_mp4_is_not_a_video(
    sample_dir: Path, tmp_path: Path, still: str, kind: str
) -> None:
    path = tmp_path / "session.mp4"
    path.write_bytes((sample_dir / "stills" / still).read_bytes())
    with pytest.raises(
        DecodeError, match=rf"session.mp4: is a still image \({kind}\), not a video"
    ):
        probe(path)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "PNG"),
        (b"GIF89a" + bytes(10), "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC"),
        (b"%PDF-1.7\n", "PDF document"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", None),  # an ordinary MP4
        (b"\x1aE\xdf\xa3", None),  # Matroska
    ],
)
def test_still_kind(head: bytes, kind: str | None) -> None:
    assert filecheck.still_kind(head) == kind
