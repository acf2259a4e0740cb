"""A self-contained HTML report of a fervid output: summaries, trends and timelines.

:func:`build_report` writes ``<report_dir>/index.html`` and PNG figures under
``<report_dir>/figures/``:

- ``timeline_<video>_<key>.png`` per analysed recording: the patient face's stacked
  smoothed probabilities over time, its emotion segments as a coloured ribbon, and the
  spans without that face hatched grey;
- ``trend_<subject>_<key>.png`` per subject: every followed index across sessions with
  its baseline band (baseline mean ± threshold × max(SD, floor)), rolling mean, and
  departures circled.

The page needs no network: CSS is inline and figures are relative files next to it
(or embedded as base64 with ``embed_images=True``). ``<key>`` is a hash of what a figure
shows, so a nightly refresh redraws only the figures whose data changed, and figures no
longer referenced are removed. Figures are drawn with matplotlib's object API (no
pyplot state), Agg renderer.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from fervid import __version__
from fervid.longitudinal.colors import emotion_color
from fervid.longitudinal.missing import is_missing
from fervid.longitudinal.summary import (
    FALLBACK_INTERVAL_S,
    RULE_NO_FACE,
    RULE_OVERRIDE,
    IndexSettings,
    _read_table,
    class_names_of,
    summarize_dir,
)
from fervid.longitudinal.trends import (
    TrendSettings,
    default_indices,
    index_label,
    trends_with,
    value_format,
)
from fervid.output.atomic import atomic_path, write_text
from fervid.output.schema import FRAMES, SEGMENTS, STATUS_OK, VIDEOS, share_col, smooth_col
from fervid.output.store import Layout, layout_of, output_paths, parts_root

REPORT_FILE = "index.html"
FIGURES_DIR = "figures"
#: Part of every figure's cache key: bump it when the drawing code changes.
RENDER_VERSION = "1"

_ABSENT_FACE = "#f1f1f1"
_ABSENT_EDGE = "#b0b0b0"
_RC = {
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "figure.titlesize": 16,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def build_report(
    results: Path,
    report_dir: Path,
    *,
    sessions: pa.Table | None = None,
    patient_override: Mapping[str, int] | Path | str | None = None,
    index_settings: IndexSettings | None = None,
    trend_settings: TrendSettings | None = None,
    subject: str | None = None,
    indices: Sequence[str] | None = None,
    embed_images: bool = False,
    title: str = "fervid report",
) -> Path:
    """Write the report of the fervid output ``results`` (``dir/`` or ``results.parquet``)
    into ``report_dir``; return the path of ``index.html``.

    ``sessions``: a sessions table already computed (else :func:`summarize_dir` with
    ``patient_override`` and ``index_settings``). ``subject``: only this subject.
    ``indices``: the indices to follow (default: valence, expressivity, each share).
    """
    results, report_dir = Path(results), Path(report_dir)
    index_settings = index_settings if index_settings is not None else IndexSettings()
    trend_settings = trend_settings if trend_settings is not None else TrendSettings()
    videos = _read_table(results, VIDEOS).to_pandas()
    if sessions is None:
        sessions = summarize_dir(results, patient_override, settings=index_settings)
    sdf = sessions.to_pandas()
    if subject is not None:
        sdf = sdf.loc[sdf["subject"] == subject]
        videos = videos.loc[videos["subject"] == subject]
    index_cols = tuple(indices) if indices is not None else default_indices(sessions)
    classes = class_names_of(sessions, "share_")
    patients = sdf.loc[sdf["is_patient"].astype(bool)]
    analysed = patients.loc[patients["status"] == STATUS_OK]
    trends = (
        trends_with(analysed, trend_settings, indices=index_cols).to_pandas()
        if not analysed.empty
        else None
    )

    fig_dir = report_dir / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    page = _Page(title=title, embed=embed_images)
    page.header(results, videos, analysed)
    page.caveats(trend_settings)
    departures = trends.loc[_is_true(trends["departure"])] if trends is not None else None
    page.departures(departures)

    subjects = sorted(analysed["subject"].dropna().unique().tolist())
    if analysed["subject"].isna().any():
        subjects.append(None)
    page.nav(subjects)
    for subj in subjects:
        mine = (
            analysed.loc[analysed["subject"].isna()]
            if subj is None
            else analysed.loc[analysed["subject"] == subj]
        )
        tr = (
            trends.loc[trends["subject"].isna()]
            if subj is None
            else trends.loc[trends["subject"] == subj]
        )
        order = tr.drop_duplicates("video_id").sort_values("session_number")
        mine = mine.set_index("video_id").loc[order["video_id"]].reset_index()
        faces = sdf.loc[sdf["video_id"].isin(mine["video_id"])]
        trend_png = _draw_cached(
            fig_dir, "trend", str(subj), _trend_key(tr, trend_settings),
            lambda path, tr=tr, subj=subj: _save(_trend_figure(tr, index_cols, trend_settings,
                                                               subj), path),
        )  # fmt: skip
        timelines = []
        for s in mine.to_dict("records"):
            png = _draw_cached(
                fig_dir, "timeline", _txt(s["file_name"], s["video_id"]),
                _timeline_key(s, classes),
                lambda path, s=s: _save(_timeline_figure(results, s, classes), path),
            )  # fmt: skip
            timelines.append((s, png))
        page.subject(
            subj, mine, faces, tr, trend_png, timelines, index_cols, classes, trend_settings
        )
    page.not_analysed(videos)
    page.footer(trend_settings, sessions)

    out = report_dir / REPORT_FILE
    write_text(out, page.render())
    for p in fig_dir.glob("*.png"):  # figures of an older report that this one no longer shows
        if p.name not in page.figures and re.match(r"(timeline|trend)_.*\.png$", p.name):
            p.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- figures: files
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:48].strip("._") or "x"


def _key(obj: Any) -> str:
    blob = json.dumps([RENDER_VERSION, obj], sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def _timeline_key(s: Mapping[str, Any], classes: tuple[str, ...]) -> str:
    fields = ("video_id", "processed_at", "settings_hash", "face_id", "video_duration_s",
              "sample_interval_s", "file_name", "subject", "session_date",
              "patient_rule")  # fmt: skip
    return _key([[str(s.get(f)) for f in fields], classes])


def _trend_key(tr: pd.DataFrame, settings: TrendSettings) -> str:
    return _key([tr.astype(str).to_dict("records"), settings.to_json()])


def _draw_cached(fig_dir: Path, kind: str, name: str, key: str, draw: Any) -> Path:
    path = fig_dir / f"{kind}_{_safe(name)}_{key}.png"
    if not path.exists():
        draw(path)
    return path


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


# --------------------------------------------------------------------------- figures: timeline
def _video_rows(results: Path, table: str, video_id: str, columns: list[str]) -> pa.Table:
    """One video's rows: its part file (both layouts keep one), else a filtered read."""
    part = parts_root(results) / table / f"{video_id}.parquet"
    if part.exists():
        return pq.read_table(part, columns=columns)
    path = output_paths(results)[table] if layout_of(results) is Layout.FILE else None
    if path is None or not path.exists():
        return pa.table({c: [] for c in columns})
    return ds.dataset(path, format="parquet").to_table(
        columns=columns, filter=pc.field("video_id") == video_id
    )


