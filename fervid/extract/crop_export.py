"""Write face crops to disk, only when the user asks for it (``--save-crops DIR``).

Patient video is sensitive, so fervid writes no image by default. When a data team wants
to audit what the classifier saw, it writes exactly the model-input crops (S x S, gray or
RGB) as PNG files: ``DIR/<video_id>/<frame_index>_<face>.png``. File names carry no path
or patient field beyond the content-derived ``video_id``. The files are mode 0600 and
the folders fervid creates 0700, whatever the umask: faces are for the data team that
asked, not for every user of the machine.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fervid.errors import InputError
from fervid.output.atomic import private_dir, write_private


def crop_dir(root: Path, video_id: str) -> Path:
    """The folder one video's crops go to (created on demand)."""
    return root / video_id


def save_frame_crops(root: Path, video_id: str, frame_index: int, crops: np.ndarray) -> list[Path]:
    """Write one frame's crops; returns the files written (none for an empty frame).

    ``crops``: uint8 (m, S, S) gray or (m, S, S, 3) RGB, as :func:`fervid.extract.crop.crop_faces`
    returns them. Raises :class:`InputError` when a file cannot be written.
    """
    if len(crops) == 0:
        return []
    folder = crop_dir(root, video_id)
    try:
        private_dir(folder, root=root)
    except OSError as e:
        raise InputError(f"--save-crops: could not create {folder}: {e.strerror}") from None
    written = []
    for j, crop in enumerate(crops):
        path = folder / f"{frame_index:08d}_{j}.png"
        image = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR) if crop.ndim == 3 else crop
        ok, png = cv2.imencode(".png", image)
        try:
            if not ok:
                raise OSError("PNG encoding failed")
            write_private(path, png.tobytes())  # 0600 from the start (cv2.imwrite: umask)
        except OSError as e:
            raise InputError(f"--save-crops: could not write {path}: {e}") from None
        written.append(path)
    return written
