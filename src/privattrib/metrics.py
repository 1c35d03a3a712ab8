"""Utility metrics (MSE, PSNR, SSIM) and classification metrics (confusion matrix, laundering rate).

Image metrics take uint8 images in any layout the obfuscations take -- a torch tensor
``(N, C, H, W)`` on any device, a NumPy array ``(N, H, W, C)``, or one NumPy image ``(H, W)`` /
``(H, W, C)`` -- and return one value per image: a float64 tensor ``(N,)`` on the input's device for
torch input, a float64 array ``(N,)`` for a NumPy batch, a float for a single image. All arithmetic
is in floating point (never on uint8 differences).

SSIM is Wang et al. 2004 exactly as scikit-image's
``structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255, channel_axis=...)``: 11 x 11 Gaussian window (sigma 1.5, truncated at 3.5 sigma),
K1 = 0.01, K2 = 0.03, mean of the SSIM map over the pixels at least 5 from the border (scikit-image
crops exactly those), averaged over channels.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = [
    "mse",
    "psnr",
    "psnr_from_mse",
    "ssim",
    "mean_utility",
    "confusion_matrix",
    "per_class_accuracy",
    "accuracy",
    "laundering_rate",
    "class_figures",
]

_DATA_RANGE = 255.0
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): scikit-image's truncate=3.5 gives an 11-tap window
_K1, _K2 = 0.01, 0.03


def _as_nchw_pair(x: Any, y: Any, name: str):
    """Both inputs as float64/float32 torch tensors (N, C, H, W) plus a function shaping the result."""
    import torch

    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        for arr in (x, y):
            if arr.dtype != np.uint8:
                raise ValueError(f"{name}: images must be uint8, got {arr.dtype}")
        if x.shape != y.shape:
            raise ValueError(f"{name}: shapes differ: {x.shape} vs {y.shape}")
        if x.ndim == 2:
            single, nhwc = True, (x[None, :, :, None], y[None, :, :, None])
        elif x.ndim == 3:
            single, nhwc = True, (x[None], y[None])
        elif x.ndim == 4:
            single, nhwc = False, (x, y)
        else:
            raise ValueError(f"{name}: NumPy images must be H x W, H x W x C or N x H x W x C, got {x.shape}")
        with warnings.catch_warnings():
            # read-only input (a decoded upload): these tensors are only read, never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tx, ty = (torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2) for a in nhwc)

        def finish(v):
            out = v.cpu().numpy()
            return float(out[0]) if single else out

        return tx, ty, finish
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        for t in (x, y):
            if t.dtype != torch.uint8:
                raise ValueError(f"{name}: images must be uint8, got {t.dtype}")
        if x.shape != y.shape:
            raise ValueError(f"{name}: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        if x.ndim != 4:
            raise ValueError(f"{name}: torch images must be N x C x H x W, got {tuple(x.shape)}")
        if x.device != y.device:
            raise ValueError(f"{name}: images are on different devices ({x.device}, {y.device})")
        return x, y, lambda v: v
    raise ValueError(f"{name}: pass two uint8 NumPy arrays or two uint8 torch tensors, got {type(x).__name__} and {type(y).__name__}")


def _float_dtype(t):
    import torch

    # float32 on accelerators (moments are computed on values shifted by -128, see _ssim_torch).
    return torch.float64 if t.device.type == "cpu" else torch.float32


def mse(x: Any, y: Any):
    """Mean squared error per image over all pixels and channels (values 0..255).

    Args:
        x, y: uint8 images, same shape and layout (see module doc).
    Returns:
        ``(N,)`` float64 (tensor for torch input), or a float for one image.
    """
    import torch

    tx, ty, finish = _as_nchw_pair(x, y, "mse")
    n = tx.shape[0]
    if tx.device.type == "cpu":
        # Exact: squared differences of int16 values summed in int64 (chunks stay in cache).
        a, b = tx.numpy(), ty.numpy()
        out_np = np.empty(n, dtype=np.float64)
        step = max(1, (1 << 18) // max(1, a[0].size))
        for s in range(0, n, step):
            d = a[s : s + step].astype(np.int16) - b[s : s + step].astype(np.int16)
            d = d.reshape(d.shape[0], -1).astype(np.int32)
            out_np[s : s + step] = np.einsum("ij,ij->i", d, d, dtype=np.int64) / d.shape[1]
        return finish(torch.from_numpy(out_np))
    out = torch.empty(n, dtype=torch.float64, device=tx.device)
    step = max(1, (1 << 24) // max(1, tx[0].numel()))
    for s in range(0, n, step):
        d = tx[s : s + step].to(torch.float32) - ty[s : s + step].to(torch.float32)
        out[s : s + step] = (d * d).flatten(1).sum(1, dtype=torch.float64) / d[0].numel()
    return finish(out)


def psnr(x: Any, y: Any):
    """Peak signal-to-noise ratio per image in dB, ``10*log10(255^2 / MSE)``; ``inf`` for identical images."""
    return psnr_from_mse(mse(x, y))


def psnr_from_mse(m):
    """PSNR in dB of an MSE as :func:`mse` returns it (float, NumPy array or torch tensor)."""
    import torch

    if isinstance(m, float):
        return float("inf") if m == 0 else 10.0 * np.log10(_DATA_RANGE**2 / m)
    if isinstance(m, np.ndarray):
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(_DATA_RANGE**2 / m)
    return 10.0 * torch.log10(_DATA_RANGE**2 / m)


def mean_utility(originals: Any, others: Any) -> dict[str, float]:
    """Means over a batch of ``mse``, ``psnr`` and ``ssim`` of ``others`` against ``originals``.

    PSNR is averaged over the images that differ from their original: an unchanged image has
    infinite PSNR, and one of them would make the mean infinite (it is ``inf`` only when every
    image is unchanged). SSIM is left out for images under 11 x 11 pixels, where its window does
    not fit.

    Args:
        originals, others: uint8 batches of the same shape, torch N x C x H x W or NumPy N x H x W x C.

    Returns:
        ``{"mse": ..., "psnr": ..., "ssim": ...}`` (floats; no ``ssim`` for tiny images), ``{}``
        for an empty batch.
    """
    import torch

    def as_numpy(values) -> np.ndarray:
        return np.atleast_1d(np.asarray(values.double().cpu() if isinstance(values, torch.Tensor) else values,
                                        dtype=np.float64))

    if len(originals) == 0:
        return {}
    a, _, _ = _as_nchw_pair(originals, others, "mean_utility")
    errors = as_numpy(mse(originals, others))  # PSNR is derived from these, not computed again
    changed = errors[errors > 0]
    out = {"mse": float(errors.mean()),
           "psnr": float(np.mean(psnr_from_mse(changed))) if len(changed) else float("inf")}
    if min(a.shape[-2:]) >= 2 * _SSIM_RADIUS + 1:
        out["ssim"] = float(as_numpy(ssim(originals, others)).mean())
    return out


def _gaussian_taps(dtype, device):
    import torch

    r = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (r / _SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def ssim(x: Any, y: Any):
    """Structural similarity per image (Wang et al. 2004; equal to scikit-image's, see module doc).

    Args:
        x, y: uint8 images of at least 11 x 11 pixels, same shape and layout.
    Returns:
        ``(N,)`` float64 (tensor for torch input), or a float for one image.
    """
    import torch

    tx, ty, finish = _as_nchw_pair(x, y, "ssim")
    n, c, h, w = tx.shape
    win = 2 * _SSIM_RADIUS + 1
    if h < win or w < win:
        raise ValueError(f"ssim: images must be at least {win} x {win} pixels (the Gaussian window), got {h} x {w}")
    c1, c2 = (_K1 * _DATA_RANGE) ** 2, (_K2 * _DATA_RANGE) ** 2
    if tx.device.type == "cpu":
        return finish(torch.from_numpy(_ssim_cpu(tx.numpy(), ty.numpy(), c1, c2)))
    return finish(_ssim_torch(tx, ty, c1, c2))


def _ssim_torch(tx, ty, c1: float, c2: float):
    """SSIM of uint8 ``(N, C, H, W)`` tensors on any device: grouped separable conv2d, "valid" region."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = tx.shape
    win = 2 * _SSIM_RADIUS + 1
    dtype = _float_dtype(tx)
    taps = _gaussian_taps(dtype, tx.device)
    out = torch.empty(n, dtype=torch.float64, device=tx.device)
    step = max(1, (1 << 21) // max(1, c * h * w))
    for s in range(0, n, step):
        # Shifted by -128 like the CPU path, so float32 moments keep their precision.
        a = tx[s : s + step].to(dtype).reshape(-1, 1, h, w) - 128.0
        b = ty[s : s + step].to(dtype).reshape(-1, 1, h, w) - 128.0
        # Five local moments at once; "valid" filtering = scikit-image's reflect-padded map cropped by 5.
        stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
        k = stack.shape[1]
        f = F.conv2d(stack, taps.view(1, 1, win, 1).expand(k, 1, win, 1), groups=k)
        f = F.conv2d(f, taps.view(1, 1, 1, win).expand(k, 1, 1, win), groups=k).to(torch.float64)
        smap = _ssim_from_shifted_moments(*f.unbind(1), c1, c2)
        per_plane = smap.flatten(1).mean(1)
        out[s : s + step] = per_plane.view(-1, c).mean(1)
    return out


def _ssim_from_shifted_moments(mu_a, mu_b, e_aa, e_bb, e_ab, c1: float, c2: float):
    """SSIM map from local moments of a = x - 128, b = y - 128 (NumPy or torch, float64)."""
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov = e_ab - mu_a * mu_b
    mu_x, mu_y = mu_a + 128.0, mu_b + 128.0
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_a + var_b + c2))


