"""Post-hoc logit adjustment: per-class offsets that trade a little accuracy for balance.

A network trained on FER-2013's and FER+'s class frequencies leans towards the frequent
classes (happy, neutral) on ambiguous faces, which is where subtle sad, angry and fear
faces live. Adding a per-class offset ``b`` to the logits (Menon et al., 2021, "Long-tail
learning via logit adjustment") moves those decisions without retraining. The offset is
folded into the classifier's last bias, so the model file format and inference path are
unchanged and flip TTA sees it on both views.

The offsets are fitted on the validation splits (the only labelled data that is not
trained on); :func:`cross_fitted` estimates what they do on unseen faces by fitting on
one half of each split and scoring the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Split:
    """One validation split: logits (V, N, C) from :func:`fervid.model.classify.predict_logits`
    and hard labels (N,)."""

    name: str
    logits: np.ndarray
    labels: np.ndarray

    def half(self, which: int, seed: int = 0) -> Split:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self.labels))
        idx = np.sort(order[which::2])
        return Split(self.name, self.logits[:, idx], self.labels[idx])


def _mean_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """:func:`fervid.model.classify.calibrated_probs` in numpy: the fit calls it thousands
    of times on small arrays, where torch's thread pool costs more than the arithmetic."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).mean(0)


def scores(splits: list[Split], bias: np.ndarray, temperature: float) -> dict[str, float]:
    """Accuracy, macro-F1 and the lowest class recall of each split under ``bias``.

    Computed from the confusion matrix alone (no AUC or reliability), since the fit
    evaluates it thousands of times."""
    out: dict[str, float] = {}
    for s in splits:
        pred = _mean_softmax(s.logits + bias, temperature).argmax(1)
        c = s.logits.shape[-1]
        conf = np.bincount(s.labels * c + pred, minlength=c * c).reshape(c, c)
        tp, support, predicted = np.diag(conf), conf.sum(1), conf.sum(0)
        present = support > 0
        recall = tp[present] / support[present]
        precision = np.divide(tp, predicted, out=np.zeros(c), where=predicted > 0)[present]
        f1 = np.divide(2 * precision * recall, precision + recall,
                       out=np.zeros_like(recall), where=precision + recall > 0)  # fmt: skip
        out[f"{s.name}_acc"] = float(tp.sum() / max(1, conf.sum()))
        out[f"{s.name}_f1"] = float(f1.mean())
        out[f"{s.name}_min_recall"] = float(recall.min())
    return out


def objective(splits: list[Split], bias: np.ndarray, temperature: float) -> float:
    """Mean over splits of (accuracy + macro-F1) / 2: balance counts, accuracy still does."""
    sc = scores(splits, bias, temperature)
    return float(np.mean([(sc[f"{s.name}_acc"] + sc[f"{s.name}_f1"]) / 2 for s in splits]))


def fit_bias(
    splits: list[Split], temperature: float, *, step: float = 0.05, limit: float = 1.0,
    passes: int = 3,
) -> np.ndarray:  # fmt: skip
    """Coordinate ascent on :func:`objective` over a grid of offsets in [-limit, limit].

    Offsets are defined up to a constant, so the result is centred (mean 0)."""
    c = splits[0].logits.shape[-1]
    bias = np.zeros(c, np.float32)
    grid = np.arange(-limit, limit + step / 2, step, dtype=np.float32)
    best = objective(splits, bias, temperature)
    for _ in range(passes):
        improved = False
        for k in range(c):
            for v in grid:
                trial = bias.copy()
                trial[k] = v
                val = objective(splits, trial, temperature)
                if val > best + 1e-6:
                    best, bias, improved = val, trial, True
        if not improved:
            break
    return bias - bias.mean()


def cross_fitted(splits: list[Split], temperature: float, seed: int = 0) -> dict[str, float]:
    """Scores of offsets fitted on one half of every split, on the other half (both ways,
    pooled): what the adjustment does on faces it was not fitted on."""
    pooled: dict[str, list[float]] = {}
    for which in (0, 1):
        fit_on = [s.half(which, seed) for s in splits]
        test_on = [s.half(1 - which, seed) for s in splits]
        b = fit_bias(fit_on, temperature)
        for k, v in scores(test_on, b, temperature).items():
            pooled.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in pooled.items()}


@torch.no_grad()
def fold_bias(network: nn.Module, bias: np.ndarray) -> None:
    """Add ``bias`` to the last linear layer's bias: logits become ``logits + bias``."""
    head = network.classifier
    assert isinstance(head, nn.Sequential)
    last = head[-1]
    assert isinstance(last, nn.Linear) and last.bias is not None
    last.bias.add_(torch.as_tensor(bias, dtype=last.bias.dtype, device=last.bias.device))
