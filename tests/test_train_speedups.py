"""The v3 training-loop changes: frozen leading modules stay exactly as loaded, the fused
EMA equals the per-tensor one, and logit adjustment folds into the head exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fervid.errors import ConfigError
from fervid.model.modelfile import EMOTIONS, ModelSpec, build_network
from fervid.training.balance import Split, cross_fitted, fit_bias, fold_bias, scores
from fervid.training.recipe import InitSettings
from fervid.training.train import Ema, leading_modules, set_trainable

SPEC = ModelSpec(input_size=48, channels="gray", mean=(0.5,) * 3, std=(0.5,) * 3,
                 class_names=EMOTIONS)  # fmt: skip


def _step(model: torch.nn.Module, params: list[torch.nn.Parameter], k: int) -> None:
    opt = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    for m in leading_modules(model, k):
        m.eval()
    x = torch.randn(8, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    loss = model(x).logsumexp(1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_frozen_leading_modules_keep_weights_and_bn_statistics() -> None:
    torch.manual_seed(0)
    model = build_network(SPEC)
    before = copy.deepcopy(model.state_dict())
    params = set_trainable(model, "all", 19, freeze_first=4)
    frozen = {id(p) for m in leading_modules(model, 4) for p in m.parameters()}
    assert frozen and not frozen & {id(p) for p in params}
    _step(model, params, 4)
    after = model.state_dict()
    n_lead = sum(1 for _ in leading_modules(model, 4)[-1].parameters())
    assert n_lead > 0
    for name, v in after.items():
        block = int(name.split(".")[1]) if name.startswith("features.") else 99
        same = torch.equal(v, before[name])
        if block < 4:
            assert same, f"{name} of a frozen module changed"
    changed = [
        n
        for n, v in after.items()
        if n.startswith("features.10.") and not torch.equal(v, before[n])
    ]
    assert changed, "a trainable block did not train"


def test_freeze_first_is_validated() -> None:
    with pytest.raises(ConfigError, match="freeze_first"):
        InitSettings(freeze_first=19)


def test_fused_ema_equals_per_tensor_lerp() -> None:
    torch.manual_seed(0)
    model = build_network(SPEC)
    ema = Ema(model, 0.99)
    ref = copy.deepcopy(ema.module.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model, step=1000)
    d = min(0.99, 1001 / 1010)
    src = model.state_dict()
    for k, v in ema.module.state_dict().items():
        want = ref[k].lerp(src[k], 1 - d) if v.is_floating_point() else src[k]
        assert torch.allclose(v, want, atol=1e-6), k


def _skewed_split(name: str, seed: int) -> Split:
    """Logits that read class 5 ('sad') as class 4 ('neutral') too often: an offset of
    about +1 on class 5 undoes it."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, 1400)
    logits = rng.normal(0, 1, (1, 1400, 7)).astype(np.float32)
    logits[0, np.arange(1400), labels] += 2.0
    logits[0, :, 5] -= 1.0
    return Split(name, logits, labels)


def test_logit_adjustment_recovers_a_known_skew() -> None:
    splits = [_skewed_split("a", 0), _skewed_split("b", 1)]
    zero = np.zeros(7, np.float32)
    bias = fit_bias(splits, 1.0)
    assert bias[5] - np.delete(bias, 5).mean() > 0.6
    before, after = scores(splits, zero, 1.0), scores(splits, bias, 1.0)
    assert after["a_min_recall"] > before["a_min_recall"] + 0.1
    honest = cross_fitted(splits, 1.0)
    assert honest["b_f1"] > before["b_f1"]


def test_fold_bias_shifts_logits_exactly() -> None:
    torch.manual_seed(0)
    model = build_network(SPEC).eval()
    x = torch.randn(4, 3, 48, 48)
    with torch.no_grad():
        a = model(x)
    bias = np.arange(7, dtype=np.float32) / 10
    fold_bias(model, bias)
    with torch.no_grad():
        b = model(x)
    assert torch.allclose(b - a, torch.from_numpy(bias).expand_as(a), atol=1e-5)
