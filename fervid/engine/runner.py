"""The engine: wires the stages per video and runs them through an executor.

Per video, workers run decode -> sample -> detect -> crop (:func:`extract_video`) per
time chunk (:func:`plan_chunks`, ``RunSettings.chunk_seconds``); a classifier turns each
chunk's crops into probabilities; the driver keeps each classified chunk (on disk for a
long video, :mod:`fervid.engine.chunk_store`), and the moment a video's last chunk is
classified it merges them in time order (:func:`merge_video_faces`), tracks, smooths,
segments (:func:`finish_video`) and writes the video. So nothing finished is lost when
the run stops, and a rerun resumes a long recording from its last finished chunk.
Chunks sample on the whole video's grid, so the merged result equals an unchunked run.

The stages are in :mod:`fervid.engine.stages`, the task records, the executor protocol
and the hooks in :mod:`fervid.engine.tasks`. Executors: :class:`LocalExecutor`
(in-process) here, ``RayExecutor`` in
:mod:`fervid.engine.ray_executor` (the only module besides :mod:`fervid.engine.ray_setup`
that imports Ray). ``--executor auto`` picks local for a small job
(:data:`AUTO_LOCAL_MAX_SECONDS`), Ray above it; rows are identical either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fervid import __version__
from fervid.engine.chunk_store import ChunkStore
from fervid.engine.interrupt import (
    Terminated,
    held,
    received,
    sigterm_as_interrupt,
    swallowed,
)
from fervid.engine.model_ref import ModelRef, load_verified
from fervid.engine.stages import (
    MIN_SPLIT_SECONDS,
    chunk_length,
    extract_video,
    finish_video,
    merge_video_faces,
    plan_chunks,
)
from fervid.engine.tasks import (
    Chunk,
    ChunkDone,
    ChunkFailed,
    ChunkOutcome,
    ChunkTask,
    Executor,
    Hooks,
    NullHooks,
    without_crops,
)
from fervid.errors import ClusterLost, FervidError
from fervid.model.spec import ModelSpec
from fervid.records import VideoFaces, VideoInfo, VideoInput
from fervid.settings import Detector, ExecutorKind, RunSettings

# The stages and records live in their own modules (the Ray executor imports them too,
# so neither it nor this module imports the other at load); named here for callers.
__all__ = [
    "MIN_SPLIT_SECONDS",
    "Chunk",
    "ChunkDone",
    "ChunkFailed",
    "ChunkOutcome",
    "ChunkTask",
    "Executor",
    "Hooks",
    "LocalExecutor",
    "NullHooks",
    "RunInterrupted",
    "RunSummary",
    "Terminated",
    "choose_executor",
    "chunk_length",
    "default_executor_factory",
    "error_message",
    "extract_video",
    "finish_video",
    "merge_video_faces",
    "plan_chunks",
    "resolve_paths",
    "run",
    "without_crops",
]  # fmt: skip

log = logging.getLogger(__name__)


def _with_probe_time(faces: VideoFaces, probe_s: float) -> VideoFaces:
    """Count the probe, run once per video, in the decode and extract times."""
    seconds = dict(faces.seconds)
    for key in ("extract", "decode"):
        seconds[key] = seconds.get(key, 0.0) + probe_s
    return dataclasses.replace(faces, seconds=seconds)


class _InBackground:
    """``fn()`` on a daemon thread (an interrupted run does not wait for it);
    :meth:`result` waits for it and returns its value or raises its exception in the
    caller, so a failure in the thread always reaches the run."""

    def __init__(self, fn: Callable[[], Any], *, name: str) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._call, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _call(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as e:  # handed to result()'s caller
            self._error = e

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class LocalExecutor:
    """Everything in this process: small jobs, tests, debugging.

    Chunks are extracted on up to ``settings.workers`` (default: the cores) threads at
    once, and each extracted chunk is classified in the calling thread while the others
    go on: PyAV, OpenCV's DNN and torch release the GIL while they work, so a 3-minute
    clip's six chunks keep both cores of a 2-core machine busy without Ray's start-up
    (docs/performance.md). One chunk (a short clip) is extracted with every core.

    The classifier is built from the run's verified model bytes (``model``), loaded on a
    background thread while the first chunk is extracted (importing torch and loading
    the weights is most of a short clip's run), or is the ``classifier`` given (tests).
    A model that will not load ends the run when the first chunk needs it."""

    name = "local"

    def __init__(
        self, settings: RunSettings, model: ModelRef, classifier: Any = None, hooks: Any = None
    ) -> None:
        self.settings, self.spec = settings, model.spec
        #: the run's hooks: a ChunkProgress reports the seconds decoded inside a chunk
        self._progress = getattr(hooks, "chunk_progress", None)
        self._classifier = classifier
        self._loading: _InBackground | None = None
        if classifier is None:
            self._loading = _InBackground(
                lambda: load_verified(model.data, model.sha256, model.spec), name="model-load"
            )
        self._cancelled: set[str] = set()
        self._stop = threading.Event()  # set by close(): extraction threads end early
        self._opencv_threads: int | None = None  # OpenCV's count before a parallel run
        self._slots: threading.Semaphore | None = None  # one per extracted chunk waiting
        self._threads: list[threading.Thread] = []

    @property
    def classifier(self) -> Any:
        """The classifier, waiting for the model to finish loading the first time."""
        if self._classifier is None:
            from fervid.model.classify import EmotionClassifier

            assert self._loading is not None
            loaded = self._loading.result()  # raises what loading raised (ModelError)
            # torch's thread count is set here, in the thread that runs the classifier
            self._classifier = EmotionClassifier(
                settings=self.settings.classify,
                cpu_threads=_classifier_threads(self.settings),
                model=loaded,
            )
        return self._classifier

    def run(self, tasks: list[ChunkTask]) -> Iterator[ChunkOutcome]:
        import queue

        from fervid.extract.decode import decoder_threads

        parallel = max(1, min(self.settings.workers or os.cpu_count() or 1, len(tasks)))
        threads = decoder_threads(parallel)  # the cores shared out between the chunks
        if parallel > 1 and self._opencv_threads is None:
            from fervid.extract.detect import set_opencv_threads

            # the parallelism is across chunks: OpenCV's own pool would oversubscribe
            self._opencv_threads = set_opencv_threads(1)
        pending = iter(tasks)
        lock = threading.Lock()  # guards ``pending``
        # Extracted chunks wait here for the classifier, at most ``parallel`` of them:
        # crops do not pile up when the classifier is the slower side.
        slots = self._slots = threading.Semaphore(parallel)
        # Progress, too, reaches the caller's hooks from this thread only.
        events: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()

        def extract_next() -> None:
            while True:
                slots.acquire()
                with lock:
                    task = next(pending, None)
                    while task is not None and task.video.video_id in self._cancelled:
                        task = next(pending, None)
                if task is None or self._stop.is_set():
                    events.put(("idle", None, None))
                    return
                try:
                    faces = extract_video(
                        task.video, self.settings, self.spec,
                        start_s=task.start_s, end_s=task.end_s, info=task.info,
                        progress=functools.partial(self._report, events, task),
                        threads=threads,
                    )  # fmt: skip
                except _Stopped:
                    return
                except Exception as e:  # recorded per video, never fatal to the run
                    events.put(("failed", task, e))
                    continue
                except BaseException as e:  # ends the run, raised in the caller's thread
                    events.put(("raise", task, e))
                    return
                events.put(("done", task, faces))

        for k in range(parallel):
            t = threading.Thread(target=extract_next, name=f"extract-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        running = parallel
        while running:
            kind, task, value = events.get()
            if kind == "idle":
                running -= 1
                continue
            if kind == "progress":
                if self._progress is not None:
                    self._progress(task, value)
                continue
            if kind == "raise":
                raise value
            slots.release()  # a chunk left the queue: its thread may extract the next
            if task.video.video_id in self._cancelled:
                continue
            if kind == "failed":
                yield ChunkFailed(task=task, error=value)
                continue
            # outside the per-video handling: a model that will not load ends the run
            classifier = self.classifier
            try:
                probs = classifier(value.crops)  # (n, C)
            except Exception as e:
                yield ChunkFailed(task=task, error=e)
                continue
            yield ChunkDone(task=task, faces=without_crops(value), probs=probs)

    def _report(self, events: Any, task: ChunkTask, seconds: float) -> None:
        if self._stop.is_set():
            raise _Stopped
        events.put(("progress", task, seconds))

    def cancel_video(self, video_id: str) -> None:
        self._cancelled.add(video_id)

    def close(self) -> None:
        self._stop.set()
        if self._threads:  # wake the threads waiting for a slot: they end
            assert self._slots is not None
            self._slots.release(len(self._threads))
        # A stopped thread ends at its chunk's next progress report (every 5 s of video):
        # wait for that, bounded, so no decoder is still running when the process exits.
        deadline = time.monotonic() + 5.0
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self._opencv_threads is not None:
            from fervid.extract.detect import set_opencv_threads

            set_opencv_threads(self._opencv_threads)
            self._opencv_threads = None


class _Stopped(Exception):
    """Raised in an extraction thread once the executor is closed: its chunk is dropped."""


class ChunkProgress:
    """The caller's hooks, plus ``chunk_progress(task, seconds)`` for executors to call
    while a chunk is decoded: each report and each finished chunk becomes a
    ``chunk_done`` of the seconds not yet counted, so the bar (and its ETA) moves inside
    a chunk and never counts a second twice."""

    def __init__(self, hooks: Hooks) -> None:
        self.inner = hooks
        self._counted: dict[tuple[str, int], float] = {}  # (video_id, chunk) -> seconds

    def status(self, message: str) -> None:
        self.inner.status(message)

    def start(self, total: int, skipped: int, seconds: float) -> None:
        self.inner.start(total, skipped, seconds)

    def chunk_done(self, video: VideoInput, seconds: float) -> None:
        self.inner.chunk_done(video, seconds)

    def video_done(self, video: VideoInput, status: str, detail: str) -> None:
        self.inner.video_done(video, status, detail)

    def chunk_progress(self, task: ChunkTask, seconds: float) -> None:
        """``seconds`` of ``task``'s chunk are decoded (from its start)."""
        key = (task.video.video_id, task.index)
        counted = self._counted.get(key, 0.0)
        now = min(seconds, task.seconds)
        if now > counted:
            self._counted[key] = now
            self.inner.chunk_done(task.video, now - counted)

    def chunk_finished(self, task: ChunkTask) -> None:
        """``task`` is classified (or failed): the rest of its seconds."""
        counted = self._counted.pop((task.video.video_id, task.index), 0.0)
        self.inner.chunk_done(task.video, max(0.0, task.seconds - counted))


# --------------------------------------------------------------------------- run
@dataclass
class RunSummary:
    """What a run did; the CLI prints it and picks the exit code from ``failed`` and
    ``interrupted``."""

    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    skipped: int = 0
    id_pattern_unmatched: list[str] = field(default_factory=list)  # paths --id-pattern missed
    frames: int = 0
    faces: int = 0  # face rows: a face in one sampled frame
    tracks: int = 0  # faces: distinct face_id tracks (people), summed over videos
    video_seconds: float = 0.0
    wall_s: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)
    executor: str = "none"  # "local", "ray" or "none" (nothing to do)
    executor_start_s: float = 0.0  # of wall_s: starting the executor (Ray, model load)
    todo: int = 0  # videos this run set out to process
    chunks_resumed: int = 0  # chunks taken from an interrupted earlier run
    interrupted: str | None = None  # "SIGINT" or "SIGTERM" when the run was stopped
    #: Paths among ``failed`` whose earlier result was kept (the store's ``kept``): the
    #: old rows stay, with ``last_error``; still a failure of this run (exit code 3).
    kept: list[str] = field(default_factory=list)
    #: Problems found in the existing output (the store's ``warnings``: a torn part file
    #: moved to ``.quarantine/``, its video redone), one line each.
    warnings: list[str] = field(default_factory=list)
    #: Paths not analysed because they are still being written (``--settle-seconds``):
    #: not failures; a later run takes them.
    pending: list[str] = field(default_factory=list)
    #: Videos a stopped run left unfinished with some of their chunks on disk:
    #: (path, chunks kept, chunks planned); a rerun starts from them.
    partial: list[tuple[str, int, int]] = field(default_factory=list)
    #: Paths whose file has other content than their stored result: the new result
    #: replaced it, and the old one was moved to the output's history (the store's
    #: ``replaced``).
    replaced: list[str] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        """Video seconds analysed per wall-clock second."""
        return self.video_seconds / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def done(self) -> int:
        """Videos of this run written (ok or failed)."""
        return self.ok + len(self.failed)

    def kept_text(self, most: int = 3) -> str:
        """What a stopped run kept, for its one line: videos written of those it set out
        to do, and the chunks on disk of the unfinished ones (the first ``most``)."""
        parts = [f"{self.done} of {self.todo} videos done"]
        parts += [f"{k} of {n} chunks of {p} kept" for p, k, n in self.partial[:most]]
        if len(self.partial) > most:
            more = self.partial[most:]
            parts.append(f"{sum(k for _, k, _ in more)} chunks of {len(more)} more videos kept")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary (``fervid process --json``)."""
        return {
            "ok": self.ok, "failed": [{"path": p, "error": e} for p, e in self.failed],
            "skipped": self.skipped, "todo": self.todo, "not_done": self.todo - self.done,
            "frames": self.frames, "faces": self.faces, "face_tracks": self.tracks,
            "video_seconds": self.video_seconds,
            "wall_s": self.wall_s, "realtime_factor": self.realtime_factor,
            "executor": self.executor, "executor_start_s": self.executor_start_s,
            "chunks_resumed": self.chunks_resumed,
            "interrupted": self.interrupted, "id_pattern_unmatched": self.id_pattern_unmatched,
            "kept": self.kept, "warnings": self.warnings,
            "pending": self.pending, "replaced": self.replaced,
            "partial": [{"path": p, "chunks_kept": k, "chunks": n} for p, k, n in self.partial],
            "outputs": {k: str(v) for k, v in self.outputs.items()},
        }  # fmt: skip


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run after everything finished was written;
    ``summary`` says what was done. A rerun resumes (finished chunks are on disk)."""

    def __init__(self, summary: RunSummary, signal_name: str) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.summary, self.signal_name = summary, signal_name

    @property
    def message(self) -> str:
        """What was kept: ``interrupted: 0 of 1 videos done; 6 of 20 chunks of
        clip.mp4 kept; rerun to resume``."""
        return f"interrupted: {self.summary.kept_text()}; rerun to resume"


