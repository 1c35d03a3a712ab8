"""Obfuscation throughput on uint8 RGB batches, against a naive per-image OpenCV loop and a memory copy.

    python benchmarks/obfuscation_speed.py                  # CPU: torch N x C x H x W and NumPy N x H x W x C paths
    python benchmarks/obfuscation_speed.py --device cuda    # data on the GPU; naive = batched torch avg_pool
    python benchmarks/obfuscation_speed.py --kernel-variants --n 16384   # CUDA: candidate kernels for the GPU path

Every number in one table comes from the same run: images/s (best of ``--repeat`` timed rounds of at
least ``--min-time`` seconds each), the ratio to the naive baseline of that method, and the ratio to
a plain copy of the same batch (the memory-bandwidth ceiling for a method that reads and writes
every pixel once). Rounds alternate between the method, its baseline and the copy, so load from
other processes on a shared machine affects all three alike.

Naive CPU baselines (per image, NumPy H x W x C, what one writes first):
  pixelate: cv2.resize INTER_AREA down + INTER_NEAREST up;
  dp-pix: the same with NumPy Laplace noise on the downsampled means before the upsample;
  blur: cv2.GaussianBlur.
Naive CUDA baseline: float avg_pool2d + repeat_interleave (+ torch Laplace for dp-pix), conv2d blur.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def _time_interleaved(fns: dict[str, Callable[[], object]], sync: Callable[[], None], repeat: int, min_time: float) -> dict[str, float]:
    """Best seconds per call of each function; rounds alternate between the functions so that load
    from other processes (a shared machine) hits all of them alike."""
    for fn in fns.values():
        fn()
        sync()
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            calls, start = 0, time.perf_counter()
            while True:
                fn()
                calls += 1
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            best[name] = min(best[name], elapsed / calls)
    return best


# ----------------------------------------------------------------------------- naive baselines
def naive_cpu(spec_name: str, b: int, k: int, m: int, eps: float):
    import cv2

    rng = np.random.default_rng(0)
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8

    def pixelate(x):
        out = np.empty_like(x)
        h, w = x.shape[1:3]
        for i in range(len(x)):
            small = cv2.resize(x[i], (w // b, h // b), interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        return out

    def dp_pix(x):
        out = np.empty_like(x)
        h, w, c = x.shape[1:4]
        scale = c * 255.0 * m / (b * b * eps)
        for i in range(len(x)):
            small = cv2.resize(x[i], (w // b, h // b), interpolation=cv2.INTER_AREA)
            noisy = np.clip(np.rint(small + rng.laplace(0.0, scale, small.shape)), 0, 255).astype(np.uint8)
            out[i] = cv2.resize(noisy, (w, h), interpolation=cv2.INTER_NEAREST)
        return out

    def blur(x):
        out = np.empty_like(x)
        for i in range(len(x)):
            out[i] = cv2.GaussianBlur(x[i], (k, k), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
        return out

    return {"pixelate": pixelate, "dp-pix": dp_pix, "blur": blur}.get(spec_name)


def naive_torch(spec_name: str, b: int, k: int, m: int, eps: float):
    import torch
    import torch.nn.functional as F

    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8

    def pixelate(t, noise=False):
        means = F.avg_pool2d(t.float(), b)
        if noise:
            scale = t.shape[1] * 255.0 * m / (b * b * eps)
            means = means + torch.distributions.Laplace(0.0, scale).sample(means.shape).to(t.device)
        means = means.round().clamp(0, 255)
        return means.repeat_interleave(b, 2).repeat_interleave(b, 3).to(torch.uint8)

    def blur(t):
        x = torch.arange(k, device=t.device, dtype=torch.float32) - (k - 1) / 2
        taps = torch.exp(-(x**2) / (2 * sigma**2))
        taps = taps / taps.sum()
        c = t.shape[1]
        f = F.pad(t.float(), (k // 2,) * 4, mode="reflect")
        f = F.conv2d(f, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
        f = F.conv2d(f, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
        return f.round().clamp(0, 255).to(torch.uint8)

    return {"pixelate": pixelate, "dp-pix": lambda t: pixelate(t, True), "blur": blur}.get(spec_name)


def _cuda_bench(fn, n, reps=20):
    import torch

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


def sums_int8_matmul(x, b: int):
    """Cell sums of uint8 N x C x S x S (b divides S) on int8 tensor cores: x - 128 as int8 (a XOR
    and a reinterpreting view), one ``torch._int_mm`` against a 0/1 column-membership matrix for the
    row sums of each cell, then b rows summed on the 16x smaller int32 result. Exact (|sum| < 2**31)."""
    import torch

    n, c, s, _ = x.shape
    g = s // b
    members = (torch.arange(s, device=x.device)[:, None] // b == torch.arange(g, device=x.device)[None, :])
    shifted = (x ^ 128).view(torch.int8).view(n * c * s, s)
    partial = torch._int_mm(shifted, members.to(torch.int8))  # (N*C*S, g) int32
    return partial.view(n, c, g, b, g).sum(3) + 128 * b * b


def kernel_variants(n: int, b: int, compile_: bool) -> None:
    """Time candidate CUDA kernels for cell sums and upsampling (how the GPU path was chosen)."""
    import torch
    import torch.nn.functional as F

    from privattrib.obfuscation import make

    try:
        from privattrib.obfuscation import _triton_cells as triton_cells
    except ImportError as e:  # its rows then report the failure; the other candidates still run
        triton_cells = None
        print(f"triton does not import: {e}")
    s = 128
    x = torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, device="cuda")
    g = s // b
    sums_a = lambda: x.view(n, 3, g, b, g, b).sum(dim=(3, 5), dtype=torch.int32)  # noqa: E731
    sums_b = lambda: x.view(n, 3, g, b, s).sum(3, dtype=torch.int32).view(n, 3, g, g, b).sum(-1)  # noqa: E731
    sums_c = lambda: F.avg_pool2d(x.float(), b)  # noqa: E731
    sums_d = lambda: F.avg_pool2d(x.half(), b)  # noqa: E731
    sums_e = lambda: sums_int8_matmul(x, b)  # noqa: E731
    reference = sums_a()
    for name, fn in (("int8 matmul", sums_e), ("triton", lambda: triton_cells.cell_sums(x, b))):
        try:
            same = torch.equal(fn(), reference)
        except Exception as e:  # noqa: BLE001
            same = f"{type(e).__name__}: {e}"
        print(f"{name} cell sums equal to the reference: {same}", flush=True)
    means = torch.randint(0, 256, (n, 3, g, g), dtype=torch.uint8, device="cuda")
    up_a = lambda: means[:, :, :, None, :, None].expand(n, 3, g, b, g, b).reshape(n, 3, s, s)  # noqa: E731
    up_b = lambda: F.interpolate(means, scale_factor=b, mode="nearest")  # noqa: E731
    up_c = lambda: means.repeat_interleave(b, 2).repeat_interleave(b, 3)  # noqa: E731
    out = torch.empty_like(x)
    up_d = lambda: out.view(n, 3, g, b, g, b).copy_(means[:, :, :, None, :, None].expand(n, 3, g, b, g, b))  # noqa: E731
    copy = lambda: x.clone()  # noqa: E731
    rows = {
        "sums view.sum((3,5))": sums_a, "sums two-stage": sums_b, "avg_pool float": sums_c, "avg_pool half": sums_d,
        "sums int8 matmul": sums_e, "sums triton": lambda: triton_cells.cell_sums(x, b),
        "up expand+reshape": up_a, "up interpolate": up_b, "up repeat_interleave": up_c, "up copy_ into view": up_d,
        "up triton": lambda: triton_cells.upsample(means, b, s, s),
        "clone": copy, "pixelate triton (fused)": lambda: triton_cells.pixelate(x, b),
    }
    pix, dpp = make(f"pixelate:b={b}"), make(f"dp-pix:b={b},m=16,epsilon=0.5")
    rows["library pixelate"] = lambda: pix(x)
    rows["library dp-pix"] = lambda: dpp(x, seed=0)
    if compile_:
        from privattrib.obfuscation.pixelate import pixelate_torch

        cp = torch.compile(lambda t: pixelate_torch(t, b, "torch"), dynamic=False)
        rows["compiled pixelate (torch ops)"] = lambda: cp(x)  # compiled in its warm-up call
    for name, fn in rows.items():
        try:  # one failing candidate (an unsupported kernel on this card) must not hide the others
            print(f"{name:30s} {_cuda_bench(fn, n) / 1e6:8.2f} M images/s", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"{name:30s} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)


# ----------------------------------------------------------------------------- main
# the library's CUDA path (Triton kernels) against its other backends: row name -> backend
OTHER_BACKENDS = {"cuda NCHW, torch ops": "torch", "cuda NCHW, torch.compile": "compile"}
# svd-mp computes on the host in float64 for tensors on any device; this row times the SVD on the
# tensor's own device in float32 (svd_mp_torch), which it replaced
SVD_ON_DEVICE = "float32 SVD on the device"

DEFAULT_SPECS = [
    "pixelate:b=16",
    "pixelate:b=8",
    "dp-pix:b=16,m=16,epsilon=0.5",
    "dp-pix:b=8,m=16,epsilon=0.5",
    "blur:k=9",
    "blur:k=99",
    "dp-blur:b=4,m=16,epsilon=0.5,k=99",
    "svd-mp:k=4,epsilon=1",
    "dp-pix:b=16,m=16,epsilon=0.5,noise=secure",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--n", type=int, default=None, help="images per batch (default 2048 on CPU, 32768 on CUDA)")
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and OpenCV")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds; the best is reported")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timed round")
    parser.add_argument("--specs", nargs="*", default=DEFAULT_SPECS, help="method specs to time")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--kernel-variants", action="store_true", help="CUDA only: time candidate sum/upsample kernels instead")
    parser.add_argument("--compile", action="store_true", help="with --kernel-variants: also time torch.compile'd pixelate")
    args = parser.parse_args(argv)
    if args.kernel_variants:
        kernel_variants(args.n or 32768, 16, args.compile)
        return 0

    import cv2
    import torch
    from rich.console import Console
    from rich.table import Table

    from privattrib.common import resolve_device
    from privattrib.obfuscation import make, parse_spec
    from privattrib.obfuscation.noise import image_streams
    from privattrib.obfuscation.pixelate import dp_pix_torch, pixelate_torch
    from privattrib.obfuscation.svd import svd_mp_torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    n = args.n or (32768 if on_cuda else 2048)
    s = args.size
    rng = np.random.default_rng(0)
    x_nhwc = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    x_nchw = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))).to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if on_cuda else (lambda: None)

    rows = []
    if on_cuda:
        paths = [("cuda NCHW", x_nchw)]
        copy = lambda data: data.clone()  # noqa: E731
    else:
        paths = [("torch NCHW", x_nchw), ("numpy NHWC", x_nhwc)]
        copy = lambda data: (data.numpy() if hasattr(data, "numpy") else data).copy()  # noqa: E731
    console = Console(stderr=True)
    for spec in args.specs:
        name, _ = parse_spec(spec)
        ob = make(spec)
        p = ob.params
        b, k, m, eps = p.get("b", 16), p.get("k", 9), p.get("m", 16), p.get("epsilon", 0.5)
        slow = name in ("svd-mp", "dp-blur") or p.get("noise") == "secure" or k > 31
        count = max(64, n // 16) if slow else n
        if name == "svd-mp":
            count = max(32, n // 64)
        if p.get("noise") == "secure":
            try:
                import opendp  # noqa: F401
            except ImportError:
                console.log(f"skipping {spec}: opendp is not installed")
                continue
        fns: dict[str, Callable[[], object]] = {}
        naive_fn = None
        if name in ("pixelate", "dp-pix", "blur") and p.get("noise", "fast") == "fast":
            naive_fn = (naive_torch if on_cuda else naive_cpu)(name, b, k, m, eps)
        if naive_fn is not None:
            naive_data = x_nchw[:count] if on_cuda else x_nhwc[:count]
            fns["naive"] = lambda d=naive_data: naive_fn(d)
        for path, data in paths:
            batch = data[:count]
            fns[path] = lambda d=batch: ob(d, seed=0)
            fns["copy " + path] = lambda d=batch: copy(d)
        if on_cuda and name in ("pixelate", "dp-pix") and p.get("noise") != "secure":
            # the same method through the other backends of its cell stages (same bytes)
            batch, streams = x_nchw[:count], image_streams(0, None, count)
            for path, backend in OTHER_BACKENDS.items():
                fns[path] = (
                    (lambda d=batch, k=backend: pixelate_torch(d, b, k)) if name == "pixelate"
                    else (lambda d=batch, k=backend: dp_pix_torch(d, b, m, eps, streams, backend=k))
                )
        if name == "svd-mp":
            batch, streams = x_nchw[:count], image_streams(0, None, count)
            fns[SVD_ON_DEVICE] = lambda d=batch: svd_mp_torch(d, p["k"], p["epsilon"], streams)
        console.log(f"timing {spec} ({count} images)")
        best = _time_interleaved(fns, sync, args.repeat, args.min_time)
        naive_rate = count / best["naive"] if "naive" in best else None
        extra_rows = [row for row in (*OTHER_BACKENDS, SVD_ON_DEVICE) if row in best]
        for path in [name_ for name_, _ in paths] + extra_rows:
            rate = count / best[path]
            copy_rate = count / best["copy " + (paths[0][0] if path in extra_rows else path)]
            rows.append({
                "method": ob.spec, "path": path, "images_per_s": rate,
                "naive_images_per_s": naive_rate, "vs_naive": None if naive_rate is None else rate / naive_rate,
                "copy_images_per_s": copy_rate, "vs_copy": rate / copy_rate, "n": count,
            })

    dev_name = torch.cuda.get_device_name(device) if on_cuda else f"CPU, {args.threads} threads"
    table = Table(title=f"obfuscation speed, {s}x{s} RGB uint8, {dev_name}")
    for col in ("method", "path", "images/s", "naive images/s", "x naive", "x copy"):
        table.add_column(col, justify="left" if col in ("method", "path") else "right")
    for r in rows:
        table.add_row(
            r["method"], r["path"], f"{r['images_per_s']:,.0f}",
            "-" if r["naive_images_per_s"] is None else f"{r['naive_images_per_s']:,.0f}",
            "-" if r["vs_naive"] is None else f"{r['vs_naive']:.2f}", f"{r['vs_copy']:.3f}",
        )
    for path, _ in paths:
        rates = [r["copy_images_per_s"] for r in rows if r["path"] == path and r["n"] == n]
        if rates:
            table.add_row("(memory copy)", path, f"{max(rates):,.0f}", "-", "-", "1.000")
    Console().print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev_name, "size": s, "threads": args.threads, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
