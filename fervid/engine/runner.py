"""The engine: wires the stages per video and runs them through an executor.

This is the only module that knows about Ray. Per video, CPU workers run
decode -> sample -> detect -> crop (:func:`extract_video`); crops from several videos
are classified together in batches by one classifier (a GPU actor when there is a GPU);
the driver then tracks, smooths, segments (:func:`finish_video`) and writes each video
as soon as it is done, so nothing computed is lost if the run stops.

Long videos are split into time chunks (:func:`plan_chunks`, ``RunSettings.chunk_seconds``)
that run as separate tasks and are merged in time order (:func:`merge_video_faces`), so
one long recording uses every worker and a crashed worker costs one chunk. Chunks sample
on the whole video's grid, so the merged result is identical to an unchunked run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fervid import __version__
from fervid.errors import FervidError
from fervid.model.spec import ModelSpec
from fervid.records import VideoFaces, VideoInfo, VideoInput, VideoResult
from fervid.settings import RunSettings, check_chunk_seconds

#: Crops waiting for classification are flushed once this many batches are pending,
#: so batches span videos without holding many videos' crops in memory.
PENDING_BATCHES = 4

Chunk = tuple[float, float | None]  # [start_s, end_s) in seconds; end None: to the end


# --------------------------------------------------------------------------- per-video stages
def plan_chunks(info: VideoInfo, chunk_seconds: float) -> list[Chunk]:
    """The time ranges ``[start_s, end_s)`` (seconds) one video is extracted in, in order.

    Boundaries fall on multiples of ``chunk_seconds``; a remainder shorter than half a
    chunk joins the last chunk, so no task is tiny. The last range ends at None (wherever
    decoding finds the end, which may differ from the stated ``duration_s``). Returns
    ``[(0.0, None)]`` when ``chunk_seconds`` is 0, the video is shorter than 1.5 chunks,
    or its duration is unknown (0). Raises :class:`ConfigError` for a ``chunk_seconds``
    that is negative, not finite, or below ``settings.MIN_CHUNK_SECONDS``.
    """
    check_chunk_seconds(chunk_seconds)
    duration = info.duration_s
    if chunk_seconds == 0 or not (math.isfinite(duration) and duration > 0):
        return [(0.0, None)]
    n = max(1, math.floor(duration / chunk_seconds + 0.5))
    starts = [k * chunk_seconds for k in range(n)]
    return [(a, starts[k + 1] if k + 1 < n else None) for k, a in enumerate(starts)]


def extract_video(
    video: VideoInput,
    settings: RunSettings,
    spec: ModelSpec,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    info: VideoInfo | None = None,
) -> VideoFaces:
    """decode -> sample -> detect -> crop for one video, streaming frame by frame.

    ``start_s``/``end_s`` restrict it to the sampled frames with ``start_s <= timestamp
    < end_s`` (seconds; None: to the end), one chunk of :func:`plan_chunks`: chunks
    sample on the whole video's grid, so :func:`merge_video_faces` of consecutive chunks
    equals the whole video. ``info``: the video's probe, when already known (chunks of
    one video share it); probed here when None.
    """
    from fervid.extract.crop import crop_faces
    from fervid.extract.crop_export import save_frame_crops
    from fervid.extract.decode import FrameSampler, probe
    from fervid.extract.detect import FaceDetector
    from fervid.extract.quality import measure_faces
    from fervid.records import FaceQuality

    t0 = time.perf_counter()
    if info is None:
        info = probe(video.path)  # VideoInfo: size after rotation, fps, duration
    sampler = FrameSampler(video.path, settings.sample, info, start_s=start_s, end_s=end_s)
    detector = FaceDetector(settings=settings.detect)
    sampled_idx, sampled_ts = [], []
    f_idx, f_ts, boxes, scores, crops = [], [], [], [], []
    quality: list[FaceQuality] = []  # per frame: its faces' landmarks, size, blur, pose
    t_detect = 0.0
    for frame in sampler:  # Frame: BGR (H, W, 3), frame_index, timestamp_s
        sampled_idx.append(frame.frame_index)
        sampled_ts.append(frame.timestamp_s)
        td = time.perf_counter()
        dets = detector(frame.image)  # Detections: (m, 4) xyxy px, (m,) scores
        faces = crop_faces(frame.image, dets, settings.crop, spec)  # (m, S, S) uint8
        quality.append(measure_faces(dets, faces, sampler.scale))  # (m,) displayed-frame px
        t_detect += time.perf_counter() - td
        for j in range(len(dets)):
            f_idx.append(frame.frame_index)
            f_ts.append(frame.timestamp_s)
            boxes.append(dets.boxes[j] / sampler.scale)  # back to displayed-frame pixels
            scores.append(dets.scores[j])
            crops.append(faces[j])
        if settings.save_crops is not None:
            save_frame_crops(settings.save_crops, video.video_id, frame.frame_index, faces)
    total = time.perf_counter() - t0
    crop_shape = (spec.input_size, spec.input_size) + (() if spec.channels == "gray" else (3,))
    return VideoFaces(
        video=video,
        info=info,
        sampled_frame_index=np.asarray(sampled_idx, np.int64),
        sampled_timestamp_s=np.asarray(sampled_ts, np.float64),
        frame_index=np.asarray(f_idx, np.int64),
        timestamp_s=np.asarray(f_ts, np.float64),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        det_scores=np.asarray(scores, np.float32),
        crops=np.stack(crops) if crops else np.zeros((0, *crop_shape), np.uint8),
        warnings=tuple(sampler.warnings),
        seconds={"extract": total, "detect_crop": t_detect, "decode": total - t_detect},
        quality=FaceQuality.concat(quality),
    )


def merge_video_faces(parts: list[VideoFaces]) -> VideoFaces:
    """One video's chunks, given in time order, as one :class:`VideoFaces`.

    Per-frame and per-face arrays are concatenated; ``video``/``info`` come from the
    first part; ``warnings`` are joined in order with repeats dropped (every chunk after
    a file's cut-off reports the same stop); ``seconds`` are summed per key (CPU time
    over all chunks, not wall time). Raises ValueError when ``parts`` is empty, mixes
    videos, or is out of order (sampled frame indices must increase across parts).
    """
    from fervid.records import FaceQuality

    if not parts:
        raise ValueError("merge_video_faces: parts is empty; pass at least one chunk")
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    ids = sorted({p.video.video_id for p in parts})
    if len(ids) > 1:
        raise ValueError(f"merge_video_faces: parts come from {len(ids)} videos {ids}; pass one")
    sampled = np.concatenate([p.sampled_frame_index for p in parts])
    if np.any(np.diff(sampled) <= 0):
        raise ValueError(
            "merge_video_faces: parts overlap or are out of order (sampled_frame_index must "
            "increase across parts); pass the chunks sorted by start time"
        )
    seconds: dict[str, float] = {}
    for p in parts:
        for key, value in p.seconds.items():
            seconds[key] = seconds.get(key, 0.0) + value
    return VideoFaces(
        video=first.video,
        info=first.info,
        sampled_frame_index=sampled,
        sampled_timestamp_s=np.concatenate([p.sampled_timestamp_s for p in parts]),
        frame_index=np.concatenate([p.frame_index for p in parts]),
        timestamp_s=np.concatenate([p.timestamp_s for p in parts]),
        boxes=np.concatenate([p.boxes for p in parts]),
        det_scores=np.concatenate([p.det_scores for p in parts]),
        crops=np.concatenate([p.crops for p in parts]),
        warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings)),
        seconds=seconds,
        quality=None
        if any(p.quality is None for p in parts)
        else FaceQuality.concat([p.quality for p in parts if p.quality is not None]),
    )


def extract_video_chunked(video: VideoInput, settings: RunSettings, spec: ModelSpec) -> VideoFaces:
    """probe -> :func:`extract_video` per chunk of :func:`plan_chunks` -> merge, in this
    process, one chunk after another (what :class:`LocalExecutor` runs per video)."""
    from fervid.extract.decode import probe

    t0 = time.perf_counter()
    info = probe(video.path)
    probe_s = time.perf_counter() - t0
    parts = [
        extract_video(video, settings, spec, start_s=a, end_s=b, info=info)
        for a, b in plan_chunks(info, settings.chunk_seconds)
    ]  # one VideoFaces per chunk, in time order
    return _with_probe_time(merge_video_faces(parts), probe_s)


def _with_probe_time(faces: VideoFaces, probe_s: float) -> VideoFaces:
    """Count the probe, run once per video, in the decode and extract times."""
    seconds = dict(faces.seconds)
    for key in ("extract", "decode"):
        seconds[key] = seconds.get(key, 0.0) + probe_s
    return dataclasses.replace(faces, seconds=seconds)


def finish_video(
    faces: VideoFaces, probs: np.ndarray, class_names: tuple[str, ...], settings: RunSettings
) -> VideoResult:
    """track -> smooth -> segment, per face, on one video's classified rows."""
    from fervid.timeline.smooth import segment, smooth_probs
    from fervid.timeline.track import assign_face_ids

    face_id = assign_face_ids(
        faces.timestamp_s, faces.frame_index, faces.boxes, settings.track
    )  # (n,)
    smoothed = np.zeros_like(probs)
    segments = {}
    interval = 1.0 / settings.sample.fps if settings.sample.fps else None
    for fid in np.unique(face_id):
        rows = np.flatnonzero(face_id == fid)  # this face's rows, in time order
        smoothed[rows] = smooth_probs(faces.timestamp_s[rows], probs[rows], settings.smooth)
        segments[int(fid)] = segment(
            faces.timestamp_s[rows],
            smoothed[rows],
            settings.smooth,
            max_gap_s=settings.track.max_gap_s,
            frame_interval_s=interval,
        )
    return VideoResult(
        faces=faces, class_names=class_names, face_id=face_id.astype(np.int32),
        probs=probs, smoothed=smoothed, segments=segments,
    )  # fmt: skip


