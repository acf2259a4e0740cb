"""A self-contained HTML report of a fervid output: verdict, baselines, trends, timelines.

:func:`build_report` renders ``templates/report.html.j2`` (Jinja2, autoescape on: every
value from the data is escaped by the template, never pasted into markup) into
``<report_dir>/index.html``, with PNG figures:

- ``trend_<subject>_<key>.png`` per subject: every followed index across sessions with
  its baseline band (baseline mean ± threshold × max(SD, floor)), rolling mean, and
  departures circled; the per-emotion panels share one y-range so that their heights
  compare;
- ``timeline_<video>_<key>.png`` per analysed recording of a subject: the patient
  face's stacked smoothed probabilities over time, its emotion segments as a ribbon,
  and the spans without that face hatched grey.

The page leads with a :class:`~fervid.longitudinal.trends.Verdict` (departures / no
departures among judged sessions / nothing could be judged) and each subject's baseline
status; recordings without a subject are listed as *unassigned* and form no trend.
Definitions of every number and a provenance footer (fervid version, model, settings
hash, the data's dates) are part of the page.

The page needs no network: CSS is inline and figures are relative files under
``figures/``, or, with ``embed_images=True``, inlined as base64 so that ``index.html``
is the only file written. ``<key>`` is a hash of what a figure shows, so a nightly
refresh redraws only the figures whose data changed, and figures no longer referenced
are removed. Figures are drawn with matplotlib's object API (no pyplot state), Agg.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import itertools
import json
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fervid import __version__
from fervid.longitudinal.colors import emotion_color
from fervid.longitudinal.missing import is_missing
from fervid.longitudinal.settings import LongitudinalSettings
from fervid.longitudinal.summary import (
    FALLBACK_INTERVAL_S,
    NEGATIVE_EMOTIONS,
    POSITIVE_EMOTIONS,
    RULE_NO_FACE,
    RULE_OVERRIDE,
    IndexSettings,
    class_names_of,
    id_pattern_warnings,
    load_sessions,
    patient_warnings,
    unassigned_recordings,
)
from fervid.longitudinal.trends import (
    TrendSettings,
    baseline_status,
    check_subject,
    default_indices,
    trends_with,
    value_format,
    verdict,
    verdict_text,
)
from fervid.output.atomic import atomic_path, write_text
from fervid.output.schema import (
    ANALYSED_STATUSES,
    FRAMES,
    META_MODEL_SHA256,
    META_SETTINGS,
    SEGMENTS,
    VIDEOS,
    share_col,
    smooth_col,
)
from fervid.output.store import read_results

REPORT_FILE = "index.html"
FIGURES_DIR = "figures"
TEMPLATES = Path(__file__).with_name("templates")
#: Part of every figure's cache key: bump it when the drawing code changes.
RENDER_VERSION = "3"
#: The shipped model's file name, shown when the run used the default model.
DEFAULT_MODEL_NAME = "fervid-mobilenetv2-fer.safetensors (shipped default)"

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
    # Labels come from the data (subjects, file names, classes): "P$x^$2" is a name, not
    # TeX; with math parsing on it was a ParseSyntaxException.
    "text.parse_math": False,
}


# --------------------------------------------------------------------------- words
#: index -> (title, unit, definition): what a reader sees instead of column names.
_INDEX_WORDS: dict[str, tuple[str, str, str]] = {
    "valence": (
        "Expression valence (−1 negative … +1 positive)",
        "−1 (only negative expressions) to +1 (only happy)",
        "Positive minus negative expression: the time-weighted mean of P(happy) minus "
        "P(angry, disgust, fear or sad). +1: only happy; −1: only negative expressions; 0: "
        "neutral, or positive and negative in balance (see the emotion shares).",
    ),
    "expressivity": (
        "Expressiveness (how much the expression changes)",
        "0 (one steady expression) upwards; at most 0.86 with 7 classes",
        "How far the expression moves away from the session's own average expression, "
        "moment by moment (mean total-variation distance between probability vectors). 0: "
        "the face keeps one expression all session, whichever it is.",
    ),
    "valence_sd": (
        "Valence variability (SD within the session)",
        "0 (steady) to 1",
        "How much the expression valence varies within the session: the standard deviation "
        "of moment-to-moment valence.",
    ),
    "positive_affect": (
        "Positive expression",
        "0 to 1",
        "Mean probability of a positive expression (" + ", ".join(POSITIVE_EMOTIONS) + ").",
    ),
    "negative_affect": (
        "Negative expression",
        "0 to 1",
        "Mean probability of a negative expression (" + ", ".join(NEGATIVE_EMOTIONS) + ").",
    ),
    "positive_share": ("Positive time", "% of face time", "Share of time labelled positive."),
    "negative_share": ("Negative time", "% of face time", "Share of time labelled negative."),
}


def index_title(index: str) -> str:
    """Plain-language name of an index: ``share_happy`` -> ``happy (% of time)``."""
    if index.startswith("share_"):
        return f"{index.removeprefix('share_')} (% of time)"
    if index.startswith("mean_smooth_"):
        return f"P({index.removeprefix('mean_smooth_')}), mean"
    return _INDEX_WORDS.get(index, (index, "", ""))[0]


def index_unit(index: str) -> str:
    if index.startswith("share_"):
        return "% of the time the face was visible"
    if index.startswith("mean_smooth_"):
        return "probability, 0 to 1"
    return _INDEX_WORDS.get(index, ("", "", ""))[1]


def _short_title(index: str) -> str:
    """Column header, with its unit: ``happy %``, ``Expression valence (−1 to +1)``."""
    if index.startswith("share_"):
        return f"{index.removeprefix('share_')} %"
    name = index_title(index).split(" (")[0]
    return f"{name} ({_UNITS[index]})" if index in _UNITS else name


#: Short units of the index columns (the definitions below the tables say more).
_UNITS = {"valence": "−1 to +1", "expressivity": "0: steady", "valence_sd": "0: steady",
          "positive_affect": "0 to 1", "negative_affect": "0 to 1"}  # fmt: skip


def _definitions(indices: Sequence[str], settings: TrendSettings) -> list[dict[str, str]]:
    """The glossary shown in the report: every column and rule in plain words."""
    defs = []
    for idx in indices:
        if idx.startswith("share_"):
            continue
        title, unit, text = _INDEX_WORDS.get(idx, (idx, "", ""))
        defs.append({"term": f"{title} ({unit})" if unit else title, "text": text})
    defs += [
        {"term": "<emotion> %", "text": "Share of the time the patient face was visible that "
         "the classifier labelled that emotion (after smoothing over time)."},
        {"term": "Face visible (s, %)", "text": "Seconds the patient face was detected, and "
         "the share of sampled frames it was in."},
        {"term": "Detector confidence (0 to 1)", "text": "Mean score of the face detector on "
         "the patient face; low values mean small, dim or turned faces."},
        {"term": "Patient face", "text": "The face present longest in the recording, unless "
         "an override names another (\"k of n\": face k of n faces seen)."},
        {"term": "Usable session", "text": f"The patient face was visible at least "
         f"{settings.min_face_s:g} s. Other sessions are shown but never judged."},
        {"term": "Baseline", "text": _baseline_rule(settings) + " Its mean and standard "
         "deviation (SD) are the subject's own reference."},
        {"term": "z", "text": "(value − baseline mean) / max(baseline SD, "
         f"{settings.sd_floor:g}): distance from the baseline in baseline SDs."},
        {"term": "Departure", "text": f"A usable session after the baseline with |z| > "
         f"{settings.threshold:g}. With only a few baseline sessions chance departures are "
         "common: read one as 'look at this session', and confirm it in its timeline."},
        {"term": "Rolling mean", "text": f"Mean of the usable values among the last "
         f"{settings.window} sessions."},
    ]  # fmt: skip
    return defs


def _baseline_rule(settings: TrendSettings) -> str:
    if settings.baseline_dates is not None:
        first, last = settings.baseline_dates
        return f"The subject's usable sessions dated {first} to {last} (at least 2)."
    return f"The subject's first {settings.baseline_n} usable sessions."


# --------------------------------------------------------------------------- build
def build_report(
    results: Path,
    report_dir: Path,
    *,
    sessions: pa.Table | None = None,
    patient_override: Mapping[str, int] | Path | str | None = None,
    settings: LongitudinalSettings | None = None,
    subject: str | None = None,
    indices: Sequence[str] | None = None,
    embed_images: bool = False,
    title: str = "fervid report",
) -> Path:
    """Write the report of the fervid output ``results`` (``dir/`` or ``results.parquet``)
    into ``report_dir``; return the path of ``index.html``.

    ``sessions``: a sessions table already computed (else
    :func:`~fervid.longitudinal.summary.load_sessions` with ``patient_override``).
    ``settings``: the longitudinal settings (patient face, indices, trends), printed in the
    report. ``subject``: only this subject (an :class:`InputError` when it has no analysed
    session). ``indices``: the indices to
    follow (default: valence, expressivity, each share). ``embed_images``: inline the
    figures; ``index.html`` is then the only file written.
    """
    results, report_dir = Path(results), Path(report_dir)
    settings = settings if settings is not None else LongitudinalSettings()
    index_settings, trend_settings = settings.index, settings.trends
    videos_tbl = read_results(results, VIDEOS)
    if sessions is None:
        sessions = load_sessions(
            results, patient_override, settings=index_settings, patient=settings.patient
        )
    videos, sdf = _plain(videos_tbl.to_pandas()), _plain(sessions.to_pandas())
    if subject is not None:
        check_subject(sessions, subject)
        sdf = sdf.loc[sdf["subject"] == subject]
        videos = videos.loc[videos["subject"] == subject]
    index_cols = tuple(indices) if indices is not None else default_indices(sessions)
    classes = class_names_of(sessions, "share_")
    patients = sdf.loc[sdf["is_patient"].astype(bool)]
    analysed = patients.loc[patients["status"].isin([str(s) for s in ANALYSED_STATUSES])]
    assigned = analysed.loc[analysed["subject"].notna()]
    trends_tbl = trends_with(assigned, trend_settings, indices=index_cols)
    trends = _plain(trends_tbl.to_pandas())

    figures = _Figures(report_dir / FIGURES_DIR, embed=embed_images)
    status = {b.subject: b for b in baseline_status(trends_tbl)}
    subjects = []
    for subj in sorted(assigned["subject"].unique().tolist()):
        tr = trends.loc[trends["subject"] == subj]
        order = tr.drop_duplicates("video_id").sort_values("session_number")
        mine = assigned.loc[assigned["subject"] == subj]
        mine = mine.set_index("video_id").loc[order["video_id"]].reset_index()
        faces = sdf.loc[sdf["video_id"].isin(mine["video_id"])]
        key = _trend_key(tr, trend_settings)
        panels = [
            figures.get(
                "panel", f"{subj}_{index}", key, partial(_panel_figure, tr, index, trend_settings),
                alt=f"{index_title(index)} of {subj} across sessions", caption="",
            )
            for index in index_cols
        ]  # fmt: skip
        # the whole trend in one picture, linked for printing (a file: not in --embed)
        trend_fig = None if embed_images else figures.get(
            "trend", str(subj), key, partial(_trend_figure, tr, index_cols, trend_settings, subj),
            alt=f"Indices of {subj} across sessions", caption=_trend_caption(trend_settings),
        )  # fmt: skip
        timelines = [
            figures.get(
                "timeline", _txt(s["file_name"], s["video_id"]), _timeline_key(s, classes),
                partial(_timeline_figure, results, s, classes),
                alt=f"Emotion timeline of {_txt(s['file_name'], s['video_id'])}",
                caption=f"{_txt(s['file_name'], s['video_id'])}: stacked smoothed "
                "probabilities of the patient face over time; the ribbon below shows the "
                "emotion segments; hatched grey: face not detected.",
            )
            | {"id": _timeline_anchor(s["video_id"])}
            for s in mine.to_dict("records")
        ]  # fmt: skip
        subjects.append(
            _subject_context(subj, mine, faces, tr, index_cols, classes, trend_settings)
            | {
                "baseline": status[subj].describe(),
                "trend": trend_fig,
                "panels": panels,
                "trend_caption": _trend_caption(trend_settings),
                "timelines": timelines,
            }
        )

    context = {
        "title": title,
        "css": (TEMPLATES / "report.css").read_text(encoding="utf-8"),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "source": str(results),
        "counts": _status_counts(videos),
        "n_subjects": len(subjects),
        "n_unassigned": len(unassigned_recordings(patients)),
        "verdict": {"kind": str(verdict(trends_tbl)), "text": verdict_text(trends_tbl)},
        "baselines": [
            {"subject": b.subject, "anchor": _anchor(b.subject), "text": b.describe()}
            for b in status.values()
        ],
        "warnings": _warnings(patients),
        "settings_text": "Flags — " + trend_settings.describe(),
        "settings_used": settings.describe(),
        "threshold": f"{trend_settings.threshold:g}",
        "departure_head": _head(
            ["subject", "date", "recording", "index", "value", "baseline mean ± SD", "change", "z"],
            left=range(4),
        ),
        "departures": _departure_rows(trends),
        "subjects": subjects,
        "unassigned_head": _head(
            [
                "recording",
                "status",
                "why no subject",
                "face visible (s)",
                "dominant",
                "Expression valence (−1 … +1)",
            ],
            left=(0, 1, 2, 4),
        ),
        "unassigned": _unassigned_rows(patients),
        "not_analysed_head": _head(["subject", "recording", "status", "reason"], left=range(4)),
        "not_analysed": _not_analysed_rows(videos),
        "definitions": _definitions(_shown_indices(index_cols, classes), trend_settings),
        "provenance": _provenance(videos_tbl, videos, sessions, index_settings, trend_settings),
    }
    html = _environment().get_template("report.html.j2").render(context)
    report_dir.mkdir(parents=True, exist_ok=True)
    out = report_dir / REPORT_FILE
    write_text(out, html)
    figures.remove_stale()
    return out


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # data (file names, subjects, errors, captions) is never markup
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the build, not the page
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Categorical (dictionary) columns as plain objects: comparisons and groupbys then
    behave as for strings."""
    cats = [c for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)]
    return df.astype({c: object for c in cats}) if cats else df


