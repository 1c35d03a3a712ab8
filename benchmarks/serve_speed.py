"""How long the web page (``privattrib serve``) takes to answer one upload, by photo size and method.

Times :meth:`privattrib.web.service.ProtectService.protect`, the whole work behind ``POST
/api/protect`` (decode, protect with the publishing defaults, PSNR/SSIM, the preview and the PNG),
on smooth synthetic JPEG photos; HTTP adds a copy of the bytes on localhost. One row per photo size
and method: seconds per upload (best of ``--repeat``) and the share spent protecting and measuring.
No attribution model or gallery is loaded (their cost is a forward pass on one small image).

    python benchmarks/serve_speed.py                          # 0.04, 1 and 12 megapixels
    python benchmarks/serve_speed.py --sizes 4000x3000 --methods dp-pix --repeat 1
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import time

import numpy as np
import torch
from PIL import Image

from privattrib.web.service import ProtectRequest, ProtectService

DEFAULT_METHODS = "pixelate,blur,dp-pix,dp-blur"


def photo(width: int, height: int, seed: int = 0) -> bytes:
    """A smooth colour JPEG (quality 90): JPEG sizes and decode times of an ordinary photo."""
    import cv2

    rng = np.random.default_rng(seed)
    small = cv2.GaussianBlur(rng.integers(0, 256, (max(2, height // 10), max(2, width // 10), 3), np.uint8), (0, 0), 2)
    pixels = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="178x218,1200x900,4000x3000", help="photo sizes WxH, comma-separated")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="method names (publishing defaults)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    service = ProtectService(max_pixels=100_000_000, max_upload_bytes=1 << 30)
    service.warm_up()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| photo | JPEG | method | s / upload | protect | PSNR+SSIM |")
    print("|---|---:|---|---:|---:|---:|")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        data = photo(width, height)
        for method in args.methods.split(","):
            best = None
            for _ in range(args.repeat):
                start = time.perf_counter()
                result = service.protect(data, "photo.jpg", ProtectRequest(method=method))
                took = time.perf_counter() - start
                if best is None or took < best[0]:
                    best = (took, result.report["timing_s"])
            took, timing = best
            print(f"| {width}x{height} ({width * height / 1e6:.2f} MP) | {len(data) / 2**20:.2f} MB | "
                  f"{result.report['method']['spec']} | {took:.2f} | {timing['protect']:.2f} | {timing['metrics']:.2f} |")
    print(f"# peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
