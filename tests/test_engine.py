"""fervid.engine.runner: the per-video stages, the executors and the failure isolation of run()."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers_model import (
    DEBUG_SPEC,
    make_debug_model,
    ray_session,  # noqa: F401 (a session fixture)
)

from fervid.engine import runner as engine
from fervid.engine.model_ref import ModelRef, load_verified, model_ref
from fervid.engine.runner import (
    LocalExecutor,
    RunInterrupted,
    error_message,
    extract_video,
    finish_video,
    run,
)
from fervid.errors import ConfigError, DecodeError, ModelError
from fervid.extract.discover import discover
from fervid.model.classes import EMOTIONS
from fervid.model.modelfile import ModelSpec
from fervid.output.schema import FRAMES, VIDEOS, prob_col, smooth_col
from fervid.output.store import read_table
from fervid.records import VideoFaces, VideoInfo, VideoInput
from fervid.settings import (
    ClassifySettings,
    DiscoverSettings,
    ExecutorKind,
    RunSettings,
    SampleSettings,
    Smoothing,
    SmoothSettings,
)
from fervid.timeline.smooth import segment_index_per_row

GOOD = "single_face.mp4"  # 640x360, 2.4 s, one face throughout
NO_FACE = "no_face.mp4"
FACE_THEN_NONE = "face_noface.mov"

FLOATS = [prob_col(c) for c in EMOTIONS] + [smooth_col(c) for c in EMOTIONS] + ["confidence"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("model") / "debug.safetensors")


def settings_for(
    inputs: list[Path], out: Path, model: Path, *, sample: SampleSettings | None = None, **kw
) -> RunSettings:
    return RunSettings(
        inputs=tuple(inputs),
        out=out,
        sample=sample or SampleSettings(),
        classify=ClassifySettings(model_path=model, **kw.pop("classify", {})),
        **kw,
    )


def local(settings: RunSettings, model: ModelRef, hooks: object) -> LocalExecutor:
    return LocalExecutor(settings, model)


def video_input(path: Path) -> VideoInput:
    (v,) = discover([path], DiscoverSettings())
    return v


# --------------------------------------------------------------------------- extract_video
EXTRACT_CASES = {
    # id: (sample, spec, sampling, faces expected)
    "gray fps": (GOOD, DEBUG_SPEC, SampleSettings(fps=2.0), True),
    "rgb fps": (
        GOOD,
        ModelSpec(input_size=48, channels="rgb", width_mult=0.25),
        SampleSettings(fps=2.0),
        True,
    ),
    "every 10th": (GOOD, DEBUG_SPEC, SampleSettings(fps=None, every_n=10), True),
    "no face": (NO_FACE, DEBUG_SPEC, SampleSettings(fps=2.0), False),
}


@pytest.mark.parametrize(
    ("name", "spec", "sample", "faces"), list(EXTRACT_CASES.values()), ids=list(EXTRACT_CASES)
)
def test_extract_video_shapes_and_times(
    name: str,
    spec: ModelSpec,
    sample: SampleSettings,
    faces: bool,
    sample_dir: Path,
    tmp_path: Path,
) -> None:
    path = sample_dir / name
    settings = settings_for([path], tmp_path / "r.parquet", tmp_path / "unused", sample=sample)

    vf = extract_video(video_input(path), settings, spec)

    info = vf.info
    k, n = len(vf.sampled_frame_index), vf.n_faces
    # sampled frames: in order, at the asked spacing, covering the video
    assert np.all(np.diff(vf.sampled_frame_index) > 0)
    assert np.all(np.diff(vf.sampled_timestamp_s) > 0)
    if sample.fps is not None:
        assert abs(k - info.duration_s * sample.fps) <= 1
        np.testing.assert_allclose(
            np.diff(vf.sampled_timestamp_s), 1 / sample.fps, atol=1 / info.fps + 1e-6
        )
    else:
        assert np.all(np.diff(vf.sampled_frame_index) == sample.every_n)
        assert abs(k - info.n_frames / sample.every_n) <= 1
    np.testing.assert_allclose(  # the decoder's time, not a rebuilt index / fps
        vf.sampled_timestamp_s, vf.sampled_frame_index / info.fps, atol=1.5 / info.fps
    )

    # face rows: each one sits on a sampled frame with that frame's timestamp
    when = dict(zip(vf.sampled_frame_index.tolist(), vf.sampled_timestamp_s.tolist(), strict=True))
    assert [when[i] for i in vf.frame_index.tolist()] == vf.timestamp_s.tolist()
    assert np.all(np.diff(vf.timestamp_s) >= 0)
    assert vf.boxes.dtype == np.float32 and vf.boxes.shape == (n, 4)
    assert vf.det_scores.dtype == np.float32
    assert np.all(vf.det_scores >= settings.detect.score_threshold)
    s = spec.input_size
    assert vf.crops.dtype == np.uint8
    assert vf.crops.shape == ((n, s, s) if spec.channels == "gray" else (n, s, s, 3))
    assert set(vf.seconds) >= {"extract", "detect_crop", "decode"}
    if not faces:
        assert n == 0
        return
    # single_face.mp4: one face in every sampled frame, inside the displayed frame
    assert n == k and len(set(vf.frame_index.tolist())) == n
    assert (info.width, info.height) == (640, 360)
    x1, y1, x2, y2 = vf.boxes.T
    assert np.all((x1 < x2) & (y1 < y2))
    assert np.all((x1 >= -1) & (y1 >= -1) & (x2 <= info.width + 1) & (y2 <= info.height + 1))
    assert np.all(x2 - x1 >= settings.detect.min_face_px)
    assert vf.crops.std() > 5  # real pixels, not a blank pad


def test_extract_video_raises_decode_error_for_a_broken_file(
    text_video: Path, tmp_path: Path
) -> None:
    settings = settings_for([text_video], tmp_path / "r.parquet", tmp_path / "unused")
    with pytest.raises(DecodeError, match="not a video"):
        extract_video(video_input(text_video), settings, DEBUG_SPEC)


# --------------------------------------------------------------------------- finish_video
def _two_faces(n: int = 10, interval: float = 0.5) -> VideoFaces:
    """Two faces side by side in each of ``n`` frames (rows in time order)."""
    video = VideoInput(path=Path("two.mp4"), video_id="two", rel_path="two.mp4", size_bytes=1)
    info = VideoInfo(width=640, height=360, fps=30.0, duration_s=n * interval, n_frames=15 * n)
    frames = np.arange(n, dtype=np.int64) * 15
    t = np.arange(n) * interval
    left, right = [40, 100, 160, 220], [400, 100, 520, 220]
    return VideoFaces(
        video=video,
        info=info,
        sampled_frame_index=frames,
        sampled_timestamp_s=t,
        frame_index=np.repeat(frames, 2),
        timestamp_s=np.repeat(t, 2),
        boxes=np.array([left, right] * n, np.float32).reshape(-1, 4),
        det_scores=np.full(2 * n, 0.9, np.float32),
        crops=np.zeros((2 * n, 32, 32), np.uint8),
    )


def _one_hot_ish(label: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    p = rng.dirichlet(np.ones(len(EMOTIONS)), size=rows) * 0.3
    p[:, label] += 0.7
    return p.astype(np.float32)


@pytest.mark.parametrize(
    ("smooth", "same_as_probs"),
    [
        (SmoothSettings(method=Smoothing.NONE), True),
        (SmoothSettings(method=Smoothing.EMA, seconds=1.5), False),
    ],
    ids=["none", "ema"],
)
def test_finish_video_smooths_and_segments_each_face_apart(
    smooth: SmoothSettings, same_as_probs: bool, tmp_path: Path
) -> None:
    faces = _two_faces()
    rng = np.random.default_rng(0)
    happy, sad = EMOTIONS.index("happy"), EMOTIONS.index("sad")
    probs = np.empty((faces.n_faces, len(EMOTIONS)), np.float32)
    probs[0::2] = _one_hot_ish(happy, faces.n_faces // 2, rng)  # the left face
    probs[1::2] = _one_hot_ish(sad, faces.n_faces // 2, rng)  # the right face
    settings = settings_for(
        [Path("two.mp4")], tmp_path / "r.parquet", tmp_path / "m", smooth=smooth
    )

    result = finish_video(faces, probs, EMOTIONS, settings)

    assert result.face_id.dtype == np.int32 and result.face_id.shape == (faces.n_faces,)
    left, right = result.face_id[0::2], result.face_id[1::2]
    assert len(set(left.tolist())) == 1 and len(set(right.tolist())) == 1
    assert left[0] != right[0]
    assert result.smoothed.dtype == np.float32
    np.testing.assert_allclose(result.smoothed.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(result.smoothed, probs) == same_as_probs
    # smoothing never leaks one face's emotion into the other's rows
    assert np.all(result.smoothed[0::2].argmax(axis=1) == happy)
    assert np.all(result.smoothed[1::2].argmax(axis=1) == sad)
    assert set(result.segments) == {int(left[0]), int(right[0])}
    for fid, segs in result.segments.items():
        rows = np.flatnonzero(result.face_id == fid)
        segment_index_per_row(segs, len(rows))  # raises unless they tile the rows
        t = faces.timestamp_s[rows]
        for s in segs:
            assert s.start_s == t[s.first_row] and s.end_s > t[s.end_row - 1]
        want = happy if fid == left[0] else sad
        assert [s.label for s in segs] == [want]
        assert segs[0].start_s == 0.0 and segs[-1].end_s == pytest.approx(5.0)


def test_finish_video_without_faces(tmp_path: Path) -> None:
    faces = _two_faces(n=0)
    settings = settings_for([Path("x.mp4")], tmp_path / "r.parquet", tmp_path / "m")
    result = finish_video(faces, np.zeros((0, 7), np.float32), EMOTIONS, settings)
    assert result.face_id.shape == (0,) and result.smoothed.shape == (0, 7)
    assert result.segments == {}


def test_finish_video_on_a_real_video(sample_dir: Path, tmp_path: Path, model: Path) -> None:
    path = sample_dir / FACE_THEN_NONE
    settings = settings_for([path], tmp_path / "r.parquet", model)
    faces = extract_video(video_input(path), settings, DEBUG_SPEC)
    probs = np.random.default_rng(1).dirichlet(np.ones(7), faces.n_faces).astype(np.float32)

    result = finish_video(faces, probs, EMOTIONS, settings)

    assert faces.n_faces > 0
    np.testing.assert_allclose(result.smoothed.sum(axis=1), 1.0, atol=1e-5)
    covered = sum(s.end_row - s.first_row for segs in result.segments.values() for s in segs)
    assert covered == faces.n_faces


# --------------------------------------------------------------------------- run()
@pytest.fixture
def inputs(copy_sample: Callable[[str, str], Path], tmp_path: Path) -> Path:
    copy_sample(GOOD, "in/a.mp4")
    copy_sample(FACE_THEN_NONE, "in/b.mov")
    return tmp_path / "in"


def _assert_same_frames(a: pa.Table, b: pa.Table) -> None:
    assert a.num_rows == b.num_rows > 0
    exact = [c for c in a.column_names if c not in FLOATS]
    assert a.select(exact).equals(b.select(exact))
    for c in FLOATS:
        np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), atol=1e-5, err_msg=c)


def test_batch_size_does_not_change_rows(inputs: Path, tmp_path: Path, model: Path) -> None:
    """Batches end mid-video at batch size 1; each video still gets exactly its rows."""
    one = settings_for([inputs], tmp_path / "one.parquet", model)
    run(one, executor_factory=local)
    small = settings_for([inputs], tmp_path / "small.parquet", model, classify={"batch_size": 1})
    summary = run(small, executor_factory=local)
    assert summary.ok == 2 and not summary.failed
    _assert_same_frames(read_table(one.out, FRAMES), read_table(small.out, FRAMES))


def test_chunked_extraction_gives_the_same_rows(inputs: Path, tmp_path: Path, model: Path) -> None:
    whole = settings_for([inputs], tmp_path / "whole.parquet", model, chunk_seconds=0)
    chunked = settings_for([inputs], tmp_path / "chunked.parquet", model, chunk_seconds=1.0)
    run(whole, executor_factory=local)
    summary = run(chunked, executor_factory=local)
    assert summary.ok == 2 and not summary.failed
    _assert_same_frames(read_table(whole.out, FRAMES), read_table(chunked.out, FRAMES))
    a, b = read_table(whole.out, VIDEOS), read_table(chunked.out, VIDEOS)
    for c in ("frames_sampled", "frames_with_face", "n_face_rows", "n_faces", "warnings"):
        assert a[c].equals(b[c]), c


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_local_and_ray_executors_give_identical_frames(
    inputs: Path, tmp_path: Path, model: Path
) -> None:
    import ray

    local_settings = settings_for([inputs], tmp_path / "local.parquet", model)
    # chunks of 2 s: b.mov (6.4 s) runs as three tasks on the two workers
    ray_settings = settings_for(
        [inputs], tmp_path / "ray.parquet", model, workers=2, chunk_seconds=2.0,
        executor=ExecutorKind.RAY,
    )  # fmt: skip

    a = run(local_settings, executor_factory=local)
    b = run(ray_settings)

    assert (a.ok, b.ok, a.failed, b.failed) == (2, 2, [], [])
    assert (a.executor, b.executor) == ("local", "ray")
    assert ray.is_initialized(), "RayExecutor shut down a Ray session it did not start"
    _assert_same_frames(
        read_table(local_settings.out, FRAMES), read_table(ray_settings.out, FRAMES)
    )


CRASHES = {
    # id: (stage patched, exception raised, message expected in the videos row)
    "extract raises": ("extract_video", RuntimeError("worker blew up"), "RuntimeError: worker blew up"),
    "extract out of memory": ("extract_video", MemoryError(), "MemoryError"),
    "finish raises": ("finish_video", ZeroDivisionError("division by zero"),
                      "ZeroDivisionError: division by zero"),
    "fervid error": ("extract_video", DecodeError("b.mov: no frame could be decoded"),
                     "b.mov: no frame could be decoded"),
}  # fmt: skip


@pytest.mark.parametrize(("stage", "exc", "message"), list(CRASHES.values()), ids=list(CRASHES))
def test_crashing_stage_becomes_a_failed_row(
    stage: str,
    exc: BaseException,
    message: str,
    inputs: Path,
    tmp_path: Path,
    model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = getattr(engine, stage)

    def crashing(*args: object, **kwargs: object) -> object:
        first = args[0]
        video = first if isinstance(first, VideoInput) else first.video
        if video.rel_path == "b.mov":
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, stage, crashing)
    settings = settings_for([inputs], tmp_path / "r.parquet", model)

    summary = run(settings, executor_factory=local)

    assert summary.ok == 1
    assert summary.failed == [("b.mov", message)]
    videos = {r["path"]: r for r in read_table(settings.out, VIDEOS).to_pylist()}
    assert videos["b.mov"]["status"] == "failed" and videos["b.mov"]["error"] == message
    assert videos["a.mp4"]["status"] == "ok" and videos["a.mp4"]["n_face_rows"] > 0
    frames = read_table(settings.out, FRAMES)
    assert set(frames.column("path").to_pylist()) == {"a.mp4"}

    # the failed video is redone by the next run, the good one is not
    monkeypatch.setattr(engine, stage, real)
    again = run(settings, executor_factory=local)
    assert (again.ok, again.skipped, again.failed) == (1, 1, [])


def test_interrupt_stops_the_run_and_leaves_the_output_usable(
    inputs: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = engine.extract_video

    def interrupted(video: VideoInput, *args: object, **kwargs: object) -> VideoFaces:
        if video.rel_path == "b.mov":
            raise KeyboardInterrupt
        return real(video, *args, **kwargs)

    monkeypatch.setattr(engine, "extract_video", interrupted)
    # one chunk at a time, so a.mp4 is finished before b.mov is started
    settings = settings_for([inputs], tmp_path / "r.parquet", model, workers=1)
    with pytest.raises(RunInterrupted) as stopped:  # Ctrl-C is not a failed video
        run(settings, executor_factory=local)
    assert stopped.value.summary.ok == 1  # a.mp4 was written before b.mov stopped the run
    assert stopped.value.message == "interrupted: 1 of 2 videos done; rerun to resume"

    monkeypatch.setattr(engine, "extract_video", real)
    summary = run(settings, executor_factory=local)  # the lock was released
    assert (summary.ok, summary.skipped, summary.failed) == (1, 1, [])
    assert len(read_table(settings.out, VIDEOS)) == 2


class _RayTaskError(Exception):
    """Stands in for ray.exceptions.RayTaskError, which carries the task's error as cause."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"ray task failed\n  Traceback...\n{cause!r}")
        self.cause = cause


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (DecodeError("x.mp4: file is empty (0 bytes)"), "x.mp4: file is empty (0 bytes)"),
        (ValueError("bad shape\nmore detail"), "ValueError: bad shape"),
        (MemoryError(), "MemoryError"),
        (_RayTaskError(DecodeError("y.mp4: no video stream")), "y.mp4: no video stream"),
        (_RayTaskError(KeyError("k")), "KeyError: 'k'"),
    ],
    ids=["fervid", "multi-line", "no message", "ray-wrapped fervid", "ray-wrapped other"],
)
def test_error_message_is_one_line(error: BaseException, message: str) -> None:
    assert error_message(error) == message


