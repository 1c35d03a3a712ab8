"""Obfuscation API: specs, registry, validation, layouts, exactness of pixelation/blur, real CelebA faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privattrib.obfuscation import (
    Obfuscation,
    Param,
    available_methods,
    describe_all,
    expand_grid,
    make,
    parse_spec,
    register_method,
)
from privattrib.obfuscation.blur import gaussian_blur_torch, opencv_sigma
from privattrib.obfuscation.noise import image_streams
from privattrib.obfuscation.pixelate import cell_counts, pixelate_numpy, pixelate_torch
from privattrib.obfuscation import pixelate as P

ALL_SPECS = [
    "none",
    "pixelate:b=8",
    "blur:k=5",
    "dp-pix:b=8,m=4,epsilon=1",
    "dp-pix:b=8,m=4,epsilon=1,noise=secure",
    "dp-blur:b=4,m=4,epsilon=1,k=7",
    "svd-mp:k=3,epsilon=5",
]


def _rng_images(n=3, h=20, w=27, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _reference_pixelate(x_nhwc: np.ndarray, b: int) -> np.ndarray:
    """Slow, obviously-correct pixelation: float64 cell means, rint (ties to even)."""
    n, h, w, c = x_nhwc.shape
    out = np.empty_like(x_nhwc)
    for i0 in range(0, h, b):
        for j0 in range(0, w, b):
            cell = x_nhwc[:, i0 : i0 + b, j0 : j0 + b, :].astype(np.float64)
            out[:, i0 : i0 + b, j0 : j0 + b, :] = np.rint(cell.mean(axis=(1, 2), keepdims=True))
    return out


# ----------------------------------------------------------------------------- specs and registry
def test_parse_spec_and_canonical_spec():
    assert parse_spec("dp-pix:b=16,m=16,epsilon=0.5") == ("dp-pix", {"b": 16, "m": 16, "epsilon": 0.5})
    assert parse_spec("pixelate") == ("pixelate", {})
    ob = make("dp-pix:b=16,m=16,epsilon=0.5")
    assert ob.spec == "dp-pix:b=16,m=16,epsilon=0.5,noise=fast"
    assert make(ob.spec).spec == ob.spec  # canonical spec round-trips
    assert make("dp-pix", b=16, m=16, epsilon=0.5) == ob
    assert make("pixelate:b=8").spec == "pixelate:b=8"
    assert make("DP-Pix: epsilon = 1 , b=8").spec == "dp-pix:b=8,m=16,epsilon=1,noise=fast"
    assert make("blur:k=99").spec == "blur:k=99"  # unset optional sigma is left out
    assert make("blur:k=9,sigma=2").params == {"k": 9, "sigma": 2.0}


def test_expand_grid():
    specs = expand_grid("dp-pix:b=16,m=[1,16],epsilon=[0.1,0.5]")
    assert specs == [
        "dp-pix:b=16,m=1,epsilon=0.1,noise=fast",
        "dp-pix:b=16,m=1,epsilon=0.5,noise=fast",
        "dp-pix:b=16,m=16,epsilon=0.1,noise=fast",
        "dp-pix:b=16,m=16,epsilon=0.5,noise=fast",
    ]
    assert expand_grid("pixelate:b=[4,8,16]") == ["pixelate:b=4", "pixelate:b=8", "pixelate:b=16"]
    assert expand_grid("pixelate:b=[8,8.0]") == ["pixelate:b=8"]  # duplicates collapse
    with pytest.raises(ValueError, match="list"):
        parse_spec("pixelate:b=[4,8]")


def test_describe_and_epsilon():
    d = make("dp-pix:b=16,m=16,epsilon=0.5").describe()
    assert d["name"] == "dp-pix" and d["privacy"] == "epsilon-DP (m-neighbourhood)"
    assert d["epsilon"] == 0.5 and d["noise_backend"] == "fast" and "DBSec 2018" in d["paper"]
    assert d["parameters"] == {"b": 16, "m": 16, "epsilon": 0.5, "noise": "fast"}
    blur = make("blur:k=99").describe()
    assert blur["privacy"] == "none" and blur["epsilon"] is None
    assert blur["sigma_used"] == pytest.approx(15.2)
    assert make("blur:k=9,sigma=3").describe()["sigma_used"] == 3.0
    svd = make("svd-mp:k=4,epsilon=2").describe()
    assert svd["privacy"] == "d_X-privacy" and svd["epsilon"] == 2.0 and "not comparable" in svd["note"]
    assert make("dp-blur").describe()["epsilon"] == 0.5
    assert make("dp-pix:noise=secure").describe()["reproducible_from_seed"] is False
    assert [r["name"] for r in describe_all()] == available_methods()
    assert set(available_methods()) >= {"none", "pixelate", "blur", "dp-pix", "dp-blur", "svd-mp"}


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("dp-pix:epsilon=0", "epsilon must be number > 0"),
        ("dp-pix:epsilon=-1", "epsilon must be number > 0"),
        ("dp-pix:b=0", "b must be integer >= 1"),
        ("dp-pix:m=0", "m must be integer >= 1"),
        ("dp-pix:b=2.5", "b must be integer"),
        ("dp-pix:noise=fancy", "fast | secure"),
        ("blur:k=4", "k must be odd integer >= 1"),
        ("blur:k=-3", "k must be odd integer >= 1"),
        ("blur:sigma=0", "sigma must be number > 0"),
        ("svd-mp:k=0", "k must be integer >= 1"),
        ("dp-blur:k=98", "odd"),
        ("pixelate:b=abc", "b must be integer"),
        ("pixelate:q=3", "unknown parameter 'q'; allowed: b"),
        ("pixelate:b", "key=value"),
        ("mosaic:b=3", "unknown method 'mosaic'; available: none, pixelate"),
        ("", "non-empty"),
        ("dp-pix:epsilon=nan", "epsilon must be"),
    ],
)
def test_invalid_parameters_say_what_is_allowed(spec, fragment):
    with pytest.raises(ValueError, match=fragment.replace("|", r"\|").replace("(", r"\(")):
        make(spec)


def test_invalid_keyword_parameters():
    with pytest.raises(ValueError, match="unknown parameter"):
        make("pixelate", size=3)
    with pytest.raises(ValueError, match="epsilon"):
        make("dp-pix", epsilon=0.0)
    with pytest.raises(ValueError, match="b must be integer"):
        make("pixelate", b=True)


def test_register_a_new_method_is_one_class():
    @register_method
    class Invert(Obfuscation):
        name = "test-invert"
        params_spec = (Param("level", int, 255, "maximum", minimum=1),)

        def _forward_numpy(self, x, layout, streams):
            return (self.params["level"] - x.astype(np.int16)).clip(0, 255).astype(np.uint8)

        def _forward_torch(self, x, streams):
            return (self.params["level"] - x.to(torch.int16)).clamp(0, 255).to(torch.uint8)

    try:
        assert "test-invert" in available_methods()
        x = _rng_images()
        np.testing.assert_array_equal(make("test-invert")(x), 255 - x)
        assert expand_grid("test-invert:level=[100,200]") == ["test-invert:level=100", "test-invert:level=200"]
        with pytest.raises(ValueError, match="already registered"):

            @register_method
            class Other(Obfuscation):
                name = "test-invert"
    finally:
        from privattrib.obfuscation import base

        base._REGISTRY.pop("test-invert", None)


# ----------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_every_layout_keeps_type_shape_dtype(spec):
    ob = make(spec)
    x = _rng_images(n=2, h=16, w=19, c=3)
    out = ob(x, seed=1)
    assert isinstance(out, np.ndarray) and out.shape == x.shape and out.dtype == np.uint8
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    out_t = ob(t, seed=1)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == t.shape and out_t.dtype == torch.uint8
    assert out_t.device == t.device
    grey = x[0, :, :, 0]
    out_g = ob(grey, seed=1)
    assert isinstance(out_g, np.ndarray) and out_g.shape == grey.shape and out_g.dtype == np.uint8
    out_hwc = ob(x[0], seed=1)
    assert out_hwc.shape == x[0].shape
    # A non-contiguous view is accepted and the input is never modified.
    view = x[:, ::-1]
    before = view.copy()
    assert ob(view, seed=1).shape == view.shape
    np.testing.assert_array_equal(view, before)
    if "secure" not in spec:
        # The same images give the same bytes through every layout (noise is keyed per image).
        np.testing.assert_array_equal(out_t.permute(0, 2, 3, 1).numpy(), out)
        np.testing.assert_array_equal(out_hwc, out[0])
        np.testing.assert_array_equal(out_g, ob(x[:1, :, :, :1], seed=1)[0, :, :, 0])


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "dtype float32"),
        (np.zeros((2, 8, 8, 3, 1), dtype=np.uint8), "shape"),
        (torch.zeros((8, 8, 3), dtype=torch.uint8), "N x C x H x W"),
        (torch.zeros((1, 3, 8, 8), dtype=torch.float32), "dtype torch.float32"),
        ([[1, 2], [3, 4]], "got list"),
    ],
)
def test_wrong_input_is_refused(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        make("pixelate:b=4")(bad)


def test_seed_and_keys_validation():
    x = _rng_images(n=2)
    ob = make("dp-pix:b=4")
    with pytest.raises(ValueError, match="seed"):
        ob(x, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        ob(x, seed=1.5)
    with pytest.raises(ValueError, match="one entry per image"):
        ob(x, keys=[1])
    with pytest.raises(ValueError, match="ints or strings"):
        ob(x, keys=[1.0, 2.0])
    a, b = ob(x, seed=None), ob(x, seed=None)  # fresh secret seeds
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("b", [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32])
@pytest.mark.parametrize("hw", [(32, 32), (37, 45), (16, 48), (30, 60), (42, 35), (36, 48)])
def test_pixelate_equals_reference_in_both_layouts_and_torch(b, hw):
    h, w = hw
    x = _rng_images(n=3, h=h, w=w, c=3, seed=b)
    ref = _reference_pixelate(x, b)
    np.testing.assert_array_equal(pixelate_numpy(x, "nhwc", b), ref)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(pixelate_numpy(nchw, "nchw", b).transpose(0, 2, 3, 1), ref)
    np.testing.assert_array_equal(pixelate_torch(torch.from_numpy(nchw), b).permute(0, 2, 3, 1).numpy(), ref)


def test_pixelate_ties_round_to_even_on_every_path():
    # 2x2 cells whose sums are 2 mod 4 (mean k + 0.5): OpenCV's 2x fast path would round these up.
    x = np.zeros((1, 4, 4, 1), dtype=np.uint8)
    x[0, :2, :2, 0] = [[0, 1], [0, 0]]  # mean 0.25 -> 0
    x[0, :2, 2:, 0] = [[1, 1], [0, 0]]  # mean 0.5 -> 0 (even)
    x[0, 2:, :2, 0] = [[1, 2], [1, 2]]  # mean 1.5 -> 2 (even)
    x[0, 2:, 2:, 0] = [[3, 2], [2, 3]]  # mean 2.5 -> 2 (even)
    expected = np.array([[0, 0], [2, 2]])
    np.testing.assert_array_equal(make("pixelate:b=2")(x)[0, ::2, ::2, 0], expected)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    np.testing.assert_array_equal(pixelate_torch(t, 2)[0, 0, ::2, ::2].numpy(), expected)
    # larger even cells with an exact .5 mean go through OpenCV: b = 4, sum = 8*16 + 8 -> mean 8.5 -> 8
    y = np.full((1, 4, 4, 1), 8, dtype=np.uint8)
    y[0, 0, :] = 9
    y[0, 1, :2] = 9
    assert make("pixelate:b=4")(y)[0, 0, 0, 0] == 8
    assert pixelate_torch(torch.from_numpy(y).permute(0, 3, 1, 2).contiguous(), 4)[0, 0, 0, 0] == 8


def test_cell_counts_edges():
    counts = cell_counts(18, 11, 8)
    np.testing.assert_array_equal(counts, [[64, 24], [64, 24], [16, 6]])
    assert counts.sum() == 18 * 11


def test_blur_matches_the_float_definition():
    import cv2

    x = _rng_images(n=2, h=24, w=30, c=3)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    for k in (7, 99):  # 99: kernel radius larger than the image, reflected repeatedly
        out = make(f"blur:k={k}")(x)
        sigma = opencv_sigma(k)
        ref = np.stack([
            np.rint(cv2.GaussianBlur(x[i].astype(np.float64), (k, k), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101))
            for i in range(2)
        ])
        diff = np.abs(out.astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
        float_path = gaussian_blur_torch(t, k, sigma).permute(0, 2, 3, 1).numpy()
        diff_t = np.abs(float_path.astype(int) - ref)
        assert diff_t.max() <= 1 and (diff_t > 0).mean() < 1e-3
    assert make("blur:k=99")(x).std() < x.std() / 4
    np.testing.assert_array_equal(make("blur:k=1")(x), x)
    # Same bytes for every layout, grey images too.
    np.testing.assert_array_equal(make("blur:k=5")(x[..., :1])[1, ..., 0], make("blur:k=5")(x[1, ..., 0]))


def test_torch_kernels_match_numpy_kernels_on_cpu():
    """The torch code (what runs on CUDA) gives the CPU bytes for pixelate/dp-pix/svd-mp, +-1 for blur."""
    x = _rng_images(n=4, h=21, w=18, c=3)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    for spec, tol in [("pixelate:b=4", 0), ("dp-pix:b=4,m=2,epsilon=3", 0), ("dp-blur:b=3,epsilon=3,k=5", 1), ("svd-mp:k=3,epsilon=3", 0), ("blur:k=9", 1)]:
        ob = make(spec)
        a = ob(x, seed=5)
        b = ob._forward_torch(t, image_streams(5, None, 4, salt=ob.spec)).permute(0, 2, 3, 1).numpy()
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= tol, spec
        assert (diff > 0).mean() < 0.01, spec


def test_svd_mp_on_device_float32_is_within_a_grey_level_of_the_method():
    """``svd_mp_torch`` (SVD on the tensor's device, float32) against the method's float64 path."""
    from privattrib.obfuscation.svd import svd_mp_torch

    x = _rng_images(n=4, h=21, w=18, c=3)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    streams = image_streams(5, None, 4)
    a = make("svd-mp:k=3,epsilon=3")._forward_torch(t, streams).numpy()
    diff = np.abs(a.astype(int) - svd_mp_torch(t, 3, 3.0, streams).numpy().astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_svd_mp_with_tiny_noise_is_the_rank_k_approximation():
    x = _rng_images(n=2, h=20, w=24, c=3)
    out = make("svd-mp:k=5,epsilon=1e9")(x)
    a = x.transpose(0, 3, 1, 2).astype(np.float64) / 255
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    ref = (u[..., :5] * s[..., None, :5]) @ vt[..., :5, :]
    ref = np.rint(np.clip(ref, 0, 1) * 255).transpose(0, 2, 3, 1)
    assert np.abs(out.astype(int) - ref).max() <= 1
    with pytest.raises(ValueError, match="k <= 20"):
        make("svd-mp:k=21")(x)


def test_svd_mp_on_a_large_photo_takes_only_the_top_k_triplets_and_agrees_with_the_full_svd():
    """Photos past TRUNCATED_SVD_MIN_PIXELS use ARPACK's top-k SVD: the same bytes as the full SVD
    with the same noise, but for the odd pixel that sits on a rounding edge."""
    from privattrib.obfuscation import svd as svd_module

    yy, xx = np.mgrid[0:260, 0:300]
    rng = np.random.default_rng(5)
    smooth = np.stack([np.sin(xx / (9 + 4 * c)) + np.cos(yy / (13 + c)) for c in range(3)], -1)
    x = np.clip(smooth * 60 + 128 + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)[None]
    assert svd_module._uses_truncated_svd(4, 260, 300) and not svd_module._uses_truncated_svd(4, 100, 120)
    method = make("svd-mp:k=4,epsilon=3")
    truncated = method(x, seed=11)
    full_threshold = svd_module.TRUNCATED_SVD_MIN_PIXELS
    try:
        svd_module.TRUNCATED_SVD_MIN_PIXELS = 10**9
        full = method(x, seed=11)
    finally:
        svd_module.TRUNCATED_SVD_MIN_PIXELS = full_threshold
    diff = np.abs(truncated.astype(int) - full.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert np.array_equal(truncated, method(x, seed=11))  # deterministic
    assert not np.array_equal(truncated, method(x, seed=12))
    # flat colours and two-tone blocks: zero and tied singular values, whose vectors ARPACK would
    # pick from a random state that carries over between calls; they get the full SVD's answer
    red = np.zeros((1, 260, 300, 3), np.uint8)
    red[..., 0] = 200
    blocks = np.where(np.mgrid[0:260, 0:300][1] < 150, 50, 200).astype(np.uint8)[None, ..., None].repeat(3, -1)
    flat = np.concatenate([red, blocks])
    first = method(flat, seed=3)
    method(x, seed=99)  # other work in between must not change the answer
    assert np.array_equal(method(flat, seed=3), first)
    svd_module.TRUNCATED_SVD_MIN_PIXELS = 10**9
    try:
        full_flat = method(flat, seed=3)
    finally:
        svd_module.TRUNCATED_SVD_MIN_PIXELS = full_threshold
    assert np.abs(first.astype(int) - full_flat.astype(int)).max() <= 1


def test_dp_blur_is_dp_pix_then_blur():
    from privattrib.obfuscation.blur import gaussian_blur_numpy

    from privattrib.obfuscation.pixelate import dp_pix_numpy

    x = _rng_images(n=2, h=16, w=16, c=3)
    ob = make("dp-blur:b=4,m=16,epsilon=0.5,k=9")
    dp = dp_pix_numpy(x, "nhwc", 4, 16, 0.5, image_streams(3, None, 2, salt=ob.spec), "fast")
    np.testing.assert_array_equal(ob(x, seed=3), gaussian_blur_numpy(dp, "nhwc", 9, opencv_sigma(9)))


def test_noise_is_independent_between_specs_and_reused_within_one():
    """One seed and key give one spec the same noise every time, and other parameters other noise:
    with shared noise, 2 * (eps 1 release) - (eps 0.5 release) would give the pixelization back."""
    x = _rng_images(n=1, h=64, w=64, c=1)
    half, one = make("dp-pix:b=8,m=1,epsilon=0.5"), make("dp-pix:b=8,m=1,epsilon=1")
    assert np.array_equal(one(x, seed=7), one(x, seed=7))
    plain = make("pixelate:b=8")(x).astype(float)
    cancel = 2 * one(x, seed=7).astype(float) - half(x, seed=7).astype(float)
    assert np.abs(cancel - plain).mean() > 5  # the noise does not cancel


# ----------------------------------------------------------------------------- real faces
def _celeba_faces(root, n=12):
    from PIL import Image

    files = sorted((root / "img_align_celeba").glob("*.jpg"))[:n]
    assert files, "no CelebA images found"
    # DESIGN.md crop: 128 x 128 around (x=89, y=121) of the aligned 178 x 218 image.
    return np.stack([np.asarray(Image.open(f).convert("RGB"))[121 - 64 : 121 + 64, 89 - 64 : 89 + 64] for f in files])


def test_real_celeba_pixelation(celeba_root):
    from privattrib.metrics import mse, ssim

    faces = _celeba_faces(celeba_root)
    assert faces.shape == (12, 128, 128, 3)
    out8 = make("pixelate:b=8")(faces)
    out16 = make("pixelate:b=16")(faces)
    np.testing.assert_array_equal(out8, _reference_pixelate(faces, 8))
    # Every output cell is constant and equals its input cell mean to within rounding.
    cells = out8.reshape(12, 16, 8, 16, 8, 3)
    assert (cells == cells[:, :, :1, :, :1, :]).all()
    means = faces.reshape(12, 16, 8, 16, 8, 3).astype(np.float64).mean(axis=(2, 4))
    assert np.abs(cells[:, :, 0, :, 0, :] - means).max() <= 0.5
    # Utility: errors of the order reported for faces (AT&T: b=8 MSE ~ 486, b=16 ~ 886), larger for larger cells.
    m8, m16 = mse(faces, out8), mse(faces, out16)
    assert 20 < m8.mean() < 1000 and (m16 > m8).all()
    assert (ssim(faces, out16) < ssim(faces, out8)).all()
    assert make("pixelate:b=8")(out8).tobytes() == out8.tobytes()  # pixelation is idempotent


def test_real_celeba_all_methods_run_and_degrade(celeba_root):
    from privattrib.metrics import psnr

    faces = _celeba_faces(celeba_root, n=6)
    t = torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()
    results = {}
    for spec in ["pixelate:b=16", "blur:k=99", "dp-pix:b=16,m=16,epsilon=0.5", "dp-blur", "svd-mp:k=4,epsilon=1"]:
        out = make(spec)(t, seed=0)
        assert out.shape == t.shape and out.dtype == torch.uint8
        results[spec] = float(psnr(t, out).mean())
    # DP-Pix at the paper's defaults is noisier than plain pixelation with the same cells.
    assert results["dp-pix:b=16,m=16,epsilon=0.5"] < results["pixelate:b=16"]
    assert all(5 < v < 40 for v in results.values()), results


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 2, 2), (1, 5, 40, 4), (3, 17, 9, 1), (0, 8, 8, 3)])
def test_odd_shapes_and_channel_counts(shape):
    x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    for spec in ["none", "pixelate:b=4", "blur:k=5", "dp-pix:b=4", "dp-blur:b=2,k=3", "svd-mp:k=1"]:
        out = make(spec)(x, seed=0)
        assert out.shape == x.shape and out.dtype == np.uint8, spec
        t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        assert make(spec)(t, seed=0).shape == t.shape


def test_methods_command_lists_every_method():
    import json

    from typer.testing import CliRunner

    from privattrib.cli import app

    result = CliRunner().invoke(app, ["methods", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == available_methods()
    dp = next(r for r in rows if r["name"] == "dp-pix")
    assert {p["name"]: p["default"] for p in dp["parameters"]} == {"b": 16, "m": 16, "epsilon": 0.5, "noise": "fast"}
    assert dp["privacy"] == "epsilon-DP (m-neighbourhood)" and "DBSec" in dp["paper"]
    table = CliRunner().invoke(app, ["methods"], terminal_width=160)
    assert table.exit_code == 0
    for name in available_methods():
        assert name in table.output
    assert "d_X-privacy" in table.output


@pytest.mark.parametrize("b", range(2, 33, 2))  # odd b: b*b odd, no exact ties
def test_pixelate_rounds_every_exact_tie_to_even_for_every_cell_size(b):
    # One cell per k = 0..254 whose mean is exactly k + 0.5 (b*b even): all must round to even,
    # whatever kernel serves that cell size (OpenCV INTER_AREA, NumPy, torch).
    n = b * b
    cells = []
    for k in range(255):
        v = np.full(n, k, dtype=np.int64)
        v[: n // 2] += 1
        cells.append(v.reshape(b, b))
    x = np.concatenate(cells, axis=1).astype(np.uint8)[None, None]  # 1 x 1 x b x 255b
    expected = np.rint(np.arange(255) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(pixelate_numpy(x, "nchw", b)[0, 0, 0, ::b], expected)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(pixelate_numpy(nhwc, "nhwc", b)[0, 0, ::b, 0], expected)
    np.testing.assert_array_equal(pixelate_torch(torch.from_numpy(x), b)[0, 0, 0, ::b].numpy(), expected)


def test_torch_pixelate_rounds_large_cells_exactly():
    # one 512 x 512 cell summing to 127.5 * 2**18 - 1: the mean is just under 127.5, so 127; a
    # float32 sum (33423359 -> 33423360) divided in float32 lands on the tie and rounds to 128
    x = np.full((1, 1, 512, 512), 127, dtype=np.uint8)
    x[0, 0, :256] = 128
    x[0, 0, 0, 0] = 127
    assert int(x.sum(dtype=np.int64)) == 127 * 2**18 + 2**17 - 1
    assert P.pixelate_numpy(x, "nchw", 512)[0, 0, 0, 0] == 127
    assert P.pixelate_torch(torch.from_numpy(x), 512, "torch")[0, 0, 0, 0] == 127


def test_backend_choice():
    cpu = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    assert not P._use_triton(cpu, "auto") and not P._use_triton(cpu, "torch")
    with pytest.raises(ValueError, match="backend"):
        P._use_triton(cpu, "cuda")


def test_backend_triton_without_triton_says_so(monkeypatch):
    monkeypatch.setattr(P, "_triton_kernels", lambda: None)
    with pytest.raises(ImportError, match="triton"):
        P.pixelate_torch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 4, "triton")


def test_compile_backend_gives_the_same_bytes():
    x = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (4, 3, 40, 44), dtype=np.uint8))
    assert torch.equal(P.pixelate_torch(x, 8, "compile"), P.pixelate_torch(x, 8, "torch"))
    streams = np.arange(1, 5, dtype=np.uint64)
    assert torch.equal(P.dp_pix_torch(x, 8, 16, 0.5, streams, backend="compile"),
                       P.dp_pix_torch(x, 8, 16, 0.5, streams, backend="torch"))


def test_torch_cell_sums_of_huge_cells_do_not_wrap():
    # a 2902 x 2902 cell of 255 sums to 2,147,509,020 > 2**31 - 1: int32 sums wrap to a negative mean
    x = np.full((1, 1, 2902, 2902), 255, dtype=np.uint8)
    t = torch.from_numpy(x)
    assert int(P.block_sums_torch(t, 2902, "torch")[0, 0, 0, 0]) == 255 * 2902**2
    assert bool((P.pixelate_torch(t, 2902, "torch") == 255).all())


def test_upsample_refuses_cells_of_another_grid():
    with pytest.raises(ValueError, match="grid"):
        P.upsample_torch(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), 4, 16, 16, "torch")


def test_unknown_backend_is_refused_even_for_b1():
    with pytest.raises(ValueError, match="backend"):
        P.pixelate_torch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 1, "cuda")
