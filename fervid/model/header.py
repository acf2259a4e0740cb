"""Reading a model file's header, without torch: a model file is untrusted input.

A safetensors file is an 8-byte length, a JSON header (tensor table and
``__metadata__``) and the raw tensor bytes. fervid's self-description is a JSON string
in the metadata (``{"format_version", "spec", "info"}``). Every part is checked before
the run opens its output, so a hostile or broken file is one :class:`ModelError` line
(exit 2) at load, never a traceback, a failure inside every video, or a huge
allocation:

- sizes: the header at most :data:`MAX_HEADER_BYTES`; nesting of every JSON value at
  most :data:`MAX_JSON_DEPTH` (Python's parser recurses, and a deeply nested header
  would otherwise be a ``RecursionError``);
- the spec's types and ranges (:class:`~fervid.model.spec.ModelSpec`);
- the tensor table: names, dtypes and shapes exactly those of the network the spec
  describes (:func:`fervid.model.shapes.expected_shapes`), and byte ranges that tile
  the rest of the file; every weight finite and at most :data:`MAX_WEIGHT`, every
  BatchNorm variance non-negative.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from fervid.errors import ModelError
from fervid.model.shapes import expected_shapes
from fervid.model.spec import (
    FORMAT_VERSION,
    METADATA_KEY,
    ModelSpec,
    file_sha256,
    resolve_model_path,
)

#: Largest safetensors JSON header accepted (the shipped model's is 33 KB).
MAX_HEADER_BYTES = 16 << 20
#: Deepest nesting of lists and objects accepted in the header or fervid's metadata
#: (the shipped model's metadata nests 5 deep).
MAX_JSON_DEPTH = 32
#: Largest weight magnitude accepted (fp16's largest finite value: model files store
#: fp16); a damaged exponent gives a value that overflows the activations to NaN.
MAX_WEIGHT = 65504.0
#: Bytes per element of the dtypes a weight may be stored in; floats only, but the
#: BatchNorm step counters (``num_batches_tracked``) are integers.
_FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_INT_DTYPES = {"I64": 8, "I32": 4}


def read_header(path: Path) -> dict[str, Any]:
    """fervid's metadata of the model file at ``path`` (``format_version``, ``spec``,
    ``info``), every part validated as the module docstring says; no weights read.

    Raises :class:`ModelError` with a one-line reason naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"model file {path} does not exist; pass --model PATH to a .safetensors file"
        )
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ModelError(f"model file {path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or n > MAX_HEADER_BYTES or n > size - 8:
            raise ModelError(
                f"model file {path} is not a safetensors file (header length {n}; expected "
                f"1 to {min(MAX_HEADER_BYTES, max(0, size - 8))} bytes)"
            )
        header = _json(f.read(n), f"model file {path} is not a safetensors file")
        data = f.read()
    if not isinstance(header, dict):
        raise ModelError(
            f"model file {path} is not a safetensors file (header is not a JSON object)"
        )
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        raise ModelError(
            f"model file {path} is safetensors but lacks fervid metadata "
            f"(architecture, input size, classes); save it with fervid.model.modelfile.save_model"
        )
    if not isinstance(meta[METADATA_KEY], str):
        raise ModelError(f"model file {path}: fervid metadata is not a JSON string")
    parsed = _json(meta[METADATA_KEY], f"model file {path}: fervid metadata is not valid JSON")
    if not isinstance(parsed, dict) or "spec" not in parsed:
        raise ModelError(f"model file {path}: fervid metadata lacks the 'spec' entry")
    version = parsed.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelError(f"model file {path}: format_version={version!r}; expected 1")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"model file {path} has format_version {version}, newer than this fervid reads "
            f"({FORMAT_VERSION}); upgrade fervid"
        )
    if not isinstance(parsed.get("info", {}), dict):
        raise ModelError(f"model file {path}: fervid metadata 'info' is not a JSON object")
    try:
        spec = ModelSpec.from_json(parsed["spec"])
    except ModelError as e:
        raise ModelError(f"model file {path}: {e}") from None
    _check_tensors(path, header, spec, data_bytes=len(data))
    _check_finite(path, header, data)
    return parsed


