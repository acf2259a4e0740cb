"""Which face of a recording is the patient, and which face tracks are phantoms.

A telemedicine call often shows two people: gallery view (two tiles side by side),
speaker view with a small self-view inset, or a relative in the room. The rule that
picks the patient is a setting (:class:`PatientFace`), the same for every recording of
a nightly run, so hundreds of calls need no per-video override; the rule used is the
sessions table's ``patient_rule``, and a choice the rule cannot make clearly is
flagged ``patient_ambiguous`` (and warned about) instead of silently taking face 0.

*Broken tracks*: a person who leaves the frame and comes back gets a new ``face_id``.
Where that is unambiguous (one face at a time, the pieces at a similar place and size)
:func:`join_pieces` joins the pieces into one person (``join_tracks``), so that
``longest`` compares people, not fragments; the sessions table's ``track_pieces`` says
how many were joined.

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
    REGION = "region"  # the face in a fixed screen rectangle: a known gallery tile
    OVERRIDE = "override"  # the per-video file names the face (``--patient FILE``)


#: ``patient_rule`` values written for each :class:`PatientFace` ("longest_present" is
#: what earlier sessions tables hold for the longest rule).
RULE_NAMES = {PatientFace.LONGEST: "longest_present"} | {
    r: r.value for r in PatientFace if r is not PatientFace.LONGEST
}

#: Joining broken tracks: the pieces' median face centres at most this far apart (a
#: fraction of the frame's width / height) ...
JOIN_MAX_SHIFT = 0.15
#: ... and their median face heights within this ratio of each other.
JOIN_MAX_SIZE_RATIO = 1.5

#: Size and position rules choose only among faces present at least this share of the
#: longest face's time: a face glimpsed for a moment never wins by size or place.
MIN_PRESENT_SHARE = 0.5
#: Position rules: centres closer than this (fraction of the frame) are not on
#: different sides, so the choice is ambiguous.
MIN_POSITION_GAP = 0.1


@dataclass(frozen=True, kw_only=True)
class PatientSettings:
    """``rule``: :class:`PatientFace`. ``region``: ``(x0, y0, x1, y1)``, the patient's
    screen rectangle in fractions of the frame (0, 0 top left; also ``"x0,y0,x1,y1"``),
    for ``rule=region`` and only then. ``near_tie`` in (0, 1]: the choice is ambiguous
    when the runner-up has at least this fraction of the winner's presence (longest,
    region) or median size (largest). ``min_track_frames`` >= 1 and ``phantom_det`` in
    [0, 1]: shorter tracks whose best detection score is below the floor are spurious.
    ``join_tracks``: join the pieces of a broken track (:func:`join_pieces`)."""

    rule: PatientFace = PatientFace.LONGEST
    region: tuple[float, float, float, float] | None = None
    near_tie: float = 0.8
    min_track_frames: int = 2
    phantom_det: float = 0.85
    join_tracks: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.rule, PatientFace):
            try:
                object.__setattr__(self, "rule", PatientFace(self.rule))
            except ValueError:
                raise ConfigError(
                    f"--patient-face={self.rule!r}; expected one of {[r.value for r in PatientFace]}"
                ) from None
        if self.region is not None:
            object.__setattr__(self, "region", parse_region(self.region))
        if (self.rule is PatientFace.REGION) != (self.region is not None):
            raise ConfigError(
                "--patient-face region needs --patient-region x0,y0,x1,y1 (the patient's tile, "
                "fractions of the frame)"
                if self.region is None
                else f"--patient-region={_region_text(self.region)} is for --patient-face "
                f"region; got --patient-face {self.rule.value}"
            )
        if not isinstance(self.join_tracks, bool):
            raise ConfigError(f"join_tracks={self.join_tracks!r}; expected true or false")
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
                "min_track_frames": self.min_track_frames, "phantom_det": self.phantom_det,
                **({} if self.region is None else {"region": list(self.region)}),
                **({} if self.join_tracks else {"join_tracks": False})}  # fmt: skip

    def describe(self) -> str:
        """One sentence for the report."""
        if self.rule is PatientFace.LONGEST:
            how = "the face visible longest"
        elif self.rule is PatientFace.REGION:
            x0, y0, x1, y1 = self.region or (0.0, 0.0, 1.0, 1.0)
            how = (
                f"the face visible longest whose centre lies in the screen rectangle from "
                f"{x0:.0%} to {x1:.0%} of the width and {y0:.0%} to {y1:.0%} of the height "
                f"(--patient-region {_region_text(self.region)}); none there: no patient face"
            )
        elif self.rule is PatientFace.OVERRIDE:
            how = (
                "the face named for each recording in the --patient file; a recording it "
                "does not list gets the face visible longest, flagged ambiguous"
            )
        else:
            what = "largest face" if self.rule is PatientFace.LARGEST else f"{self.rule}most face"
            how = (
                f"the {what} among faces visible at least {MIN_PRESENT_SHARE:.0%} as long "
                "as the longest"
            )
        joined = (
            "the pieces of a face that left the frame and came back are joined when only "
            f"one face is visible at a time and they sit within {JOIN_MAX_SHIFT:.0%} of the "
            f"frame and {JOIN_MAX_SIZE_RATIO:g}× in size of each other"
            if self.join_tracks
            else "pieces of a broken track are not joined"
        )
        return (
            f"patient face ({self.rule}): {how}; flagged ambiguous when another face comes "
            f"within {self.near_tie:.0%} of it; tracks under {self.min_track_frames} sampled "
            f"frames with detector confidence below {self.phantom_det:g} are ignored as "
            f"spurious; {joined}"
        )


def parse_region(value: Any) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` from ``"x0,y0,x1,y1"`` or a sequence of four numbers, checked:
    fractions of the frame with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        x0, y0, x1, y1 = (float(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--patient-region={value!r}; expected four numbers x0,y0,x1,y1 (fractions of "
            "the frame, e.g. 0.5,0,1,1 for the right half)"
        ) from None
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ConfigError(
            f"--patient-region={value!r}; expected 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
            "(fractions of the frame, 0,0 the top left corner)"
        )
    return (x0, y0, x1, y1)


def _region_text(region: tuple[float, float, float, float] | None) -> str:
    return ",".join(f"{v:g}" for v in region or ())


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


def choose(tracks: Sequence[Track], s: PatientSettings) -> tuple[int | None, bool] | None:
    """(patient face_id, ambiguous) among the non-spurious ``tracks``; None when every
    track is spurious; (None, True) when no face lies in the ``region`` rule's rectangle.
    Ties go to the lower face_id, and are ambiguous. The ``override`` rule chooses here
    only for recordings the override file does not list: longest, flagged ambiguous."""
    real = sorted((t for t in tracks if not is_spurious(t, s)), key=lambda t: t.face_id)
    if not real:
        return None
    by_time = sorted(real, key=lambda t: -round(t.present_s, 6))
    if s.rule is PatientFace.REGION:
        x0, y0, x1, y1 = s.region or (0.0, 0.0, 1.0, 1.0)
        inside = [t for t in by_time if t.x is not None and t.y is not None
                  and x0 <= t.x <= x1 and y0 <= t.y <= y1]  # fmt: skip
        if not inside:  # the patient's tile is empty: no patient face, said aloud
            return None, True
        return inside[0].face_id, _near(inside, lambda t: t.present_s, s.near_tie)
    if s.rule is PatientFace.OVERRIDE:  # a recording the file does not list
        return by_time[0].face_id, True
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


@dataclass(frozen=True)
class Piece:
    """What joining needs of one face track: first and last sampled time (s), and the
    median face ``size`` and centre ``x``, ``y`` (fractions of the frame; None when the
    frames carry no normalised box)."""

    face_id: int
    first_s: float
    last_s: float
    size: float | None
    x: float | None
    y: float | None


def join_pieces(pieces: Sequence[Piece]) -> list[list[int]]:
    """The tracks of one recording grouped into people: lists of face_ids, each in time
    order, the groups ordered by their first face_id. Pass the non-spurious tracks only.

    A piece joins an earlier person when that is unambiguous: neither it nor that
    person's last piece overlaps in time with any other track (one face at a time), the
    piece starts after the person's last piece ends, their median centres are within
    :data:`JOIN_MAX_SHIFT` of the frame and their median heights within
    :data:`JOIN_MAX_SIZE_RATIO`, and exactly one earlier person fits. Otherwise it starts
    a person of its own. Pieces without boxes are never joined."""
    ordered = sorted(pieces, key=lambda p: (p.first_s, p.face_id))

    def alone(p: Piece) -> bool:
        return not any(
            q.face_id != p.face_id and q.first_s <= p.last_s and p.first_s <= q.last_s
            for q in ordered
        )

    people: list[list[Piece]] = []
    for p in ordered:
        fits = [
            g for g in people
            if alone(p) and alone(g[-1]) and g[-1].last_s < p.first_s and _similar(g[-1], p)
        ]  # fmt: skip
        if len(fits) == 1:
            fits[0].append(p)
        else:
            people.append([p])
    return sorted(([q.face_id for q in g] for g in people), key=lambda ids: ids[0])


def _similar(a: Piece, b: Piece) -> bool:
    if None in (a.size, a.x, a.y, b.size, b.x, b.y):
        return False
    assert a.size is not None and b.size is not None and a.x is not None and b.x is not None
    assert a.y is not None and b.y is not None
    small, large = sorted((a.size, b.size))
    return (
        small > 0
        and large / small <= JOIN_MAX_SIZE_RATIO
        and abs(a.x - b.x) <= JOIN_MAX_SHIFT
        and abs(a.y - b.y) <= JOIN_MAX_SHIFT
    )


def _near(ordered: Sequence[Track], key: Any, near_tie: float) -> bool:
    """The runner-up within ``near_tie`` of the winner (by ``key``)."""
    if len(ordered) < 2:
        return False
    first, second = key(ordered[0]), key(ordered[1])
    return first <= 0 or second >= near_tie * first


#: The default settings, as a module-level value for argument defaults.
DEFAULT_PATIENT = PatientSettings()
