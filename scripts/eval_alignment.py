"""Aligned vs box crops, and detector thresholds, measured on FER validation images.

For every validation image (48x48 gray): upscale x4 (INTER_CUBIC), pad 64 px by edge
replication, detect with YuNet at threshold 0.5 (higher thresholds are the subset with
score >= t: NMS only lets higher-scoring boxes suppress lower ones), then classify with
the shipped model:

- ``fer``: the original 48x48 image (what training saw: the upper bound),
- ``box``: the square box crop of the best face (``--align off``),
- ``aligned``: the landmark-aligned crop (``--align on``),

all on the same images (those where a face was found). Prints detection counts per
threshold and accuracy / mean probability of the true class per crop kind.

Then the same two crops on the sample videos' frames (4 fps) where the emotion is
known (as in ``tests/test_emotions_on_video.py``): WolfgangLanger_Pexels.mp4 crying at
4-7 s (negative: sad + fear + angry + disgust) and laughing from 15 s (happy). Prints the
mean probability of the expected emotion(s) and the share of frames whose argmax is one.

    .venv/bin/python scripts/eval_alignment.py --data ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from fervid.extract.crop import crop_faces
from fervid.extract.detect import FaceDetector
from fervid.model.classify import EmotionClassifier
from fervid.settings import ClassifySettings, CropSettings, DetectSettings, Device
from fervid.training.data import load_dataset

THRESHOLDS = (0.5, 0.6, 0.7, 0.8)


def upscale(gray48: np.ndarray, scale: int = 4, pad: int = 64) -> np.ndarray:
    big = cv2.resize(gray48, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def evaluate(name: str, split: Path, limit: int | None) -> None:
    ds = load_dataset(split, size=48)
    images, labels = ds.images, ds.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    det = FaceDetector(
        settings=DetectSettings(score_threshold=min(THRESHOLDS), long_side=320), threads=1
    )
    clf = EmotionClassifier(settings=ClassifySettings(device=Device.CPU), cpu_threads=1)
    spec = clf.spec
    counts = {t: np.zeros(len(images), np.int64) for t in THRESHOLDS}
    keep, box, aligned = [], [], []
    for i, img in enumerate(images):
        big = upscale(img)
        d = det(big)
        for t in THRESHOLDS:
            counts[t][i] = int((d.scores >= t).sum())
        if len(d) == 0:
            continue
        first = type(d)(boxes=d.boxes[:1], scores=d.scores[:1], landmarks=d.landmarks[:1])
        keep.append(i)
        box.append(crop_faces(big, first, CropSettings(align=False), spec)[0])
        aligned.append(crop_faces(big, first, CropSettings(align=True), spec)[0])
    n = len(images)
    print(f"\n{name}: {n} images")
    for t in THRESHOLDS:
        c = counts[t]
        print(
            f"  threshold {t}: exactly 1 face {(c == 1).sum()} ({(c == 1).mean():.1%}), "
            f"none {(c == 0).sum()}, 2+ {(c >= 2).sum()}"
        )
    idx = np.asarray(keep)
    y = labels[idx]
    fer = np.stack(
        [
            cv2.resize(im, (spec.input_size,) * 2, interpolation=cv2.INTER_LINEAR)
            for im in images[idx]
        ]
    )
    print(f"  classified on the {len(idx)} images with a face at 0.5:")
    for kind, crops in (("fer", fer), ("box", np.stack(box)), ("aligned", np.stack(aligned))):
        p = clf(crops)
        acc = (p.argmax(1) == y).mean()
        p_true = p[np.arange(len(y)), y].mean()
        print(f"    {kind:8s} accuracy {acc:.4f}  mean p(true) {p_true:.4f}")


#: (video, start_s, end_s, expected classes): stretches whose emotion a person sees.
VIDEO_LABELS = [
    ("WolfgangLanger_Pexels.mp4", 4.0, 7.0, ("sad", "fear", "angry", "disgust")),
    ("WolfgangLanger_Pexels.mp4", 15.0, 20.0, ("happy",)),
]


def evaluate_videos(samples: Path) -> None:
    from fervid.extract.decode import FrameSampler, probe
    from fervid.settings import SampleSettings

    det = FaceDetector(settings=DetectSettings(), threads=1)
    clf = EmotionClassifier(settings=ClassifySettings(device=Device.CPU), cpu_threads=1)
    spec, names = clf.spec, clf.class_names
    print("\nsample videos (4 fps), mean p(expected) / share argmax in expected:")
    for video, a, b, expected in VIDEO_LABELS:
        path = samples / video
        frames = [
            f
            for f in FrameSampler(path, SampleSettings(fps=4.0), probe(path))
            if a <= f.timestamp_s < b
        ]
        cols = [names.index(c) for c in expected]
        line = f"  {video} {a:g}-{b:g} s {'+'.join(expected)} ({len(frames)} frames):"
        for align in (False, True):
            crops = []
            for f in frames:
                d = det(f.image)
                crops.append(crop_faces(f.image, d, CropSettings(align=align), spec)[:1])
            p = clf(np.concatenate(crops))
            share = np.isin(p.argmax(1), cols).mean()
            line += (
                f"  {'aligned' if align else 'box'} {p[:, cols].sum(1).mean():.3f} / {share:.2f}"
            )
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--samples", type=Path, default=Path("sample_videos"))
    args = ap.parse_args()
    cv2.setNumThreads(1)
    evaluate("FER+ valid (majority)", args.data / "ferplus" / "FER2013Valid", args.limit)
    evaluate("FER-2013 val", args.data / "fer2013" / "val", args.limit)
    evaluate_videos(args.samples)


if __name__ == "__main__":
    main()