# --------------------------------------------------------------------------- context
def _head(names: Sequence[str], *, left: Sequence[int] = ()) -> list[dict[str, str]]:
    """Header cells; columns at positions ``left`` are left-aligned (text, not numbers)."""
    return [{"text": n, "cls": "l" if i in left else "", "title": ""} for i, n in enumerate(names)]


def _c(
    text: Any, cls: str = "", *, z: str = "", title: str = "", href: str = "", badges=()
) -> dict:
    return {"text": "—" if text is None else str(text), "cls": cls, "z": z, "title": title,
            "href": href, "badges": list(badges)}  # fmt: skip


def _timeline_anchor(video_id: str) -> str:
    """Where a session's timeline is: the departures and indices tables link to it."""
    return "timeline-" + _safe(video_id)


def _status_counts(videos: pd.DataFrame) -> str:
    counts = videos["status"].astype(str).value_counts().to_dict() if len(videos) else {}
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"


def _warnings(patients: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for lines in (id_pattern_warnings(patients), patient_warnings(patients)):
        if lines:
            out.append({"text": lines[0], "paths": [ln.strip() for ln in lines[1:]]})
    return out


def _scale(index: str) -> tuple[float, str]:
    """(factor, format) of an index's displayed value: shares in percent."""
    if index.startswith("share_") or index in ("positive_share", "negative_share"):
        return 100.0, "{:.0f}"
    return 1.0, value_format(index)


def _departure_rows(trends: pd.DataFrame) -> list[dict]:
    dep = trends.loc[_is_true(trends["departure"])]
    rows = []
    for r in dep.sort_values(["subject", "session_number", "index"]).to_dict("records"):
        k, f = _scale(r["index"])
        sd = ("{:.0f}" if k == 100.0 else "{:.2f}").format(r["baseline_sd"] * k)
        delta = "{:+.0f}" if k == 100.0 else "{:+.2f}"
        rows.append({"cls": "", "cells": [
            _c(r["subject"], "l"), _c(_txt(r["session_date"]), "l date"),
            _c(_txt(r["file_name"], r["video_id"]), "l name",
               href="#" + _timeline_anchor(r["video_id"])),
            _c(index_title(r["index"]), "l"),
            _c(f.format(r["value"] * k) + (" ▲" if r["change"] > 0 else " ▼"), "dep"),
            _c(f"{f.format(r['baseline_mean'] * k)} ± {sd}"),
            _c(delta.format(r["change"] * k)), _c(f"{r['z']:+.1f}"),
        ]})  # fmt: skip
    return rows


def _shown_indices(indices: Sequence[str], classes: tuple[str, ...]) -> list[str]:
    """Columns of the indices table: the followed non-share indices, valence SD (a
    data-quality companion of valence), then every emotion share."""
    return [*[c for c in indices if not c.startswith("share_")],
            *[c for c in ("valence_sd",) if c not in indices],
            *[share_col(c) for c in classes]]  # fmt: skip


def _subject_context(
    subj: str,
    mine: pd.DataFrame,
    faces: pd.DataFrame,
    tr: pd.DataFrame,
    indices: Sequence[str],
    classes: tuple[str, ...],
    settings: TrendSettings,
) -> dict[str, Any]:
    """The two tables of one subject: data quality, and indices with their z. Two narrow
    tables rather than one wide one: the page fits 1280 px without a horizontal scroll."""
    flags = {(r["video_id"], r["index"]): r for r in tr.to_dict("records")}
    number = {r["video_id"]: r["session_number"] for r in tr.to_dict("records")}
    n_faces = faces.groupby("video_id")["face_id"].count().to_dict()
    shown = _shown_indices(indices, classes)
    quality, values = [], []
    for s in mine.to_dict("records"):
        vid = s["video_id"]
        low = not (_num(s["face_present_s"]) or 0.0) >= settings.min_face_s
        base = any(bool(flags.get((vid, c), {}).get("in_baseline")) for c in indices)
        cls = "low" if low else ("base" if base else "")
        badges = []
        if low:
            no_face = s["patient_rule"] == RULE_NO_FACE
            badges.append({"cls": "low", "text": "no face" if no_face else "low face time"})
        if base:
            badges.append({"cls": "base", "text": "baseline"})
        if s["patient_rule"] == RULE_NO_FACE:
            who = "none found"
        else:
            # people, phantoms left out (sessions' n_faces); older tables: their face rows
            people = _num(s.get("n_faces"))
            who = _patient_words(s, int(people) if people is not None else n_faces.get(vid, 1))
        num, date = number.get(vid, ""), _txt(s["session_date"])
        quality.append({"cls": cls, "cells": [
            _c(num), _c(date, "l date"),
            _c(_txt(s["file_name"], vid), "l name", badges=badges,
               href="#" + _timeline_anchor(vid)),
            _c(_fmt(s["face_present_s"], "{:.0f}")),
            _c(_fmt(_pct(s["face_present_ratio"]), "{:.0f}")),
            _c(_fmt(s["mean_det_score"], "{:.2f}")), _c(who, "l"),
            _c(_txt(s["dominant_emotion"]), "l"),
        ]})  # fmt: skip
        cells = [_c(num), _c(date, "l date")]
        for c in shown:
            k, f = _scale(c)
            v = _num(s.get(c))
            r = flags.get((vid, c))
            z = _num(r.get("z")) if r is not None and not r.get("in_baseline") else None
            ztxt = "" if z is None else f"z {z:+.1f}"
            if r is not None and r.get("departure") is True:
                arrow = " ▲" if z is not None and z > 0 else " ▼"
                cells.append(_c(_fmt(None if v is None else v * k, f) + arrow, "dep", z=ztxt))
            else:
                cells.append(_c(None if v is None else f.format(v * k), z=ztxt))
        values.append({"cls": cls, "cells": cells})
    quality_names = ["#", "date", "recording", "face visible (s)",
                     "face visible (% of samples)", "detector confidence (0–1)",
                     "patient face (rule)", "dominant expression"]  # fmt: skip
    return {
        "name": subj,
        "anchor": _anchor(subj),
        "quality_head": _head(quality_names, left=(1, 2, 6, 7)),
        "quality_rows": quality,
        "index_head": _head(["#", "date", *[_short_title(c) for c in shown]], left=(1,)),
        "index_rows": values,
    }


#: How each ``patient_rule`` reads in the report.
_RULE_WORDS = {
    RULE_OVERRIDE: "named by the override",
    "longest_present": "visible longest",
    "largest": "largest face",
    "left": "leftmost face",
    "right": "rightmost face",
    "top": "topmost face",
    "bottom": "lowest face",
    "region": "in the patient's screen region",
}


def _patient_words(s: Mapping[str, Any], n_faces: int) -> str:
    """``face 0 of 2 (visible longest; ambiguous)``."""
    rule = _RULE_WORDS.get(str(s["patient_rule"]), str(s["patient_rule"]).replace("_", " "))
    if _present(s.get("patient_ambiguous")) and bool(s["patient_ambiguous"]):
        rule += "; ambiguous: another face is as likely"
    pieces = _num(s.get("track_pieces"))
    if pieces is not None and pieces > 1:  # left the frame and came back
        rule += f"; joined from {int(pieces)} pieces"
    faces = f"{n_faces} face{'s' if n_faces != 1 else ''}"
    return f"face {int(s['face_id'])} of {faces} ({rule})"


def _unassigned_rows(patients: pd.DataFrame) -> list[dict]:
    rows = []
    for r in unassigned_recordings(patients).to_dict("records"):
        rows.append({"cls": "", "cells": [
            _c(r["path"], "l name"), _c(r["status"], "l"), _c(r["reason"], "l"),
            _c(_fmt(r.get("face_present_s"), "{:.0f}")), _c(_txt(r.get("dominant_emotion")), "l"),
            _c(_fmt(r.get("valence"), value_format("valence"))),
        ]})  # fmt: skip
    return rows


def _not_analysed_rows(videos: pd.DataFrame) -> list[dict]:
    if not len(videos):
        return []
    bad = videos.loc[~videos["status"].isin([str(s) for s in ANALYSED_STATUSES])]
    rows = []
    for r in bad.sort_values("path").to_dict("records"):
        reason = _txt(r.get("error"), "")
        if _present(r.get("duplicate_of")):
            reason = f"duplicate of {r['duplicate_of']} (analysed there)"
        rows.append({"cls": "", "cells": [
            _c(_txt(r["subject"]), "l"), _c(r["path"], "l name"), _c(r["status"], "l"),
            _c(reason, "l"),
        ]})  # fmt: skip
    return rows


def _provenance(
    videos_tbl: pa.Table,
    videos: pd.DataFrame,
    sessions: pa.Table,
    index_settings: IndexSettings,
    trend_settings: TrendSettings,
) -> list[tuple[str, str]]:
    """Footer lines: what made these numbers, in words rather than raw JSON."""
    meta = videos_tbl.schema.metadata or {}
    run = json.loads(meta.get(META_SETTINGS, b"{}") or b"{}")
    model_path = (run.get("classify") or {}).get("model_path")
    analysed = videos.loc[videos["status"].isin([str(s) for s in ANALYSED_STATUSES])]
    shas = sorted({str(x) for x in analysed.get("model_sha256", pd.Series()) if _present(x)})
    shas = shas or ([meta[META_MODEL_SHA256].decode()] if META_MODEL_SHA256 in meta else [])
    hashes = sorted({str(x) for x in analysed["settings_hash"] if _present(x)})
    versions = sorted({str(x) for x in analysed["fervid_version"] if _present(x)})
    dates = pd.to_datetime(analysed["session_date"]).dropna()
    done = pd.to_datetime(analysed["processed_at"], utc=True).dropna()
    return [
        ("report made by", f"fervid {__version__}"),
        ("recordings processed by", ", ".join(f"fervid {v}" for v in versions) or "—"),
        ("model", _model_name(run, model_path)),
        ("model sha256", ", ".join(shas) or "—"),
        ("processing settings hash", (", ".join(hashes) or "—")
         + (" (several: compare only sessions with the same hash)" if len(hashes) > 1 else "")),
        ("session dates", _range(dates, "%Y-%m-%d")),
        ("processed", _range(done, "%Y-%m-%d %H:%M UTC")),
        ("indices", f"surprise counted as positive: {index_settings.surprise_weight:g} "
         f"(0: neither positive nor negative); sessions table {_sessions_id(sessions)}"),
        ("flags", trend_settings.describe()),
    ]  # fmt: skip


def _model_name(run: Mapping[str, Any], model_path: str | None) -> str:
    if model_path:
        return Path(model_path).name
    # no path in the run settings: the shipped model, unless the files carry no settings
    return DEFAULT_MODEL_NAME if run else "unknown (the results carry no run settings)"


def _range(ts: pd.Series, fmt: str) -> str:
    if ts.empty:
        return "—"
    lo, hi = ts.min().strftime(fmt), ts.max().strftime(fmt)
    return lo if lo == hi else f"{lo} to {hi}"


def _sessions_id(sessions: pa.Table) -> str:
    key = (sessions.schema.metadata or {}).get(b"fervid.sessions_key")
    return f"key {key.decode()[:12]}" if key else "computed in memory"


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


class _Figures:
    """Figures of one report: cached PNG files under ``fig_dir`` named by what they show,
    or (``embed``) PNG bytes inlined as data URIs with nothing written to disk."""

    def __init__(self, fig_dir: Path, *, embed: bool) -> None:
        self.fig_dir, self.embed = fig_dir, embed
        self.used: set[str] = set()

    def get(
        self, kind: str, name: str, key: str, draw: Callable[[], Any], *, alt: str, caption: str
    ) -> dict[str, Any]:
        if self.embed:
            buf = io.BytesIO()
            _savefig(draw(), buf)
            data = buf.getvalue()
            src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        else:
            path = self.fig_dir / f"{kind}_{_safe(name)}_{key}.png"
            if not path.exists():
                self.fig_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    _savefig(draw(), tmp)
            self.used.add(path.name)
            data = path.read_bytes()[:24]
            src = f"{FIGURES_DIR}/{path.name}"
        width, height = struct.unpack(">II", data[16:24])  # the PNG header's IHDR
        return {"src": src, "alt": alt, "caption": caption, "width": width, "height": height,
                "id": ""}  # fmt: skip

    def remove_stale(self) -> None:
        """Remove figures of an older report that this one no longer shows."""
        if self.embed or not self.fig_dir.is_dir():
            return
        for p in self.fig_dir.glob("*.png"):
            if p.name not in self.used and re.match(r"(timeline|trend|panel)_.*\.png$", p.name):
                p.unlink(missing_ok=True)


def _savefig(fig: Any, dest: Any) -> None:
    fig.savefig(dest, format="png", dpi=100, metadata={"Software": None})


# --------------------------------------------------------------------------- figures: timeline
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
    if face is not None and not is_missing(face):
        face = int(face)
        cols = ["face_id", "timestamp_s", *[smooth_col(c) for c in classes]]
        vid = s["video_id"]
        f = read_results(results, FRAMES, columns=cols, video_id=vid, missing_ok=True)
        f = f.to_pandas()
        f = f.loc[f["face_id"] == face].sort_values("timestamp_s")
        t = f["timestamp_s"].to_numpy(np.float64)
        probs = f[[smooth_col(c) for c in classes]].to_numpy(np.float64)
        seg_cols = ["face_id", "start_s", "end_s", "emotion"]
        g = read_results(results, SEGMENTS, columns=seg_cols, video_id=vid, missing_ok=True)
        g = _plain(g.to_pandas())
        g = g.loc[g["face_id"] == face]
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
        handles.append(Patch(label="face absent", **hatch))  # type: ignore[arg-type]
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
    xs: list[Any] = []
    ys: list[np.ndarray] = []
    start = 0
    nan_row = np.full((1, p.shape[1]), np.nan)
    for end in ends:
        xs += [t[start : end + 1], [t[end] + dt_s, t[end] + dt_s]]
        ys += [p[start : end + 1], p[end : end + 1], nan_row]
        start = int(end) + 1
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
def _trend_figure(
    tr: pd.DataFrame, indices: Sequence[str], settings: TrendSettings, subject: str | None
) -> Any:
    """Grid of one panel per index (3 across), with a legend: the whole trend in one
    picture, for printing and notebooks. The report page shows :func:`_panel_figure`s."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    ncols = 3
    nrows = max(1, math.ceil(len(indices) / ncols))
    first = tr.drop_duplicates("video_id").sort_values("session_number")
    with rc_context(_RC):
        fig = Figure(figsize=(15, 3.4 * nrows + 1.2), dpi=100, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
        for ax, index in zip(axes.flat, indices, strict=False):
            _draw_index(ax, tr, index, settings, first, _share_top(tr))
        for ax in list(axes.flat)[len(indices) :]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel(_x_label(first))
        _format_x(list(axes.flat), first)
        fig.legend(handles=_legend(settings), loc="outside lower center", ncols=4, frameon=False)
        fig.suptitle(f"{subject}: indices across sessions")
    return fig


def _panel_figure(tr: pd.DataFrame, index: str, settings: TrendSettings) -> Any:
    """One index across sessions, small enough to read on a phone (420 x 300 px); the
    report lays these out side by side on a wide screen and one under another on a
    narrow one. The emotion panels share the y-range of the whole trend."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    first = tr.drop_duplicates("video_id").sort_values("session_number")
    with rc_context(_RC):
        fig = Figure(figsize=(4.2, 3.0), dpi=100, layout="constrained")
        ax = fig.subplots()
        _draw_index(ax, tr, index, settings, first, _share_top(tr))
        ax.set_ylabel(_PANEL_LABELS.get(index, _axis_label(index)))  # short: 300 px tall
        ax.set_xlabel(_x_label(first))
        _format_x([ax], first, maxticks=4, minticks=2)
    return fig


#: y-axis labels of the small per-index panels that would not fit their height.
_PANEL_LABELS = {"valence": "negative ← → positive", "expressivity": "0: one steady expression"}


def _draw_index(
    ax: Any,
    tr: pd.DataFrame,
    index: str,
    settings: TrendSettings,
    first: pd.DataFrame,
    share_top: float,
) -> None:
    """One index's sessions on ``ax``: x the session dates (numbers when any is
    undated), the baseline band, rolling mean, departures and unjudged sessions."""
    dated = bool(len(first)) and first["session_date"].notna().all()
    d = tr.loc[tr["index"] == index].sort_values("session_number")
    x = pd.to_datetime(d["session_date"]).to_numpy() if dated else d["session_number"].to_numpy()
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
    rolling = d["rolling_mean"].astype(float).to_numpy() * k
    ax.plot(x, rolling, "--", color="#555555", linewidth=1.2)
    low = ~usable & ~np.isnan(y)
    ax.plot(x[low], y[low], "o", markerfacecolor="none", markeredgecolor="#999999", markersize=7)
    ax.scatter(x[dep], y[dep], s=220, facecolors="none", edgecolors="#c00000", linewidths=2.4,
               zorder=5)  # fmt: skip
    for xi in x[np.isnan(y)]:  # sessions without a face / value
        ax.axvline(xi, color="#b0b0b0", linestyle=":", linewidth=1.5)
    if index.startswith("share_"):  # one scale for every emotion
        ax.set_ylim(-0.03 * share_top, 1.03 * share_top)
    else:
        lo, hi = (-1.0, 1.0) if index == "valence" else (0.0, k)
        y0, y1 = ax.get_ylim()
        pad = 0.03 * (hi - lo)  # points on the range's edge stay whole
        ax.set_ylim(max(y0, lo - pad), min(max(y1, lo + 0.05 * (hi - lo)), hi + pad))
    ax.set_title(index_title(index).replace(" (% of time)", ""), wrap=True)
    ax.set_ylabel(_axis_label(index))
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    if not np.isfinite(y).any():
        ax.text(0.5, 0.5, "no usable session", transform=ax.transAxes, ha="center",
                color="#777777")  # fmt: skip


def _x_label(first: pd.DataFrame) -> str:
    dated = bool(len(first)) and first["session_date"].notna().all()
    return "session date" if dated else "session number"


def _format_x(
    axes: list[Any], first: pd.DataFrame, *, maxticks: int = 6, minticks: int = 5
) -> None:
    """Date ticks when every session is dated, else integer session numbers. (A narrow
    panel wants few ticks: minticks 2, or dates a few days apart find no interval.)"""
    from matplotlib import dates as mdates
    from matplotlib.ticker import MaxNLocator

    dated = bool(len(first)) and first["session_date"].notna().all()
    for ax in axes:
        if dated and first["session_date"].nunique() > 1:
            loc = mdates.AutoDateLocator(minticks=minticks, maxticks=maxticks)
            ax.xaxis.set_major_locator(loc)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        elif dated:  # one date: a date locator has no interval to pick
            ax.set_xticks(pd.to_datetime(first["session_date"]).to_numpy())
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(settings: TrendSettings) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Line2D([], [], color="#222222", marker="o", label="session"),
        Line2D([], [], color="#222222", marker="s", linestyle="none", markersize=8,
               label="baseline session"),
        Line2D([], [], color="#555555", linestyle="--",
               label=f"rolling mean (last {settings.window})"),
        Patch(color="#dbe7f3", label=f"baseline mean ± {settings.threshold:g} × SD"),
        Line2D([], [], marker="o", markersize=14, markerfacecolor="none",
               markeredgecolor="#c00000", markeredgewidth=2.4, linestyle="none",
               label="departure"),
        Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="#999999",
               linestyle="none", label="low face time (not judged)"),
        Line2D([], [], color="#b0b0b0", linestyle=":", linewidth=1.5,
               label="no value (no face)"),
    ]  # fmt: skip


