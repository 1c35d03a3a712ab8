"""Utility metrics against scikit-image and float64 definitions; classification metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from privattrib import metrics as M


def _sk_ssim(a, b):
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    if a.ndim == 3:
        kw["channel_axis"] = -1
    return structural_similarity(a, b, **kw)


def _pair(n=3, h=40, w=33, c=3, noise=30, seed=0):
    rng = np.random.default_rng(seed)
    # smooth-ish content so SSIM is not trivially near 0
    base = np.cumsum(rng.integers(-6, 7, (n, h, w, c)), axis=2)
    x = np.clip(base - base.min() + 40, 0, 255).astype(np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-noise, noise + 1, x.shape), 0, 255).astype(np.uint8)
    return x, y


@pytest.mark.parametrize("c", [1, 3])
def test_ssim_equals_scikit_image(c):
    x, y = _pair(c=c)
    ours = M.ssim(x, y)
    ref = np.array([_sk_ssim(x[i, ..., 0] if c == 1 else x[i], y[i, ..., 0] if c == 1 else y[i]) for i in range(3)])
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert ours.shape == (3,) and ours.dtype == np.float64
    # single images (H x W and H x W x C) give floats
    single = M.ssim(x[1, ..., 0], y[1, ..., 0]) if c == 1 else M.ssim(x[1], y[1])
    assert isinstance(single, float) and abs(single - ref[1]) < 1e-5
    # torch N x C x H x W gives the same values as a tensor
    t = M.ssim(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y).permute(0, 3, 1, 2))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-5)


def test_ssim_edge_cases():
    x = np.full((2, 11, 11, 3), 77, dtype=np.uint8)
    np.testing.assert_allclose(M.ssim(x, x), 1.0)
    flat, other = np.full((16, 16), 0, np.uint8), np.full((16, 16), 255, np.uint8)
    assert abs(M.ssim(flat, other) - _sk_ssim(flat, other)) < 1e-5
    with pytest.raises(ValueError, match="at least 11 x 11"):
        M.ssim(np.zeros((10, 12), np.uint8), np.zeros((10, 12), np.uint8))


@pytest.mark.parametrize("h", [11, 12, 30, 47])
def test_large_images_take_the_banded_ssim_path_with_the_same_values(h, monkeypatch):
    x, y = _pair(n=2, h=h, w=29, c=3)
    whole = M.ssim(x, y)  # small: one pass over the stacked planes
    monkeypatch.setattr(M, "_SSIM_BAND_ABOVE", 0)  # every image counts as large
    monkeypatch.setattr(M, "_SSIM_BAND_ROWS", 7)  # many bands, the last one short
    np.testing.assert_allclose(M.ssim(x, y), whole, rtol=0, atol=1e-12)
    ref = np.array([_sk_ssim(x[i], y[i]) for i in range(2)])
    np.testing.assert_allclose(M.ssim(x, y), ref, atol=1e-5)


def test_torch_conv_path_equals_cpu_path():
    """The code that runs on CUDA (grouped conv2d, float32 there) agrees with the CPU path."""
    x, y = _pair(n=2, h=30, w=30)
    tx, ty = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).permute(0, 3, 1, 2).contiguous()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    np.testing.assert_allclose(M._ssim_torch(tx, ty, c1, c2).numpy(), M.ssim(x, y), atol=1e-5)
    original = M._float_dtype
    M._float_dtype = lambda t: torch.float32  # what an accelerator uses
    try:
        np.testing.assert_allclose(M._ssim_torch(tx, ty, c1, c2).numpy(), M.ssim(x, y), atol=1e-4)
    finally:
        M._float_dtype = original


def test_mse_and_psnr_are_float_definitions():
    x, y = _pair()
    ref = ((x.astype(np.float64) - y.astype(np.float64)) ** 2).reshape(3, -1).mean(1)
    np.testing.assert_allclose(M.mse(x, y), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(M.psnr(x, y), 10 * np.log10(255**2 / ref))
    # uint8 wrap-around would give 255 - 0 = 255 but 0 - 255 = 1: check the symmetric case
    a, b = np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)
    assert M.mse(a, b) == M.mse(b, a) == 255.0**2
    assert M.psnr(a, a) == float("inf")
    t = M.psnr(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y).permute(0, 3, 1, 2))
    np.testing.assert_allclose(t.numpy(), 10 * np.log10(255**2 / ref))


@pytest.mark.parametrize(
    "a, b, fragment",
    [
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), "uint8"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), "shapes differ"),
        (np.zeros((4, 4), np.uint8), torch.zeros((1, 1, 4, 4), dtype=torch.uint8), "two uint8"),
    ],
)
def test_metric_input_validation(a, b, fragment):
    with pytest.raises(ValueError, match=fragment):
        M.mse(a, b)


def test_metrics_on_real_celeba(celeba_root):
    from PIL import Image

    from privattrib.obfuscation import make

    files = sorted((celeba_root / "img_align_celeba").glob("*.jpg"))[:4]
    faces = np.stack([np.asarray(Image.open(f).convert("RGB"))[57:185, 25:153] for f in files])
    for spec in ("pixelate:b=8", "blur:k=9", "dp-pix:b=16,m=16,epsilon=0.5"):
        out = make(spec)(faces, seed=0)
        np.testing.assert_allclose(M.ssim(faces, out), [_sk_ssim(faces[i], out[i]) for i in range(4)], atol=1e-5)
        grey_in, grey_out = faces[..., 1], out[..., 1]
        np.testing.assert_allclose(
            [M.ssim(grey_in[i], grey_out[i]) for i in range(4)], [_sk_ssim(grey_in[i], grey_out[i]) for i in range(4)], atol=1e-5
        )


# ----------------------------------------------------------------------------- classification
def test_confusion_matrix_and_accuracies():
    y_true = [0, 0, 1, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 2, 0]
    cm = M.confusion_matrix(y_true, y_pred, 4)
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [2, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    pca = M.per_class_accuracy(cm)
    np.testing.assert_allclose(pca[:3], [0.5, 1.0, 1 / 3])
    assert np.isnan(pca[3])
    assert M.accuracy(y_true, y_pred) == pytest.approx(4 / 7)
    assert M.accuracy(torch.tensor(y_true), np.array(y_pred)) == pytest.approx(4 / 7)
    # GAN images: 2 of class 1 (0 predicted real) + 3 of class 2 (2 predicted real) -> 2/5 laundered
    assert M.laundering_rate(y_true, y_pred, real_class=0) == pytest.approx(2 / 5)
    assert np.isnan(M.laundering_rate([0, 0], [1, 0], real_class=0))
    with pytest.raises(ValueError, match="outside"):
        M.confusion_matrix([0, 5], [0, 1], 3)
    with pytest.raises(ValueError, match="differ in length"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="integer labels"):
        M.confusion_matrix([0.5], [0], 2)


def test_mean_utility_ignores_unchanged_images_in_psnr():
    from privattrib.metrics import mean_utility, psnr

    rng = np.random.default_rng(3)
    a = torch.from_numpy(rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8))
    b = a.clone()
    b[1:] //= 2  # image 0 unchanged: infinite PSNR
    out = mean_utility(a, b)
    assert np.isfinite(out["psnr"])
    assert out["psnr"] == pytest.approx(float(psnr(a[1:], b[1:]).double().mean()))
    assert out["mse"] == pytest.approx(float(((a.double() - b.double()) ** 2).mean()))
    assert mean_utility(a, a)["psnr"] == float("inf") and mean_utility(a, a)["ssim"] == pytest.approx(1.0)
    assert "ssim" not in mean_utility(a[..., :8, :8], b[..., :8, :8])  # window does not fit
    assert mean_utility(a[:0], b[:0]) == {}
