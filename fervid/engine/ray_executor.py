"""The Ray executor: extraction tasks on CPU workers streaming into classifier actors.

Per chunk, a Ray task (``num_cpus=1``) runs :func:`~fervid.engine.stages.extract_video`
and returns the chunk's :class:`~fervid.records.VideoFaces` into the object store. The
driver never fetches it (``ray.wait(fetch_local=False)``): it passes the object
reference to a classifier actor, so the crops go worker -> actor, node to node, and
only the crop-free result (a few KB of boxes, times and probabilities) comes back to
the driver. Work in flight is bounded: at most ``workers`` extraction tasks, and at
most ``QUEUE_PER_ACTOR`` chunks queued per actor; extraction waits when the classifier
lags (backpressure), so memory stays bounded however many videos are queued.

Actors: one per GPU (``--gpus``; ``num_gpus=1`` each), or one CPU actor when there is
none. Each loads the model from the run's verified bytes (``model_ref.load_verified``)
and puts the sha256 it loaded on every result; the driver checks it. A dead actor
(``max_restarts=1``: Ray restarts it once and retries its call; a second death reaches
us) fails the chunks it held, is replaced (up to ``MAX_ACTOR_REPLACEMENTS`` times), and
the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fervid.engine.interrupt import reinstall_sigterm_handler
from fervid.engine.model_ref import ModelRef
from fervid.engine.ray_setup import RayStartError, start_ray
from fervid.engine.stages import extract_video
from fervid.engine.tasks import (
    ChunkDone,
    ChunkFailed,
    ChunkOutcome,
    ChunkTask,
    Hooks,
    NullHooks,
    without_crops,
)
from fervid.errors import ClusterLost, ConfigError, ModelError
from fervid.model.spec import ModelSpec
from fervid.records import VideoFaces
from fervid.settings import ClassifySettings, Device, RunSettings

#: Chunks handed to one actor and not yet classified: one running, one waiting, so the
#: GPU never idles between calls while little work sits in its queue.
QUEUE_PER_ACTOR = 2
#: Times a classifier actor that died twice (after Ray's own restart) is replaced.
MAX_ACTOR_REPLACEMENTS = 2
#: Seconds between two checks that an attached cluster's GCS and the node the driver
#: attached to still accept connections. Ray itself notices a dead raylet or GCS only
#: after 60 s (then exits the process with status 1, writing nothing); its node health
#: checks are the cluster's own settings (15 s and more by default).
WATCH_INTERVAL_S = 1.0
#: TCP connect timeout of one check.
WATCH_CONNECT_S = 2.0


class _ClusterWatch:
    """Notices that the node this driver attached to (its raylet) or the cluster's GCS
    is gone: a TCP connect to each, once per :data:`WATCH_INTERVAL_S`. Other nodes are
    Ray's business: a task that died with its node is retried elsewhere, and a lost
    classifier actor is replaced."""

    def __init__(self, ray: Any, address: str) -> None:
        host, _, port = address.rpartition(":")
        node_id = ray.get_runtime_context().get_node_id()
        node = next((n for n in ray.nodes() if n.get("NodeID") == node_id), None)
        self._targets: list[tuple[str, tuple[str, int]]] = [
            (f"its GCS at {address}", (host, int(port)))
        ]
        if node is not None:
            ip, raylet_port = node["NodeManagerAddress"], int(node["NodeManagerPort"])
            where = f"node {ip} (id {node_id[:12]}, raylet port {raylet_port}; this run's node)"
            self._targets.insert(0, (where, (ip, raylet_port)))
        self._next = 0.0

    def check(self) -> None:
        """Raise :class:`ClusterLost` naming what stopped answering."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + WATCH_INTERVAL_S
        for what, target in self._targets:
            try:
                socket.create_connection(target, timeout=WATCH_CONNECT_S).close()
            except OSError as e:
                raise ClusterLost(
                    f"the Ray cluster lost {what} mid-run ({e.strerror or type(e).__name__}); "
                    "what finished is written and the finished chunks are kept: restart the "
                    "node and rerun to resume"
                ) from None


