"""Time chunks of one video: FrameSampler ranges, plan_chunks, merge_video_faces, executors.

The contract under test: chunks sample on the whole video's grid, so the chunks of a
video, concatenated, give exactly the frames (indices, timestamps, pixels) and the
detections of an unchunked run, whatever the boundaries and the decoder.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import frame_number
from helpers_model import DEBUG_SPEC, make_debug_model, ray_session  # noqa: F401  (fixture)

from fervid.engine import runner as engine
from fervid.engine.model_ref import ModelRef, model_ref
from fervid.engine.ray_executor import ClassifiedChunk, RayExecutor
from fervid.engine.runner import (
    ChunkDone,
    ChunkFailed,
    ChunkTask,
    LocalExecutor,
    extract_video,
    merge_video_faces,
    plan_chunks,
    without_crops,
)
from fervid.errors import ConfigError, DecodeError
from fervid.extract import pyav_seek
from fervid.extract.decode import FrameSampler, probe
from fervid.extract.sampling import TIME_TOL_S
from fervid.records import Frame, VideoFaces, VideoInfo, VideoInput
from fervid.settings import ClassifySettings, ExecutorKind, RunSettings, SampleSettings

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


@pytest.mark.parametrize(
    ("chunk_seconds", "duration_s", "workers", "expected"),
    [
        (300.0, 60.0, 2, 30.0),  # a minute: one chunk for each of two cores
        (300.0, 120.0, 1, 30.0),  # 2 minutes: two chunks each, even with one worker
        (300.0, 120.0, 2, 30.0),
        (300.0, 150.0, 2, 37.5),  # two each, not five (one worker would idle)
        (300.0, 180.0, 2, 30.0),  # 3 minutes: three chunks per worker
        (300.0, 600.0, 2, 100.0),  # three chunks per worker: the classifier's tail is short
        (300.0, 600.0, 16, 37.5),  # one each: three would be under MIN_SPLIT_SECONDS
        (300.0, 400.0, 16, 30.0),  # never shorter than MIN_SPLIT_SECONDS
        (300.0, 7200.0, 2, 300.0),
        (2.0, 19.7, 2, 2.0),  # --chunk-seconds shorter than that is kept
        (0.0, 7200.0, 2, 0.0),  # 0: never split
        (300.0, 0.0, 2, 300.0),  # duration unknown
    ],
)
def test_chunk_length_spreads_a_video_over_the_workers(
    chunk_seconds: float, duration_s: float, workers: int, expected: float
) -> None:
    assert engine.chunk_length(chunk_seconds, duration_s, workers) == expected


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
    plan = pyav_seek.seek_plan(sample_dir / WOLF, 10.0 - TIME_TOL_S, 14.0)
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
    real_plan = pyav_seek.seek_plan

    def broken_plan(p: Path, lo: float, hi: float) -> pyav_seek.SeekPlan | None:
        plan = real_plan(p, lo, hi)
        assert plan is not None
        if failure == "unindexable":  # e.g. a raw stream whose packets carry no timestamps
            return None
        return pyav_seek.SeekPlan(  # a seek that lands past the range's first frame
            pts=plan.pts, times=plan.times, seek_pts=288288, first_pts=plan.first_pts
        )

    monkeypatch.setattr(pyav_seek, "seek_plan", broken_plan)
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


def _settings(tmp_path: Path, chunk_seconds: float, fps: float = 2.0, **kw: Any) -> RunSettings:
    return RunSettings(
        inputs=(tmp_path,), out=tmp_path / "out", chunk_seconds=chunk_seconds,
        sample=SampleSettings(fps=fps), **kw,
    )  # fmt: skip


def _tasks(video: VideoInput, chunk_seconds: float, info: VideoInfo | None = None) -> list:
    info = info or probe(video.path)
    plan = plan_chunks(info, chunk_seconds)
    return [
        ChunkTask(video=video, info=info, index=k, count=len(plan), start_s=a, end_s=b)
        for k, (a, b) in enumerate(plan)
    ]


def _assert_same_faces(a: VideoFaces, b: VideoFaces, *, crops: bool = True) -> None:
    names = ["sampled_frame_index", "sampled_timestamp_s", "frame_index", "timestamp_s",
             "boxes", "det_scores"] + (["crops"] if crops else [])  # fmt: skip
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.video, a.info, a.warnings) == (b.video, b.info, b.warnings)


@pytest.fixture(scope="module")
def debug_model(tmp_path_factory: pytest.TempPathFactory) -> ModelRef:
    path = make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")
    return model_ref(path)


def test_chunked_extraction_equals_unchunked(
    sample_dir: Path, tmp_path: Path, debug_model: ModelRef
) -> None:
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

    outcomes = list(LocalExecutor(settings, debug_model).run(_tasks(video, 5.0, info)))
    outcomes.sort(key=lambda o: o.task.index)  # completion order: chunks run in parallel
    assert [type(o).__name__ for o in outcomes] == ["ChunkDone"] * 4
    assert [o.task.index for o in outcomes] == [0, 1, 2, 3]
    merged = merge_video_faces([o.faces for o in outcomes])
    _assert_same_faces(merged, whole, crops=False)
    assert merged.crops.shape == (whole.n_faces, 0)  # classified: the pixels are gone
    assert sum(len(o.probs) for o in outcomes) == whole.n_faces


def test_local_executor_extracts_chunks_on_parallel_threads_with_identical_results(
    sample_dir: Path, tmp_path: Path, debug_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    video = _video(sample_dir / WOLF)
    info = probe(video.path)
    tasks = _tasks(video, 5.0, info)
    one = list(LocalExecutor(_settings(tmp_path, 5.0, workers=1), debug_model).run(tasks))

    # Two chunks must be inside extraction at the same moment: the barrier breaks (and
    # its chunk fails) when the threads take them one after another.
    both = threading.Barrier(2, timeout=30)
    real = engine.extract_video

    def meeting(*args: Any, **kwargs: Any) -> VideoFaces:
        if kwargs["start_s"] < 10.0:  # the first two chunks
            both.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "extract_video", meeting)
    opencv_threads = cv2.getNumThreads()
    executor = LocalExecutor(_settings(tmp_path, 5.0, workers=2), debug_model)
    try:
        two = list(executor.run(tasks))
        assert cv2.getNumThreads() == 1  # the parallelism is across chunks
    finally:
        executor.close()
    assert cv2.getNumThreads() == opencv_threads  # given back to the process
    assert [type(o).__name__ for o in two] == ["ChunkDone"] * len(tasks)
    by_index = {o.task.index: o for o in two}
    for o in one:
        _assert_same_faces(by_index[o.task.index].faces, o.faces, crops=False)
        np.testing.assert_array_equal(by_index[o.task.index].probs, o.probs)


def test_bad_chunk_seconds_fails_the_run_not_each_video(tmp_path: Path) -> None:
    # Refused when the run's settings are built, before any executor or video exists.
    with pytest.raises(ConfigError, match=r"--chunk-seconds=-1\.0"):
        _settings(tmp_path, -1.0)


def test_a_failed_chunk_fails_its_video_and_skips_the_rest_of_it(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_extract = engine.extract_video
    starts: list[tuple[str, float]] = []

    def failing_third_chunk(video: VideoInput, *args: Any, **kwargs: Any) -> VideoFaces:
        starts.append((video.rel_path, kwargs["start_s"]))
        if video.rel_path == "b.mp4" and kwargs["start_s"] == 2.0:
            raise DecodeError("simulated failure in the third chunk")
        return real_extract(video, *args, **kwargs)

    monkeypatch.setattr(engine, "extract_video", failing_third_chunk)
    copy_sample("single_face.mp4", "in/a.mp4")
    copy_sample("no_face.mp4", "in/b.mp4")
    model = make_debug_model(tmp_path / "m.safetensors")
    settings = RunSettings(
        inputs=(tmp_path / "in",), out=tmp_path / "r.parquet", chunk_seconds=1.0,
        classify=ClassifySettings(model_path=model), executor=ExecutorKind.LOCAL,
    )  # fmt: skip

    summary = engine.run(settings)

    # 2.4 s: 2 chunks, fine; 3.9 s: 4 chunks, the third fails and the fourth never runs
    assert starts == [("a.mp4", 0.0), ("a.mp4", 1.0), ("b.mp4", 0.0), ("b.mp4", 1.0),
                      ("b.mp4", 2.0)]  # fmt: skip
    assert summary.ok == 1 and summary.failed == [("b.mp4", "simulated failure in the third chunk")]
    # the finished chunks of the failed video are not kept: a rerun redoes it whole
    assert not list((tmp_path / ".r.parquet.fervid" / ".chunks").glob("*/*/*.parquet"))


# --------------------------------------------------------------------------- RayExecutor, faked
class _ActorDied(Exception):
    """Stands in for ray.exceptions.RayActorError."""


class _Ref:
    def __init__(self, seq: int, kind: str, compute: Callable[[], Any], args: tuple = ()) -> None:
        self.seq, self.kind, self.args = seq, kind, args
        self._compute, self._done, self._value, self._error = compute, False, None, None

    def value(self) -> Any:
        if not self._done:
            self._done = True
            try:
                self._value = self._compute()
            except Exception as e:
                self._error = e
        if self._error is not None:
            raise self._error
        return self._value


class _FakeRay:
    """Ray's API as RayExecutor.run uses it, in-process: refs resolve in submission order.
    Records the extraction tasks in flight, each actor's queue, what the driver fetched
    and what was cancelled."""

    class exceptions:  # mirrors ray.exceptions
        RayActorError = _ActorDied

    def __init__(self) -> None:
        self.seq = 0
        self.extracting: set[_Ref] = set()
        self.max_extracting = 0
        self.max_actor_queue = 0
        self.fetched: list[str] = []  # kinds of the refs the driver called get on
        self.cancelled: list[tuple[float, float | None]] = []

    def submit(self, kind: str, compute: Callable[[], Any], args: tuple = ()) -> _Ref:
        self.seq += 1
        ref = _Ref(self.seq, kind, compute, args)
        if kind == "extract":
            self.extracting.add(ref)
            self.max_extracting = max(self.max_extracting, len(self.extracting))
        return ref

    def remote(self, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        ray = self

        def wrap(fn: Callable[..., Any]) -> Any:
            class Remote:
                @staticmethod
                def remote(*args: Any) -> _Ref:
                    return ray.submit("extract", lambda: fn(*args), args)

            return Remote

        return wrap

    def put(self, value: Any) -> Any:
        return value

    def wait(self, refs: list[_Ref], num_returns: int, fetch_local: bool = True) -> tuple:
        assert not fetch_local, "the driver must not pull extraction results (crops) to itself"
        first = min(refs, key=lambda r: r.seq)
        self.extracting.discard(first)
        return [first], [r for r in refs if r is not first]

    def get(self, ref: _Ref) -> Any:
        self.fetched.append(ref.kind)
        return ref.value()

    def cancel(self, ref: _Ref, force: bool = False) -> None:
        self.cancelled.append((ref.args[0].start_s, ref.args[0].end_s))

    def kill(self, actor: Any) -> None:
        actor.killed = True


class _FakeActor:
    """A classifier actor that resolves its argument itself (as Ray does in the actor's
    process) and dies while classifying the videos in ``die_on``."""

    def __init__(self, ray: _FakeRay, die_on: set[str]) -> None:
        self.ray, self.die_on, self.queued, self.killed = ray, die_on, 0, False
        actor = self

        class Method:
            def __init__(self, fn: Callable[..., Any], kind: str) -> None:
                self.fn, self.kind = fn, kind

            def remote(self, *args: Any) -> _Ref:
                return actor.ray.submit(self.kind, lambda: self.fn(*args), args)

        self.classify = Method(self._classify, "classify")
        self.ready = Method(lambda: "sha", "ready")

    def _classify(self, ref: _Ref) -> Any:
        extracted = ref.value()  # resolved in the actor, not fetched by the driver
        if isinstance(extracted, BaseException):
            return extracted
        if extracted.video.video_id in self.die_on:
            raise _ActorDied("the actor process was killed")
        probs = np.full((extracted.n_faces, 7), 1 / 7, np.float32)
        return ClassifiedChunk(faces=without_crops(extracted), probs=probs, sha256="sha")


def _fake_executor(tmp_path: Path, fake: _FakeRay, extract: Callable[..., Any], die_on=()):
    executor = RayExecutor.__new__(RayExecutor)  # no Ray: the fake stands in for it
    executor._ray, executor.workers = fake, 2
    executor.session = SimpleNamespace(cpus=2)  # run() sizes decoder threads from it
    executor._watch = None  # no attached cluster to watch
    executor.settings, executor.spec, executor.sha256 = _settings(tmp_path, 5.0), DEBUG_SPEC, "sha"
    executor._task = fake.remote(num_cpus=1)(extract)
    actors: list[_FakeActor] = []

    class ActorClass:
        @staticmethod
        def remote(*args: Any) -> _FakeActor:
            actors.append(_FakeActor(fake, set(die_on)))
            return actors[-1]

    executor._actor_cls, executor._actor_args = ActorClass, ()
    executor._actors = [executor._new_actor()]
    executor._replacements, executor._cancelled, executor._extracting = 0, set(), {}
    return executor, actors


def _fake_tasks(tmp_path: Path, durations: dict[str, float]) -> list[ChunkTask]:
    tasks = []
    for name, duration in durations.items():
        video = VideoInput(path=tmp_path / f"{name}.mp4", video_id=name, rel_path=f"{name}.mp4",
                           size_bytes=1)  # fmt: skip
        tasks += _tasks(video, 5.0, _info(duration))
    return tasks


def _fake_extract(
    task: ChunkTask, settings: RunSettings, spec: Any, threads: int = 1
) -> VideoFaces | Exception:
    if task.video.video_id == "a" and task.start_s == 5.0:
        return DecodeError("simulated failure in a's second chunk")
    first = round(task.start_s * 30)
    return _part(task.video.video_id, [first, first + 15], seconds={"extract": 1.0})


def test_ray_executor_streams_chunks_to_the_actor_and_cancels_a_failed_video(
    tmp_path: Path,
) -> None:
    fake = _FakeRay()
    executor, _ = _fake_executor(tmp_path, fake, _fake_extract)
    tasks = _fake_tasks(tmp_path, {"a": 15.0, "b": 10.0, "c": 5.0})  # 3, 2 and 1 chunks

    out = list(executor.run(tasks))

    got = [(o.task.video.video_id, o.task.index, type(o).__name__) for o in out]
    (failed,) = [o for o in out if isinstance(o, ChunkFailed)]
    assert (failed.task.video.video_id, failed.task.index) == ("a", 1)
    assert "second chunk" in str(failed.error)
    assert [g for g in got if g[0] != "a"] == [
        ("b", 0, "ChunkDone"), ("b", 1, "ChunkDone"), ("c", 0, "ChunkDone"),
    ]  # fmt: skip
    assert fake.max_extracting <= 2  # never more extraction tasks than workers
    assert "extract" not in fake.fetched  # crops never pass through the driver
    b = [o for o in out if isinstance(o, ChunkDone) and o.task.video.video_id == "b"]
    assert all(o.faces.crops.shape == (2, 0) and o.probs.shape == (2, 7) for o in b)


def test_ray_executor_cancel_video_drops_its_queued_chunks(tmp_path: Path) -> None:
    fake = _FakeRay()
    executor, _ = _fake_executor(tmp_path, fake, _fake_extract)
    tasks = _fake_tasks(tmp_path, {"a": 15.0, "b": 5.0})
    seen = []
    for o in executor.run(tasks):
        seen.append((o.task.video.video_id, o.task.index))
        if isinstance(o, ChunkFailed):
            executor.cancel_video(o.task.video.video_id)  # what run() does
    assert ("a", 2) not in seen  # a's third chunk was in flight when a failed: dropped
    assert ("a", 1) in seen and ("b", 0) in seen


def test_ray_executor_replaces_a_dead_actor_and_finishes_the_rest(tmp_path: Path) -> None:
    fake = _FakeRay()
    executor, actors = _fake_executor(
        tmp_path,
        fake,
        lambda t, s, p, threads=1: _part(t.video.video_id, [round(t.start_s * 30)]),
        die_on={"b"},
    )
    tasks = _fake_tasks(tmp_path, {"a": 5.0, "b": 5.0, "c": 5.0, "d": 5.0})

    out = {o.task.video.video_id: o for o in executor.run(tasks)}

    assert isinstance(out["b"], ChunkFailed) and "classifier actor died" in str(out["b"].error)
    assert all(isinstance(out[v], ChunkDone) for v in "acd")  # the rest finish
    assert len(actors) == 2 and actors[0].killed and not actors[1].killed


def test_ray_executor_fails_what_is_left_when_actors_keep_dying(tmp_path: Path) -> None:
    fake = _FakeRay()
    doomed = {"a", "b", "c", "d", "e"}
    executor, actors = _fake_executor(
        tmp_path, fake, lambda t, s, p, threads=1: _part(t.video.video_id, [0]), die_on=doomed
    )
    out = list(executor.run(_fake_tasks(tmp_path, dict.fromkeys(sorted(doomed), 5.0))))
    assert len(out) == 5 and all(isinstance(o, ChunkFailed) for o in out)
    assert len(actors) == 1 + 2  # the first and its two replacements
    assert all("actor died" in str(o.error) for o in out)  # failed rows, no hang, no crash


@pytest.mark.slow
def test_ray_executor_chunks_equal_local(
    ray_session: None,  # noqa: F811
    sample_dir: Path,
    tmp_path: Path,
    debug_model: ModelRef,
) -> None:
    settings = _settings(tmp_path, 5.0)
    videos = [_video(sample_dir / WOLF), _video(sample_dir / "no_face.mp4")]
    tasks = [t for v in videos for t in _tasks(v, 5.0)]
    executor = RayExecutor(settings, debug_model)
    try:
        got = list(executor.run(tasks))
    finally:
        executor.close()
    assert sorted((o.task.video.video_id, o.task.index) for o in got) == sorted(
        (t.video.video_id, t.index) for t in tasks
    )
    local = {
        (o.task.video.video_id, o.task.index): o
        for o in LocalExecutor(settings, debug_model).run(tasks)
    }
    for o in got:
        assert isinstance(o, ChunkDone)
        expected = local[(o.task.video.video_id, o.task.index)]
        _assert_same_faces(o.faces, expected.faces, crops=False)
        np.testing.assert_allclose(o.probs, expected.probs, atol=1e-6)


# --------------------------------------------------------------------------- ChunkStore
def test_chunk_store_round_trips_a_classified_chunk(tmp_path: Path) -> None:
    from fervid.engine.chunk_store import ChunkStore
    from fervid.records import FaceQuality

    part = _part("v", [30, 45], faces=2, warnings=["w1"], seconds={"extract": 1.5})
    rng = np.random.default_rng(0)
    n = part.n_faces
    quality = FaceQuality(
        landmarks=rng.random((n, 5, 2), dtype=np.float32), face_px=np.arange(n, dtype=np.float32),
        blur=np.full(n, np.nan, np.float32), brightness=np.ones(n, np.float32),
        yaw=np.zeros(n, np.float32), pitch=np.zeros(n, np.float32), roll=np.zeros(n, np.float32),
    )  # fmt: skip
    faces = without_crops(dataclasses.replace(part, quality=quality))
    probs = rng.dirichlet(np.ones(7), n).astype(np.float32)
    store = ChunkStore(tmp_path / ".chunks", "hash1")

    store.save(faces, probs, 1, 3, 300.0)
    got = store.load(faces.video, faces.info, 3, 300.0)

    assert list(got) == [1]
    back, back_probs = got[1]
    assert np.array_equal(back_probs, probs) and back_probs.dtype == np.float32
    _assert_same_faces(back, faces, crops=False)
    assert back.seconds == faces.seconds and back.crops.shape == (n, 0)
    for name in ("landmarks", "face_px", "blur", "brightness"):
        np.testing.assert_array_equal(getattr(back.quality, name), getattr(quality, name))
    # other settings, another plan or a torn file: nothing is reused
    assert ChunkStore(tmp_path / ".chunks", "hash2").load(faces.video, faces.info, 3, 300.0) == {}
    assert store.load(faces.video, faces.info, 4, 300.0) == {}
    assert store.load(faces.video, faces.info, 3, 60.0) == {}
    path = next((tmp_path / ".chunks").rglob("1of3-c300.parquet"))
    path.write_bytes(path.read_bytes()[:40])
    assert store.load(faces.video, faces.info, 3, 300.0) == {} and not path.exists()
    store.save(faces, probs, 1, 3, 300.0)
    store.clear("v")
    assert not (tmp_path / ".chunks" / "v").exists()