# --------------------------------------------------------------------------- driver-side rules
def test_paths_and_the_model_are_resolved_in_the_driver(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths and $FERVID_MODEL are decided once, here: a Ray worker in another
    working directory or environment sees absolute paths and never reads the variable."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "alt.safetensors").write_bytes(model.read_bytes())
    monkeypatch.setenv("FERVID_MODEL", "models/alt.safetensors")
    settings = RunSettings(inputs=(Path("in"), Path("more/*.mp4")), out=Path("r.parquet"),
                           save_crops=Path("crops"))  # fmt: skip

    resolved = engine.resolve_paths(settings)

    assert resolved.inputs == (tmp_path / "in", tmp_path / "more" / "*.mp4")
    assert (resolved.out, resolved.save_crops) == (tmp_path / "r.parquet", tmp_path / "crops")
    assert resolved.classify.model_path == tmp_path / "models" / "alt.safetensors"
    explicit = dataclasses.replace(settings, classify=ClassifySettings(model_path=model))
    assert engine.resolve_paths(explicit).classify.model_path == model  # --model wins
    assert resolved.tunables() == settings.tunables()  # the settings hash is unchanged


def test_the_model_travels_as_bytes_checked_against_the_recorded_hash(model: Path) -> None:
    ref = model_ref(model)
    assert ref.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert ref.spec == DEBUG_SPEC  # from the header alone
    loaded = load_verified(ref.data, ref.sha256, ref.spec)
    assert loaded.sha256 == ref.sha256  # what is written is what was loaded

    other = bytearray(ref.data)
    other[-1] ^= 1  # one flipped bit in the weights
    with pytest.raises(ModelError, match="refusing to classify"):
        load_verified(bytes(other), ref.sha256, ref.spec)
    with pytest.raises(ModelError, match="not the one the run"):
        load_verified(ref.data, ref.sha256, ModelSpec(input_size=48))


@pytest.mark.parametrize(
    ("kind", "seconds", "extra", "expected"),
    [
        (ExecutorKind.AUTO, 19.7, {}, ExecutorKind.LOCAL),  # one short clip: no cluster
        (ExecutorKind.AUTO, engine.AUTO_LOCAL_MAX_SECONDS, {}, ExecutorKind.LOCAL),
        (ExecutorKind.AUTO, 600.0, {}, ExecutorKind.LOCAL),  # 10 minutes: threads beat Ray
        (ExecutorKind.AUTO, 7200.0, {}, ExecutorKind.RAY),  # a night's batch
        (ExecutorKind.AUTO, 7200.0, {"workers": 1}, ExecutorKind.LOCAL),
        (ExecutorKind.AUTO, 5.0, {"ray_address": "127.0.0.1:6379"}, ExecutorKind.RAY),
        (ExecutorKind.AUTO, 5.0, {"gpus": 1}, ExecutorKind.RAY),
        (ExecutorKind.LOCAL, 9999.0, {}, ExecutorKind.LOCAL),
        (ExecutorKind.RAY, 1.0, {}, ExecutorKind.RAY),
    ],
)
def test_choose_executor(
    kind: ExecutorKind, seconds: float, extra: dict, expected: ExecutorKind
) -> None:
    settings = RunSettings(inputs=(Path("v"),), out=Path("o"), executor=kind, **extra)
    assert engine.choose_executor(settings, seconds) is expected


def test_ray_starts_while_the_other_videos_are_probed(
    inputs: Path, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the executor is sure to be Ray (here --executor ray), it starts while the
    remaining videos are probed and planned: the second probe waits for the executor's
    start, which, were they one after the other, would come only after it."""
    import threading

    from fervid.extract import decode

    started = threading.Event()
    probed: list[tuple[str, bool]] = []  # (file name, executor already starting)
    real_probe = decode.probe

    def probe(path: Path, **kw: object) -> VideoInfo:
        if probed:  # not the first video: wait (bounded) for the executor to start
            started.wait(timeout=10)
        probed.append((Path(path).name, started.is_set()))
        return real_probe(path, **kw)

    def factory(settings: RunSettings, ref: ModelRef, hooks: object) -> LocalExecutor:
        started.set()
        return LocalExecutor(settings, ref)

    monkeypatch.setattr(decode, "probe", probe)
    monkeypatch.setattr(engine, "default_executor_factory", lambda settings, seconds: factory)
    settings = settings_for([inputs], tmp_path / "o.parquet", model, executor=ExecutorKind.RAY)
    summary = engine.run(settings)
    assert (summary.ok, summary.failed) == (2, [])
    assert probed == [("a.mp4", False), ("b.mov", True)]
    whole = settings_for([inputs], tmp_path / "l.parquet", model)
    engine.run(whole, executor_factory=local)
    _assert_same_frames(read_table(whole.out, FRAMES), read_table(settings.out, FRAMES))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "cluster"}, "--executor='cluster'; expected one of"),
        ({"gpus": -1}, "--gpus=-1; expected an integer >= 0"),
        ({"executor": ExecutorKind.LOCAL, "ray_address": "h:1"}, "--executor=local with"),
    ],
)
def test_executor_settings_are_validated(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        RunSettings(inputs=(Path("v"),), out=Path("o"), **options)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_classifier_actor_killed_twice_fails_its_videos_and_the_rest_finish(
    copy_sample: Callable[[str, str], Path], tmp_path: Path, model: Path
) -> None:
    import os
    import signal
    import time

    import psutil
    import ray

    from fervid.engine.ray_executor import RayExecutor

    for name in ("single_face.mp4", FACE_THEN_NONE, "noface_face.mov", NO_FACE):
        copy_sample(name, f"in/{name}")

    def killing_factory(settings: RunSettings, ref: ModelRef, hooks: object) -> RayExecutor:
        executor = RayExecutor(settings, ref)
        actor = executor._actors[0]
        for _ in range(2):  # Ray restarts it once (max_restarts=1); the second death is final
            pid = ray.get(actor.pid.remote())
            os.kill(pid, signal.SIGKILL)
            while psutil.pid_exists(pid):
                time.sleep(0.1)
        return executor

    settings = settings_for([tmp_path / "in"], tmp_path / "r.parquet", model, workers=2,
                            executor=ExecutorKind.RAY)  # fmt: skip
    summary = run(settings, executor_factory=killing_factory)

    assert summary.failed and summary.ok >= 1 and summary.ok + len(summary.failed) == 4
    assert all("classifier actor died" in err for _, err in summary.failed)
    videos = read_table(settings.out, VIDEOS)
    assert sorted(videos["status"].to_pylist()) == sorted(
        ["ok"] * summary.ok + ["failed"] * len(summary.failed)
    )
    again = run(settings)  # the failed videos are redone, the others kept
    assert (again.ok, again.skipped, again.failed) == (len(summary.failed), summary.ok, [])
