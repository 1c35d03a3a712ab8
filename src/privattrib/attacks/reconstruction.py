"""Reconstruction attack ("unblurring / unpixelating"): a U-Net learns to undo an obfuscation.

The attacker holds (obfuscated, original) pairs of training images, trains a U-Net
(:class:`privattrib.attacks.models.UNet`) to map the obfuscated image back to the original (L1
loss, Adam), and applies it to held-out obfuscated test images. Reported: PSNR and SSIM of the
restored test images against the originals beside the same figures for the obfuscated images, and
re-identification accuracy on both.

Re-identification protocol used here: the identity classifier is trained on the CLEAN training
images (an attacker with a gallery of clean photos) and tested on the obfuscated test images and
on the restored test images; the clean test accuracy is reported as the ceiling. The training and
test images are different images of the same people (a per-identity split), so the U-Net may also
have learnt those people's faces: an upper bound for an attacker whose pairs come from strangers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from privattrib.attacks.models import UNet
from privattrib.attacks.reid import (
    _make,
    clean_identity_classifier,
    identity_accuracy,
    method_info,
    obfuscate_once,
    split_identity_set,
    utility,
)
from privattrib.common import atomic_write_bytes, resolve_device
from privattrib.data.dataset import LabeledImages
from privattrib.threads import fit_threads

__all__ = [
    "DEFAULT_UNET_CFG",
    "resolve_unet_cfg",
    "ReconstructionResult",
    "train_reconstructor",
    "restore",
    "example_grid",
    "save_grid_png",
    "run_reconstruct_cell",
]

#: U-Net and loop options: ``base`` channels, ``depth`` downsamplings, Adam ``lr``, ``epochs``,
#: ``batch_size``, joint horizontal flips of the pairs (``hflip``).
DEFAULT_UNET_CFG: dict[str, Any] = {"base": 32, "depth": 3, "epochs": 30, "batch_size": 32, "lr": 2e-3,
                                    "hflip": True}


@dataclass
class ReconstructionResult:
    """A trained restorer and its per-epoch mean L1 loss (in [-1, 1] units)."""

    model: UNet
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def _as_tensor(x, device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if t.dtype != torch.uint8 or t.ndim != 4:
        raise ValueError(f"expected uint8 N x C x H x W, got {t.dtype} {tuple(t.shape)}")
    return t.to(device)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def resolve_unet_cfg(unet_cfg: dict | None) -> dict:
    """``unet_cfg`` merged over :data:`DEFAULT_UNET_CFG`, checked (ValueError naming what is wrong)."""
    if unet_cfg is not None and not isinstance(unet_cfg, dict):
        raise ValueError(f"U-Net options must be a mapping such as {{base: 16, epochs: 15}}, got {unet_cfg!r}")
    cfg = {**DEFAULT_UNET_CFG, **(unet_cfg or {})}
    unknown = sorted(set(cfg) - set(DEFAULT_UNET_CFG))
    if unknown:
        raise ValueError(f"unknown U-Net option(s) {unknown}; allowed: {sorted(DEFAULT_UNET_CFG)}")
    try:
        sizes_ok = int(cfg["epochs"]) >= 1 and int(cfg["batch_size"]) >= 1 and float(cfg["lr"]) > 0
        sizes_ok = sizes_ok and int(cfg["base"]) >= 1 and int(cfg["depth"]) >= 1
    except (TypeError, ValueError):
        sizes_ok = False
    if not sizes_ok:
        raise ValueError(f"U-Net epochs, batch_size, base and depth must be integers >= 1 and lr > 0, got {cfg}")
    return cfg


def train_reconstructor(
    obfuscated,
    originals,
    *,
    unet_cfg: dict | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> ReconstructionResult:
    """Train a U-Net on (obfuscated, original) pairs.

    Args:
        obfuscated: uint8 N x C x H x W (NumPy or torch), the network's input.
        originals: uint8 N x C x H x W, the targets.
        unet_cfg: options merged over :data:`DEFAULT_UNET_CFG`.
        seed: weight initialisation and batch order.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; the pairs are moved there once (uint8).
        progress: show a rich progress bar.

    Returns:
        :class:`ReconstructionResult` with the model in eval mode.
    """
    cfg = resolve_unet_cfg(unet_cfg)
    dev = resolve_device(device)
    x_all = _as_tensor(obfuscated, dev)
    y_all = _as_tensor(originals, dev)
    if x_all.shape != y_all.shape:
        raise ValueError(f"obfuscated {tuple(x_all.shape)} and originals {tuple(y_all.shape)} differ in shape")
    n = len(x_all)
    if n == 0:
        raise ValueError("no training pairs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNet(in_channels=x_all.shape[1], base=int(cfg["base"]), depth=int(cfg["depth"]))
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    steps_per_epoch = (n + batch - 1) // batch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(cfg["lr"]),
                                                    total_steps=epochs * steps_per_epoch)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    history: list[dict] = []

    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(transient=True, console=Console(stderr=True))
        bar.start()
        task = bar.add_task("U-Net", total=epochs)
    try:
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator).to(dev)
            total = 0.0
            for start in range(0, n, batch):
                fit_threads(dev)  # follow the cores other processes leave free (rate-limited, cheap)
                idx = order[start:start + batch]
                x, y = _to_float(x_all[idx]), _to_float(y_all[idx])
                if cfg["hflip"]:
                    flip = (torch.rand(len(idx), generator=generator) < 0.5).to(dev)
                    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                    y = torch.where(flip[:, None, None, None], y.flip(-1), y)
                if dev.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(dev):
                    loss = F.l1_loss(model(x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
            history.append({"epoch": epoch + 1, "l1": total / n})
            if bar is not None:
                bar.update(task, advance=1, description=f"U-Net L1 {total / n:.4f}")
    finally:
        if bar is not None:
            bar.stop()
    model.eval()
    return ReconstructionResult(model=model, history=history, config=cfg)


@torch.no_grad()
def restore(model: torch.nn.Module, obfuscated, *, device: str | torch.device = "auto",
            batch_size: int = 256) -> torch.Tensor:
    """Apply a trained restorer.

    Args:
        model: a trained :class:`UNet`.
        obfuscated: uint8 N x C x H x W.

    Returns:
        uint8 N x C x H x W on ``device``.
    """
    dev = resolve_device(device)
    x_all = _as_tensor(obfuscated, dev)
    model = model.to(dev).eval()
    out = []
    for start in range(0, len(x_all), batch_size):
        x = _to_float(x_all[start:start + batch_size])
        with _autocast(dev):
            out.append(_to_uint8(model(x).float()))
    return torch.cat(out) if out else x_all.clone()


def example_grid(originals, obfuscated, restored, *, count: int = 8) -> np.ndarray:
    """Stack ``count`` examples as a picture: row 1 originals, row 2 obfuscated, row 3 restored.

    Args:
        originals, obfuscated, restored: uint8 N x C x H x W (NumPy or torch).

    Returns:
        uint8 H' x W' x C image with 2-pixel white gutters.
    """
    rows = []
    for part in (originals, obfuscated, restored):
        t = part.cpu().numpy() if isinstance(part, torch.Tensor) else np.asarray(part)
        rows.append(t[:count])
    n, c, h, w = rows[0].shape
    gap = 2
    canvas = np.full((c, 3 * h + 4 * gap, n * w + (n + 1) * gap), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for i in range(n):
            y, x = gap + r * (h + gap), gap + i * (w + gap)
            canvas[:, y:y + h, x:x + w] = row[i]
    return canvas.transpose(1, 2, 0)


def save_grid_png(path: str | Path, grid_hwc: np.ndarray) -> None:
    """Write an H x W x C uint8 picture as a PNG holding pixels only (no metadata), atomically."""
    import io

    from PIL import Image

    array = grid_hwc[..., 0] if grid_hwc.shape[-1] == 1 else grid_hwc
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def run_reconstruct_cell(
    identity_set: LabeledImages,
    obfuscation,
    seed: int,
    arch_cfg: dict | None,
    work_dir: str | Path | None,
    train_per_identity: int = 8,
    test_per_identity: int = 2,
    unet_cfg: dict | None = None,
    device: str = "auto",
    grid_path: str | Path | None = None,
    grid_count: int = 8,
    progress: bool = False,
    max_identities: int | None = None,
) -> dict:
    """One reconstruction result row (one method, one seed).

    Splits ``identity_set`` per identity, obfuscates each split once (noise keyed by
    (seed, key)), trains the U-Net on the training pairs, restores the test images, and measures
    utility and re-identification (classifier trained on clean training images, cached in
    ``work_dir`` and shared with the ``no-retrain`` re-identification rows).

    Returns:
        dict with attack, method, epsilon, method_describe, seed, psnr/ssim/mse of obfuscated and
        restored test images against the originals, reid_clean, reid_obfuscated, reid_restored,
        chance, reid_protocol, n_identities, n_train, n_test, unet_cfg, unet_final_l1, wall_s
        (and grid_png when ``grid_path`` is given).
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    ob = _make(obfuscation)
    train, test = split_identity_set(identity_set, train_per_identity, test_per_identity, seed=seed,
                                     max_identities=max_identities)
    obf_train = obfuscate_once(ob, train, seed, device=dev)
    obf_test = obfuscate_once(ob, test, seed, device=dev)
    clean_train = torch.from_numpy(np.ascontiguousarray(train.images)).to(dev)
    result = train_reconstructor(obf_train, clean_train, unet_cfg=unet_cfg, seed=seed, device=dev, progress=progress)
    restored = restore(result.model, obf_test, device=dev)
    classifier, cached = clean_identity_classifier(train, arch_cfg=arch_cfg, seed=seed, work_dir=work_dir,
                                                   device=dev, progress=progress)
    clean_test = torch.from_numpy(np.ascontiguousarray(test.images))
    row: dict[str, Any] = {"attack": "reconstruct", **method_info(ob), "seed": seed}
    for name, value in utility(clean_test, obf_test).items():
        row[f"{name}_obfuscated"] = value
    for name, value in utility(clean_test, restored).items():
        row[f"{name}_restored"] = value
    row.update({
        "reid_clean": identity_accuracy(classifier, clean_test, test.labels, device=dev),
        "reid_obfuscated": identity_accuracy(classifier, obf_test, test.labels, device=dev),
        "reid_restored": identity_accuracy(classifier, restored, test.labels, device=dev),
        "chance": 1.0 / train.num_classes,
        "reid_protocol": "identity classifier trained on clean training images, tested on the obfuscated "
                         "and on the restored test images",
        "arch": getattr(classifier, "classifier_config", {}).get("arch"),
        "n_identities": train.num_classes,
        "n_train": len(train),
        "n_test": len(test),
        "train_per_identity": train_per_identity,
        "test_per_identity": test_per_identity,
        "max_identities": max_identities,
        "image_shape": list(identity_set.images.shape[1:]),
        "unet_cfg": result.config,
        "unet_final_l1": result.history[-1]["l1"],
        "clean_model_cached": cached,
        "device": str(dev),
    })
    if grid_path is not None:
        grid = example_grid(clean_test, obf_test, restored, count=grid_count)
        save_grid_png(grid_path, grid)
        row["grid_png"] = str(grid_path)
    row["wall_s"] = time.perf_counter() - start
    return row
