#!/usr/bin/env python
"""Render a report built from synthetic tables in headless Chromium: screenshots at a
desktop width (1280 px) and a phone width (390 px), and layout measurements.

    sudo apt-get install -y chromium          # Debian; once
    .venv/bin/python scripts/screenshot_report.py --out /tmp/fervid-shot

It writes a synthetic dataset (two subjects, weekly sessions of a few minutes, one
session without a face, one recording that failed, one session with a second face, a
last session that departs from the baseline, and one recording without a subject),
builds the report, and saves ``screenshot-1280.png`` and ``screenshot-390.png``.
For each width it also loads a copy of the page with a small measuring script added
(the report itself has no script) and checks, from the DOM Chromium dumps: the page is
no wider than the window, at 1280 px no table needs a horizontal scroll, and every
figure loaded and fits; no table is cut off without a cue (a shadow at the scrolling
edge), and at 390 px tables reflow into cards; the index panels stand side by side at
1280 px, one under another at 390 px, each at least :data:`MIN_PANEL_PX` wide. It prints the measurements and any problem; exit code 1 when a
check fails. ``tests/test_report.py`` runs the same checks where Chromium is installed.
No real video or patient data is used; the browser runs with networking features off
and only opens local files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
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
#: The widths checked: a desktop window and a phone (iPhone 12-15 CSS width).
WIDTHS = (1280, 390)
#: At this width and below the report is laid out for a phone (report.css): tables as
#: cards, index panels one under another.
PHONE = 640
#: An index panel shown narrower than this (px) has words too small to read.
MIN_PANEL_PX = 320

# The page is shown in an iframe of the width checked: headless Chromium lays a window
# out at least 500 px wide, so a 390 px window alone would not be a phone. The measuring
# script lives in the wrapper (the report itself has no script): after the page loads it
# writes what the browser laid out into a <pre> that --dump-dom returns.
_WRAPPER = """<!doctype html><html><head><meta charset="utf-8"></head>
<body style="margin:0"><iframe id="page" src="{src}" style="width:{width}px;height:{height}px;
border:0;display:block"></iframe>{script}</body></html>"""
_MEASURE = """<script>
document.getElementById("page").addEventListener("load", (e) => {
  const doc = e.target.contentDocument, root = doc.documentElement;
  const out = {
    viewport: root.clientWidth, page: root.scrollWidth,
    tables: [...doc.querySelectorAll(".table-wrap")].map((w) => {
      const st = e.target.contentWindow.getComputedStyle(w);
      return {scroll: w.scrollWidth, client: w.clientWidth,
              cue: st.backgroundImage.includes("gradient") && st.backgroundAttachment.includes("local"),
              cards: e.target.contentWindow.getComputedStyle(w.querySelector("tr")).display === "block"};
    }),
    panels: [...doc.querySelectorAll(".panels img")].map((i) => {
      const r = i.getBoundingClientRect();
      return {left: Math.round(r.left), top: Math.round(r.top), shown: Math.round(r.width),
              natural: i.naturalWidth};
    }),
    images: [...doc.images].map((i) => ({loaded: i.complete && i.naturalWidth > 0,
      shown: Math.round(i.getBoundingClientRect().width)})),
  };
  const pre = document.createElement("pre");
  pre.id = "fervid-measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


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


def _identity(vid: str, subject: str | None, day: dt.date | None) -> dict:
    name = f"{day}_{vid}.mp4" if day else f"{vid}.mp4"
    path = f"{subject}/{name}" if subject else f"P021/{name}"  # P021/intake.mp4: no date
    return {"video_id": vid, "path": path, "file_name": name, "subject": subject,
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
                    "face_found": True,
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
    stray = _session(rng, "intake", None, None, 90, calm)  # --id-pattern did not match it
    stray[2]["id_pattern_matched"] = False
    per_video.append(stray)
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


def _wrapper(html: Path, width: int, height: int, *, script: str = "") -> Path:
    page = html.with_name(f".view-{width}.html")
    page.write_text(_WRAPPER.format(src=html.name, width=width, height=height, script=script))
    return page


def _chromium(chromium: str, page: Path, *extra: str) -> str:
    argv = [chromium, *CHROMIUM_FLAGS, "--allow-file-access-from-files", *extra,
            page.resolve().as_uri()]  # fmt: skip
    try:
        return subprocess.run(argv, check=True, timeout=180, capture_output=True, text=True).stdout
    finally:
        page.unlink(missing_ok=True)


def screenshot(html: Path, png: Path, *, chromium: str, width: int, height: int = 2400) -> None:
    """A ``width`` px wide screenshot of the top ``height`` px of the page."""
    page = _wrapper(html, width, height)
    _chromium(chromium, page, f"--screenshot={png}", f"--window-size={width},{height}")


def measure(html: Path, *, chromium: str, width: int) -> dict:
    """Layout facts of ``html`` at ``width`` px: viewport and page widths, each table's
    scroll and visible width, each image's loaded flag and shown width."""
    page = _wrapper(html, width, 900, script=_MEASURE)
    dom = _chromium(chromium, page, f"--window-size={max(width, 500)},900",
                    "--virtual-time-budget=10000", "--dump-dom")  # fmt: skip
    m = re.search(r'<pre id="fervid-measure">(.*?)</pre>', dom, re.S)
    if m is None:
        raise RuntimeError(f"no measurements in the DOM Chromium returned ({len(dom)} chars)")
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def layout_problems(m: dict, width: int) -> list[str]:
    """What a reader at ``width`` px would have to fight: empty when the layout is right."""
    problems = []
    if m["page"] > m["viewport"] + 1:
        problems.append(f"{width} px: the page is {m['page']} px wide (horizontal scroll)")
    for i, t in enumerate(m["tables"]):
        cut = t["scroll"] > t["client"] + 1
        if cut and (width >= 1280 or not t["cue"]):
            problems.append(f"{width} px: table {i + 1} needs {t['scroll']} px, has "
                            f"{t['client']} px (columns cut off behind a scroll"
                            + ("" if t["cue"] else ", without a cue") + ")")  # fmt: skip
        if width <= PHONE and not t["cards"]:
            problems.append(f"{width} px: table {i + 1} does not reflow into cards")
    panels = m.get("panels", [])
    for i, pnl in enumerate(panels):
        if pnl["shown"] < MIN_PANEL_PX:  # squeezed: its words too small to read
            problems.append(f"{width} px: index panel {i + 1} is shown {pnl['shown']} px wide "
                            f"(< {MIN_PANEL_PX})")  # fmt: skip
    columns = len({pnl["left"] for pnl in panels})
    if panels and width <= PHONE and columns != 1:
        problems.append(
            f"{width} px: index panels in {columns} columns; expected one under another"
        )
    if panels and width >= 1280 and columns < 2:
        problems.append(f"{width} px: index panels in one column; expected side by side")
    for i, img in enumerate(m["images"]):
        if not img["loaded"]:
            problems.append(f"{width} px: figure {i + 1} did not load")
        elif img["shown"] > m["viewport"]:
            problems.append(f"{width} px: figure {i + 1} is {img['shown']} px wide")
    return problems


