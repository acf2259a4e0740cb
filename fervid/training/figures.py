"""Evaluation and training figures as PNG files (matplotlib, Agg, no pyplot state).

Each function draws one figure from arrays computed in :mod:`fervid.training.metrics`
(or a training history) and returns the path it wrote. Figures are built on
:class:`matplotlib.figure.Figure` directly, so nothing depends on a display or on
pyplot's global state, and several threads may draw at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fervid.longitudinal.colors import class_colors
from fervid.training.metrics import Reliability, RocCurve, normalize_rows

DPI = 130
#: Line colours of non-emotion series (validation sets, calibration variants).
SERIES_COLORS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00")


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def _matrix_panel(ax: Any, m: np.ndarray, names: Sequence[str], fmt: str, title: str) -> Any:
    finite = m[np.isfinite(m)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=vmax)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = m[i, j]
            text = "–" if not np.isfinite(v) else format(v, fmt)
            dark = np.isfinite(v) and v > 0.55 * vmax
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_xticks(range(len(names)), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return im


def plot_confusion(
    confusion: np.ndarray, class_names: Sequence[str], path: Path, *, title: str = ""
) -> Path:
    """Two panels: counts and row-normalised (per true class) confusion.

    ``confusion`` int (C, C), row = true class, column = predicted class; ``class_names``
    C names in the same order. Rows of classes absent from the data show a dash.
    """
    cm = np.asarray(confusion)
    fig = Figure(figsize=(12.5, 5.6), layout="constrained")
    ax_counts, ax_norm = fig.subplots(1, 2)
    im = _matrix_panel(ax_counts, cm.astype(np.float64), class_names, ".0f", "counts")
    fig.colorbar(im, ax=ax_counts, shrink=0.8)
    im = _matrix_panel(ax_norm, normalize_rows(cm), class_names, ".2f", "row-normalised (recall)")
    fig.colorbar(im, ax=ax_norm, shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_roc(
    curves: Sequence[RocCurve], class_names: Sequence[str], path: Path, *, title: str = ""
) -> Path:
    """One-vs-rest ROC curves, one per class in its emotion colour, AUC in the legend.

    ``curves`` C curves from :func:`fervid.training.metrics.one_vs_rest_roc`. Classes absent
    from the data (AUC NaN) are listed in the legend as "n/a" without a line.
    """
    if len(curves) != len(class_names):
        raise ValueError(f"{len(curves)} curves but {len(class_names)} class names")
    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#BBBBBB", linestyle="--", linewidth=1, label="chance")
    for curve, name, color in zip(
        curves, class_names, class_colors(list(class_names)), strict=True
    ):
        if np.isnan(curve.auc):
            ax.plot([], [], color=color, label=f"{name} (AUC n/a)")
            continue
        ax.plot(
            curve.fpr, curve.tpr, color=color, linewidth=1.8, label=f"{name} (AUC {curve.auc:.3f})"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC, one class vs rest")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return _save(fig, path)


def plot_reliability(
    series: Sequence[tuple[str, Reliability]], path: Path, *, title: str = ""
) -> Path:
    """Reliability diagram: accuracy against confidence per bin, ECE in the legend.

    ``series``: (label, reliability) pairs drawn on the same axes, e.g. the model at its
    fitted temperature and at T = 1; the lower panel shows the first series' bin counts.
    """
    if not series:
        raise ValueError("plot_reliability needs at least one series")
    fig = Figure(figsize=(6.4, 7.2), layout="constrained")
    ax, ax_n = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot(
        [0, 1], [0, 1], color="#BBBBBB", linestyle="--", linewidth=1, label="perfect calibration"
    )
    first = series[0][1]
    width = np.diff(first.edges)
    ax.bar(
        first.edges[:-1],
        np.nan_to_num(first.accuracy),
        width=width,
        align="edge",
        color="#000000",
        alpha=0.08,
        edgecolor="#666666",
        linewidth=0.5,
    )
    for k, (label, rel) in enumerate(series):
        ok = rel.count > 0
        ax.plot(
            rel.confidence[ok],
            rel.accuracy[ok],
            marker="o",
            markersize=4,
            linestyle="-" if k == 0 else "--",
            color=SERIES_COLORS[k % len(SERIES_COLORS)],
            label=f"{label} (ECE {rel.ece:.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title or "reliability (confidence = max probability)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    ax_n.bar(
        first.edges[:-1], first.count, width=width, align="edge", color="#999999", edgecolor="white"
    )
    ax_n.set_xlabel("confidence")
    ax_n.set_ylabel(f"faces ({series[0][0]})" if len(series) > 1 else "faces")
    ax_n.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_training_curves(history: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Training loss and validation accuracies per epoch from a run's ``history.json``.

    ``history``: one dict per epoch with keys ``epoch``, ``loss``, ``<val>_acc`` for each
    validation set, optionally ``phase`` and ``score``. The best ``score`` epoch is marked
    with a dotted line; a change of ``phase`` with a grey line.
    """
    if not history:
        raise ValueError("plot_training_curves needs a non-empty history")
    epochs = np.array([h["epoch"] for h in history])
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h.get("loss", np.nan) for h in history], color="#000000", marker=".")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    acc_keys = sorted({k for h in history for k in h if k.endswith("_acc")})
    for i, key in enumerate(acc_keys):
        ax_acc.plot(
            epochs,
            [h.get(key, np.nan) for h in history],
            marker=".",
            color=SERIES_COLORS[(i + 1) % len(SERIES_COLORS)],
            label=key[: -len("_acc")],
        )
    if any("score" in h for h in history):
        scores = np.array([h.get("score", np.nan) for h in history], dtype=np.float64)
        ax_acc.plot(epochs, scores, color="#000000", linestyle="--", label="score")
        if np.isfinite(scores).any():
            best = int(np.nanargmax(scores))
            for a in (ax_loss, ax_acc):
                a.axvline(epochs[best], color="#000000", linestyle=":", linewidth=1)
            ax_acc.annotate(
                f"best {scores[best]:.3f} @ {epochs[best]}",
                (epochs[best], scores[best]),
                textcoords="offset points",
                xytext=(-4, -14),
                fontsize=8,
                ha="right",
            )
    phases = [h.get("phase") for h in history]
    for i in range(1, len(history)):
        if phases[i] != phases[i - 1]:
            for a in (ax_loss, ax_acc):
                a.axvline(epochs[i] - 0.5, color="#BBBBBB", linewidth=1)
            ax_acc.annotate(
                str(phases[i]),
                (epochs[i] - 0.5, 0.02),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color="#777777",
            )
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy")
    ax_acc.set_title("validation")
    if acc_keys:
        ax_acc.legend(fontsize=9)
    for a in (ax_loss, ax_acc):
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
