"""The two validation splits the model scripts score on, as faces sized for a model.

The model card, the logit adjustment and the calibration table must all read the same
faces through the same inference preprocessing (``resize_faces``); this is that one
place. The test splits are held back on purpose and are not listed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fervid.model.preprocess import resize_faces
from fervid.model.spec import ModelSpec
from fervid.training.data import FerPlusMode, load_dataset

#: (name, folder below the data root): FER-2013's validation folder and FER+'s
#: validation votes (majority labels).
VALIDATION_SPLITS = (("fer2013", "fer2013/val"), ("ferplus", "ferplus/FER2013Valid"))


@dataclass(frozen=True)
class ValidationFaces:
    """One split's faces, resized for the model (``images``), integer ``labels``, the
    per-image file ``names`` and the split's ``folder``."""

    name: str
    folder: Path
    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]


def validation_faces(data_root: Path, spec: ModelSpec) -> Iterator[ValidationFaces]:
    """Each validation split under ``data_root`` in turn (one in memory at a time)."""
    for name, rel in VALIDATION_SPLITS:
        folder = Path(data_root) / rel
        ds = load_dataset(folder, ferplus_mode=FerPlusMode.MAJORITY, size=None)
        yield ValidationFaces(
            name=name,
            folder=folder,
            images=resize_faces(list(ds.images), spec),
            labels=ds.labels.astype(np.int64),
            names=tuple(ds.names),
        )
