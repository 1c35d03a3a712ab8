"""Pixelization and DP-Pix (Fan, "Image Pixelization with Differential Privacy", DBSec 2018).

Cells are the b x b blocks of a grid anchored at the top-left corner; cells at the right and bottom
edges are smaller when H or W is not a multiple of b (n < b*b pixels).

- ``pixelate``: every pixel of a cell becomes the cell mean, rounded to the nearest integer
  (ties to even, as ``numpy.rint``/``torch.round``), per channel.
- ``dp-pix``: cell means plus Laplace noise of scale ``C*255*m / (n*epsilon)`` (n = that cell's
  pixel count; C because a pixel is the whole C-vector, so m changed pixels move the vector of
  cell sums by at most C*255*m in L1), rounded and clipped to [0, 255]. ``noise=secure`` adds exact
  discrete Laplace noise of scale ``C*255*m/epsilon`` to the integer cell sums instead (OpenDP), then
  divides by n.

Functions here are the building blocks (kornia style); the registered classes wrap them.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from privattrib.obfuscation import noise as _noise
from privattrib.obfuscation.base import Obfuscation, Param, register_method

__all__ = [
    "cell_counts",
    "block_sums_numpy",
    "block_sums_torch",
    "upsample_numpy",
    "upsample_torch",
    "round_half_even_mean",
    "pixelate_numpy",
    "pixelate_torch",
    "dp_pix_numpy",
    "dp_pix_torch",
    "Pixelate",
    "DPPix",
]

# Chunks of about this many bytes keep the down- and up-sampling passes in cache.
_CHUNK_BYTES = 1 << 21


def _grid(h: int, w: int, b: int) -> tuple[int, int]:
    return -(-h // b), -(-w // b)


def cell_counts(h: int, w: int, b: int) -> np.ndarray:
    """Pixels per cell.

    Returns:
        int64 ``(ceil(H/b), ceil(W/b))``: b*b inside, fewer in the last row/column when b does not divide H/W.
    """
    rows = np.minimum(b, h - b * np.arange(_grid(h, w, b)[0]))
    cols = np.minimum(b, w - b * np.arange(_grid(h, w, b)[1]))
    return np.outer(rows, cols).astype(np.int64)


def _axes(layout: str) -> tuple[int, int]:
    if layout == "nhwc":
        return 1, 2
    if layout == "nchw":
        return 2, 3
    raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")


# ------------------------------------------------------------------------------------ NumPy
def block_sums_numpy(x: np.ndarray, layout: str, b: int) -> np.ndarray:
    """Integer sum of every cell.

    Args:
        x: uint8 ``(N, H, W, C)`` ("nhwc") or ``(N, C, H, W)`` ("nchw").
    Returns:
        Same layout with H, W replaced by ``ceil(H/b), ceil(W/b)``; uint32 (int64 for huge cells).
    """
    ha, wa = _axes(layout)
    h, w = x.shape[ha], x.shape[wa]
    acc = np.uint32 if b * b * 255 < 2**32 else np.int64
    if h % b == 0 and w % b == 0:
        n = x.shape[0]
        # Sum b rows first (contiguous row vectors: vectorised adds), then b columns of the b-times smaller result.
        row_acc = np.uint16 if b * 255 < 2**16 else acc
        if layout == "nchw":
            c = x.shape[1]
            rows = x.reshape(n, c, h // b, b, w).sum(axis=3, dtype=row_acc).reshape(-1, b)
            # b strided adds: ~10x faster than numpy's reduce over a short last axis.
            sums = rows[:, 0].astype(acc)
            for i in range(1, b):
                sums += rows[:, i]
            return sums.reshape(n, c, h // b, w // b)
        c = x.shape[3]
        rows = x.reshape(n, h // b, b, w * c).sum(axis=2, dtype=row_acc).reshape(-1, b, c)
        # b strided adds of (cells, C) slices: ~10x faster than numpy's generic reduce over a middle axis.
        sums = rows[:, 0, :].astype(acc)
        for i in range(1, b):
            sums += rows[:, i, :]
        return sums.reshape(n, h // b, w // b, c)
    starts_h = np.arange(0, h, b)
    starts_w = np.arange(0, w, b)
    rows = np.add.reduceat(x, starts_h, axis=ha, dtype=acc)
    return np.add.reduceat(rows, starts_w, axis=wa, dtype=acc)


def upsample_numpy(cells: np.ndarray, layout: str, b: int, h: int, w: int, out: np.ndarray | None = None) -> np.ndarray:
    """Nearest-neighbour upsampling of per-cell values back to ``H x W`` (inverse of the cell grid)."""
    ha, wa = _axes(layout)
    if h % b == 0 and w % b == 0:
        n = cells.shape[0]
        if layout == "nchw":
            c = cells.shape[1]
            if out is None:
                out = np.empty((n, c, h, w), dtype=cells.dtype)
            wide = np.repeat(cells, b, axis=3)  # (N, C, H/b, W)
            out.reshape(n, c, h // b, b, w)[...] = wide[:, :, :, None, :]
            return out
        c = cells.shape[3]
        if out is None:
            out = np.empty((n, h, w, c), dtype=cells.dtype)
        wide = np.repeat(cells, b, axis=2).reshape(n, h // b, 1, w * c)
        out.reshape(n, h // b, b, w * c)[...] = wide
        return out
    counts_h = np.minimum(b, h - b * np.arange(cells.shape[ha]))
    counts_w = np.minimum(b, w - b * np.arange(cells.shape[wa]))
    full = np.repeat(np.repeat(cells, counts_h, axis=ha), counts_w, axis=wa)
    if out is None:
        return full
    out[...] = full
    return out


def _chunks(n: int, bytes_per_image: int):
    step = max(1, _CHUNK_BYTES // max(1, bytes_per_image))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _cv2_area_exact(b: int, h: int, w: int) -> bool:
    # OpenCV's integer-factor INTER_AREA computes round-half-even(sum * (1/n)), which equals the exact
    # rint(sum / n) for most sizes (checked bit for bit in tests/test_obfuscation.py); its 2x path
    # rounds ties up instead, so b = 2 takes the NumPy path, and so does any b whose exact ties
    # OpenCV misrounds (b = 22 with OpenCV 4.x: float 1/484 pushes 75 of the 255 ties up).
    return b > 2 and h % b == 0 and w % b == 0 and b <= 32 and _cv2_ties_exact(b)


@functools.lru_cache(maxsize=None)
def _cv2_ties_exact(b: int) -> bool:
    """Whether OpenCV's INTER_AREA rounds every exact tie k + 0.5 of a b x b cell to even (checked once per b)."""
    n = b * b
    if n % 2:
        return True  # odd cells have no exact ties; near-ties are >= 1/(2n) away, far above float error
    import cv2

    cells = np.full((255, n), np.arange(255)[:, None], dtype=np.int64)
    cells[:, : n // 2] += 1  # cell k sums to n*k + n/2: mean k + 0.5
    tall = cells.reshape(255, b, b).transpose(1, 0, 2).reshape(b, 255 * b).astype(np.uint8)
    got = cv2.resize(tall, (255, 1), interpolation=cv2.INTER_AREA)[0]
    return bool((got == np.rint(np.arange(255) + 0.5)).all())


def pixelate_numpy(x: np.ndarray, layout: str, b: int) -> np.ndarray:
    """Plain pixelization on the CPU.

    Args:
        x: uint8 ``(N, H, W, C)`` or ``(N, C, H, W)``, contiguous.
    Returns:
        uint8, same shape: every pixel replaced by its cell mean (rint, ties to even).
    """
    ha, wa = _axes(layout)
    h, w = x.shape[ha], x.shape[wa]
    if b == 1:
        return x.copy()
    out = np.empty_like(x)
    per_image = int(np.prod(x.shape[1:]))
    if _cv2_area_exact(b, h, w):
        import cv2

        for sl in _chunks(x.shape[0], per_image):
            part = x[sl]
            m = part.shape[0]
            if layout == "nchw":
                c = part.shape[1]
                tall = part.reshape(m * c * h, w)  # every plane stacked: cells never straddle two planes
                small = cv2.resize(tall, (w // b, m * c * h // b), interpolation=cv2.INTER_AREA)
                upsample_numpy(small.reshape(m, c, h // b, w // b), layout, b, h, w, out=out[sl])
            else:
                # Interleaved channels: NumPy integer sums beat OpenCV's multi-channel INTER_AREA here.
                sums = block_sums_numpy(part, layout, b)
                upsample_numpy(_round_mean(sums, b * b), layout, b, h, w, out=out[sl])
        return out
    counts = cell_counts(h, w, b)
    counts = counts[:, :, None] if layout == "nhwc" else counts
    for sl in _chunks(x.shape[0], per_image):
        sums = block_sums_numpy(x[sl], layout, b)
        upsample_numpy(_round_mean(sums, counts), layout, b, h, w, out=out[sl])
    return out


def _round_mean(sums: np.ndarray, counts) -> np.ndarray:
    return np.rint(sums / counts).astype(np.uint8)


def _noise_layout_numpy(noise_nchw: np.ndarray, layout: str) -> np.ndarray:
    return noise_nchw.transpose(0, 2, 3, 1) if layout == "nhwc" else noise_nchw


def dp_pix_numpy(
    x: np.ndarray, layout: str, b: int, m: int, epsilon: float, streams: np.ndarray, noise: str = "fast"
) -> np.ndarray:
    """DP-Pix on the CPU.

    Args:
        x: uint8 ``(N, H, W, C)`` or ``(N, C, H, W)``, contiguous.
        streams: uint64 ``(N,)`` noise streams (see :func:`privattrib.obfuscation.noise.image_streams`).
        noise: "fast" (float64 inverse-CDF Laplace on the means) or "secure" (OpenDP discrete Laplace on the sums).
    Returns:
        uint8, same shape.
    """
    ha, wa = _axes(layout)
    h, w = x.shape[ha], x.shape[wa]
    c = x.shape[3] if layout == "nhwc" else x.shape[1]
    gh, gw = _grid(h, w, b)
    counts = cell_counts(h, w, b).astype(np.float64)
    sum_scale = c * 255.0 * m / epsilon  # L1 sensitivity of the vector of cell sums over epsilon
    out = np.empty_like(x)
    per_image = int(np.prod(x.shape[1:]))
    counts_l = counts[:, :, None] if layout == "nhwc" else counts
    for sl in _chunks(x.shape[0], per_image):
        sums = block_sums_numpy(x[sl], layout, b)
        if noise == "secure":
            noisy = _noise.discrete_laplace(sums, sum_scale) / counts_l
        else:
            u = _noise.uniforms_numpy(streams[sl], c * gh * gw).reshape(-1, c, gh, gw)
            lap = _noise.laplace_from_uniforms(u, sum_scale / counts)
            noisy = sums / counts_l + _noise_layout_numpy(lap, layout)
        cells = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        upsample_numpy(cells, layout, b, h, w, out=out[sl])
    return out


# ------------------------------------------------------------------------------------ torch
BACKENDS = ("auto", "torch", "triton", "compile")


@functools.lru_cache(maxsize=None)
def _triton_kernels():
    """The Triton kernels module, or None where Triton does not import (CPU-only PyTorch builds)."""
    try:
        from privattrib.obfuscation import _triton_cells
    except ImportError:
        return None
    return _triton_cells


@functools.lru_cache(maxsize=None)
def _compiled(fn):
    """``torch.compile`` of one of this module's PyTorch-ops functions (compiled on first call)."""
    import torch

    return torch.compile(fn, dynamic=None)


def _use_triton(x, backend: str) -> bool:
    """Whether the cell stages of ``x`` run as the hand-written Triton kernels.

    ``auto`` picks them for CUDA tensors where Triton imports (it ships with PyTorch's CUDA wheels)
    unless ``PRIVATTRIB_NO_TRITON=1``; ``triton`` insists (on the CPU only with ``TRITON_INTERPRET=1``);
    ``torch`` uses PyTorch ops, and ``compile`` the same ops through ``torch.compile`` (compiled on
    the first call, and again, with dynamic sizes, when a size or b changes). Triton needs int32
    cell sums, so b >= 2902 runs through PyTorch ops whatever the backend. All give the same bytes.
    """
    if backend in ("torch", "compile"):
        return False
    if backend == "triton":
        if _triton_kernels() is None:
            raise ImportError("backend='triton' needs the triton package (it ships with PyTorch's CUDA wheels)")
        return True
    if backend != "auto":
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return x.is_cuda and os.environ.get("PRIVATTRIB_NO_TRITON") != "1" and _triton_kernels() is not None


def _sums_fit_int32(b: int) -> bool:
    """Whether a b x b cell of uint8 sums below 2**31 (b < 2902): the Triton kernels' int32 sums."""
    return b * b * 255 < 2**31


def block_sums_torch(x, b: int, backend: str = "auto"):
    """Integer cell sums on any device.

    Args:
        x: uint8 tensor ``(N, C, H, W)``.
        backend: see :func:`_use_triton`.
    Returns:
        int32 tensor ``(N, C, ceil(H/b), ceil(W/b))`` (int64 for b >= 2902, through PyTorch ops).
    """
    import torch
    import torch.nn.functional as F

    if _use_triton(x, backend) and _sums_fit_int32(b):
        return _triton_kernels().cell_sums(x.contiguous(), b)
    if backend == "compile":
        return _compiled(block_sums_torch)(x, b, "torch")
    n, c, h, w = x.shape
    gh, gw = _grid(h, w, b)
    if h % b or w % b:
        x = F.pad(x, (0, gw * b - w, 0, gh * b - h))  # zero padding adds nothing to the sums
    acc = torch.int32 if _sums_fit_int32(b) else torch.int64
    return x.view(n, c, gh, b, gw, b).sum(dim=(3, 5), dtype=acc)


def upsample_torch(cells, b: int, h: int, w: int, backend: str = "auto"):
    """``(N, C, gh, gw)`` -> ``(N, C, H, W)`` nearest-neighbour (cell values repeated over their pixels)."""
    import torch

    if tuple(cells.shape[2:]) != _grid(h, w, b):  # the Triton kernel would read past the cells
        raise ValueError(f"cells {tuple(cells.shape)} do not match the {_grid(h, w, b)} grid of b={b} on {h}x{w}")
    if cells.dtype == torch.uint8 and _use_triton(cells, backend):
        return _triton_kernels().upsample(cells.contiguous(), b, h, w)
    if backend == "compile":
        return _compiled(upsample_torch)(cells, b, h, w, "torch")
    if h % b == 0 and w % b == 0:
        # Measured on an H100 (16,384 images 128x128 RGB, b=16): two repeat_interleave calls 12.6 M
        # images/s, F.interpolate 11.5 M, expand + reshape copy 8.7 M.
        return cells.repeat_interleave(b, dim=2).repeat_interleave(b, dim=3)
    rows = torch.arange(h, device=cells.device) // b
    cols = torch.arange(w, device=cells.device) // b
    return cells[:, :, rows][:, :, :, cols]


def round_half_even_mean(sums, counts):
    """``rint(sums / counts)`` in integer arithmetic: exact for any cell size (a float32 division is
    not once a cell holds more than 2**16 pixels). Torch int tensors; ``counts`` broadcasts."""
    import torch

    q = torch.div(sums, counts, rounding_mode="floor")
    twice_rem = 2 * (sums - q * counts)
    return q + ((twice_rem > counts) | ((twice_rem == counts) & (q % 2 == 1))).to(q.dtype)


def pixelate_torch(x, b: int, backend: str = "auto"):
    """Plain pixelization on any device; bit-identical to :func:`pixelate_numpy`.

    Args:
        x: uint8 tensor ``(N, C, H, W)``.
        backend: see :func:`_use_triton` (Triton: one fused pass over the image).
    """
    import torch

    use_triton = _use_triton(x, backend)  # also refuses an unknown backend when b == 1
    if b == 1:
        return x.clone()
    if use_triton and _sums_fit_int32(b):
        return _triton_kernels().pixelate(x.contiguous(), b)
    if backend == "compile":
        return _compiled(pixelate_torch)(x, b, "torch")
    n, c, h, w = x.shape
    counts = torch.from_numpy(cell_counts(h, w, b)).to(device=x.device, dtype=torch.int32)
    means = round_half_even_mean(block_sums_torch(x, b, "torch"), counts).to(torch.uint8)
    return upsample_torch(means, b, h, w, "torch")


def dp_pix_torch(x, b: int, m: int, epsilon: float, streams: np.ndarray, noise: str = "fast", backend: str = "auto"):
    """DP-Pix on any device (noise drawn on the device from the same keyed streams as the NumPy path).

    Args:
        x: uint8 tensor ``(N, C, H, W)``.
        backend: see :func:`_use_triton` (for the cell sums and the upsampling).
    """
    import torch

    n, c, h, w = x.shape
    gh, gw = _grid(h, w, b)
    counts_np = cell_counts(h, w, b).astype(np.float64)
    counts = torch.from_numpy(counts_np).to(x.device)
    sum_scale = c * 255.0 * m / epsilon
    sums = block_sums_torch(x, b, backend)
    if noise == "secure":
        noisy_sums = _noise.discrete_laplace(sums.cpu().numpy(), sum_scale)
        noisy = torch.from_numpy(noisy_sums).to(x.device).to(torch.float64) / counts
    else:
        u = _noise.uniforms_torch(streams, c * gh * gw, x.device).view(n, c, gh, gw)
        noisy = sums.to(torch.float64) / counts + _noise.laplace_from_uniforms(u, sum_scale / counts)
    cells = torch.round(noisy).clamp_(0, 255).to(torch.uint8)
    return upsample_torch(cells, b, h, w, backend)


# ------------------------------------------------------------------------------------ methods
_FAN_2018 = "Fan, 'Image Pixelization with Differential Privacy', DBSec 2018"


@register_method
class Pixelate(Obfuscation):
    """Pixelization: every b x b cell becomes its mean (no formal privacy)."""

    name = "pixelate"
    summary = "every b x b cell replaced by its mean"
    params_spec = (Param("b", int, 16, "cell size in pixels", minimum=1),)
    privacy = "none"
    paper = "classic mosaic; as baseline in " + _FAN_2018

    def _forward_numpy(self, x, layout, streams):
        return pixelate_numpy(x, layout, self.params["b"])

    def _forward_torch(self, x, streams):
        return pixelate_torch(x, self.params["b"])


@register_method
class DPPix(Obfuscation):
    """DP-Pix: pixelize, add Laplace noise of scale C*255*m/(n*epsilon) per cell mean, clip."""

    name = "dp-pix"
    summary = "pixelize, Laplace noise C*255*m/(n*eps) on every cell mean, clip"
    params_spec = (
        Param("b", int, 16, "cell size in pixels", minimum=1),
        Param("m", int, 16, "neighbouring images differ in at most m pixels", minimum=1),
        Param("epsilon", float, 0.5, "privacy budget", exclusive_minimum=0.0),
        Param("noise", str, "fast", "fast: float Laplace on the means; secure: exact discrete Laplace on the sums", choices=("fast", "secure")),
    )
    privacy = "epsilon-DP (m-neighbourhood)"
    paper = _FAN_2018
    randomized = True

    def _describe_extra(self) -> dict[str, Any]:
        p = self.params
        return {
            "neighbouring": f"images differing in at most m={p['m']} pixels (a pixel = its whole C-vector)",
            "noise_scale": f"C*255*m/(n*epsilon) per cell mean = {255.0 * p['m'] / (p['b'] ** 2 * p['epsilon']):.6g}*C for full cells (n = b*b); larger at edge cells",
        }

    def _forward_numpy(self, x, layout, streams):
        p = self.params
        return dp_pix_numpy(x, layout, p["b"], p["m"], p["epsilon"], streams, p["noise"])

    def _forward_torch(self, x, streams):
        p = self.params
        return dp_pix_torch(x, p["b"], p["m"], p["epsilon"], streams, p["noise"])
