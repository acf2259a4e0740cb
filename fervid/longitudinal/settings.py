"""The one set of longitudinal settings, shared by ``fervid summarize``, ``trends``,
``report`` and ``nightly`` (and their Python functions), so that the four can never
judge the same sessions differently.

:class:`LongitudinalSettings` composes the settings of each step, each validated on
construction: :class:`~fervid.longitudinal.patient.PatientSettings` (which face is the
patient, which tracks are phantoms), :class:`~fervid.longitudinal.summary.IndexSettings`
(how the session indices are computed) and
:class:`~fervid.longitudinal.trends.TrendSettings` (baseline sessions, rolling window,
threshold, minimum face time, SD floor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fervid.longitudinal.patient import PatientSettings
from fervid.longitudinal.summary import IndexSettings
from fervid.longitudinal.trends import TrendSettings


@dataclass(frozen=True, kw_only=True)
class LongitudinalSettings:
    """Everything that decides a sessions table, a trends table and a report."""

    patient: PatientSettings = field(default_factory=PatientSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    trends: TrendSettings = field(default_factory=TrendSettings)

    def to_json(self) -> dict[str, Any]:
        return {
            "patient": self.patient.to_json(),
            "index": {"surprise_weight": self.index.surprise_weight},
            "trends": self.trends.to_json(),
        }

    def describe(self) -> list[tuple[str, str]]:
        """(what, the values used) lines, for the report and the terminal."""
        t = self.trends
        return [
            ("baseline", (f"the first {t.baseline_n} usable sessions" if t.baseline_dates is None
                          else f"usable sessions dated {t.baseline_dates[0]} to "
                               f"{t.baseline_dates[1]}")
             + f" (--baseline-n {t.baseline_n})"),
            ("rolling mean", f"the last {t.window} sessions (--window {t.window})"),
            ("departure", f"|value − baseline mean| > {t.threshold:g} × max(baseline SD, "
                          f"{t.sd_floor:g}) (--threshold {t.threshold:g}, --sd-floor "
                          f"{t.sd_floor:g})"),
            ("usable session", f"patient face visible ≥ {t.min_face_s:g} s (--min-face-s "
                               f"{t.min_face_s:g})"),
            ("patient face", self.patient.describe()),
            ("surprise", f"counted as positive with weight {self.index.surprise_weight:g}"),
        ]  # fmt: skip
