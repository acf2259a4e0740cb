"""Evaluation metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fervid.training.metrics import (
    accuracy,
    binary_auc,
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    negative_log_likelihood,
    normalize_rows,
    one_vs_rest_auc,
    one_vs_rest_roc,
    per_class,
    reliability,
    roc_curve,
    softmax,
)

# A 3-class toy set. True 0 is predicted 0,0,1,2; true 1 -> 1,1,0; true 2 -> 2,2,2.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PREDS = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 2])
CONFUSION = np.array([[2, 1, 1], [1, 2, 0], [0, 0, 3]])
# precision = diagonal / column sums, recall = diagonal / row sums, F1 = 2PR / (P + R).
PRECISION = [2 / 3, 2 / 3, 3 / 4]
RECALL = [2 / 4, 2 / 3, 3 / 3]
F1 = [4 / 7, 2 / 3, 6 / 7]
MACRO_F1 = (4 / 7 + 2 / 3 + 6 / 7) / 3  # = 44 / 63


def test_toy_confusion_matrix() -> None:
    cm = confusion_matrix(LABELS, PREDS, 3)
    np.testing.assert_array_equal(cm, CONFUSION)
    assert cm.dtype == np.int64


def test_toy_per_class_table() -> None:
    pc = per_class(CONFUSION)
    np.testing.assert_allclose(pc.precision, PRECISION)
    np.testing.assert_allclose(pc.recall, RECALL)
    np.testing.assert_allclose(pc.f1, F1)
    np.testing.assert_array_equal(pc.support, [4, 3, 3])
    assert pc.macro_f1 == pytest.approx(MACRO_F1)
    assert macro_f1(LABELS, PREDS, 3) == pytest.approx(44 / 63)


def test_toy_accuracy_and_row_normalisation() -> None:
    assert accuracy(LABELS, PREDS) == pytest.approx(0.7)
    np.testing.assert_allclose(
        normalize_rows(CONFUSION), [[0.5, 0.25, 0.25], [1 / 3, 2 / 3, 0], [0, 0, 1]]
    )


def test_absent_class_is_nan_and_left_out_of_macro_average() -> None:
    # Class 3 never occurs; it is predicted once (a false positive for class 3).
    labels = np.r_[LABELS, 0]
    preds = np.r_[PREDS, 3]
    cm = confusion_matrix(labels, preds, 4)
    pc = per_class(cm)
    assert pc.support[3] == 0
    assert pc.precision[3] == 0.0
    assert math.isnan(pc.recall[3]) and math.isnan(pc.f1[3])
    assert np.isnan(normalize_rows(cm)[3]).all()
    # class 0 now has recall 2/5 and F1 2 * (2/3 * 2/5) / (2/3 + 2/5) = 1/2
    assert pc.macro_f1 == pytest.approx((1 / 2 + 2 / 3 + 6 / 7) / 3)


def test_never_predicted_class_has_zero_precision_and_f1() -> None:
    pc = per_class(confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 0]), 2))
    np.testing.assert_allclose(pc.precision, [1 / 3, 0.0])
    np.testing.assert_allclose(pc.recall, [1.0, 0.0])
    np.testing.assert_allclose(pc.f1, [0.5, 0.0])


@pytest.mark.parametrize(
    ("scores", "positive", "auc"),
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),  # perfect
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),  # inverted
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # all tied: random
        # pairs (pos, neg): (.5,.1)=1 (.5,.5)=1/2 (.9,.1)=1 (.9,.5)=1 -> 3.5 / 4
        ([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1], 0.875),
        # 1 positive above 2 of 3 negatives
        ([0.3, 0.1, 0.2, 0.4], [1, 0, 0, 0], 2 / 3),
        ([0.3, 0.1, 0.2], [1, 1, 1], math.nan),  # no negatives
        ([0.3, 0.1, 0.2], [0, 0, 0], math.nan),  # no positives
    ],
)
def test_binary_auc(scores: list[float], positive: list[int], auc: float) -> None:
    got = binary_auc(np.array(scores), np.array(positive, bool))
    if math.isnan(auc):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(auc)


def test_auc_matches_pairwise_count_on_random_scores_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 500) / 20.0  # many ties
    positive = rng.random(500) < 0.3
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    assert binary_auc(scores, positive) == pytest.approx(wins / (len(pos) * len(neg)))
    curve = roc_curve(scores, positive)
    assert np.trapezoid(curve.tpr, curve.fpr) == pytest.approx(curve.auc)


def test_roc_curve_points_with_ties() -> None:
    curve = roc_curve(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 1, 0, 1], bool))
    np.testing.assert_allclose(curve.thresholds, [np.inf, 0.9, 0.5, 0.1])
    np.testing.assert_allclose(curve.tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.5, 1])
    assert curve.auc == pytest.approx(0.875)


def test_one_vs_rest_auc_absent_class_is_nan() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    labels = np.array([0, 1, 0, 1])
    auc = one_vs_rest_auc(probs, labels)
    np.testing.assert_allclose(auc[:2], [1.0, 1.0])
    assert math.isnan(auc[2])
    curves = one_vs_rest_roc(probs, labels)
    assert len(curves) == 3 and math.isnan(curves[2].auc) and np.isnan(curves[2].tpr).all()


def _probs(conf: float, n: int, k: int = 3) -> np.ndarray:
    """n rows whose top probability ``conf`` is class 0, the rest spread evenly."""
    row = np.full(k, (1 - conf) / (k - 1))
    row[0] = conf
    return np.tile(row, (n, 1))


def test_ece_of_perfectly_calibrated_set_is_zero() -> None:
    # 10 faces at confidence 0.8 of which 8 are right; 4 at 0.5 of which 2 are right.
    probs = np.r_[_probs(0.8, 10), _probs(0.5, 4)]
    labels = np.r_[[0] * 8, [1] * 2, [0] * 2, [2] * 2]
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_overconfident_set() -> None:
    # All at confidence 0.9, half right: ECE = |0.5 - 0.9| = 0.4.
    probs = _probs(0.9, 10)
    labels = np.r_[[0] * 5, [1] * 5]
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)
    # Add 10 perfectly calibrated faces at 0.6 (6 right): ECE = 10/20 * 0.4 + 10/20 * 0 = 0.2.
    probs2 = np.r_[probs, _probs(0.6, 10)]
    labels2 = np.r_[labels, [0] * 6, [2] * 4]
    rel = reliability(probs2, labels2)
    assert rel.ece == pytest.approx(0.2)
    # 15 right-closed bins of width 1/15: 0.9 falls in bin 13, 0.6 in (8/15, 9/15] = bin 8.
    assert rel.count.tolist() == [0] * 8 + [10] + [0] * 4 + [10, 0]
    assert rel.accuracy[13] == pytest.approx(0.5) and rel.confidence[13] == pytest.approx(0.9)
    assert rel.accuracy[8] == pytest.approx(0.6)
    assert np.isnan(rel.accuracy[0]) and np.isnan(rel.confidence[14])
    np.testing.assert_allclose(rel.edges, np.linspace(0, 1, 16))


def test_confidence_one_lands_in_last_bin() -> None:
    rel = reliability(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
    assert rel.count[-1] == 2 and rel.accuracy[-1] == pytest.approx(0.5)
    assert rel.ece == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("probs", "labels", "nll"),
    [
        ([[0.5, 0.5], [0.25, 0.75]], [0, 1], -(math.log(0.5) + math.log(0.75)) / 2),
        ([[1.0, 0.0]], [0], 0.0),
        ([[1.0, 0.0]], [1], -math.log(1e-12)),  # clipped, not infinite
    ],
)
def test_negative_log_likelihood(probs: list, labels: list, nll: float) -> None:
    assert negative_log_likelihood(np.array(probs), np.array(labels)) == pytest.approx(nll)


@pytest.mark.parametrize(
    ("logits", "temperature", "expected"),
    [
        ([0.0, math.log(3)], 1.0, [0.25, 0.75]),
        ([0.0, math.log(3)], 2.0, [1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))]),
        ([1000.0, 0.0], 1.0, [1.0, 0.0]),  # no overflow
    ],
)
def test_softmax_with_temperature(logits: list, temperature: float, expected: list) -> None:
    np.testing.assert_allclose(softmax(np.array([logits]), temperature)[0], expected, atol=1e-12)


def test_compute_metrics_agrees_with_parts() -> None:
    rng = np.random.default_rng(1)
    probs = softmax(rng.normal(size=(200, 7)) * 2)
    labels = rng.integers(0, 7, 200)
    m = compute_metrics(probs, labels)
    pred = probs.argmax(1)
    assert m.accuracy == pytest.approx(accuracy(labels, pred))
    np.testing.assert_array_equal(m.confusion, confusion_matrix(labels, pred, 7))
    assert m.macro_f1 == pytest.approx(macro_f1(labels, pred, 7))
    np.testing.assert_allclose(m.auc, one_vs_rest_auc(probs, labels))
    assert m.macro_auc == pytest.approx(float(np.mean(m.auc)))
    assert m.ece == pytest.approx(expected_calibration_error(probs, labels))
    assert m.nll == pytest.approx(negative_log_likelihood(probs, labels))
    assert m.per_class.support.sum() == 200


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3), r"\[0, 3\)"),
        (lambda: confusion_matrix(np.array([0, 1]), np.array([0]), 3), "differ"),
        (lambda: accuracy(np.array([0, 1]), np.array([0])), "differ"),
        (lambda: negative_log_likelihood(np.ones((3, 2)) / 2, np.array([0, 1])), "rows"),
        (lambda: reliability(np.ones(4) / 4, np.array([0])), r"\(N, C\)"),
        (lambda: softmax(np.zeros((1, 2)), 0.0), "temperature"),
    ],
)
def test_bad_shapes_raise(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
