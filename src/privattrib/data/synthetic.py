"""Synthetic demo faces: procedurally drawn, deterministic, no download, clearly not real people.

Each identity has fixed traits (face shape, skin and hair colour, hair style, eye spacing and
colour, brows, nose, mouth); each image of it varies pose (shift, scale, in-plane rotation),
expression (mouth curvature), lighting (a directional gradient) and sensor noise. That makes a
small re-identification problem with real structure for demos and fast tests. Faces are drawn
with OpenCV at 4x the output size and reduced with area averaging (antialiased).
"""

from __future__ import annotations

import cv2
import numpy as np

from privattrib.data.dataset import LabeledImages

SYNTHETIC_NOTE = "procedurally drawn synthetic faces (privattrib.data.synthetic), not real people"


def _identity_traits(rng: np.random.Generator) -> dict:
    skin = np.array([rng.uniform(90, 235), 0, 0])
    skin[1] = skin[0] * rng.uniform(0.72, 0.86)
    skin[2] = skin[0] * rng.uniform(0.55, 0.75)
    return {
        "background": rng.uniform(30, 220, size=3),
        "skin": skin,
        "hair": rng.uniform(10, 200, size=3) * np.array([1.0, 0.8, 0.6]),
        "hair_style": int(rng.integers(0, 4)),
        "face_w": rng.uniform(0.26, 0.36),
        "face_h": rng.uniform(0.34, 0.44),
        "eye_dx": rng.uniform(0.10, 0.16),
        "eye_y": rng.uniform(-0.08, 0.0),
        "eye_r": rng.uniform(0.025, 0.045),
        "iris": rng.uniform(20, 160, size=3),
        "brow_tilt": rng.uniform(-0.03, 0.03),
        "brow_w": rng.uniform(0.008, 0.02),
        "nose_len": rng.uniform(0.06, 0.13),
        "mouth_w": rng.uniform(0.08, 0.16),
        "mouth_y": rng.uniform(0.14, 0.22),
        "lips": np.array([rng.uniform(120, 200), rng.uniform(40, 90), rng.uniform(50, 100)]),
    }


def _draw(t: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    s = 4 * size
    img = np.empty((s, s, 3), np.float32)
    img[:] = t["background"]

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round((0.5 + x) * s)), int(round((0.5 + y) * s))

    def ln(v: float) -> int:
        return max(1, int(round(v * s)))

    fw, fh = t["face_w"], t["face_h"]
    hair = tuple(float(c) for c in t["hair"])
    skin = tuple(float(c) for c in t["skin"])
    style = t["hair_style"]
    if style in (1, 3):  # long hair behind the face
        cv2.ellipse(img, pt(0, 0.05), (ln(fw * 1.25), ln(fh * 1.2)), 0, 0, 360, hair, -1, cv2.LINE_AA)
    cv2.ellipse(img, pt(0, 0.02), (ln(fw), ln(fh)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    if style in (0, 1, 3):  # hair cap
        cv2.ellipse(img, pt(0, -fh * 0.45), (ln(fw * 1.05), ln(fh * 0.6)), 0, 180, 360, hair, -1, cv2.LINE_AA)
    if style == 3:  # fringe
        cv2.rectangle(img, pt(-fw * 0.8, -fh * 0.75), pt(fw * 0.8, -fh * 0.45), hair, -1, cv2.LINE_AA)

    smile = rng.uniform(-1.0, 1.0)
    for side in (-1, 1):
        ex, ey = side * t["eye_dx"], t["eye_y"]
        cv2.ellipse(img, pt(ex, ey), (ln(t["eye_r"] * 1.6), ln(t["eye_r"])), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(img, pt(ex, ey), ln(t["eye_r"] * 0.8), tuple(float(c) for c in t["iris"]), -1, cv2.LINE_AA)
        cv2.circle(img, pt(ex, ey), ln(t["eye_r"] * 0.35), (10, 10, 10), -1, cv2.LINE_AA)
        by = ey - t["eye_r"] * 2.2
        cv2.line(img, pt(ex - t["eye_r"] * 1.8, by + side * t["brow_tilt"]),
                 pt(ex + t["eye_r"] * 1.8, by - side * t["brow_tilt"]), hair, ln(t["brow_w"]), cv2.LINE_AA)
    nose_shade = tuple(float(c) * 0.8 for c in t["skin"])
    cv2.line(img, pt(0, t["eye_y"] + 0.02), pt(0.015, t["eye_y"] + t["nose_len"]), nose_shade, ln(0.012), cv2.LINE_AA)
    mw, my = t["mouth_w"], t["mouth_y"]
    # A parabola through the mouth corners: smile > 0 curves up at the corners.
    curve = [pt(x, my + smile * 0.035 * (1 - (x / mw) ** 2) - smile * 0.0175) for x in np.linspace(-mw, mw, 9)]
    cv2.polylines(img, [np.array(curve, np.int32)], False, tuple(float(c) for c in t["lips"]), ln(0.018), cv2.LINE_AA)

    # Pose: in-plane rotation, scale and shift.
    angle = rng.uniform(-10, 10)
    scale = rng.uniform(0.92, 1.08)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += rng.uniform(-0.05, 0.05, size=2) * s
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    # Lighting: a directional gradient plus overall exposure.
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    light = 1.0 + rng.uniform(0.1, 0.45) * (np.cos(theta) * xx + np.sin(theta) * yy) * 2
    img *= (light * rng.uniform(0.85, 1.15))[:, :, None]

    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    small += rng.normal(0.0, 3.0, size=small.shape).astype(np.float32)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def synthetic_faces(
    n_identities: int = 10,
    per_identity: int = 10,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
) -> LabeledImages:
    """A deterministic set of procedurally drawn faces with identity labels.

    Args:
        n_identities: number of synthetic people (>= 1).
        per_identity: images per person (>= 1).
        size: side of the square images (>= 8).
        channels: 1 (grey, BT.601 luma) or 3.
        seed: same seed, same bytes on every machine.

    Returns:
        LabeledImages with images N x C x size x size (N = n_identities * per_identity, grouped by
        identity), labels = identities = person index, class_names ``"synthetic-000"`` ...,
        keys ``"synthetic/<person>/<image>"``, meta ``{"source": "synthetic", "synthetic": True, ...}``.
    """
    if n_identities < 1 or per_identity < 1:
        raise ValueError(f"n_identities and per_identity must be >= 1, got {n_identities}, {per_identity}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    images = np.empty((n_identities * per_identity, channels, size, size), np.uint8)
    labels = np.repeat(np.arange(n_identities, dtype=np.int64), per_identity)
    keys = []
    for i in range(n_identities):
        traits = _identity_traits(np.random.default_rng([seed, 0, i]))
        for j in range(per_identity):
            rgb = _draw(traits, np.random.default_rng([seed, 1, i, j]), size)
            if channels == 1:
                grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
                images[i * per_identity + j, 0] = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
            else:
                images[i * per_identity + j] = rgb.transpose(2, 0, 1)
            keys.append(f"synthetic/{i:03d}/{j:03d}")
    width = max(3, len(str(n_identities - 1)))
    return LabeledImages(
        images=images,
        labels=labels,
        class_names=[f"synthetic-{i:0{width}d}" for i in range(n_identities)],
        keys=keys,
        identities=labels.copy(),
        meta={
            "source": "synthetic",
            "synthetic": True,
            "note": SYNTHETIC_NOTE,
            "params": {"n_identities": n_identities, "per_identity": per_identity, "size": size,
                       "channels": channels, "seed": seed},
        },
    )
