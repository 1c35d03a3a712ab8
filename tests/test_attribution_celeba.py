"""Real faces: resampling fingerprints on CelebA are learned, and pixelation erases them.

Stand-in "GAN" sources made from real CelebA faces (the repository ships no GAN images): each
image is downsampled 2x (area) and upsampled back with nearest-neighbour or bilinear
interpolation, the two upsampling layers GAN generators use. Pixelation with 4 x 4 cells maps a
nearest-upsampled image to (almost exactly) the pixelation of its original, so after it the
``real`` and ``nearest-up`` classes cannot be told apart any more.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from privattrib.attribution.scenarios import run_attribution_cell
from privattrib.data.dataset import LabeledImages

CLASSES = ["bilinear-up", "nearest-up", "real"]


def _resample(images: np.ndarray, interpolation: int) -> np.ndarray:
    out = np.empty_like(images)
    for i, img in enumerate(images.transpose(0, 2, 3, 1)):
        h, w = img.shape[:2]
        down = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(down, (w, h), interpolation=interpolation).transpose(2, 0, 1)
    return out


@pytest.fixture(scope="module")
def celeba_sources(celeba_root, tmp_path_factory):
    from privattrib.data import load_celeba

    celeba = load_celeba(celeba_root, size=32, limit=900, cache_dir=tmp_path_factory.mktemp("cache"),
                         progress=False)
    images = np.asarray(celeba.images)
    third = len(images) // 3
    parts = {"real": images[:third],
             "nearest-up": _resample(images[third:2 * third], cv2.INTER_NEAREST),
             "bilinear-up": _resample(images[2 * third:3 * third], cv2.INTER_LINEAR)}
    splits = {}
    for split, (lo, hi) in {"train": (0, 200), "val": (200, 240), "test": (240, 300)}.items():
        imgs, labels, keys = [], [], []
        for c, name in enumerate(CLASSES):
            imgs.append(parts[name][lo:hi])
            labels += [c] * (hi - lo)
            keys += [f"{name}/{split}/{i}" for i in range(lo, hi)]
        splits[split] = LabeledImages(np.concatenate(imgs), np.asarray(labels, np.int64), list(CLASSES), keys)
    return splits


@pytest.mark.integration
@pytest.mark.shared_data
def test_celeba_resampling_fingerprints_and_pixelation(celeba_sources, tmp_path):
    """dct (Frank et al.) on 600 training faces: perfect on clean images; pixelation with 4 x 4
    cells breaks the clean model, and a model trained on pixelated images cannot separate real
    from nearest-upsampled faces any more (their pixelations are nearly identical)."""
    s = celeba_sources
    classifier = {"arch": "dct", "epochs": 10}

    def run(spec, scenario):
        return run_attribution_cell(s["train"], s["val"], s["test"], spec, scenario, classifier, 0, tmp_path,
                                    device="cpu", progress=False)

    clean, attacked, adapted = run("none", "clean-train"), run("pixelate:b=4", "clean-train"), \
        run("pixelate:b=4", "obfuscated-train")
    cm = np.array(adapted["confusion_matrix"])
    r, n = CLASSES.index("real"), CLASSES.index("nearest-up")
    pairwise = (cm[r, r] + cm[n, n]) / (cm[r, r] + cm[r, n] + cm[n, r] + cm[n, n])
    print({"clean": clean["accuracy"], "pixelate4 clean-train": attacked["accuracy"],
           "pixelate4 obfuscated-train": adapted["accuracy"], "real-vs-nearest after pixelation": pairwise,
           "laundering clean-train": attacked["laundering_rate"]})
    assert clean["accuracy"] >= 0.95  # chance 1/3
    assert attacked["accuracy"] < clean["accuracy"] - 0.3
    assert pairwise <= 0.65  # a coin flip between real and nearest-up (chance 0.5)
