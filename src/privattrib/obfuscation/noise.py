"""Noise samplers: keyed counter-based uniforms, Laplace, exact discrete Laplace, the l2-Laplace of svd-mp.

Reproducibility rule: the noise of one image is a pure function of ``(seed, method spec, key,
position)``. Each image gets a 64-bit *stream* ``mix(mix((seed + golden) ^ H(spec)) ^ key)``; its
j-th uniform is ``mix(stream + (j + 1) * golden)`` (SplitMix64, Steele et al. 2014, a counter-based
generator), so no state is carried between images: batch size, batch order, device and thread
count cannot change which numbers an image gets. The same integer arithmetic runs in NumPy (uint64) and in torch
(int64, two's-complement wrap-around, logical shifts by masking), so CPU and CUDA draw the same bits;
only the final float transform (log, cos) may differ in the last ulp between the two.

The spec enters the stream so that two releases of one image with one seed but different
parameters (epsilon 0.5, then 1) get independent noise: with shared uniforms their difference
would cancel the noise exactly.

``fast`` Laplace samples are inverse-CDF transforms of 52-bit uniforms in float64. Floating-point
Laplace is attackable (Mironov, CCS 2012); the ``secure`` backend instead adds exact discrete Laplace
noise to integer cell sums through OpenDP (its sampler uses only integer/rational arithmetic and the
OS's cryptographic randomness). OpenDP's sampler cannot be seeded, by design: ``secure`` noise is not
reproducible from the seed; cache the obfuscated output instead of re-drawing it.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, Sequence

import numpy as np

__all__ = [
    "resolve_seed",
    "key_to_u64",
    "image_streams",
    "uniforms_numpy",
    "uniforms_torch",
    "laplace_from_uniforms",
    "discrete_laplace",
    "l2_laplace_from_uniforms",
]

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
_TWO_POW_M52 = 2.0**-52


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


# ------------------------------------------------------------------------------- seeds and keys
def resolve_seed(seed: int | None) -> int:
    """Validate a seed (non-negative int < 2**64); ``None`` draws a secret one from the OS."""
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


def key_to_u64(key: Any) -> int:
    """Map one image key (int, str, bytes, or a path-like) to 64 bits.

    Integers are used as they are (two's complement), so key ``i`` equals the default key of the
    i-th image; strings and bytes go through BLAKE2b.
    """
    if isinstance(key, (bool, np.bool_)):
        raise ValueError(f"image keys must be ints or strings, got {key!r}")
    if isinstance(key, (int, np.integer)):
        return int(key) & _MASK64
    if isinstance(key, bytes):
        data = b"b" + key
    elif isinstance(key, str) or hasattr(key, "__fspath__"):
        data = b"s" + str(key).encode("utf-8")
    else:
        raise ValueError(f"image keys must be ints or strings, got {type(key).__name__}")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix_numpy(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array, in place (wraps modulo 2**64); returns ``z``."""
    t = np.empty_like(z)
    np.right_shift(z, np.uint64(30), out=t)
    z ^= t
    z *= np.uint64(_MIX1)
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= np.uint64(_MIX2)
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    return z


def image_streams(seed: int, keys: Sequence[Any] | None, n: int, salt: str = "") -> np.ndarray:
    """One 64-bit noise stream per image.

    Args:
        seed: a validated seed (see :func:`resolve_seed`).
        keys: None (image i gets key i), or N keys (ints/strings, or an integer array/tensor).
        n: batch size.
        salt: what else the noise belongs to; methods pass their canonical spec, so that one seed
            gives independent noise to different methods and parameters. ``""`` adds nothing (the
            streams of a plain seed).

    Returns:
        uint64 array of shape ``(N,)``.
    """
    if keys is None:
        k = np.arange(n, dtype=np.uint64)
    else:
        if hasattr(keys, "detach"):  # torch tensor
            keys = keys.detach().cpu().numpy()
        if isinstance(keys, np.ndarray) and keys.dtype.kind in "iu":
            if keys.shape != (n,):
                raise ValueError(f"keys must have one entry per image: shape ({n},), got {keys.shape}")
            k = keys.astype(np.int64, copy=False).view(np.uint64) if keys.dtype.kind == "i" else keys.astype(np.uint64)
        else:
            if isinstance(keys, (str, bytes)):
                raise ValueError("keys must be a sequence with one key per image, not a single string")
            keys = list(keys)
            if len(keys) != n:
                raise ValueError(f"keys must have one entry per image: got {len(keys)} keys for {n} images")
            k = np.fromiter((key_to_u64(key) for key in keys), dtype=np.uint64, count=n)
    with np.errstate(over="ignore"):
        base = ((seed + _GOLDEN) & _MASK64) ^ (key_to_u64(salt) if salt else 0)
        seed_state = _mix_numpy(np.array([base], dtype=np.uint64))
        return _mix_numpy(seed_state ^ k)


# ------------------------------------------------------------------------------- uniforms
def uniforms_numpy(streams: np.ndarray, count: int, offset: int = 0) -> np.ndarray:
    """Uniforms ``(i + 1/2) * 2**-52`` for 52-bit integers i: in the open interval (0, 1), never 1/2,
    exact in float64, on one grid symmetric about 1/2.

    Args:
        streams: uint64 ``(N,)``.
        count: numbers per image; ``offset`` skips the first ones of each stream (for independent draws).

    Returns:
        float64 ``(N, count)``.
    """
    counters = np.arange(offset + 1, offset + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        counters *= np.uint64(_GOLDEN)
        bits = _mix_numpy(streams[:, None] + counters[None, :])
    bits >>= np.uint64(12)
    u = bits.astype(np.float64)
    u += 0.5
    u *= _TWO_POW_M52
    return u


def _mix_torch(z):
    """SplitMix64 finaliser on an int64 tensor: wrap-around multiply, logical shifts by masking."""
    z = z ^ ((z >> 30) & ((1 << 34) - 1))
    z = z * _signed(_MIX1)
    z = z ^ ((z >> 27) & ((1 << 37) - 1))
    z = z * _signed(_MIX2)
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def uniforms_torch(streams: np.ndarray, count: int, device, offset: int = 0):
    """Same numbers as :func:`uniforms_numpy`, generated on ``device`` (float64 ``(N, count)``)."""
    import torch

    s = torch.from_numpy(streams.view(np.int64).copy()).to(device)
    j = torch.arange(offset + 1, offset + count + 1, dtype=torch.int64, device=device)
    # (j * golden) mod 2**64 in int64: multiplication wraps identically to uint64.
    counters = j * _signed(_GOLDEN)
    bits = _mix_torch(s[:, None] + counters[None, :])
    top52 = (bits >> 12) & ((1 << 52) - 1)
    return (top52.to(torch.float64) + 0.5) * _TWO_POW_M52


# ------------------------------------------------------------------------------- distributions
def laplace_from_uniforms(u, scale):
    """Inverse-CDF Laplace(0, scale) from uniforms in (0, 1); NumPy or torch, float64.

    Args:
        u: uniforms, any shape.
        scale: broadcastable to ``u``.
    """
    # X = sign(u - 1/2) * scale * E with E = -log(1 - 2|u - 1/2|) ~ Exp(1): one log per sample.
    # With the 52-bit uniforms u != 1/2 and 1 - 2|u - 1/2| >= 2**-52, so E is finite (|X| <= 36.1 scale).
    if isinstance(u, np.ndarray):
        d = u - 0.5
        e = np.abs(d)
        e *= -2.0
        np.log1p(e, out=e)
        e *= -1.0
        return np.copysign(e, d) * scale
    import torch

    d = u - 0.5
    e = torch.log1p(-2.0 * d.abs()).neg_()
    return torch.copysign(e, d) * scale


_DISCRETE_LAPLACE_CACHE: dict[float, Any] = {}


def discrete_laplace(values: np.ndarray, scale: float) -> np.ndarray:
    """Exact discrete Laplace mechanism on integers (OpenDP ``make_laplace`` on an i64 vector domain).

    Adds Z with P(Z = z) proportional to exp(-|z| / scale) to every value, sampled with integer and
    rational arithmetic from the OS's cryptographic randomness (no floating-point leak).

    Args:
        values: integer array, any shape.
        scale: the noise scale (sensitivity / epsilon for epsilon-DP under the L1 metric).

    Returns:
        int64 array of the same shape.
    """
    try:
        import opendp.prelude as dp
    except ImportError as exc:  # pragma: no cover - opendp is a dependency
        raise RuntimeError("the 'secure' noise backend needs the opendp package") from exc
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"discrete Laplace scale must be > 0, got {scale}")
    meas = _DISCRETE_LAPLACE_CACHE.get(scale)
    if meas is None:
        dp.enable_features("contrib")
        meas = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"), scale=scale)
        _DISCRETE_LAPLACE_CACHE[scale] = meas
    flat = np.ascontiguousarray(values, dtype=np.int64).ravel()
    noisy = np.asarray(meas(flat.tolist()), dtype=np.int64)
    return noisy.reshape(np.shape(values))


def l2_laplace_from_uniforms(u, k: int, epsilon: float):
    """Noise Z in R^k with density proportional to exp(-epsilon * ||Z||_2) (NumPy or torch, float64).

    Radius ~ Gamma(k, 1/epsilon) (a sum of k Exp(epsilon), exact for integer k) times a uniform
    direction (normalised Gaussian vector via Box-Muller). The components are NOT sorted.

    Args:
        u: uniforms ``(..., 3k)``: k for the radius, 2k for the direction.
    Returns:
        ``(..., k)``.
    """
    if isinstance(u, np.ndarray):
        lib = np
    else:
        import torch as lib
    radius = -lib.log(u[..., :k]).sum(-1)[..., None] / epsilon
    g = lib.sqrt(-2.0 * lib.log(u[..., k : 2 * k])) * lib.cos(2.0 * np.pi * u[..., 2 * k : 3 * k])
    norm = lib.sqrt((g * g).sum(-1))[..., None]
    return radius * g / norm
