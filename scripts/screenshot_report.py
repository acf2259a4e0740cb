#!/usr/bin/env python
"""Render a report built from synthetic tables in headless Chromium and save a screenshot.

A manual check of what a reader sees (layout, fonts, figures), kept out of the pytest
suite because it needs a browser:

    sudo apt-get install -y chromium          # Debian; once
    .venv/bin/python scripts/screenshot_report.py --out /tmp/fervid-shot

It writes a synthetic dataset (two subjects, weekly sessions of a few minutes, one
session without a face, one recording that failed, one session with a second face, and
a last session that departs from the baseline), builds the report, and saves
``screenshot.png`` next to ``report/index.html``. No real video or patient data is used;
the browser runs with networking features off and only opens the local file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fervid.longitudinal.report import build_report
from fervid.model.modelfile import EMOTIONS
from fervid.output.schema import (
    FRAMES,
    SEGMENTS,
    VIDEOS,
    mean_prob_col,
    prob_col,
    schema_for,
    share_col,
    smooth_col,
)

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--hide-scrollbars",
)  # fmt: skip
INTERVAL_S = 0.5  # 2 frames per second, fervid's default sampling


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ema(p: np.ndarray, tau_s: float) -> np.ndarray:
    a = 1.0 - np.exp(-INTERVAL_S / tau_s)
    out = np.empty_like(p)
    out[0] = p[0]
    for i in range(1, len(p)):
        out[i] = out[i - 1] + a * (p[i] - out[i - 1])
    return out


def _identity(vid: str, subject: str, day: dt.date | None) -> dict:
    name = f"{day}_{vid}.mp4" if day else f"{vid}.mp4"
    return {"video_id": vid, "path": f"{subject}/{name}", "file_name": name, "subject": subject,
            "session": None, "session_date": day, "path_fields": None}  # fmt: skip


def _face(
    rng: np.random.Generator, n: int, mood: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(n, C) raw and smoothed probabilities drifting around a mood (class -> logit)."""
    base = np.array([mood.get(c, 0.0) for c in EMOTIONS])
    walk = np.zeros((n, len(EMOTIONS)))
    for i in range(1, n):  # AR(1) logits: expressions come and go over seconds
        walk[i] = 0.97 * walk[i - 1] + rng.normal(0, 0.35, len(EMOTIONS))
    raw = _softmax(base + walk + rng.normal(0, 0.4, (n, len(EMOTIONS))))
    return raw.astype(np.float32), _ema(raw, 1.5).astype(np.float32)


def _session(rng, vid, subject, day, duration_s, mood, *, absent=(), second_face=False):
    ident = _identity(vid, subject, day)
    t_all = np.arange(0, duration_s, INTERVAL_S)
    frames, segments = [], []
    faces = [(0, mood, 0.93)] + ([(1, {"neutral": 2.0}, 0.71)] if second_face else [])
    for face_id, face_mood, det in faces:
        keep = np.ones(len(t_all), bool)
        for a, b in absent:
            keep &= ~((t_all >= a) & (t_all < b))
        if face_id == 1:
            keep &= t_all < duration_s / 4  # a companion, briefly in view
        t = t_all[keep]
        if not len(t):  # the camera never showed this face
            continue
        raw, smooth = _face(rng, len(t), face_mood)
        lab = smooth.argmax(axis=1)
        breaks = np.flatnonzero((np.diff(lab) != 0) | (np.diff(t) > 1.5 * INTERVAL_S)) + 1
        starts, stops = np.r_[0, breaks], np.r_[breaks, len(t)]
        for k, (a, b) in enumerate(zip(starts, stops, strict=True)):
            segments.append({
                **ident, "face_id": face_id, "segment_index": k, "start_s": float(t[a]),
                "end_s": float(t[b - 1] + INTERVAL_S),
                "duration_s": float(t[b - 1] + INTERVAL_S - t[a]),
                "emotion": EMOTIONS[lab[a]],
                **{mean_prob_col(c): float(raw[a:b, j].mean()) for j, c in enumerate(EMOTIONS)},
                "mean_confidence": float(raw[a:b].max(axis=1).mean()), "n_frames": int(b - a),
            })  # fmt: skip
            for i in range(a, b):
                frames.append({
                    **ident, "frame_index": round(t[i] * 30), "timestamp_s": float(t[i]),
                    "face_id": face_id, "x1": 400.0, "y1": 200.0, "x2": 560.0, "y2": 390.0,
                    "x1_norm": 0.31, "y1_norm": 0.28, "x2_norm": 0.44, "y2_norm": 0.54,
                    "det_score": det,
                    **{prob_col(c): float(raw[i, j]) for j, c in enumerate(EMOTIONS)},
                    "label": EMOTIONS[int(raw[i].argmax())], "confidence": float(raw[i].max()),
                    **{smooth_col(c): float(smooth[i, j]) for j, c in enumerate(EMOTIONS)},
                    "smoothed_label": EMOTIONS[lab[i]], "segment_index": k,
                })  # fmt: skip
    n_face = len({r["timestamp_s"] for r in frames})
    video = {**ident, "status": "ok", "error": None, "size_bytes": 10_000_000,
             "duration_s": float(duration_s), "fps": 30.0, "width": 1280, "height": 720,
             "rotation": 0, "backend": "decord", "frames_sampled": len(t_all),
             "frames_with_face": n_face, "face_frame_share": n_face / len(t_all),
             "n_faces": len(faces), "n_face_rows": len(frames),
             **{share_col(c): None for c in EMOTIONS}, "processing_s": 12.0,
             "fervid_version": "0.1.0", "model_sha256": None, "settings_hash": "synthetic",
             "processed_at": dt.datetime(2024, 6, 1, 3, tzinfo=dt.UTC)}  # fmt: skip
    return frames, segments, video


