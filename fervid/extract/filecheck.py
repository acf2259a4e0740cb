"""The failures a video file shows before any decoder looks at it, each with its own message."""

from __future__ import annotations

import os
from pathlib import Path

from fervid.errors import DecodeError


def check_file(path: Path) -> None:
    """The failures that need no decoder, each with its own message."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DecodeError(f"{path.name}: file not found; was it moved or deleted?") from None
    except PermissionError:
        raise DecodeError(f"{path.name}: permission denied; make its folder readable") from None
    if not os.path.isfile(path):
        raise DecodeError(f"{path.name}: is not a regular file; pass a video file")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise DecodeError(
            f"{path.name}: permission denied; make the file readable by the user running fervid"
        ) from None
    if st.st_size == 0:
        raise DecodeError(
            f"{path.name}: file is empty (0 bytes); the recording or copy failed, copy it again"
        )
    with open(path, "rb") as f:
        kind = still_kind(f.read(32))
    if kind is not None:  # FFmpeg would open it as a one-frame, 0-second "video"
        raise DecodeError(
            f"{path.name}: is a still image ({kind}), not a video; pass the recording itself"
        )


#: Leading bytes of still-image and document formats someone may rename to .mp4.
_STILL_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF document"),
)
#: ISO-BMFF brands (bytes 8-12, after "ftyp") of still images: HEIC/HEIF and AVIF photos.
_STILL_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}


def still_kind(head: bytes) -> str | None:
    """The still-image format the first bytes of a file announce, or None."""
    for magic, kind in _STILL_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in _STILL_BRANDS:
        return _STILL_BRANDS[head[8:12]]
    return None