def _timeline_figure(results: Path, s: Mapping[str, Any], classes: tuple[str, ...]) -> Any:
    """Figure of one session's patient face: (n, C) smoothed probabilities stacked over
    time, segments ribbon below, face-absent spans hatched."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    dt_s = _num(s.get("sample_interval_s")) or FALLBACK_INTERVAL_S
    face = s.get("face_id")
    t = np.zeros(0)
    probs = np.zeros((0, len(classes)))
    spans: list[tuple[float, float, str]] = []
    if not is_missing(face):
        cols = ["face_id", "timestamp_s", *[smooth_col(c) for c in classes]]
        f = _video_rows(results, FRAMES, s["video_id"], cols).to_pandas()
        f = f.loc[f["face_id"] == int(face)].sort_values("timestamp_s")
        t = f["timestamp_s"].to_numpy(np.float64)
        probs = f[[smooth_col(c) for c in classes]].to_numpy(np.float64)
        g = _video_rows(
            results, SEGMENTS, s["video_id"], ["face_id", "start_s", "end_s", "emotion"]
        )
        g = g.to_pandas()
        g = g.loc[g["face_id"] == int(face)]
        spans = list(zip(g["start_s"], g["end_s"], g["emotion"], strict=True))
    duration = _num(s.get("video_duration_s")) or (float(t[-1]) + dt_s if len(t) else 1.0)
    scale, unit = (60.0, "min") if duration > 180 else (1.0, "s")

    with rc_context(_RC):
        fig = Figure(figsize=(13, 4.8), dpi=100, layout="constrained")
        ax, rib = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [5, 1]})
        absent = _absent_spans(t, dt_s, duration)
        hatch = dict(facecolor=_ABSENT_FACE, edgecolor=_ABSENT_EDGE, hatch="//", linewidth=0)
        for a in (ax, rib):
            a.broken_barh([(x0 / scale, (x1 - x0) / scale) for x0, x1 in absent], (0, 1), **hatch)
        if len(t):
            x, y = _with_gaps(t, probs, dt_s)  # (m,), (m, C): NaN rows break the areas
            top = np.cumsum(y, axis=1)
            bottom = np.where(np.isnan(y[:, :1]), np.nan, 0.0)[:, 0]
            for i, c in enumerate(classes):
                ax.fill_between(x / scale, bottom, top[:, i], step="post", linewidth=0,
                                color=emotion_color(c, i))  # fmt: skip
                bottom = top[:, i]
        else:
            ax.text(0.5, 0.5, "no face detected", transform=ax.transAxes, ha="center",
                    va="center", fontsize=16, color="#555555")  # fmt: skip
        by_emotion: dict[str, list[tuple[float, float]]] = {}
        for start, end, emo in spans:
            by_emotion.setdefault(str(emo), []).append((start / scale, (end - start) / scale))
        for emo, bars in by_emotion.items():
            i = classes.index(emo) if emo in classes else len(classes)
            rib.broken_barh(bars, (0, 1), facecolor=emotion_color(emo, i), linewidth=0)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, duration / scale)
        ax.set_ylabel("smoothed probability")
        ax.tick_params(labelbottom=False)
        rib.set_ylim(0, 1)
        rib.set_yticks([])
        rib.set_ylabel("segments", rotation=0, ha="right", va="center")
        rib.set_xlabel(f"time ({unit})")
        handles = [Patch(color=emotion_color(c, i), label=c) for i, c in enumerate(classes)]
        handles.append(Patch(label="face absent", **hatch))
        fig.legend(handles=handles, loc="outside right center", frameon=False)
        fig.suptitle(_timeline_title(s), x=0.01, ha="left")
    return fig


def _timeline_title(s: Mapping[str, Any]) -> str:
    parts = [str(s.get("file_name") or s["video_id"])]
    if _present(s.get("subject")):
        parts.append(str(s["subject"]))
    if _present(s.get("session_date")):
        parts.append(str(s["session_date"]))
    if s.get("patient_rule") == RULE_NO_FACE:
        parts.append("no face")
    elif _present(s.get("face_id")):
        parts.append(
            f"patient face {int(s['face_id'])} ({str(s.get('patient_rule')).replace('_', ' ')})"
        )
    return " · ".join(parts)


def _with_gaps(t: np.ndarray, p: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Step-plot arrays: each sample holds for its interval; a run ends at its last
    sample + dt, followed by a NaN row so that areas do not bridge absent spans.
    ``t`` (n,) s ascending, ``p`` (n, C) -> x (m,), y (m, C)."""
    ends = np.flatnonzero(np.append(np.diff(t) > 1.5 * dt_s, True))  # last row of each run
    xs, ys = [], []
    start = 0
    nan_row = np.full((1, p.shape[1]), np.nan)
    for end in ends:
        xs += [t[start : end + 1], [t[end] + dt_s, t[end] + dt_s]]
        ys += [p[start : end + 1], p[end : end + 1], nan_row]
        start = end + 1
    return np.concatenate(xs), np.concatenate(ys)


