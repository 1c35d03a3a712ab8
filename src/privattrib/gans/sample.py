"""Load a trained GAN and draw its fake source: arrays, PNG folders, sample grids.

Sampling is deterministic by seed: the latent codes are drawn on the CPU from ``seed`` (so the
same codes reach any device) and the generator runs in eval mode, with batch-norm statistics
re-estimated once after training, so an image does not depend on its batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from privattrib.common import resolve_device
from privattrib.gans.nets import CHECKPOINT_FORMAT, build_nets


def fixed_noise(config: dict, n: int, seed: int | None = None) -> torch.Tensor:
    """n x z_dim standard normal codes from ``seed`` (default: the run's seed), drawn on the CPU."""
    gen = torch.Generator().manual_seed(config["seed"] + 7919 if seed is None else seed)
    return torch.randn(n, config["z_dim"], generator=gen)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] (B x C x H x W) -> uint8 numpy, rounding and clamping."""
    return ((x.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def calibrate_batchnorm(G: nn.Module, config: dict, device, n_batches: int = 8, batch_size: int = 256) -> nn.Module:
    """Re-estimate every batch-norm layer's running mean/var as the exact average over
    ``n_batches`` seeded noise batches, then switch to eval mode (no-op without batch norm).

    The running averages kept during training lag behind the weights; eval-mode sampling with
    them can look worse than train-mode sampling, which in turn makes every image depend on its
    batch. Recomputing them once with the final weights gives both quality and determinism.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    G.to(device)
    if bns:
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average = exact mean over the batches
        G.train()
        for i in range(n_batches):
            G(fixed_noise(config, batch_size, seed=1_000_003 + i).to(device))
        for m, mom in zip(bns, saved):
            m.momentum = mom
    return G.eval()


def load_gan(run_dir: str | Path, device: str = "auto") -> tuple[nn.Module, dict]:
    """The generator of a run, ready to sample (eval mode), and its config.

    Reads ``generator.pt`` when it is as new as the checkpoint; otherwise (an interrupted run)
    takes the checkpoint's generator and re-estimates its batch-norm statistics.
    """
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    final, ckpt_path = run_dir / "generator.pt", run_dir / "checkpoint.pt"
    if not final.exists() and not ckpt_path.exists():
        raise FileNotFoundError(f"{run_dir} holds no trained GAN (no generator.pt or checkpoint.pt)")
    state = torch.load(final if final.exists() else ckpt_path, map_location="cpu", weights_only=False)
    calibrated = final.exists()
    if calibrated and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["step"] != state["step"]:
            state, calibrated = ckpt, False
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{run_dir}: not a privattrib GAN run (format {state.get('format')!r})")
    config = state["config"]
    G, _ = build_nets(config)
    G.load_state_dict(state["G"])
    if calibrated:
        G.to(dev).eval()
    else:
        calibrate_batchnorm(G, config, dev)
    G.requires_grad_(False)
    return G, config


@torch.no_grad()
def sample_gan(
    run_dir: str | Path, n: int, *, seed: int = 0, device: str = "auto", batch_size: int = 256
) -> np.ndarray:
    """Draw ``n`` images from a trained run.

    Args:
        run_dir: a folder written by :func:`train_gan`.
        n: number of images (>= 0).
        seed: latent-code seed; the same seed gives the same images (exactly on the CPU).

    Returns:
        uint8 array n x C x size x size.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    G, config = load_gan(run_dir, device)
    dev = next(G.parameters()).device
    z = fixed_noise(config, n, seed=seed)
    out = np.empty((n, config["channels"], config["size"], config["size"]), dtype=np.uint8)
    for i in range(0, n, batch_size):
        out[i : i + batch_size] = to_uint8(G(z[i : i + batch_size].to(dev)).clamp(-1, 1))
    return out


def sample_to_folder(run_dir: str | Path, n: int, folder: str | Path, *, seed: int = 0, device: str = "auto") -> list[Path]:
    """Write ``n`` samples as pixel-only PNG files ``<folder>/<arch>_s<train seed>_<seed>_<i>.png``.

    Returns the paths in sample order. The same (run, n, seed) always writes the same files.
    """
    from privattrib.data.io import save_png

    images = sample_gan(run_dir, n, seed=seed, device=device)
    config = json.loads((Path(run_dir) / "config.json").read_text())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{config['arch']}_s{config['seed']}_{seed}"
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{stem}_{i:06d}.png"
        save_png(path, img.transpose(1, 2, 0))
        paths.append(path)
    return paths


def tile(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 N x C x H x W -> one H' x W' x C grid image (white padding)."""
    n, c, h, w = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    grid = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = img.transpose(1, 2, 0)
    return grid


@torch.no_grad()
def save_grid(G: nn.Module, z: torch.Tensor, path: str | Path) -> None:
    """Sample ``G`` on fixed codes ``z`` (eval mode, running statistics) and write a PNG grid."""
    from privattrib.data.io import save_png

    was_training = G.training
    G.eval()
    try:
        images = to_uint8(G(z).clamp(-1, 1))
    finally:
        G.train(was_training)
    save_png(path, tile(images))
