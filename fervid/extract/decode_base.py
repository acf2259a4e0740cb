"""What the decoder backends share: the request, the state of a pass, decode damage.

:class:`DecodeRequest` is what :class:`~fervid.extract.decode.FrameSampler` asks a
backend for (one video, a time range, the analysed size); :class:`Progress` is what a
pass has yielded and decoded so far, shared across a fallback from one backend (or one
pass) to the next; :class:`Damage` gathers decode errors into one warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fervid.records import DECODE_ERRORS_WARNING, VideoInfo
from fervid.settings import SampleSettings

_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")  # decord's "[21:44:36] src/x.cc:486: "


@dataclass(frozen=True, kw_only=True)
class DecodeRequest:
    """The frames one iteration asks for: ``path``'s sampled frames (``settings``) with
    ``start_s <= timestamp_s < end_s`` (seconds; None: to the end), analysed at
    ``frame_size`` (``(w, h)``, ``scale`` = analysed / displayed), decoded with
    ``threads`` threads; ``chunk_size``: most frames decord decodes per request;
    ``skip_unsampled``: PyAV may leave unreferenced frames no slot takes undecoded."""

    path: Path
    settings: SampleSettings
    info: VideoInfo
    start_s: float
    end_s: float | None
    threads: int
    chunk_size: int
    scale: float
    frame_size: tuple[int, int]
    skip_unsampled: bool = True

    @property
    def ranged(self) -> bool:
        return self.start_s > 0 or self.end_s is not None

    @property
    def resize_to(self) -> tuple[int, int] | None:
        return self.frame_size if self.scale < 1.0 else None


@dataclass
class Damage:
    """Decode errors met in a range: undecodable packets and frames FFmpeg had to conceal
    (PyAV), or FFmpeg's error messages (decord, which only logs them)."""

    n: int = 0
    first_t: float | None = None
    last_t: float | None = None
    reason: str = ""

    def add(self, t: float | None, reason: str, count: int = 1) -> None:
        self.n += count
        if t is not None:
            self.first_t = t if self.first_t is None else min(self.first_t, t)
            self.last_t = t if self.last_t is None else max(self.last_t, t)
        self.reason = self.reason or reason

    def warning(self) -> str:
        """One :data:`~fervid.records.DECODE_ERRORS_WARNING` line (count first)."""
        start = self.first_t if self.first_t is not None else 0.0
        end = self.last_t if self.last_t is not None else start
        reason = f"{self.reason}; some frames may be missing or smeared"
        return DECODE_ERRORS_WARNING.format(n=self.n, start=start, end=end, reason=reason)


@dataclass
class Progress:
    """What one pass has yielded and decoded so far (mutable, per iteration)."""

    yielded: int = 0
    last_yielded_index: int = -1
    last_decoded_t: float | None = None
    stop_reason: str | None = None  # error that ended decoding early
    warnings: list[str] = field(default_factory=list)  # human-readable notes, in order
    skipped: int = 0  # frames left undecoded because no sampling slot takes them


def first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = _LOG_PREFIX.sub("", lines[0]) if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
