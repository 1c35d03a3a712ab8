"""The surrogate of an attribution experiment: the clean classifier that the ``adv`` method attacks.

A launderer who wants fake images to pass as camera photos trains his own attribution classifier
on the same kind of data and perturbs against it; the detectors of the grid (other seeds, other
architectures) never saw the perturbation. ``privattrib adv surrogate SPEC -o OUTDIR --seed 100``
trains that classifier on the experiment's own training split (assembled and cached in OUTDIR,
shared with ``privattrib run``) with a weight seed the grid does not use, and writes it where the
experiment file's ``adv:...,model=PATH`` reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from privattrib.experiments.spec import REAL_CLASS, ExperimentSpec

__all__ = ["default_surrogate_path", "train_surrogate"]


def default_surrogate_path(outdir: str | os.PathLike, arch: str, seed: int) -> Path:
    return Path(outdir) / "surrogates" / f"{arch}-s{seed}.pt"


def train_surrogate(spec: ExperimentSpec, outdir: str | os.PathLike, *, seed: int, arch: str | None = None,
                    path: str | os.PathLike | None = None, device: str = "auto", progress: bool = True,
                    console: Any = None) -> Path:
    """Train (or load from the clean-model cache) the clean classifier of ``spec``'s data with
    weight seed ``seed`` and write it as an ``adv`` surrogate checkpoint.

    Args:
        spec: the experiment (its data, and its classifier options unless ``arch`` names another
            network, which then trains with the spec's training options and its own defaults).
        outdir: the experiment directory (data and GAN sources are assembled there once).
        seed: the surrogate's weight seed; refused when it is one of the grid's seeds.
        path: where to write (default ``OUTDIR/surrogates/<arch>-s<seed>.pt``).

    Returns:
        the checkpoint's path.
    """
    from privattrib.attribution.models import save_classifier
    from privattrib.attribution.scenarios import clean_model, split_classifier_config
    from privattrib.experiments.runner import _exclusive
    from privattrib.experiments.sources import assemble_data

    if int(seed) in spec.seeds:
        raise ValueError(f"seed {seed} is one of the experiment's seeds {spec.seeds}: the surrogate must be a "
                         "model the grid's detectors are independent of; choose another")
    cfg = dict(spec.classifier)
    if arch is not None and arch != cfg.get("arch"):
        _, _, train_kwargs, _ = split_classifier_config(cfg)
        cfg = {"arch": arch, **{k: v for k, v in train_kwargs.items()}}
    arch = str(cfg.get("arch"))
    path = Path(path) if path is not None else default_surrogate_path(outdir, arch, seed)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with _exclusive(outdir):
        data = assemble_data(spec, outdir, device=device, console=console, progress=progress)
        model, info = clean_model(data.train, data.val, cfg, int(seed), outdir / "models", device=device,
                                  progress=progress)
    save_classifier(model, path, extra={
        "task": "attribution", "class_names": list(data.train.class_names), "real_class": REAL_CLASS,
        "weights_seed": int(seed), "experiment": spec.name, "data_hash": spec.data_hash(),
        "classifier": cfg, "history": info.get("history"), "clean_model": info["path"]})
    return path
