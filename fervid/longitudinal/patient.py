"""Which face of a recording is the patient, and which face tracks are phantoms.

A telemedicine call often shows two people: gallery view (two tiles side by side),
speaker view with a small self-view inset, or a relative in the room. The rule that
picks the patient is a setting (:class:`PatientFace`), the same for every recording of
a nightly run, so hundreds of calls need no per-video override; the rule used is the
sessions table's ``patient_rule``, and a choice the rule cannot make clearly is
flagged ``patient_ambiguous`` (and warned about) instead of silently taking face 0.

*Phantoms*: the detector sometimes scores foliage, a wall or a cartoon at 0.6-0.8 for a
single sampled frame. A track of fewer than ``min_track_frames`` sampled frames whose
best detection score is below ``phantom_det`` is ``spurious``: its rows stay (flagged)
but it is never the patient and is not counted in ``n_faces``. Every real face of the
sample videos scores >= 0.89 (docs/indices.md), so the default floor 0.85 loses none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fervid.errors import ConfigError


class PatientFace(StrEnum):
    """How the patient face is chosen among a recording's (non-spurious) face tracks."""

    LONGEST = "longest"  # present longest: one patient, maybe a passer-by
    LARGEST = "largest"  # largest median face: speaker view with a self-view inset
    LEFT = "left"  # leftmost tile (gallery view, patient on the left)
    RIGHT = "right"
    TOP = "top"
    BOTTOM = "bottom"


#: ``patient_rule`` values written for each :class:`PatientFace` ("longest_present" is
#: what earlier sessions tables hold for the longest rule).
RULE_NAMES = {PatientFace.LONGEST: "longest_present"} | {
    r: r.value for r in PatientFace if r is not PatientFace.LONGEST
}

#: Size and position rules choose only among faces present at least this share of the
#: longest face's time: a face glimpsed for a moment never wins by size or place.
MIN_PRESENT_SHARE = 0.5
#: Position rules: centres closer than this (fraction of the frame) are not on
#: different sides, so the choice is ambiguous.
MIN_POSITION_GAP = 0.1


@dataclass(frozen=True, kw_only=True)
class PatientSettings:
    """``rule``: :class:`PatientFace`. ``near_tie`` in (0, 1]: the choice is ambiguous
    when the runner-up has at least this fraction of the winner's presence (longest)
    or median size (largest). ``min_track_frames`` >= 1 and ``phantom_det`` in [0, 1]:
    shorter tracks whose best detection score is below the floor are spurious."""

    rule: PatientFace = PatientFace.LONGEST
    near_tie: float = 0.8
    min_track_frames: int = 2
    phantom_det: float = 0.85

    def __post_init__(self) -> None:
        if not isinstance(self.rule, PatientFace):
            try:
                object.__setattr__(self, "rule", PatientFace(self.rule))
            except ValueError:
                raise ConfigError(
                    f"--patient-face={self.rule!r}; expected one of {[r.value for r in PatientFace]}"
                ) from None
        if not (isinstance(self.near_tie, int | float) and 0 < self.near_tie <= 1):
            raise ConfigError(f"near_tie={self.near_tie}; expected a fraction in (0, 1]")
        if isinstance(self.min_track_frames, bool) or not (
            isinstance(self.min_track_frames, int) and self.min_track_frames >= 1
        ):
            raise ConfigError(
                f"--min-track-frames={self.min_track_frames}; expected an integer >= 1 "
                "(1 keeps every track)"
            )
        if not (isinstance(self.phantom_det, int | float) and 0 <= self.phantom_det <= 1):
            raise ConfigError(
                f"phantom_det={self.phantom_det}; expected a detection score in [0, 1]"
            )

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule.value, "near_tie": self.near_tie,
                "min_track_frames": self.min_track_frames, "phantom_det": self.phantom_det}  # fmt: skip

    def describe(self) -> str:
        """One sentence for the report."""
        if self.rule is PatientFace.LONGEST:
            how = "the face visible longest"
        else:
            what = "largest face" if self.rule is PatientFace.LARGEST else f"{self.rule}most face"
            how = (
                f"the {what} among faces visible at least {MIN_PRESENT_SHARE:.0%} as long "
                "as the longest"
            )
        return (
            f"patient face ({self.rule}): {how}; flagged ambiguous when another face comes "
            f"within {self.near_tie:.0%} of it; tracks under {self.min_track_frames} sampled "
            f"frames with detector confidence below {self.phantom_det:g} are ignored as "
            "spurious"
        )


@dataclass(frozen=True)
class Track:
    """What the choice needs of one face track: ``present_s`` seconds, ``n_frames``
    sampled frames, ``max_det`` best detection score, and the median box ``size``
    (height / frame height) and centre ``x``, ``y`` (fractions of the frame; None when
    the frames carry no normalised box)."""

    face_id: int
    present_s: float
    n_frames: int
    max_det: float
    size: float | None = None
    x: float | None = None
    y: float | None = None


def is_spurious(t: Track, s: PatientSettings) -> bool:
    return t.n_frames < s.min_track_frames and t.max_det < s.phantom_det


def choose(tracks: Sequence[Track], s: PatientSettings) -> tuple[int, bool] | None:
    """(patient face_id, ambiguous) among the non-spurious ``tracks``; None when every
    track is spurious. Ties go to the lower face_id, and are ambiguous."""
    real = sorted((t for t in tracks if not is_spurious(t, s)), key=lambda t: t.face_id)
    if not real:
        return None
    by_time = sorted(real, key=lambda t: -round(t.present_s, 6))
    if s.rule is PatientFace.LONGEST or len(real) == 1:
        return by_time[0].face_id, _near(by_time, lambda t: t.present_s, s.near_tie)
    floor = MIN_PRESENT_SHARE * by_time[0].present_s
    main = [t for t in real if t.present_s >= floor]
    if s.rule is PatientFace.LARGEST:
        if any(t.size is None for t in main):
            return by_time[0].face_id, True  # no boxes: fall back, and say so
        by_size = sorted(main, key=lambda t: -(t.size or 0.0))
        return by_size[0].face_id, _near(by_size, lambda t: t.size or 0.0, s.near_tie)
    axis = "x" if s.rule in (PatientFace.LEFT, PatientFace.RIGHT) else "y"
    pos = [(getattr(t, axis), t) for t in main]
    if any(p is None for p, _ in pos):
        return by_time[0].face_id, True
    sign = 1.0 if s.rule in (PatientFace.LEFT, PatientFace.TOP) else -1.0
    ordered = sorted(pos, key=lambda pt: sign * pt[0])
    gap = abs(ordered[1][0] - ordered[0][0]) if len(ordered) > 1 else math.inf
    return ordered[0][1].face_id, gap < MIN_POSITION_GAP


def _near(ordered: Sequence[Track], key: Any, near_tie: float) -> bool:
    """The runner-up within ``near_tie`` of the winner (by ``key``)."""
    if len(ordered) < 2:
        return False
    first, second = key(ordered[0]), key(ordered[1])
    return first <= 0 or second >= near_tie * first


#: The default settings, as a module-level value for argument defaults.
DEFAULT_PATIENT = PatientSettings()
