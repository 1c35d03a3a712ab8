"""How fast the data layer turns CelebA JPEGs into a cached uint8 split, and reads it back.

Prints, in one run:
  * a single-process Pillow loop (open, RGB, Yu et al. crop, antialiased resize): images/s;
  * a cache build with privattrib (all cores, reduced-scale JPEG decoding where it applies):
    images/s and its ratio to the loop;
  * the load time of the cached split (open + manifest), the time of a first full read of its
    bytes, and (``--device``) the time to put it on the device as a torch uint8 tensor.

    python benchmarks/data_speed.py --root ../shared/data/celeba --size 128
    python benchmarks/data_speed.py --size 64 --workers 16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def pillow_loop(paths: list[Path], size: int, crop: str) -> float:
    """Images/s of the plain single-process loop a script would write."""
    from privattrib.data.preprocess import crop_box

    t0 = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            box = crop_box(im.width, im.height, crop, (size, size))
            arr = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC, box=box))
            assert arr.shape == (size, size, 3)
    return len(paths) / (time.perf_counter() - t0)


def make_celeba_like(root: Path, n: int, seed: int = 0) -> None:
    """A CelebA-layout folder of ``n`` generated 178 x 218 JPEGs (smooth colour fields plus
    sensor-like noise, so JPEG entropy and decode cost are photo-like) and matching label files.
    For machines without the real data; figures from it are labelled "synthetic"."""
    import cv2

    rng = np.random.default_rng(seed)
    img_dir = root / "img_align_celeba"
    img_dir.mkdir(parents=True, exist_ok=True)
    ids, parts = [], []
    for i in range(1, n + 1):
        coarse = rng.uniform(0, 255, size=(11, 9, 3)).astype(np.float32)
        img = cv2.resize(coarse, (178, 218), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, 6, size=img.shape).astype(np.float32)
        name = f"{i:06d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(img_dir / name, quality=95)
        ids.append(f"{name} {1 + (i - 1) // 5}\n")
        parts.append(f"{name} 0\n")
    (root / "identity_CelebA.txt").write_text("".join(ids))
    (root / "list_eval_partition.txt").write_text("".join(parts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba"),
                    help="CelebA root in the official layout")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--crop", default="yu2019", choices=["yu2019", "center"])
    ap.add_argument("--limit", type=int, default=None, help="images to cache (default: all present)")
    ap.add_argument("--baseline-limit", type=int, default=2000, help="images for the single-process loop")
    ap.add_argument("--workers", type=int, default=None, help="cache-build processes (default: all cores)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto: where to put the loaded split")
    ap.add_argument("--cache-dir", default=None, help="default: a temporary folder, removed afterwards")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="benchmark on N generated CelebA-like JPEGs instead of --root (no data needed)")
    args = ap.parse_args(argv)

    from privattrib.common import resolve_device
    from privattrib.data import load_celeba
    from privattrib.data.cache import default_workers

    tmp = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="privattrib-bench-"))
    fake = None
    if args.synthetic:
        fake = Path(tempfile.mkdtemp(prefix="privattrib-fake-celeba-"))
        make_celeba_like(fake, args.synthetic)
        root = fake
    else:
        root = Path(args.root)
    if not (root / "img_align_celeba").is_dir():
        print(f"CelebA not found at {root} (use --synthetic N to benchmark on generated files)", file=sys.stderr)
        return 2
    workers = args.workers or default_workers()
    try:
        files = sorted((root / "img_align_celeba").glob("*.jpg"))
        loop_rate = pillow_loop(files[: args.baseline_limit], args.size, args.crop)

        t0 = time.perf_counter()
        data = load_celeba(root, size=args.size, crop=args.crop, limit=args.limit, cache_dir=tmp,
                           workers=workers, progress=not args.json)
        build_s = time.perf_counter() - t0
        n = len(data)
        del data

        t0 = time.perf_counter()
        data = load_celeba(root, size=args.size, crop=args.crop, limit=args.limit, cache_dir=tmp, progress=False)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        checksum = int(np.asarray(data.images).sum(dtype=np.uint64))  # touches every byte
        read_s = time.perf_counter() - t0

        import torch

        device = resolve_device(args.device)
        t0 = time.perf_counter()
        on_device = torch.from_numpy(np.array(data.images)).to(device)  # copy out of the read-only map
        if device.type == "cuda":
            torch.cuda.synchronize()
        device_s = time.perf_counter() - t0
        assert on_device.shape[0] == n
        result = {
            "data": "synthetic CelebA-like JPEGs" if fake else str(root),
            "images": n,
            "size": args.size,
            "crop": args.crop,
            "workers": workers,
            "cpu_count": os.cpu_count(),
            "pillow_loop_images_per_s": round(loop_rate, 1),
            "cache_build_images_per_s": round(n / build_s, 1),
            "build_speedup_vs_loop": round((n / build_s) / loop_rate, 2),
            "cached_load_s": round(load_s, 4),
            "first_full_read_s": round(read_s, 4),
            "to_device_s": round(device_s, 4),
            "device": str(device),
            "bytes": int(data.images.nbytes),
            "checksum": checksum,
        }
    finally:
        if not args.cache_dir:
            shutil.rmtree(tmp, ignore_errors=True)
        if fake is not None:
            shutil.rmtree(fake, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"{'synthetic ' if fake else ''}CelebA {n:,} images -> uint8 {args.size}x{args.size} ({args.crop}), {workers} workers")
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_row("single-process Pillow loop", f"{loop_rate:,.0f} img/s")
        t.add_row("privattrib cache build", f"{n / build_s:,.0f} img/s")
        t.add_row("build / loop", f"{result['build_speedup_vs_loop']:.2f}x")
        t.add_row("load cached split (open + manifest)", f"{load_s * 1000:.0f} ms")
        t.add_row(f"first full read ({data.images.nbytes / 1e6:,.0f} MB)", f"{read_s * 1000:.0f} ms")
        t.add_row(f"to {device} as a torch tensor", f"{device_s * 1000:.0f} ms")
        Console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
