"""Apply an obfuscation inside boxes only: given boxes, or faces found offline.

Face detection works offline, with no model download, through one of two backends:

* ``"haar"``: OpenCV's frontal-face Haar cascade shipped inside OpenCV 4.x wheels
  (``cv2.data.haarcascades``). OpenCV 5 dropped ``CascadeClassifier`` and the cascade files
  from its wheels, so this backend is only there with ``opencv-python-headless<5``.
* ``"dlib"``: dlib's HOG + linear-SVM frontal face detector, compiled into dlib (``dlib`` or the
  prebuilt ``dlib-bin`` wheel), no model file needed. It finds about 95% of aligned CelebA faces.

``backend="auto"`` takes the first that is installed. Both are classic detectors: they miss
profiles and small or occluded faces, so "no face found" may be a miss, never a proof that there
is nothing to hide (``privattrib obfuscate --faces`` refuses to write such an image unless told).

Each box is obfuscated as an image of its own (the pixelation grid starts at the box corner;
DP-Pix's guarantee then holds for the pixels of that box, given the box). The boxes themselves are
not private: a detected face box is a function of the original image, and its position and size
show in the output. Only boxes fixed in advance (``--box``) leave nothing else to leak.
Overlapping boxes are merged first so that no pixel is obfuscated twice and no box sees another's
output. The noise of box ``i`` of an
image is keyed by ``"<image key>#box<i>"``: reproducible, and independent between boxes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

_CASCADE_NAME = "haarcascade_frontalface_default.xml"
_local = threading.local()  # CascadeClassifier objects are not safe to share between threads


BACKENDS = ("auto", "haar", "dlib")


def _haar():
    """The Haar cascade, or None where OpenCV ships none (OpenCV >= 5)."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        return None
    path = Path(getattr(cv2.data, "haarcascades", "")) / _CASCADE_NAME
    if not path.is_file():
        return None
    clf = getattr(_local, "haar", None)
    if clf is None:
        clf = cv2.CascadeClassifier(str(path))
        if clf.empty():
            return None
        _local.haar = clf
    return clf


def _dlib():
    """dlib's built-in HOG face detector, or None where dlib is not installed."""
    det = getattr(_local, "dlib", None)
    if det is None:
        try:
            import dlib
        except ImportError:
            return None
        det = dlib.get_frontal_face_detector()
        _local.dlib = det
    return det


def available_backends() -> list[str]:
    """Detector backends installed here, in the order ``"auto"`` tries them."""
    return [name for name, probe in (("haar", _haar), ("dlib", _dlib)) if probe() is not None]


