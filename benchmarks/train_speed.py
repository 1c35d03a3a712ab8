"""Training throughput of the yu2019 attribution classifier through the real training loop.

Measures images/s of :func:`privattrib.training.train_classifier` (the one loop every experiment
uses: data on the device, batches indexed and flipped on the device, fused Adam) on random uint8
images, for eager fp32, eager bf16 and torch.compile + bf16 (compiled only on CUDA unless
``--compile`` asks for it). The first epoch is warm-up (cudnn autotuning, compilation) and is not
counted.

    python benchmarks/train_speed.py --device cuda --size 128 --batch 256
    python benchmarks/train_speed.py --device cuda --compile --amp      # one configuration only
    python benchmarks/train_speed.py --device cpu --size 32 --batch 32 --steps 5   # a CPU sanity run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from privattrib.attribution.models import make_classifier
from privattrib.common import resolve_device
from privattrib.training import TrainConfig, train_classifier


_MODES = {"eager-fp32": (False, False), "eager-bf16": (True, False), "compiled-fp32": (False, True),
          "compiled-bf16": (True, True)}


def measure(args: argparse.Namespace, device: torch.device, amp: bool, compiled: bool,
            padding_mode: str) -> dict:
    n = args.batch * args.steps
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, 3, args.size, args.size), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, args.classes, size=n))
    images, labels = images.to(device), labels.to(device)  # as the experiment runner hands them over
    model = make_classifier("yu2019", num_classes=args.classes, image_size=args.size, seed=0,
                            padding_mode=padding_mode)
    config = TrainConfig(epochs=1 + args.epochs, batch_size=args.batch, device=str(device),
                         amp="bf16" if amp else "off", compile=compiled, compile_mode=args.compile_mode,
                         channels_last="auto")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    result = train_classifier(model, images, labels, config, progress=False)
    timed = result.history[1:]
    seconds = sum(h["seconds"] for h in timed)
    return {
        "mode": f"{'compiled' if compiled else 'eager'}-{'bf16' if amp else 'fp32'}",
        "compile_mode": args.compile_mode if compiled else None,
        "padding": padding_mode,
        "device": str(device),
        "size": args.size,
        "batch": args.batch,
        "images_per_second": args.epochs * n / seconds,
        "warmup_epoch_seconds": result.history[0]["seconds"],
        "timed_images": args.epochs * n,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None,
        "final_loss": result.history[-1]["loss"],
    }


def profile(args: argparse.Namespace, device: torch.device, amp: bool, compiled: bool, padding_mode: str) -> None:
    """Print the operators that take the most device time in one short epoch (after a warm-up one)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    steps = min(args.steps, 10)
    n = args.batch * steps
    images = torch.randint(0, 256, (n, 3, args.size, args.size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, args.classes, (n,), device=device)
    model = make_classifier("yu2019", num_classes=args.classes, image_size=args.size, seed=0,
                            padding_mode=padding_mode)
    config = TrainConfig(epochs=1, batch_size=args.batch, device=str(device), amp="bf16" if amp else "off",
                         compile=compiled, compile_mode=args.compile_mode)
    train_classifier(model, images, labels, config, progress=False)  # warm-up (compilation, autotuning)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        train_classifier(model, images, labels, config, progress=False)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.profile_rows), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--size", type=int, default=128, help="image side (>= 8)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default 40 on CUDA, 3 on CPU)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="only the torch.compile configuration")
    parser.add_argument("--amp", action="store_true", help="only bf16 autocast configurations")
    parser.add_argument("--modes", default=None,
                        help="comma-separated subset of eager-fp32,eager-bf16,compiled-fp32,compiled-bf16")
    parser.add_argument("--padding", default="reflect", choices=["reflect", "zeros", "both"],
                        help="conv padding (the original uses reflect)")
    parser.add_argument("--compile-mode", default="default",
                        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    parser.add_argument("--tf32", action="store_true", help="let fp32 convolutions/matmuls use TF32")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile a short epoch of the last configuration")
    parser.add_argument("--profile-rows", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.steps is None:
        args.steps = 40 if device.type == "cuda" else 3
    if device.type == "cuda":
        # fp32 means fp32 unless asked: TF32 tensor cores change the numerics of the "fp32" row.
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    if args.modes:
        configs = []
        for mode in args.modes.split(","):
            if mode not in _MODES:
                parser.error(f"unknown mode {mode!r}; choose from {', '.join(_MODES)}")
            configs.append(_MODES[mode])
    elif args.compile or args.amp:
        configs = [(args.amp or device.type == "cuda", args.compile)]
    else:
        configs = [(False, False), (True, False)] + ([(True, True)] if device.type == "cuda" else [])
    paddings = ["reflect", "zeros"] if args.padding == "both" else [args.padding]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"yu2019 training, {args.size}x{args.size} RGB, batch {args.batch}, {args.steps} steps/epoch, "
          f"{args.epochs} timed epochs on {device} ({name}); torch {torch.__version__}", flush=True)
    results = []
    for padding in paddings:
        for amp, compiled in configs:
            start = time.perf_counter()
            try:
                row = measure(args, device, amp, compiled, padding)
            except Exception as exc:  # report and go on: one failing mode (e.g. no compiler) is data too
                print(f"  {'compiled' if compiled else 'eager'}-{'bf16' if amp else 'fp32'} {padding}: "
                      f"FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            results.append(row)
            mem = f", peak {row['peak_memory_gib']:.1f} GiB" if row["peak_memory_gib"] is not None else ""
            print(f"  {row['mode']:<14} {padding:<7} {row['images_per_second']:>10,.0f} img/s "
                  f"(warm-up epoch {row['warmup_epoch_seconds']:.1f}s, total {time.perf_counter() - start:.1f}s{mem})",
                  flush=True)
    if args.profile and results:
        profile(args, device, *configs[-1], paddings[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device_name": name, "torch": torch.__version__, "results": results}, f, indent=2)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