def counted(n: int, what: str) -> str:
    """``"1 face"``, ``"40 face rows"``: a count that says what it counts."""
    return f"{n} {what}{'' if n == 1 else 's'}"


def error_message(e: BaseException) -> str:
    """One line naming the error; Ray wraps task errors, so unwrap its cause."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, FervidError):
        return msg or type(e).__name__
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def resolve_paths(settings: RunSettings) -> RunSettings:
    """``settings`` with every path absolute and the model file decided (``--model``,
    else ``$FERVID_MODEL``, else the shipped model), in the driver: Ray workers run in
    other working directories and environments, and must never re-decide either."""
    from fervid.engine.model_ref import resolve_model_path

    def absolute(p: Path | None) -> Path | None:
        return None if p is None else Path(p).expanduser().absolute()

    return dataclasses.replace(
        settings,
        inputs=tuple(Path(p).expanduser().absolute() for p in settings.inputs),
        out=Path(settings.out).expanduser().absolute(),
        save_crops=absolute(settings.save_crops),
        classify=dataclasses.replace(
            settings.classify, model_path=resolve_model_path(settings.classify.model_path)
        ),
    )


ExecutorFactory = Callable[[RunSettings, ModelRef, Hooks], Executor]


@dataclass(eq=False)
class _VideoJob:
    """The driver's bookkeeping for one video: its chunks, classified so far."""

    video: VideoInput
    info: VideoInfo
    count: int
    chunk_s: float = 0.0  # the chunk length its plan used
    probe_s: float = 0.0
    parts: dict[int, tuple[VideoFaces, np.ndarray]] = field(default_factory=dict)
    failed: bool = False


