"""Speed of ``privattrib attribute`` against evaluation in the grid, for the yu2019 detector.

For each model size the table has one row per path, in images/s (best of ``--repeat`` rounds
after a warm-up) and as a share of the grid's evaluation speed:

- ``grid evaluation``: :func:`privattrib.training.predict` on a uint8 N x C x S x S array already in
  memory, as a grid cell evaluates its test set (the reference, 1.00);
- ``predict (arrays)``: :meth:`Attributor.predict` on H x W x C arrays at the model's size (the web
  page's path: preparing each array, the forward pass, calibrated probabilities);
- ``predict_files (PNG, model size)``: :meth:`Attributor.predict_files` on PNG files (threaded
  decoding, then the model), the path of ``privattrib attribute``;
- ``predict_files (JPEG 178x218)``: the same on aligned-CelebA-sized JPEG files, so every image is
  also cropped and resized (with reduced-scale JPEG decoding, as the training data was).

The model is the yu2019 network with random weights (speed does not depend on the weights), at
the paper's width by default or at the width the CPU example files use (``--fmap-base 256
--fmap-max 128``). Example::

    python benchmarks/attribute_speed.py --sizes 64,128 --n 256 --fmap-base 256 --fmap-max 128
    python benchmarks/attribute_speed.py --device cuda --n 4096        # on a GPU, the paper's width
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from privattrib.attribution.inference import load_attributor
from privattrib.attribution.models import make_classifier, save_classifier
from privattrib.common import resolve_device
from privattrib.training import predict

CLASSES = ["real", "dcgan", "lsgan", "sngan", "progan"]


def _pictures(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """n smooth, noisy H x W x 3 pictures (JPEG and PNG sizes like photos', not like noise's)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        a = rng.uniform(0, 6, 3)
        base = 127 + 100 * np.sin(a[None, None, :] * (xx[..., None] + 2 * yy[..., None]) + rng.uniform(0, 6, 3))
        out[i] = np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    return out


def _best(fn, repeat: int) -> float:
    fn()  # warm-up: allocator, thread pools, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(size: int, args: argparse.Namespace, folder: Path) -> list[dict]:
    device = resolve_device(args.device)
    model = make_classifier("yu2019", len(CLASSES), size, 3, seed=0, fmap_base=args.fmap_base,
                            fmap_max=args.fmap_max)
    ckpt = folder / f"yu2019-{size}.pt"
    save_classifier(model, ckpt, extra={"class_names": CLASSES})
    attributor = load_attributor(ckpt, device=str(device))

    arrays = _pictures(args.n, size, size)
    nchw = np.ascontiguousarray(arrays.transpose(0, 3, 1, 2))
    png_dir, jpg_dir = folder / f"png{size}", folder / "jpg"
    png_dir.mkdir(exist_ok=True)
    pngs = []
    for i, a in enumerate(arrays):
        pngs.append(png_dir / f"{i:05d}.png")
        Image.fromarray(a).save(pngs[-1])
    jpgs = sorted(jpg_dir.glob("*.jpg"))
    if not jpgs:
        jpg_dir.mkdir(exist_ok=True)
        for i, a in enumerate(_pictures(args.n, 218, 178, seed=1)):
            jpgs.append(jpg_dir / f"{i:05d}.jpg")
            Image.fromarray(a).save(jpgs[-1], quality=90)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    paths = {
        "grid evaluation (training.predict)": lambda: (predict(attributor.model, nchw, batch_size=512,
                                                               device=device), sync()),
        "Attributor.predict (arrays)": lambda: attributor.predict(list(arrays), batch_size=args.batch),
        "Attributor.predict_files (PNG, model size)": lambda: attributor.predict_files(pngs, batch_size=args.batch,
                                                                                       workers=args.workers),
        "Attributor.predict_files (JPEG 178x218, resized)": lambda: attributor.predict_files(
            jpgs, batch_size=args.batch, workers=args.workers),
    }
    rows = []
    for name, fn in paths.items():
        seconds = _best(fn, args.repeat)
        rows.append({"size": size, "path": name, "images": args.n, "seconds": seconds,
                     "images_per_second": args.n / seconds})
    reference = rows[0]["images_per_second"]
    for row in rows:
        row["ratio_to_grid"] = row["images_per_second"] / reference
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128", help="model input sizes, comma-separated")
    parser.add_argument("--n", type=int, default=512, help="images per round")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (best is kept)")
    parser.add_argument("--batch", type=int, default=256, help="Attributor batch size (attribute's default)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: attribute's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--fmap-base", type=int, default=1024, help="yu2019 width (the paper: 1024)")
    parser.add_argument("--fmap-max", type=int, default=512, help="yu2019 widest layer (the paper: 512)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    print(f"attribute speed, yu2019 (fmap_base {args.fmap_base}, fmap_max {args.fmap_max}, 5 classes), {args.n} images, best of {args.repeat}, on {device} "
          f"({where}, {torch.get_num_threads()} torch threads); torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="attribute-speed-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            for row in measure(size, args, Path(tmp)):
                rows.append(row)
                print(f"  {size:>4} px  {row['path']:<50} {row['images_per_second']:>9,.0f} img/s  "
                      f"x{row['ratio_to_grid']:.2f} of grid evaluation", flush=True)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"attribute_speed_{device.type}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
