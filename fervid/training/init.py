"""Starting a recipe from ImageNet weights (``fervid train --init``).

The shared ImageNet MobileNetV2 (``../shared/weights``) was converted from a TFLite
model whose BatchNorm had been folded into the convolutions: every ``BatchNorm2d``
holds ``weight=1, running_mean=0, running_var=1-eps`` and the folded bias. Exact in eval
mode; in train mode BN would normalise by batch statistics that the network never saw
and scramble it. Two remedies, both offered (``[init] batchnorm``):

- ``frozen``: BN layers stay in eval mode with fixed affine parameters (Keras' habit).
- ``reestimate``: record each BN's input statistics on training images, then set
  ``running_mean=mu, running_var=var, weight=sqrt(var+eps), bias=mu+b``. The layer still
  computes ``x + b`` in eval mode, and in train mode too when a batch looks like the
  data, so fine-tuning starts from the pretrained function.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import torch
from torch import nn

from fervid.errors import ConfigError
from fervid.model.spec import file_sha256


class BatchNormMode(StrEnum):
    FROZEN = "frozen"
    REESTIMATE = "reestimate"
    #: ordinary BN training: for an init whose BN was trained, e.g. a fervid model file
    TRAIN = "train"


def load_init(model: nn.Module, path: Path) -> str:
    """Load a torchvision MobileNetV2 ``state_dict`` (safetensors only) into ``model``'s
    feature extractor; the classifier head stays freshly initialised. Returns the sha256.

    A fervid model file is loaded whole, head included (its spec must match the recipe's
    architecture and classes). The network always takes 3 channels: gray faces are replicated to RGB, which gives
    exactly the first-layer output of the README's channel-summed gray stem.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(
            f"--init {path}: only .safetensors state dicts are read (fervid never unpickles "
            "a file); convert a torchvision .pth once with safetensors.torch.save_file"
        )
    if not path.is_file():
        raise ConfigError(f"--init {path} does not exist")
    tensors = load_file(str(path))
    if _is_fervid_model(path):
        # a fervid model (e.g. to continue at another input size): head included
        try:
            model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
        except RuntimeError as e:
            raise ConfigError(
                f"--init {path}: a fervid model of another architecture ({e})"
            ) from None
        return file_sha256(path)
    sd = {k: v for k, v in tensors.items() if not k.startswith("classifier.")}
    own = model.state_dict()
    bad = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ConfigError(f"--init {path}: shapes differ from MobileNetV2 at {bad[:3]}")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any(not m.startswith("classifier.") for m in missing):
        raise ConfigError(f"--init {path} is not a torchvision MobileNetV2 state dict")
    return file_sha256(path)


def _is_fervid_model(path: Path) -> bool:
    from fervid.errors import ModelError
    from fervid.model.header import read_header

    try:
        read_header(path)
    except ModelError:
        return False
    return True


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BN in eval mode with fixed affine parameters (call after ``model.train()``)."""
    for bn in batchnorms(model):
        bn.eval()
        for p in bn.parameters():
            p.requires_grad_(False)


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-express every folded BN with statistics of its own inputs on ``batches``.

    The eval-mode function is unchanged (``weight / sqrt(var+eps) = 1`` and
    ``bias - mean = b``); only what train mode will see changes.
    """
    bns = batchnorms(model)
    sums: dict[int, torch.Tensor] = {}
    sq: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}

    def hook(i: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            x = inp[0].detach().double()
            sums[i] = sums.get(i, 0) + x.sum(dim=(0, 2, 3))
            sq[i] = sq.get(i, 0) + (x * x).sum(dim=(0, 2, 3))
            counts[i] = counts.get(i, 0) + x.numel() // x.shape[1]

        return record

    was_training = model.training
    model.eval()
    handles = [bn.register_forward_pre_hook(hook(i)) for i, bn in enumerate(bns)]
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
    for i, bn in enumerate(bns):
        assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats
        mu = sums[i] / counts[i]
        var = (sq[i] / counts[i] - mu * mu).clamp_min(0.0)
        # the function y = (x - rm) / sqrt(rv + eps) * w + b, written for the new rm/rv
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        new_w = scale * torch.sqrt(var + bn.eps)
        bn.running_mean.copy_(mu.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_(new_w.float())
        bn.bias.copy_((shift + mu * scale).float())
    model.train(was_training)


def param_groups_layer_decay(
    model: nn.Module, base_lr: float, decay: float, weight_decay: float
) -> list[dict[str, object]]:
    """AdamW groups with layer-wise LR decay: the head at ``base_lr``, feature block ``i``
    of ``n`` at ``base_lr * decay ** (n - i)``; no weight decay on biases and BN."""
    feats = list(model.features.children())  # type: ignore[union-attr]
    n = len(feats)
    groups: list[dict[str, object]] = []

    def add(params: list[nn.Parameter], lr: float) -> None:
        dec = [p for p in params if p.requires_grad and p.ndim > 1]
        nodec = [p for p in params if p.requires_grad and p.ndim <= 1]
        if dec:
            groups.append({"params": dec, "weight_decay": weight_decay, "lr_scale": lr / base_lr})
        if nodec:
            groups.append({"params": nodec, "weight_decay": 0.0, "lr_scale": lr / base_lr})

    for i, block in enumerate(feats):
        add(list(block.parameters()), base_lr * decay ** (n - i))
    add(list(model.classifier.parameters()), base_lr)  # type: ignore[union-attr]
    return groups
