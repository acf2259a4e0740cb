"""Stable ``face_id`` per person within one video, across sampled frames.

Each frame's boxes are matched to the open tracks by box overlap (IoU), with a fallback
on centre distance for faces that moved more than their overlap allows (frames are
sampled ~0.5 s apart). Matching is greedy, best pair first: IoU matches outrank
distance-only matches, higher IoU or nearer centres outrank lower. Greedy can differ from
the optimal (Hungarian) assignment only when several faces compete for overlapping
tracks, which is rare with the one to three faces of a consultation; it needs no scipy
and gives the same ids on every install.

A track not seen for more than ``max_gap_s`` is closed; a face appearing after that gets
a new id. Boxes are matched against the track's last box (no motion model): faces in
consultations move little between samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fervid.settings import TrackSettings


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (p, 4) with every box in ``b`` (q, 4).

    Boxes xyxy (any units). Returns float64 (p, q) in [0, 1]; 0 where a union is empty.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (ix1 - ix0).clip(0) * (iy1 - iy0).clip(0)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass
class _Track:
    face_id: int
    box: np.ndarray  # float64 (4,) xyxy, last seen
    last_seen_s: float


class FaceTracker:
    """Assigns face ids frame by frame; create one per video.

    ``settings.min_iou``: lower links faces that moved more, at the risk of swapping two
    faces that are close. ``settings.max_center_dist``: fallback link when IoU is too low,
    in units of the track box's diagonal. ``settings.max_gap_s``: longer keeps a face's id
    through longer absences, at the risk of giving a new person an old id.
    """

    def __init__(self, *, settings: TrackSettings) -> None:
        if not 0 <= settings.min_iou <= 1:
            raise ValueError(f"settings.min_iou={settings.min_iou}; expected a value in [0, 1]")
        if settings.max_center_dist < 0:
            raise ValueError(f"settings.max_center_dist={settings.max_center_dist}; expected >= 0")
        if settings.max_gap_s < 0:
            raise ValueError(f"settings.max_gap_s={settings.max_gap_s}; expected >= 0 seconds")
        self.settings = settings
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._last_t = -np.inf

    def update(self, timestamp_s: float, boxes: np.ndarray) -> np.ndarray:
        """Ids of the faces in one frame.

        ``timestamp_s``: the frame's time in seconds; must not decrease between calls.
        ``boxes``: (m, 4) xyxy pixels. Returns int32 (m,) face ids, distinct within the
        frame; faces not matched to an open track get new ids 0, 1, 2, ... in order of
        first appearance (row order within a frame).
        """
        boxes = np.asarray(boxes, np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (m, 4) xyxy, got shape {boxes.shape}")
        if timestamp_s < self._last_t:
            raise ValueError(
                f"timestamp_s={timestamp_s} is earlier than the previous frame's "
                f"{self._last_t}; feed frames in time order"
            )
        self._last_t = timestamp_s
        gap = self.settings.max_gap_s
        self._tracks = [t for t in self._tracks if timestamp_s - t.last_seen_s <= gap]

        ids = np.full(len(boxes), -1, np.int32)
        for ti, di in self._match(boxes):
            track = self._tracks[ti]
            track.box, track.last_seen_s = boxes[di].copy(), timestamp_s
            ids[di] = track.face_id
        for di in np.flatnonzero(ids < 0).tolist():  # plain ints, like the matches above
            ids[di] = self._next_id
            self._tracks.append(_Track(self._next_id, boxes[di].copy(), timestamp_s))
            self._next_id += 1
        return ids

    def _match(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """Greedy (track, detection) pairs, best score first."""
        if not self._tracks or not len(boxes):
            return []
        prev = np.stack([t.box for t in self._tracks])  # (p, 4)
        iou = iou_matrix(prev, boxes)  # (p, m)
        centre_prev = (prev[:, :2] + prev[:, 2:]) / 2
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        dist = np.linalg.norm(centre_prev[:, None] - centre[None], axis=2)  # (p, m) px
        diag = np.linalg.norm(prev[:, 2:] - prev[:, :2], axis=1)[:, None]  # (p, 1) px
        limit = self.settings.max_center_dist * diag
        # Score: IoU matches in (1, 2], distance-only matches in [0, 1], forbidden -inf.
        near = np.divide(dist, limit, out=np.full_like(dist, np.inf), where=limit > 0)
        score = np.where(near <= 1, 1 - near, -np.inf)
        # Disjoint boxes (IoU 0) link only through the distance rule, even with min_iou=0.
        score = np.where((iou >= self.settings.min_iou) & (iou > 0), 1 + iou, score)
        pairs = []
        order = np.argsort(-score, axis=None, kind="stable")  # ties: lower track, then row
        used_t, used_d = set(), set()
        for flat in order:
            ti, di = divmod(int(flat), score.shape[1])
            if not np.isfinite(score[ti, di]):
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
        return pairs


def assign_face_ids(
    timestamps: np.ndarray,
    frame_index: np.ndarray,
    boxes: np.ndarray,
    settings: TrackSettings,
    *,
    by_presence: bool = True,
) -> np.ndarray:
    """Face ids for all face rows of one video at once.

    ``timestamps``: float64 (n,) seconds; ``frame_index``: int (n,) source frame of each
    row (rows of one frame share it); ``boxes``: (n, 4) xyxy pixels. Rows may come in
    any order: they are visited in (time, frame) order and the ids returned aligned with
    the input rows. Returns int32 (n,).

    ``by_presence``: renumber ids so that 0 is the face in the most rows (the person
    present longest), then 1, ...; ties keep the order of first appearance. False keeps
    the tracker's order of first appearance.
    """
    timestamps = np.asarray(timestamps, np.float64)
    frame_index = np.asarray(frame_index, np.int64)
    boxes = np.asarray(boxes, np.float64)
    n = len(timestamps)
    if frame_index.shape != (n,) or boxes.shape != (n, 4):
        raise ValueError(
            f"expected timestamps (n,), frame_index (n,), boxes (n, 4) with one n; "
            f"got {timestamps.shape}, {frame_index.shape}, {boxes.shape}"
        )
    ids = np.zeros(n, np.int32)
    if n == 0:
        return ids
    order = np.lexsort((frame_index, timestamps))  # by time, then frame; stable within frame
    starts = np.flatnonzero(np.diff(frame_index[order], prepend=frame_index[order[0]] - 1))
    tracker = FaceTracker(settings=settings)
    for rows in np.split(order, starts[1:]):
        ids[rows] = tracker.update(float(timestamps[rows[0]]), boxes[rows])
    if by_presence:
        counts = np.bincount(ids)
        # Stable sort of ids 0..k-1 by descending count: ties keep first-appearance order.
        rank = np.empty_like(counts)
        rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
        ids = rank[ids].astype(np.int32)
    return ids
