"""Progress moves inside a chunk: a single-chunk clip advances the bar every few seconds
of video as it is decoded, never counting a second twice (so the ETA is real)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_model import make_debug_model

from fervid.engine.runner import ChunkProgress, run
from fervid.engine.stages import PROGRESS_EVERY_S
from fervid.engine.tasks import ChunkTask, NullHooks
from fervid.records import VideoInput
from fervid.settings import ClassifySettings, ExecutorKind, RunSettings, SampleSettings


class Recorder(NullHooks):
    def __init__(self) -> None:
        self.total = 0.0
        self.steps: list[float] = []  # chunk_done increments, in order
        self.finished_at: int | None = None  # len(steps) when the video was done

    def start(self, total: int, skipped: int, seconds: float) -> None:
        self.total = seconds

    def chunk_done(self, video: VideoInput, seconds: float) -> None:
        self.steps.append(seconds)

    def video_done(self, video: VideoInput, status: str, detail: str) -> None:
        self.finished_at = len(self.steps)


def test_a_60_s_single_chunk_clip_moves_the_bar_many_times(
    make_clip: Callable[..., Path], tmp_path: Path
) -> None:
    clip = make_clip("in/minute.mp4", seconds=60, fps=10, size=(96, 72))
    model = make_debug_model(tmp_path / "debug.safetensors")
    hooks = Recorder()
    summary = run(
        RunSettings(
            inputs=(clip,), out=tmp_path / "r.parquet", chunk_seconds=0,
            executor=ExecutorKind.LOCAL, sample=SampleSettings(fps=2),
            classify=ClassifySettings(model_path=model),
        ),
        hooks=hooks,
    )  # fmt: skip
    assert summary.ok == 1
    assert len(hooks.steps) >= 5, hooks.steps  # one chunk, yet the bar moved
    assert all(s > 0 for s in hooks.steps[:-1])
    assert sum(hooks.steps) == pytest.approx(hooks.total)  # each second counted once
    assert hooks.total == pytest.approx(60, abs=0.2)
    assert max(hooks.steps) <= PROGRESS_EVERY_S + 0.5


def test_chunk_progress_counts_each_second_once(sample_dir: Path) -> None:
    from fervid.extract.decode import probe
    from fervid.extract.discover import discover
    from fervid.settings import DiscoverSettings

    (video,) = discover([sample_dir / "single_face.mp4"], DiscoverSettings())
    info = probe(video.path)
    inner = Recorder()
    hooks = ChunkProgress(inner)
    task = ChunkTask(video=video, info=info, index=0, count=2, start_s=0.0, end_s=2.0)
    for seconds in (0.5, 0.3, 1.2, 2.5):  # late, out of order, past the chunk's end
        hooks.chunk_progress(task, seconds)
    hooks.chunk_finished(task)
    assert inner.steps == pytest.approx([0.5, 0.7, 0.8, 0.0])
