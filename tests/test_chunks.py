"""Time chunks of one video: FrameSampler ranges, plan_chunks, merge_video_faces, executors.

The contract under test: chunks sample on the whole video's grid, so the chunks of a
video, concatenated, give exactly the frames (indices, timestamps, pixels) and the
detections of an unchunked run, whatever the boundaries and the decoder.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import frame_number
from helpers_model import DEBUG_SPEC, ray_session  # noqa: F401  (fixture)

from fervid.engine.runner import (
    LocalExecutor,
    RayExecutor,
    extract_video,
    merge_video_faces,
    plan_chunks,
)
from fervid.engine import runner as engine
from fervid.errors import ConfigError, DecodeError
from fervid.extract import decode
from fervid.extract.decode import FrameSampler, probe
from fervid.records import Frame, VideoFaces, VideoInfo, VideoInput
from fervid.settings import RunSettings, SampleSettings

NTSC = 30000 / 1001
WOLF = "WolfgangLanger_Pexels.mp4"  # 19.7 s, 23.976 fps, keyframes every 3 s


def _info(duration_s: float) -> VideoInfo:
    return VideoInfo(width=640, height=360, fps=30.0, duration_s=duration_s, n_frames=0)


# --------------------------------------------------------------------------- plan_chunks
@pytest.mark.parametrize(
    ("duration_s", "chunk_seconds", "expected"),
    [
        (19.69, 5.0, [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, None)]),
        (12.4, 5.0, [(0.0, 5.0), (5.0, None)]),  # a 2.4 s remainder joins the last chunk
        (12.5, 5.0, [(0.0, 5.0), (5.0, 10.0), (10.0, None)]),  # half a chunk: its own
        (449.0, 300.0, [(0.0, None)]),  # under 1.5 chunks: one
        (451.0, 300.0, [(0.0, 300.0), (300.0, None)]),
        (3.0, 5.0, [(0.0, None)]),
        (19.69, 0.0, [(0.0, None)]),  # 0 disables chunking
        (0.0, 5.0, [(0.0, None)]),  # duration unknown
        (math.inf, 5.0, [(0.0, None)]),
    ],
)
def test_plan_chunks(
    duration_s: float, chunk_seconds: float, expected: list[tuple[float, float | None]]
) -> None:
    assert plan_chunks(_info(duration_s), chunk_seconds) == expected


def test_plan_chunks_of_a_two_hour_recording() -> None:
    chunks = plan_chunks(_info(7200.0), 300.0)
    assert len(chunks) == 24 and chunks[0] == (0.0, 300.0) and chunks[-1] == (6900.0, None)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))  # no gaps


@pytest.mark.parametrize("chunk_seconds", [-5.0, 0.5, math.nan, math.inf])
def test_plan_chunks_rejects_bad_lengths(chunk_seconds: float) -> None:
    with pytest.raises(ConfigError, match=r"--chunk-seconds=.*expected 0 \(no chunking\)"):
        plan_chunks(_info(60.0), chunk_seconds)


def test_chunk_seconds_is_structural() -> None:
    a = RunSettings(inputs=(Path("v"),), out=Path("o"))
    b = RunSettings(inputs=(Path("v"),), out=Path("o"), chunk_seconds=5.0)
    assert a.chunk_seconds == 300.0 and b.to_json()["chunk_seconds"] == 5.0
    assert a.settings_hash("m") == b.settings_hash("m")


# --------------------------------------------------------------------------- FrameSampler ranges
def _chunked(
    path: Path, settings: SampleSettings, bounds: list[float], backend: str
) -> tuple[list[Frame], list[Frame], list[str], list[list[Frame]]]:
    """(unchunked frames, chunks concatenated, chunk warnings de-duplicated, per chunk)."""
    info = probe(path)
    whole = list(FrameSampler(path, settings, info, backend=backend))
    edges: list[float | None] = [0.0, *bounds, None]
    per_chunk, warnings = [], []
    for a, b in itertools.pairwise(edges):
        assert a is not None
        sampler = FrameSampler(path, settings, info, backend=backend, start_s=a, end_s=b)
        per_chunk.append(list(sampler))
        warnings += [w for w in sampler.warnings if w not in warnings]
    return whole, [f for chunk in per_chunk for f in chunk], warnings, per_chunk


def _assert_same_frames(whole: list[Frame], chunked: list[Frame]) -> None:
    assert [f.frame_index for f in chunked] == [f.frame_index for f in whole]
    assert [f.timestamp_s for f in chunked] == [f.timestamp_s for f in whole]  # exact
    for a, b in zip(whole, chunked, strict=True):
        assert np.array_equal(a.image, b.image), f"frame {a.frame_index} decoded differently"


def _boundaries(whole: list[Frame], where: str) -> list[float]:
    """Three boundaries at a quarter, half and three quarters of the samples: exactly on a
    sample's timestamp, or halfway between two consecutive samples."""
    picks = [len(whole) // 4, len(whole) // 2, 3 * len(whole) // 4]
    if where == "on_samples":
        return [whole[k].timestamp_s for k in picks]
    return [(whole[k - 1].timestamp_s + whole[k].timestamp_s) / 2 for k in picks]


SAMPLINGS = {
    "fps2": SampleSettings(fps=2.0),
    "fps7": SampleSettings(fps=7.0),
    "every7": SampleSettings(fps=None, every_n=7),
}


@pytest.mark.parametrize("where", ["on_samples", "between_samples"])
@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_chunks_of_a_29_97_fps_clip_equal_the_whole(
    make_clip, backend: str, sampling: str, where: str
) -> None:
    # keyframes every 12 frames, so chunks start mid-video at a seek, not at frame 0
    path = make_clip("ntsc.mp4", fps=NTSC, seconds=4.0, gop=12)
    settings = SAMPLINGS[sampling]
    reference = list(FrameSampler(path, settings, backend=backend))
    bounds = _boundaries(reference, where)
    whole, chunked, warnings, per_chunk = _chunked(path, settings, bounds, backend)
    _assert_same_frames(whole, chunked)
    assert [frame_number(f.image) for f in chunked] == [f.frame_index for f in chunked]
    assert warnings == []
    edges = [-math.inf, *bounds, math.inf]
    for k, frames in enumerate(per_chunk):  # each frame in the chunk whose range holds it
        assert frames, f"chunk {k} is empty"
        assert all(edges[k] - 1e-3 <= f.timestamp_s < edges[k + 1] - 1e-4 for f in frames)


@pytest.mark.parametrize(
    ("name", "backend", "where"),
    [
        (WOLF, "decord", "on_samples"),
        (WOLF, "pyav", "on_samples"),
        (WOLF, "decord", "between_samples"),
        (WOLF, "pyav", "between_samples"),
        ("face_noface.mov", "pyav", "on_samples"),  # HEVC with B-frames
        ("no_face.mp4", "auto", "between_samples"),  # MP4 edit list: PyAV, pre-roll dropped
    ],
)
def test_chunks_of_a_real_video_equal_the_whole(
    sample_dir: Path, name: str, backend: str, where: str
) -> None:
    path = sample_dir / name
    settings = SampleSettings(fps=2.0)
    reference = list(FrameSampler(path, settings, backend=backend))
    whole, chunked, warnings, _ = _chunked(path, settings, _boundaries(reference, where), backend)
    _assert_same_frames(whole, chunked)
    assert warnings == []


def test_chunks_every_n_on_a_real_video(sample_dir: Path) -> None:
    # 7.007 s and 12.012 s: boundaries on frames 168 and 288 exactly (a keyframe for 288)
    settings = SampleSettings(fps=None, every_n=24)
    for backend in ("decord", "pyav"):
        whole, chunked, _, per_chunk = _chunked(
            sample_dir / WOLF, settings, [168 * 1001 / 24000, 12.012], backend
        )
        _assert_same_frames(whole, chunked)
        assert [f.frame_index for f in per_chunk[1]] == [168, 192, 216, 240, 264]


def test_pyav_range_seeks_to_the_keyframe_before_it(sample_dir: Path) -> None:
    # keyframes at 0, 3.003, 6.006, 9.009, 12.012, ... s (pts in 1/24000 s)
    plan = decode._seek_plan(sample_dir / WOLF, 10.0 - decode.TIME_TOL_S, 14.0)
    assert plan is not None
    assert plan.seek_pts == 216216  # 9.009 s
    assert plan.first_pts == 240240  # 10.010 s, frame 240: the first at or after 10 s
    assert int(np.searchsorted(plan.pts, plan.first_pts)) == 240
    assert plan.times[-1] > 15.0  # indexed past the range end, not to the end of the file


@pytest.mark.parametrize("failure", ["seek_missed", "unindexable"])
def test_pyav_range_falls_back_to_decoding_from_the_start(
    sample_dir: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    path = sample_dir / WOLF
    settings = SampleSettings(fps=2.0)
    reference = list(FrameSampler(path, settings, backend="pyav", start_s=10.0, end_s=14.0))
    real_plan = decode._seek_plan

    def broken_plan(p: Path, lo: float, hi: float) -> decode._SeekPlan | None:
        plan = real_plan(p, lo, hi)
        assert plan is not None
        if failure == "unindexable":  # e.g. a raw stream whose packets carry no timestamps
            return None
        return decode._SeekPlan(  # a seek that lands past the range's first frame
            pts=plan.pts, times=plan.times, seek_pts=288288, first_pts=plan.first_pts
        )

    monkeypatch.setattr(decode, "_seek_plan", broken_plan)
    sampler = FrameSampler(path, settings, backend="pyav", start_s=10.0, end_s=14.0)
    frames = list(sampler)
    _assert_same_frames(reference, frames)
    assert [f.timestamp_s for f in frames] == pytest.approx([10.01, 10.51, 11.01, 11.51,
                                                             12.01, 12.51, 13.01, 13.51],
                                                            abs=0.03)  # fmt: skip
    assert sampler.warnings == []


def test_truncated_file_chunks_match_the_whole(truncated_video: Path) -> None:
    # decodes until 7.5 s of 19.7 s; later chunks find nothing and report the same stop
    whole, chunked, warnings, per_chunk = _chunked(
        truncated_video, SampleSettings(fps=2.0), [5.0, 10.0, 15.0], "auto"
    )
    _assert_same_frames(whole, chunked)
    assert warnings == ["decoding stopped at 7.5 s of 19.7 s: file truncated?"]
    assert [len(c) for c in per_chunk] == [10, 6, 0, 0]


@pytest.mark.usefixtures("decord_fails_on_second_batch")
def test_decord_failing_inside_a_range_continues_with_pyav(sample_dir: Path) -> None:
    path = sample_dir / WOLF
    settings = SampleSettings(fps=2.0)
    reference = list(FrameSampler(path, settings, backend="pyav", start_s=5.0, end_s=15.0))
    sampler = FrameSampler(path, settings, backend="auto", start_s=5.0, end_s=15.0)
    frames = list(sampler)
    assert sampler.backend_used == "decord+pyav"
    assert [f.frame_index for f in frames] == [f.frame_index for f in reference]
    assert len(sampler.warnings) == 1 and "continued with PyAV" in sampler.warnings[0]


@pytest.mark.parametrize(
    ("start_s", "end_s", "message"),
    [
        (-1.0, None, "start_s=-1.0; expected a finite time >= 0"),
        (math.nan, None, "start_s=nan"),
        (5.0, 5.0, r"end_s=5.0; expected None \(to the end\) or a time > start_s=5.0"),
        (5.0, 2.0, "end_s=2.0"),
        (0.0, math.nan, "end_s=nan"),
    ],
)
def test_range_validation(
    sample_dir: Path, start_s: float, end_s: float | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        FrameSampler(sample_dir / WOLF, SampleSettings(), start_s=start_s, end_s=end_s)


def test_empty_later_range_is_not_an_error_but_a_first_one_is(make_clip) -> None:
    path = make_clip("clip.mp4", seconds=2.0, fps=30.0)
    settings = SampleSettings(fps=None, every_n=100)  # only frame 0 is sampled
    sampler = FrameSampler(path, settings, start_s=0.5, end_s=1.5)
    assert list(sampler) == [] and sampler.warnings == []
    zeroed = make_clip("zeroed.mp4", seconds=2.0)
    data = bytearray(zeroed.read_bytes())
    start, end = data.index(b"mdat") + 4, data.index(b"moov") - 4
    data[start:end] = bytes(end - start)  # wipe every coded frame
    zeroed.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="no frame could be decoded"):
        list(FrameSampler(zeroed, SampleSettings(), backend="pyav", end_s=1.0))


# --------------------------------------------------------------------------- merge_video_faces
def _part(video_id: str, indices: list[int], *, faces: int = 1, warnings=(), seconds=None):
    k = len(indices)
    video = VideoInput(path=Path("v.mp4"), video_id=video_id, rel_path="v.mp4", size_bytes=1)
    return VideoFaces(
        video=video, info=_info(10.0),
        sampled_frame_index=np.asarray(indices, np.int64),
        sampled_timestamp_s=np.asarray(indices, np.float64) / 30,
        frame_index=np.repeat(np.asarray(indices, np.int64), faces),
        timestamp_s=np.repeat(np.asarray(indices, np.float64) / 30, faces),
        boxes=np.ones((k * faces, 4), np.float32), det_scores=np.ones(k * faces, np.float32),
        crops=np.zeros((k * faces, 32, 32), np.uint8),
        warnings=tuple(warnings), seconds=dict(seconds or {}),
    )  # fmt: skip


def test_merge_concatenates_in_order() -> None:
    merged = merge_video_faces(
        [
            _part("a", [0, 15], warnings=["w1"], seconds={"extract": 1.0, "decode": 0.5}),
            _part("a", [], faces=0, warnings=["w1"], seconds={"extract": 0.25}),
            _part("a", [30, 45], faces=2, warnings=["w2"], seconds={"extract": 2.0}),
        ]
    )
    assert merged.sampled_frame_index.tolist() == [0, 15, 30, 45]
    assert merged.frame_index.tolist() == [0, 15, 30, 30, 45, 45]
    assert merged.crops.shape == (6, 32, 32) and merged.boxes.shape == (6, 4)
    assert merged.warnings == ("w1", "w2")
    assert merged.seconds == {"extract": 3.25, "decode": 0.5}


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], "parts is empty"),
        ([_part("a", [0]), _part("b", [30])], "parts come from 2 videos"),
        ([_part("a", [30]), _part("a", [0])], "out of order"),
        ([_part("a", [0, 15]), _part("a", [15, 30])], "overlap"),
    ],
)
def test_merge_rejects(parts: list[VideoFaces], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_video_faces(parts)


# --------------------------------------------------------------------------- engine
def _video(path: Path) -> VideoInput:
    return VideoInput(
        path=path, video_id=path.stem, rel_path=path.name, size_bytes=path.stat().st_size
    )


def _settings(tmp_path: Path, chunk_seconds: float, fps: float = 2.0) -> RunSettings:
    return RunSettings(
        inputs=(tmp_path,), out=tmp_path / "out", chunk_seconds=chunk_seconds,
        sample=SampleSettings(fps=fps),
    )  # fmt: skip


def _assert_same_faces(a: VideoFaces, b: VideoFaces) -> None:
    for name in ("sampled_frame_index", "sampled_timestamp_s", "frame_index", "timestamp_s",
                 "boxes", "det_scores", "crops"):  # fmt: skip
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.video, a.info, a.warnings) == (b.video, b.info, b.warnings)


