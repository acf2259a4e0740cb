"""The per-video stages the executors run: plan a video's chunks, extract a chunk,
merge a video's chunks, and track/smooth/segment the classified rows.

Ray-free and driver-free: the in-process executor, the Ray tasks and the driver all call
them (:mod:`fervid.engine.runner`, :mod:`fervid.engine.ray_executor`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from fervid.engine.tasks import Chunk
from fervid.model.spec import ModelSpec
from fervid.records import VideoFaces, VideoInfo, VideoInput, VideoResult
from fervid.settings import RunSettings, check_chunk_seconds


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


#: Seconds of video between two progress reports of one chunk (a 60 s clip: ~12).
PROGRESS_EVERY_S = 5.0


def extract_video(
    video: VideoInput,
    settings: RunSettings,
    spec: ModelSpec,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    info: VideoInfo | None = None,
    progress: Callable[[float], None] | None = None,
    threads: int = 1,
) -> VideoFaces:
    """decode -> sample -> detect -> crop for one video, streaming frame by frame.

    ``progress``: called with the seconds of the chunk done so far (from ``start_s``),
    every :data:`PROGRESS_EVERY_S` seconds of video, so a progress bar moves inside a
    chunk (a whole short clip is one chunk).

    ``start_s``/``end_s`` restrict it to the sampled frames with ``start_s <= timestamp
    < end_s`` (seconds; None: to the end), one chunk of :func:`plan_chunks`: chunks
    sample on the whole video's grid, so :func:`merge_video_faces` of consecutive chunks
    equals the whole video. ``info``: the video's probe, when already known (chunks of
    one video share it); probed here when None. ``threads``: decoder threads
    (:func:`fervid.extract.decode.decoder_threads`: the cores this chunk may use).
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
    sampler = FrameSampler(
        video.path, settings.sample, info, start_s=start_s, end_s=end_s, threads=threads
    )
    detector = FaceDetector(settings=settings.detect)
    sampled_idx, sampled_ts = [], []
    f_idx, f_ts, boxes, scores, crops = [], [], [], [], []
    quality: list[FaceQuality] = []  # per frame: its faces' landmarks, size, blur, pose
    t_detect = 0.0
    reported = start_s
    for frame in sampler:  # Frame: BGR (H, W, 3), frame_index, timestamp_s
        sampled_idx.append(frame.frame_index)
        sampled_ts.append(frame.timestamp_s)
        if progress is not None and frame.timestamp_s - reported >= PROGRESS_EVERY_S:
            reported = frame.timestamp_s
            progress(reported - start_s)
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
        sample_interval_s=settings.sample.interval_s(info.fps),  # once, for every consumer
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
        sample_interval_s=first.sample_interval_s,
    )


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
    interval = faces.sample_interval_s  # the videos table's sample_interval_s
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


#: Shortest chunk :func:`chunk_length` cuts a video into to spread it over the workers
#: and to move the progress bar (each chunk re-opens the video and seeks by keyframe
#: through the index). 30 s, not 60: a 3-minute clip as six chunks instead of two ran
#: in 10.0 s instead of 13.2 s in-process on 2 cores (the last chunk's classification
#: and the threads' uneven finish are the tail; docs/performance.md), a 10-minute one
#: the same.
MIN_SPLIT_SECONDS = 30.0
#: Chunks per worker :func:`chunk_length` aims for. The classifier gets a chunk's crops
#: only when its extraction ends, so the chunks the workers finish last are classified
#: while the workers idle: with one chunk per worker that tail was all of a 10-minute
#: clip's classification (1,200 faces, ~6 CPU s, docs/performance.md); with three it is
#: a third, and the rest overlaps extraction.
CHUNKS_PER_WORKER = 3


def chunk_length(chunk_seconds: float, duration_s: float, workers: int) -> float:
    """The chunk length a video of ``duration_s`` is planned with: ``chunk_seconds``
    (``--chunk-seconds``; 0: never split), shortened so that the video gives each of
    ``workers`` (at least 2) the same number of chunks, up to :data:`CHUNKS_PER_WORKER`,
    never shorter than :data:`MIN_SPLIT_SECONDS` (one chunk each when even that is too
    short). So on two workers a 2-minute recording runs as four chunks of 30 s, a
    3-minute one as six, a 10-minute one as six of 100 s, and a 2-hour one as chunks of
    ``chunk_seconds``. Results are identical for any length."""
    if chunk_seconds == 0 or not (math.isfinite(duration_s) and duration_s > 0):
        return chunk_seconds
    w = max(2, workers)
    per_worker = min(CHUNKS_PER_WORKER, math.floor(duration_s / (w * MIN_SPLIT_SECONDS)))
    if per_worker < 1:  # too short for one chunk per worker: as many as fit
        return min(chunk_seconds, max(MIN_SPLIT_SECONDS, duration_s / w))
    return min(chunk_seconds, duration_s / (w * per_worker))
