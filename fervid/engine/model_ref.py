"""The run's model as it travels to the classifiers: resolved, hashed and verified.

The driver resolves the model path (``--model``, else ``$FERVID_MODEL``, else the shipped
model) once, reads the file's bytes and its safetensors header — never the weights
into a network — and hands :class:`ModelRef` to the executor. Every classifier (a Ray
actor on any node, or the in-process one) loads the model from those bytes with
:func:`load_verified`, which refuses bytes whose sha256 is not the one the driver
recorded. So the ``model_sha256`` written to the output is the model that produced the
probabilities, wherever the actor runs and whatever its working directory or
environment.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fervid.errors import ModelError
from fervid.model.spec import ModelSpec


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """A model file's absolute ``path`` (for the record), ``sha256`` (hex) of ``data``
    (the file's bytes), and ``spec`` read from its header."""

    path: Path
    sha256: str
    spec: ModelSpec
    data: bytes = field(repr=False)


def resolve_model_path(path: Path | None) -> Path:
    """``path``, else ``$FERVID_MODEL``, else the shipped model, as an absolute path.
    Called in the driver: a worker's environment and working directory never decide
    which model a run uses."""
    from fervid.model.spec import resolve_model_path as resolve

    return resolve(path).expanduser().absolute()


def model_ref(path: Path) -> ModelRef:
    """The file at ``path`` (absolute) as a :class:`ModelRef`: header and hash only,
    no torch. Raises :class:`ModelError` when it is missing or not a fervid model file."""
    from fervid.model.header import read_header

    header = read_header(path)  # raises ModelError, one line
    spec = ModelSpec.from_json(header["spec"])
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"model file {path}: cannot read it ({e.strerror})") from None
    return ModelRef(path=path, sha256=hashlib.sha256(data).hexdigest(), spec=spec, data=data)


def load_verified(data: bytes, sha256: str, spec: ModelSpec, *, device: str = "cpu") -> Any:
    """Load the model from ``data`` after checking it hashes to ``sha256`` and that its
    header's spec equals ``spec``; returns a ``LoadedModel`` whose ``sha256`` is the hash
    of the bytes loaded. Raises :class:`ModelError` on any mismatch."""
    from fervid.model.modelfile import load_model

    got = hashlib.sha256(data).hexdigest()
    with _LOADED_LOCK:  # once per process: a second run (or API call) reuses the network
        cached = _LOADED.get((got, device))
    if cached is not None and got == sha256 and cached.spec == spec:
        return cached
    if got != sha256:
        raise ModelError(
            f"model bytes hash to {got[:12]}… but the run recorded {sha256[:12]}…; "
            "refusing to classify with a model other than the one the output names"
        )
    with tempfile.TemporaryDirectory(prefix="fervid-model-") as tmp:  # mode 0700
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(data)
        loaded = load_model(path, device=device)
    if loaded.sha256 != sha256 or loaded.spec != spec:
        raise ModelError(
            f"the model loaded (sha256 {loaded.sha256[:12]}…) is not the one the run "
            f"recorded ({sha256[:12]}…)"
        )
    with _LOADED_LOCK:
        _LOADED[(sha256, device)] = loaded
    return loaded


#: Models this process has loaded, by (sha256 of the bytes, device): the weights are
#: read once per process however many runs (or API calls) use them.
_LOADED: dict[tuple[str, str], Any] = {}
_LOADED_LOCK = threading.Lock()
