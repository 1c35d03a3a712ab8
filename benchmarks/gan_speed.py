"""Training speed of every GAN architecture: generator steps per second (and images per second).

Measures the real training step of :mod:`privattrib.gans.train` (discriminator updates, penalty,
DP-SGD, generator update) on synthetic smooth images kept on the device; no disk I/O.

    python benchmarks/gan_speed.py --device cuda --size 64 --steps 50
    python benchmarks/gan_speed.py --device cpu --size 32 --preset tiny --threads 1 --steps 10

Prints one row per architecture and, with ``--json PATH``, writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from privattrib.common import resolve_device
from privattrib.gans import available_archs
from privattrib.gans.train import _Trainer, resolve_config


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, 4, generator=g) * 255
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 255).to(torch.uint8).numpy()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(arch: str, args, images: np.ndarray, device: torch.device) -> dict:
    overrides = {"width": args.width} if args.width else {}
    config = resolve_config(arch, images, size=args.size, steps=args.steps + args.warmup, preset=args.preset,
                            seed=0, batch_size=args.batch_size, sample_every=None, overrides=overrides)
    config["data"].update(sha256_16="benchmark")
    trainer = _Trainer(config, device, None)
    data = torch.from_numpy(images).to(device)
    for step in range(args.warmup):
        trainer.step(data, step)
    _sync(device)
    t0 = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
        ld, lg = trainer.step(data, step)
    float(ld + lg)  # wait for the last step and check it produced numbers
    _sync(device)
    seconds = time.perf_counter() - t0
    sps = args.steps / seconds
    return {
        "arch": arch,
        "size": config["size"],
        "width": config["width"],
        "batch_size": config["batch_size"],
        "n_critic": config["recipe"]["n_critic"],
        "bf16": trainer.amp,
        "channels_last": trainer.memory_format == torch.channels_last,
        "steps_per_s": round(sps, 3),
        "real_images_per_s": round(sps * config["batch_size"] * config["recipe"]["n_critic"], 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="timed generator steps per architecture")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's, else 64")
    p.add_argument("--width", type=int, default=None, help="default: the preset's, else 64")
    p.add_argument("--preset", default=None, help="take width/batch from a preset (e.g. tiny, gpu-64)")
    p.add_argument("--archs", default="all", help="comma-separated names, or 'all'")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--images", type=int, default=2048, help="synthetic training images on the device")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    archs = available_archs() if args.archs == "all" else args.archs.split(",")
    images = smooth_images(args.images, args.size)
    rows = []
    print(f"{'arch':10s} {'size':>4s} {'width':>5s} {'batch':>5s} {'bf16':>5s} {'steps/s':>9s} {'real img/s':>11s}  device")
    for arch in archs:
        row = measure(arch, args, images, device)
        rows.append(row)
        print(f"{arch:10s} {row['size']:4d} {row['width']:5d} {row['batch_size']:5d} {str(row['bf16']):>5s} "
              f"{row['steps_per_s']:9.2f} {row['real_images_per_s']:11.1f}  {row['device']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
