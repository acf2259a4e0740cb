"""Loaders for the two face-data layouts users have: Kaggle folder layout and FER+.

Both return an :class:`ImageSet`: uint8 (N, H, W) grayscale images plus a soft target
distribution (N, C) over fervid's classes, so hard and crowd-vote labels train through
one loss.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np

from fervid.errors import DataError
from fervid.model.classes import EMOTIONS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm")

#: Folder or column names accepted for each class (lower-case).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "mad"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "fear": ("fear", "fearful", "afraid", "scared"),
    "happy": ("happy", "happiness", "joy", "smile"),
    "neutral": ("neutral", "calm", "none"),
    "sad": ("sad", "sadness", "sorrow"),
    "surprise": ("surprise", "surprised", "suprise"),
}

#: FER+ label.csv vote columns, in file order.
FERPLUS_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
    "contempt", "unknown", "NF",
)  # fmt: skip


class FerPlusMode(StrEnum):
    """How FER+ crowd votes become targets."""

    MAJORITY = (
        "majority"  # one-hot of the most-voted emotion; rows won by contempt/unknown/NF dropped
    )
    SOFT = "soft"  # vote distribution over the 7 emotions (contempt/unknown/NF votes dropped)


@dataclass(frozen=True)
class ImageSet:
    """Face images with soft targets. ``images`` uint8 (N, H, W); ``targets`` float32 (N, C)."""

    images: np.ndarray
    targets: np.ndarray
    names: tuple[str, ...]
    class_names: tuple[str, ...] = EMOTIONS
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise DataError(
                f"images must be uint8 (N, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.targets.shape != (len(self.images), len(self.class_names)):
            raise DataError(
                f"targets shape {self.targets.shape} != ({len(self.images)}, {len(self.class_names)})"
            )
        if len(self.names) != len(self.images):
            raise DataError("names and images differ in length")

    @property
    def labels(self) -> np.ndarray:
        """Hard labels (N,): argmax of the targets."""
        return self.targets.argmax(axis=1)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> ImageSet:
        return ImageSet(
            images=self.images[idx],
            targets=self.targets[idx],
            names=tuple(self.names[i] for i in idx),
            class_names=self.class_names,
            source=self.source,
        )


def match_class(name: str, class_names: tuple[str, ...] = EMOTIONS) -> str | None:
    """Map a folder/column name to one of ``class_names`` via :data:`SYNONYMS`, else None."""
    key = name.strip().lower()
    for cls in class_names:
        if key == cls or key in SYNONYMS.get(cls, ()):
            return cls
    return None


def _read_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DataError(f"cannot read image {path}")
    return img


def _stack(images: list[np.ndarray], size: int | None) -> np.ndarray:
    if not images:
        return np.zeros((0, size or 48, size or 48), np.uint8)
    side = size or images[0].shape[0]
    return np.stack(
        [
            im
            if im.shape == (side, side)
            else cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA)
            for im in images
        ]
    )


def list_folder(
    root: Path, class_names: tuple[str, ...] = EMOTIONS, limit_per_class: int | None = None
) -> list[tuple[Path, int]]:
    """``(image path, class index)`` for ``<root>/<class>/*.{jpg,png,...}``, sorted; class
    folders are matched by synonyms and folders that match no class (e.g. ``contempt``)
    are skipped. Raises :class:`DataError` if no class folder matches."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    out: list[tuple[Path, int]] = []
    matched = False
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        cls = match_class(sub.name, class_names)
        if cls is None:
            continue
        matched = True
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        out += [(f, class_names.index(cls)) for f in files[:limit_per_class]]
    if not matched:
        raise DataError(
            f"{root} has no class folders named like {list(class_names)}; expected <root>/<class>/*.jpg"
        )
    return out


def load_folder(
    root: Path,
    *,
    class_names: tuple[str, ...] = EMOTIONS,
    size: int | None = 48,
    limit_per_class: int | None = None,
) -> ImageSet:
    """Load ``<root>/<class>/*.{jpg,png,...}`` in grayscale (see :func:`list_folder`);
    images are resized to ``size`` x ``size`` when they differ."""
    files = list_folder(root, class_names, limit_per_class)
    labels = [c for _, c in files]
    targets = np.zeros((len(labels), len(class_names)), np.float32)
    targets[np.arange(len(labels)), labels] = 1.0
    return ImageSet(
        images=_stack([_read_gray(f) for f, _ in files], size),
        targets=targets,
        names=tuple(f"{f.parent.name}/{f.name}" for f, _ in files),
        class_names=class_names,
        source=str(root),
    )


def parse_ferplus_votes(row: list[str]) -> tuple[str, np.ndarray]:
    """One label.csv row -> (image name, votes (10,) int in :data:`FERPLUS_COLUMNS` order)."""
    if len(row) != 2 + len(FERPLUS_COLUMNS):
        raise DataError(
            f"FER+ label row has {len(row)} fields, expected {2 + len(FERPLUS_COLUMNS)}: {row[:3]}"
        )
    return row[0], np.array([int(float(v)) for v in row[2:]], dtype=np.int64)


def votes_to_target(
    votes: np.ndarray, mode: FerPlusMode, class_names: tuple[str, ...] = EMOTIONS
) -> np.ndarray | None:
    """FER+ votes (10,) -> target (C,) over ``class_names``, or None if the row is dropped.

    Contempt has no FER-2013 counterpart: its votes are dropped, as are unknown / not-a-face.
    MAJORITY drops rows whose most-voted column is contempt, unknown or NF (ties go to the
    first column in file order, as ``numpy.argmax`` does).
    """
    col_to_cls = {i: match_class(c, class_names) for i, c in enumerate(FERPLUS_COLUMNS)}
    target = np.zeros(len(class_names), np.float32)
    if mode is FerPlusMode.MAJORITY:
        top = int(np.argmax(votes))
        cls = col_to_cls[top]
        if votes[top] == 0 or cls is None:
            return None
        target[class_names.index(cls)] = 1.0
        return target
    for i, v in enumerate(votes):
        cls = col_to_cls[i]
        if cls is not None:
            target[class_names.index(cls)] += v
    total = target.sum()
    if total <= 0:
        return None
    return target / total


def load_ferplus(
    split_dir: Path,
    *,
    mode: FerPlusMode = FerPlusMode.MAJORITY,
    class_names: tuple[str, ...] = EMOTIONS,
    size: int | None = 48,
    limit: int | None = None,
) -> ImageSet:
    """Load one FER+ split folder (``FER2013Train/`` etc. holding images and ``label.csv``)."""
    split_dir = Path(split_dir)
    label_csv = split_dir / "label.csv"
    if not label_csv.is_file():
        raise DataError(f"{split_dir} is not a FER+ split: {label_csv} is missing")
    images, targets, names = [], [], []
    with open(label_csv, newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            name, votes = parse_ferplus_votes(row)
            t = votes_to_target(votes, mode, class_names)
            if t is None:
                continue
            img_path = split_dir / name
            if not img_path.is_file():
                continue  # label.csv lists a few images the split folder does not carry
            images.append(_read_gray(img_path))
            targets.append(t)
            names.append(name)
            if limit is not None and len(names) >= limit:
                break
    if not names:
        raise DataError(f"{label_csv} yielded no usable rows")
    return ImageSet(
        images=_stack(images, size),
        targets=np.stack(targets),
        names=tuple(names),
        class_names=class_names,
        source=str(split_dir),
    )


def load_dataset(
    path: Path, *, ferplus_mode: FerPlusMode = FerPlusMode.MAJORITY, size: int | None = 48, **kw
) -> ImageSet:
    """Load either layout, detected from the folder's content."""
    path = Path(path)
    if (path / "label.csv").is_file():
        return load_ferplus(
            path, mode=ferplus_mode, size=size, **({"limit": kw["limit"]} if "limit" in kw else {})
        )
    return load_folder(
        path,
        size=size,
        **({"limit_per_class": kw["limit_per_class"]} if "limit_per_class" in kw else {}),
    )