def test_chunked_extraction_equals_unchunked(sample_dir: Path, tmp_path: Path) -> None:
    video = _video(sample_dir / WOLF)
    whole = extract_video(video, _settings(tmp_path, 0.0, fps=1.0), DEBUG_SPEC)
    assert whole.n_faces >= 15  # the test means something only with faces found

    settings = _settings(tmp_path, 5.0, fps=1.0)
    info = probe(video.path)
    chunks = plan_chunks(info, settings.chunk_seconds)
    assert len(chunks) == 4
    parts = [
        extract_video(video, settings, DEBUG_SPEC, start_s=a, end_s=b, info=info) for a, b in chunks
    ]
    assert all(len(p.sampled_frame_index) for p in parts)
    _assert_same_faces(merge_video_faces(parts), whole)

    (v, outcome), = LocalExecutor(settings, DEBUG_SPEC, None).extract([video])  # fmt: skip
    assert v == video and isinstance(outcome, VideoFaces)
    _assert_same_faces(outcome, whole)
    assert outcome.seconds["extract"] >= sum(p.seconds["extract"] for p in parts) * 0.5


def test_local_executor_failures_stay_per_video(
    sample_dir: Path, tmp_path: Path, text_video: Path
) -> None:
    videos = [_video(text_video), _video(sample_dir / "single_face.mp4")]
    out = list(LocalExecutor(_settings(tmp_path, 1.0), DEBUG_SPEC, None).extract(videos))
    assert [v for v, _ in out] == videos
    assert isinstance(out[0][1], DecodeError) and "not a video" in str(out[0][1])
    assert isinstance(out[1][1], VideoFaces) and out[1][1].sampled_frame_index.tolist() == [
        0, 15, 30, 45, 60,
    ]  # fmt: skip


