"""Triton cell kernels (the CUDA fast path of pixelate and DP-Pix): same bytes as the NumPy reference.

On a CUDA machine they run compiled on the GPU; elsewhere, where Triton is installed, through its
interpreter (TRITON_INTERPRET=1, set before the kernels are first imported).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from privattrib.obfuscation import pixelate as P

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed (it ships with PyTorch's CUDA wheels)")

pytestmark = pytest.mark.gpu  # compiled for the GPU by `pytest -m gpu` on a CUDA machine
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

SHAPES = [
    # n, c, h, w, b: divisible and ragged grids, b = 2 and 4 hit rounding ties often, b larger than the image
    (2, 3, 64, 64, 16),
    (2, 3, 64, 72, 8),
    (3, 3, 20, 27, 4),
    (2, 1, 33, 17, 5),
    (2, 3, 18, 30, 2),
    (1, 3, 10, 12, 32),
    (1, 2, 130, 70, 3),
    (1, 1, 300, 5, 100),
]


def _images(shape, seed):
    """Random uint8 images of ``shape[:4]`` (a SHAPES entry's b is ignored)."""
    return np.random.default_rng(seed).integers(0, 256, shape[:4], dtype=np.uint8)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_triton_kernels_match_numpy(shape):
    b = shape[-1]
    x = _images(shape, seed=sum(shape))
    t = torch.from_numpy(x).to(DEVICE)
    np.testing.assert_array_equal(P.pixelate_torch(t, b, "triton").cpu().numpy(), P.pixelate_numpy(x, "nchw", b))
    sums = P.block_sums_numpy(x, "nchw", b)
    np.testing.assert_array_equal(P.block_sums_torch(t, b, "triton").cpu().numpy(), sums)
    cells = np.random.default_rng(1).integers(0, 256, sums.shape, dtype=np.uint8)
    h, w = x.shape[2:]
    up = P.upsample_torch(torch.from_numpy(cells).to(DEVICE), b, h, w, "triton")
    np.testing.assert_array_equal(up.cpu().numpy(), P.upsample_numpy(cells, "nchw", b, h, w))


def test_triton_dp_pix_same_bytes_as_torch_ops():
    x = torch.from_numpy(_images((4, 3, 40, 44), seed=5)).to(DEVICE)
    streams = np.arange(1, 5, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    a = P.dp_pix_torch(x, 8, 16, 0.5, streams, backend="triton")
    b = P.dp_pix_torch(x, 8, 16, 0.5, streams, backend="torch")
    assert torch.equal(a, b)


def test_triton_reads_strided_input():
    x = torch.from_numpy(_images((2, 32, 48, 3), seed=2)).to(DEVICE).permute(0, 3, 1, 2)  # NHWC memory
    assert not x.is_contiguous()
    assert torch.equal(P.pixelate_torch(x, 8, "triton"), P.pixelate_torch(x, 8, "torch"))