#: Above this many values per image, SSIM is computed plane by plane in bands of rows (a 12
#: megapixel photo in one pass holds a dozen float64 maps of 36 M values: gigabytes, and slow).
_SSIM_BAND_ABOVE = 1 << 21
_SSIM_BAND_ROWS = 256


def _ssim_cpu(x: np.ndarray, y: np.ndarray, c1: float, c2: float) -> np.ndarray:
    """SSIM of uint8 ``(N, C, H, W)`` views with OpenCV's separable filter.

    Moments are filtered in float32 on values shifted by -128 (variances and covariance do not
    change; the shift keeps the squares small, so float32 loses nothing that matters at 1e-6).
    """
    import cv2

    n, c, h, w = x.shape
    r = _SSIM_RADIUS
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / _SSIM_SIGMA) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    out = np.empty(n, dtype=np.float64)
    if c * h * w > _SSIM_BAND_ABOVE:
        for i in range(n):
            out[i] = np.mean([_ssim_plane_banded(x[i, k], y[i, k], taps, c1, c2) for k in range(c)])
        return out
    step = max(1, (1 << 17) // max(1, c * h * w))
    for s in range(0, n, step):
        # Planes stacked into one tall image: rows mixed across plane borders fall in the 5-pixel
        # margin that SSIM discards, so one filter call serves the whole chunk.
        a = np.ascontiguousarray(x[s : s + step]).reshape(-1, w).astype(np.float32) - 128.0
        b = np.ascontiguousarray(y[s : s + step]).reshape(-1, w).astype(np.float32) - 128.0
        m = a.shape[0] // h

        def filt(img):
            f = cv2.sepFilter2D(img, cv2.CV_32F, taps, taps, borderType=cv2.BORDER_REFLECT)
            return f.reshape(m, h, w)[:, r : h - r, r : w - r].astype(np.float64)

        smap = _ssim_from_shifted_moments(filt(a), filt(b), filt(a * a), filt(b * b), filt(a * b), c1, c2)
        out[s : s + step] = smap.reshape(m, -1).mean(1).reshape(-1, c).mean(1)
    return out


def _ssim_plane_banded(x: np.ndarray, y: np.ndarray, taps: np.ndarray, c1: float, c2: float) -> float:
    """Mean SSIM of one uint8 H x W plane, filtered in bands of rows. Each band carries the
    ``_SSIM_RADIUS`` rows above and below it, so every kept value sees the same pixels as in one
    pass; the reflected border rows a band adds are among those it discards."""
    import cv2

    h, w = x.shape
    r = _SSIM_RADIUS
    total = 0.0
    for top in range(r, h - r, _SSIM_BAND_ROWS):
        bottom = min(top + _SSIM_BAND_ROWS, h - r)
        a = np.asarray(x[top - r : bottom + r], dtype=np.float32) - 128.0
        b = np.asarray(y[top - r : bottom + r], dtype=np.float32) - 128.0

        def filt(img):
            f = cv2.sepFilter2D(img, cv2.CV_32F, taps, taps, borderType=cv2.BORDER_REFLECT)
            return f[r : f.shape[0] - r, r : w - r].astype(np.float64)

        total += float(_ssim_from_shifted_moments(filt(a), filt(b), filt(a * a), filt(b * b), filt(a * b), c1, c2).sum())
    return total / ((h - 2 * r) * (w - 2 * r))


# ----------------------------------------------------------------------------- classification
def _labels(v: Any, name: str) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    arr = np.asarray(v)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of integer labels, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]``.

    Args:
        y_true, y_pred: integer labels in ``[0, num_classes)``, shape ``(N,)`` (list, NumPy or torch).
    Returns:
        int64 ``(num_classes, num_classes)``; rows are true classes.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    for arr, nm in ((t, "y_true"), (p, "y_pred")):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{nm} has labels outside [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each true class, ``cm[i, i] / cm[i].sum()``; NaN for a class with no samples."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    totals = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of correct predictions (NaN for no samples)."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    return float(np.mean(t == p)) if t.size else float("nan")


def laundering_rate(y_true: Any, y_pred: Any, real_class: int = 0) -> float:
    """Share of GAN (non-real) images that the classifier attributes to the real class.

    Args:
        y_true, y_pred: integer labels ``(N,)``.
        real_class: label of real (camera) images.
    Returns:
        float in [0, 1]; NaN when there is no GAN image.
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    fake = t != real_class
    return float(np.mean(p[fake] == real_class)) if fake.any() else float("nan")


def class_figures(y_true: Any, y_pred: Any, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (by class name) and the confusion matrix (rows = true class,
    as a list) of integer predictions over ``class_names``."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    per_class = per_class_accuracy(cm)
    return {"accuracy": accuracy(y_true, y_pred),
            "per_class_accuracy": {name: float(per_class[i]) for i, name in enumerate(class_names)},
            "confusion_matrix": cm.tolist()}
