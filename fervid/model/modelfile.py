"""The emotion-model file: safetensors weights plus a self-describing JSON header.

A model file is the only thing inference needs: the network is rebuilt from the
``architecture`` entry and the preprocessing from ``input_size``/``channels``/``mean``/``std``,
through the same code the training recipe uses (:mod:`fervid.model.preprocess`).
Only safetensors is ever read, so a file handed to fervid is never unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fervid.errors import ModelError
from fervid.model.classes import EMOTIONS
from fervid.model.header import read_header
from fervid.model.spec import (
    DEFAULT_MODEL_PATH,
    FORMAT_VERSION,
    METADATA_KEY,
    MODEL_ENV,
    SUPPORTED_ARCHITECTURES,
    Channels,
    ModelSpec,
    file_sha256,
    resolve_model_path,
)
from fervid.output.atomic import atomic_path

# The torch-free half lives in fervid.model.spec; re-exported so callers that load
# weights need one import.
__all__ = [
    "DEFAULT_MODEL_PATH",
    "EMOTIONS",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "MODEL_ENV",
    "SUPPORTED_ARCHITECTURES",
    "Channels",
    "LoadedModel",
    "ModelSpec",
    "build_network",
    "file_sha256",
    "load_model",
    "read_header",
    "save_model",
]


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A network ready for inference, with its spec, free-form info and file hash."""

    network: nn.Module
    spec: ModelSpec
    info: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None


def build_network(spec: ModelSpec) -> nn.Module:
    """MobileNetV2 with a ``spec.num_classes`` head (dropout, optional hidden).

    :class:`fervid.model.mobilenet_v2.MobileNetV2` is torchvision's network module for
    module (same ``state_dict`` keys, initialisation and output) without importing
    torchvision, whose import chain costs seconds in every process that classifies."""
    from fervid.model.mobilenet_v2 import MobileNetV2

    net = MobileNetV2(width_mult=spec.width_mult)
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
    with atomic_path(path) as tmp:  # a crash mid-save leaves the previous model whole
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(header)})
    return file_sha256(path)


def load_model(path: Path | None = None, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a fervid model file (default: the shipped model) in eval mode, fp32."""
    from safetensors.torch import load_file

    path = resolve_model_path(path)
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
