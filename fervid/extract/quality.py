"""Per-face quality and approximate head pose, what py-feat and OpenFace users filter on.

- ``face_px``: side of the face in pixels of the displayed frame (geometric mean of the
  detector box's width and height): below ~40 px expressions are hard to read.
- ``blur``: variance of the Laplacian of the model-input crop (gray, S x S). Sharp faces
  score in the hundreds, motion-blurred or out-of-focus faces near zero; computed on the
  fixed-size crop so it compares faces of any size (Pech-Pacheco et al. 2000).
- ``brightness``: mean gray level of the crop, 0..1 (dark rooms, backlight).
- ``yaw``/``pitch``/``roll``: **approximate** head angles in degrees from the 5
  landmarks alone (no 3-D model): roll is the eye line's tilt; yaw and pitch come from
  how far the nose tip sits from the midline of the eye and mouth points, scaled by a
  typical nose depth. Good for telling frontal (|angle| < ~15°) from turned faces and
  for ranking, not for measurement; they saturate towards ±60° in profile.

Signs, image coordinates (x right, y down): ``roll`` > 0 when the eye on the image's
right is lower (head tilted clockwise on screen); ``yaw`` > 0 when the nose points to the
image's right; ``pitch`` > 0 when the nose points down (head bowed).
"""

from __future__ import annotations

import cv2
import numpy as np

from fervid.extract.align import TEMPLATE
from fervid.records import Detections, FaceQuality

#: Nose-tip depth in front of the eye/mouth plane, in units of the inter-ocular distance
#: (anthropometric average ~0.5–0.6: ~33 mm over ~63 mm).
NOSE_DEPTH = 0.55
#: Where the nose tip sits between the eye line (0) and the mouth line (1) on the
#: template face, i.e. on FER-2013's median face: taken as pitch 0.
_T = TEMPLATE.astype(np.float64)
NOSE_HEIGHT_FRONTAL = float((_T[2, 1] - _T[:2, 1].mean()) / (_T[3:, 1].mean() - _T[:2, 1].mean()))


def face_px(boxes: np.ndarray) -> np.ndarray:
    """float32 (m,): sqrt(width * height) of (m, 4) xyxy boxes, in the boxes' pixels."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = np.clip(b[:, 2] - b[:, 0], 0, None), np.clip(b[:, 3] - b[:, 1], 0, None)
    return np.sqrt(w * h).astype(np.float32)


def crop_quality(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(blur, brightness), float32 (m,) each, of uint8 crops (m, S, S) gray or (m, S, S, 3)
    RGB. ``blur``: variance of the 3x3 Laplacian (gray levels²); ``brightness``: mean/255."""
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim not in (3, 4):
        raise ValueError(f"crops must be uint8 (m, S, S[, 3]), got {crops.dtype} {crops.shape}")
    blur = np.zeros(len(crops), np.float32)
    bright = np.zeros(len(crops), np.float32)
    for i, c in enumerate(crops):
        g = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) if c.ndim == 3 else c
        blur[i] = cv2.Laplacian(g, cv2.CV_64F, ksize=1).var()
        bright[i] = g.mean() / 255.0
    return blur, bright


def head_pose(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate (yaw, pitch, roll) in degrees, float32 (m,) each, from (m, 5, 2)
    landmarks in :data:`fervid.records.LANDMARK_NAMES` order (any pixel scale).

    The points are first rotated so the eyes are level (removing roll); then, with ``d``
    the inter-ocular distance, yaw = atan(nose offset from the eye/mouth midline /
    (NOSE_DEPTH d)) and pitch = atan((nose height between eye and mouth lines − the
    template's) · eye–mouth distance / (NOSE_DEPTH d)).
    """
    p = np.asarray(landmarks, np.float64)
    if p.ndim != 3 or p.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must be (m, 5, 2), got {p.shape}")
    eye_vec = p[:, 1] - p[:, 0]  # right eye -> left eye: image left -> right when frontal
    roll = np.arctan2(eye_vec[:, 1], eye_vec[:, 0])
    c, s = np.cos(-roll), np.sin(-roll)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (m, 2, 2)
    q = np.einsum("mij,mkj->mki", rot, p - p[:, :1])  # level eyes, right eye at origin
    d = np.maximum(np.linalg.norm(eye_vec, axis=1), 1e-6)
    eye_y, mouth_y = q[:, :2, 1].mean(axis=1), q[:, 3:, 1].mean(axis=1)
    mid_x = (q[:, :2, 0].mean(axis=1) + q[:, 3:, 0].mean(axis=1)) / 2
    nose = q[:, 2]
    yaw = np.arctan2(nose[:, 0] - mid_x, NOSE_DEPTH * d)
    em = mouth_y - eye_y
    t = (nose[:, 1] - eye_y) / np.where(np.abs(em) > 1e-6, em, 1e-6)
    pitch = np.arctan2((t - NOSE_HEIGHT_FRONTAL) * em, NOSE_DEPTH * d)
    return (
        np.degrees(yaw).astype(np.float32),
        np.degrees(pitch).astype(np.float32),
        np.degrees(roll).astype(np.float32),
    )


def measure_faces(dets: Detections, crops: np.ndarray, scale: float = 1.0) -> FaceQuality:
    """Quality and pose of one frame's faces.

    ``dets``: the frame's detections, in pixels of the image the detector saw; ``crops``:
    their model-input crops (m, S, S[, 3]) uint8; ``scale``: that image's size over the
    displayed frame's (``FrameSampler.scale``), so landmarks and ``face_px`` come out in
    displayed-frame pixels like the boxes in the output.
    """
    if len(crops) != len(dets):
        raise ValueError(f"crops has {len(crops)} faces, dets {len(dets)}; pass one crop per face")
    if not scale > 0:
        raise ValueError(f"scale={scale}; expected > 0")
    blur, bright = crop_quality(crops)
    if dets.landmarks is None:
        q = FaceQuality.empty(len(dets))
        lms = q.landmarks
        yaw = pitch = roll = q.yaw
    else:
        lms = (dets.landmarks / scale).astype(np.float32)
        yaw, pitch, roll = head_pose(lms)
    return FaceQuality(
        landmarks=lms, face_px=face_px(dets.boxes / scale), blur=blur, brightness=bright,
        yaw=yaw, pitch=pitch, roll=roll,
    )  # fmt: skip
