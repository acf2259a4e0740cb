"""What a model reads under webcam-like corruptions, and on subtle (low-agreement) faces.

``robust accuracy``: a validation split re-scored with every image corrupted by one of the
training-time video corruptions (:mod:`fervid.training.augment`) at probability 1, with
its training strength range and a fixed seed, so two models see the same corrupted pixels.

``weak majority``: FER+ faces whose winning emotion got at most ``max_votes`` of the 10
crowd votes. A face that 4 of 10 raters call sad is a subtle sad face: the low-intensity
expressions clinicians care about most.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fervid.training import augment as aug
from fervid.training.augment import AugmentSettings
from fervid.training.data import FerPlusMode, parse_ferplus_votes, votes_to_target

Corruption = Callable[[torch.Tensor, AugmentSettings, torch.Generator], torch.Tensor]

#: name -> corruption at probability 1, with the strength range the settings give.
CORRUPTIONS: dict[str, Corruption] = {
    "pose (perspective)": lambda x, s, g: aug.perspective(x, s.perspective, 1.0, g),
    "defocus blur": lambda x, s, g: aug.gaussian_blur(x, s.blur_sigma, 1.0, g),
    "motion blur": lambda x, s, g: aug.motion_blur(x, s.motion_len, 1.0, g),
    "low light + noise": lambda x, s, g: aug.low_light(x, s.gamma, s.low_gain, s.noise_std, 1.0, g),
    "small face (down-up)": lambda x, s, g: aug.down_up(x, s.downscale_min, 1.0, g),
    "JPEG": lambda x, s, g: aug.jpeg(x, s.jpeg_quality_min, s.jpeg_quality_max, 1.0, g),
}

#: The strengths robust accuracy is measured at (the v3 recipe's training ranges), fixed
#: here so that a later recipe change does not move the yardstick.
YARDSTICK = AugmentSettings(
    perspective=0.12, blur_sigma=1.5, motion_len=7, gamma=1.8, low_gain=0.45,
    noise_std=0.03, downscale_min=0.4, jpeg_quality_min=20, jpeg_quality_max=70,
)  # fmt: skip


def corrupt(
    images: np.ndarray, name: str, *, seed: int = 0, settings: AugmentSettings = YARDSTICK
) -> np.ndarray:
    """uint8 (N, S, S) faces -> the same faces under corruption ``name``, uint8 (N, S, S)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {sorted(CORRUPTIONS)}")
    g = torch.Generator().manual_seed(seed)
    out = np.empty_like(images)
    for b0 in range(0, len(images), 512):  # bounded memory for the grouped convolutions
        x = torch.from_numpy(images[b0 : b0 + 512]).float().div_(255.0).unsqueeze(1)
        y = CORRUPTIONS[name](x, settings, g)
        out[b0 : b0 + 512] = (y[:, 0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return out


def weak_majority(split_dir: Path, names: tuple[str, ...], max_votes: int = 6) -> np.ndarray:
    """bool (N,): which of ``names`` (a FER+ split loaded in majority mode) won with at most
    ``max_votes`` votes."""
    top: dict[str, int] = {}
    with open(Path(split_dir) / "label.csv", newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            name, votes = parse_ferplus_votes(row)
            if votes_to_target(votes, FerPlusMode.MAJORITY) is not None:
                top[name] = int(votes.max())
    return np.array([top.get(n, 10) <= max_votes for n in names], dtype=bool)