def _extract_task(task: ChunkTask, settings: RunSettings, spec: ModelSpec, threads: int) -> Any:
    """Ray task body: one chunk, decoded with ``threads`` threads. Errors are returned as
    values: a bad video is data, not a retry; Ray's retries (``max_retries``) are kept for
    crashed worker processes."""
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from running several chunks at once
    try:
        return extract_video(
            task.video, settings, spec, start_s=task.start_s, end_s=task.end_s, info=task.info,
            threads=threads,
        )  # fmt: skip
    except Exception as e:
        return e


@dataclass(frozen=True, kw_only=True)
class ClassifiedChunk:
    """What an actor returns for a chunk: crop-free faces, probs (n, C) float32, and the
    sha256 of the model that computed them."""

    faces: VideoFaces
    probs: np.ndarray
    sha256: str


class ClassifierActor:
    """Holds the model once (on its GPU when it has one) and classifies chunks."""

    def __init__(
        self, data: bytes, sha256: str, spec: ModelSpec, settings: ClassifySettings, threads: int
    ) -> None:
        from fervid.engine.model_ref import load_verified
        from fervid.model.classify import EmotionClassifier

        loaded = load_verified(data, sha256, spec)  # ModelError unless the bytes match
        self.classifier = EmotionClassifier(settings=settings, cpu_threads=threads, model=loaded)
        self.sha256 = loaded.sha256

    def ready(self) -> str:
        return self.sha256

    def pid(self) -> int:
        return os.getpid()

    def classify(self, extracted: Any) -> Any:
        """An extraction outcome (VideoFaces, or the error it returned) -> ClassifiedChunk,
        or the error as a value."""
        if isinstance(extracted, BaseException):
            return extracted
        try:
            probs = self.classifier(extracted.crops)  # (n, C) float32
        except Exception as e:
            return e
        return ClassifiedChunk(faces=without_crops(extracted), probs=probs, sha256=self.sha256)


