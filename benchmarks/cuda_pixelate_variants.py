"""Time candidate CUDA kernels for block sums / upsampling (used to choose the library's GPU path).

    python benchmarks/cuda_pixelate_variants.py [--n 32768] [--compile]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def bench(fn, n, reps=20):
    fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(3):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1000 / reps)
    return n / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--b", type=int, default=16)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    n, b, s = args.n, args.b, 128
    x = torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, device="cuda")
    g = s // b
    sums_a = lambda: x.view(n, 3, g, b, g, b).sum(dim=(3, 5), dtype=torch.int32)  # noqa: E731
    sums_b = lambda: x.view(n, 3, g, b, s).sum(3, dtype=torch.int32).view(n, 3, g, g, b).sum(-1)  # noqa: E731
    sums_c = lambda: F.avg_pool2d(x.float(), b)  # noqa: E731
    sums_d = lambda: F.avg_pool2d(x.half(), b)  # noqa: E731
    means = torch.randint(0, 256, (n, 3, g, g), dtype=torch.uint8, device="cuda")
    up_a = lambda: means[:, :, :, None, :, None].expand(n, 3, g, b, g, b).reshape(n, 3, s, s)  # noqa: E731
    up_b = lambda: F.interpolate(means, scale_factor=b, mode="nearest")  # noqa: E731
    up_c = lambda: means.repeat_interleave(b, 2).repeat_interleave(b, 3)  # noqa: E731
    out = torch.empty_like(x)
    up_d = lambda: out.view(n, 3, g, b, g, b).copy_(means[:, :, :, None, :, None].expand(n, 3, g, b, g, b))  # noqa: E731
    copy = lambda: x.clone()  # noqa: E731
    rows = {
        "sums view.sum((3,5))": sums_a, "sums two-stage": sums_b, "avg_pool float": sums_c, "avg_pool half": sums_d,
        "up expand+reshape": up_a, "up interpolate": up_b, "up repeat_interleave": up_c, "up copy_ into view": up_d,
        "clone": copy,
    }
    import sys

    sys.path.insert(0, "src")
    from privattrib.obfuscation import make

    pix, dpp = make(f"pixelate:b={b}"), make(f"dp-pix:b={b},m=16,epsilon=0.5")
    rows["library pixelate"] = lambda: pix(x)
    rows["library dp-pix"] = lambda: dpp(x, seed=0)
    if args.compile:
        from privattrib.obfuscation.pixelate import pixelate_torch

        cp = torch.compile(lambda t: pixelate_torch(t, b), dynamic=False)
        t0 = time.time()
        cp(x)
        print(f"compile {time.time() - t0:.1f}s")
        rows["compiled pixelate"] = lambda: cp(x)
    for name, fn in rows.items():
        print(f"{name:28s} {bench(fn, n) / 1e6:8.2f} M images/s")


if __name__ == "__main__":
    main()