def run(
    settings: RunSettings,
    *,
    executor_factory: ExecutorFactory | None = None,
    hooks: Hooks | None = None,
    store_factory: Callable[..., Any] | None = None,
) -> RunSummary:
    """Discover, skip what is done, probe and plan chunks, extract and classify them
    through an executor, and write each video the moment its last chunk is classified.

    ``store_factory``: builds the results store from :class:`OutputStore`'s keyword
    arguments instead of it (``fervid.analyze`` keeps everything in a
    :class:`~fervid.output.memory.MemoryStore`); finished chunks then stay in memory too.

    Ctrl-C or SIGTERM: what is finished is already on disk (videos, and the chunks of
    long videos); the output is finalized and :class:`RunInterrupted` is raised. The
    same for an attached cluster that lost its node or GCS, then
    :class:`~fervid.errors.ClusterLost` with ``summary`` set.
    """
    from fervid.engine.model_ref import model_ref
    from fervid.engine.preflight import check_before_writing
    from fervid.extract.decode import probe
    from fervid.extract.discover import discover
    from fervid.output.store import OutputStore, parts_root
    from fervid.output.tables import (
        Identity,
        failed_video_table,
        frames_table,
        segments_table,
        video_row_table,
    )

    t0 = time.perf_counter()
    hooks = ChunkProgress(hooks or NullHooks())
    settings = resolve_paths(settings)
    if settings.detect.detector is Detector.RES10:  # cv2 loads in the driver for this only
        from fervid.extract.detect import check_detector

        check_detector(settings.detect)  # OpenCV 5, no weights: exit 2 before any write
    assert settings.classify.model_path is not None  # resolve_paths resolved it
    model = model_ref(settings.classify.model_path)  # header + bytes; no weights loaded here
    spec, sha = model.spec, model.sha256
    check_before_writing(settings, spec)  # device, GPUs, Ray address, --out: refuse now
    settings_hash = settings.settings_hash(sha)
    videos = discover(settings.inputs, settings.discover)
    videos, pending = _settled(videos, settings.discover.settle_seconds)
    store = (store_factory or OutputStore)(
        out=settings.out, class_names=spec.class_names, settings_json=settings.metadata_json(),
        model_sha256=sha, settings_hash=settings_hash, fervid_version=__version__,
        overwrite=settings.overwrite,
    )  # fmt: skip
    chunks: Any = (
        ChunkStore(parts_root(settings.out) / ".chunks", settings_hash)
        if store_factory is None
        else _NoChunks()
    )
    workers = settings.workers or os.cpu_count() or 1
    summary = RunSummary(
        id_pattern_unmatched=[v.rel_path for v in videos if v.id_pattern_matched is False],
        pending=[v.rel_path for v in pending],
    )
    supersede = _path_owner(videos, store, summary)
    executor: Executor | None = None
    lost: ClusterLost | None = None
    jobs: dict[str, _VideoJob] = {}

    def write_failed(v: VideoInput, msg: str) -> None:
        row = failed_video_table(
            Identity.of(v), status="failed", error=msg, settings_hash=settings_hash, model_sha256=sha,
            fervid_version=__version__, size_bytes=v.size_bytes, class_names=spec.class_names,
        )  # fmt: skip
        if not store.write_video(v.video_id, *_empty_tables(spec, store), row):
            summary.kept.append(v.rel_path)  # an earlier result stays, with last_error
        chunks.clear(v.video_id)
        summary.failed.append((v.rel_path, msg))
        hooks.video_done(v, "failed", msg)

    def write_done(job: _VideoJob) -> None:
        parts = [job.parts[k] for k in range(job.count)]  # in time order
        try:
            faces = _with_probe_time(merge_video_faces([f for f, _ in parts]), job.probe_s)
            probs = np.concatenate([p for _, p in parts]).astype(np.float32, copy=False)
            result = finish_video(faces, probs, spec.class_names, settings)
            ident = Identity.of(faces.video)
            store.write_video(
                faces.video.video_id,
                frames_table(result, ident, keep_empty_frames=settings.keep_empty_frames),
                segments_table(result, ident),
                video_row_table(result, ident, settings_hash=settings_hash, model_sha256=sha,
                                fervid_version=__version__),
            )  # fmt: skip
        except Exception as e:
            write_failed(job.video, error_message(e))
            return
        supersede(job.video, job.video.video_id)
        chunks.clear(job.video.video_id)
        log.info("%s", _timings(job.video, faces, job.count))
        summary.ok += 1
        summary.frames += len(faces.sampled_frame_index)
        summary.faces += faces.n_faces
        tracks = len(np.unique(result.face_id))
        summary.tracks += tracks
        summary.video_seconds += faces.info.duration_s
        hooks.video_done(
            faces.video, "ok", f"{counted(faces.n_faces, 'face row')}, {counted(tracks, 'face')}"
        )

    try:
        with sigterm_as_interrupt():
            # Rows are written only once the executor has started: one that refuses the
            # run (an attached cluster without the GPUs asked for) leaves the rows alone.
            writes: list[Callable[[], None]] = []
            todo = _select(
                videos, store, settings, spec, sha, settings_hash, summary, writes, supersede
            )
            summary.todo = len(todo)
            tasks: list[ChunkTask] = []

            def plan_videos(videos: list[VideoInput]) -> list[ChunkTask]:
                """Probe in the driver: the plan and the progress total up front."""
                planned: list[ChunkTask] = []
                for v in videos:
                    tp = time.perf_counter()
                    try:
                        info = probe(v.path)
                    except Exception as e:
                        writes.append(functools.partial(write_failed, v, error_message(e)))
                        continue
                    length = chunk_length(settings.chunk_seconds, info.duration_s, workers)
                    plan = plan_chunks(info, length)
                    job = jobs[v.video_id] = _VideoJob(
                        video=v, info=info, count=len(plan), chunk_s=length,
                        probe_s=time.perf_counter() - tp,
                    )  # fmt: skip
                    if job.count > 1:  # chunks an interrupted run finished
                        job.parts.update(chunks.load(v, info, job.count, length))
                        summary.chunks_resumed += len(job.parts)
                    planned.extend(
                        ChunkTask(video=v, info=info, index=k, count=job.count, start_s=a, end_s=b)
                        for k, (a, b) in enumerate(plan)
                        if k not in job.parts
                    )
                return planned

            def start_executor(seconds: float) -> Executor:
                factory = executor_factory or default_executor_factory(settings, seconds)
                ts = time.perf_counter()
                started = factory(settings, model, hooks)
                summary.executor_start_s = time.perf_counter() - ts
                summary.executor = getattr(started, "name", type(started).__name__)
                return started

            for i, v in enumerate(todo):
                tasks += plan_videos([v])
                seconds = sum(t.seconds for t in tasks)
                if tasks and _ray_is_decided(settings, executor_factory, seconds):
                    # Ray starts (its processes, workers and the classifier actor) while
                    # the other videos are probed and planned on a thread
                    rest = _InBackground(functools.partial(plan_videos, todo[i + 1 :]), name="plan")
                    try:
                        executor = start_executor(seconds)
                    except BaseException:
                        with contextlib.suppress(BaseException):
                            rest.result()  # the thread writes into jobs: let it finish
                        raise
                    tasks += rest.result()
                    break
            seconds = sum(t.seconds for t in tasks)
            hooks.start(len(todo), summary.skipped, seconds)
            if tasks and executor is None:
                executor = start_executor(seconds)
            for write in writes:
                write()
            for job in list(jobs.values()):
                if len(job.parts) == job.count:  # every chunk was on disk already
                    write_done(job)
            if executor is not None:
                for outcome in executor.run(tasks):
                    job = jobs[outcome.task.video.video_id]
                    hooks.chunk_finished(outcome.task)
                    if job.failed:
                        continue  # another chunk of this video failed first
                    if isinstance(outcome, ChunkFailed):
                        job.failed = True
                        executor.cancel_video(job.video.video_id)
                        write_failed(job.video, error_message(outcome.error))
                        continue
                    # A stop signal between the save and the count would leave a chunk on
                    # disk that the interrupt line does not name: hold it until both are done.
                    with held():
                        if len(job.parts) + 1 < job.count:  # a long video: each chunk on disk
                            chunks.save(  # before it counts as kept
                                outcome.faces, outcome.probs, outcome.task.index, job.count,
                                job.chunk_s,
                            )  # fmt: skip
                        job.parts[outcome.task.index] = (outcome.faces, outcome.probs)
                    if len(job.parts) == job.count:
                        write_done(job)
    except KeyboardInterrupt as e:
        summary.interrupted = received(e)
        summary.partial = _kept_chunks(jobs.values())
    except ClusterLost as e:  # an attached cluster's node or GCS died: keep what finished
        lost = e
        summary.partial = _kept_chunks(jobs.values())
    finally:
        # Finalize the output before stopping the executor: whatever happens while Ray
        # shuts down, what was classified is on disk in its final form. Once stopped by
        # a signal, more Ctrl-C / SIGTERM do not cut this short.
        with swallowed() if summary.interrupted else contextlib.nullcontext():
            try:
                summary.replaced = list(store.replaced)
                summary.outputs = store.finalize()
                summary.warnings += store.warnings
            finally:
                if executor is not None:
                    executor.close()
        summary.wall_s = time.perf_counter() - t0
    if lost is not None:
        lost.summary = summary
        raise lost
    if summary.interrupted:
        raise RunInterrupted(summary, summary.interrupted)
    return summary


