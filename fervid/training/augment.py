"""Batched train-time augmentation on float tensors (N, 1, S, S) in [0, 1].

Done per batch rather than per image so a 2-core CPU spends its time in the network,
not in Python loops over 48x48 images.

Two families:

- geometric and photometric jitter (flip, rotation/shift/zoom, brightness/contrast,
  erasing), as in v1/v2;
- *video-like corruptions* (v3): what a telemedicine webcam does to a face that FER-2013's
  studio-ish crops never show: small out-of-plane pose (a perspective warp), a small face
  upscaled (down-then-up resampling), defocus and motion blur, low light and gamma with
  sensor noise, and JPEG / H.264-like blockiness at low quality. Each has a probability
  and a strength; all default to off, so old recipes train exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fervid.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class AugmentSettings:
    """Strengths of each augmentation; 0 disables one. Angles in degrees, shifts in fractions.

    ``*_p`` fields are per-image probabilities in [0, 1].
    """

    flip: float = 0.5
    rotate_deg: float = 10.0
    shift: float = 0.08
    zoom: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    erase_p: float = 0.25
    erase_max_area: float = 0.15
    # --- video-like corruptions (all off by default)
    #: perspective warp: the far side shrinks by up to this fraction (yaw/pitch of ~15-20 deg)
    perspective_p: float = 0.0
    perspective: float = 0.12
    #: down-then-up resampling: the face is shrunk to a factor in [downscale_min, 1] and back
    downscale_p: float = 0.0
    downscale_min: float = 0.35
    #: Gaussian defocus blur, sigma in px at the model input (uniform in (0, blur_sigma])
    blur_p: float = 0.0
    blur_sigma: float = 1.5
    #: linear motion blur, length in px at the model input (uniform in [2, motion_len])
    motion_p: float = 0.0
    motion_len: int = 7
    #: low light: gamma log-uniform in [1/gamma, gamma], gain in [low_gain, 1], then noise
    light_p: float = 0.0
    gamma: float = 1.8
    low_gain: float = 0.45
    noise_std: float = 0.03
    #: JPEG at a quality uniform in [jpeg_quality_min, jpeg_quality_max] (8x8 blockiness)
    jpeg_p: float = 0.0
    jpeg_quality_min: int = 15
    jpeg_quality_max: int = 60

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"[augment] {f.name}={v!r}; expected a finite number >= 0")
            if (f.name.endswith("_p") or f.name == "flip") and v > 1:
                raise ConfigError(f"[augment] {f.name}={v}; a probability must be in [0, 1]")
        if not 0 < self.downscale_min <= 1 or not 0 < self.low_gain <= 1:
            raise ConfigError("[augment] downscale_min and low_gain must be in (0, 1]")
        if self.perspective >= 0.5 or self.gamma < 1 or self.motion_len < 2:
            raise ConfigError(
                "[augment] perspective < 0.5, gamma >= 1 and motion_len >= 2 expected"
            )
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            raise ConfigError("[augment] 1 <= jpeg_quality_min <= jpeg_quality_max <= 100 expected")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def augment(x: torch.Tensor, s: AugmentSettings, g: torch.Generator) -> torch.Tensor:
    """All enabled augmentations, in the order a camera would apply them; returns a new tensor.

    Pose and framing first (the scene), then optics (blur), exposure (light), resolution
    (the face is small), compression last (the codec), then the usual photometric jitter.
    """
    x = geometric(x, s, g)
    if s.perspective_p > 0:
        x = perspective(x, s.perspective, s.perspective_p, g)
    if s.blur_p > 0:
        x = gaussian_blur(x, s.blur_sigma, s.blur_p, g)
    if s.motion_p > 0:
        x = motion_blur(x, s.motion_len, s.motion_p, g)
    if s.light_p > 0:
        x = low_light(x, s.gamma, s.low_gain, s.noise_std, s.light_p, g)
    if s.downscale_p > 0:
        x = down_up(x, s.downscale_min, s.downscale_p, g)
    if s.jpeg_p > 0:
        x = jpeg(x, s.jpeg_quality_min, s.jpeg_quality_max, s.jpeg_p, g)
    x = photometric(x, s, g)
    if s.erase_p > 0:
        x = erase(x, s.erase_p, s.erase_max_area, g)
    return x


def geometric(x: torch.Tensor, s: AugmentSettings, g: torch.Generator) -> torch.Tensor:
    """Random flip, rotation, shift and zoom in one resampling."""
    n = x.shape[0]
    flip = torch.where(torch.rand(n, generator=g) < s.flip, -1.0, 1.0)
    ang = _uniform(n, -s.rotate_deg, s.rotate_deg, g) * math.pi / 180
    scale = 1.0 / _uniform(n, 1 - s.zoom, 1 + s.zoom, g)
    tx, ty = _uniform(n, -s.shift, s.shift, g) * 2, _uniform(n, -s.shift, s.shift, g) * 2
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def photometric(x: torch.Tensor, s: AugmentSettings, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    b = _uniform(n, -s.brightness, s.brightness, g).view(n, 1, 1, 1)
    c = _uniform(n, 1 - s.contrast, 1 + s.contrast, g).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean + b).clamp_(0, 1)


def erase(x: torch.Tensor, p: float, max_area: float, g: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al., 2020) of one rectangle per chosen image, with noise."""
    side = x.shape[-1]
    chosen = torch.rand(x.shape[0], generator=g) < p
    for i in torch.nonzero(chosen).flatten().tolist():
        area = float(_uniform(1, 0.02, max_area, g)[0]) * side * side
        aspect = math.exp(float(_uniform(1, math.log(0.3), math.log(3.3), g)[0]))
        h = min(side, max(1, round(math.sqrt(area * aspect))))
        w = min(side, max(1, round(math.sqrt(area / aspect))))
        top = int(torch.randint(0, side - h + 1, (1,), generator=g))
        left = int(torch.randint(0, side - w + 1, (1,), generator=g))
        x[i, :, top : top + h, left : left + w] = torch.rand((1, h, w), generator=g)
    return x


