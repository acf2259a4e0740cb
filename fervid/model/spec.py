"""The model's self-description, read without torch.

:class:`ModelSpec` (architecture, input size, channels, normalisation, classes,
temperature), validated field by field (a model file is untrusted input; the header
around it is read by :mod:`fervid.model.header`), and the resize every face crop goes
through (:func:`resize_faces`). CPU workers and the
driver import this module, never :mod:`fervid.model.modelfile`: a worker that unpickles
a ``ModelSpec`` or resizes a crop must not pull torch into its process.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fervid.errors import ModelError
from fervid.model.classes import EMOTIONS

METADATA_KEY = "fervid"
FORMAT_VERSION = 1
SUPPORTED_ARCHITECTURES = ("mobilenet_v2",)
DEFAULT_MODEL_PATH = Path(__file__).parent.parent / "models" / "fervid-mobilenetv2-fer.safetensors"
#: Environment variable naming a model file to use instead of the shipped default
#: (a site's own fine-tuned model, set once in the service definition).
MODEL_ENV = "FERVID_MODEL"


class Channels(StrEnum):
    """What the network is fed: grayscale faces (replicated to 3 channels) or RGB."""

    GRAY = "gray"
    RGB = "rgb"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything needed to rebuild the network and its preprocessing.

    ``input_size`` is the square side in pixels; ``channels`` is ``"gray"`` (faces are
    converted to grayscale, then replicated to the network's 3 input channels) or
    ``"rgb"``; ``mean``/``std`` are per network-channel, applied to pixels scaled to
    [0, 1]. ``temperature`` divides the logits before the softmax (fitted on validation).
    ``tta_flip``: every face is classified with its mirror image too and the two
    probability vectors averaged (test-time augmentation). A property of the model, so
    the pipeline, ``fervid evaluate`` and the model card all score the same function.
    """

    architecture: str = "mobilenet_v2"
    input_size: int = 64
    channels: Channels | str = Channels.GRAY  # a "gray"/"rgb" string is stored as the enum
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    class_names: tuple[str, ...] = EMOTIONS
    dropout: float = 0.2
    hidden: int = 0
    width_mult: float = 1.0
    temperature: float = 1.0
    tta_flip: bool = False

    def __post_init__(self) -> None:
        # A model file is untrusted input: every field is checked for type and range here,
        # so a hostile or broken header is one ModelError at load, never a failure inside
        # every video (a string mean) or a huge allocation per face (input_size 60000).
        if not isinstance(self.tta_flip, bool):
            raise ModelError(f"tta_flip={self.tta_flip!r}; expected true or false")
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise ModelError(
                f"architecture={self.architecture!r} is not supported; "
                f"expected one of {SUPPORTED_ARCHITECTURES}"
            )
        try:
            object.__setattr__(self, "channels", Channels(self.channels))
        except ValueError:
            raise ModelError(
                f"channels={self.channels!r}; expected one of {[c.value for c in Channels]}"
            ) from None
        _int_in("input_size", self.input_size, *INPUT_SIZE_RANGE, "pixels")
        _int_in("hidden", self.hidden, 0, MAX_HIDDEN, "units (0: no hidden layer)")
        for name, lo, hi in (("dropout", 0.0, 0.99), ("width_mult", *WIDTH_MULT_RANGE),
                             ("temperature", 1e-3, 1e3)):  # fmt: skip
            object.__setattr__(self, name, _number_in(name, getattr(self, name), lo, hi))
        for name, lo, hi in (("mean", -1e3, 1e3), ("std", 1e-6, 1e3)):
            values = getattr(self, name)
            if not isinstance(values, tuple | list) or len(values) != 3:
                raise ModelError(
                    f"{name}={values!r}; mean and std must have 3 entries (one per network channel)"
                )
            object.__setattr__(self, name, tuple(_number_in(name, v, lo, hi) for v in values))
        if isinstance(self.class_names, list):
            object.__setattr__(self, "class_names", tuple(self.class_names))
        _check_class_names(self.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def crop_shape(self) -> tuple[int, ...]:
        """Shape of one preprocessed crop: (S, S) for gray, (S, S, 3) for RGB."""
        s = self.input_size
        return (s, s) if self.channels is Channels.GRAY else (s, s, 3)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = Channels(self.channels).value
        d["mean"], d["std"], d["class_names"] = (
            list(self.mean),
            list(self.std),
            list(self.class_names),
        )
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelSpec:
        if not isinstance(d, dict):
            raise ModelError(f"model metadata 'spec' must be a JSON object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        missing = {"architecture", "input_size", "channels", "mean", "std", "class_names"} - set(d)
        if missing:
            raise ModelError(f"model metadata lacks required fields {sorted(missing)}")
        kwargs = {k: v for k, v in d.items() if k in known}
        for k in ("mean", "std", "class_names"):
            if not isinstance(kwargs[k], list):
                raise ModelError(
                    f"model metadata 'spec' is malformed: {k} is {type(kwargs[k]).__name__}, "
                    "expected a list"
                )
            kwargs[k] = tuple(kwargs[k])
        for k in ("architecture", "channels"):
            if not isinstance(kwargs[k], str):
                raise ModelError(
                    f"model metadata 'spec' is malformed: {k}={kwargs[k]!r} is not text"
                )
        return cls(**kwargs)


#: Square input side (pixels) a model may ask for: a bigger one means an allocation per
#: face of side² x batch floats, which a hostile header could make gigabytes.
INPUT_SIZE_RANGE = (16, 512)
#: Classes a model may have (each is three columns in every output table).
CLASS_COUNT_RANGE = (2, 64)
WIDTH_MULT_RANGE = (0.1, 2.0)
MAX_HIDDEN = 4096
#: A class name becomes column names (``prob_<name>``), figure labels and file names.
_CLASS_NAME = re.compile(r"^[^\W_][\w-]{0,39}$")


def _int_in(name: str, v: object, lo: int, hi: int, unit: str = "") -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ModelError(f"{name}={v!r}; expected an integer from {lo} to {hi} {unit}".rstrip())


def _number_in(name: str, v: object, lo: float, hi: float) -> float:
    """``v`` as a float; :class:`ModelError` unless it is a finite real in [lo, hi]."""
    real = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    if real and lo <= float(v) <= hi:  # type: ignore[arg-type]
        return float(v)  # type: ignore[arg-type]
    raise ModelError(f"{name}={v!r}; expected a finite number from {lo:g} to {hi:g}")


def _check_class_names(names: object) -> None:
    lo, hi = CLASS_COUNT_RANGE
    if not isinstance(names, tuple) or not lo <= len(names) <= hi:
        raise ModelError(f"class_names={names!r}; expected from {lo} to {hi} class names")
    for n in names:
        if not isinstance(n, str) or not _CLASS_NAME.match(n):
            raise ModelError(
                f"class_names has {n!r}; expected a name of letters, digits, '_' and '-' "
                "(up to 40, starting with a letter or digit)"
            )
    folded = [n.casefold() for n in names]
    twice = sorted({n for n in names if folded.count(n.casefold()) > 1})
    if twice:  # prob_Happy and prob_happy are one column to DuckDB
        raise ModelError(f"class_names has {twice} more than once (case-insensitively)")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_path(path: Path | None) -> Path:
    """The model file a run uses: ``path``, else ``$FERVID_MODEL``, else the shipped one.

    Raises :class:`ModelError` when falling back to a default that is not installed."""
    if path is None and os.environ.get(MODEL_ENV):
        path = Path(os.environ[MODEL_ENV])
    if path is None:
        path = DEFAULT_MODEL_PATH
        if not path.is_file():
            raise ModelError(
                f"no default model is installed at {path}; train one with `fervid train` "
                "and pass --model PATH"
            )
    return Path(path)


def resize_faces(faces: list[np.ndarray] | np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resize face crops to the model's square input (training and inference share it).

    ``faces``: sequence of uint8 images, each (H, W) grayscale or (H, W, 3) BGR.
    Returns uint8 (N, S, S) for ``channels="gray"`` or (N, S, S, 3) RGB for ``"rgb"``.
    INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    s = spec.input_size
    out = []
    for img in faces:
        if spec.channels is Channels.GRAY:
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        interp = cv2.INTER_AREA if min(img.shape[:2]) > s else cv2.INTER_LINEAR
        out.append(cv2.resize(img, (s, s), interpolation=interp))
    return np.stack(out) if out else np.zeros((0, *spec.crop_shape), np.uint8)
