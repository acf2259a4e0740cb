"""Shared fixtures: real sample videos, small synthetic clips and broken files.

Fixture names are stable; other test modules rely on them.

``decord_fails_on_second_batch`` (function)
    Patches :mod:`fervid.extract.decode` so decord is preferred and its second frame batch
    raises ``DecordFailed``, as a read error mid-stream would.
``data_root`` (session)
    The shared FER data folder: ``$FERVID_DATA``, else ``../shared/data`` beside the
    checkout. Where it is missing (a fresh clone) the tests that need it are skipped
    with a message saying how to enable them; with ``FERVID_REQUIRE_DATA=1`` (what
    ``.ci/run`` sets) they fail instead, so CI never passes by skipping them.
``model_path`` (session)
    The shipped default model file, or ``$FERVID_MODEL``. A missing file fails the
    test (a release without its model is broken), or skips it with
    ``FERVID_ALLOW_NO_MODEL=1``.

``sample_dir`` (session)
    Folder with the real sample videos (``fetch_samples``): WolfgangLanger_Pexels.mp4,
    single_face.mp4, face_noface.mov, noface_face.mov, no_face.mp4, carphone_pristine.mp4,
    stills/multi_face.jpg, stills/single_face.jpg.
``make_clip`` (function)
    Factory writing a small synthetic clip with PyAV and returning its path::

        make_clip("a.mp4", seconds=2.0, fps=30.0, size=(160, 120), rotation=0,
                  codec="libx264", vfr=False, audio_only=False, gop=None, options=None)

    A relative path is created under the test's ``tmp_path``. Content: a red 16x16
    marker in the top-left corner of the *stored* picture (so rotation can be checked),
    a white square moving left to right, and the frame number written as two grey
    blocks in the top-right corner (read back with :func:`frame_number`; 0-255, only
    for unrotated clips). ``fps`` may be fractional (``30000 / 1001``). ``rotation``:
    degrees clockwise a player turns the picture (display matrix). ``vfr=True``: frame
    intervals alternate between 20 ms and 50 ms in runs of 10 frames (``fps`` then only
    sets the frame count, ``seconds * fps``). ``audio_only=True``: a 1 kHz tone and no
    video stream (AAC, or PCM when the name ends in ``.wav``). ``gop``: frames between
    keyframes (encoder default when None). ``options``: encoder options, e.g.
    ``{"profile": "baseline"}`` (libx264's default clip has B-frames, baseline none).
    Helpers importable with ``from conftest import ...``: ``write_clip`` (same options,
    any path), ``frame_number(image)``, ``vfr_times(n)``.
``empty_video``, ``text_video``, ``audio_only_file``, ``truncated_video``, ``unicode_video``
    Broken or awkward inputs: a zero-byte ``empty.mp4``; ``notes.mp4`` holding text; a
    1 s AAC ``voice.m4a``; the first 40 % of the bytes of WolfgangLanger_Pexels.mp4
    (its index is at the start, so the first ~7.5 s still decode); a 2 s clip at
    ``séance 1/vidéo patient.mp4``. The broken ones are :func:`at_rest`: last modified an
    hour ago, so ``process`` takes them as finished files, not copies in progress.
``damaged_video`` (function)
    WolfgangLanger_Pexels.mp4 with one byte in every 4 KiB between 40 % and 60 % of the
    file overwritten (fixed seed): the index is intact, ~10 s of the picture is damaged,
    and both decoders conceal it without failing (decord reports nothing on its own).
``copy_sample`` (function)
    Factory: ``copy_sample("single_face.mp4", "site/A01/x.mp4")`` copies a sample video
    to a path under ``tmp_path`` and returns it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fervid.model.modelfile import DEFAULT_MODEL_PATH, MODEL_ENV
from fervid.sample_data import fetch_samples

ROOT = Path(__file__).resolve().parents[1]

#: Sample video known to keep its index (moov) at the start, so a cut copy still decodes.
TRUNCATE_SOURCE = "WolfgangLanger_Pexels.mp4"

_VFR_STEPS_MS = (20, 50)  # alternating frame intervals of a VFR clip, in runs of 10


@pytest.fixture
def decord_fails_on_second_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from fervid.extract import decode, decode_decord

    real_batch = decode_decord.DecordReader.batch
    calls = {"n": 0}

    def flaky_batch(self: decode_decord.DecordReader, indices: list[int]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise decode_decord.DecordFailed("simulated read error")
        return real_batch(self, indices)

    monkeypatch.setattr(decode_decord.DecordReader, "batch", flaky_batch)
    monkeypatch.setattr(decode, "PREFER_DECORD", True)


#: Environment variable that turns the "no FER data" skips into failures (CI sets it).
REQUIRE_DATA_ENV = "FERVID_REQUIRE_DATA"
#: Every skip for missing data starts with this, so a CI step can tell data skips apart.
DATA_SKIP_PREFIX = "needs the FER-2013/FER+ data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("FERVID_DATA", ROOT.parent / "shared" / "data"))
    needed = ("fer2013/train", "fer2013/val", "ferplus/FER2013Train", "ferplus/FER2013Valid")
    missing = [d for d in needed if not (root / d).is_dir()]
    if missing:
        skip_for_missing_data(
            f"not found at {root} (missing {', '.join(missing)}); "
            "to run it, clone fervid beside shared/ or set FERVID_DATA=/path/to/shared/data"
        )
    return root


def skip_for_missing_data(reason: str) -> None:
    """Skip (or, with FERVID_REQUIRE_DATA=1, fail) a test whose shared data is absent."""
    message = f"{DATA_SKIP_PREFIX}: {reason}"
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_DATA_ENV}=1 makes this a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def model_path() -> Path:
    path = Path(os.environ.get(MODEL_ENV) or DEFAULT_MODEL_PATH)
    if not path.is_file():
        if os.environ.get("FERVID_ALLOW_NO_MODEL") == "1":
            pytest.skip(f"no model file at {path} and FERVID_ALLOW_NO_MODEL=1")
        pytest.fail(
            f"the default model {path} is missing: ship it (fervid train ... then copy "
            f"model.safetensors there), point {MODEL_ENV} at a model file, or set "
            "FERVID_ALLOW_NO_MODEL=1 to skip the tests that need it"
        )
    return path


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The real sample videos, fetched (and sha256-checked) on first use."""
    folder = ROOT / "sample_videos"
    fetch_samples(folder)
    return folder