def test_bad_chunk_seconds_fails_the_run_not_each_video(tmp_path: Path) -> None:
    # Refused when the run's settings are built, before any executor or video exists.
    with pytest.raises(ConfigError, match=r"--chunk-seconds=-1\.0"):
        _settings(tmp_path, -1.0)


def test_local_executor_a_failed_chunk_fails_its_video(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_extract = engine.extract_video
    starts: list[float] = []

    def failing_third_chunk(video: VideoInput, *args: Any, **kwargs: Any) -> VideoFaces:
        starts.append(kwargs["start_s"])
        if kwargs["start_s"] == 2.0:
            raise DecodeError("simulated failure in the third chunk")
        return real_extract(video, *args, **kwargs)

    monkeypatch.setattr(engine, "extract_video", failing_third_chunk)
    videos = [_video(sample_dir / "single_face.mp4"), _video(sample_dir / "no_face.mp4")]
    out = list(LocalExecutor(_settings(tmp_path, 1.0), DEBUG_SPEC, None).extract(videos))
    # 2.4 s: 2 chunks, fine; 3.9 s: 4 chunks, the third fails and the fourth never runs
    assert starts == [0.0, 1.0, 0.0, 1.0, 2.0]
    assert [type(o).__name__ for _, o in out] == ["VideoFaces", "DecodeError"]
    assert "third chunk" in str(out[1][1])


class _FakeRef:
    def __init__(self, seq: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.seq, self.fn, self.args = seq, fn, args


class _FakeRay:
    """Ray's API as RayExecutor.extract uses it, in-process: tasks finish in the order they
    were submitted. Records the most tasks in flight and the cancelled ones."""

    def __init__(self, probe: Callable[[Path], Any]) -> None:
        self.probe, self.seq, self.max_in_flight = probe, 0, 0
        self.in_flight: set[_FakeRef] = set()
        self.cancelled: list[tuple[Any, ...]] = []

    def remote(self, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        ray = self

        def wrap(fn: Callable[..., Any]) -> Any:
            target = ray.probe if fn is engine._probe_task else fn

            class Remote:
                @staticmethod
                def remote(*args: Any) -> _FakeRef:
                    ray.seq += 1
                    ref = _FakeRef(ray.seq, target, args)
                    ray.in_flight.add(ref)
                    ray.max_in_flight = max(ray.max_in_flight, len(ray.in_flight))
                    return ref

            return Remote

        return wrap

    def put(self, value: Any) -> Any:
        return value

    def wait(self, refs: list[_FakeRef], num_returns: int) -> tuple[list[_FakeRef], list]:
        first = min(refs, key=lambda r: r.seq)
        self.in_flight.discard(first)
        return [first], [r for r in refs if r is not first]

    def get(self, ref: _FakeRef) -> Any:
        return ref.fn(*ref.args)

    def cancel(self, ref: _FakeRef) -> None:
        self.cancelled.append(ref.args[3:5])


def test_ray_executor_schedules_chunks_and_cancels_a_failed_video(tmp_path: Path) -> None:
    durations = {"a.mp4": 15.0, "b.mp4": 10.0, "c.mp4": 5.0}  # 3, 2 and 1 chunks of 5 s

    def probe_task(path: Path) -> tuple[VideoInfo, float] | Exception:
        if path.name == "c.mp4":
            return DecodeError(f"{path}: not a video or unknown format")
        return _info(durations[path.name]), 0.5

    def extract_task(video, settings, spec, start_s, end_s, info) -> VideoFaces | Exception:
        if video.video_id == "a" and start_s == 5.0:
            return DecodeError("simulated failure in a's second chunk")
        first = round(start_s * 30)
        return _part(video.video_id, [first, first + 15], seconds={"extract": 1.0})

    fake = _FakeRay(probe_task)
    executor = RayExecutor.__new__(RayExecutor)  # no Ray: the fake stands in for it
    executor._ray, executor.workers = fake, 2
    executor.settings, executor.spec = _settings(tmp_path, 5.0), DEBUG_SPEC
    executor._task = fake.remote(num_cpus=1)(extract_task)
    videos = [
        VideoInput(path=tmp_path / f"{n}.mp4", video_id=n, rel_path=f"{n}.mp4", size_bytes=1)
        for n in ("a", "b", "c")
    ]
    out = [(v.video_id, o) for v, o in executor.extract(videos)]

    # b's chunks go before c's probe: earlier videos finish first
    assert [(vid, type(o).__name__) for vid, o in out] == [
        ("a", "DecodeError"), ("b", "VideoFaces"), ("c", "DecodeError"),
    ]  # fmt: skip
    assert "second chunk" in str(out[0][1]) and "not a video" in str(out[2][1])
    assert fake.max_in_flight == 2  # never more than `workers`
    assert fake.cancelled == [(10.0, None)]  # a's third chunk was in flight when a failed
    b = out[1][1]
    assert isinstance(b, VideoFaces)
    assert b.sampled_frame_index.tolist() == [0, 15, 150, 165]  # both chunks, in order
    assert b.seconds["extract"] == 2.5  # two chunks plus the probe


@pytest.mark.slow
def test_ray_executor_chunks_equal_local(
    ray_session: None,  # noqa: F811
    sample_dir: Path,
    tmp_path: Path,
    text_video: Path,
) -> None:
    settings = _settings(tmp_path, 5.0)
    videos = [_video(sample_dir / WOLF), _video(text_video), _video(sample_dir / "no_face.mp4")]
    executor = RayExecutor(settings, DEBUG_SPEC, None)
    try:
        got = {v.video_id: outcome for v, outcome in executor.extract(videos)}
    finally:
        executor.close()
    assert sorted(got) == sorted(v.video_id for v in videos)
    assert isinstance(got["notes"], DecodeError)
    for v in (videos[0], videos[2]):
        expected = extract_video(v, _settings(tmp_path, 0.0), DEBUG_SPEC)
        result = got[v.video_id]
        assert isinstance(result, VideoFaces)
        _assert_same_faces(result, expected)
