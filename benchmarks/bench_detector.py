"""Face detector benchmark: YuNet (long side 320 and 640) vs res10, and what it does to
the whole pipeline, on the 10-minute 1280x720 clip of ``bench_pipeline.py``.

Not a test: prints numbers. Measures, with one OpenCV thread (as in a Ray worker):

- detector frames/s on 200 frames sampled at 2 fps from the clip (after 5 warm-up calls),
  and the share of those frames with exactly one face (one person is on screen);
- the smallest face each detector finds: the face of stills/single_face.jpg pasted at
  decreasing widths into a mid-gray 1280x720 frame;
- decode-only throughput, the end-to-end real-time factor of ``fervid process`` through
  Ray with the default settings (``--workers``), once with YuNet and once with res10,
  back to back, and each one's ratio end-to-end / decode-only.

- with ``--cpu-time``: CPU seconds of decode-only and of an in-process run per detector,
  whose ratio does not depend on the machine's other load.

    python benchmarks/bench_detector.py [--minutes 10] [--workers 2] [--skip-end-to-end]
                                        [--cpu-time]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import CACHE, ROOT, build_clip

from fervid.extract.decode import FrameSampler, probe
from fervid.extract.detect import FaceDetector
from fervid.settings import Detector, DetectSettings, RunSettings, SampleSettings

CONFIGS = {
    "yunet@320": DetectSettings(detector=Detector.YUNET, long_side=320),
    "yunet@640": DetectSettings(detector=Detector.YUNET, long_side=640),
    "res10@300": DetectSettings(detector=Detector.RES10),
}
#: Face of stills/single_face.jpg (hand-placed, xyxy), pasted at these widths.
FACE = (175, 120, 395, 420)
WIDTHS = (160, 120, 96, 80, 64, 56, 48, 40, 32, 24, 20, 16)


def detector_fps(det: FaceDetector, images: list[np.ndarray]) -> tuple[float, float, float]:
    """(frames per wall second, frames per CPU second of this process, share of frames
    with exactly one face). With one OpenCV thread the CPU figure is what one free core
    would do; the wall figure drops when other jobs share the core."""
    for img in images[:5]:
        det(img)
    t0, c0 = time.perf_counter(), time.process_time()
    counts = [len(det(img)) for img in images]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return len(images) / dt, len(images) / dc, float(np.mean(np.asarray(counts) == 1))


def smallest_face(det: FaceDetector) -> int | None:
    still = cv2.imread(str(ROOT / "sample_videos" / "stills" / "single_face.jpg"))
    x0, y0, x1, y1 = FACE
    face = still[y0:y1, x0:x1]
    found = None
    for w in WIDTHS:
        h = round(w * face.shape[0] / face.shape[1])
        frame = np.full((720, 1280, 3), 128, np.uint8)
        frame[300 : 300 + h, 600 : 600 + w] = cv2.resize(face, (w, h), interpolation=cv2.INTER_AREA)
        if len(det(frame)) == 1:
            found = w
        else:
            break
    return found


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_time_ratios(clip: Path, info: object, sample: SampleSettings, res: dict) -> None:
    """CPU seconds of decode-only and of a whole in-process run (``--executor local``:
    decode, detect, crop, classify, track, write), per detector. On a shared machine CPU
    time, unlike wall time, does not depend on what else runs: the ratio decode CPU /
    end-to-end CPU is what the wall-time ratio approaches when fervid has the cores."""
    from fervid.engine.runner import run
    from fervid.settings import ExecutorKind

    c0 = _cpu_s()
    n = sum(1 for _ in FrameSampler(clip, sample, info))
    decode_cpu = _cpu_s() - c0
    res["decode_cpu_s"] = decode_cpu
    res["decode_cpu_ms_per_sampled_frame"] = 1000 * decode_cpu / n
    for kind in (Detector.YUNET, Detector.RES10):
        settings = RunSettings(
            inputs=(clip,), out=CACHE / f"bench_detector_local_{kind.value}.parquet",
            sample=sample, detect=DetectSettings(detector=kind), overwrite=True,
            executor=ExecutorKind.LOCAL,
        )  # fmt: skip
        c0 = _cpu_s()
        run(settings)
        cpu = _cpu_s() - c0
        res[f"local_{kind.value}_cpu_s"] = cpu
        res[f"cpu_ratio_decode_over_end_to_end_{kind.value}"] = decode_cpu / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--skip-end-to-end", action="store_true")
    ap.add_argument(
        "--cpu-time", action="store_true", help="also the CPU-time ratios (in-process runs)"
    )
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    a = ap.parse_args()

    clip = build_clip(a.minutes, CACHE / f"telemed_{a.minutes:g}min_720p.mp4")
    info = probe(clip)
    sample = SampleSettings(fps=2.0)
    res: dict[str, float | None] = {"video_s": info.duration_s}

    if not a.skip_end_to_end:
        from fervid.engine.runner import run

        for kind in (Detector.YUNET, Detector.RES10):  # back to back: the same machine load
            settings = RunSettings(
                inputs=(clip,), out=CACHE / f"bench_detector_{kind.value}.parquet",
                sample=sample, detect=DetectSettings(detector=kind), overwrite=True,
                workers=a.workers,
            )  # fmt: skip
            summary = run(settings)
            res[f"end_to_end_{kind.value}_wall_s"] = summary.wall_s
            res[f"end_to_end_{kind.value}_rtf"] = summary.realtime_factor

    if a.cpu_time:
        cpu_time_ratios(clip, info, sample, res)

    t0 = time.perf_counter()
    frames, n = [], 0
    step = max(1, int(info.duration_s * 2) // a.frames)
    for f in FrameSampler(clip, sample, info):
        if n % step == 0 and len(frames) < a.frames:
            frames.append(f.image)
        n += 1
    t_dec = time.perf_counter() - t0
    res["decode_sampled_frames_per_s"] = n / t_dec
    res["decode_rtf"] = info.duration_s / t_dec
    for kind in (Detector.YUNET, Detector.RES10):
        rtf = res.get(f"end_to_end_{kind.value}_rtf")
        if rtf is not None:
            res[f"ratio_end_to_end_{kind.value}_over_decode"] = rtf / res["decode_rtf"]

    cv2.setNumThreads(1)
    for name, cfg in CONFIGS.items():
        try:
            det = FaceDetector(settings=cfg)
        except Exception as e:  # res10 on OpenCV 5: say so and go on
            print(f"{name}: cannot load ({e})")
            continue
        fps, fps_cpu, one = detector_fps(det, frames)
        res[f"{name}_frames_per_s"] = fps
        res[f"{name}_frames_per_cpu_s"] = fps_cpu
        res[f"{name}_share_exactly_one_face"] = one
        res[f"{name}_smallest_face_px_in_720p"] = smallest_face(det)
    print(f"OpenCV {cv2.__version__}, {len(frames)} frames of {clip.name}, 1 OpenCV thread")
    for k, v in res.items():
        print(f"{k:40s} {'-' if v is None else f'{v:12.2f}'}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