# --------------------------------------------------------------------------- executors
Outcome = VideoFaces | BaseException


class Executor(Protocol):
    """Runs :func:`extract_video` over many videos and classifies crops in batches."""

    def extract(self, videos: list[VideoInput]) -> Iterator[tuple[VideoInput, Outcome]]: ...

    def classify(self, crops: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Everything in this process, one video at a time: for tests and debugging."""

    def __init__(self, settings: RunSettings, spec: ModelSpec, classifier: Any) -> None:
        self.settings, self.spec, self.classifier = settings, spec, classifier

    def extract(self, videos: list[VideoInput]) -> Iterator[tuple[VideoInput, Outcome]]:
        """Each video's chunks in turn, merged; a failure of any is that video's outcome."""
        for v in videos:
            outcome: Outcome
            try:
                outcome = extract_video_chunked(v, self.settings, self.spec)
            except Exception as e:  # recorded per video, never fatal to the run
                outcome = e
            yield v, outcome

    def classify(self, crops: np.ndarray) -> np.ndarray:
        return self.classifier(crops)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- run
@dataclass
class RunSummary:
    """What a run did; the CLI prints it and picks the exit code from ``failed``."""

    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    skipped: int = 0
    id_pattern_unmatched: list[str] = field(default_factory=list)  # paths --id-pattern missed
    frames: int = 0
    faces: int = 0
    video_seconds: float = 0.0
    wall_s: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        """Video seconds analysed per wall-clock second."""
        return self.video_seconds / self.wall_s if self.wall_s > 0 else 0.0


class Hooks(Protocol):
    """Progress reporting chosen by the caller (the CLI shows a progress bar)."""

    def start(self, total: int, skipped: int) -> None: ...

    def video_done(self, video: VideoInput, status: str, detail: str) -> None: ...


class NullHooks:
    def start(self, total: int, skipped: int) -> None:
        pass

    def video_done(self, video: VideoInput, status: str, detail: str) -> None:
        pass


def error_message(e: BaseException) -> str:
    """One line naming the error; Ray wraps task errors, so unwrap its cause."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, FervidError):
        return msg or type(e).__name__
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def run(
    settings: RunSettings,
    *,
    executor_factory: Callable[[RunSettings, ModelSpec, Any], Executor] | None = None,
    hooks: Hooks | None = None,
) -> RunSummary:
    """Discover, skip what is done, process the rest, write, finalize."""
    from fervid.extract.discover import discover
    from fervid.model.classify import EmotionClassifier
    from fervid.output.store import OutputStore
    from fervid.output.tables import (
        Identity,
        failed_video_table,
        frames_table,
        segments_table,
        video_row_table,
    )

    t0 = time.perf_counter()
    hooks = hooks or NullHooks()
    videos = discover(settings.inputs, settings.discover)
    classifier = EmotionClassifier(
        settings=settings.classify, cpu_threads=_classifier_threads(settings)
    )
    spec, sha = classifier.spec, classifier.sha256
    settings_hash = settings.settings_hash(sha)
    store = OutputStore(
        out=settings.out, class_names=spec.class_names, settings_json=settings.to_json(),
        model_sha256=sha, settings_hash=settings_hash, fervid_version=__version__,
        overwrite=settings.overwrite,
    )  # fmt: skip
    summary = RunSummary(
        id_pattern_unmatched=[v.rel_path for v in videos if v.id_pattern_matched is False]
    )
    seen: dict[str, VideoInput] = {}
    todo: list[VideoInput] = []
    for v in videos:
        if v.video_id in seen:  # the same content under two paths: analyse once
            dup_key = v.video_id + "-dup-" + _short(v.rel_path)
            # Recorded once: rewriting it every run would give it a newer processed_at
            # than the analysed copy, which readers would take for the latest result.
            if settings.overwrite or not store.has_video(dup_key):
                original = seen[v.video_id].rel_path
                store.write_video(dup_key, *_empty_tables(spec, store),
                                  failed_video_table(Identity.of(v), status="skipped",
                                                     error=f"same content as {original}",
                                                     duplicate_of=original,
                                                     settings_hash=settings_hash, model_sha256=sha,
                                                     fervid_version=__version__, size_bytes=v.size_bytes,
                                                     class_names=spec.class_names))  # fmt: skip
            summary.skipped += 1
            continue
        seen[v.video_id] = v
        if store.should_skip(v.video_id):
            summary.skipped += 1
        else:
            todo.append(v)
    hooks.start(len(todo), summary.skipped)

    factory = executor_factory or default_executor_factory(settings)
    executor = factory(settings, spec, classifier)
    pending: list[VideoFaces] = []

    def write_failed(v: VideoInput, msg: str) -> None:
        row = failed_video_table(
            Identity.of(v), status="failed", error=msg, settings_hash=settings_hash, model_sha256=sha,
            fervid_version=__version__, size_bytes=v.size_bytes, class_names=spec.class_names,
        )  # fmt: skip
        store.write_video(v.video_id, *_empty_tables(spec, store), row)
        summary.failed.append((v.rel_path, msg))
        hooks.video_done(v, "failed", msg)

    def flush() -> None:
        if not pending:
            return
        crops = np.concatenate([p.crops for p in pending])  # one batch stream across videos
        probs = (
            executor.classify(crops) if len(crops) else np.zeros((0, spec.num_classes), np.float32)
        )
        start = 0
        for faces in pending:
            p = probs[start : start + faces.n_faces]
            start += faces.n_faces
            try:
                result = finish_video(faces, p, spec.class_names, settings)
                ident = Identity.of(faces.video)
                store.write_video(
                    faces.video.video_id,
                    frames_table(result, ident, keep_empty_frames=settings.keep_empty_frames),
                    segments_table(result, ident),
                    video_row_table(result, ident, settings_hash=settings_hash, model_sha256=sha,
                                    fervid_version=__version__),
                )  # fmt: skip
            except Exception as e:
                write_failed(faces.video, error_message(e))
                continue
            summary.ok += 1
            summary.frames += len(faces.sampled_frame_index)
            summary.faces += faces.n_faces
            summary.video_seconds += faces.info.duration_s
            hooks.video_done(faces.video, "ok", f"{faces.n_faces} faces")
        pending.clear()

    try:
        for v, outcome in executor.extract(todo):
            if isinstance(outcome, BaseException):
                write_failed(v, error_message(outcome))
                continue
            pending.append(outcome)
            if sum(p.n_faces for p in pending) >= PENDING_BATCHES * settings.classify.batch_size:
                flush()
        flush()
    finally:
        executor.close()
        summary.outputs = store.finalize()
    summary.wall_s = time.perf_counter() - t0
    return summary


def _short(s: str) -> str:
    import hashlib

    return hashlib.blake2b(s.encode(), digest_size=4).hexdigest()


def _empty_tables(spec: ModelSpec, store: Any) -> tuple[Any, Any]:
    from fervid.output.schema import frames_schema, segments_schema

    return frames_schema(spec.class_names).empty_table(), segments_schema(
        spec.class_names
    ).empty_table()


def _classifier_threads(settings: RunSettings) -> int:
    return max(1, min(2, (settings.workers or os.cpu_count() or 1)))


def default_executor_factory(
    settings: RunSettings,
) -> Callable[[RunSettings, ModelSpec, Any], Executor]:
    return RayExecutor


# --------------------------------------------------------------------------- Ray
def _extract_task(
    video: VideoInput,
    settings: RunSettings,
    spec: ModelSpec,
    start_s: float = 0.0,
    end_s: float | None = None,
    info: VideoInfo | None = None,
) -> Outcome:
    """Ray task body: one chunk of one video. Errors are returned as values: a bad video
    is data, not a retry; Ray's own retries (``max_retries``) are kept for crashed worker
    processes."""
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from running several chunks at once
    try:
        return extract_video(video, settings, spec, start_s=start_s, end_s=end_s, info=info)
    except Exception as e:
        return e


def _probe_task(path: Path) -> tuple[VideoInfo, float] | Exception:
    """Ray task body: (the video's probe, seconds it took), or the error as a value."""
    from fervid.extract.decode import probe

    t0 = time.perf_counter()
    try:
        return probe(path), time.perf_counter() - t0
    except Exception as e:
        return e


@dataclass(eq=False)
class _VideoJob:
    """The driver's bookkeeping for one video being extracted in chunks."""

    video: VideoInput
    chunks: list[Chunk] = field(default_factory=list)  # empty until probed
    info: VideoInfo | None = None
    probe_s: float = 0.0
    parts: dict[int, VideoFaces] = field(default_factory=dict)  # chunk number -> result
    failed: bool = False


class _ClassifierActor:
    """Holds the model once (on the GPU when there is one) and classifies batches."""

    def __init__(self, settings: Any, cpu_threads: int) -> None:
        from fervid.model.classify import EmotionClassifier

        self.classifier = EmotionClassifier(settings=settings, cpu_threads=cpu_threads)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self.classifier(crops)


class RayExecutor:
    """Extraction as Ray tasks on CPU workers; classification in one Ray actor
    (``num_gpus=1`` when the classifier resolved to CUDA)."""

    def __init__(self, settings: RunSettings, spec: ModelSpec, classifier: Any) -> None:
        import logging

        # Patient data: no usage telemetry leaves the machine.
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        import ray

        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(
                include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                configure_logging=True,
            )  # fmt: skip
            if settings.ray_address:
                ray.init(address=settings.ray_address, **kwargs)
            else:
                ray.init(num_cpus=settings.workers or os.cpu_count() or 1, **kwargs)
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(settings.workers or cpus, cpus))
        self.settings, self.spec = settings, spec
        self._task = ray.remote(num_cpus=1, max_retries=2)(_extract_task)
        gpu = getattr(classifier, "device", None) is not None and classifier.device.type == "cuda"
        actor = ray.remote(
            num_gpus=1 if gpu else 0, num_cpus=0, max_restarts=1, max_task_retries=1
        )(_ClassifierActor)
        self._classifier = actor.remote(settings.classify, _classifier_threads(settings))

    def extract(self, videos: list[VideoInput]) -> Iterator[tuple[VideoInput, Outcome]]:
        """Probe each video in a task, then run one task per chunk, at most ``workers``
        tasks in flight, chunks of earlier videos first. A video is yielded, merged, once
        all its chunks are back; or with the first error of its probe or of any chunk,
        its other chunks then cancelled and their results ignored. Videos come back in
        completion order."""
        ray = self._ray
        probe_task = ray.remote(num_cpus=1, max_retries=2)(_probe_task)
        settings_ref, spec_ref = ray.put(self.settings), ray.put(self.spec)
        unprobed = deque(videos)
        ready: deque[tuple[_VideoJob, int]] = deque()  # chunks waiting for a free worker
        running: dict[Any, tuple[_VideoJob, int]] = {}  # in flight; chunk -1 is the probe
        while unprobed or ready or running:
            while len(running) < self.workers and (ready or unprobed):
                if ready:
                    job, k = ready.popleft()
                    a, b = job.chunks[k]
                    ref = self._task.remote(job.video, settings_ref, spec_ref, a, b, job.info)
                else:
                    job, k = _VideoJob(video=unprobed.popleft()), -1
                    ref = probe_task.remote(job.video.path)
                running[ref] = (job, k)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                job, k = running.pop(ref)
                if job.failed:
                    continue  # another chunk of this video failed first
                try:
                    out = ray.get(ref)
                except Exception as e:  # worker crashed beyond its retries
                    out = e
                if isinstance(out, BaseException):
                    job.failed = True
                    ready = deque(item for item in ready if item[0] is not job)
                    for other, (j, _) in running.items():
                        if j is job:  # stays counted in flight until it returns
                            with contextlib.suppress(Exception):
                                ray.cancel(other)
                    yield job.video, out
                elif k < 0:
                    job.info, job.probe_s = out
                    job.chunks = plan_chunks(job.info, self.settings.chunk_seconds)
                    ready.extend((job, i) for i in range(len(job.chunks)))
                else:
                    job.parts[k] = out
                    if len(job.parts) == len(job.chunks):
                        yield job.video, _merge_job(job)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        return self._ray.get(self._classifier.__call__.remote(crops))

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()


def _merge_job(job: _VideoJob) -> Outcome:
    try:
        parts = [job.parts[i] for i in range(len(job.chunks))]
        return _with_probe_time(merge_video_faces(parts), job.probe_s)
    except Exception as e:  # an inconsistent merge is this video's failure
        return e
