"""Did the GAN learn? Distances between generated and real images that need no download.

- **KID** (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets. Inception features would need a
  download, so the features here come from a **fixed, seeded random CNN** (4 conv stages of
  32/64/128/256 channels, He-normal weights from seed 0, ReLU, stride 2 from the second stage;
  the global mean and standard deviation of every stage, 960 numbers per image), standardised with
  the real set's statistics. Random conv features measure local colour, edge and texture
  statistics at several scales: they separate a collapsed or untrained GAN from a trained one and
  noise from faces, but unlike Inception features they know nothing about "faceness", and the
  numbers are not comparable with published KID/FID values.
- **Colour statistics**: per-channel pixel mean and standard deviation (0..255) of each set, and the
  Euclidean distance between those vectors.
- **Spectrum distance**: the radially averaged power spectrum of the grey-level images
  (Durall et al. 2020), log10, averaged over the set; the mean absolute difference of the two
  log-spectra over all radii and over the upper half of the frequencies, where upsampling
  artefacts (GAN fingerprints) live.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privattrib.common import resolve_device

FEATURES_NAME = "random-cnn-v1 (seed 0; 32/64/128/256 ch; per-stage mean+std)"


class RandomFeatureCNN(nn.Module):
    """A fixed random CNN feature extractor (no training, no download).

    Shape:
        - Input: B x C x H x W floats in [-1, 1].
        - Output: B x 960 (mean and std of each of 4 stages).
    """

    widths = (32, 64, 128, 256)

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        convs, c_in = [], channels
        for i, c_out in enumerate(self.widths):
            conv = nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0.0, (2.0 / (c_in * 9)) ** 0.5, generator=gen)
                conv.bias.zero_()
            convs.append(conv)
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for conv in self.convs:
            x = F.relu(conv(x))
            flat = x.flatten(2)
            feats += [flat.mean(2), flat.std(2)]
        return torch.cat(feats, dim=1)


@torch.no_grad()
def random_cnn_features(
    images_uint8: np.ndarray, *, device: str = "auto", batch_size: int = 256
) -> np.ndarray:
    """Features of :class:`RandomFeatureCNN` for uint8 N x C x H x W images -> float64 N x 960."""
    _check_images(images_uint8, "images")
    dev = resolve_device(device)
    net = RandomFeatureCNN(images_uint8.shape[1]).to(dev).eval()
    out = []
    for i in range(0, len(images_uint8), batch_size):
        x = torch.from_numpy(np.require(images_uint8[i : i + batch_size], requirements=["C", "W"])).to(dev)
        out.append(net(x.float() / 127.5 - 1).double().cpu().numpy())
    return np.concatenate(out)


def kid_from_features(
    fake_feats: np.ndarray, real_feats: np.ndarray, *, n_subsets: int = 50, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Unbiased polynomial-kernel MMD^2 between two feature sets, mean and std over subsets.

    Features are standardised with the real set's per-dimension mean and std first (std floored
    at 1% of its mean over dimensions).

    Args:
        fake_feats: N_f x d.
        real_feats: N_r x d.
        subset_size: capped at min(N_f, N_r); at least 2 samples are needed in each set.
    """
    if len(fake_feats) < 2 or len(real_feats) < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(fake_feats)} and {len(real_feats)}")
    mu, sd = real_feats.mean(0), real_feats.std(0)
    # Random ReLU features can be (almost) constant on the real set -- a channel that rarely fires.
    # Without a floor, one such dimension would scale any difference on it by ~1e8 and swamp the
    # kernel; a floor at 1% of the typical spread keeps every dimension's weight bounded.
    sd = np.maximum(sd, 0.01 * sd.mean() + 1e-12)
    x, y = (fake_feats - mu) / sd, (real_feats - mu) / sd
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    if m == len(x) == len(y):
        n_subsets = 1  # every "subset" would be the whole of both sets
    values = []
    for _ in range(n_subsets):
        xs = x[rng.choice(len(x), m, replace=False)]
        ys = y[rng.choice(len(y), m, replace=False)]
        kxx = (xs @ xs.T / d + 1) ** 3
        kyy = (ys @ ys.T / d + 1) ** 3
        kxy = (xs @ ys.T / d + 1) ** 3
        mmd = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def colour_stats(images_uint8: np.ndarray) -> dict:
    """Per-channel mean and standard deviation of pixel values (0..255)."""
    _check_images(images_uint8, "images")
    x = images_uint8.astype(np.float64)
    return {"mean": x.mean(axis=(0, 2, 3)).tolist(), "std": x.std(axis=(0, 2, 3)).tolist()}


