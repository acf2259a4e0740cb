"""The model file: safetensors + fervid metadata round trip, and refusal of anything else."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from fervid.errors import ModelError
from fervid.model.modelfile import (
    EMOTIONS,
    METADATA_KEY,
    ModelSpec,
    build_network,
    file_sha256,
    load_model,
    read_header,
    save_model,
)

#: A small network (width 0.25, 32 px, hidden layer) so the file is ~1 MB and builds fast.
SPEC = ModelSpec(input_size=32, width_mult=0.25, hidden=16, temperature=1.7, dropout=0.1)
INFO = {"name": "tiny-test", "val": {"fer2013_acc": 0.5}, "history": [{"epoch": 1, "loss": 1.9}]}


def _randomize(net: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics, so the round trip exercises buffers too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return _randomize(build_network(SPEC), 0)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(
        4, 3, SPEC.input_size, SPEC.input_size, generator=torch.Generator().manual_seed(1)
    )


def _fp16_rounded(net: nn.Module) -> nn.Module:
    r = copy.deepcopy(net)
    with torch.no_grad():
        for v in r.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    return r


# ----------------------------------------------------------------------------- round trip
def test_round_trip_preserves_spec_info_and_outputs(
    tmp_path: Path, net: nn.Module, x: torch.Tensor
) -> None:
    path = tmp_path / "m.safetensors"
    sha = save_model(path, net, SPEC, INFO)
    loaded = load_model(path)

    assert loaded.spec == SPEC
    assert loaded.info == INFO
    assert (
        loaded.sha256 == sha == file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    assert loaded.path == path
    assert not loaded.network.training
    assert all(p.dtype == torch.float32 for p in loaded.network.parameters())
    with torch.no_grad():
        got = loaded.network(x)
        want_fp16 = _fp16_rounded(net)(x)
        want_fp32 = net(x)
    # Exactly the fp16-rounded weights, and close to the original fp32 network.
    torch.testing.assert_close(got, want_fp16, rtol=1e-5, atol=1e-5)
    scale = float(want_fp32.abs().max())
    torch.testing.assert_close(got, want_fp32, rtol=0, atol=0.02 * scale)
    assert got.argmax(1).tolist() == want_fp32.argmax(1).tolist()


def test_fp32_round_trip_is_exact(tmp_path: Path, net: nn.Module, x: torch.Tensor) -> None:
    path = tmp_path / "m32.safetensors"
    save_model(path, net, SPEC, fp16=False)
    loaded = load_model(path)
    assert loaded.info == {}
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x), net(x), rtol=0, atol=0)


def test_sha256_is_stable_and_tracks_content(tmp_path: Path, net: nn.Module) -> None:
    a = save_model(tmp_path / "a.safetensors", net, SPEC, INFO)
    b = save_model(tmp_path / "b.safetensors", net, SPEC, INFO)
    assert a == b
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    c = save_model(tmp_path / "c.safetensors", net, SPEC, {**INFO, "name": "other"})
    assert c != a
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_read_header_without_weights(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "m.safetensors"
    save_model(path, net, SPEC, INFO)
    header = read_header(path)
    assert header["format_version"] == 1
    assert ModelSpec.from_json(header["spec"]) == SPEC
    assert header["spec"]["class_names"] == list(EMOTIONS)
    assert header["info"] == INFO


# ----------------------------------------------------------------------------- not safetensors
class _Trap:
    """Unpickling this creates a folder: proof that something unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.makedirs, (str(self.marker),))


def _torch_zip(path: Path, marker: Path) -> None:
    torch.save({"weights": torch.zeros(3), "trap": _Trap(marker)}, path)


def _torch_legacy(path: Path, marker: Path) -> None:
    torch.save({"trap": _Trap(marker)}, path, _use_new_zipfile_serialization=False)


def _raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_Trap(marker)))


NOT_SAFETENSORS = {
    "text": lambda p, m: p.write_text("this is a model, trust me\n" * 20),
    "zero bytes": lambda p, m: p.write_bytes(b""),
    "seven bytes": lambda p, m: p.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00"),
    "zero header length": lambda p, m: p.write_bytes(struct.pack("<Q", 0) + b"{}"),
    "header not json": lambda p, m: p.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{x"),
    "torch.save zip": _torch_zip,
    "torch.save legacy": _torch_legacy,
    "raw pickle": _raw_pickle,
}


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the model loader tried to unpickle a file")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.mark.parametrize("case", list(NOT_SAFETENSORS))
@pytest.mark.parametrize("name", ["model.safetensors", "model.pt"])
@pytest.mark.usefixtures("no_unpickling")
def test_non_safetensors_files_raise_without_unpickling(
    tmp_path: Path, case: str, name: str
) -> None:
    path, marker = tmp_path / name, tmp_path / "UNPICKLED"
    NOT_SAFETENSORS[case](path, marker)
    with pytest.raises(ModelError, match="not a safetensors file"):
        load_model(path)
    with pytest.raises(ModelError):
        read_header(path)
    assert not marker.exists()


def test_the_trap_works(tmp_path: Path) -> None:
    """The trap above would really show an unpickling (so the test above can fail)."""
    marker = tmp_path / "UNPICKLED"
    _raw_pickle(tmp_path / "p.pkl", marker)
    pickle.loads((tmp_path / "p.pkl").read_bytes())
    assert marker.is_dir()


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_truncated_safetensors_raises(tmp_path: Path, net: nn.Module) -> None:
    full = tmp_path / "full.safetensors"
    save_model(full, net, SPEC)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ModelError, match="cannot read tensors"):
        load_model(cut)


