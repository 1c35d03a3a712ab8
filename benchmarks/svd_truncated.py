"""svd-mp on a large photo: the top-k SVD (ARPACK) that photos past
``TRUNCATED_SVD_MIN_PIXELS`` get, against the full float64 SVD that small images keep.

Same photo, same seed, one process: seconds for each, their ratio, and how many output bytes differ.

    python benchmarks/svd_truncated.py                  # 4000 x 3000, k = 4
    python benchmarks/svd_truncated.py --size 2000x1500 --k 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from privattrib.obfuscation import make
from privattrib.obfuscation import svd as svd_module


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour structure plus sensor-like noise, uint8 H x W x 3."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    planes = [np.sin(xx / (40 + 9 * c)) + np.cos(yy / (70 + c)) for c in range(3)]
    return np.clip(np.stack(planes, -1) * 60 + 128 + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)


def timed(method, x: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = method(x, seed=seed)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the photo")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--epsilon", type=float, default=1.0)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    x = photo(width, height)
    method = make(f"svd-mp:k={args.k},epsilon={args.epsilon}")
    if not svd_module._uses_truncated_svd(args.k, height, width):
        raise SystemExit(f"a {width}x{height} photo with k={args.k} keeps the full SVD: nothing to compare")
    method(photo(320, 256, seed=1), seed=0)  # imports and first calls, outside the timing
    truncated_s, truncated = timed(method, x, seed=0)
    threshold = svd_module.TRUNCATED_SVD_MIN_PIXELS
    svd_module.TRUNCATED_SVD_MIN_PIXELS = 10**18  # every image takes the full SVD
    try:
        full_s, full = timed(method, x, seed=0)
    finally:
        svd_module.TRUNCATED_SVD_MIN_PIXELS = threshold
    diff = np.abs(truncated.astype(np.int16) - full.astype(np.int16))
    print("| photo | k | top-k SVD (s) | full SVD (s) | full / top-k | bytes that differ | largest difference |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {width}x{height} | {args.k} | {truncated_s:.2f} | {full_s:.2f} | {full_s / truncated_s:.1f} | "
          f"{int((diff > 0).sum()):,} of {diff.size:,} | {int(diff.max())} |")


if __name__ == "__main__":
    main()
