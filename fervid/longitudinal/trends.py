"""Per-subject trends across sessions: rolling means, change from baseline, departure flags.

Input: a sessions table (:func:`fervid.longitudinal.summary.summarize_sessions`). Only each session's
patient row of an analysed video (``is_patient`` and an analysed ``status``) with a
``subject`` is followed: recordings without a subject are *unassigned*
(:func:`fervid.longitudinal.summary.unassigned_recordings`) and never form a trend, since
nothing says they are one person. Sessions of a subject are ordered by ``session_date``;
sessions without a date follow, in processed order (``processed_at``, then ``video_id``).

For every index (valence, expressivity, each emotion share by default):

- a session is *usable* when its patient face was present at least ``min_face_s``
  seconds; unusable sessions keep their value but enter neither baselines, rolling means
  nor flags (a 3-second glimpse is not evidence of a change);
- ``rolling_mean``: at a usable session, the mean of the usable values among the last
  ``window`` sessions (null at sessions that are not usable);
- the *baseline*: the subject's first ``baseline_n`` usable sessions (or the usable
  sessions dated within ``baseline_dates``, at least 2); it has a mean and an SD
  (sample SD, ddof = 1);
- ``change = value - baseline_mean``; ``z = change / max(baseline_sd, sd_floor)``;
- ``departure = |z| > threshold`` for usable sessions outside the baseline; null when the
  subject has no complete baseline (e.g. a single session), for baseline sessions and
  for unusable ones.

The rule, its defaults and its caveats are in ``docs/indices.md``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from rich.table import Table
from rich.text import Text

from fervid.errors import ConfigError, DataError, InputError
from fervid.longitudinal.missing import plain
from fervid.longitudinal.summary import INDEX_COLUMNS, class_names_of, mean_smooth_col
from fervid.output.schema import ANALYSED_STATUSES, share_col

#: Parquet / Arrow key-value metadata: the settings a trends table was computed with.
META_TREND_SETTINGS = b"fervid.trend_settings"

#: Indices followed by default, before the per-emotion shares.
HEADLINE_INDICES = ("valence", "expressivity")

#: Dictionary-encoded (categorical) string column: few distinct values, many rows.
_CATEGORY = pa.dictionary(pa.int32(), pa.string())

#: Columns of the trends table (long format: one row per session per index).
TREND_COLUMNS = (
    "subject", "video_id", "file_name", "session_date", "processed_at", "session_number",
    "face_present_s", "face_present_ratio", "usable", "index", "value", "rolling_mean",
    "baseline_mean", "baseline_sd", "baseline_sessions", "in_baseline", "change", "z",
    "departure",
)  # fmt: skip


def trends_schema() -> pa.Schema:
    f64 = pa.float64()
    return pa.schema(
        [
            pa.field("subject", pa.string(), nullable=False),  # unassigned recordings: no rows
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("file_name", pa.string()),
            pa.field("session_date", pa.date32()),
            pa.field("processed_at", pa.timestamp("s", tz="UTC")),
            pa.field("session_number", pa.int32(), nullable=False),  # 1.. in the subject's order
            pa.field("face_present_s", f64),
            pa.field("face_present_ratio", f64),
            pa.field("usable", pa.bool_(), nullable=False),  # face_present_s >= min_face_s
            pa.field("index", _CATEGORY, nullable=False),  # a sessions-table column
            pa.field("value", f64),
            pa.field("rolling_mean", f64),  # of usable values among the last `window` sessions
            pa.field("baseline_mean", f64),
            pa.field("baseline_sd", f64),  # sample SD (ddof=1), before the floor
            pa.field("baseline_sessions", pa.int32(), nullable=False),  # sessions in the baseline
            pa.field("in_baseline", pa.bool_(), nullable=False),
            pa.field("change", f64),  # value - baseline_mean
            pa.field("z", f64),  # change / max(baseline_sd, sd_floor)
            pa.field("departure", pa.bool_()),  # |z| > threshold; null when not judged
        ]
    )


@dataclass(frozen=True, kw_only=True)
class TrendSettings:
    """How baselines and departures are computed.

    ``baseline_n``: sessions in the baseline (>= 2); more gives a steadier baseline but
    flags nothing until that many sessions exist. ``window``: sessions in the rolling
    mean. ``threshold``: departures are beyond ``threshold`` baseline SDs; raising it
    flags fewer sessions (fewer false alarms, later detection). ``sd_floor``: the smallest
    SD used (index units); without it a very steady baseline flags tiny changes.
    ``min_face_s``: sessions with less face-present time are not judged.
    ``baseline_dates``: (first, last) inclusive; replaces ``baseline_n`` when given.
    """

    baseline_n: int = 3
    window: int = 3
    threshold: float = 2.0
    sd_floor: float = 0.05
    min_face_s: float = 10.0
    baseline_dates: tuple[dt.date, dt.date] | None = None

    def __post_init__(self) -> None:
        if self.baseline_n < 2:
            raise ConfigError(
                f"baseline_n={self.baseline_n}; expected >= 2 sessions (an SD needs two)"
            )
        if self.window < 1:
            raise ConfigError(f"window={self.window}; expected >= 1 session")
        if not (math.isfinite(self.threshold) and self.threshold > 0):  # NaN/inf refused
            raise ConfigError(f"threshold={self.threshold}; expected a positive number of SDs")
        if not (math.isfinite(self.sd_floor) and self.sd_floor > 0):
            raise ConfigError(f"sd_floor={self.sd_floor}; expected > 0 (index units, e.g. 0.05)")
        if not (math.isfinite(self.min_face_s) and self.min_face_s >= 0):
            raise ConfigError(f"min_face_s={self.min_face_s}; expected >= 0 seconds")
        if self.baseline_dates is not None:
            first, last = self.baseline_dates
            if not (isinstance(first, dt.date) and isinstance(last, dt.date) and first <= last):
                raise ConfigError(
                    f"baseline_dates={self.baseline_dates}; expected (first, last) dates with "
                    "first <= last"
                )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.baseline_dates is not None:
            d["baseline_dates"] = [x.isoformat() for x in self.baseline_dates]
        return d

    def describe(self) -> str:
        """One sentence for captions."""
        base = (
            f"usable sessions dated {self.baseline_dates[0]} to {self.baseline_dates[1]}"
            if self.baseline_dates
            else f"first {self.baseline_n} usable sessions"
        )
        return (
            f"baseline: {base}; departure: |value − baseline mean| > {self.threshold:g} × "
            f"max(baseline SD, {self.sd_floor:g}); usable: face present ≥ {self.min_face_s:g} s"
        )


def default_indices(sessions: pa.Table | pd.DataFrame) -> tuple[str, ...]:
    """valence, expressivity and one share per emotion class of the sessions table."""
    return (*HEADLINE_INDICES, *[share_col(c) for c in class_names_of(sessions, "share_")])


def available_indices(sessions: pa.Table | pd.DataFrame) -> tuple[str, ...]:
    """Every sessions-table column that can be followed as an index."""
    classes = class_names_of(sessions, "share_")
    return (*INDEX_COLUMNS, "positive_share", "negative_share",
            *[share_col(c) for c in classes], *[mean_smooth_col(c) for c in classes])  # fmt: skip


def check_indices(requested: Sequence[str], available: Sequence[str]) -> None:
    """Raise :class:`ConfigError` (a usage error) for index names not in ``available``,
    suggesting the closest name: a typo must not give an empty column."""
    for name in requested:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"--index={name!r} is not an index; {hint}expected one of {list(available)}"
            )


def trends_table(
    sessions: pa.Table | pd.DataFrame,
    baseline_n: int = 3,
    window: int = 3,
    threshold: float = 2.0,
    subject: str | None = None,
    *,
    indices: Sequence[str] | None = None,
    baseline_dates: tuple[dt.date, dt.date] | None = None,
    sd_floor: float = 0.05,
    min_face_s: float = 10.0,
) -> pa.Table:
    """One row per (subject, session, index); see the module docstring for the rule.

    ``sessions``: a sessions table (Arrow or pandas). ``subject``: follow only this
    subject (an :class:`InputError` listing the subjects present when it has no analysed
    session). ``indices``: sessions-table columns to follow (default
    :func:`default_indices`). Returns a table with :func:`trends_schema`, ordered by
    subject, session and index, with the settings in its metadata.
    """
    settings = TrendSettings(
        baseline_n=baseline_n, window=window, threshold=threshold, sd_floor=sd_floor,
        min_face_s=min_face_s, baseline_dates=baseline_dates,
    )  # fmt: skip
    return trends_with(sessions, settings, subject=subject, indices=indices)


def trends_with(
    sessions: pa.Table | pd.DataFrame,
    settings: TrendSettings,
    *,
    subject: str | None = None,
    indices: Sequence[str] | None = None,
) -> pa.Table:
    """:func:`trends_table` with a :class:`TrendSettings` object."""
    index_cols = tuple(indices) if indices is not None else default_indices(sessions)
    check_indices(index_cols, available_indices(sessions))
    df = sessions.to_pandas() if isinstance(sessions, pa.Table) else sessions.copy()
    needed = ["subject", "video_id", "file_name", "session_date", "processed_at", "status",
              "is_patient", "face_present_s", "face_present_ratio", *index_cols]  # fmt: skip
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"sessions table lacks columns {missing}; build it with summarize_sessions()"
        )
    df = _followed(df).loc[:, needed]
    if subject is not None:
        check_subject(df, subject)
        df = df.loc[df["subject"] == subject]
    # Dated sessions first, by date; undated ones after them, in processed order.
    df = df.assign(
        _date=pd.to_datetime(df["session_date"]), _proc=pd.to_datetime(df["processed_at"])
    )
    df = df.sort_values(["_date", "_proc", "video_id"], na_position="last", kind="stable")

    rows: list[dict[str, Any]] = []
    for subj in sorted(df["subject"].unique().tolist()):
        g = df.loc[df["subject"] == subj].reset_index(drop=True)
        present_s = g["face_present_s"].astype(float).fillna(0.0).to_numpy()
        usable = present_s >= settings.min_face_s
        dates = [None if pd.isna(x) else _as_date(x) for x in g["session_date"]]
        for index in index_cols:
            rows.extend(_index_rows(g, index, usable, dates, settings))
    table = pa.Table.from_pylist(rows, schema=trends_schema())
    return table.replace_schema_metadata({META_TREND_SETTINGS: json.dumps(settings.to_json())})


def _followed(df: pd.DataFrame) -> pd.DataFrame:
    """The rows a trend follows: each analysed session's patient row with a subject."""
    analysed = df["status"].astype(str).isin([str(s) for s in ANALYSED_STATUSES])
    return df.loc[df["is_patient"].astype(bool) & analysed & df["subject"].notna()]