def _share_top(tr: pd.DataFrame) -> float:
    """Top of the shared y-range of the emotion panels, in percent: the largest share
    rounded up to 10 (at least 10, at most 100)."""
    shares = tr.loc[tr["index"].astype(str).str.startswith("share_"), "value"].astype(float)
    top = float(np.nanmax(shares.to_numpy())) * 100.0 if shares.notna().any() else 10.0
    return float(min(100.0, max(10.0, math.ceil(top / 10.0) * 10.0)))


def _axis_label(index: str) -> str:
    if index.startswith("share_"):
        return "% of face-visible time"
    unit = index_unit(index)
    return {"valence": "negative ← → positive"}.get(index, unit) + (
        f", {unit}" if index == "valence" else ""
    )


def _index_color(index: str) -> str:
    if index.startswith("share_"):
        return emotion_color(index.removeprefix("share_"))
    return "#222222"


def _trend_caption(settings: TrendSettings) -> str:
    return (
        "One panel per index, one point per session. Blue band: the subject's baseline mean "
        f"± {settings.threshold:g} × max(SD, {settings.sd_floor:g}); squares: baseline "
        "sessions; dashed: rolling mean; red circles: departures; hollow grey: too little "
        "face time to judge. The emotion panels share one scale."
    )


# --------------------------------------------------------------------------- small helpers
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


def _anchor(subject: str) -> str:
    return "subject-" + _safe(subject)
