"""fervid: batch facial-emotion timelines from recorded video.

The Python API (``docs/api.md``)::

    import fervid

    summary = fervid.process(["videos/"], "results.parquet", fps=4)  # writes, as the CLI
    results = fervid.analyze("clip.mp4", smoothing_seconds=2)        # in memory only
    results = fervid.read("results.parquet")                         # any output
    df = results.to_pandas("frames")
    probs = fervid.classify_faces(face_crops)                        # (N, C)

Settings are ``fervid process``'s options by key (``fervid config init`` lists them);
errors are the classes in :mod:`fervid.errors` that the CLI maps to exit codes. Names
load on first use: ``import fervid`` imports neither torch nor Ray (nor numpy).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("fervid")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from fervid.api import Results, analyze, class_names, classify_faces, process, read
    from fervid.engine.runner import RunInterrupted, RunSummary
    from fervid.errors import (
        ConfigError,
        DataError,
        DecodeError,
        DetectorError,
        FervidError,
        InputError,
        MissingExtraError,
        ModelError,
    )
    from fervid.settings import RunSettings

#: public name -> module it lives in (imported on first access)
_LAZY = {
    "process": "fervid.api", "analyze": "fervid.api", "read": "fervid.api",
    "classify_faces": "fervid.api", "class_names": "fervid.api", "Results": "fervid.api",
    "RunSummary": "fervid.engine.runner", "RunInterrupted": "fervid.engine.runner",
    "RunSettings": "fervid.settings",
    "FervidError": "fervid.errors", "ConfigError": "fervid.errors",
    "InputError": "fervid.errors", "DecodeError": "fervid.errors",
    "ModelError": "fervid.errors", "DetectorError": "fervid.errors",
    "DataError": "fervid.errors", "MissingExtraError": "fervid.errors",
}  # fmt: skip

__all__ = [
    "ConfigError", "DataError", "DecodeError", "DetectorError", "FervidError", "InputError",
    "MissingExtraError", "ModelError", "Results", "RunInterrupted", "RunSettings",
    "RunSummary", "__version__", "analyze", "class_names", "classify_faces", "process", "read",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'fervid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
