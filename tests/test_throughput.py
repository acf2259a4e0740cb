"""What the end-to-end speed-ups must not change (docs/performance.md, "End to end:
where the CPU time goes"): the PyAV path's timestamps, computed per frame in integer
arithmetic, are exactly the floats of ``(pts - start_time) * time_base``; and the
in-process classifier runs one torch thread (two OpenMP threads on a shared machine
cost ten times the CPU for the same probabilities)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fervid.extract.decode import FrameSampler, probe
from fervid.settings import SampleSettings


def _decoder_times(path: Path) -> list[float]:
    """Every displayed frame's time in seconds, as float(Fraction), straight from PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start, time_base = stream.start_time or 0, stream.time_base or Fraction(1, 1)
        times = [float((f.pts - start) * time_base) for f in container.decode(stream)]
    return [t for t in times if t >= -5e-4]  # pre-roll a player would not show


@pytest.mark.parametrize(
    ("name", "fps"),
    [
        ("WolfgangLanger_Pexels.mp4", 2.0),  # 23.976 fps, B-frames
        ("carphone_pristine.mp4", 5.0),  # 29.97 fps
        ("noface_face.mov", 7.0),  # HEVC, 120 fps
    ],
)
def test_pyav_timestamps_are_the_exact_floats_of_pts_times_time_base(
    sample_dir: Path, name: str, fps: float
) -> None:
    path = sample_dir / name
    times = _decoder_times(path)
    frames = list(
        FrameSampler(path, SampleSettings(fps=fps), probe(path, backend="pyav"), backend="pyav")
    )
    assert len(frames) > 5
    for f in frames:
        assert f.timestamp_s == times[f.frame_index]  # bit-identical, not approximately


def test_the_in_process_classifier_runs_one_torch_thread(
    sample_dir: Path, model_path: Path, tmp_path: Path
) -> None:
    import torch

    from fervid.engine.model_ref import model_ref
    from fervid.engine.runner import LocalExecutor
    from fervid.settings import RunSettings

    before = torch.get_num_threads()
    try:
        settings = RunSettings(inputs=(sample_dir,), out=tmp_path / "out.parquet", workers=2)
        executor = LocalExecutor(settings, model_ref(model_path))
        classifier = executor.classifier  # waits for the model loading in the background
        assert torch.get_num_threads() == 1
        s = executor.spec.input_size
        probs = classifier(np.zeros((3, s, s), np.uint8))
        assert probs.shape == (3, len(executor.classifier.class_names))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    finally:
        torch.set_num_threads(before)
