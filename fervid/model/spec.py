"""The model's self-description, read without torch.

:class:`ModelSpec` (architecture, input size, channels, normalisation, classes,
temperature), reading a model file's safetensors JSON header (:func:`read_model_header`)
and the resize every face crop goes through (:func:`resize_faces`). CPU workers and the
driver import this module, never :mod:`fervid.model.modelfile`: a worker that unpickles
a ``ModelSpec`` or resizes a crop must not pull torch into its process.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
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
#: Largest safetensors JSON header accepted; a bigger length field means "not safetensors".
_MAX_HEADER_BYTES = 100_000_000


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
        if self.input_size < 16:
            raise ModelError(f"input_size={self.input_size}; expected >= 16 pixels")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ModelError("mean and std must have 3 entries (one per network channel)")
        if len(self.class_names) < 2:
            raise ModelError(f"class_names={self.class_names!r}; expected at least 2 classes")
        if not self.temperature > 0:
            raise ModelError(f"temperature={self.temperature}; expected > 0")

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
        try:
            for k in ("mean", "std", "class_names"):
                kwargs[k] = tuple(kwargs[k])
            for k, typ in (
                ("input_size", int),
                ("dropout", float),
                ("hidden", int),
                ("width_mult", float),
                ("temperature", float),
            ):
                if k in kwargs and (
                    isinstance(kwargs[k], (bool, str)) or not isinstance(kwargs[k], (int, float))
                ):
                    raise TypeError(f"{k}={kwargs[k]!r} is not a number")
                if k in kwargs:
                    kwargs[k] = typ(kwargs[k])
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ModelError(f"model metadata 'spec' is malformed: {e}") from None


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


def read_header(path: Path) -> dict[str, Any]:
    """Read and validate the fervid metadata without loading weights.

    Raises :class:`ModelError` with a one-line reason when the file is missing, is not
    safetensors, or carries no fervid metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"model file {path} does not exist; pass --model PATH to a .safetensors file"
        )
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ModelError(f"model file {path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or n > _MAX_HEADER_BYTES:
            raise ModelError(f"model file {path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"model file {path} is not a safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise ModelError(
            f"model file {path} is not a safetensors file (header is not a JSON object)"
        )
    meta = header.get("__metadata__") or {}
    if METADATA_KEY not in meta:
        raise ModelError(
            f"model file {path} is safetensors but lacks fervid metadata "
            f"(architecture, input size, classes); save it with fervid.model.modelfile.save_model"
        )
    try:
        parsed = json.loads(meta[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise ModelError(f"model file {path}: fervid metadata is not valid JSON ({e})") from None
    if not isinstance(parsed, dict) or "spec" not in parsed:
        raise ModelError(f"model file {path}: fervid metadata lacks the 'spec' entry")
    return parsed


def read_model_header(path: Path | None) -> tuple[ModelSpec, dict[str, Any], str]:
    """``(spec, info, sha256)`` of a model file (None: the default, see
    :func:`resolve_model_path`), from its JSON header alone: no weights, no torch.

    What the driver needs to name output columns and hash settings before any model is
    loaded. Raises :class:`ModelError` like :func:`read_header`."""
    path = resolve_model_path(path)
    header = read_header(path)
    spec = ModelSpec.from_json(header["spec"])
    info = header.get("info")
    return spec, info if isinstance(info, dict) else {}, file_sha256(path)


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
