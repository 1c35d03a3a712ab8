"""Classifier training on several processes (GPUs, or CPU processes) with DistributedDataParallel.

The training loop is the one of :mod:`privattrib.training`; this module only joins the process
group that ``torchrun`` describes in the environment and runs a training job on it. There is no
launcher or scheduler here: ``torchrun`` starts the processes.

    torchrun --nproc-per-node 4 -m privattrib train ../shared/data/yaleb -o runs/yaleb-ddp --size 64
    privattrib train ../shared/data/yaleb -o runs/yaleb-1 --size 64      # the same job, one process

Backends: NCCL when the processes have CUDA devices (one per process, ``LOCAL_RANK``), else gloo.
Each rank holds the whole training set (every epoch's permutation covers all of it) and trains on
its share of every batch, and validates its share of the validation set (the sums are
all-reduced); rank 0 writes the checkpoint and its JSON and prints.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


__all__ = ["init_process_group", "close_process_group", "launch_world_size", "local_rank", "rank", "world_size",
           "barrier", "train_job"]


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK``, set by torchrun; 0 without it)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    import torch.distributed as dist

    if world_size() > 1:
        dist.barrier()


_LAUNCH = "launch with `torchrun --nproc-per-node N -m privattrib train ...`"


def launch_world_size() -> int:
    """The number of processes the environment's ``WORLD_SIZE`` describes (1 without it), after
    checking that what torchrun sets is there and whole, so that a half-set environment is named
    instead of failing inside torch's rendezvous or training alone.

    Raises:
        ValueError: a variable that is not an integer; ``WORLD_SIZE`` > 1 without ``RANK``,
            ``MASTER_ADDR`` or ``MASTER_PORT``; ``RANK`` outside [0, WORLD_SIZE); a ``RANK`` other
            than 0 without ``WORLD_SIZE`` (that process would train alone and overwrite rank 0's
            checkpoint).
    """
    env = os.environ
    numbers = {}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        if name in env:
            try:
                numbers[name] = int(env[name])
            except ValueError:
                raise ValueError(f"{name}={env[name]!r} is not an integer; {_LAUNCH}") from None
    world = numbers.get("WORLD_SIZE", 1)
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world}: must be >= 1; {_LAUNCH}")
    if "WORLD_SIZE" not in env:
        if numbers.get("RANK", 0) != 0:
            raise ValueError(f"RANK={numbers['RANK']} is set but WORLD_SIZE is not: this process would train "
                             f"alone and overwrite rank 0's checkpoint; {_LAUNCH}, or unset RANK")
        return 1
    if world > 1:
        missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in env]
        if missing:
            raise ValueError(f"WORLD_SIZE={world} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             f"not: the torchrun environment is incomplete; {_LAUNCH}, or unset WORLD_SIZE to "
                             "train in one process")
        if not 0 <= numbers["RANK"] < world:
            raise ValueError(f"RANK={numbers['RANK']} is outside [0, WORLD_SIZE={world}); {_LAUNCH}")
    return world


def init_process_group(backend: str = "auto", device: str = "auto", *, single: bool = False) -> tuple[int, int]:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` ...).

    Args:
        backend: ``auto`` (``nccl`` when ``device`` resolves to CUDA, else ``gloo``), ``nccl`` or ``gloo``.
        device: the device training will use (``auto``, ``cpu``, ``cuda``...).
        single: join a group of one process too (torchrun ``--nproc-per-node 1``), e.g. to
            measure what DDP costs; by default one process trains without a group.

    Returns:
        (rank, world size); (0, 1) and nothing joined when the environment names no group of more
        than one process (a plain ``privattrib train``).

    Raises:
        ValueError: an unknown backend, NCCL without CUDA, or a half-set torchrun environment
            (:func:`launch_world_size`).
    """
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launch_world_size() <= 1 and not (single and "MASTER_ADDR" in os.environ):
        return 0, 1
    from privattrib.common import resolve_device

    cuda = resolve_device(device).type == "cuda"
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be auto, nccl or gloo, got {backend!r}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("the nccl backend needs CUDA devices; use --device cpu (gloo)")
    if cuda:
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _load_training_data(data: str | os.PathLike, size: int | None, channels: int | None, val_fraction: float,
                        seed: int, cache_dir, progress: bool):
    """``(train, val, description)``: an experiment's assembled sets (``OUTDIR/data/<hash>``, its
    own train/val split) or any source :func:`privattrib.data.load_source` reads, split per class."""
    from privattrib.data import load_source
    from privattrib.data.splits import split_per_class

    path = Path(data)
    if (path / "info.json").is_file() and (path / "train.npz").is_file():
        from privattrib.experiments.sources import load_experiment_data

        sets = load_experiment_data(path)
        return sets.train, sets.val, {"kind": "experiment data", "path": str(path)}
    options: dict[str, Any] = {"cache_dir": cache_dir, "progress": progress}
    if channels is not None:
        options["channels"] = channels
    source = load_source(str(path), size, **options)
    if len(source.class_names) < 2:
        raise ValueError(f"{path}: {len(source.class_names)} class ({source.class_names}); a classifier needs "
                         "at least two (an identity set, or an experiment's data directory OUTDIR/data/<hash>)")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    split = split_per_class(source.labels, {"train": 1 - val_fraction, "val": val_fraction}, seed=seed)
    return source.subset(split["train"]), source.subset(split["val"]), {"kind": "source", "path": str(path)}