# ----------------------------------------------------------------------------- bad metadata
def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in net.state_dict().items()}


def _write_with_metadata(path: Path, net: nn.Module, metadata: dict[str, str] | None) -> Path:
    save_file(_state(net), str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, {"fervidx": "{}"}])
def test_safetensors_without_fervid_metadata(
    tmp_path: Path, net: nn.Module, metadata: dict | None
) -> None:
    path = _write_with_metadata(tmp_path / "plain.safetensors", net, metadata)
    with pytest.raises(ModelError, match="lacks fervid metadata"):
        load_model(path)


@pytest.mark.parametrize(
    "missing", ["architecture", "input_size", "channels", "mean", "std", "class_names"]
)
def test_metadata_lacking_a_spec_field(tmp_path: Path, net: nn.Module, missing: str) -> None:
    spec = SPEC.to_json()
    del spec[missing]
    meta = {METADATA_KEY: json.dumps({"format_version": 1, "spec": spec})}
    path = _write_with_metadata(tmp_path / "m.safetensors", net, meta)
    with pytest.raises(ModelError, match=missing):
        load_model(path)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ('{"format_version": 1, "info": {}}', "lacks the 'spec' entry"),
        ("{not json", "not valid JSON"),
    ],
)
def test_metadata_without_spec_or_not_json(
    tmp_path: Path, net: nn.Module, header: str, match: str
) -> None:
    path = _write_with_metadata(tmp_path / "m.safetensors", net, {METADATA_KEY: header})
    with pytest.raises(ModelError, match=match):
        load_model(path)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"architecture": "resnet50"}, "architecture"),
        ({"channels": "cmyk"}, "channels"),
        ({"input_size": 8}, "input_size"),
        ({"mean": [0.5, 0.5]}, "mean and std"),
        ({"class_names": ["happy"]}, "class_names"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_metadata_with_invalid_values(
    tmp_path: Path, net: nn.Module, override: dict, match: str
) -> None:
    meta = {METADATA_KEY: json.dumps({"spec": {**SPEC.to_json(), **override}})}
    path = _write_with_metadata(tmp_path / "m.safetensors", net, meta)
    with pytest.raises(ModelError, match=match):
        load_model(path)


# Metadata of the wrong JSON type must still be a one-line ModelError.
MALFORMED_METADATA = {
    "fervid metadata is a number": "5",
    "spec is a number": '{"spec": 5}',
    "input_size is a string": json.dumps({"spec": {**SPEC.to_json(), "input_size": "32"}}),
    "class_names is a number": json.dumps({"spec": {**SPEC.to_json(), "class_names": 7}}),
}


@pytest.mark.parametrize("case", list(MALFORMED_METADATA))
def test_malformed_metadata_types_should_raise_model_error(
    tmp_path: Path, net: nn.Module, case: str
) -> None:
    path = _write_with_metadata(
        tmp_path / "m.safetensors", net, {METADATA_KEY: MALFORMED_METADATA[case]}
    )
    with pytest.raises(ModelError):
        load_model(path)


# ----------------------------------------------------------------------------- wrong weights
def _with_weights_of(path: Path, other: nn.Module, spec: ModelSpec = SPEC) -> Path:
    meta = {METADATA_KEY: json.dumps({"format_version": 1, "spec": spec.to_json(), "info": {}})}
    save_file(_state(other), str(path), metadata=meta)
    return path


WRONG_WEIGHTS = {
    "other width": lambda: build_network(ModelSpec(input_size=32, width_mult=0.5, hidden=16)),
    "no hidden layer": lambda: build_network(ModelSpec(input_size=32, width_mult=0.25)),
    "5 classes": lambda: build_network(
        ModelSpec(input_size=32, width_mult=0.25, hidden=16, class_names=EMOTIONS[:5])
    ),
    "not a mobilenet": lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Linear(8, 7)),
}


@pytest.mark.parametrize("case", list(WRONG_WEIGHTS))
def test_wrong_architecture_weights(tmp_path: Path, case: str) -> None:
    path = _with_weights_of(tmp_path / "m.safetensors", WRONG_WEIGHTS[case]())
    with pytest.raises(ModelError, match="do not match the architecture"):
        load_model(path)


def test_missing_tensor_is_rejected(tmp_path: Path, net: nn.Module) -> None:
    state = _state(net)
    del state["classifier.4.weight"]
    path = tmp_path / "m.safetensors"
    save_file(state, str(path), metadata={METADATA_KEY: json.dumps({"spec": SPEC.to_json()})})
    with pytest.raises(ModelError, match="do not match the architecture"):
        load_model(path)
