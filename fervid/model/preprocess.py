"""Face-crop preprocessing shared by training and inference.

Both paths call :func:`to_model_input`, so the model sees the same pixels in
production that it saw in training (grayscale conversion, INTER_AREA resize, scaling).
"""

from __future__ import annotations

import numpy as np
import torch

# resize_faces is torch-free (CPU workers call it through fervid.extract.crop); it lives
# in fervid.model.spec and is re-exported here beside the torch half of preprocessing.
from fervid.model.spec import ModelSpec, resize_faces

__all__ = ["normalize", "resize_faces", "standardize", "to_model_input"]


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