class RayExecutor:
    """Extraction as Ray tasks, classification in an actor pool (see the module docs)."""

    name = "ray"

    def __init__(self, settings: RunSettings, model: ModelRef, hooks: Hooks | None = None) -> None:
        hooks = hooks or NullHooks()
        where = settings.ray_address or "embedded, 127.0.0.1 only"
        hooks.status(f"starting Ray ({where})")
        self.session = start_ray(
            address=settings.ray_address, num_cpus=settings.workers or os.cpu_count() or 1,
            log_workers=settings.log_workers,
        )  # fmt: skip
        reinstall_sigterm_handler()  # ray.init replaced it with one that exits mid-write
        try:
            self._setup(settings, model)
        except BaseException:
            self.session.close()
            raise
        hooks.status(
            f"Ray: {self.workers} extraction workers, {len(self._actors)} classifier "
            f"actor{'s' if len(self._actors) > 1 else ''} ({'GPU' if self._gpu else 'CPU'})"
        )

    def _setup(self, settings: RunSettings, model: ModelRef) -> None:
        ray = self._ray = self.session.ray
        cpus = self.session.cpus
        self.workers = max(1, min(settings.workers or cpus, cpus))
        gpus = _actor_gpus(settings, self.session.gpus)
        self._gpu = gpus > 0
        self.settings, self.spec, self.sha256 = settings, model.spec, model.sha256
        self._task = ray.remote(num_cpus=1, max_retries=2)(_extract_task)
        self._actor_cls = ray.remote(
            num_gpus=1 if self._gpu else 0, num_cpus=0, max_restarts=1, max_task_retries=1
        )(ClassifierActor)
        device = Device.CUDA if self._gpu else Device.CPU  # decided here, not on the node
        self._actor_args = (
            ray.put(model.data), model.sha256, model.spec,
            ClassifySettings(model_path=None, device=device,
                             batch_size=settings.classify.batch_size),
            # the cores the extraction workers leave free (at least 1): torch's OpenMP
            # threads spin-wait when they share cores with busy workers
            max(1, min(4, cpus - self.workers)),
        )  # fmt: skip
        self._actors = [self._new_actor() for _ in range(max(1, gpus))]
        self._replacements = 0
        self._cancelled: set[str] = set()
        self._extracting: dict[Any, ChunkTask] = {}
        self._watch = _ClusterWatch(ray, settings.ray_address) if settings.ray_address else None
        self._lost = False

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(*self._actor_args)

    def run(self, tasks: list[ChunkTask]) -> Iterator[ChunkOutcome]:
        ray = self._ray
        settings_ref, spec_ref = ray.put(self.settings), ray.put(self.spec)
        # the cores each extraction task may decode with: 1 when every core runs a task
        threads = max(1, self.session.cpus // self.workers)
        queue = deque(tasks)
        extracting = self._extracting  # ref -> task
        extracted: deque[tuple[Any, ChunkTask]] = deque()  # done, waiting for an actor
        classifying: dict[Any, tuple[ChunkTask, Any]] = {}  # ref -> (task, actor)
        load = {id(a): 0 for a in self._actors}
        ready = {a.ready.remote(): a for a in self._actors}  # model loaded (or refused)
        while queue or extracting or extracted or classifying:
            while extracted and self._actors:  # hand crops to the least busy actor
                actor = min(self._actors, key=lambda a: load[id(a)])
                if load[id(actor)] >= QUEUE_PER_ACTOR:
                    break
                ref, task = extracted.popleft()
                if task.video.video_id in self._cancelled:
                    continue
                classifying[actor.classify.remote(ref)] = (task, actor)  # a ref: no copy here
                load[id(actor)] += 1
            if not self._actors:  # every actor died and none may replace it
                left = [t for _, t in extracted] + [t for t, _ in classifying.values()]
                for task in [*left, *extracting.values(), *queue]:
                    if task.video.video_id not in self._cancelled:
                        yield ChunkFailed(task=task, error=_actors_gone(self._replacements))
                return
            while queue and len(extracting) + len(extracted) < self.workers:
                task = queue.popleft()
                if task.video.video_id not in self._cancelled:
                    extracting[self._task.remote(task, settings_ref, spec_ref, threads)] = task
            waiting = [*ready, *extracting, *classifying]
            if not waiting:
                continue
            done = self._wait(waiting)
            for ref in done:
                if ref in ready:
                    actor = ready.pop(ref)
                    self._check_ready(ref)
                elif ref in extracting:
                    extracted.append((ref, extracting.pop(ref)))
                else:
                    task, actor = classifying.pop(ref)
                    if id(actor) in load:  # not when the actor died and was replaced
                        load[id(actor)] -= 1
                    outcome = self._collect(ref, task, actor, load)
                    if task.video.video_id not in self._cancelled:
                        yield outcome

    def _wait(self, waiting: list[Any]) -> list[Any]:
        """The next finished refs; on an attached cluster, in steps of
        :data:`WATCH_INTERVAL_S` with the cluster checked between them."""
        if self._watch is None:
            done, _ = self._ray.wait(waiting, num_returns=1, fetch_local=False)
            return done
        done, _ = self._ray.wait(
            waiting, num_returns=1, fetch_local=False, timeout=WATCH_INTERVAL_S
        )
        try:
            self._watch.check()
        except ClusterLost:
            self._lost = True
            raise
        return done

    def _check_ready(self, ref: Any) -> None:
        """A model the actor refuses (hash or spec mismatch, unreadable) ends the run."""
        try:
            loaded = self._ray.get(ref)
        except Exception as e:
            cause = _model_error(e)
            if cause is not None:
                raise cause from None
            return  # the actor died for another reason: its calls fail and it is replaced
        if loaded != self.sha256:
            raise ModelError(f"a classifier actor loaded model {loaded[:12]}…, not the run's")

    def _collect(self, ref: Any, task: ChunkTask, actor: Any, load: dict[int, int]) -> ChunkOutcome:
        ray = self._ray
        try:
            out = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            cause = _model_error(e)
            if cause is not None:
                raise cause from None
            self._replace(actor, load)
            return ChunkFailed(
                task=task, error=RuntimeError(f"classifier actor died ({_first(e)})")
            )
        except Exception as e:  # the extraction worker crashed beyond its retries
            return ChunkFailed(task=task, error=e)
        if isinstance(out, BaseException):
            return ChunkFailed(task=task, error=out)
        if out.sha256 != self.sha256:  # cannot happen unless a node loaded other bytes
            return ChunkFailed(
                task=task,
                error=ModelError(f"classifier used model {out.sha256[:12]}…, not the run's"),
            )
        return ChunkDone(task=task, faces=out.faces, probs=out.probs)

    def _replace(self, actor: Any, load: dict[int, int]) -> None:
        """Swap a dead actor for a new one, once per dead actor, within the budget."""
        if actor not in self._actors:
            return  # already replaced: its other calls are failing too
        self._actors.remove(actor)
        load.pop(id(actor), None)
        with contextlib.suppress(Exception):
            self._ray.kill(actor)
        if self._replacements < MAX_ACTOR_REPLACEMENTS:
            self._replacements += 1
            fresh = self._new_actor()
            self._actors.append(fresh)
            load[id(fresh)] = 0

    def cancel_video(self, video_id: str) -> None:
        self._cancelled.add(video_id)
        for ref, task in list(self._extracting.items()):
            if task.video.video_id == video_id:
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref)

    def close(self) -> None:
        if self._lost:  # every call into Ray would wait ~60 s for the dead node first
            self.session.forget()
            return
        if not self.session.owned:  # a Ray the caller runs: leave it clean
            for ref in list(self._extracting):
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref, force=True)
            for actor in self._actors:
                with contextlib.suppress(Exception):
                    self._ray.kill(actor)
        # An embedded Ray is shut down whole, its workers with it. Force-cancelling their
        # tasks first races the replies in flight (Ray's "Tried to complete task that was
        # not pending" abort, seen on SIGTERM mid-run), so it is not done there.
        self._extracting.clear()
        self.session.close()