def _frame_image(i: int, w: int, h: int) -> np.ndarray:
    """Synthetic BGR frame ``i``: marker, moving square, frame number as grey blocks."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[:16, :16] = (0, 0, 255)  # red marker, top-left of the stored picture
    side = max(8, h // 6)
    x = (i * 3) % max(1, w - side)
    y = h // 2 - side // 2
    img[y : y + side, x : x + side] = 255
    hi, lo = divmod(i % 256, 16)
    img[:16, w - 32 : w - 16] = 8 + 16 * hi
    img[:16, w - 16 :] = 8 + 16 * lo
    return img


def frame_number(image: np.ndarray) -> int:
    """Read back the frame number :func:`_frame_image` wrote (unrotated, unscaled clips)."""
    w = image.shape[1]
    hi = float(image[4:12, w - 28 : w - 20].mean())
    lo = float(image[4:12, w - 12 : w - 4].mean())
    return round((hi - 8) / 16) * 16 + round((lo - 8) / 16)


def vfr_times(n: int) -> list[float]:
    """Presentation times (s) of the ``n`` frames of a ``vfr=True`` clip."""
    out, t = [], 0
    for i in range(n):
        out.append(t / 1000)
        t += _VFR_STEPS_MS[(i // 10) % 2]
    return out


def write_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: float = 30.0,
    size: tuple[int, int] = (160, 120),
    rotation: int = 0,
    codec: str = "libx264",
    vfr: bool = False,
    audio_only: bool = False,
    gop: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Write a synthetic clip (see the module docstring); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if audio_only:
        return _write_tone(path, seconds=seconds)
    w, h = size
    n = round(seconds * fps)
    with av.open(str(path), "w") as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=30 if vfr else rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if options:
            stream.options = {**stream.options, **options}
        if vfr:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            # PyAV takes counter-clockwise degrees; players turn clockwise by `rotation`.
            stream.set_display_rotation(-rotation)
        times = vfr_times(n) if vfr else None
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame_image(i, w, h), format="bgr24")
            if times is not None:
                frame.pts = round(times[i] * 1000)
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _write_tone(path: Path, *, seconds: float) -> Path:
    rate = 16000
    pcm = path.suffix.lower() == ".wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le" if pcm else "aac", rate=rate)
        stream.layout = "mono"
        n = int(seconds * rate)
        for start in range(0, n, 1024):
            t = np.arange(start, start + 1024) / rate
            wave = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
            samples = (wave * 32767).astype(np.int16) if pcm else wave
            frame = av.AudioFrame.from_ndarray(
                samples, format="s16" if pcm else "fltp", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_clip(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_clip(path, **options)`` -> path of a new synthetic clip."""

    def make(path: Path | str, **options: object) -> Path:
        target = Path(path)
        if not target.is_absolute():
            target = tmp_path / target
        return write_clip(target, **options)  # type: ignore[arg-type]

    return make


def at_rest(path: Path, age_s: float = 3600.0) -> Path:
    """``path``, last modified ``age_s`` seconds ago: a broken file written just now would
    look like a copy still in progress, which ``process`` leaves pending
    (``--settle-seconds``); these are broken files that are finished."""
    import time

    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@pytest.fixture
def empty_video(tmp_path: Path) -> Path:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return at_rest(path)


@pytest.fixture
def text_video(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("session notes, not a video\n" * 20)
    return at_rest(path)


@pytest.fixture
def audio_only_file(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "voice.m4a", seconds=1.0, audio_only=True)


@pytest.fixture
def damaged_video(tmp_path: Path, sample_dir: Path) -> Path:
    data = bytearray((sample_dir / TRUNCATE_SOURCE).read_bytes())
    lo, hi = int(len(data) * 0.4), int(len(data) * 0.6)
    noise = np.random.default_rng(9).integers(0, 256, len(range(lo, hi, 4096)), np.uint8)
    for k, offset in enumerate(range(lo, hi, 4096)):
        data[offset] = int(noise[k])
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    return at_rest(path)


@pytest.fixture
def truncated_video(tmp_path: Path, sample_dir: Path) -> Path:
    data = (sample_dir / TRUNCATE_SOURCE).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * 0.4)])
    return at_rest(path)


@pytest.fixture
def unicode_video(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "séance 1" / "vidéo patient.mp4", seconds=2.0)


@pytest.fixture
def copy_sample(tmp_path: Path, sample_dir: Path) -> Callable[[str, str], Path]:
    """Factory: ``copy_sample(name, dest)`` copies a sample video under ``tmp_path``."""

    def copy(name: str, dest: str) -> Path:
        target = tmp_path / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample_dir / name, target)
        return target

    return copy
