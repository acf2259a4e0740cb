"""End-to-end pipeline benchmark on a 10-minute, 1280x720 telemedicine-like clip.

Not a test: prints numbers and ratios. Builds the clip once (cached) by looping
single_face.mp4 and WolfgangLanger_Pexels.mp4, re-encoded at 1280x720, then measures:

- decode-only: sampled frames/s of the decoder at the run's --fps (the pipeline's limit)
- detection: faces/s of the detector (1 OpenCV thread, as in a worker)
- classification: faces/s of the classifier, batch 64, 1 torch thread (as in the engine)
- end to end: the real engine (``--executor``, default auto: Ray for this clip);
  real-time factor (video s / wall s), Ray start-up included
- the ratio end-to-end / decode-only, and peak RSS (driver + Ray workers)
- CPU seconds (user + system) of the end-to-end run, summed over the driver and every
  process it started (Ray workers, the classifier actor, raylet, GCS, ...), of
  decode-only, and their ratio: on a machine shared with other jobs CPU time, unlike wall
  time, does not grow with the load, so the CPU ratio is the one to compare across runs

- start-up: ``fervid process`` on the clip in a fresh interpreter (``--cli-runs``, wall
  and CPU seconds, Ray's processes included when it starts them): what a user waits
- decode-only three ways, all on the run's sampling: PyAV as the pipeline runs it
  (frames no sample takes left undecoded where nothing references them), PyAV decoding
  every frame (the reference before skipping), and decord (seeking to sampled frames)

    python benchmarks/bench_pipeline.py [--minutes 10] [--fps 2] [--workers 2]
    python benchmarks/bench_pipeline.py --clip sample_videos/WolfgangLanger_Pexels.mp4 --cli-runs 3
    python benchmarks/bench_pipeline.py --minutes 3 --preset veryfast   # a clip with B-frames
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"


def build_clip(minutes: float, out: Path, fps: int = 25, preset: str = "ultrafast") -> Path:
    """Loop the sample face clips, resized to 1280x720, into one H.264 file.

    ``preset``: x264's; ``ultrafast`` (the default, as in earlier measurements) writes no
    B-frames (every frame is a reference, as a real-time call recorder's stream often
    is), ``veryfast`` and slower write B-frames, which the decoder can skip."""
    import av
    import cv2

    from fervid.sample_data import fetch_samples

    if out.is_file():
        return out
    samples = fetch_samples(ROOT / "sample_videos")
    sources = [p for p in samples if p.name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4")]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    n_total = int(minutes * 60 * fps)
    with av.open(str(tmp), "w") as dst:
        st = dst.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 1280, 720, "yuv420p"
        st.options = {"preset": preset, "crf": "26"}
        n = 0
        while n < n_total:
            for src in sources:
                with av.open(str(src)) as inp:
                    for frame in inp.decode(video=0):
                        img = cv2.resize(frame.to_ndarray(format="bgr24"), (1280, 720))
                        vf = av.VideoFrame.from_ndarray(img, format="bgr24")
                        vf.pts, vf.time_base = n, Fraction(1, fps)
                        for pkt in st.encode(vf):
                            dst.mux(pkt)
                        n += 1
                        if n >= n_total:
                            break
                if n >= n_total:
                    break
        for pkt in st.encode():
            dst.mux(pkt)
    tmp.replace(out)
    return out


def cpu_s() -> float:
    """CPU seconds (user + system) of this process so far, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class PeakRss:
    """Samples the summed RSS of this process and its Ray workers every 0.2 s, and the
    CPU seconds of every process this one started (``child_cpu_s``: the last reading of
    each, so a process that exits between two samples loses at most 0.2 s)."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.peak = 0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @property
    def child_cpu_s(self) -> float:
        return sum(self._cpu.values())

    def _run(self) -> None:
        me = self.psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):  # Ray's processes descend from us
                try:
                    t = child.cpu_times()
                    self._cpu[child.pid] = t.user + t.system
                except self.psutil.Error:
                    continue
            total = 0
            for p in self.psutil.process_iter(["name", "cmdline", "memory_info"]):
                try:
                    cmd = " ".join(p.info["cmdline"] or [])
                    if p.pid == me.pid or "ray::" in cmd or "ray::" in (p.info["name"] or ""):
                        total += p.info["memory_info"].rss
                except (self.psutil.NoSuchProcess, TypeError):
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *a: object) -> None:
        self._stop.set()
        self._t.join()


def cli_runs(clip: Path, a: argparse.Namespace) -> dict[str, float]:
    """``fervid process`` on ``clip`` in a fresh interpreter, ``a.cli_runs`` times: wall
    seconds (median and each) and CPU seconds of the process and what it started."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="fervid-bench-") as tmp:
        for _ in range(a.cli_runs):
            cmd = [sys.executable, "-m", "fervid", "process", str(clip), "--out",
                   f"{tmp}/out.parquet", "--overwrite", "--fps", str(a.fps),
                   "--workers", str(a.workers), "--executor", a.executor]  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            walls.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if not walls:
        return {}
    for w, c in zip(walls, cpus, strict=True):
        print(f"fervid process (fresh interpreter): {w:.2f} s wall, {c:.2f} CPU s")
    return {"cli_wall_s_median": statistics.median(walls), "cli_wall_s_min": min(walls),
            "cli_cpu_s_median": statistics.median(cpus)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executor", default="auto", help="auto | local | ray (auto: Ray here)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--clip", type=Path, help="measure this video instead of building one")
    ap.add_argument("--preset", default="ultrafast", help="x264 preset of the built clip")
    ap.add_argument("--cli-runs", type=int, default=1, help="fresh `fervid process` runs")
    a = ap.parse_args()

    from fervid.engine.runner import run
    from fervid.extract.crop import crop_faces
    from fervid.extract.decode import FrameSampler, probe
    from fervid.extract.detect import FaceDetector
    from fervid.model.classify import EmotionClassifier
    from fervid.settings import (
        ClassifySettings,
        CropSettings,
        DetectSettings,
        Device,
        ExecutorKind,
        RunSettings,
        SampleSettings,
    )

    if a.clip is not None:
        clip = a.clip
    else:
        suffix = "" if a.preset == "ultrafast" else f"_{a.preset}"
        clip = build_clip(a.minutes, CACHE / f"telemed_{a.minutes:g}min_720p{suffix}.mp4",
                          preset=a.preset)  # fmt: skip
    info = probe(clip)
    sample = SampleSettings(fps=a.fps)
    res: dict[str, float] = {"video_s": info.duration_s, "fps_sampled": a.fps}
    print(f"clip {clip} ({info.duration_s:.1f} s, {info.width}x{info.height}, {info.codec})")
    res.update(cli_runs(clip, a))

    # End to end first: the micro-benchmarks below hold frames in memory, which would
    # inflate the driver's peak RSS.
    out = CACHE / "bench_out.parquet"
    settings = RunSettings(
        inputs=(clip,), out=out, sample=sample, overwrite=True, workers=a.workers,
        executor=ExecutorKind(a.executor), classify=ClassifySettings(device=Device(a.device)),
    )  # fmt: skip
    c0 = cpu_s()
    with PeakRss() as rss:
        summary = run(settings)
    res["end_to_end_cpu_s"] = cpu_s() - c0 + rss.child_cpu_s
    res["end_to_end_wall_s"] = summary.wall_s
    res["end_to_end_rtf"] = summary.realtime_factor
    res["peak_rss_mib_driver_plus_workers"] = rss.peak / 2**20
    res["peak_rss_mib_driver"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["faces_end_to_end"] = summary.faces
    print(f"end to end through the {summary.executor} executor")
    frames = []
    for method, kwargs in [
        ("decode_pyav_every_frame", {"backend": "pyav", "skip_unsampled": False}),
        ("decode_decord", {"backend": "decord"}),
        ("decode", {"backend": "pyav"}),  # as the pipeline decodes: the baseline of the ratios
    ]:
        t0, c0 = time.perf_counter(), cpu_s()
        n_decoded = 0
        sampler = FrameSampler(clip, sample, info, **kwargs)  # type: ignore[arg-type]
        for f in sampler:  # stream; keep only what detection needs
            n_decoded += 1
            if method == "decode" and len(frames) < 200:
                frames.append(f)
        t_dec = time.perf_counter() - t0
        res[f"{method}_cpu_s"] = cpu_s() - c0
        res[f"{method}_rtf"] = info.duration_s / t_dec
        res[f"{method}_frames_skipped"] = sampler.frames_skipped
    res["decode_frames_per_s"] = n_decoded / t_dec

    import cv2

    cv2.setNumThreads(1)
    det = FaceDetector(settings=DetectSettings())
    # 1 torch thread, as the engine runs it beside busy workers (docs/performance.md)
    clf = EmotionClassifier(settings=ClassifySettings(batch_size=64), cpu_threads=1)
    sub = frames[:200]
    t0 = time.perf_counter()
    dets = [det(f.image) for f in sub]
    t_det = time.perf_counter() - t0
    n_faces = sum(len(d) for d in dets)
    res["detect_frames_per_s"] = len(sub) / t_det
    res["detect_faces_per_s"] = n_faces / t_det
    crops = np.concatenate(
        [crop_faces(f.image, d, CropSettings(), clf.spec) for f, d in zip(sub, dets, strict=True)]
    )
    reps = max(1, 2048 // max(1, len(crops)))
    batch = np.concatenate([crops] * reps)
    clf(batch[:64])  # warm-up
    t0, c0 = time.perf_counter(), cpu_s()
    clf(batch)
    res["classify_faces_per_s"] = len(batch) / (time.perf_counter() - t0)
    res["classify_faces_per_cpu_s"] = len(batch) / (cpu_s() - c0)
    del frames

    res["ratio_end_to_end_over_decode"] = res["end_to_end_rtf"] / res["decode_rtf"]
    res["ratio_cpu_decode_over_end_to_end"] = res["decode_cpu_s"] / res["end_to_end_cpu_s"]
    for method in ("decode_pyav_every_frame", "decode_decord"):  # the other baselines
        res[f"ratio_end_to_end_over_{method}"] = res["end_to_end_rtf"] / res[f"{method}_rtf"]
    for k, v in res.items():
        print(f"{k:36s} {v:12.2f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
