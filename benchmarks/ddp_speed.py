"""Training images/s of the one training loop against the number of processes (DDP via torchrun).

Launches ``torchrun --nproc-per-node P`` on this script's worker for every setting and collects
the images/s that rank 0 measured (the first epoch is warm-up and not counted). Settings:

  * ``1 process``: plain training, no process group (what ``privattrib train`` runs alone);
  * ``1 process, DDP``: a group of one (what DDP itself costs: the gradient hooks, the all-reduce);
  * ``P processes, DDP``: the global batch split between P processes (gloo on CPU, NCCL on CUDA).

On CPU each process gets ``--threads`` torch threads, and ``1 process x P threads`` is measured
too: that, not one thread, is what P processes must beat on P cores.

    python benchmarks/ddp_speed.py --device cpu --procs 1 2 --size 32 --batch 32 --images 512 \
        --fmap-base 256 --fmap-max 128 --png docs/img/ddp_speed_cpu.png
    python benchmarks/ddp_speed.py --device cuda --procs 1 --size 128 --batch 256     # one GPU: NCCL x1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    """One rank (run by torchrun): train on random uint8 images, rank 0 writes its figures."""
    import numpy as np
    import torch

    from privattrib.attribution.models import make_classifier
    from privattrib.distributed import close_process_group, init_process_group
    from privattrib.training import TrainConfig, train_classifier

    torch.set_num_threads(args.threads)
    rank, world = init_process_group(device=args.device, single=args.ddp)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 3, args.size, args.size), dtype=np.uint8)
    labels = rng.integers(0, 5, size=args.images)
    options = {k: v for k, v in (("fmap_base", args.fmap_base), ("fmap_max", args.fmap_max)) if v is not None}
    model = make_classifier("yu2019", num_classes=5, image_size=args.size, seed=0, **options)
    config = TrainConfig(epochs=1 + args.epochs, batch_size=args.batch, device=args.device,
                         distributed=True if args.ddp else False)
    result = train_classifier(model, images, labels, config, progress=False)
    timed = result.history[1:]
    if rank == 0:
        Path(args.result).write_text(json.dumps({
            "processes": world, "ddp": args.ddp, "threads": args.threads, "device": result.config["resolved_device"],
            "images_per_second": args.epochs * args.images / sum(h["seconds"] for h in timed),
        }))
    close_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: argparse.Namespace, procs: int, threads: int, ddp: bool) -> dict:
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [torchrun, "--nproc-per-node", str(procs), "--master-port", str(_free_port()), __file__, "--worker",
               "--result", str(result), "--threads", str(threads), "--device", args.device, "--size", str(args.size),
               "--batch", str(args.batch), "--images", str(args.images), "--epochs", str(args.epochs)]
        cmd += [f"--fmap-{k}={v}" for k, v in (("base", args.fmap_base), ("max", args.fmap_max)) if v is not None]
        if ddp:
            cmd.append("--ddp")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        out = json.loads(result.read_text())
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def plot(rows: list[dict], png: Path) -> None:
    """A horizontal bar per setting (orange: DDP)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = rows[0]
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    colours = ["#dd8452" if r["ddp"] else "#4c72b0" for r in rows]
    ax.barh([r["setting"] for r in rows][::-1], [r["images_per_second"] for r in rows][::-1], color=colours[::-1])
    for i, r in enumerate(rows[::-1]):
        ax.text(r["images_per_second"], i, f" {r['images_per_second']:.0f}", va="center", fontsize=9)
    ax.set_xlabel("training images/s (yu2019; warm-up epoch not counted)")
    ax.set_title(f"{first['device'].split(':')[0].upper()}, {first['cores']} cores (load average "
                 f"{first['load_average']}), {first['size']} px, global batch {first['batch']}; orange: DDP",
                 fontsize=9)
    ax.set_xlim(0, max(r["images_per_second"] for r in rows) * 1.2)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"figure: {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to measure")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--fmap-base", type=int, help="yu2019 width (the CPU examples use 256; default the paper's)")
    parser.add_argument("--fmap-max", type=int, help="yu2019 widest layer (the CPU examples use 128)")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    parser.add_argument("--png", type=Path, help="write the figure here")
    parser.add_argument("--json", type=Path, help="write the rows here (default $OUT/ddp_speed.json if $OUT is set)")
    parser.add_argument("--replot", type=Path, help="draw --png from rows a former run wrote with --json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ddp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    if args.replot:
        rows = json.loads(args.replot.read_text())
        plot(rows, args.png or args.replot.with_suffix(".png"))
        return 0
    settings = [(1, args.threads, False), (1, args.threads, True)]
    if args.device == "cpu":
        settings += [(1, args.threads * p, False) for p in args.procs if p > 1]
    settings += [(p, args.threads, True) for p in args.procs if p > 1]
    rows = []
    for procs, threads, ddp in settings:
        row = launch(args, procs, threads, ddp)
        row["setting"] = f"{procs} process{'es' if procs > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}" \
            + (", DDP" if ddp else "") if args.device == "cpu" else f"{procs} process, {'DDP' if ddp else 'plain'}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["images_per_second"]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    for row in rows:
        row.update(load_average=round(load, 1), cores=os.cpu_count(), size=args.size, batch=args.batch)
    print("\n| setting | images/s | vs 1 process | wall |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['images_per_second']:.0f} | {row['images_per_second'] / base:.2f}x "
              f"| {row['wall_s']} s |")
    width = f" (fmap_base {args.fmap_base}, fmap_max {args.fmap_max})" if args.fmap_base or args.fmap_max else ""
    print(f"\nyu2019{width} at {args.size} px, global batch {args.batch}, {args.images} images x {args.epochs} timed epochs, "
          f"{args.device} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f})")
    out_json = args.json or (Path(os.environ["OUT"]) / "ddp_speed.json" if os.environ.get("OUT") else None)
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(rows, indent=1))
    if args.png:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
