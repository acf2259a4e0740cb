"""Two-person call layouts composed from the sample videos (PyAV + OpenCV), for the
patient-face tests: gallery view (two tiles side by side) and speaker view (one full
picture with a small self-view inset in a corner)."""

from __future__ import annotations

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
