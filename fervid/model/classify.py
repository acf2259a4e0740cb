"""Batch emotion classification of preprocessed face crops.

Set up once (model load, device, threads) in ``__init__``, applied to many batches in
``__call__`` — the shape Ray Data's batch-inference actors use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

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


@torch.inference_mode()
def predict_logits(
    network: torch.nn.Module,
    images: np.ndarray,
    spec: ModelSpec,
    *,
    batch_size: int,
    device: torch.device | None = None,
    tta_flip: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The one inference function: uint8 model-size faces (N, S, S) or (N, S, S, 3) ->
    raw logits float32 (V, N, C), V = 2 with ``tta_flip`` (index 1: mirrored faces);
    ``tta_flip=None`` follows the model's own ``spec.tta_flip``.

    The pipeline's classifier, ``fervid evaluate`` and training's validation all call
    this, so the model card's numbers describe what ``fervid process`` computes.
    On CUDA: fp16 autocast and channels-last; on the CPU: fp32.
    """
    device = device or next(network.parameters()).device
    s = spec.input_size
    if len(images) and images.shape[1:3] != (s, s):
        raise ModelError(f"crops are {images.shape[1:3]} but the model expects {s}x{s}")
    network.eval()
    cuda = device.type == "cuda"
    if tta_flip is None:
        tta_flip = spec.tta_flip
    views = 2 if tta_flip else 1
    out = np.zeros((views, len(images), spec.num_classes), np.float32)
    for b0 in range(0, len(images), batch_size):
        x = normalize(torch.from_numpy(np.ascontiguousarray(images[b0 : b0 + batch_size])), spec)
        # channels-last on the CPU too: 1.7x the faces/s of NCHW for MobileNetV2 at 96 px
        x = x.to(device, non_blocking=cuda).contiguous(memory_format=torch.channels_last)
        amp = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
        try:
            with amp:
                out[0, b0 : b0 + len(x)] = network(x).float().cpu().numpy()
                if tta_flip:
                    flipped = network(torch.flip(x, dims=[3]))
                    out[1, b0 : b0 + len(x)] = flipped.float().cpu().numpy()
        except torch.OutOfMemoryError:
            raise ModelError(
                f"the GPU ran out of memory at batch size {batch_size}; lower --batch-size"
            ) from None
        if progress is not None:
            progress(min(b0 + batch_size, len(images)), len(images))
    return out


def for_inference(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` for inference: BatchNorm folded into the convolutions
    (torch.fx) and channels-last weights. On the 2-core CPU at 96 px, 1.7x (channels-last)
    times 1.3x (folding) the faces/s of the plain network; outputs agree to ~1e-5
    (``tests/test_classify.py``). The copy is for inference only: its state dict has no
    BatchNorm entries, so model files are always saved from the original."""
    from torch.fx.experimental.optimization import fuse

    net = fuse(network.eval())  # a deep copy; the original keeps its BatchNorm layers
    return net.to(memory_format=torch.channels_last)


def calibrated_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Mean over views of softmax(logits / T): (V, N, C) -> float64 (N, C)."""
    z = torch.from_numpy(logits).double() / temperature
    return torch.softmax(z, dim=-1).mean(0).numpy()


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
        self.network = for_inference(self.model.network.to(self.device))

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
        logits = predict_logits(
            self.network, crops, self.spec,
            batch_size=self.settings.batch_size, device=self.device,
        )  # fmt: skip
        return calibrated_probs(logits, self.spec.temperature).astype(np.float32)