def _absent_spans(t: np.ndarray, dt_s: float, duration: float) -> list[tuple[float, float]]:
    """(start, end) seconds in which the face was not seen (gaps over 1.5 sample steps)."""
    if not len(t):
        return [(0.0, duration)]
    spans = []
    if t[0] > 0.5 * dt_s:
        spans.append((0.0, float(t[0])))
    for a, b in itertools.pairwise(t):
        if b - a > 1.5 * dt_s:
            spans.append((float(a) + dt_s, float(b)))
    if duration - (t[-1] + dt_s) > 0.5 * dt_s:
        spans.append((float(t[-1]) + dt_s, duration))
    return spans


# --------------------------------------------------------------------------- figures: trends
def _index_axis_label(index: str) -> str:
    if index.startswith("share_"):
        return "% of face-present time"
    return {
        "valence": "P(pos) − P(neg), −1…1",
        "expressivity": "mean TV distance, 0…1",
        "valence_sd": "SD of valence, 0…1",
        "positive_affect": "mean P(positive), 0…1",
        "negative_affect": "mean P(negative), 0…1",
    }.get(index, index)


def _index_color(index: str) -> str:
    if index.startswith("share_"):
        return emotion_color(index.removeprefix("share_"))
    return "#222222"


def _trend_figure(
    tr: pd.DataFrame, indices: Sequence[str], settings: TrendSettings, subject: str | None
) -> Any:
    """Grid of one panel per index: sessions on x (dates when all are dated)."""
    from matplotlib import dates as mdates
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ncols = 3
    nrows = max(1, math.ceil(len(indices) / ncols))
    first = tr.drop_duplicates("video_id").sort_values("session_number")
    dated = bool(len(first)) and first["session_date"].notna().all()
    with rc_context(_RC):
        fig = Figure(figsize=(15, 3.4 * nrows + 1.2), dpi=100, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
        for ax, index in zip(axes.flat, indices, strict=False):
            d = tr.loc[tr["index"] == index].sort_values("session_number")
            x = (
                pd.to_datetime(d["session_date"]).to_numpy()
                if dated
                else d["session_number"].to_numpy()
            )
            k = 100.0 if index.startswith("share_") else 1.0
            y = d["value"].astype(float).to_numpy() * k
            usable = d["usable"].astype(bool).to_numpy() & ~np.isnan(y)
            dep = _is_true(d["departure"]).to_numpy()
            base = d["in_baseline"].astype(bool).to_numpy()
            color = _index_color(index)
            if d["baseline_mean"].notna().any():
                m = float(d["baseline_mean"].dropna().iloc[0]) * k
                sd = float(d["baseline_sd"].dropna().iloc[0]) * k
                half = settings.threshold * max(sd, settings.sd_floor * k)
                ax.axhspan(m - half, m + half, color="#dbe7f3", linewidth=0)
                ax.axhline(m, color="#4a78b0", linewidth=1.3)
            ax.plot(x[usable], y[usable], "-o", color=color, markersize=6, linewidth=1.8)
            ax.plot(x[base], y[base], "s", color=color, markersize=8)
            ax.plot(
                x,
                d["rolling_mean"].astype(float).to_numpy() * k,
                "--",
                color="#555555",
                linewidth=1.2,
            )
            low = ~usable & ~np.isnan(y)
            ax.plot(
                x[low], y[low], "o", markerfacecolor="none", markeredgecolor="#999999", markersize=7
            )
            ax.scatter(
                x[dep],
                y[dep],
                s=220,
                facecolors="none",
                edgecolors="#c00000",
                linewidths=2.4,
                zorder=5,
            )
            for xi in x[np.isnan(y)]:  # sessions without a face / value
                ax.axvline(xi, color="#b0b0b0", linestyle=":", linewidth=1.5)
            lo, hi = (-1.0, 1.0) if index == "valence" else (0.0, k)
            y0, y1 = ax.get_ylim()
            pad = 0.03 * (hi - lo)  # points on the range's edge stay whole
            ax.set_ylim(max(y0, lo - pad), min(max(y1, lo + 0.05 * (hi - lo)), hi + pad))
            ax.set_title(index_label(index).replace(" %", ""))
            ax.set_ylabel(_index_axis_label(index))
            ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
            if not np.isfinite(y).any():
                ax.text(
                    0.5,
                    0.5,
                    "no usable session",
                    transform=ax.transAxes,
                    ha="center",
                    color="#777777",
                )
        for ax in list(axes.flat)[len(indices) :]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("session date" if dated else "session number")
        if dated and first["session_date"].nunique() > 1:
            loc = mdates.AutoDateLocator(maxticks=6)
            for ax in axes.flat:
                ax.xaxis.set_major_locator(loc)
                ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        elif dated:  # one date: a date locator has no interval to pick
            for ax in axes.flat:
                ax.set_xticks(pd.to_datetime(first["session_date"]).to_numpy())
                ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        else:
            from matplotlib.ticker import MaxNLocator

            for ax in axes.flat:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles = [
            Line2D([], [], color="#222222", marker="o", label="session"),
            Line2D([], [], color="#222222", marker="s", linestyle="none", markersize=8,
                   label="baseline session"),
            Line2D([], [], color="#555555", linestyle="--",
                   label=f"rolling mean (last {settings.window})"),
            Patch(color="#dbe7f3", label=f"baseline mean ± {settings.threshold:g} × SD"),
            Line2D([], [], marker="o", markersize=14, markerfacecolor="none",
                   markeredgecolor="#c00000",
                   markeredgewidth=2.4, linestyle="none", label="departure"),
            Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="#999999",
                   linestyle="none",
                   label="low face time (not judged)"),
            Line2D([], [], color="#b0b0b0", linestyle=":", linewidth=1.5,
                   label="no value (no face)"),
        ]  # fmt: skip
        fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
        fig.suptitle(f"{subject if subject is not None else 'No subject'}: indices across sessions")
    return fig


