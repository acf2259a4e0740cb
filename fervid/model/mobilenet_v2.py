"""MobileNetV2 as plain ``torch.nn`` modules, with torchvision's exact parameter names.

The same network as ``torchvision.models.mobilenet_v2`` (torchvision 0.29), built
without importing torchvision: its package import pulls in ``torchvision.ops``, whose
``roi_align`` imports ``torch._dynamo`` (3.5 CPU s on the development machine, in every
process that classifies). Same modules in the same order, so the ``state_dict`` keys
(``features.0.0.weight``, ``features.1.conv.0.0.weight``, ..., ``classifier.1.bias``),
the random initialisation under a given seed, and the output on the same weights are
torchvision's (``tests/test_mobilenet_v2.py`` compares them bit for bit).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fervid.model.shapes import INVERTED_RESIDUAL_SETTING, make_divisible


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> ReLU6: torchvision's
    ``Conv2dNormActivation`` as MobileNetV2 uses it (children ``0``, ``1``, ``2``)."""

    def __init__(
        self, inp: int, oup: int, *, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(oup),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = oup


class InvertedResidual(nn.Module):
    """1x1 expansion (when ``expand_ratio`` > 1) -> 3x3 depthwise -> 1x1 linear
    projection, with a residual connection when shape is kept."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden_dim, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (``features``, global average pool, ``classifier``): float32
    ``(N, 3, H, W)`` -> logits ``(N, num_classes)``. ``width_mult`` scales every layer's
    channels (rounded to multiples of 8); ``last_channel`` is the pooled feature size."""

    def __init__(
        self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        input_channel = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(3, input_channel, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            output_channel = make_divisible(c * width_mult)
            for i in range(n):
                features.append(
                    InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t)
                )
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        # torchvision's initialisation, in the same module order (training is seeded)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)
