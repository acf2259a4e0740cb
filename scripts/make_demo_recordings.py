#!/usr/bin/env python
"""Build a small demo recordings tree: two made-up subjects, four weekly sessions each.

    .venv/bin/python scripts/make_demo_recordings.py /tmp/demo-recordings

writes ``<dest>/<subject>/<session_date>_<name>.mp4``, e.g. ``P001/2024-01-05_intake.mp4``,
the layout ``fervid process --id-pattern "{subject}/{session_date}_{name}.mp4"`` reads.
Subjects, dates and visit names are invented; the pictures are excerpts of the public
sample videos (:func:`fervid.sample_data.fetch_samples`), fetched when missing.

fervid identifies a recording by a fingerprint of its content and analyses identical
files once, so every session is its own excerpt (a different source or start time),
re-encoded to H.264 at most :data:`MAX_WIDTH` pixels wide. Clips are a few seconds long
so that the whole tree is processed in about a minute on two CPU cores. The encoder is
set up so that the same sources give byte-identical files (and the same video ids) on
every run.
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


@dataclass(frozen=True, kw_only=True)
class DemoSession:
    """One demo recording: ``seconds`` of ``source`` from ``start_s`` (both in seconds of
    the source's presentation time), written as ``<subject>/<date>_<name>.mp4``."""

    subject: str
    session_date: dt.date
    name: str
    source: str
    start_s: float
    seconds: float

    def __post_init__(self) -> None:
        if not self.subject or "/" in self.subject:
            raise ValueError(f"subject={self.subject!r}; expected a non-empty name without '/'")
        if self.start_s < 0:
            raise ValueError(f"start_s={self.start_s}; expected >= 0 seconds")
        if not self.seconds > 0:
            raise ValueError(f"seconds={self.seconds}; expected > 0 seconds")

    @property
    def rel_path(self) -> str:
        return f"{self.subject}/{self.session_date.isoformat()}_{self.name}.mp4"


def _weekly(
    subject: str, first: dt.date, excerpts: list[tuple[str, float, float]]
) -> list[DemoSession]:
    """An intake, then weekly follow-ups, one per (source, start_s, seconds) excerpt."""
    return [
        DemoSession(
            subject=subject,
            session_date=first + dt.timedelta(weeks=i),
            name="intake" if i == 0 else "followup",
            source=source,
            start_s=start,
            seconds=seconds,
        )
        for i, (source, start, seconds) in enumerate(excerpts)
    ]


#: The demo tree: P001 is one speaker (four excerpts of one interview); P002's sessions
#: come from other sample videos, one of which shows a face only in its second half.
DEMO_SESSIONS: tuple[DemoSession, ...] = (
    *_weekly(
        "P001",
        dt.date(2024, 1, 5),
        [
            ("WolfgangLanger_Pexels.mp4", 0.0, 4.0),
            ("WolfgangLanger_Pexels.mp4", 5.0, 4.0),
            ("WolfgangLanger_Pexels.mp4", 10.0, 4.0),
            ("WolfgangLanger_Pexels.mp4", 15.0, 4.0),
        ],
    ),
    *_weekly(
        "P002",
        dt.date(2024, 2, 1),
        [
            ("single_face.mp4", 0.0, 2.4),
            ("face_noface.mov", 0.0, 4.0),
            ("carphone_pristine.mp4", 0.0, 4.0),
            ("noface_face.mov", 2.0, 4.0),
        ],
    ),
)


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
        _excerpt(Path(samples) / s.source, target, s.start_s, s.seconds, max_width)
        out.append(target)
    return out


def _excerpt(src: Path, dest: Path, start_s: float, seconds: float, max_width: int) -> None:
    """Re-encode the frames of ``src`` with start_s <= t < start_s + seconds to ``dest``
    (H.264; each frame keeps its source time, shifted so that the first one is at 0)."""
    tmp = dest.with_name(f".{dest.name}.part")
    written = 0
    t0: float | None = None  # source time of the first frame written: the excerpt's 0
    try:
        with av.open(str(src)) as inp, av.open(str(tmp), "w", format="mp4") as outp:
            vin = inp.streams.video[0]
            rate = Fraction(vin.average_rate).limit_denominator(1001)
            width, height = vin.codec_context.width, vin.codec_context.height
            if width > max_width:  # keep the aspect; x264 needs even sizes
                width, height = max_width, round(height * max_width / width)
            width, height = width - width % 2, height - height % 2
            vout = outp.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            # Byte-identical output for the same frames (the same video ids every run): with
            # its macroblock-tree lookahead on, x264 (8-bit, SIMD) gave different bytes from
            # one call to the next in a process; one thread keeps its decisions in order.
            vout.options = {
                "crf": str(CRF),
                "threads": "1",
                "preset": "veryfast",
                "x264-params": "mbtree=0",
            }
            # Keep the source's frame times (some samples have a variable frame rate).
            vout.time_base = vout.codec_context.time_base = TIME_BASE
            for frame in inp.decode(vin):
                t = frame.time
                if t is None or t < start_s - 1e-6:
                    continue
                if t >= start_s + seconds - 1e-6:
                    break
                out = frame.reformat(width=width, height=height, format="yuv420p")
                t0 = t if t0 is None else t0
                out.pts = round((t - t0) / TIME_BASE)
                out.time_base = TIME_BASE
                for packet in vout.encode(out):
                    outp.mux(packet)
                written += 1
            for packet in vout.encode():
                outp.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError(
            f"no frame of {src.name} lies in [{start_s}, {start_s + seconds}) s; "
            "choose a start_s before the end of the source"
        )
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
