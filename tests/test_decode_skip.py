"""Skipping the frames no sampling slot takes (PyAV ``skip_frame``) changes no row.

Every clip kind is decoded twice, with and without skipping, and the sampled frames must
be identical: ``frame_index``, ``timestamp_s`` and every pixel. Where the stream has no
frame that nothing references (baseline profile, all-intra, these HEVC samples), nothing
can be skipped, and the count says so.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from fervid.extract.decode import FrameSampler, probe
from fervid.records import Frame
from fervid.settings import SampleSettings

Row = tuple[int, float, bytes]


def _rows(
    path: Path, settings: SampleSettings, *, skip: bool, threads: int = 1, **range_: float
) -> tuple[list[Row], FrameSampler]:
    info = probe(path, backend="pyav")
    sampler = FrameSampler(
        path, settings, info, backend="pyav", threads=threads, skip_unsampled=skip, **range_
    )
    frames: list[Frame] = list(sampler)
    return [(f.frame_index, f.timestamp_s, f.image.tobytes()) for f in frames], sampler


def _b_frames(path: Path) -> int:
    """B-frames (pict_type B) among the decoded frames of ``path``."""
    with av.open(str(path)) as c:
        return sum(f.pict_type == PictureType.B for f in c.decode(video=0))


def _assert_identical(path: Path, settings: SampleSettings, **kwargs: float) -> FrameSampler:
    full, full_sampler = _rows(path, settings, skip=False, **kwargs)
    skipped, sampler = _rows(path, settings, skip=True, **kwargs)
    assert len(full) > 0
    assert [r[:2] for r in skipped] == [r[:2] for r in full]  # frame_index, timestamp_s
    assert all(a[2] == b[2] for a, b in zip(skipped, full, strict=True))  # pixels
    assert sampler.warnings == full_sampler.warnings
    assert full_sampler.frames_skipped == 0
    return sampler


# name -> (make_clip options, any frame skippable at 2 fps)
CLIPS = {
    "b_frames": ({"seconds": 6.0, "fps": 30.0}, True),  # x264 default: 3 B-frames, pyramid
    "b_frames_no_pyramid": (
        {"seconds": 6.0, "fps": 30.0, "options": {"x264-params": "b-pyramid=none"}},
        True,
    ),
    "ntsc_b_frames": ({"seconds": 6.0, "fps": 30000 / 1001}, True),
    "vfr": ({"seconds": 6.0, "fps": 30.0, "vfr": True}, True),
    "baseline": ({"seconds": 6.0, "fps": 30.0, "options": {"profile": "baseline"}}, False),
    "all_intra": ({"seconds": 4.0, "fps": 30.0, "gop": 1}, False),
}


@pytest.mark.parametrize("name", sorted(CLIPS))
@pytest.mark.parametrize("fps", [2.0, 7.0])
def test_generated_clips_give_identical_rows(make_clip, name: str, fps: float) -> None:
    options, skippable = CLIPS[name]
    path = make_clip(f"{name}.mp4", **options)
    if skippable:
        assert _b_frames(path) > 0
    else:
        assert _b_frames(path) == 0
    sampler = _assert_identical(path, SampleSettings(fps=fps))
    if skippable:
        assert sampler.frames_skipped > 0
    else:  # every frame is a reference (or a keyframe): nothing may be left out
        assert sampler.frames_skipped == 0


@pytest.mark.parametrize(
    ("name", "skippable"),
    [
        ("WolfgangLanger_Pexels.mp4", True),
        ("single_face.mp4", True),
        ("carphone_pristine.mp4", True),
        ("no_face.mp4", True),  # MP4 edit list: pre-roll frames flagged discard
        ("face_noface.mov", False),  # HEVC whose every frame is a reference
        ("noface_face.mov", False),
    ],
)
def test_sample_videos_give_identical_rows(sample_dir: Path, name: str, skippable: bool) -> None:
    sampler = _assert_identical(sample_dir / name, SampleSettings(fps=2.0))
    assert (sampler.frames_skipped > 0) == skippable


def test_ranges_and_decoder_threads_give_identical_rows(sample_dir: Path) -> None:
    path = sample_dir / "WolfgangLanger_Pexels.mp4"
    settings = SampleSettings(fps=2.0)
    for range_ in ({"start_s": 10.0, "end_s": 14.0}, {"start_s": 6.5}):
        _assert_identical(path, settings, **range_)
    whole, _ = _rows(path, settings, skip=False)
    threaded, sampler = _rows(path, settings, skip=True, threads=2)
    assert threaded == whole and sampler.frames_skipped > 0


def test_every_frame_wanted_or_every_n_skips_nothing(sample_dir: Path) -> None:
    path = sample_dir / "WolfgangLanger_Pexels.mp4"
    assert _assert_identical(path, SampleSettings(fps=30.0)).frames_skipped == 0
    # every_n depends on a frame's rank, which a packet does not carry: decoded as before
    assert _assert_identical(path, SampleSettings(fps=None, every_n=12)).frames_skipped == 0


def test_damaged_video_falls_back_to_a_full_decode(damaged_video: Path) -> None:
    settings = SampleSettings(fps=2.0)
    full, full_sampler = _rows(damaged_video, settings, skip=False)
    skipped, sampler = _rows(damaged_video, settings, skip=True)
    assert skipped == full
    assert sampler.warnings == full_sampler.warnings and len(sampler.warnings) == 1
    assert np.isfinite([r[1] for r in skipped]).all()
