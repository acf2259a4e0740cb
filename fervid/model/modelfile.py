"""The emotion-model file: safetensors weights plus a self-describing JSON header.

A model file is the only thing inference needs: the network is rebuilt from the
``architecture`` entry and the preprocessing from ``input_size``/``channels``/``mean``/``std``,
through the same code the training recipe uses (:mod:`fervid.model.preprocess`).
Only safetensors is ever read, so a file handed to fervid is never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fervid.errors import ModelError
from fervid.model.classes import EMOTIONS

METADATA_KEY = "fervid"
FORMAT_VERSION = 1
SUPPORTED_ARCHITECTURES = ("mobilenet_v2",)
DEFAULT_MODEL_PATH = Path(__file__).parent.parent / "models" / "fervid-mobilenetv2-fer.safetensors"
#: Environment variable naming a model file to use instead of the shipped default
#: (a site's own fine-tuned model, set once in the service definition).
MODEL_ENV = "FERVID_MODEL"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything needed to rebuild the network and its preprocessing.

    ``input_size`` is the square side in pixels; ``channels`` is ``"gray"`` (faces are
    converted to grayscale, then replicated to the network's 3 input channels) or
    ``"rgb"``; ``mean``/``std`` are per network-channel, applied to pixels scaled to
    [0, 1]. ``temperature`` divides the logits before the softmax (fitted on validation).
    """

    architecture: str = "mobilenet_v2"
    input_size: int = 64
    channels: str = "gray"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    class_names: tuple[str, ...] = EMOTIONS
    dropout: float = 0.2
    hidden: int = 0
    width_mult: float = 1.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise ModelError(
                f"architecture={self.architecture!r} is not supported; "
                f"expected one of {SUPPORTED_ARCHITECTURES}"
            )
        if self.channels not in ("gray", "rgb"):
            raise ModelError(f"channels={self.channels!r}; expected 'gray' or 'rgb'")
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

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
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
        known = {f for f in cls.__dataclass_fields__}
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


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A network ready for inference, with its spec, free-form info and file hash."""

    network: nn.Module
    spec: ModelSpec
    info: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None


def build_network(spec: ModelSpec) -> nn.Module:
    """torchvision MobileNetV2 with a ``spec.num_classes`` head (dropout, optional hidden)."""
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None, width_mult=spec.width_mult)
    in_features = net.last_channel
    layers: list[nn.Module] = [nn.Dropout(p=spec.dropout)]
    if spec.hidden > 0:
        layers += [
            nn.Linear(in_features, spec.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=spec.dropout),
        ]
        in_features = spec.hidden
    layers.append(nn.Linear(in_features, spec.num_classes))
    net.classifier = nn.Sequential(*layers)
    return net


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(
    path: Path,
    network: nn.Module,
    spec: ModelSpec,
    info: dict[str, Any] | None = None,
    *,
    fp16: bool = True,
) -> str:
    """Write ``network`` + metadata as safetensors; returns the file's sha256.

    fp16 storage halves the file; weights are cast back to fp32 on load.
    """
    from safetensors.torch import save_file

    state = {
        k: (v.detach().to(torch.float16) if fp16 and v.is_floating_point() else v.detach())
        .contiguous()
        .cpu()
        for k, v in network.state_dict().items()
    }
    header = {"format_version": FORMAT_VERSION, "spec": spec.to_json(), "info": info or {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(header)})
    tmp.replace(path)
    return file_sha256(path)


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
        if n <= 0 or n > 100_000_000:
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


def load_model(path: Path | None = None, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a fervid model file (default: the shipped model) in eval mode, fp32."""
    from safetensors.torch import load_file

    if path is None and os.environ.get(MODEL_ENV):
        path = Path(os.environ[MODEL_ENV])
    if path is None:
        path = DEFAULT_MODEL_PATH
        if not path.is_file():
            raise ModelError(
                f"no default model is installed at {path}; train one with `fervid train` "
                "and pass --model PATH"
            )
    path = Path(path)
    header = read_header(path)
    spec = ModelSpec.from_json(header["spec"])
    network = build_network(spec)
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"model file {path}: cannot read tensors ({e})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ModelError(
            f"model file {path}: weights do not match the architecture ({first})"
        ) from None
    network.eval().to(device)
    return LoadedModel(
        network=network, spec=spec, info=header.get("info", {}), sha256=file_sha256(path), path=path
    )