def resolve_backend(backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    have = available_backends()
    if backend == "auto":
        if not have:
            raise RuntimeError(
                "no offline face detector is installed: OpenCV >= 5 no longer ships the Haar cascade; "
                "install dlib-bin (pip install dlib-bin) or opencv-python-headless<5"
            )
        return have[0]
    if backend not in have:
        raise RuntimeError(f"face detector backend {backend!r} is not available here (available: {have or 'none'})")
    return backend


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` -> (x, y, w, h); W and H must be >= 1, X and Y >= 0."""
    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"a box is X,Y,W,H in whole pixels (e.g. 10,20,64,64), got {text!r}") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ValueError(f"a box needs X, Y >= 0 and W, H >= 1, got {text!r}")
    return x, y, w, h


def clip_and_merge(boxes, height: int, width: int) -> np.ndarray:
    """Clip (x, y, w, h) boxes to the image, drop empty ones, merge overlapping ones.

    Args:
        boxes: array-like K x 4 of (x, y, w, h).
        height, width: image size.

    Returns:
        int64 array M x 4 (M <= K) of disjoint boxes, sorted by (y, x).
    """
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    x0 = np.clip(b[:, 0], 0, width)
    y0 = np.clip(b[:, 1], 0, height)
    x1 = np.clip(b[:, 0] + b[:, 2], 0, width)
    y1 = np.clip(b[:, 1] + b[:, 3], 0, height)
    rects = [[a, c, e, f] for a, c, e, f in zip(x0, y0, x1, y1) if e > a and f > c]
    merged = True
    while merged:  # repeat until no two rectangles overlap (a merge can create new overlaps)
        merged = False
        out: list[list[int]] = []
        for r in rects:
            for o in out:
                if r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3]:
                    o[0], o[1], o[2], o[3] = min(o[0], r[0]), min(o[1], r[1]), max(o[2], r[2]), max(o[3], r[3])
                    merged = True
                    break
            else:
                out.append(list(r))
        rects = out
    rects.sort(key=lambda r: (r[1], r[0]))
    return np.array([[r[0], r[1], r[2] - r[0], r[3] - r[1]] for r in rects], dtype=np.int64).reshape(-1, 4)


def detect_faces(
    image: np.ndarray,
    *,
    backend: str = "auto",
    min_size: float = 0.02,
    margin: float = 0.2,
    upsample: int | None = None,
) -> np.ndarray:
    """Frontal faces found by an offline detector.

    Args:
        image: uint8 H x W, H x W x 1 or H x W x 3 (RGB).
        backend: ``"auto"``, ``"haar"`` or ``"dlib"`` (see the module docstring).
        min_size: smallest face side as a fraction of the image's shorter side, at least 20 px
            (Haar only; dlib's smallest face is about 80 px, 40 px with ``upsample=1``). Small on
            purpose: a face in a group or street photo is a few percent of the frame, and a missed
            face is published as it is.
        margin: grow each box by this fraction of its side on every edge (detector boxes are
            tight around eyes, nose and mouth; hair, chin and ears also identify a person).
        upsample: dlib's image pyramid upsampling (None: 1 for images under 160 px, else 0).

    Returns:
        int64 array K x 4 of (x, y, w, h), clipped to the image, overlaps merged.
    """
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"detect_faces needs a uint8 H x W or H x W x C image, got {img.dtype} {img.shape}")
    if not 0 <= margin <= 2:
        raise ValueError(f"margin must be in [0, 2], got {margin}")
    if not 0 < min_size <= 1:
        raise ValueError(f"min_size must be in (0, 1], got {min_size}")
    grey = img if img.ndim == 2 else (img[:, :, 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    grey = np.ascontiguousarray(grey)
    h, w = grey.shape
    if resolve_backend(backend) == "haar":
        side = max(20, int(min(h, w) * min_size))
        found = _haar().detectMultiScale(cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=5,
                                         minSize=(side, side))
        boxes = np.asarray(found, dtype=np.int64).reshape(-1, 4)
    else:
        if upsample is None:
            upsample = 1 if min(h, w) < 160 else 0
        rects = _dlib()(grey, int(upsample))
        boxes = np.array([[r.left(), r.top(), r.width(), r.height()] for r in rects], dtype=np.int64).reshape(-1, 4)
    if len(boxes) and margin > 0:
        grow_w = np.rint(boxes[:, 2] * margin).astype(np.int64)
        grow_h = np.rint(boxes[:, 3] * margin).astype(np.int64)
        boxes = np.stack([boxes[:, 0] - grow_w, boxes[:, 1] - grow_h,
                          boxes[:, 2] + 2 * grow_w, boxes[:, 3] + 2 * grow_h], axis=1)
    return clip_and_merge(boxes, h, w)


def obfuscate_regions(obfuscation, image: np.ndarray, boxes, *, seed: int | None = None, key: str | int = 0) -> np.ndarray:
    """Obfuscate ``image`` inside ``boxes`` only.

    Args:
        obfuscation: a callable from :func:`privattrib.obfuscation.make`.
        image: uint8 H x W x C (NumPy).
        boxes: K x 4 (x, y, w, h); clipped and merged by :func:`clip_and_merge`.
        seed: noise seed (None: a fresh secret seed, as for every other entry point).
        key: the image's key; box ``i`` uses ``f"{key}#box{i}"``.

    Returns:
        a new uint8 H x W x C array; pixels outside the boxes are unchanged.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"obfuscate_regions needs a uint8 H x W x C image, got {img.dtype} {img.shape}")
    out = img.copy()
    for i, (x, y, w, h) in enumerate(clip_and_merge(boxes, img.shape[0], img.shape[1])):
        region = np.ascontiguousarray(img[y : y + h, x : x + w])
        out[y : y + h, x : x + w] = obfuscation(region, seed=seed, keys=[f"{key}#box{i}"])
    return out