def write_synthetic_dataset(out: Path, seed: int = 7) -> Path:
    """A dataset-layout fervid output of made-up sessions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    calm = {"neutral": 2.2, "happy": 1.0, "sad": 0.2, "surprise": 0.1}
    low = {"neutral": 1.6, "happy": -0.5, "sad": 1.9, "fear": 0.4}
    plan = []
    for w in range(6):
        day = dt.date(2024, 3, 4) + dt.timedelta(days=7 * w)
        plan.append(("P017", f"p017-w{w}", day, 240, low if w == 5 else calm,
                     [(60, 80)] if w == 2 else [], w == 3))  # fmt: skip
    for w in range(3):
        day = dt.date(2024, 3, 6) + dt.timedelta(days=14 * w)
        plan.append(("P020", f"p020-w{w}", day, 180, {"neutral": 2.0, "happy": 0.6}, [], False))
    per_video = []
    for subject, vid, day, dur, mood, absent, second in plan:
        per_video.append(
            _session(rng, vid, subject, day, dur, mood, absent=absent, second_face=second)
        )
    empty = _session(rng, "p020-cam-off", "P020", dt.date(2024, 4, 17), 120, {}, absent=[(0, 120)])
    per_video.append(empty)
    failed = {**_identity("p017-corrupt", "P017", dt.date(2024, 4, 1)), "status": "failed",
              "error": "DecodeError: moov atom not found (truncated upload?)",
              "fervid_version": "0.1.0", "settings_hash": "synthetic",
              "processed_at": dt.datetime(2024, 6, 1, 3, tzinfo=dt.UTC)}  # fmt: skip
    per_video.append(([], [], failed))
    for t in (FRAMES, SEGMENTS, VIDEOS):
        (out / t).mkdir(parents=True, exist_ok=True)
    for frames, segments, video in per_video:
        vid = video["video_id"]
        pq.write_table(
            pa.Table.from_pylist(frames, schema=schema_for(FRAMES)), out / FRAMES / f"{vid}.parquet"
        )
        pq.write_table(
            pa.Table.from_pylist(segments, schema=schema_for(SEGMENTS)),
            out / SEGMENTS / f"{vid}.parquet",
        )
        pq.write_table(
            pa.Table.from_pylist([video], schema=schema_for(VIDEOS)),
            out / VIDEOS / f"{vid}.parquet",
        )
    return out


def screenshot(html: Path, png: Path, *, chromium: str, window: str) -> None:
    argv = [chromium, *CHROMIUM_FLAGS, f"--screenshot={png}", f"--window-size={window}",
            html.resolve().as_uri()]  # fmt: skip
    subprocess.run(argv, check=True, timeout=180, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="Work folder (default: a new temporary folder).")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--window-size", default="1280,2400", help="Viewport WIDTH,HEIGHT in px.")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="fervid-shot-"))
    data = write_synthetic_dataset(out / "data")
    html = build_report(data, out / "report", title="fervid report (synthetic data)")
    png = out / "screenshot.png"
    if not Path(args.chromium).exists():
        print(f"{args.chromium} not found: install it (apt-get install -y chromium) or pass "
              f"--chromium; the report is at {html}", file=sys.stderr)  # fmt: skip
        return 2
    screenshot(html, png, chromium=args.chromium, window=args.window_size)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
