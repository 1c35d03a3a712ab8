"""Obfuscation inside boxes, box merging, and the offline face detector."""

from __future__ import annotations

import numpy as np
import pytest

from bad_files import gradient_rgb
from privattrib.obfuscation import make
from privattrib.obfuscation.regions import (
    available_backends,
    clip_and_merge,
    detect_faces,
    obfuscate_regions,
    parse_box,
    resolve_backend,
)


def test_parse_box():
    assert parse_box("1, 2,3,4") == (1, 2, 3, 4)
    for bad in ("1,2,3", "a,b,c,d", "-1,0,4,4", "0,0,0,4"):
        with pytest.raises(ValueError, match="X,Y,W,H|X, Y >= 0"):
            parse_box(bad)


def test_clip_and_merge():
    # Clipped to the image; empty boxes dropped.
    assert clip_and_merge([[-5, -5, 10, 10], [50, 50, 5, 5]], 20, 30).tolist() == [[0, 0, 5, 5]]
    # Overlaps merge transitively (a-b overlap, the union then overlaps c); touching boxes do not.
    merged = clip_and_merge([[0, 0, 10, 10], [8, 8, 10, 10], [17, 0, 5, 9], [30, 30, 5, 5], [35, 30, 5, 5]], 100, 100)
    assert merged.tolist() == [[0, 0, 22, 18], [30, 30, 5, 5], [35, 30, 5, 5]]
    assert clip_and_merge(np.zeros((0, 4)), 10, 10).shape == (0, 4)


def test_obfuscate_regions_touches_boxes_only_and_is_keyed():
    img = gradient_rgb(40, 60, 3)
    ob = make("dp-pix:b=4,m=1,epsilon=0.5")
    out = obfuscate_regions(ob, img, [[10, 5, 16, 12], [40, 20, 8, 8]], seed=1, key="x.png")
    mask = np.zeros(img.shape[:2], bool)
    mask[5:17, 10:26] = True
    mask[20:28, 40:48] = True
    assert np.array_equal(out[~mask], img[~mask])
    assert (out[mask] != img[mask]).any()
    # Each box equals the method applied to the box alone with key "<key>#box<i>".
    assert np.array_equal(out[5:17, 10:26], ob(np.ascontiguousarray(img[5:17, 10:26]), seed=1, keys=["x.png#box0"]))
    assert np.array_equal(out[20:28, 40:48], ob(np.ascontiguousarray(img[20:28, 40:48]), seed=1, keys=["x.png#box1"]))
    assert np.array_equal(out, obfuscate_regions(ob, img, [[10, 5, 16, 12], [40, 20, 8, 8]], seed=1, key="x.png"))
    other = obfuscate_regions(ob, img, [[10, 5, 16, 12], [40, 20, 8, 8]], seed=1, key="y.png")
    assert not np.array_equal(out, other)
    grey = obfuscate_regions(make("pixelate:b=4"), img[:, :, :1].copy(), [[0, 0, 8, 8]])
    assert grey.shape == (40, 60, 1)
    with pytest.raises(ValueError):
        obfuscate_regions(ob, img[:, :, 0], [[0, 0, 4, 4]])


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("yolo")


def _need(backend):
    if backend not in available_backends():
        assert backend != "haar", "OpenCV's Haar cascade must ship with the pinned opencv<5 wheel"
        pytest.skip(f"{backend} face detector not installed (pip install '.[faces]')")


@pytest.mark.parametrize("backend", ["haar", "dlib"])
def test_no_face_in_a_gradient(backend):
    _need(backend)
    assert detect_faces(gradient_rgb(120, 120), backend=backend).shape == (0, 4)


@pytest.mark.shared_data
@pytest.mark.parametrize("backend", ["haar", "dlib"])
def test_detector_finds_most_aligned_celeba_faces(celeba_root, backend):
    _need(backend)
    from privattrib.data import load_image

    files = sorted((celeba_root / "img_align_celeba").iterdir())[:100]
    counts = []
    for f in files:
        img = load_image(f)
        boxes = detect_faces(img, margin=0.0, backend=backend)
        counts.append(len(boxes))
        for x, y, w, h in boxes:
            # Aligned CelebA puts the face in the middle of the 178 x 218 frame.
            assert 40 < x + w / 2 < 140 and 60 < y + h / 2 < 170
    assert sum(c == 1 for c in counts) >= 85, np.bincount(counts)
    # The margin grows the box but stays inside the image.
    img = load_image(files[1])
    tight = detect_faces(img, margin=0.0, backend=backend)
    grown = detect_faces(img, margin=0.2, backend=backend)
    if len(tight):
        assert (grown[0, 2:] > tight[0, 2:]).all() and (grown[0, :2] >= 0).all()


@pytest.mark.shared_data
@pytest.mark.parametrize("backend", ["haar", "dlib"])
def test_a_small_face_in_a_large_photo_is_found(celeba_root, backend):
    # A ~180 px face in a 2400 x 2400 photo (a face in a group or street shot): a smallest face of
    # 10 % of the shorter side (240 px) made the Haar backend blind to it, so --faces wrote it untouched.
    _need(backend)
    from privattrib.data import load_image

    files = sorted((celeba_root / "img_align_celeba").iterdir())[:10]
    faces = [img for img in map(load_image, files) if len(detect_faces(img, backend=backend)) == 1][:3]
    assert faces
    for face in faces:
        canvas = np.full((2400, 2400, 3), 120, dtype=np.uint8)
        canvas[1000 : 1000 + face.shape[0], 700 : 700 + face.shape[1]] = face
        boxes = detect_faces(canvas, backend=backend)
        assert len(boxes) >= 1
        x, y, w, h = boxes[0]
        assert 700 <= x + w / 2 <= 700 + face.shape[1] and 1000 <= y + h / 2 <= 1000 + face.shape[0]