class _NoChunks:
    """The chunk store of a run kept in memory: a video's chunks stay in its job only."""

    def load(self, *args: Any) -> dict[int, Any]:
        return {}

    def save(self, *args: Any) -> None:
        pass

    def clear(self, video_id: str) -> None:
        pass


def _select(
    videos: list[VideoInput],
    store: Any,
    settings: RunSettings,
    spec: ModelSpec,
    sha: str,
    settings_hash: str,
    summary: RunSummary,
    writes: list[Callable[[], None]],
    supersede: Callable[[VideoInput, str], None],
) -> list[VideoInput]:
    """The videos to process: not done with these settings, duplicates recorded once
    (their rows appended to ``writes``, for the caller to write).

    A duplicate is a second path with the same content (``video_id``): another input of
    this run, or, in a later run given only the copy, the path the stored result was
    analysed under. It gets one ``skipped`` row with ``duplicate_of`` that path. Rows of
    an input's path made from other content go to history (``supersede``) once the
    path's current row is there: already, or a duplicate's row written here.
    """
    from fervid.output.tables import Identity, failed_video_table

    def write_duplicate(v: VideoInput, original: str) -> None:
        dup_key = v.video_id + "-dup-" + _short(v.rel_path)
        # Recorded once: rewriting it every run would give it a newer processed_at
        # than the analysed copy, which readers would take for the latest result.
        if settings.overwrite or not store.has_video(dup_key):
            store.write_video(dup_key, *_empty_tables(spec, store),
                              failed_video_table(Identity.of(v), status="skipped",
                                                 error=f"same content as {original}",
                                                 duplicate_of=original,
                                                 settings_hash=settings_hash, model_sha256=sha,
                                                 fervid_version=__version__, size_bytes=v.size_bytes,
                                                 class_names=spec.class_names))  # fmt: skip
        supersede(v, dup_key)

    def record_duplicate(v: VideoInput, original: str) -> None:
        writes.append(functools.partial(write_duplicate, v, original))
        summary.skipped += 1

    seen: dict[str, VideoInput] = {}
    todo: list[VideoInput] = []
    for v in videos:
        if store.should_skip(v.video_id):  # done with these settings, under some path
            stored = store.stored_path(v.video_id)
            if stored is None or stored == v.rel_path:  # the analysed recording itself
                # an older run's result of earlier content, if any, goes to history
                writes.append(functools.partial(supersede, v, v.video_id))
                summary.skipped += 1
            else:  # a copy, given to a later run than the one that analysed the content
                record_duplicate(v, stored)
        elif v.video_id in seen:  # the same content under two paths of this run
            record_duplicate(v, seen[v.video_id].rel_path)
        else:
            seen[v.video_id] = v
            todo.append(v)
    return todo


