"""Metric privacy by SVD (Fan, "Practical Image Obfuscation with Provable Privacy", ICME 2019).

Per image and channel: scale to [0, 1], take the SVD ``A = U diag(s) V^T``, keep the top k singular
triplets, perturb the singular values with noise Z of density proportional to
``exp(-epsilon * ||Z||_2)`` (radius ~ Gamma(k, 1/epsilon) times a uniform direction), rebuild
``U_k diag(s_k + Z) V_k^T``, clip to [0, 1] and round back to uint8.

The noise is NOT sorted (a public implementation sorts it, which voids the guarantee). The guarantee
is d_X-privacy (metric privacy) for the metric ``d(x, x') = sum_c ||s_k(x_c) - s_k(x'_c)||_2`` on the
top-k singular values of the channels (each channel gets its own Z with the full epsilon), and it
covers the singular values only: the singular vectors U_k, V_k are released unperturbed, so it
holds between images with the same U_k, V_k. Images whose singular values agree but whose vectors
differ (an image and its mirror image, d = 0) are not protected from each other. This epsilon is NOT
comparable with DP-Pix's epsilon.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privattrib.obfuscation import noise as _noise
from privattrib.obfuscation.base import Obfuscation, Param, register_method

__all__ = ["svd_mp_numpy", "svd_mp_torch", "SVDMetricPrivacy"]


def _check_k(k: int, h: int, w: int) -> None:
    if k > min(h, w):
        raise ValueError(f"svd-mp: k={k} singular values requested but a {h} x {w} image has only {min(h, w)}; use k <= {min(h, w)}")


#: Images at least this many pixels, with k at most a quarter of their short side, get only their
#: top k singular triplets (ARPACK) instead of a full SVD: on a 12-megapixel photo the method took
#: 7.5 s instead of 66 s, with the same output bytes (benchmarks/svd_truncated.py).
TRUNCATED_SVD_MIN_PIXELS = 256 * 256


def _uses_truncated_svd(k: int, h: int, w: int) -> bool:
    return h * w >= TRUNCATED_SVD_MIN_PIXELS and 4 * k <= min(h, w)


#: Singular values closer than this (relative to the largest) count as tied or zero.
_TIE_TOLERANCE = 1e-9


def _top_k_svd(plane: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U_k, s_k, V_k^T) of one float64 plane, singular values descending, by ARPACK from a fixed
    start vector. Where the top k + 1 singular values include a zero or a tie (a flat colour,
    repeated patterns) the singular vectors are not unique, and ARPACK fills the gap from a random
    state of its own that carries over between calls: such planes get the full SVD (LAPACK,
    deterministic), as does a plane ARPACK fails on."""
    import torch
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, svds

    h, w = plane.shape
    if not plane.any():  # LAPACK's answer for a zero matrix, without its cost
        return np.eye(h, k), np.zeros(k), np.eye(k, w)
    wanted = min(k + 1, min(h, w) - 1)  # one more, to see a tie at the k-th value
    v0 = np.random.default_rng(0).standard_normal(min(h, w))
    try:
        u, s, vt = svds(plane, k=wanted, v0=v0, solver="arpack")
    except (ArpackError, ArpackNoConvergence):
        pass
    else:
        order = np.argsort(s)[::-1]
        u, s, vt = u[:, order], s[order], vt[order]
        if s[-1] > _TIE_TOLERANCE * s[0] and np.all(-np.diff(s) > _TIE_TOLERANCE * s[0]):
            return u[:, :k], s[:k], vt[:k]
    u, s, vt = (t.numpy() for t in torch.linalg.svd(torch.from_numpy(plane), full_matrices=False))
    return u[:, :k], s[:k], vt[:k]  # the full path's own call, so its bytes too


