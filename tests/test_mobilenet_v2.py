"""fervid's torchvision-free MobileNetV2 is torchvision's, bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fervid.model.mobilenet_v2 import MobileNetV2
from fervid.model.modelfile import build_network, load_model

torchvision_models = pytest.importorskip("torchvision.models")


@pytest.mark.parametrize("width_mult", [1.0, 0.5, 1.4])
def test_same_names_shapes_and_seeded_initialisation(width_mult: float) -> None:
    torch.manual_seed(1234)
    ours = MobileNetV2(width_mult=width_mult).state_dict()
    torch.manual_seed(1234)
    theirs = torchvision_models.mobilenet_v2(weights=None, width_mult=width_mult).state_dict()
    assert list(ours) == list(theirs)  # names and order
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name  # training runs stay reproducible


def test_same_output_on_the_shipped_weights(model_path: Path) -> None:
    loaded = load_model(model_path)  # the plain network, the shipped model's weights
    spec = loaded.spec
    reference = torchvision_models.mobilenet_v2(weights=None, width_mult=spec.width_mult)
    reference.classifier = build_network(spec).classifier  # the same head modules
    reference.load_state_dict(loaded.network.state_dict(), strict=True)
    reference.eval()
    torch.manual_seed(0)
    x = torch.rand(16, 3, spec.input_size, spec.input_size) * 4 - 2
    with torch.inference_mode():
        ours, theirs = loaded.network(x), reference(x)
    assert torch.equal(ours, theirs)
    assert np.isfinite(ours.numpy()).all() and ours.shape == (16, spec.num_classes)


def test_loading_a_model_does_not_import_torchvision(model_path: Path) -> None:
    code = (
        "import sys; from fervid.model.classify import EmotionClassifier; "
        "from fervid.settings import ClassifySettings; "
        f"EmotionClassifier(settings=ClassifySettings(model_path={str(model_path)!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchvision', "
        "'torch._dynamo')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
