"""Batch emotion classification of preprocessed face crops.

Set up once (model load, device, threads) in ``__init__``, applied to many batches in
``__call__`` — the shape Ray Data's batch-inference actors use.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from fervid.errors import ConfigError, ModelError
from fervid.model.modelfile import LoadedModel, ModelSpec, load_model
from fervid.model.preprocess import normalize
from fervid.settings import ClassifySettings, Device


def resolve_device(device: Device) -> torch.device:
    """``auto`` picks CUDA when a GPU is visible, else the CPU."""
    if device is Device.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device is Device.CUDA and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu"
        )
    return torch.device(device.value)


class EmotionClassifier:
    """Face crops -> calibrated class probabilities.

    On CUDA: inference mode, fp16 autocast and channels-last. On the CPU: fp32 with
    ``cpu_threads`` intra-op threads (the other cores decode and detect).
    """

    def __init__(
        self,
        *,
        settings: ClassifySettings,
        cpu_threads: int | None = None,
        model: LoadedModel | None = None,
    ) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        if self.device.type == "cpu" and cpu_threads:
            torch.set_num_threads(cpu_threads)
        self.model = model or load_model(settings.model_path, device=self.device)
        self.model.network.to(self.device)
        if self.device.type == "cuda":
            self.model.network.to(memory_format=torch.channels_last)

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.spec.class_names

    @property
    def sha256(self) -> str:
        return self.model.sha256

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (n, S, S) or (n, S, S, 3) from :func:`fervid.extract.crop.crop_faces` ->
        float32 probabilities (n, C), temperature-scaled, rows summing to 1."""
        s = self.spec.input_size
        if len(crops) and crops.shape[1:3] != (s, s):
            raise ModelError(f"crops are {crops.shape[1:3]} but the model expects {s}x{s}")
        out = np.zeros((len(crops), self.spec.num_classes), np.float32)
        bs = self.settings.batch_size
        for b0 in range(0, len(crops), bs):
            out[b0 : b0 + bs] = self._batch(crops[b0 : b0 + bs])
        return out

    @torch.inference_mode()
    def _batch(self, crops: np.ndarray) -> np.ndarray:
        x = normalize(torch.from_numpy(np.ascontiguousarray(crops)), self.spec)
        cuda = self.device.type == "cuda"
        if cuda:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        amp = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
        try:
            with amp:
                logits = self.model.network(x)
        except torch.OutOfMemoryError:
            raise ModelError(
                f"the GPU ran out of memory at --batch-size {self.settings.batch_size}; lower --batch-size"
            ) from None
        probs = torch.softmax(logits.float() / self.spec.temperature, dim=1)
        return probs.cpu().numpy()