def radial_power_spectrum(images_uint8: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Mean radially averaged power spectrum of the grey-level images, log10.

    Args:
        images_uint8: N x C x H x W (C = 1 or 3).

    Returns:
        float64 array of length ``min(H, W) // 2 + 1``: log10 mean power at integer radius r.
    """
    _check_images(images_uint8, "images")
    n, c, h, w = images_uint8.shape
    yy, xx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    radius = np.round(np.sqrt(yy**2 + xx**2)).astype(np.int64)
    r_max = min(h, w) // 2
    keep = radius <= r_max
    counts = np.bincount(radius[keep], minlength=r_max + 1)
    total = np.zeros(r_max + 1)
    for i in range(0, n, batch_size):
        x = images_uint8[i : i + batch_size].astype(np.float64).mean(axis=1) / 255.0
        power = np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(-2, -1))) ** 2
        total += np.bincount(radius[keep], weights=power.sum(0)[keep], minlength=r_max + 1)
    return np.log10(total / (counts * n) + 1e-12)


def gan_quality(
    fake_uint8_nchw: np.ndarray,
    real_uint8_nchw: np.ndarray,
    *,
    n_subsets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Distances between generated and real images (lower is closer; 0 for identical sets).

    Args:
        fake_uint8_nchw: uint8 N_f x C x H x W generated images.
        real_uint8_nchw: uint8 N_r x C x H' x W' real images (resized to H x W with area
            interpolation if the size differs; C must match).

    Returns:
        ``{"kid", "kid_std", "kid_features", "colour_fake", "colour_real", "colour_distance",
        "spectrum_distance", "spectrum_distance_high", "n_fake", "n_real", "size"}``.
    """
    _check_images(fake_uint8_nchw, "fake images")
    _check_images(real_uint8_nchw, "real images")
    if fake_uint8_nchw.shape[1] != real_uint8_nchw.shape[1]:
        raise ValueError(
            f"fake images have {fake_uint8_nchw.shape[1]} channels, real ones {real_uint8_nchw.shape[1]}"
        )
    size = fake_uint8_nchw.shape[2:]
    real = resize_uint8(real_uint8_nchw, tuple(size))
    kid, kid_std = kid_from_features(
        random_cnn_features(fake_uint8_nchw, device=device),
        random_cnn_features(real, device=device),
        n_subsets=n_subsets,
        subset_size=subset_size,
        seed=seed,
    )
    cf, cr = colour_stats(fake_uint8_nchw), colour_stats(real)
    colour_distance = float(np.linalg.norm(np.r_[cf["mean"], cf["std"]] - np.r_[cr["mean"], cr["std"]]))
    sf, sr = radial_power_spectrum(fake_uint8_nchw), radial_power_spectrum(real)
    diff = np.abs(sf - sr)[1:]  # radius 0 is the mean brightness, already in the colour stats
    return {
        "kid": kid,
        "kid_std": kid_std,
        "kid_features": FEATURES_NAME,
        "colour_fake": cf,
        "colour_real": cr,
        "colour_distance": colour_distance,
        "spectrum_distance": float(diff.mean()),
        "spectrum_distance_high": float(diff[len(diff) // 2 :].mean()),
        "n_fake": int(len(fake_uint8_nchw)),
        "n_real": int(len(real)),
        "size": [int(s) for s in size],
    }


def resize_uint8(images: np.ndarray, size: tuple[int, int], batch_size: int = 512) -> np.ndarray:
    """Area-resize uint8 N x C x H x W to N x C x size (a no-op when the size already matches)."""
    if tuple(images.shape[2:]) == tuple(size):
        return images
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.require(images[i : i + batch_size], requirements=["C", "W"])).float()
        y = F.interpolate(x, size=size, mode="area") if x.shape[2] >= size[0] else F.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=False
        )
        out.append(y.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)


def _check_images(images: np.ndarray, what: str) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            f"{what} must be a uint8 numpy array N x C x H x W, got "
            f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}"
        )
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{what} must have 1 or 3 channels (N x C x H x W), got shape {images.shape}")
    if len(images) == 0:
        raise ValueError(f"{what}: empty set")