def _kept_chunks(jobs: Iterable[_VideoJob]) -> list[tuple[str, int, int]]:
    """(path, chunks on disk, chunks planned) of the unwritten videos with any chunk
    kept: every classified chunk of a multi-chunk video is saved at once."""
    return [
        (j.video.rel_path, len(j.parts), j.count)
        for j in jobs
        if j.count > 1 and j.parts and not j.failed and len(j.parts) < j.count
    ]


def _timings(video: VideoInput, faces: VideoFaces, chunks: int) -> str:
    """One log line per written video: what it held and where the time went."""
    times = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(faces.seconds.items()))
    return (
        f"done {video.rel_path}: {faces.info.duration_s:.1f} s of video, "
        f"{len(faces.sampled_frame_index)} frames sampled, {faces.n_faces} face rows, "
        f"{chunks} chunk(s); {times}"
    )


def _settled(
    videos: list[VideoInput], settle_seconds: float
) -> tuple[list[VideoInput], list[VideoInput]]:
    """``videos`` split into those to take and those still being written (pending)."""
    from fervid.extract.settle import is_pending

    now = time.time()  # one instant for the whole input list
    pending = [v for v in videos if is_pending(v.path, settle_seconds, now=now)]
    if not pending:
        return videos, []
    waiting = {id(v) for v in pending}
    return [v for v in videos if id(v) not in waiting], pending