def train_job(data: str | os.PathLike, out: str | os.PathLike, *, arch: str = "yu2019", size: int | None = 64,
              channels: int | None = None, epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
              seed: int = 0, val_fraction: float = 0.1, device: str = "auto", cache_dir=None,
              progress: bool = True, model_options: dict | None = None) -> dict:
    """Train a classifier on ``data`` on every process of the group (one process without torchrun).

    Args:
        data: an experiment's data directory (``OUTDIR/data/<hash>``: its train and val sets) or a
            source with at least two classes (an identity set: label = person).
        out: output folder; rank 0 writes ``classifier.pt``, ``classifier.json`` (options, history,
            world size, images/s) and returns the same summary.
        arch, model_options: the classifier (:func:`privattrib.attribution.models.make_classifier`).
        size, channels: input size and channels of a source (an experiment's data keeps its own).
        epochs, batch_size, lr, seed: training options; ``batch_size`` is the global batch, split
            between the processes, so the same command gives the same training on any number of them.
        val_fraction: share of each class kept for validation (sources only).
        device: ``auto``, ``cpu``, ``cuda`` (each process takes GPU ``LOCAL_RANK``).

    Returns:
        ``{"world_size", "history", "val_accuracy", "images_per_second", "checkpoint", ...}``.
    """
    from privattrib.attribution.models import make_classifier, save_classifier
    from privattrib.training import TrainConfig, train_classifier

    r, world = init_process_group(device=device)
    started = time.perf_counter()
    # Rank 0 decodes (and caches) the data first; the others then hit its cache instead of racing.
    if r == 0:
        train, val, described = _load_training_data(data, size, channels, val_fraction, seed, cache_dir, progress)
    barrier()
    if r != 0:
        train, val, described = _load_training_data(data, size, channels, val_fraction, seed, cache_dir, False)
    shape = train.images.shape
    model = make_classifier(arch, num_classes=len(train.class_names), image_size=shape[3], in_channels=shape[1],
                            seed=seed, **(model_options or {}))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
    result = train_classifier(model, train.images, train.labels, config,
                              val=(val.images, val.labels) if len(val) else None,
                              progress=progress and r == 0, description=f"train {arch} x{world}")
    timed = result.history[1:] or result.history  # the first epoch warms up (allocations, cudnn)
    summary = {
        "world_size": world,
        "backend": _backend(),
        "device": result.config["resolved_device"],
        "data": {**described, "train": int(len(train)), "val": int(len(val)), "classes": list(train.class_names),
                 "shape": list(shape[1:])},
        "train_config": result.config,
        "history": result.history,
        "val_accuracy": result.history[-1].get("val_accuracy"),
        "train_accuracy": result.history[-1]["accuracy"],
        "images_per_second": sum(len(train) for _ in timed) / sum(h["seconds"] for h in timed),
        "seconds": time.perf_counter() - started,
        "checkpoint": str(Path(out) / "classifier.pt"),
    }
    if r == 0:
        Path(out).mkdir(parents=True, exist_ok=True)
        save_classifier(result.model, Path(out) / "classifier.pt", extra={"training": summary})
    barrier()
    return summary


def _backend() -> str | None:
    import torch.distributed as dist

    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