def _chosen(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.nonzero(torch.rand(x.shape[0], generator=g) < p).flatten()


def perspective(x: torch.Tensor, strength: float, p: float, g: torch.Generator) -> torch.Tensor:
    """A head turned a little (yaw/pitch): a homography that shrinks one side of the face.

    Sampling grid ``(u, v) -> (u, v) / (1 + a u + b v)``: with ``a > 0`` the left half is
    sampled further out, so it appears narrower, as a face turned away on that side does,
    and the right half nearer (wider).
    """
    idx = _chosen(x, p, g)
    if len(idx) == 0:
        return x
    k, side = len(idx), x.shape[-1]
    a = _uniform(k, -strength, strength, g).view(k, 1, 1)
    b = _uniform(k, -strength, strength, g).view(k, 1, 1)
    lin = (torch.arange(side, dtype=x.dtype) + 0.5) / side * 2 - 1
    v, u = torch.meshgrid(lin, lin, indexing="ij")
    w = 1 + a * u + b * v
    grid = torch.stack([u / w, v / w], dim=-1)
    out = x.clone()
    out[idx] = F.grid_sample(
        x[idx], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out


def gaussian_blur(x: torch.Tensor, max_sigma: float, p: float, g: torch.Generator) -> torch.Tensor:
    """Defocus: a separable Gaussian with a per-image sigma in [0.3, max_sigma]."""
    idx = _chosen(x, p, g)
    if len(idx) == 0 or max_sigma <= 0:
        return x
    k = len(idx)
    sigma = _uniform(k, min(0.3, max_sigma), max_sigma, g).view(k, 1)
    r = max(1, math.ceil(3 * max_sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype).view(1, -1)
    kern = torch.exp(-(t**2) / (2 * sigma**2))
    kern = kern / kern.sum(1, keepdim=True)
    sub = x[idx].transpose(0, 1)  # (1, k, S, S): one group per image
    sub = F.conv2d(F.pad(sub, (r, r, 0, 0), mode="replicate"), kern.view(k, 1, 1, -1), groups=k)
    sub = F.conv2d(F.pad(sub, (0, 0, r, r), mode="replicate"), kern.view(k, 1, -1, 1), groups=k)
    out = x.clone()
    out[idx] = sub.transpose(0, 1)
    return out


def motion_blur(x: torch.Tensor, max_len: int, p: float, g: torch.Generator) -> torch.Tensor:
    """Camera or head motion: a line kernel of random length and angle per image."""
    idx = _chosen(x, p, g)
    if len(idx) == 0:
        return x
    k = len(idx)
    size = max_len if max_len % 2 == 1 else max_len + 1
    r = size // 2
    length = _uniform(k, 2.0, float(max_len), g)
    ang = _uniform(k, 0.0, math.pi, g)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    # distance of each tap from the line through the centre, and along it
    cos, sin = torch.cos(ang).view(k, 1, 1), torch.sin(ang).view(k, 1, 1)
    across = (xx * sin - yy * cos).abs()
    along = (xx * cos + yy * sin).abs()
    kern = (1 - across).clamp(min=0) * (along <= length.view(k, 1, 1) / 2).to(x.dtype)
    kern = kern / kern.sum(dim=(1, 2), keepdim=True)
    sub = F.pad(x[idx].transpose(0, 1), (r, r, r, r), mode="replicate")
    out = x.clone()
    out[idx] = F.conv2d(sub, kern.unsqueeze(1), groups=k).transpose(0, 1)
    return out


def low_light(
    x: torch.Tensor, gamma: float, low_gain: float, noise_std: float, p: float, g: torch.Generator
) -> torch.Tensor:
    """Under-exposure: gamma, a gain below 1, then sensor noise (stronger when darker)."""
    idx = _chosen(x, p, g)
    if len(idx) == 0:
        return x
    k = len(idx)
    gam = torch.exp(_uniform(k, -math.log(gamma), math.log(gamma), g)).view(k, 1, 1, 1)
    gain = _uniform(k, low_gain, 1.0, g).view(k, 1, 1, 1)
    sub = x[idx].clamp(0, 1) ** gam * gain
    noise = torch.randn(sub.shape, generator=g, dtype=x.dtype) * noise_std / gain.sqrt()
    out = x.clone()
    out[idx] = (sub + noise).clamp(0, 1)
    return out


def down_up(x: torch.Tensor, min_factor: float, p: float, g: torch.Generator) -> torch.Tensor:
    """A small face upsampled: area-shrink to ``factor * S`` px, bilinear back to S."""
    idx = _chosen(x, p, g)
    if len(idx) == 0:
        return x
    side = x.shape[-1]
    factors = _uniform(len(idx), min_factor, 1.0, g)
    out = x.clone()
    for i, f in zip(idx.tolist(), factors.tolist(), strict=True):
        small = max(4, round(side * f))
        if small >= side:
            continue
        s = F.interpolate(x[i : i + 1], size=(small, small), mode="area")
        out[i : i + 1] = F.interpolate(s, size=(side, side), mode="bilinear", align_corners=False)
    return out


def jpeg(x: torch.Tensor, q_min: int, q_max: int, p: float, g: torch.Generator) -> torch.Tensor:
    """JPEG round trip at low quality: the 8x8 block artefacts of webcam and H.264 streams."""
    idx = _chosen(x, p, g)
    if len(idx) == 0:
        return x
    qs = torch.randint(q_min, q_max + 1, (len(idx),), generator=g).tolist()
    out = x.clone()
    for i, q in zip(idx.tolist(), qs, strict=True):
        img = (x[i, 0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if not ok:
            continue
        dec = cv2.imdecode(np.asarray(buf), cv2.IMREAD_GRAYSCALE)
        out[i, 0] = torch.from_numpy(dec).to(x.dtype) / 255.0
    return out