# --------------------------------------------------------------------------- HTML
_CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9d9de; --base: #eef4fb; --dep: #fde2e1;
        --depfg: #a40000; --low: #fff6d6; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0 auto; max-width: 1320px; padding: 24px 28px 64px; }
h1 { font-size: 30px; margin: 0 0 4px; } h2 { font-size: 24px; margin: 40px 0 10px;
  border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 19px; margin: 26px 0 8px; }
.meta, .muted, figcaption { color: var(--muted); }
.note { background: #f6f6f8; border-left: 5px solid #8a8f98; padding: 10px 16px; margin: 18px 0; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 8px 0 18px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 7px; text-align: right;
         white-space: nowrap; }
th { background: #f3f3f5; position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.base td { background: var(--base); }
tr.low td { background: var(--low); }
td.dep { background: var(--dep); color: var(--depfg); font-weight: 700; }
.badge { display: inline-block; font-size: 12px; padding: 0 6px; border-radius: 8px;
         background: #e8e8ec; color: #333; margin-left: 6px; }
.badge.low { background: #f5d76e; } .badge.base { background: #cfe0f3; }
figure { margin: 14px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.table-wrap { overflow-x: auto; }
footer { margin-top: 48px; font-size: 13px; color: var(--muted); }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _present(x: Any) -> bool:
    return not is_missing(x)


def _num(x: Any) -> float | None:
    return float(x) if _present(x) else None


def _pct(x: Any) -> float | None:
    return None if not _present(x) else float(x) * 100.0


def _is_true(col: pd.Series) -> pd.Series:
    """Boolean mask of a nullable boolean column (null -> False)."""
    return col.map(lambda v: v is True or v is np.True_).astype(bool)


def _txt(x: Any, default: str = "—") -> str:
    return str(x) if _present(x) and str(x) != "" else default


def _fmt(x: Any, fmt: str) -> str:
    return fmt.format(x) if _present(x) else "—"


class _Page:
    """Accumulates the HTML sections of one report."""

    def __init__(self, *, title: str, embed: bool) -> None:
        self.title, self.embed = title, embed
        self.parts: list[str] = []
        self.figures: set[str] = set()  # file names referenced

    def img(self, path: Path, alt: str, caption: str) -> str:
        self.figures.add(path.name)
        if self.embed:
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        else:
            src = f"{FIGURES_DIR}/{path.name}"
        return (
            f'<figure><img src="{_e(src)}" alt="{_e(alt)}" loading="lazy">'
            f"<figcaption>{caption}</figcaption></figure>"
        )

    def header(self, results: Path, videos: pd.DataFrame, analysed: pd.DataFrame) -> None:
        counts = videos["status"].value_counts().to_dict() if len(videos) else {}
        n_subj = analysed["subject"].nunique()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
        self.parts.append(
            f"<header><h1>{_e(self.title)}</h1><p class=meta>Generated {now} from "
            f"<code>{_e(results)}</code> · recordings: {_e(summary)} · "
            f"subjects with analysed sessions: {n_subj}</p></header>"
        )

    def caveats(self, settings: TrendSettings) -> None:
        self.parts.append(
            "<section class=note><strong>Read with care.</strong> These numbers summarise an "
            "automatic facial-expression classifier trained on posed and web images (FER-2013 / "
            "FER+). They describe visible expressions of the face chosen as the patient, not "
            "felt emotion, and are not a clinical measure. Surprise is counted as neither "
            "positive nor negative by default. Compare sessions recorded and processed the same "
            "way (camera, lighting, settings). Check the data-quality columns before reading "
            "a change: a session with little face time is not judged. "
            f"Flags — {_e(settings.describe())}. "
            "Definitions: docs/indices.md.</section>"
        )

    def departures(self, dep: pd.DataFrame | None) -> None:
        self.parts.append("<section id=departures><h2>Departures from baseline</h2>")
        if dep is None or dep.empty:
            self.parts.append(
                "<p class=muted>No session departs from its subject's baseline.</p></section>"
            )
            return
        rows = []
        for r in dep.sort_values(
            ["subject", "session_number", "index"], na_position="last"
        ).to_dict("records"):
            share = r["index"].startswith("share_")
            k, f, fs = (
                (100.0, "{:.0f}", "{:+.0f}")
                if share
                else (1.0, value_format(r["index"]), "{:+.2f}")
            )
            sd = ("{:.0f}" if share else "{:.2f}").format(r["baseline_sd"] * k)
            rows.append(
                f"<tr><td class=l>{_e(_txt(r['subject']))}</td>"
                f"<td class=l>{_e(_txt(r['session_date']))}</td>"
                f"<td class=l>{_e(_txt(r['file_name'], r['video_id']))}</td>"
                f"<td class=l>{_e(index_label(r['index']))}</td>"
                f"<td class=dep>{f.format(r['value'] * k)}</td>"
                f"<td>{f.format(r['baseline_mean'] * k)} ± {sd}</td>"
                f"<td>{fs.format(r['change'] * k)}</td><td>{r['z']:+.1f}</td></tr>"
            )
        self.parts.append(
            "<div class=table-wrap><table><thead><tr><th class=l>subject</th><th class=l>date</th>"
            "<th class=l>recording</th><th class=l>index</th><th>value</th>"
            "<th>baseline mean ± SD</th>"
            "<th>change</th><th>z (SD units)</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table></div></section>"
        )

    def nav(self, subjects: list[str | None]) -> None:
        if subjects:
            links = " ".join(
                f'<a href="#{_anchor(s)}">{_e(s or "no subject")}</a>' for s in subjects
            )
            self.parts.append(f"<nav><strong>Subjects:</strong> {links}</nav>")

    def subject(
        self,
        subj: str | None,
        mine: pd.DataFrame,
        faces: pd.DataFrame,
        tr: pd.DataFrame,
        trend_png: Path,
        timelines: list[tuple[Mapping[str, Any], Path]],
        indices: Sequence[str],
        classes: tuple[str, ...],
        settings: TrendSettings,
    ) -> None:
        name = subj if subj is not None else "No subject"
        self.parts.append(f'<section id="{_anchor(subj)}"><h2>{_e(name)}</h2>')
        self.parts.append(
            self.img(
                trend_png,
                f"Indices of {name} across sessions",
                "Each panel: one index per session. Blue band: baseline mean ± "
                f"{settings.threshold:g} × max(SD, {settings.sd_floor:g}); squares: baseline "
                "sessions; dashed: rolling mean; red circles: departures; hollow grey: too little "
                "face time to judge.",
            )
        )
        self.parts.append("<h3>Sessions (patient face)</h3>")
        self.parts.append(self._sessions_table(mine, faces, tr, indices, classes, settings))
        self.parts.append("<h3>Timelines</h3>")
        for s, png in timelines:
            self.parts.append(
                self.img(
                    png,
                    f"Emotion timeline of {s.get('file_name') or s['video_id']}",
                    "Stacked smoothed probabilities of the patient face over time; the ribbon "
                    "below shows the emotion segments; hatched grey: face not detected.",
                )
            )
        self.parts.append("</section>")

    def _sessions_table(
        self,
        mine: pd.DataFrame,
        faces: pd.DataFrame,
        tr: pd.DataFrame,
        indices: Sequence[str],
        classes: tuple[str, ...],
        settings: TrendSettings,
    ) -> str:
        flags = {(r["video_id"], r["index"]): r for r in tr.to_dict("records")}
        number = {r["video_id"]: r["session_number"] for r in tr.to_dict("records")}
        n_faces = faces.groupby("video_id")["face_id"].count().to_dict()
        extra = [c for c in ("valence_sd",) if c not in indices]
        shown = [*[c for c in indices if not c.startswith("share_")], *extra,
                 *[share_col(c) for c in classes]]  # fmt: skip
        head = (
            "<tr><th>#</th><th class=l>date</th><th class=l>recording</th><th>face s</th>"
            "<th>face %</th><th>det score</th><th class=l>patient face</th>"
            "<th class=l>dominant</th>"
            + "".join(f"<th>{_e(index_label(c))}</th>" for c in shown)
            + "</tr>"
        )
        body = []
        for s in mine.to_dict("records"):
            vid = s["video_id"]
            low = not (_num(s["face_present_s"]) or 0.0) >= settings.min_face_s
            base = any(bool(flags.get((vid, c), {}).get("in_baseline")) for c in indices)
            cls = "low" if low else ("base" if base else "")
            low_text = "no face" if s["patient_rule"] == RULE_NO_FACE else "low face time"
            badge = (f'<span class="badge low">{low_text}</span>' if low else "") + (
                '<span class="badge base">baseline</span>' if base else ""
            )
            if s["patient_rule"] == RULE_NO_FACE:
                who = "none found"
            else:
                rule = "override" if s["patient_rule"] == RULE_OVERRIDE else "longest"
                who = f"{int(s['face_id'])} of {n_faces.get(vid, 1)} · {rule}"
            cells = [
                f"<td>{_e(number.get(vid, ''))}</td>",
                f"<td class=l>{_e(s['session_date'] if _present(s['session_date']) else '—')}</td>",
                f"<td class=l>{_e(_txt(s['file_name'], vid))}{badge}</td>",
                f"<td>{_fmt(s['face_present_s'], '{:.0f}')}</td>",
                f"<td>{_fmt(_pct(s['face_present_ratio']), '{:.0f}')}</td>",
                f"<td>{_fmt(s['mean_det_score'], '{:.2f}')}</td>",
                f"<td class=l>{_e(who)}</td>",
                f"<td class=l>{_e(_txt(s['dominant_emotion']))}</td>",
            ]
            for c in shown:
                k, f = (100.0, "{:.0f}") if c.startswith("share_") else (1.0, value_format(c))
                v = _num(s.get(c))
                text = "—" if v is None else f.format(v * k)
                r = flags.get((vid, c))
                if r is not None and r.get("departure") is True:
                    title = (f"z = {r['z']:+.1f}; baseline {r['baseline_mean'] * k:.2f} ± "
                             f"{r['baseline_sd'] * k:.2f}")  # fmt: skip
                    cells.append(f'<td class=dep title="{_e(title)}">{text}</td>')
                else:
                    cells.append(f"<td>{text}</td>")
            body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
        return (
            "<div class=table-wrap><table><thead>" + head + "</thead><tbody>" + "".join(body)
            + "</tbody></table></div><p class=muted>face s: seconds the patient face was seen; "
            "face %: of sampled frames; shares in % of face-present time; red: departure from "
            "baseline (hover for z).</p>"
        )  # fmt: skip

    def not_analysed(self, videos: pd.DataFrame) -> None:
        bad = videos.loc[videos["status"] != STATUS_OK] if len(videos) else videos
        if bad.empty:
            return
        rows = "".join(
            f"<tr><td class=l>{_e(_txt(r['subject']))}</td><td class=l>{_e(r['path'])}</td>"
            f"<td class=l>{_e(r['status'])}</td><td class=l>{_e(_txt(r['error'], ''))}</td></tr>"
            for r in bad.sort_values("path").to_dict("records")
        )
        self.parts.append(
            "<section id=not-analysed><h2>Recordings not analysed</h2><div class=table-wrap><table>"
            "<thead><tr><th class=l>subject</th><th class=l>path</th><th class=l>status</th>"
            f"<th class=l>reason</th></tr></thead><tbody>{rows}</tbody></table></div></section>"
        )

    def footer(self, settings: TrendSettings, sessions: pa.Table) -> None:
        meta = (sessions.schema.metadata or {}).get(b"fervid.index_settings", b"{}").decode()
        self.parts.append(
            f"<footer>fervid {_e(__version__)} · index settings {_e(meta)} · trend settings "
            f"{_e(json.dumps(settings.to_json()))}</footer>"
        )

    def render(self) -> str:
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(self.parts)
            + "\n</body></html>\n"
        )


def _anchor(subject: str | None) -> str:
    return "subject-" + (_safe(subject) if subject is not None else "none")