def check_subject(sessions: pa.Table | pd.DataFrame, subject: str) -> None:
    """Raise :class:`InputError` (exit 2 in every command) when ``subject`` has no analysed
    session in ``sessions``, listing the subjects present: a typo must not give an empty
    page that looks like an all-clear."""
    df = sessions.to_pandas() if isinstance(sessions, pa.Table) else sessions
    present = sorted({str(s) for s in _followed(df)["subject"].dropna()})
    if subject not in present:
        raise InputError(
            f"subject={subject!r} has no analysed session; subjects present: {present}"
        )


def _index_rows(
    g: pd.DataFrame,
    index: str,
    usable: np.ndarray,
    dates: list[Any],
    settings: TrendSettings,
) -> list[dict[str, Any]]:
    """The rows of one subject's sessions (already in order) for one index."""
    value = pd.to_numeric(g[index], errors="coerce").astype(float).to_numpy()  # (n,) NaN: missing
    used = np.where(usable, value, np.nan)  # values that may enter baselines and flags
    rolling = pd.Series(used).rolling(settings.window, min_periods=1).mean().to_numpy().copy()
    rolling[np.isnan(used)] = np.nan  # defined at usable sessions only
    candidates = ~np.isnan(used)
    if settings.baseline_dates is not None:
        first, last = settings.baseline_dates
        in_dates = np.array([d is not None and first <= d <= last for d in dates], bool)
        in_base = candidates & in_dates
        complete = in_base.sum() >= 2
    else:
        in_base = candidates & (np.cumsum(candidates) <= settings.baseline_n)
        complete = in_base.sum() == settings.baseline_n
    mean: float | None
    sd: float | None
    if complete:
        mean = float(used[in_base].mean())
        sd = float(used[in_base].std(ddof=1))
        change = value - mean
        z = change / max(sd, settings.sd_floor)
        judged = candidates & ~in_base
        departure = [
            bool(abs(zi) > settings.threshold) if j else None
            for zi, j in zip(z, judged, strict=True)
        ]
    else:
        mean = sd = None
        change = z = np.full(len(g), np.nan)
        departure = [None] * len(g)
    out = []
    for i, r in enumerate(g.to_dict("records")):
        out.append(
            {
                "subject": _opt(r["subject"]),
                "video_id": r["video_id"],
                "file_name": _opt(r["file_name"]),
                "session_date": dates[i],
                "processed_at": _opt(r["processed_at"]),
                "session_number": i + 1,
                "face_present_s": _opt(r["face_present_s"]),
                "face_present_ratio": _opt(r["face_present_ratio"]),
                "usable": bool(usable[i]),
                "index": index,
                "value": _opt(value[i]),
                "rolling_mean": _opt(rolling[i]),
                "baseline_mean": mean,
                "baseline_sd": sd,
                "baseline_sessions": int(in_base.sum()) if complete else 0,
                "in_baseline": bool(in_base[i]) and bool(complete),
                "change": _opt(change[i]),
                "z": _opt(z[i]),
                "departure": departure[i],
            }
        )
    return out