def _path_owner(
    videos: list[VideoInput], store: Any, summary: RunSummary
) -> Callable[[VideoInput, str], None]:
    """``supersede(video, key)``: the row under ``key`` is now ``video``'s path's current
    one; the path's rows of other content move to the output's history.

    Not for a path two inputs of this run share with different content (two folders
    given, each holding ``call.mp4``): neither file is the other's newer version, so
    both rows stay, with a warning naming the path."""
    contents: dict[str, set[str]] = {}
    for v in videos:
        contents.setdefault(v.rel_path, set()).add(v.video_id)
    shared = sorted(p for p, ids in contents.items() if len(ids) > 1)
    for path in shared:
        summary.warnings.append(
            f"{len(contents[path])} inputs of other content have the same path {path} "
            "(relative to the folders given); both results are kept, and a later run "
            "with one of them replaces the other: give their common parent folder instead"
        )

    def supersede(video: VideoInput, key: str) -> None:
        if video.rel_path not in shared:
            store.supersede(video.rel_path, key)

    return supersede


def _short(s: str) -> str:
    import hashlib

    return hashlib.blake2b(s.encode(), digest_size=4).hexdigest()


def _empty_tables(spec: ModelSpec, store: Any) -> tuple[Any, Any]:
    from fervid.output.schema import frames_schema, segments_schema

    return frames_schema(spec.class_names).empty_table(), segments_schema(
        spec.class_names
    ).empty_table()