def _actor_gpus(settings: RunSettings, available: int) -> int:
    """How many GPU actors: ``--gpus`` (checked against what Ray sees), else every GPU
    when ``--device`` allows CUDA; 0 means one CPU actor."""
    device = settings.classify.device
    if device is Device.CPU:
        return 0
    if settings.gpus is not None:
        if settings.gpus > available:
            raise RayStartError(
                f"--gpus={settings.gpus} but Ray sees {available} GPU(s); pass --gpus "
                f"{available} or fewer"
            )
        wanted = settings.gpus
    else:
        wanted = available
    if device is Device.CUDA and wanted == 0:
        raise ConfigError(
            "--device cuda was asked for but Ray sees no GPU; use --device auto or cpu"
        )
    return wanted


def _model_error(e: BaseException) -> ModelError | None:
    """The ModelError an actor's constructor raised, found in Ray's wrapping, if any."""
    seen: set[int] = set()
    stack: list[Any] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, ModelError):
            return x
        stack += [getattr(x, "cause", None), getattr(x, "__cause__", None)]
        if "ModelError" in str(getattr(x, "error_msg", "")):
            return ModelError(_first(x).split("ModelError: ", 1)[-1])
    return None


def _first(e: BaseException) -> str:
    text = str(getattr(e, "error_msg", "") or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _actors_gone(replaced: int) -> RuntimeError:
    return RuntimeError(
        f"the classifier actor died {replaced + 1} times; rerun to resume the videos left"
    )