def _as_date(x: Any) -> dt.date:
    if isinstance(x, pd.Timestamp | dt.datetime):
        return x.date()
    return x


_opt = plain  # None for missing values (NaN, NaT, None); plain Python values otherwise


def trend_settings_of(trends: pa.Table) -> TrendSettings | None:
    """The settings stored in a trends table's metadata (None when absent)."""
    raw = (trends.schema.metadata or {}).get(META_TREND_SETTINGS)
    if raw is None:
        return None
    d = json.loads(raw)
    if d.get("baseline_dates"):
        d["baseline_dates"] = tuple(dt.date.fromisoformat(x) for x in d["baseline_dates"])
    return TrendSettings(**d)


# --------------------------------------------------------------------------- what is known
@dataclass(frozen=True, kw_only=True)
class BaselineStatus:
    """What one subject's baseline rests on (from its rows of the reference index).

    ``sessions``: analysed sessions; ``usable``: with enough face time; ``in_baseline``:
    sessions forming the baseline (0 when it is not established); ``needed``: usable
    sessions a baseline needs; ``judged``: later usable sessions given a verdict;
    ``departing``: sessions with at least one departure (any index).
    """

    subject: str
    sessions: int
    usable: int
    in_baseline: int
    needed: int
    judged: int
    departing: int

    @property
    def established(self) -> bool:
        return self.in_baseline > 0

    def describe(self) -> str:
        if self.established:
            return (
                f"baseline established from {self.in_baseline} of {self.usable} usable "
                f"session{'s' if self.usable != 1 else ''}"
            )
        return f"baseline not established (needs {self.needed} usable sessions, has {self.usable})"