def check_report(html: Path, out: Path, *, chromium: str) -> tuple[dict, list[str]]:
    """Screenshots and measurements at :data:`WIDTHS`; (measurements, problems)."""
    found: dict = {}
    problems: list[str] = []
    for width in WIDTHS:
        screenshot(html, out / f"screenshot-{width}.png", chromium=chromium, width=width)
        found[width] = measure(html, chromium=chromium, width=width)
        problems += layout_problems(found[width], width)
    return found, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="Work folder (default: a new temporary folder).")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--embed", action="store_true", help="Build the one-file report.")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="fervid-shot-"))
    data = write_synthetic_dataset(out / "data")
    html = build_report(data, out / "report", title="fervid report (synthetic data)",
                        embed_images=args.embed)  # fmt: skip
    if not Path(args.chromium).exists():
        print(f"{args.chromium} not found: install it (apt-get install -y chromium) or pass "
              f"--chromium; the report is at {html}", file=sys.stderr)  # fmt: skip
        return 2
    found, problems = check_report(html, out, chromium=args.chromium)
    for width, m in found.items():
        tables = [t["scroll"] for t in m["tables"]]
        panels = m["panels"]
        print(
            f"{width} px: page {m['page']} px in a {m['viewport']} px window; table widths "
            f"{tables} (cards: {sum(t['cards'] for t in m['tables'])} of {len(tables)}); "
            f"{len(panels)} index panels in {len({p['left'] for p in panels})} column(s), "
            f"{min((p['shown'] for p in panels), default=0)}-"
            f"{max((p['shown'] for p in panels), default=0)} px wide; {len(m['images'])} "
            f"figures -> {out / f'screenshot-{width}.png'}"
        )
    for line in problems:
        print("problem:", line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
