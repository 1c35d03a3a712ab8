"""Calibrated class probabilities: temperature scaling (Guo et al., ICML 2017) and the expected
calibration error.

A classifier's softmax is usually over-confident. Temperature scaling divides every logit by one
scalar T > 0 fitted on held-out data (the validation split, never the test split) by minimising
the negative log-likelihood. It changes no prediction (the arg-max is the same), only how sure the
probabilities say the model is. The expected calibration error (ECE) measures what is left: with
the confidences (the largest probability of each image) cut into equal-width bins,

    ECE = sum over bins b of  n_b / N * | accuracy_b - mean confidence_b |

Example::

    t = fit_temperature(val_logits, val_labels)
    probs = softmax(test_logits, t)
    expected_calibration_error(softmax(test_logits), test_labels), expected_calibration_error(probs, test_labels)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["softmax", "negative_log_likelihood", "fit_temperature", "expected_calibration_error",
           "reliability_bins", "ECE_BINS", "TEMPERATURE_BOUNDS"]

#: Bins of the expected calibration error (Guo et al. report 15).
ECE_BINS = 15
#: The search interval of :func:`fit_temperature`.
TEMPERATURE_BOUNDS = (0.01, 100.0)


def _logits(logits: Any) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be N x K with K >= 2, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    return z


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def _labels(labels: Any, n: int, k: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {n} integer class indices, got {y.dtype} {y.shape}")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}), got {y.min()}..{y.max()}")
    return y.astype(np.int64)


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities ``softmax(logits / T)``: float64 N x K, each row sums to 1."""
    from scipy.special import softmax as _softmax

    return _softmax(_logits(logits) / _check_temperature(temperature), axis=1)


def negative_log_likelihood(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean NLL (nats) of the true classes under ``softmax(logits / T)``."""
    from scipy.special import log_softmax

    z = _logits(logits)
    y = _labels(labels, len(z), z.shape[1])
    if len(y) == 0:
        raise ValueError("no samples")
    logp = log_softmax(z / _check_temperature(temperature), axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: Any, labels: Any, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature T that minimises the NLL of ``labels`` under ``softmax(logits / T)``.

    A bounded one-dimensional search (Brent's method on log T, deterministic): the NLL of
    temperature scaling is smooth in log T, and a 1-D search needs no learning rate or iteration
    budget. A model that is under-confident gets T < 1, an over-confident one T > 1. On logits
    that classify every sample correctly the NLL has no minimum (it falls as T -> 0) and the search
    ends at the lower bound: callers should not fit on such a split (``train-attributor`` keeps
    T = 1 then).

    Args:
        logits: N x K validation logits (never the test split's: that would grade the fit on the
            data it was fitted to).
        labels: N true class indices.
        bounds: the interval searched (default :data:`TEMPERATURE_BOUNDS`).

    Returns:
        T > 0.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    z = _logits(logits)
    y = _labels(labels, len(z), z.shape[1])
    if len(y) == 0:
        raise ValueError("fit_temperature needs at least one validation sample")
    lo, hi = (_check_temperature(b) for b in bounds)
    if not lo < hi:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / math.exp(log_t), axis=1)[rows, y].mean())

    result = minimize_scalar(nll, bounds=(math.log(lo), math.log(hi)), method="bounded",
                             options={"xatol": 1e-5})
    best = float(result.x)
    if nll(0.0) <= nll(best):  # never worse than leaving the logits alone
        best = 0.0
    return float(math.exp(best))


def reliability_bins(probs: Any, labels: Any, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin: ``count``, mean ``confidence`` and ``accuracy`` (NaN where empty), and
    the bin ``edges`` (``bins`` equal-width bins over [0, 1]; a confidence on an edge goes to the
    bin below it, as in Guo et al.)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be N x K, got shape {p.shape}")
    y = _labels(labels, len(p), p.shape[1])
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, int(bins) - 1)
    count = np.bincount(which, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(probs: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins (see the module docstring); 0 is perfect."""
    r = reliability_bins(probs, labels, bins)
    n = int(r["count"].sum())
    if n == 0:
        raise ValueError("no samples")
    used = r["count"] > 0
    gaps = np.abs(r["accuracy"][used] - r["confidence"][used])
    return float((r["count"][used] * gaps).sum() / n)