class Verdict(StrEnum):
    """The one-line answer a report leads with; never an all-clear when nothing was judged."""

    DEPARTURES = "departures"  # at least one judged session departs from its baseline
    NO_DEPARTURES = "no_departures"  # sessions were judged and none departs
    NOTHING_JUDGED = "nothing_judged"  # no session could be compared with a baseline


def reference_index(trends: pd.DataFrame) -> str | None:
    """The index whose rows describe baselines: valence when followed, else the first."""
    names = list(dict.fromkeys(trends["index"].astype(str)))
    return "valence" if "valence" in names else (names[0] if names else None)


def baseline_status(trends: pa.Table | pd.DataFrame) -> list[BaselineStatus]:
    """One :class:`BaselineStatus` per subject of a trends table, by subject."""
    settings = trend_settings_of(trends) if isinstance(trends, pa.Table) else None
    settings = settings or TrendSettings()
    df = trends.to_pandas() if isinstance(trends, pa.Table) else trends
    ref = reference_index(df)
    if ref is None:
        return []
    needed = 2 if settings.baseline_dates is not None else settings.baseline_n
    out = []
    for subj, g in df.groupby("subject", sort=True, observed=True):
        r = g.loc[g["index"].astype(str) == ref]
        dep = g.loc[g["departure"].map(lambda x: x is True or x is np.True_)]
        usable = r.loc[r["usable"].astype(bool)]
        if settings.baseline_dates is not None:  # only the dated window can form it
            first, last = settings.baseline_dates
            usable = usable.loc[[d is not None and not pd.isna(d) and first <= _as_date(d) <= last
                                 for d in usable["session_date"]]]  # fmt: skip
        out.append(
            BaselineStatus(
                subject=str(subj),
                sessions=len(r),
                usable=int(r["usable"].astype(bool).sum()),
                in_baseline=int(r["in_baseline"].astype(bool).sum()),
                needed=needed,
                judged=int(r["departure"].notna().sum()),
                departing=int(dep["video_id"].nunique()),
            )
        )
    return out