def _rank_k_rebuild_cpu(planes: np.ndarray, z: np.ndarray, k: int) -> np.ndarray:
    """float64 SVD of uint8 planes ``(..., H, W)`` scaled to [0, 1]; rebuild ``U_k diag(s_k + z) V_k^T``."""
    import torch

    h, w = planes.shape[-2:]
    if _uses_truncated_svd(k, h, w):
        flat, z_flat = planes.reshape(-1, h, w), z.reshape(-1, k)
        out = np.empty(flat.shape, dtype=np.uint8)
        for i, plane in enumerate(flat):
            u, s, vt = _top_k_svd(plane.astype(np.float64) / 255.0, k)
            rebuilt = (u * (s + z_flat[i])) @ vt
            out[i] = np.rint(np.clip(rebuilt, 0.0, 1.0) * 255.0)
        return out.reshape(planes.shape)
    a = torch.from_numpy(planes.astype(np.float64) / 255.0)
    u, s, vt = torch.linalg.svd(a, full_matrices=False)
    sk = s[..., :k] + torch.from_numpy(z)
    rebuilt = (u[..., :, :k] * sk[..., None, :]) @ vt[..., :k, :]
    return np.rint(np.clip(rebuilt.numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)


def svd_mp_numpy(x: np.ndarray, layout: str, k: int, epsilon: float, streams: np.ndarray) -> np.ndarray:
    """svd-mp on the CPU (float64 LAPACK SVD).

    Small SVDs run one per thread: multi-threaded LAPACK on 128 x 128 matrices is slower than one
    thread, and pathologically so (tens of times) when the cores are shared. So chunks of images
    go to a pool of ``torch.get_num_threads()`` workers, each computing with one LAPACK thread; the
    result does not depend on the thread count.

    Args:
        x: uint8 ``(N, H, W, C)`` or ``(N, C, H, W)``, contiguous.
        streams: uint64 ``(N,)``.
    Returns:
        uint8, same shape.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from threadpoolctl import threadpool_limits

    planes = x.transpose(0, 3, 1, 2) if layout == "nhwc" else x  # (N, C, H, W) view
    n, c, h, w = planes.shape
    _check_k(k, h, w)
    z = _noise.l2_laplace_from_uniforms(_noise.uniforms_numpy(streams, c * 3 * k).reshape(n, c, 3 * k), k, epsilon)
    out = np.empty((n, c, h, w), dtype=np.uint8)
    step = max(1, min(64, (1 << 20) // (c * h * w)))
    chunks = [slice(s, min(n, s + step)) for s in range(0, n, step)]

    def work(sl: slice) -> None:
        out[sl] = _rank_k_rebuild_cpu(planes[sl], z[sl], k)

    workers = torch.get_num_threads()
    previous = workers
    torch.set_num_threads(1)
    # one BLAS thread for ARPACK too (the top-k path only: the full path is torch's); the limit
    # is process-wide, so it is set once here around the pool, not by each worker
    blas = threadpool_limits(limits=1, user_api="blas") if _uses_truncated_svd(k, h, w) else None
    try:
        if workers > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, chunks))
        else:
            for sl in chunks:
                work(sl)
    finally:
        torch.set_num_threads(previous)
        if blas is not None:
            blas.restore_original_limits()
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1)) if layout == "nhwc" else out


def svd_mp_torch(x, k: int, epsilon: float, streams: np.ndarray):
    """svd-mp on the tensor's device (float32 batched SVD, noise from the same keyed streams as the
    NumPy path). The method itself does not use it (see :meth:`SVDMetricPrivacy._forward_torch`);
    it stays for callers who want the SVD on the device, and for the speed benchmark.

    Args:
        x: uint8 tensor ``(N, C, H, W)``.
    """
    import torch

    n, c, h, w = x.shape
    _check_k(k, h, w)
    u01 = _noise.uniforms_torch(streams, c * 3 * k, x.device).view(n, c, 3 * k)
    z = _noise.l2_laplace_from_uniforms(u01, k, epsilon).to(torch.float32)
    a = x.to(torch.float32) / 255.0
    u, s, vt = torch.linalg.svd(a, full_matrices=False)
    sk = s[..., :k] + z
    rebuilt = (u[..., :, :k] * sk[..., None, :]) @ vt[..., :k, :]
    return (rebuilt.clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)


@register_method
class SVDMetricPrivacy(Obfuscation):
    """Top-k singular values perturbed with l2-Laplace noise (d_X-privacy)."""

    name = "svd-mp"
    summary = "per channel rank-k SVD, singular values + noise ~ exp(-eps*||Z||_2)"
    params_spec = (
        Param("k", int, 4, "number of top singular values kept and perturbed", minimum=1),
        Param("epsilon", float, 1.0, "d_X-privacy parameter (not comparable with DP epsilon)", exclusive_minimum=0.0),
    )
    privacy = "d_X-privacy"
    paper = "Fan, 'Practical Image Obfuscation with Provable Privacy', ICME 2019"
    randomized = True

    @property
    def noise_backend(self) -> str:
        return "fast"

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "metric": "d(x, x') = sum over channels of ||top-k singular values of x_c - of x'_c||_2, images scaled to [0, 1]; "
            "the singular vectors U_k, V_k are released unperturbed, so the guarantee holds only between images "
            "with the same U_k, V_k (an image and its mirror image, d = 0, are told apart)",
            "noise": "radius ~ Gamma(k, 1/epsilon), uniform direction, not sorted",
            "note": "d_X-privacy epsilon; not comparable with the epsilon of dp-pix/dp-blur",
        }

    def _forward_numpy(self, x, layout, streams):
        return svd_mp_numpy(x, layout, self.params["k"], self.params["epsilon"], streams)

    def _forward_torch(self, x, streams):
        # Tensors on any device take the float64 host path: the same bytes on every device. On the
        # CPU it is faster than torch's multi-threaded SVD of small matrices, which slows down badly
        # on shared cores (measured, docs/performance.md). CUDA has no batched SVD for matrices over
        # 32 x 32 (torch loops over them: 129 images/s at 128 x 128 on an H100); the host path with
        # one SVD per core should beat that, but is not yet timed on a GPU machine.
        import torch

        host = np.ascontiguousarray(x.detach().cpu().numpy())
        return torch.from_numpy(self._forward_numpy(host, "nchw", streams)).to(x.device)
