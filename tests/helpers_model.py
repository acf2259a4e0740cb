"""Test helpers: a tiny random-weights emotion model for plumbing tests (tests only, never
shipped), and a shared 2-CPU Ray fixture.

The predictions are meaningless; what the tests check is that every row flows from the
decoder to Parquet with consistent shapes, times and probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fervid.model.modelfile import ModelSpec, build_network, save_model

#: Small and fast: 32 px grey input, a quarter-width MobileNetV2 (~0.5 MB on disk).
DEBUG_SPEC = ModelSpec(input_size=32, width_mult=0.25, dropout=0.0)


def make_debug_model(path: Path, *, spec: ModelSpec = DEBUG_SPEC, seed: int = 0) -> Path:
    """Write a random-weights model file at ``path`` (seeded: same bytes every call
    with the same ``seed``, so a rerun of the same settings is recognised) and return it."""
    torch.manual_seed(seed)
    net = build_network(spec).eval()
    save_model(Path(path), net, spec, {"debug": True, "seed": seed})
    return Path(path)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One 2-CPU local Ray for every test that needs it (import this fixture into a test
    module). A Ray already running is reused and left running."""
    # fervid's own start-up: loopback only, no outbound traffic, a private session folder
    from fervid.engine.ray_setup import start_ray

    session = start_ray(address=None, num_cpus=2)  # reuses a Ray already running
    try:
        yield
    finally:
        session.close()