def verdict(trends: pa.Table | pd.DataFrame) -> Verdict:
    """Departures, no departures among judged sessions, or nothing could be judged."""
    status = baseline_status(trends)
    if any(s.departing for s in status):
        return Verdict.DEPARTURES
    if any(s.judged for s in status):
        return Verdict.NO_DEPARTURES
    return Verdict.NOTHING_JUDGED


def verdict_text(trends: pa.Table | pd.DataFrame) -> str:
    """The headline sentence for :func:`verdict`, with counts."""
    status = baseline_status(trends)
    judged = sum(s.judged for s in status)
    v = verdict(trends)
    if v is Verdict.DEPARTURES:
        n = sum(s.departing for s in status)
        subjects = sum(1 for s in status if s.departing)
        return (
            f"{n} session{'s' if n != 1 else ''} of {subjects} subject"
            f"{'s' if subjects != 1 else ''} {'depart' if n != 1 else 'departs'} from the "
            "subject's own baseline "
            f"({judged} session{'s' if judged != 1 else ''} judged)."
        )
    if v is Verdict.NO_DEPARTURES:
        waiting = sum(1 for s in status if not s.established)
        tail = (
            f" {waiting} subject{'s have' if waiting != 1 else ' has'} no baseline yet and "
            "could not be judged."
            if waiting
            else ""
        )
        return (
            f"No departures among the {judged} session{'s' if judged != 1 else ''} that "
            f"could be judged.{tail}"
        )
    return (
        "Nothing could be judged: no subject has a baseline and a later usable session "
        "to compare with it. This is not an all-clear."
    )


# --------------------------------------------------------------------------- terminal
_LABELS = {
    "valence_sd": "valence SD",
    "positive_affect": "pos. affect",
    "negative_affect": "neg. affect",
}


