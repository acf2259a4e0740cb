"""Batched train-time augmentation on float tensors (N, 1, S, S) in [0, 1].

Done per batch rather than per image so a 2-core CPU spends its time in the network,
not in Python loops over 48x48 images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, kw_only=True)
class AugmentSettings:
    """Strengths of each augmentation; 0 disables one. Angles in degrees, shifts in fractions."""

    flip: float = 0.5
    rotate_deg: float = 10.0
    shift: float = 0.08
    zoom: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    erase_p: float = 0.25
    erase_max_area: float = 0.15


def augment(x: torch.Tensor, s: AugmentSettings, g: torch.Generator) -> torch.Tensor:
    """Random flip, rotation/shift/zoom, brightness/contrast and erasing; returns a new tensor."""
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=g) * (hi - lo) + lo

    flip = torch.where(torch.rand(n, generator=g) < s.flip, -1.0, 1.0)
    ang = u(-s.rotate_deg, s.rotate_deg) * math.pi / 180
    scale = 1.0 / u(1 - s.zoom, 1 + s.zoom)
    tx, ty = u(-s.shift, s.shift) * 2, u(-s.shift, s.shift) * 2
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    b = u(-s.brightness, s.brightness).view(n, 1, 1, 1)
    c = u(1 - s.contrast, 1 + s.contrast).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c + mean + b).clamp_(0, 1)
    if s.erase_p > 0:
        side = x.shape[-1]
        erase = torch.rand(n, generator=g) < s.erase_p
        for i in torch.nonzero(erase).flatten().tolist():
            area = float(u(0.02, s.erase_max_area)[0]) * side * side
            aspect = math.exp(float(u(math.log(0.3), math.log(3.3))[0]))
            h = min(side, max(1, round(math.sqrt(area * aspect))))
            w = min(side, max(1, round(math.sqrt(area / aspect))))
            top = int(torch.randint(0, side - h + 1, (1,), generator=g))
            left = int(torch.randint(0, side - w + 1, (1,), generator=g))
            x[i, :, top : top + h, left : left + w] = torch.rand((1, h, w), generator=g)
    return x
