"""Transfer learning from the shared ImageNet MobileNetV2 (``fervid train --init``).

The shared weights have BatchNorm folded into the convolutions; re-estimating it must not
change what the network computes in eval mode, the gray input must equal the README's
channel-summed stem, and a two-phase run (head, then the whole network) must learn in
both phases and resume mid-phase-2 to exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import skip_for_missing_data

from fervid.errors import ConfigError
from fervid.model.modelfile import ModelSpec, build_network
from fervid.training.init import freeze_batchnorm, load_init, reestimate_batchnorm
from fervid.training.recipe import load_recipe
from fervid.training.train import CHECKPOINT, TrainOptions, run_training

WEIGHTS = "mobilenet_v2_imagenet_tflite.safetensors"


@pytest.fixture(scope="module")
def init_path(data_root: Path) -> Path:
    path = Path(os.environ.get("FERVID_INIT", data_root.parent / "weights" / WEIGHTS))
    if not path.is_file():
        skip_for_missing_data(
            f"the shared ImageNet weights are not at {path}; "
            "set FERVID_INIT=/path/to/mobilenet_v2_imagenet_tflite.safetensors"
        )
    return path


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _faces(n: int, side: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, side, side, generator=g) - 0.5) / 0.5


def test_batchnorm_reestimation_keeps_the_eval_function(init_path: Path) -> None:
    net = build_network(ModelSpec(input_size=64))
    load_init(net, init_path)
    net.eval()
    x = _faces(16).expand(-1, 3, -1, -1)
    with torch.no_grad():
        before = net(x)
        reestimate_batchnorm(net, [_faces(32, seed=1).expand(-1, 3, -1, -1)])
        after = net(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    bn = net.features[0][1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))  # really changed


def test_gray_replicated_equals_the_summed_stem(init_path: Path) -> None:
    net = build_network(ModelSpec(input_size=64))
    load_init(net, init_path)
    stem = net.features[0][0]
    gray = _faces(4)
    summed = F.conv2d(gray, stem.weight.sum(1, keepdim=True), stride=2, padding=1)
    torch.testing.assert_close(stem(gray.expand(-1, 3, -1, -1)), summed, rtol=1e-4, atol=1e-5)


def test_frozen_batchnorm_stays_in_eval_mode(init_path: Path) -> None:
    net = build_network(ModelSpec(input_size=64))
    load_init(net, init_path)
    net.train()
    freeze_batchnorm(net)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training and not m.weight.requires_grad for m in bns)


def test_init_refuses_pickles_and_foreign_state_dicts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    net = build_network(ModelSpec(input_size=64))
    pth = tmp_path / "w.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(ConfigError, match="never unpickles"):
        load_init(net, pth)
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(ConfigError, match="not a torchvision MobileNetV2"):
        load_init(net, other)


RECIPE = """
name = "init-smoke"
seed = 0
[model]
input_size = 32
mean = [0.50196, 0.50196, 0.50196]
std = [0.50196, 0.50196, 0.50196]
dropout = 0.1
[data]
train = [{ name = "fer2013", path = "fer2013/train" }]
val = [{ name = "fer2013", path = "fer2013/val" }]
[optim]
epochs = 4
batch_size = 32
warmup_epochs = 0.2
samples_per_epoch = 192
ema_decay = 0.9
class_weighting = "sqrt_inverse"
patience = 10
threads = 1
mixup_alpha = 0.2
[init]
head_epochs = 2
head_lr = 3e-3
finetune_lr = 1e-3
unfreeze_blocks = 19
layer_decay = 0.8
batchnorm = "reestimate"
bn_images = 64
[augment]
erase_p = 0.0
"""


class Interrupted(Exception):
    pass


def _opts(tmp: Path, data_root: Path, init: Path, out: Path, resume: bool = False) -> TrainOptions:
    recipe = tmp / "init.toml"
    recipe.write_text(RECIPE)
    return TrainOptions(
        recipe=load_recipe(recipe), data_root=data_root, out_dir=out, init=init,
        limit=140, resume=resume,
    )  # fmt: skip


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_two_phases_learn_and_resume_mid_phase_two_exactly(
    tmp_path: Path, data_root: Path, init_path: Path
) -> None:
    full = tmp_path / "full"
    run_training(_opts(tmp_path, data_root, init_path, full))
    history = json.loads((full / "history.json").read_text())
    assert [h["phase"] for h in history] == ["head", "head", "finetune", "finetune"]
    losses = [h["loss"] for h in history]
    assert np.isfinite(losses).all()
    assert losses[1] < losses[0] and losses[3] < losses[2]  # learns in both phases
    meta = json.loads(_checkpoint_meta(full / CHECKPOINT))
    assert meta["init"]["sha256"] and meta["init"]["batchnorm"] == "reestimate"

    # the same run, killed after epoch 3 (mid phase 2), then resumed
    cut = tmp_path / "cut"

    def stop_after_three(msg: str) -> None:
        if msg.startswith("epoch 3/4"):
            raise Interrupted

    with pytest.raises(Interrupted):
        run_training(_opts(tmp_path, data_root, init_path, cut), progress=stop_after_three)
    messages: list[str] = []
    run_training(_opts(tmp_path, data_root, init_path, cut, resume=True), progress=messages.append)
    assert any("after epoch 3 (finetune phase)" in m for m in messages)
    a, b = _state(full / CHECKPOINT), _state(cut / CHECKPOINT)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


def _checkpoint_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata()["fervid_checkpoint"]
