"""Throughput of the ``adv`` method's PGD (images perturbed per second) and of adversarial training.

PGD cost is ``steps`` forward and backward passes of the surrogate per image; the figures are
images/s of whole perturbations (all steps, the random start and the uint8 rounding) through
:func:`privattrib.obfuscation.adversarial.pgd`, on random uint8 images and a randomly initialised
network (the speed does not depend on the weights). ``--train`` also times one epoch of the
training loop with and without the adversarial-training transform (steps 3, half of every batch).
The first round of each configuration is warm-up (cudnn autotuning) and is not counted.

    python benchmarks/adv_speed.py --device cuda --sizes 64,128 --arch yu2019,resnet18 --train
    python benchmarks/adv_speed.py --device cpu --sizes 32 --n 64 --arch yu2019 --options fmap_base=256,fmap_max=128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _options(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_pgd(arch: str, size: int, args, device: torch.device) -> dict:
    from privattrib.attribution.models import make_classifier
    from privattrib.obfuscation.adversarial import pgd

    options = _options(args.options) if arch == args.arch.split(",")[0] else {}
    model = make_classifier(arch, 5, size, 3, seed=0, **options).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.n, 3, size, size), dtype=np.uint8)).to(device)
    streams = np.arange(args.n, dtype=np.uint64)
    times = []
    for _ in range(1 + args.repeat):
        _sync(device)
        start = time.perf_counter()
        out = pgd(model, images, eps=4.0, norm=args.norm, steps=args.steps, streams=streams)
        _sync(device)
        times.append(time.perf_counter() - start)
    assert int((out.int() - images.int()).abs().max()) <= 4
    best = min(times[1:])
    return {"what": "pgd", "arch": arch, "size": size, "norm": args.norm, "steps": args.steps, "n": args.n,
            "device": str(device), "images_per_second": args.n / best,
            "forward_backward_per_second": args.n * args.steps / best, "warmup_seconds": times[0]}


def measure_training(arch: str, size: int, args, device: torch.device) -> list[dict]:
    from privattrib.attribution.models import make_classifier
    from privattrib.obfuscation.adversarial import AdversarialTraining
    from privattrib.training import TrainConfig, train_classifier

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.n, 3, size, size), dtype=np.uint8)).to(device)
    labels = torch.from_numpy(rng.integers(0, 5, args.n)).to(device)
    rows = []
    for name, transform in (("plain", None), ("adversarial (steps 3, half of each batch)",
                                               AdversarialTraining({"eps": 4, "steps": 3, "fraction": 0.5}, seed=0))):
        model = make_classifier(arch, 5, size, 3, seed=0)
        config = TrainConfig(epochs=2, batch_size=args.batch, device=str(device))
        result = train_classifier(model, images, labels, config, progress=False, batch_transform=transform)
        rows.append({"what": f"training, {name}", "arch": arch, "size": size, "n": args.n, "device": str(device),
                     "images_per_second": result.history[-1]["images_per_second"]})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--arch", default="yu2019", help="comma-separated classifier names")
    parser.add_argument("--options", default="", help="options of the first arch, e.g. fmap_base=256,fmap_max=128")
    parser.add_argument("--n", type=int, default=512, help="images per timed round")
    parser.add_argument("--batch", type=int, default=256, help="training batch (with --train)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="also time training with and without adversarial training")
    args = parser.parse_args(argv)

    from privattrib.common import resolve_device

    device = resolve_device(args.device)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for arch in args.arch.split(","):
            row = measure_pgd(arch, size, args, device)
            rows.append(row)
            print(f"PGD {arch:10s} {size:4d} px {args.norm} {args.steps} steps on {device}: "
                  f"{row['images_per_second']:10.1f} images/s ({row['forward_backward_per_second']:.0f} "
                  f"forward+backward/s)", flush=True)
            if args.train:
                for t in measure_training(arch, size, args, device):
                    rows.append(t)
                    print(f"  {t['what']}: {t['images_per_second']:.0f} images/s", flush=True)
    info = {"torch": torch.__version__, "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "threads": torch.get_num_threads()}
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "adv_speed.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
