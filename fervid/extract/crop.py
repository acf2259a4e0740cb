"""Faces -> crops at the classifier's input size: landmark-aligned, or square box crops.

With landmarks and ``CropSettings.align`` (the default) faces are warped onto the FER-2013
landmark template (:mod:`fervid.extract.align`). Otherwise (``--align off``, or the res10
detector, which gives no landmarks) the crop is a margin-padded square around the box:

Squares are centred on the detector's box. Where a square runs past the frame border it
is *not* shifted or shrunk: the missing pixels are filled by replicating the frame's edge
(``cv2.BORDER_REPLICATE``), so the face stays centred and at the same scale as faces in
the middle of the frame, which is what the classifier saw in training.

Crops are resized with :func:`fervid.model.spec.resize_faces` (the code training uses),
so only small (S, S) arrays leave the worker. Nothing here writes to disk.
"""

from __future__ import annotations

import cv2
import numpy as np

from fervid.extract.align import align_faces
from fervid.model.spec import ModelSpec, resize_faces  # torch-free: this runs in CPU workers
from fervid.records import Detections
from fervid.settings import CropSettings


def face_squares(
    boxes: np.ndarray, frame_shape: tuple[int, ...], settings: CropSettings
) -> np.ndarray:
    """Square crop windows around face boxes.

    ``boxes``: (m, 4) xyxy in pixels (any float or int dtype). ``frame_shape``: the
    frame's ``(H, W)`` or ``(H, W, C)``. Each square has side
    ``round(max(w, h) * (1 + 2 * settings.margin))`` (at least 1 px) and is centred on
    its box. Returns int64 (m, 4) xyxy squares, end-exclusive, which may extend past the
    frame (negative or beyond W/H): :func:`cut_square` pads those parts. A box centre
    outside the frame is first moved onto the nearest border pixel, so every square
    overlaps the frame.
    """
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (m, 4) xyxy, got shape {boxes.shape}")
    if settings.margin < 0:
        raise ValueError(f"settings.margin={settings.margin}; expected >= 0")
    h, w = int(frame_shape[0]), int(frame_shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"frame_shape={tuple(frame_shape)}; expected a non-empty (H, W)")
    cx = ((boxes[:, 0] + boxes[:, 2]) / 2).clip(0, w - 1)
    cy = ((boxes[:, 1] + boxes[:, 3]) / 2).clip(0, h - 1)
    side = np.abs(boxes[:, 2:] - boxes[:, :2]).max(axis=1) * (1 + 2 * settings.margin)
    side = np.maximum(np.round(side), 1).astype(np.int64)
    x0 = np.round(cx - side / 2).astype(np.int64)
    y0 = np.round(cy - side / 2).astype(np.int64)
    return np.column_stack([x0, y0, x0 + side, y0 + side]).astype(np.int64).reshape(-1, 4)


def cut_square(image: np.ndarray, square: np.ndarray) -> np.ndarray:
    """The pixels of ``image`` under one ``square`` (xyxy, end-exclusive, int).

    ``image``: uint8 (H, W) or (H, W, 3). Parts of the square outside the frame are
    filled by replicating the nearest edge pixels. Returns a new array of shape
    (side, side) or (side, side, 3); ``image`` is not modified.
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in square)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 <= ix0 or iy1 <= iy0:
        raise ValueError(f"square {(x0, y0, x1, y1)} does not overlap the {w}x{h} frame")
    patch = image[iy0:iy1, ix0:ix1]
    pads = (iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1)  # top, bottom, left, right
    if any(pads):
        return cv2.copyMakeBorder(patch, *pads, borderType=cv2.BORDER_REPLICATE)
    return patch.copy()


def crop_faces(
    image: np.ndarray, dets: Detections, settings: CropSettings, spec: ModelSpec
) -> np.ndarray:
    """Face crops of one frame, preprocessed to the model's input.

    ``image``: BGR uint8 (H, W, 3). ``dets``: that frame's detections (xyxy pixels).
    Returns uint8 (m, S, S) for a ``"gray"`` model or (m, S, S, 3) RGB for ``"rgb"``,
    S = ``spec.input_size``, one crop per detection in order; (0, S, S[, 3]) when there
    is none. With ``settings.align`` and landmarks, each face is warped onto the FER-2013
    landmark template (:func:`fervid.extract.align.align_faces`); without landmarks (the
    res10 detector gives none), or with ``align`` off, it is the square box crop.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be BGR uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if settings.align and dets.landmarks is not None:
        return align_faces(image, dets.landmarks, spec)
    squares = face_squares(dets.boxes, image.shape, settings)
    return resize_faces([cut_square(image, sq) for sq in squares], spec)
