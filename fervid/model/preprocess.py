"""Face-crop preprocessing shared by training and inference.

Both paths call :func:`to_model_input`, so the model sees the same pixels in
production that it saw in training (grayscale conversion, INTER_AREA resize, scaling).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from fervid.model.modelfile import ModelSpec


def resize_faces(faces: list[np.ndarray] | np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resize face crops to the model's square input.

    ``faces``: sequence of uint8 images, each (H, W) grayscale or (H, W, 3) BGR.
    Returns uint8 (N, S, S) for ``channels="gray"`` or (N, S, S, 3) RGB for ``"rgb"``.
    """
    s = spec.input_size
    out = []
    for img in faces:
        if spec.channels == "gray":
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        interp = cv2.INTER_AREA if min(img.shape[:2]) > s else cv2.INTER_LINEAR
        out.append(cv2.resize(img, (s, s), interpolation=interp))
    shape = (0, s, s) if spec.channels == "gray" else (0, s, s, 3)
    return np.stack(out) if out else np.zeros(shape, np.uint8)


def normalize(batch: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """uint8 (N, S, S) or (N, S, S, 3) -> float (N, 3, S, S), scaled and standardised."""
    x = batch.float().div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return standardize(x, spec)


def standardize(x: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """float (N, 1|3, S, S) in [0, 1] -> (N, 3, S, S) minus mean, over std."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def to_model_input(faces: list[np.ndarray] | np.ndarray, spec: ModelSpec) -> torch.Tensor:
    """Face crops (uint8, gray or BGR) -> normalised float tensor (N, 3, S, S)."""
    return normalize(torch.from_numpy(resize_faces(faces, spec)), spec)
