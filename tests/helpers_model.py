"""A tiny random-weights emotion model for plumbing tests (tests only, never shipped).

The predictions are meaningless; what the tests check is that every row flows from the
decoder to Parquet with consistent shapes, times and probabilities.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fervid.modelfile import ModelSpec, build_network, save_model

#: Small and fast: 32 px grey input, a quarter-width MobileNetV2 (~1 MB on disk).
DEBUG_SPEC = ModelSpec(input_size=32, width_mult=0.25, dropout=0.0)


def make_debug_model(path: Path, *, spec: ModelSpec = DEBUG_SPEC, seed: int = 0) -> Path:
    """Write a random-weights model file at ``path`` (seeded: same bytes every call
    with the same ``seed``, so a rerun of the same settings is recognised) and return it."""
    torch.manual_seed(seed)
    net = build_network(spec).eval()
    save_model(Path(path), net, spec, {"debug": True, "seed": seed})
    return Path(path)
