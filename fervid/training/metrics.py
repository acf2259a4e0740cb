"""Classification metrics for emotion models, in plain numpy (no sklearn).

Conventions shared by every function here:

- ``labels`` are int class indices, shape (N,), values in ``[0, C)``.
- ``probs`` are float class probabilities, shape (N, C), rows summing to 1.
- ``predictions`` are int class indices, shape (N,) (usually ``probs.argmax(1)``).
- A class absent from ``labels`` has no recall, F1 or AUC: those are NaN, and the
  macro averages skip NaN (they average over the classes present in ``labels``).
  Precision of a class that is never predicted is 0 (sklearn's ``zero_division=0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Equal-width confidence bins of the expected calibration error (Guo et al., 2017).
ECE_BINS = 15


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got min {labels.min()} max {labels.max()}"
        )
    return labels.astype(np.int64, copy=False)


def _check_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got {probs.shape}")
    labels = _check_labels(labels, probs.shape[1])
    if len(labels) != len(probs):
        raise ValueError(f"probs has {len(probs)} rows but labels has {len(labels)}")
    return probs, labels


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` over the last axis.

    ``logits``: float (N, C). Returns float64 (N, C), rows summing to 1. Raising the
    temperature flattens the distribution (less confident), lowering it sharpens it.
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature}; expected > 0")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of ``predictions`` (N,) equal to ``labels`` (N,); NaN when N == 0."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    return float(np.mean(labels == predictions)) if labels.size else float("nan")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts int64 (C, C): row = true class, column = predicted class."""
    labels = _check_labels(labels, num_classes)
    predictions = _check_labels(predictions, num_classes)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def normalize_rows(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion float64 (C, C): row i is P(predicted | true = i).

    The diagonal is the per-class recall. Rows of classes absent from the labels are NaN.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, cm / np.where(support > 0, support, 1), np.nan)


@dataclass(frozen=True, kw_only=True)
class PerClass:
    """The per-class table FER papers print. Every array is (C,), in class order.

    ``precision``, ``recall``, ``f1`` float64 in [0, 1] (recall and F1 NaN for a class
    with ``support`` 0); ``support`` int64: number of samples whose label is the class.
    """

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    @property
    def macro_f1(self) -> float:
        """Unweighted mean F1 over the classes present in the labels."""
        return _nanmean(self.f1)


def per_class(confusion: np.ndarray) -> PerClass:
    """Precision, recall, F1 and support per class from a count confusion matrix (C, C)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    f1 = np.where(support > 0, f1, np.nan)
    return PerClass(precision=precision, recall=recall, f1=f1, support=support.astype(np.int64))


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over classes present in ``labels`` (N,)."""
    return per_class(confusion_matrix(labels, predictions, num_classes)).macro_f1


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    finite = x[~np.isnan(x)]
    return float(finite.mean()) if finite.size else float("nan")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (N,), tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney U statistic.

    ``scores`` float (N,), higher = more positive; ``positive`` bool (N,). Ties between a
    positive and a negative count one half. NaN when there are no positives or no negatives.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = float(_average_ranks(scores)[positive].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


@dataclass(frozen=True, kw_only=True)
class RocCurve:
    """One-vs-rest ROC of one class.

    ``fpr``, ``tpr`` float64 (K,) from (0, 0) to (1, 1); ``thresholds`` float64 (K,),
    decreasing, the first is +inf (nothing predicted positive). ``auc`` is NaN when the
    class is absent from the labels (then ``tpr`` is all NaN) or is every label.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> RocCurve:
    """ROC points at every distinct score of ``scores`` (N,) for bool ``positive`` (N,)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    # Last index of each run of equal scores: all tied samples cross the threshold together.
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.zeros(0, np.int64)
    tp = np.cumsum(p)[last]
    fp = np.cumsum(~p)[last]
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(len(last) + 1, np.nan)
        fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(len(last) + 1, np.nan)
    thresholds = np.r_[np.inf, s[last]]
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds, auc=binary_auc(scores, positive))


def one_vs_rest_roc(probs: np.ndarray, labels: np.ndarray) -> list[RocCurve]:
    """One ROC curve per class (C entries) from ``probs`` (N, C) and ``labels`` (N,)."""
    probs, labels = _check_probs(probs, labels)
    return [roc_curve(probs[:, c], labels == c) for c in range(probs.shape[1])]


def one_vs_rest_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class AUC float64 (C,); NaN for a class absent from ``labels`` (N,)."""
    probs, labels = _check_probs(probs, labels)
    return np.array([binary_auc(probs[:, c], labels == c) for c in range(probs.shape[1])])


@dataclass(frozen=True, kw_only=True)
class Reliability:
    """Reliability-diagram data over equal-width bins of the max probability.

    ``edges`` float64 (B + 1,) from 0 to 1; bin b holds confidences in
    (edges[b], edges[b + 1]] (the first bin also holds 0). ``confidence`` and ``accuracy``
    float64 (B,): mean max-probability and fraction correct per bin, NaN for an empty
    bin; ``count`` int64 (B,). ``ece`` = sum_b count_b / N * |accuracy_b - confidence_b|.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    ece: float


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> Reliability:
    """Bin samples by confidence = max of ``probs`` (N, C); correct = argmax equals ``labels``."""
    probs, labels = _check_probs(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins}; expected >= 1")
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64) if len(probs) else np.zeros(0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins: conf in (k/B, (k+1)/B] -> k; conf = 0 -> bin 0.
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    corr_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        mean_acc = np.where(count > 0, corr_sum / np.maximum(count, 1), np.nan)
    n = max(len(probs), 1)
    ece = float(np.abs(corr_sum - conf_sum).sum() / n) if len(probs) else float("nan")
    return Reliability(edges=edges, confidence=mean_conf, accuracy=mean_acc, count=count, ece=ece)


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """ECE of ``probs`` (N, C) against ``labels`` (N,) over ``n_bins`` equal-width bins."""
    return reliability(probs, labels, n_bins).ece


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean -log p(label) in nats over ``probs`` (N, C), ``labels`` (N,).

    Probabilities are clipped at ``eps`` so one confident mistake costs at most
    -log(eps) (27.6 nats at 1e-12) instead of infinity.
    """
    probs, labels = _check_probs(probs, labels)
    if not len(probs):
        return float("nan")
    p = np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)
    return float(-np.log(p).mean())


@dataclass(frozen=True, kw_only=True)
class MetricSet:
    """All metrics of one set of predictions; arrays are (C,) in class order unless noted.

    ``confusion`` int64 (C, C), row = true class; ``auc`` float64 (C,) one-vs-rest, NaN for
    absent classes; ``macro_auc`` the mean over the classes that have one.
    """

    accuracy: float
    macro_f1: float
    per_class: PerClass
    confusion: np.ndarray
    auc: np.ndarray
    macro_auc: float
    ece: float
    nll: float
    reliability: Reliability

    @property
    def confusion_normalized(self) -> np.ndarray:
        return normalize_rows(self.confusion)


def compute_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> MetricSet:
    """Every metric of this module for ``probs`` (N, C) and ``labels`` (N,)."""
    probs, labels = _check_probs(probs, labels)
    num_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(labels, pred, num_classes)
    pc = per_class(cm)
    auc = one_vs_rest_auc(probs, labels)
    rel = reliability(probs, labels, n_bins)
    return MetricSet(
        accuracy=accuracy(labels, pred),
        macro_f1=pc.macro_f1,
        per_class=pc,
        confusion=cm,
        auc=auc,
        macro_auc=_nanmean(auc),
        ece=rel.ece,
        nll=negative_log_likelihood(probs, labels),
        reliability=rel,
    )
