"""Two-person call layouts composed from the sample videos (PyAV + OpenCV), for the
patient-face tests: gallery view (two tiles side by side) and speaker view (one full
picture with a small self-view inset in a corner)."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

FPS = 10


def _frames(path: Path, size: tuple[int, int], n: int, *, flip: bool = False) -> list[np.ndarray]:
    """``n`` frames of ``path`` at :data:`FPS` (looped when shorter), resized to ``size``
    (w, h), BGR."""
    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        step = 1.0 / FPS
        next_t = 0.0
        for frame in c.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else next_t
            if t + 1e-6 < next_t:
                continue
            next_t += step
            img = cv2.resize(frame.to_ndarray(format="bgr24"), size, interpolation=cv2.INTER_AREA)
            out.append(cv2.flip(img, 1) if flip else img)
    return [out[i % len(out)] for i in range(n)]


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(FPS))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def gallery_call(dest: Path, left: Path, right: Path, *, seconds: float = 6.0) -> Path:
    """Two 640x360 tiles side by side (1280x360): ``left`` and ``right`` (mirrored, so a
    clip used twice still shows two different pictures)."""
    n = round(seconds * FPS)
    a = _frames(left, (640, 360), n)
    b = _frames(right, (640, 360), n, flip=True)
    return _write(dest, [np.hstack([x, y]) for x, y in zip(a, b, strict=True)])


def speaker_call(
    dest: Path, speaker: Path, self_view: Path, *, seconds: float = 6.0, inset: int = 200
) -> Path:
    """``speaker`` full frame (640x360) with ``self_view`` as an inset ``inset`` px wide in
    the bottom-left corner (clear of the speaker, who sits centre-right)."""
    n = round(seconds * FPS)
    big = _frames(speaker, (640, 360), n)
    small = _frames(self_view, (inset, round(inset * 9 / 16)), n)
    frames = []
    for x, y in zip(big, small, strict=True):
        img = x.copy()
        h, w = y.shape[:2]
        img[360 - h - 8 : 360 - 8, 8 : 8 + w] = y
        frames.append(img)
    return _write(dest, frames)


def broken_track(
    dest: Path,
    face: Path,
    gap: Path,
    *,
    seconds: tuple[float, float, float] = (4.0, 4.0, 4.0),
    beside: Path | None = None,
) -> Path:
    """One person who leaves and comes back: ``face`` for ``seconds[0]``, ``gap`` (a clip
    without a face) for ``seconds[1]``, ``face`` again from its start for ``seconds[2]``
    (640x360). With ``beside``, a second 640x360 tile on the right shows ``beside``
    (mirrored) all along: a second face present the whole time (1280x360)."""
    a, b, c = (round(x * FPS) for x in seconds)
    left = [
        *_frames(face, (640, 360), a),
        *_frames(gap, (640, 360), b),
        *_frames(face, (640, 360), c),
    ]
    if beside is None:
        return _write(dest, left)
    right = _frames(beside, (640, 360), len(left), flip=True)
    return _write(dest, [np.hstack([x, y]) for x, y in zip(left, right, strict=True)])


def process_calls(recordings: Path, out: Path) -> Path:
    """``fervid process recordings --out out/`` in-process mode, as the CLI runs it."""
    r = subprocess.run(
        [sys.executable, "-m", "fervid", "process", str(recordings), "--out", f"{out}/",
         "--executor", "local", "--quiet"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return out
