"""The pipeline's inference network: BatchNorm folded and channels-last, same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fervid.model.classify import for_inference, predict_logits
from fervid.model.modelfile import load_model


def test_folded_network_gives_the_same_logits(model_path: Path) -> None:
    model = load_model(model_path)
    rng = np.random.default_rng(0)
    s = model.spec.input_size
    faces = rng.integers(0, 256, (48, s, s), dtype=np.uint8)
    fast = for_inference(model.network)
    names = dict(fast.named_modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in names.values())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.network.modules()), (
        "the original network must keep its BatchNorm layers (model files are saved from it)"
    )
    a = predict_logits(model.network, faces, model.spec, batch_size=16)
    b = predict_logits(fast, faces, model.spec, batch_size=16)
    assert a.shape == b.shape == (2 if model.spec.tta_flip else 1, 48, model.spec.num_classes)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    assert (a.argmax(-1) == b.argmax(-1)).all()
