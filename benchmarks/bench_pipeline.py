"""The issue-16 targets, each row with its decode-only baselines measured in the same run.

Not a test: prints numbers. Every end-to-end figure is ``fervid process`` in a fresh
interpreter (a subprocess: imports, model load and Ray start-up included), watched from
outside (``proc_tree.py``): wall seconds, CPU seconds of every process of the run
(driver, Ray workers, the classifier actor, raylet, GCS, Ray's other processes) and the
peak of their summed RSS (and PSS, which counts shared memory once). Beside each, the
machine's load average before and after.

Rows (``--rows``, comma separated; default ``3min,10min,20s``):

- ``3min`` / ``10min`` / ``30min`` / ``2h``: a 1280x720 25 fps H.264 clip (x264
  ``--preset``, default ``ultrafast``: no B-frames) that loops the sample face videos;
  the 3-minute clip is encoded once and longer ones are its packets repeated (stream
  copy, cached in ``benchmarks/.cache/``). Then decode-only three ways on the same
  sampling (``--baselines``): ``pyav`` as the pipeline decodes (frames no sample takes
  left undecoded where nothing references them), ``pyav-all`` decoding every frame, and
  ``decord`` seeking to the sampled frames, each in this process with
  ``--decode-threads`` threads; ratio = decode-only wall / end-to-end wall (the
  issue's "end-to-end / decode-only" of real-time factors).
- ``20s``: ``fervid process`` on sample_videos/WolfgangLanger_Pexels.mp4 (19.7 s),
  ``--cli-runs`` times (median), with its decode-only baselines.
- ``--clip PATH``: one more row on that file.

    python benchmarks/bench_pipeline.py                       # the three quick rows
    python benchmarks/bench_pipeline.py --rows 20s --cli-runs 3
    python benchmarks/bench_pipeline.py --rows 2h --baselines pyav
    python benchmarks/bench_pipeline.py --rows 3min --preset veryfast   # with B-frames
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proc_tree import ROLES, TreeMonitor, wait_sampling  # noqa: E402

CLIP_MINUTES = {"3min": 3.0, "10min": 10.0, "30min": 30.0, "2h": 120.0}
#: Issue 16's targets, per row: (measure, target) for the report.
TARGETS = {
    "3min": "ratio >= 0.6",
    "10min": "ratio >= 0.7",
    "30min": "",
    "2h": "wall <= 360 s, peak RSS <= 2.5 GiB",
    "20s": "wall <= 6 s",
}
BASELINES = {
    "pyav": ("PyAV as the pipeline decodes (skipping)", {"backend": "pyav"}),
    "pyav-all": ("PyAV decoding every frame", {"backend": "pyav", "skip_unsampled": False}),
    "decord": ("decord seeking to sampled frames", {"backend": "decord"}),
}


def encode_clip(minutes: float, out: Path, fps: int = 25, preset: str = "ultrafast") -> Path:
    """Loop the sample face clips, resized to 1280x720, into one H.264 file."""
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


def repeat_clip(src: Path, minutes: float, out: Path) -> Path:
    """``src``'s packets repeated (stream copy, timestamps shifted) to ``minutes``,
    cut at a keyframe: a long clip in seconds instead of a long encode."""
    import av

    if out.is_file():
        return out
    tmp = out.with_suffix(".part.mp4")
    with av.open(str(src)) as probe_in:
        ist = probe_in.streams.video[0]
        assert ist.duration is not None and ist.time_base is not None
        length, tb = ist.duration, ist.time_base
    limit = int(minutes * 60 / tb)
    with av.open(str(tmp), "w") as dst:
        with av.open(str(src)) as first:
            ost = dst.add_stream_from_template(first.streams.video[0])
        offset, done = 0, False
        while not done:
            with av.open(str(src)) as inp:
                for pkt in inp.demux(inp.streams.video[0]):
                    if pkt.dts is None or pkt.pts is None:
                        continue
                    if pkt.pts + offset >= limit and pkt.is_keyframe:
                        done = True
                        break
                    pkt.pts, pkt.dts = pkt.pts + offset, pkt.dts + offset
                    pkt.stream = ost
                    dst.mux(pkt)
            offset += length
    tmp.replace(out)
    return out


def clip_for(row: str, preset: str) -> Path:
    if row == "20s":
        from fervid.sample_data import fetch_samples

        return next(p for p in fetch_samples(ROOT / "sample_videos")
                    if p.name == "WolfgangLanger_Pexels.mp4")  # fmt: skip
    suffix = "" if preset == "ultrafast" else f"_{preset}"
    base = encode_clip(3.0, CACHE / f"telemed_3min_720p{suffix}.mp4", preset=preset)
    minutes = CLIP_MINUTES[row]
    if minutes == 3.0:
        return base
    return repeat_clip(base, minutes, CACHE / f"telemed_{row}_720p{suffix}.mp4")


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def fervid_process(clip: Path, a: argparse.Namespace) -> dict[str, Any]:
    """One ``fervid process`` subprocess, watched: wall, CPU by role, peak memory."""
    import psutil

    env = {**os.environ, "PYTHONPATH": str(a.fervid_root or ROOT)}
    with tempfile.TemporaryDirectory(prefix="fervid-bench-") as tmp:
        cmd = [sys.executable, "-m", "fervid", "process", str(clip), "--out",
               f"{tmp}/out.parquet", "--overwrite", "--fps", str(a.fps), *([] if a.progress else ["--quiet"]),
               "--json", "--executor", a.executor, "--device", a.device,
               *(["--workers", str(a.workers)] if a.workers else [])]  # fmt: skip
        load0 = load()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        monitor = TreeMonitor(proc.pid, interval_s=a.sample_s)
        reports: list[float] = []
        while proc.poll() is None:  # a long row says how it goes (its output is small)
            time.sleep(0.5)
            if a.report_every and time.perf_counter() - t0 >= a.report_every * (1 + len(reports)):
                reports.append(time.perf_counter() - t0)
                u = monitor.usage
                print(f"    ... {reports[-1]:.0f} s: peak RSS so far {u.peak_rss_total / 2**30:.2f}"
                      f" GiB (PSS {u.peak_pss_total / 2**30:.2f}), load {load()}", flush=True)  # fmt: skip
        stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        rc, usage = wait_sampling(proc, monitor)
        mid = [(t - t0, c) for t, c in monitor.driver_cpu if 0.4 * wall <= t - t0 <= 0.9 * wall]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"fervid process failed ({rc}): {stderr.decode()[-2000:]}")
    summary = json.loads(stdout)
    reaped = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    res: dict[str, Any] = {
        "wall_s": wall, "load_before": load0, "load_after": load(),
        "executor": summary.get("executor"), "faces": summary.get("faces"),
        "cpu_s_all": max(usage.cpu_total, reaped), "cpu_s_sampled": usage.cpu_total,
        "cpu_s_reaped": reaped,
        "peak_rss_gib": usage.peak_rss_total / 2**30, "peak_pss_gib": usage.peak_pss_total / 2**30,
        "peak_uss_gib": usage.peak_uss_total / 2**30, "processes": usage.per_process,
        # the driver's CPU use while it waits for chunks (40-90 % of the wall time)
        "driver_cpu_per_s_waiting": (mid[-1][1] - mid[0][1]) / (mid[-1][0] - mid[0][0])
        if len(mid) > 1 else float("nan"),
    }  # fmt: skip
    for role in ROLES:
        if usage.processes.get(role):
            res[f"cpu_s_{role}"] = usage.cpu_s[role]
            res[f"peak_rss_gib_{role}"] = usage.peak_rss[role] / 2**30
            res[f"n_{role}"] = usage.processes[role]
    return res


def decode_only(clip: Path, method: str, a: argparse.Namespace) -> dict[str, Any]:
    from fervid.extract.decode import FrameSampler, probe
    from fervid.settings import SampleSettings

    _, kwargs = BASELINES[method]
    load0 = load()
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    sampler = FrameSampler(clip, SampleSettings(fps=a.fps), probe(clip),
                           threads=a.decode_threads, **kwargs)  # fmt: skip
    n = sum(1 for _ in sampler)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": time.perf_counter() - t0, "frames": n, "load_before": load0,
            "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
            "load_after": load(), "skipped": sampler.frames_skipped}  # fmt: skip


def measure_row(row: str, clip: Path, a: argparse.Namespace) -> dict[str, Any]:
    from fervid.extract.decode import probe

    info = probe(clip)
    out: dict[str, Any] = {"row": row, "clip": str(clip.relative_to(ROOT)) if clip.is_relative_to(ROOT) else str(clip),
                           "video_s": info.duration_s, "target": TARGETS.get(row, "")}  # fmt: skip
    runs = [fervid_process(clip, a) for _ in range(a.cli_runs if row == "20s" else a.runs)]
    for k, r in enumerate(runs):
        print(f"  [{row}] fervid process run {k + 1}: {r['wall_s']:.2f} s wall, "
              f"{r['cpu_s_all']:.1f} CPU s, load {r['load_before']} -> {r['load_after']}",
              flush=True)  # fmt: skip
    best = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]  # the median run
    out["end_to_end"] = best
    out["end_to_end_walls"] = [r["wall_s"] for r in runs]
    out["decode_only"] = {m: decode_only(clip, m, a) for m in a.baselines}
    for d in out["decode_only"].values():
        d["ratio_wall"] = d["wall_s"] / best["wall_s"]
        d["ratio_cpu"] = d["cpu_s"] / best["cpu_s_all"]
    if a.work and "pyav" in out["decode_only"]:
        w = out["work"] = stage_costs(clip, a)
        frames = out["decode_only"]["pyav"]["frames"]
        w["decode_cpu_s"] = out["decode_only"]["pyav"]["cpu_s"]
        w["detect_cpu_s"] = w["detect_cpu_s_per_frame"] * frames
        w["classify_cpu_s"] = w["classify_cpu_s_per_face"] * (best["faces"] or 0)
        w["work_cpu_s"] = w["decode_cpu_s"] + w["detect_cpu_s"] + w["classify_cpu_s"]
        w["overhead_cpu_s"] = best["cpu_s_all"] - w["work_cpu_s"]
    return out


def stage_costs(clip: Path, a: argparse.Namespace, n: int = 200) -> dict[str, float]:
    """CPU s per sampled frame of detect + crop + quality (1 OpenCV thread, as in a
    worker) and per face of classification (1 torch thread, batch 64, as the actor runs
    it beside busy workers), on the clip's first ``n`` sampled frames."""
    import cv2
    import numpy as np

    from fervid.engine.model_ref import load_verified, model_ref, resolve_model_path
    from fervid.extract.crop import crop_faces
    from fervid.extract.decode import FrameSampler, probe
    from fervid.extract.detect import FaceDetector
    from fervid.extract.quality import measure_faces
    from fervid.model.classify import EmotionClassifier
    from fervid.settings import ClassifySettings, CropSettings, DetectSettings, SampleSettings

    cv2.setNumThreads(1)
    ref = model_ref(resolve_model_path(None))
    clf = EmotionClassifier(settings=ClassifySettings(model_path=None, batch_size=64),
                            cpu_threads=1, model=load_verified(ref.data, ref.sha256, ref.spec))  # fmt: skip
    sampler = FrameSampler(clip, SampleSettings(fps=a.fps), probe(clip))
    frames = []
    for f in sampler:
        frames.append(f)
        if len(frames) >= n:
            break
    det = FaceDetector(settings=DetectSettings())
    det(frames[0].image)  # warm-up
    c0 = _cpu()
    crops = []
    for f in frames:
        d = det(f.image)
        c = crop_faces(f.image, d, CropSettings(), clf.spec)
        measure_faces(d, c, sampler.scale)
        crops.append(c)
    per_frame = (_cpu() - c0) / len(frames)
    batch = np.concatenate(crops)
    clf(batch[:64])  # warm-up
    c0 = _cpu()
    clf(batch)
    return {"detect_cpu_s_per_frame": per_frame,
            "classify_cpu_s_per_face": (_cpu() - c0) / max(1, len(batch))}  # fmt: skip


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def print_row(r: dict[str, Any]) -> None:
    e = r["end_to_end"]
    print(f"\n== {r['row']}: {r['clip']} ({r['video_s']:.1f} s)   target: {r['target']}")
    walls = " / ".join(f"{w:.2f}" for w in r["end_to_end_walls"])
    print(f"fervid process ({e['executor']}): wall {e['wall_s']:.2f} s (runs {walls}), "
          f"{e['faces']} face rows, load {e['load_before']} -> {e['load_after']}")  # fmt: skip
    roles = ", ".join(f"{role} {e[f'cpu_s_{role}']:.1f}"
                      f" ({e[f'n_{role}']})" for role in ROLES if f"cpu_s_{role}" in e)  # fmt: skip
    print(f"  CPU s, all processes: {e['cpu_s_all']:.1f} (sampled {e['cpu_s_sampled']:.1f}, "
          f"reaped {e['cpu_s_reaped']:.1f}); by role (processes): {roles}")  # fmt: skip
    mem = ", ".join(f"{role} {e[f'peak_rss_gib_{role}']:.2f}"
                    for role in ROLES if f"peak_rss_gib_{role}" in e)  # fmt: skip
    print(f"  peak RSS, all processes: {e['peak_rss_gib']:.2f} GiB (PSS {e['peak_pss_gib']:.2f},"
          f" USS {e['peak_uss_gib']:.2f}); peak by role: {mem}")  # fmt: skip
    print(f"  driver CPU while waiting: {e['driver_cpu_per_s_waiting']:.3f} CPU s per s")
    if "work" in r:
        w = r["work"]
        print(f"  work (CPU s): decode {w['decode_cpu_s']:.1f} + detect/crop/quality "
              f"{w['detect_cpu_s']:.1f} + classify {w['classify_cpu_s']:.1f} = "
              f"{w['work_cpu_s']:.1f}; overhead beyond it {w['overhead_cpu_s']:.1f}")  # fmt: skip
    for m, d in r["decode_only"].items():
        print(f"  decode-only, {BASELINES[m][0]}: {d['wall_s']:.2f} s wall, {d['cpu_s']:.2f} "
              f"CPU s, {d['frames']} frames ({d['skipped']} skipped), load {d['load_before']}"
              f" -> {d['load_after']}; ratio decode/end-to-end: wall {d['ratio_wall']:.2f},"
              f" CPU {d['ratio_cpu']:.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="3min,10min,20s",
                    help=f"comma separated, of {', '.join([*CLIP_MINUTES, '20s'])}")  # fmt: skip
    ap.add_argument("--clip", type=Path, help="one more row on this video")
    ap.add_argument("--baselines", default="pyav,pyav-all,decord", help="decode-only methods")
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=0, help="0: fervid's default (the cores)")
    ap.add_argument("--executor", default="auto", help="auto | local | ray")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--preset", default="ultrafast", help="x264 preset of the built clips")
    ap.add_argument("--decode-threads", type=int, default=1, help="decode-only's threads")
    ap.add_argument("--runs", type=int, default=1, help="fervid process runs per clip row")
    ap.add_argument("--cli-runs", type=int, default=3, help="fervid process runs, 20s row")
    ap.add_argument("--sample-s", type=float, default=0.25, help="process sampling interval")
    ap.add_argument(
        "--no-work",
        dest="work",
        action="store_false",
        help="skip measuring detect/classify CPU per frame/face (the overhead)",
    )
    ap.add_argument("--progress", action="store_true",
                    help="run with the progress bar (not --quiet), to measure its cost")  # fmt: skip
    ap.add_argument("--report-every", type=float, default=0.0,
                    help="print the peak RSS so far every this many seconds of a run")  # fmt: skip
    ap.add_argument(
        "--fervid-root",
        type=Path,
        help="run `fervid process` from this source tree (A/B against another commit)",
    )
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    a = ap.parse_args()
    a.baselines = [m for m in a.baselines.split(",") if m]
    unknown = [m for m in a.baselines if m not in BASELINES]
    if unknown:
        ap.error(f"unknown --baselines {unknown}; choose from {list(BASELINES)}")
    rows = [r for r in a.rows.split(",") if r]
    for r in rows:
        if r not in CLIP_MINUTES and r != "20s":
            ap.error(f"unknown row {r!r}")
    clips = [(r, clip_for(r, a.preset)) for r in rows]
    if a.clip is not None:
        clips.append((a.clip.name, a.clip))
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} cores,"
          f" nice {os.nice(0)}, load {load()}", flush=True)  # fmt: skip
    results = []
    for row, clip in clips:
        results.append(measure_row(row, clip, a))
        print_row(results[-1])
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
