"""Noise: statistical scale checks (full cells, edge cells, RGB), secure vs fast, keyed reproducibility, svd-mp.

All statistical tests use fixed seeds, so they are deterministic; tolerances are 4 standard errors
computed from the exact distribution of the released values (rounding and clipping included).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from privattrib.obfuscation import make
from privattrib.obfuscation import noise as N

GREY = 128


def _released_abs_deviation(scale: float, center: int = GREY) -> tuple[float, float]:
    """Mean and sd of |clip(rint(center + Laplace(scale))) - center| (exact, from the Laplace CDF)."""
    v = np.arange(256)
    cdf = lambda t: np.where(t < 0, 0.5 * np.exp(t / scale), 1 - 0.5 * np.exp(-t / scale))  # noqa: E731
    p = cdf(v + 0.5 - center) - cdf(v - 0.5 - center)
    p[0] = cdf(0.5 - center)
    p[-1] = 1 - cdf(254.5 - center)
    dev = np.abs(v - center)
    mean = float((p * dev).sum())
    return mean, float(np.sqrt((p * dev**2).sum() - mean**2))


def _check_scale(samples: np.ndarray, scale: float) -> None:
    mean, sd = _released_abs_deviation(scale)
    got = np.abs(samples.astype(np.float64) - GREY).mean()
    tol = 4 * sd / np.sqrt(samples.size)
    assert abs(got - mean) < tol, f"mean |deviation| {got:.4f}, expected {mean:.4f} +- {tol:.4f} (scale {scale})"
    assert tol / mean < 0.05  # the test has the power to see a few-percent error


def _grey(n, h, w, c):
    return np.full((n, h, w, c), GREY, dtype=np.uint8)


@pytest.mark.parametrize("noise", ["fast", "secure"])
def test_laplace_scale_on_full_cells(noise):
    b, m, eps = 4, 2, 0.5
    x = _grey(300, 32, 32, 1)  # 300 x 64 = 19,200 cells
    out = make(f"dp-pix:b={b},m={m},epsilon={eps},noise={noise}")(x, seed=11)
    cells = out[:, ::b, ::b, 0]
    # every pixel of a cell carries the same released value
    assert (out.reshape(300, 8, b, 8, b)[:, :, :, :, :] == cells[:, :, None, :, None]).all()
    _check_scale(cells, 255.0 * m / (b * b * eps))


@pytest.mark.parametrize("noise", ["fast", "secure"])
def test_edge_cells_get_scale_for_their_own_pixel_count(noise):
    # 20 x 22 with b = 8: full cells n = 64, right edge n = 8*6 = 48, bottom n = 4*8 = 32, corner n = 24.
    b, m, eps = 8, 1, 0.4
    x = _grey(8000, 20, 22, 1)
    out = make(f"dp-pix:b={b},m={m},epsilon={eps},noise={noise}")(x, seed=3)[..., 0]
    groups = {
        64: out[:, 0:16:8, 0:16:8],
        48: out[:, 0:16:8, 16],
        32: out[:, 16, 0:16:8],
        24: out[:, 16, 16],
    }
    for n_pixels, samples in groups.items():
        _check_scale(samples, 255.0 * m / (n_pixels * eps))
    # and the edge-cell noise is not the full-cell noise: scale ratio 64/24
    full = np.abs(groups[64].astype(float) - GREY).mean()
    corner = np.abs(groups[24].astype(float) - GREY).mean()
    assert 2.2 < corner / full < 3.1


@pytest.mark.parametrize("noise", ["fast", "secure"])
def test_rgb_sensitivity_is_c_times(noise):
    b, m, eps = 4, 1, 1.0
    x = _grey(200, 32, 32, 3)
    out = make(f"dp-pix:b={b},m={m},epsilon={eps},noise={noise}")(x, seed=5)
    cells = out[:, ::b, ::b, :]
    _check_scale(cells, 3 * 255.0 * m / (b * b * eps))
    # channels get independent noise
    r = np.corrcoef(cells[..., 0].ravel().astype(float), cells[..., 1].ravel().astype(float))[0, 1]
    assert abs(r) < 0.05


def test_secure_and_fast_have_the_same_distribution():
    spec = "dp-pix:b=4,m=1,epsilon=0.3"
    x = _grey(150, 32, 32, 1)
    fast = make(spec + ",noise=fast")(x, seed=1)[:, ::4, ::4, 0].ravel().astype(int)
    secure = make(spec + ",noise=secure")(x, seed=1)[:, ::4, ::4, 0].ravel().astype(int)
    assert stats.ks_2samp(fast, secure).pvalue > 1e-3
    assert abs(fast.std() - secure.std()) < 0.05 * fast.std()


def test_discrete_laplace_is_exact_integer_noise():
    values = np.arange(-5, 20000 - 5, dtype=np.int64)
    noisy = N.discrete_laplace(values, 3.0)
    assert noisy.dtype == np.int64 and noisy.shape == values.shape
    z = noisy - values
    # P(Z = z) proportional to exp(-|z|/s): P(0) = tanh(1/(2s)), E|Z| = 2 e^{-1/s} / (1 - e^{-2/s})
    s = 3.0
    p0 = np.tanh(1 / (2 * s))
    e_abs = 2 * np.exp(-1 / s) / (1 - np.exp(-2 / s))
    assert abs((z == 0).mean() - p0) < 4 * np.sqrt(p0 * (1 - p0) / z.size)
    assert abs(np.abs(z).mean() - e_abs) < 0.05 * e_abs
    with pytest.raises(ValueError):
        N.discrete_laplace(values, 0.0)


def test_laplace_sampler_scale_and_symmetry():
    u = N.uniforms_numpy(N.image_streams(0, None, 1000), 200)
    assert u.min() > 0 and u.max() < 1
    lap = N.laplace_from_uniforms(u, 2.5).ravel()
    assert stats.kstest(lap, stats.laplace(scale=2.5).cdf).pvalue > 1e-3
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3


# ----------------------------------------------------------------------------- reproducibility
def test_noise_depends_only_on_seed_and_key():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    ob = make("dp-pix:b=8,m=4,epsilon=1")
    full = ob(x, seed=7)
    # one at a time, with their keys
    for i in range(6):
        np.testing.assert_array_equal(ob(x[i : i + 1], seed=7, keys=[i]), full[i : i + 1])
    # reversed order with the keys following the images
    order = np.arange(6)[::-1]
    np.testing.assert_array_equal(ob(x[order], seed=7, keys=order), full[order])
    # key arrays, torch key tensors, string keys
    np.testing.assert_array_equal(ob(x, seed=7, keys=torch.arange(6)), full)
    named = ob(x, seed=7, keys=[f"img{i}.png" for i in range(6)])
    np.testing.assert_array_equal(ob(x[2:3], seed=7, keys=["img2.png"]), named[2:3])
    assert not np.array_equal(named, full)
    # same image under two keys gets different noise; another seed changes everything
    twice = ob(np.stack([x[0], x[0]]), seed=7)
    assert not np.array_equal(twice[0], twice[1])
    assert (ob(x, seed=8) != full).mean() > 0.5
    # thread count does not matter
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        np.testing.assert_array_equal(ob(x, seed=7), full)
    finally:
        torch.set_num_threads(threads)
    # svd-mp and dp-blur follow the same rule
    for spec in ("svd-mp:k=3,epsilon=2", "dp-blur:b=4,k=5"):
        other = make(spec)
        np.testing.assert_array_equal(other(x[3:5], seed=2, keys=[3, 4]), other(x, seed=2)[3:5])


def test_torch_and_numpy_streams_give_identical_bits():
    streams = N.image_streams(123, ["a", "b", 7], 3)
    a = N.uniforms_numpy(streams, 50, offset=9)
    b = N.uniforms_torch(streams, 50, "cpu", offset=9).numpy()
    np.testing.assert_array_equal(a, b)
    assert N.key_to_u64(5) == 5 and N.key_to_u64(-1) == 2**64 - 1
    assert N.key_to_u64("x") != N.key_to_u64(b"x")


def test_secure_backend_ignores_the_seed_by_design():
    x = _grey(4, 16, 16, 1)
    ob = make("dp-pix:b=4,m=1,epsilon=1,noise=secure")
    assert not np.array_equal(ob(x, seed=0), ob(x, seed=0))


# ----------------------------------------------------------------------------- svd-mp
@pytest.mark.parametrize("k, eps", [(1, 2.0), (4, 0.5), (10, 3.0)])
def test_l2_laplace_radius_is_gamma_and_direction_uniform(k, eps):
    u = N.uniforms_numpy(N.image_streams(k, None, 4000), 3 * k)
    z = N.l2_laplace_from_uniforms(u, k, eps)
    assert z.shape == (4000, k)
    radius = np.linalg.norm(z, axis=1)
    assert stats.kstest(radius, stats.gamma(a=k, scale=1 / eps).cdf).pvalue > 1e-3
    direction = z / radius[:, None]
    # uniform on the sphere: mean direction ~ 0, second moment I/k
    assert np.abs(direction.mean(axis=0)).max() < 5 / np.sqrt(4000)
    np.testing.assert_allclose(direction.T @ direction / 4000, np.eye(k) / k, atol=0.04)


def test_svd_noise_is_not_sorted():
    k = 4
    u = N.uniforms_numpy(N.image_streams(0, None, 6000), 3 * k)
    z = N.l2_laplace_from_uniforms(u, k, 1.0)
    sorted_desc = (np.diff(z, axis=1) <= 0).all(axis=1).mean()
    assert abs(sorted_desc - 1 / 24) < 0.015  # 1/k! of vectors happen to be ordered, not all
    # each coordinate has the same distribution (sorting would shift the first up and the last down)
    for j in range(1, k):
        assert stats.ks_2samp(z[:, 0], z[:, j]).pvalue > 1e-3


def test_svd_mp_noise_reaches_the_singular_values():
    # A rank-1 grey image: its top singular value moves by the noise, with E|Z| = 1/eps for k = 1.
    col = np.linspace(0.2, 0.8, 24)
    img = np.rint(np.outer(col, np.ones(24)) * 255).astype(np.uint8)[None, :, :, None]
    x = np.repeat(img, 600, axis=0)
    eps = 0.2
    out = make(f"svd-mp:k=1,epsilon={eps}")(x, seed=4).astype(np.float64) / 255
    s_in = np.linalg.svd(x[0, :, :, 0] / 255.0, compute_uv=False)[0]
    s_out = np.linalg.svd(out[..., 0], compute_uv=False)[:, 0]
    # |s_out - s_in| = |Z| unless clipping cut it short; |Z| ~ Exp(eps) has mean 1/eps = 5
    dev = np.abs(s_out - s_in)
    assert 0.6 / eps < dev.mean() < 1.2 / eps


def test_svd_mp_protects_the_singular_values_only():
    # An image and its mirror image have the same singular values (metric distance 0) but other
    # singular vectors, which svd-mp releases as they are: the outputs are mirror images of each
    # other, so the two are told apart at once. The guarantee must be stated for images with the
    # same U_k, V_k only, and describe() must say so.
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (1, 24, 20, 1), dtype=np.uint8)
    mirror = np.ascontiguousarray(x[:, :, ::-1])
    ob = make("svd-mp:k=3,epsilon=1")
    a, b = ob(x, seed=4), ob(mirror, seed=4)
    assert np.abs(a[:, :, ::-1].astype(int) - b.astype(int)).max() <= 1
    assert not np.array_equal(a, b)
    metric = ob.describe()["metric"]
    assert "U_k" in metric and "V_k" in metric and "released" in metric


def test_default_seed_is_fresh_and_secret():
    # a call without a seed must not use a fixed, public seed (the noise could be regenerated)
    from privattrib.obfuscation import make

    ob = make("dp-pix:b=4,m=1,epsilon=1")
    img = np.full((2, 16, 16, 3), 128, np.uint8)
    assert not np.array_equal(ob(img), ob(img))
    assert np.array_equal(ob(img, seed=5), ob(img, seed=5))
