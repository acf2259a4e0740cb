"""Measure where YuNet's 5 landmarks fall in FER-2013's own training crops.

Each 48x48 gray training image is upscaled (``--scale``, INTER_CUBIC), padded on every
side by replicating its border (YuNet needs some context around a face that fills the
whole image), converted to BGR and run through YuNet at its native size. Landmarks of
the best face whose box centre lies inside the original image are mapped back to the
48x48 crop and normalised to [0, 1]. The per-point medians are the alignment template
``fervid.extract.align.TEMPLATE``; the script prints them as a Python constant, plus the
spread (interquartile range) and the detection rate.

    .venv/bin/python scripts/measure_align_template.py --data ../shared/data/fer2013/train
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from fervid.extract.detect import load_yunet
from fervid.records import LANDMARK_NAMES
from fervid.settings import DetectSettings


def landmarks_in_fer_image(
    net: cv2.FaceDetectorYN, gray48: np.ndarray, scale: int, pad: int
) -> np.ndarray | None:
    """(5, 2) landmarks as fractions of the 48x48 image, or None when no face is found."""
    side = gray48.shape[0]
    big = cv2.resize(gray48, (side * scale, side * scale), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    bgr = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    net.setInputSize((bgr.shape[1], bgr.shape[0]))
    _, rows = net.detect(bgr)
    if rows is None or len(rows) == 0:
        return None
    rows = rows[np.argsort(-rows[:, 14])]
    for r in rows:
        cx, cy = r[0] + r[2] / 2 - pad, r[1] + r[3] / 2 - pad
        if 0 <= cx < side * scale and 0 <= cy < side * scale:
            return (r[4:14].reshape(5, 2) - pad) / (side * scale)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fer2013/train"))
    ap.add_argument("--per-class", type=int, default=1000, help="images per class folder")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--pad", type=int, default=64, help="replicated border, upscaled pixels")
    ap.add_argument("--threshold", type=float, default=0.6)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    net = load_yunet(settings=DetectSettings(score_threshold=args.threshold))
    found, tried = [], 0
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.jpg"))[: args.per_class]:
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            tried += 1
            lm = landmarks_in_fer_image(net, img, args.scale, args.pad)
            if lm is not None:
                found.append(lm)
    pts = np.stack(found)  # (n, 5, 2)
    med = np.median(pts, axis=0)
    q1, q3 = np.percentile(pts, 25, axis=0), np.percentile(pts, 75, axis=0)
    print(f"images: {tried}, face found: {len(found)} ({len(found) / tried:.1%})")
    for name, m, a, b in zip(LANDMARK_NAMES, med, q1, q3, strict=True):
        print(
            f"{name:12s} x {m[0]:.4f} (IQR {a[0]:.4f}-{b[0]:.4f})  y {m[1]:.4f} (IQR {a[1]:.4f}-{b[1]:.4f})"
        )
    rows = ",\n".join(
        f"        ({m[0]:.4f}, {m[1]:.4f}),  # {n}"
        for n, m in zip(LANDMARK_NAMES, med, strict=True)
    )
    print(f"TEMPLATE = np.array(\n    [\n{rows}\n    ],\n    np.float32,\n)")


if __name__ == "__main__":
    main()
