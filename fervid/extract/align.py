"""Landmark alignment: warp each face onto the FER-2013 template of 5 landmarks.

FER-2013's faces are tight, roughly frontal 48x48 crops, and the emotion model learnt
from them. Rather than guess a box margin, fervid measured where YuNet's 5 landmarks
fall in FER-2013's own training crops (``scripts/measure_align_template.py``, numbers in
``docs/detector.md``) and keeps the per-point medians as :data:`TEMPLATE`. A video face
is cropped with the similarity transform (rotation, uniform scale, translation: no
shear, so the face keeps its proportions) that maps its landmarks onto the template in
the least-squares sense (Umeyama 1991, closed form, no random sampling).

The warp is done at about the face's own resolution and then resized to the model input
with :func:`fervid.model.spec.resize_faces`, the code training uses, so downscaling
is INTER_AREA as for box crops instead of aliased bilinear sampling. Pixels outside the
frame are filled by replicating the frame's edge, as in box crops.
"""

from __future__ import annotations

import cv2
import numpy as np

from fervid.model.spec import ModelSpec, resize_faces  # torch-free: runs in CPU workers

#: Median YuNet landmarks in FER-2013 *train* crops as fractions of the crop side (x, y),
#: in :data:`fervid.records.LANDMARK_NAMES` order; medians over the 25,638 of 28,709
#: training images where YuNet found a face (``scripts/measure_align_template.py``).
TEMPLATE = np.array(
    [
        (0.3143, 0.3813),  # right_eye
        (0.6762, 0.3804),  # left_eye
        (0.4840, 0.5897),  # nose
        (0.3492, 0.7363),  # mouth_right
        (0.6444, 0.7364),  # mouth_left
    ],
    np.float32,
)

#: The warp's own output is at most this many times the model input side before the
#: final resize (bounds the work for very large faces; INTER_AREA then averages).
MAX_WARP_FACTOR = 4


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping points ``src`` onto ``dst``.

    ``src``, ``dst``: (k, 2) float (x, y), k >= 2, not all equal. Returns float64 (2, 3)
    ``M`` with ``dst ≈ M[:, :2] @ src + M[:, 2]`` (Umeyama's closed form, reflection
    excluded), usable by ``cv2.warpAffine``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(
            f"src and dst must be the same (k>=2, 2) shape, got {src.shape}, {dst.shape}"
        )
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("src points are all equal; a similarity transform is undefined")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # keep a rotation, never a mirror
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def unit_transforms(landmarks: np.ndarray, template: np.ndarray = TEMPLATE) -> np.ndarray:
    """float64 (m, 2, 3): per face, the transform from frame pixels to template units
    (the aligned crop spans [0, 1] x [0, 1]). ``landmarks``: (m, 5, 2) pixels."""
    lms = np.asarray(landmarks, np.float64)
    if lms.ndim != 3 or lms.shape[1:] != template.shape:
        raise ValueError(f"landmarks must be (m, {len(template)}, 2), got {lms.shape}")
    out = np.zeros((len(lms), 2, 3))
    for i, p in enumerate(lms):
        out[i] = similarity_transform(p, template)
    return out


def crop_side_px(transforms: np.ndarray) -> np.ndarray:
    """float64 (m,): side of each aligned crop in frame pixels (1 / the transform's scale)."""
    t = np.asarray(transforms, np.float64).reshape(-1, 2, 3)
    return 1.0 / np.sqrt(np.abs(np.linalg.det(t[:, :, :2])))


def align_faces(
    image: np.ndarray, landmarks: np.ndarray, spec: ModelSpec, template: np.ndarray = TEMPLATE
) -> np.ndarray:
    """Aligned face crops of one frame, preprocessed to the model's input.

    ``image``: BGR uint8 (H, W, 3). ``landmarks``: float (m, 5, 2) pixels of ``image`` in
    :data:`fervid.records.LANDMARK_NAMES` order. Returns uint8 (m, S, S) gray or
    (m, S, S, 3) RGB like :func:`fervid.extract.crop.crop_faces`, S = ``spec.input_size``,
    with each face's landmarks at ``template * S`` (up to the least-squares residual).
    """
    s = spec.input_size
    transforms = unit_transforms(landmarks, template)
    patches = []
    for t, side in zip(transforms, crop_side_px(transforms), strict=True):
        # Warp at about the face's own size (at least S, at most MAX_WARP_FACTOR * S),
        # then let resize_faces downscale with INTER_AREA like the training path.
        n = int(np.clip(round(side), s, MAX_WARP_FACTOR * s))
        patches.append(
            cv2.warpAffine(
                image, t * n, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        )
    return resize_faces(patches, spec)