def read_model_header(path: Path | None) -> tuple[ModelSpec, dict[str, Any], str]:
    """``(spec, info, sha256)`` of a model file (None: the default, see
    :func:`resolve_model_path`), from its JSON header alone: no weights, no torch.

    What the driver needs to name output columns and hash settings before any model is
    loaded. Raises :class:`ModelError` like :func:`read_header`."""
    path = resolve_model_path(path)
    header = read_header(path)
    spec = ModelSpec.from_json(header["spec"])
    return spec, header.get("info", {}), file_sha256(path)


def _json(text: str | bytes, what: str) -> Any:
    """``text`` parsed, refused (``what`` and the reason) when it is not JSON or nests
    deeper than :data:`MAX_JSON_DEPTH`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ModelError(f"{what} (nested deeper than {MAX_JSON_DEPTH} levels)") from None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ModelError(f"{what} ({_first_line(e)})") from None
    stack = [(value, 1)]
    while stack:  # iterative: the check itself must not recurse
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ModelError(f"{what} (nested deeper than {MAX_JSON_DEPTH} levels)")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return value


def _check_tensors(path: Path, table: dict[str, Any], spec: ModelSpec, *, data_bytes: int) -> None:
    """The tensor table is exactly the spec's network, and its byte ranges tile the data."""
    where = f"model file {path}: weights do not match the architecture"
    expected = expected_shapes(spec)
    missing, extra = sorted(set(expected) - set(table)), sorted(set(table) - set(expected))
    if missing or extra:
        raise ModelError(
            f"{where} ({len(missing)} tensors missing, e.g. {missing[:2]}; {len(extra)} "
            f"unexpected, e.g. {extra[:2]})"
        )
    spans = []
    for name, shape in expected.items():
        entry = table[name]
        if not isinstance(entry, dict):
            raise ModelError(f"{where} ({name} is not a tensor entry)")
        dtypes = _INT_DTYPES if name.endswith("num_batches_tracked") else _FLOAT_DTYPES
        got, dtype = entry.get("shape"), entry.get("dtype")
        if not isinstance(dtype, str) or dtype not in dtypes:
            raise ModelError(
                f"{where} ({name} is stored as {dtype!r}; expected one of {sorted(dtypes)})"
            )
        if not isinstance(got, list) or tuple(got) != shape:
            raise ModelError(f"{where} ({name} has shape {got}, the spec gives {list(shape)})")
        offsets = entry.get("data_offsets")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in offsets)
            and offsets[1] - offsets[0] == math.prod(shape) * dtypes[dtype]
        ):
            raise ModelError(f"{where} ({name} has data_offsets {offsets!r})")
        spans.append((offsets[0], offsets[1]))
    position = 0
    for start, stop in sorted(spans):
        if start != position:  # a gap or an overlap
            raise ModelError(f"model file {path}: cannot read tensors (byte ranges overlap)")
        position = stop
    if position != data_bytes:
        raise ModelError(
            f"model file {path}: cannot read tensors (they need {position} bytes after the "
            f"header, the file has {data_bytes}: truncated or padded)"
        )


def _check_finite(path: Path, table: dict[str, Any], data: bytes) -> None:
    """Every weight is a finite number: a NaN or infinite one makes every probability
    NaN, in every video. Read with numpy (bfloat16 as the top half of a float32)."""
    for name, entry in table.items():
        dtype = entry["dtype"]
        if dtype not in _FLOAT_DTYPES:
            continue
        start, stop = entry["data_offsets"]
        chunk = data[start:stop]
        if dtype == "BF16":
            values = (np.frombuffer(chunk, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(chunk, {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype])
        if not np.isfinite(values).all() or np.abs(values).max(initial=0) > MAX_WEIGHT:
            raise ModelError(
                f"model file {path}: weights do not match the architecture ({name} holds "
                f"NaN, infinite or values beyond ±{MAX_WEIGHT:g}: a damaged file)"
            )
        if name.endswith("running_var") and (values < 0).any():  # its sqrt would be NaN
            raise ModelError(
                f"model file {path}: weights do not match the architecture ({name} holds "
                "negative variances: a damaged file)"
            )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
