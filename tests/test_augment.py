"""Training augmentations: shapes, determinism, and that each corruption does what it says,
on a real photo (the sample still, gray, at the v3 model's 96 px input)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fervid.errors import ConfigError
from fervid.training import augment as aug
from fervid.training.augment import AugmentSettings
from fervid.training.robustness import CORRUPTIONS, corrupt

SIDE = 96


@pytest.fixture(scope="module")
def faces(sample_dir) -> torch.Tensor:
    """(8, 1, 96, 96) float in [0, 1]: the sample still and 7 crops of it."""
    img = cv2.imread(str(sample_dir / "stills" / "single_face.jpg"), cv2.IMREAD_GRAYSCALE)
    assert img is not None
    h, w = img.shape
    crops = [img] + [
        img[i * h // 16 : h - i * h // 16, i * w // 16 : w - i * w // 16] for i in range(1, 8)
    ]
    arr = np.stack([cv2.resize(c, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for c in crops])
    return torch.from_numpy(arr).float().div(255).unsqueeze(1)


def laplacian_var(x: torch.Tensor) -> float:
    """Mean over images of the variance of the Laplacian: a standard sharpness measure."""
    imgs = (x[:, 0].clamp(0, 1) * 255).to(torch.uint8).numpy()
    return float(np.mean([cv2.Laplacian(i, cv2.CV_64F).var() for i in imgs]))


def blockiness(x: torch.Tensor) -> float:
    """Mean jump across 8-px block boundaries over the mean jump inside blocks."""
    d = (x[..., 1:] - x[..., :-1]).abs()  # horizontal differences, column j -> j+1
    at_edge = d[..., 7::8].mean()
    inside = torch.cat([d[..., k::8] for k in range(7)], dim=-1).mean()
    return float(at_edge / inside)


CALLS = {
    "perspective": lambda x, g: aug.perspective(x, 0.15, 1.0, g),
    "gaussian_blur": lambda x, g: aug.gaussian_blur(x, 2.0, 1.0, g),
    "motion_blur": lambda x, g: aug.motion_blur(x, 9, 1.0, g),
    "low_light": lambda x, g: aug.low_light(x, 1.8, 0.45, 0.03, 1.0, g),
    "down_up": lambda x, g: aug.down_up(x, 0.3, 1.0, g),
    "jpeg": lambda x, g: aug.jpeg(x, 10, 20, 1.0, g),
    "augment": lambda x, g: aug.augment(
        x,
        AugmentSettings(
            perspective_p=0.5, downscale_p=0.5, blur_p=0.5, motion_p=0.5, light_p=0.5, jpeg_p=0.5
        ),
        g,
    ),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_shape_dtype_and_seeded(faces: torch.Tensor, name: str) -> None:
    x = faces.clone()
    a = CALLS[name](x, torch.Generator().manual_seed(3))
    b = CALLS[name](x, torch.Generator().manual_seed(3))
    c = CALLS[name](x, torch.Generator().manual_seed(4))
    assert a.shape == faces.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b), "the same seed must give the same output"
    assert not torch.equal(a, c), "another seed must give another output"
    assert torch.equal(x, faces), "the input must not be modified in place"
    assert not torch.equal(a, faces)


@pytest.mark.parametrize("name", ["gaussian_blur", "motion_blur", "down_up"])
def test_blur_and_resampling_lower_sharpness(faces: torch.Tensor, name: str) -> None:
    out = CALLS[name](faces, torch.Generator().manual_seed(0))
    assert laplacian_var(out) < 0.6 * laplacian_var(faces)


def test_jpeg_adds_block_edges(faces: torch.Tensor) -> None:
    out = CALLS["jpeg"](faces, torch.Generator().manual_seed(0))
    assert blockiness(faces) < 1.15  # a photo has no 8-px grid
    assert blockiness(out) > blockiness(faces) + 0.15


def test_low_light_darkens_and_adds_noise(faces: torch.Tensor) -> None:
    out = aug.low_light(faces, 1.0, 0.5, 0.05, 1.0, torch.Generator().manual_seed(0))
    ratio = out.mean(dim=(1, 2, 3)) / faces.mean(dim=(1, 2, 3))
    assert bool((ratio < 1.0).all()) and float(ratio.mean()) < 0.85
    # noise: the residual after removing the gain is not flat
    gain = ratio.view(-1, 1, 1, 1)
    assert float((out - faces * gain).std()) > 0.03


def test_perspective_narrows_one_side(faces: torch.Tensor) -> None:
    """A bright vertical bar right of centre moves and widens under a > 0 (the right half
    is sampled nearer the centre), and the warp keeps the centre column in place."""
    x = torch.zeros(1, 1, SIDE, SIDE)
    x[..., 60:64] = 1.0
    g = torch.Generator().manual_seed(0)
    a, b = 0.15, 0.0
    lin = (torch.arange(SIDE, dtype=x.dtype) + 0.5) / SIDE * 2 - 1
    v, u = torch.meshgrid(lin, lin, indexing="ij")
    w = 1 + a * u + b * v
    grid = torch.stack([u / w, v / w], dim=-1)[None]
    ref = torch.nn.functional.grid_sample(x, grid, align_corners=False, padding_mode="border")
    assert float((ref[0, 0, SIDE // 2] > 0.5).sum()) > 4  # wider than the 4-px bar
    # the function draws its own (a, b): over a batch of copies the bar moves both ways
    out = aug.perspective(x.repeat(16, 1, 1, 1), 0.15, 1.0, g)
    centres = [float(torch.nonzero(o[0, SIDE // 2] > 0.5).float().mean()) for o in out]
    assert min(centres) < 61.5 < max(centres)


def test_probability_zero_draws_nothing(faces: torch.Tensor) -> None:
    """Old recipes (corruptions off) get exactly the v2 augmentation stream."""
    s = AugmentSettings()
    got = aug.augment(faces.clone(), s, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    want = aug.erase(aug.photometric(aug.geometric(faces.clone(), s, g), s, g), s.erase_p,
                     s.erase_max_area, g)  # fmt: skip
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    "kw",
    [{"jpeg_p": 1.5}, {"blur_sigma": -1.0}, {"downscale_min": 0.0}, {"gamma": 0.5},
     {"jpeg_quality_min": 80, "jpeg_quality_max": 20}, {"perspective": float("nan")},
     {"motion_len": 1}],
)  # fmt: skip
def test_settings_refuse_bad_values(kw: dict) -> None:
    with pytest.raises(ConfigError, match=r"\[augment\]"):
        AugmentSettings(**kw)


def test_corrupt_is_deterministic_uint8(faces: torch.Tensor) -> None:
    imgs = (faces[:, 0] * 255).to(torch.uint8).numpy()
    for name in CORRUPTIONS:
        a, b = corrupt(imgs, name, seed=1), corrupt(imgs, name, seed=1)
        assert a.dtype == np.uint8 and a.shape == imgs.shape
        assert np.array_equal(a, b) and not np.array_equal(a, imgs), name