def index_label(index: str) -> str:
    """A short column title: ``share_happy`` -> ``happy %``."""
    if index.startswith("share_"):
        return f"{index.removeprefix('share_')} %"
    return _LABELS.get(index, index)


#: Indices that are signed (valence-like); the others are magnitudes in [0, 1].
SIGNED_INDICES = frozenset({"valence"})


def value_format(index: str) -> str:
    """Format of a non-share index value: signed for valence, plain for magnitudes."""
    return "{:+.2f}" if index in SIGNED_INDICES else "{:.2f}"


def format_trends(
    trends: pa.Table | pd.DataFrame,
    subject: str | None = None,
    *,
    indices: Sequence[str] | None = None,
) -> Table:
    """A rich table: one row per session, one column per index.

    Cells show the value (shares in percent) and, once a baseline exists, the change
    from it; departures are bold red with ▲ / ▼; baseline sessions are dim; sessions
    with too little face time are marked ``low face time``.
    """
    meta_settings = trend_settings_of(trends) if isinstance(trends, pa.Table) else None
    df = trends.to_pandas() if isinstance(trends, pa.Table) else trends.copy()
    if subject is not None:
        df = df.loc[df["subject"] == subject]
    followed = list(dict.fromkeys(df["index"].astype(str)))
    cols = list(indices) if indices is not None else followed
    if indices is not None and followed:  # an empty table (no subject) follows nothing
        check_indices(cols, followed)
    df = df.assign(index=df["index"].astype(str))
    many = df["subject"].nunique(dropna=False) > 1
    title = "fervid trends" + (f" — {subject}" if subject is not None else "")
    table = Table(title=title, title_justify="left", caption_justify="left")
    if meta_settings is not None:
        table.caption = meta_settings.describe() + ". Shares in % of face-present time."
    if many:
        table.add_column("subject")
    table.add_column("#", justify="right")
    table.add_column("date")
    table.add_column("recording", overflow="fold", max_width=28)
    table.add_column("face s", justify="right")
    for c in cols:
        table.add_column(index_label(c), justify="right")
    keys = ["subject", "session_number"]
    wide = df.set_index([*keys, "index"]).sort_index()
    for (subj, number), sess in df.groupby(keys, dropna=False, sort=True):
        first = sess.iloc[0]
        present = _opt(first["face_present_s"])
        note = "" if first["usable"] else (" (no face)" if not present else " (low face time)")
        in_base = bool(sess["in_baseline"].any())
        cells: list[Any] = [str(subj)] if many else []
        cells += [
            str(int(number)),
            str(first["session_date"]) if _opt(first["session_date"]) is not None else "—",
            f"{_opt(first['file_name']) or first['video_id']}{note}",
            _fmt(_opt(first["face_present_s"]), "{:.0f}"),
        ]
        for c in cols:
            key = (subj, number, c)
            r = wide.loc[key] if key in wide.index else None
            cells.append(_cell(r, c) if r is not None else "")
        table.add_row(*cells, style="dim" if in_base else None)
    return table


def _cell(r: pd.Series, index: str) -> Text:
    scale = 100.0 if index.startswith("share_") else 1.0
    value, change = _opt(r["value"]), _opt(r["change"])
    if value is None:
        return Text("—")
    fmt = "{:.0f}" if scale == 100.0 else value_format(index)
    text = fmt.format(value * scale)
    if change is not None and not bool(r["in_baseline"]):
        text += f" ({change * scale:+.0f})" if scale == 100.0 else f" ({change:+.2f})"
    departure = _opt(r["departure"])
    if departure:
        arrow = "▲" if change > 0 else "▼"
        return Text(f"{text} {arrow}", style="bold red")
    return Text(text)


def _fmt(x: float | None, fmt: str) -> str:
    return "—" if x is None else fmt.format(x)