def _classifier_threads(settings: RunSettings) -> int:
    # One torch thread: on a shared 2-core machine 2 OpenMP threads spin and wait at
    # every layer's barrier; 1,200 64 px faces took 14-18 CPU s (41-65 s wall) with 2
    # threads against 1.5 CPU s (2.9 s wall) with 1 (docs/performance.md, end to end).
    return 1


#: ``--executor auto`` runs a job of at most this many seconds of video in-process.
#: Measured on 2 cores (docs/performance.md): the in-process executor, a thread per
#: core, was faster than Ray at every length up to here (3 min 12.5 s against 19.5 s,
#: 10 min 30.5 s against 34.0 s, 30 min 68.6 s against 83.1 s; half Ray's memory).
#: Above it Ray: a night's batch gets process isolation (a decoder that crashes takes
#: one worker down, not the run) and the same code scales to a cluster.
AUTO_LOCAL_MAX_SECONDS = 1800.0


def choose_executor(settings: RunSettings, seconds: float) -> ExecutorKind:
    """``settings.executor``, with auto decided: Ray for an attached cluster, for more
    than :data:`AUTO_LOCAL_MAX_SECONDS` of video, or with GPUs asked for; else local."""
    if settings.executor is not ExecutorKind.AUTO:
        return settings.executor
    if settings.ray_address or settings.gpus:
        return ExecutorKind.RAY
    if seconds <= AUTO_LOCAL_MAX_SECONDS or settings.workers == 1:
        return ExecutorKind.LOCAL
    return ExecutorKind.RAY


def _ray_is_decided(settings: RunSettings, factory: ExecutorFactory | None, seconds: float) -> bool:
    """Whether the default executor is Ray whatever the videos not yet planned hold
    (more video only ever chooses Ray), so it can start before they are probed."""
    return factory is None and choose_executor(settings, seconds) is ExecutorKind.RAY


def default_executor_factory(settings: RunSettings, seconds: float) -> ExecutorFactory:
    """The executor class for ``settings`` and a job of ``seconds`` of video."""
    if choose_executor(settings, seconds) is ExecutorKind.LOCAL:
        return lambda st, model, hooks: LocalExecutor(st, model, hooks=hooks)
    from fervid.engine.ray_executor import RayExecutor

    return RayExecutor
