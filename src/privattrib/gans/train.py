"""Train one GAN of the zoo on uint8 images: resumable, logged, reproducible.

A run folder holds::

    config.json        every resolved option (architecture recipe, sizes, data fingerprint, DP settings)
    checkpoint.pt      nets, optimisers, step, accountant -- written atomically
    log.jsonl          one line per ``log_every`` steps: losses, elapsed time, epsilon (dp-dcgan)
    samples/step_*.png a grid of fixed-noise samples every ``sample_every`` steps
    generator.pt       the final generator (batch-norm statistics re-estimated for sampling)
    quality.json       KID / colour / spectrum distances to the training images (see quality.py)
    summary.json       steps, wall time, steps/s, privacy guarantee

Randomness: every step draws from a generator seeded by (seed, step), so an interrupted run that
resumes from a checkpoint continues exactly as the uninterrupted run would have (on the same
device and thread count), with no generator state to save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from privattrib.common import atomic_torch_save, atomic_write_text, resolve_device, stable_hash
from privattrib.data.dataset import LabeledImages
from privattrib.gans import losses
from privattrib.gans.quality import gan_quality, resize_uint8
from privattrib.gans.nets import CHECKPOINT_FORMAT, build_nets, mix_seed
from privattrib.gans.registry import GanArch, check_size, get_arch
from privattrib.gans.sample import calibrate_batchnorm, fixed_noise, sample_gan, save_grid
from privattrib.threads import fit_threads

log = logging.getLogger("privattrib.gans")


#: Defaults for options no preset sets.
DEFAULTS: dict[str, Any] = {
    "size": 64,
    "width": 64,
    "z_dim": 128,
    "batch_size": 64,
    "steps": 2000,
    # DP-SGD for dp-dcgan's discriminator (Opacus); delta None -> min(1e-5, 1 / (10 N)).
    "dp_noise_multiplier": 1.0,
    "dp_max_grad_norm": 1.0,
    "dp_delta": None,
    "amp": True,  # bf16 autocast on CUDA where the architecture allows it
    "quality_samples": 1000,
}

# Optimiser settings for the narrow CPU nets (tiny, cpu-64), picked from short runs on 2,000 CelebA
# faces (KID of the samples; docs/gans.md): within the tiny budget, the full recipes left lsgan
# collapsed and wgan-gp in grey noise.
_NARROW_NET_OVERRIDES: dict[str, dict[str, Any]] = {
    "lsgan": {"lr_d": 1e-4},
    "wgan-gp": {"n_critic": 2, "lr_g": 3e-4, "lr_d": 3e-4, "betas": [0.5, 0.9]},
    "sngan": {"lr_g": 2e-4, "lr_d": 2e-4},
}

# About a minute per architecture on 2 loaded CPU cores (measured, see docs/gans.md): for the demo
# and tests. Blurry face-coloured blobs, not faces; still distinct sources. Full-resolution 3x3
# convs (sngan, progan) and 5 critic steps with a double backward (wgan-gp) cost more per step,
# hence narrower nets / fewer steps for them.
_TINY: dict[str, Any] = {
    "size": 32,
    "width": {"progan": 8},
    "z_dim": 64,
    "batch_size": 64,
    "steps": {"dcgan": 400, "lsgan": 400, "dp-dcgan": 200, "wgan-gp": 200, "sngan": 80, "progan": 150},
    "quality_samples": 500,
    "arch_overrides": _NARROW_NET_OVERRIDES,
}

# At 64 px lsgan and progan need their full recipes, 128-d latents and more steps: lsgan left
# collapse between steps 900 and 1500, progan's blobs became faces between 600 and 1350
# (docs/gans.md). The other architectures keep the narrow-net recipe.
_CPU_64_OVERRIDES: dict[str, dict[str, Any]] = {
    **{arch: opts for arch, opts in _NARROW_NET_OVERRIDES.items() if arch != "lsgan"},
    "lsgan": {"z_dim": 128},
    "progan": {"z_dim": 128},
}

#: Presets: a size and a net width that fit a budget. ``steps`` may be one number or one per arch.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    # The tiny recipe at 64 x 64 with more steps (lsgan and progan: as above), for CPU-only 64 px
    # experiments (examples/celeba-attribution-cpu64.yaml): 3.5-6.5 minutes per architecture with
    # one thread, lsgan about 11 and progan about 28.
    "cpu-64": {
        **_TINY,
        "size": 64,
        "steps": {"dcgan": 1000, "lsgan": 3000, "dp-dcgan": 300, "wgan-gp": 500, "sngan": 200, "progan": 1500},
        "arch_overrides": _CPU_64_OVERRIDES,
    },
    # Recognisable 64 x 64 faces on CelebA on one GPU in a few minutes (dcgan).
    "gpu-64": {"size": 64, "width": 64, "z_dim": 128, "batch_size": 128, "steps": 10000},
    "gpu-128": {"size": 128, "width": 64, "z_dim": 128, "batch_size": 64, "steps": 20000},
}

#: Per-arch preset values for architectures a preset's dict does not name.
PRESET_FALLBACK: dict[str, dict[str, Any]] = {"tiny": {"width": 16, "steps": 300},
                                               "cpu-64": {"width": 16, "steps": 500}}

#: Options ``overrides=`` may set (beyond the keyword arguments of :func:`train_gan`).
OVERRIDABLE = {
    "width", "z_dim", "lr_g", "lr_d", "betas", "n_critic", "gp_weight", "drift",
    "dp_noise_multiplier", "dp_max_grad_norm", "dp_delta", "amp", "quality_samples",
    "log_every", "checkpoint_every",
}
# Options that may change between a run and its resumption (they do not change the trajectory).
_NOT_IDENTITY = {"steps", "sample_every", "log_every", "checkpoint_every", "quality_samples", "versions"}


def available_presets() -> list[str]:
    return sorted(PRESETS)


def resolve_config(
    arch: str,
    images: np.ndarray,
    *,
    size: int | None,
    steps: int | None,
    preset: str | None,
    seed: int,
    batch_size: int | None,
    sample_every: int | None,
    overrides: Mapping[str, Any] | None,
) -> dict:
    """Every option of a run: defaults <- preset <- explicit arguments <- overrides."""
    spec = get_arch(arch)
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(available_presets())}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    bad = set(overrides or {}) - OVERRIDABLE
    if bad:
        raise ValueError(f"unknown override(s) {sorted(bad)}; allowed: {sorted(OVERRIDABLE)}")
    opts = dict(DEFAULTS)
    opts.update(spec.recipe())
    if preset is not None:
        chosen = dict(PRESETS[preset])
        per_arch = chosen.pop("arch_overrides", {}).get(arch, {})
        for key, value in chosen.items():
            if isinstance(value, dict):  # a preset value given per architecture
                value = value.get(arch, PRESET_FALLBACK.get(preset, {}).get(key, DEFAULTS.get(key)))
            opts[key] = value
        opts.update(per_arch)
    for key, value in (("size", size), ("steps", steps), ("batch_size", batch_size)):
        if value is not None:
            opts[key] = value
    opts.update(overrides or {})
    check_size(int(opts["size"]))
    for key in ("steps", "batch_size", "width", "z_dim", "n_critic"):
        if not isinstance(opts[key], (int, np.integer)) or opts[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {opts[key]!r}")
    if opts["batch_size"] < 2:
        raise ValueError("batch_size must be at least 2 (batch norm and the minibatch statistics need it)")
    for key in ("lr_g", "lr_d"):
        if not opts[key] > 0:
            raise ValueError(f"{key} must be > 0, got {opts[key]}")
    n, channels = int(images.shape[0]), int(images.shape[1])
    steps_total = int(opts["steps"])
    opts["sample_every"] = int(sample_every) if sample_every else max(1, steps_total // 10)
    opts.setdefault("log_every", max(1, min(100, steps_total // 100)))
    opts.setdefault("checkpoint_every", max(50, steps_total // 20))
    if opts["sample_every"] < 1:
        raise ValueError("sample_every must be >= 1")
    dp = None
    if spec.dp:
        if not opts["dp_noise_multiplier"] > 0 or not opts["dp_max_grad_norm"] > 0:
            raise ValueError("dp_noise_multiplier and dp_max_grad_norm must be > 0")
        delta = opts["dp_delta"] if opts["dp_delta"] is not None else min(1e-5, 1.0 / (10 * n))
        if not 0 < delta < 1:
            raise ValueError(f"dp_delta must be in (0, 1), got {delta}")
        dp = {
            "noise_multiplier": float(opts["dp_noise_multiplier"]),
            "max_grad_norm": float(opts["dp_max_grad_norm"]),
            "delta": float(delta),
            "sample_rate": min(1.0, opts["batch_size"] / n),
            "sampling": "poisson",
            "accountant": "rdp (opacus)",
            "unit": "one training image (add/remove); a person with k images gets group privacy k*epsilon",
            "pairing": "each real example's gradient is summed with one fake example's before clipping",
        }
    for key in ("dp_noise_multiplier", "dp_max_grad_norm", "dp_delta"):
        opts.pop(key)
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "preset": preset,
        "seed": int(seed),
        "size": int(opts.pop("size")),
        "channels": channels,
        "steps": steps_total,
        "batch_size": int(opts.pop("batch_size")),
        "width": int(opts.pop("width")),
        "z_dim": int(opts.pop("z_dim")),
        "recipe": {k: opts[k] for k in ("loss", "n_critic", "lr_g", "lr_d", "betas", "gp_weight", "drift", "dp")},
        "dp": dp,
        "amp": bool(opts["amp"]),
        "sample_every": opts["sample_every"],
        "log_every": int(opts["log_every"]),
        "checkpoint_every": int(opts["checkpoint_every"]),
        "quality_samples": int(opts["quality_samples"]),
        "data": {"n": n, "shape": list(images.shape)},
        "versions": {"torch": torch.__version__},
    }


def _as_images(data) -> tuple[np.ndarray, dict]:
    if isinstance(data, LabeledImages):
        return data.images, {k: v for k, v in data.meta.items() if isinstance(v, (str, int, float, bool))}
    if isinstance(data, np.ndarray):
        if data.ndim != 4 or data.dtype != np.uint8 or data.shape[1] not in (1, 3):
            raise ValueError(f"data must be uint8 N x C x H x W with C in (1, 3), got {data.dtype} {data.shape}")
        return data, {}
    raise ValueError(f"data must be LabeledImages or a uint8 N x C x H x W array, got {type(data).__name__}")


def _prepare_images(images: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then area-resize to size x size (uint8 N x C x size x size)."""
    h, w = images.shape[2:]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        images = images[:, :, top : top + s, left : left + s]
    return np.ascontiguousarray(resize_uint8(images, (size, size)))


def _fingerprint(images: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return h.hexdigest()[:16]


def _identity(config: dict, *, legacy: bool = False) -> str:
    """Hash of what decides a run. The data enter by their pixels' fingerprint; where the source
    lies (``data.source.root``, informative) does not, so a run moved with its data, or trained on
    another node, resumes (``legacy=True``: the hash of runs written before, root included)."""
    ident = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    source = (ident.get("data") or {}).get("source")
    if not legacy and isinstance(source, dict) and "root" in source:
        ident["data"] = {**ident["data"], "source": {k: v for k, v in source.items() if k != "root"}}
    return stable_hash(ident)


class _Trainer:
    """Holds the nets, optimisers and (for DP) the Opacus pieces of one run."""

    def __init__(self, config: dict, device: torch.device, checkpoint: dict | None):
        self.config, self.device = config, device
        self.spec: GanArch = get_arch(config["arch"])
        self.recipe = config["recipe"]
        self.dp = config["dp"]
        self.G, D = build_nets(config)
        if checkpoint is not None:
            self.G.load_state_dict(checkpoint["G"])
            D.load_state_dict(checkpoint["D"])
        self.cuda = device.type == "cuda"
        if self.cuda:
            # Fixed shapes every step: let cuDNN pick its fastest kernels (CUDA runs are not
            # bit-reproducible anyway; CPU runs are).
            torch.backends.cudnn.benchmark = True
        self.amp = self.cuda and config["amp"] and self.spec.amp_safe
        # channels_last helps cuDNN convs; Opacus's unfold-based grad samplers want plain layout.
        self.memory_format = torch.channels_last if self.cuda and not self.dp else torch.contiguous_format
        self.G.to(device, memory_format=self.memory_format)
        D.to(device, memory_format=self.memory_format)
        betas = tuple(self.recipe["betas"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.recipe["lr_g"], betas=betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=self.recipe["lr_d"], betas=betas)
        if checkpoint is not None:
            self.opt_g.load_state_dict(checkpoint["opt_g"])
            opt_d.load_state_dict(checkpoint["opt_d"])
        self.rng = torch.Generator(device=device)
        self.accountant = None
        if self.dp:
            from opacus import GradSampleModule
            from opacus.accountants import RDPAccountant
            from opacus.optimizers import DPOptimizer
            from opacus.validators import ModuleValidator

            errors = ModuleValidator.validate(D, strict=False)
            if errors:
                raise ValueError(f"{config['arch']}: discriminator cannot be trained with DP-SGD: {errors}")
            D = GradSampleModule(D, loss_reduction="mean")
            n = config["data"]["n"]
            opt_d = DPOptimizer(
                opt_d,
                noise_multiplier=self.dp["noise_multiplier"],
                max_grad_norm=self.dp["max_grad_norm"],
                expected_batch_size=self.dp["sample_rate"] * n,
                loss_reduction="mean",
                generator=self.rng,
            )
            self.accountant = RDPAccountant()
            if checkpoint is not None:
                self.accountant.history = [tuple(h) for h in checkpoint["accountant_history"]]
        self.D, self.opt_d = D, opt_d

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _real_batch(self, data: torch.Tensor) -> torch.Tensor:
        n = data.shape[0]
        if self.dp:
            # Poisson sampling: each image joins independently with probability q, which is what
            # the accountant's subsampled-Gaussian analysis assumes.
            mask = torch.rand(n, device=self.device, generator=self.rng) < self.dp["sample_rate"]
            index = mask.nonzero().flatten()
        else:
            index = torch.randint(n, (self.config["batch_size"],), device=self.device, generator=self.rng)
        x = data[index].float().div_(127.5).sub_(1.0)
        return x.contiguous(memory_format=self.memory_format)

    def _noise(self, b: int) -> torch.Tensor:
        return torch.randn(b, self.config["z_dim"], device=self.device, generator=self.rng)

    def step(self, data: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One generator update after ``n_critic`` discriminator updates; returns detached losses."""
        self.rng.manual_seed(mix_seed(self.config["seed"], step))
        kind = self.recipe["loss"]
        self.G.train()
        self.D.train()
        self.D.requires_grad_(True)
        for _ in range(self.recipe["n_critic"]):
            real = self._real_batch(data)
            b = real.shape[0]
            self.opt_d.zero_grad(set_to_none=True)
            if b == 0:
                # An empty Poisson batch still releases a noisy (all-noise) update, as analysed.
                for p in self.D.parameters():
                    p.grad_sample = torch.zeros((0, *p.shape), device=self.device)
                self.opt_d.step()
                self.accountant.step(noise_multiplier=self.dp["noise_multiplier"], sample_rate=self.dp["sample_rate"])
                loss_d = torch.zeros((), device=self.device)
                continue
            with torch.no_grad(), self._autocast():
                fake = self.G(self._noise(b))
            with self._autocast():
                out_real = self.D(real).float()
                out_fake = self.D(fake).float()
            loss_d = losses.d_loss(kind, out_real, out_fake)
            if self.recipe["gp_weight"]:
                loss_d = loss_d + self.recipe["gp_weight"] * losses.gradient_penalty(self.D, real, fake, self.rng)
            if self.recipe["drift"]:
                loss_d = loss_d + self.recipe["drift"] * out_real.pow(2).mean()
            with warnings.catch_warnings():
                # Opacus's module hooks warn that the (detached) inputs need no gradient: expected.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss_d.backward()
            self.opt_d.step()
            if self.accountant is not None:
                self.accountant.step(noise_multiplier=self.dp["noise_multiplier"], sample_rate=self.dp["sample_rate"])
        # Generator update: D is only a function here (no weight gradients, no per-sample hooks).
        self.D.requires_grad_(False)
        if self.dp:
            self.D.disable_hooks()  # per-sample gradient hooks are for D's own (private) update only
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.D(self.G(self._noise(self.config["batch_size"]))).float()
        loss_g = losses.g_loss(kind, out)
        loss_g.backward()
        self.opt_g.step()
        if self.dp:
            self.D.enable_hooks()
        self.D.requires_grad_(True)
        return loss_d.detach(), loss_g.detach()

    def epsilon(self) -> float | None:
        if self.accountant is None or not self.accountant.history:
            return None if self.accountant is None else 0.0
        return float(self.accountant.get_epsilon(self.dp["delta"]))

    def d_module(self) -> torch.nn.Module:
        return self.D._module if self.dp else self.D

    def state(self, step: int, elapsed: float) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": _identity(self.config),
            "config": self.config,
            "step": step,
            "elapsed_s": elapsed,
            "G": self.G.state_dict(),
            "D": self.d_module().state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": (self.opt_d.original_optimizer if self.dp else self.opt_d).state_dict(),
            "accountant_history": list(self.accountant.history) if self.accountant else None,
        }


def _load_checkpoint(run_dir: Path, config: dict) -> dict | None:
    path = run_dir / "checkpoint.pt"
    config_path = run_dir / "config.json"
    if not path.exists():
        if config_path.exists():
            old = json.loads(config_path.read_text())
            if _identity(old) != _identity(config):
                _raise_mismatch(run_dir, old, config)
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a privattrib GAN checkpoint (format {ckpt.get('format')!r})")
    if _identity(ckpt["config"]) != _identity(config):  # not ckpt["identity"]: older runs hashed the root
        _raise_mismatch(run_dir, ckpt["config"], config)
    return ckpt


def _raise_mismatch(run_dir: Path, old: dict, new: dict) -> None:
    keys = sorted(k for k in set(old) | set(new) if k not in _NOT_IDENTITY and old.get(k) != new.get(k))
    details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    raise ValueError(
        f"{run_dir} holds a run with a different configuration ({details}); "
        "use another output folder, or the same options to resume it"
    )


def train_gan(
    arch: str,
    data,
    *,
    size: int | None = None,
    steps: int | None = None,
    preset: str | None = None,
    seed: int = 0,
    out: str | Path,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
    sample_every: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Train GAN ``arch`` on ``data``; resume if ``out`` holds a checkpoint of the same configuration.

    Args:
        arch: a name from :func:`available_archs`.
        data: :class:`LabeledImages` or a uint8 N x C x H x W array (C = 1 or 3). Non-square images
            are centre-cropped, then area-resized to ``size``.
        size: 32, 64 or 128 (default: the preset's, else 64).
        steps: generator updates (default: the preset's, else 2000). A larger value on a finished
            run continues it.
        preset: ``"tiny"``, ``"cpu-64"``, ``"gpu-64"``, ``"gpu-128"`` (see :data:`PRESETS`); explicit arguments win.
        seed: initialisation and sampling seed; two seeds of one arch are two sources.
        out: the run folder.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batch_size: real and fake images per step (dp-dcgan: the expected Poisson batch).
        sample_every: steps between sample grids (default steps/10).
        overrides: recipe options, e.g. ``{"width": 32, "lr_d": 1e-4, "dp_noise_multiplier": 1.5}``.

    Returns:
        The run folder.
    """
    images, meta = _as_images(data)
    if len(images) < 2:
        raise ValueError(f"need at least 2 training images, got {len(images)}")
    run_dir = Path(out)
    config = resolve_config(
        arch, images, size=size, steps=steps, preset=preset, seed=seed, batch_size=batch_size,
        sample_every=sample_every, overrides=overrides,
    )
    images = _prepare_images(images, config["size"])
    config["data"].update(sha256_16=_fingerprint(images), prepared_shape=list(images.shape), source=meta)
    ckpt = _load_checkpoint(run_dir, config)
    if ckpt is not None and ckpt["step"] >= config["steps"] and _finished(run_dir, ckpt["step"]):
        log.info("%s: already trained %d steps; nothing to do", run_dir, ckpt["step"])
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, default=str))
    dev = resolve_device(device)
    trainer = _Trainer(config, dev, ckpt)
    start = ckpt["step"] if ckpt else 0
    elapsed0 = ckpt["elapsed_s"] if ckpt else 0.0
    _trim_log(run_dir / "log.jsonl", start)
    if start < config["steps"]:
        data_dev = torch.from_numpy(np.require(images, requirements=["C", "W"])).to(dev)
        _loop(trainer, data_dev, run_dir, start, elapsed0, progress)
    _finish(trainer, run_dir, images, dev, progress)
    return run_dir


def _finished(run_dir: Path, step: int) -> bool:
    """The final artefacts of a run that stopped at ``step`` are all there."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return summary.get("steps") == step and (run_dir / "generator.pt").exists()


def _trim_log(path: Path, start: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= start]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _progress_bar(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        disable=not enabled, transient=False, console=Console(stderr=True),
    )


def _loop(trainer: _Trainer, data: torch.Tensor, run_dir: Path, start: int, elapsed0: float, progress: bool) -> None:
    cfg = trainer.config

    grid_z = fixed_noise(cfg, 64).to(trainer.device)
    (run_dir / "samples").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    step = start
    sum_d = torch.zeros((), device=trainer.device)
    sum_g = torch.zeros((), device=trainer.device)
    n_acc = 0
    info = ""

    def save(done: int) -> None:
        atomic_torch_save(trainer.state(done, elapsed0 + time.perf_counter() - t0), run_dir / "checkpoint.pt")

    with _progress_bar(progress) as bar, open(run_dir / "log.jsonl", "a") as logf:
        task = bar.add_task(f"{cfg['arch']} {cfg['size']}px", total=cfg["steps"], completed=start, info="")
        try:
            while step < cfg["steps"]:
                fit_threads(trainer.device)  # follow the cores other processes leave free (rate-limited, cheap)
                ld, lg = trainer.step(data, step)
                step += 1
                sum_d += ld
                sum_g += lg
                n_acc += 1
                if step % cfg["log_every"] == 0 or step == cfg["steps"]:
                    row = {
                        "step": step,
                        "loss_d": float(sum_d) / n_acc,
                        "loss_g": float(sum_g) / n_acc,
                        "elapsed_s": round(elapsed0 + time.perf_counter() - t0, 3),
                    }
                    if not (math.isfinite(row["loss_d"]) and math.isfinite(row["loss_g"])):
                        raise FloatingPointError(f"{cfg['arch']}: loss became {row} at step {step}; lower the learning rates")
                    eps = trainer.epsilon()
                    if eps is not None:
                        row["epsilon"] = eps
                    logf.write(json.dumps(row) + "\n")
                    logf.flush()
                    info = f"D {row['loss_d']:.3f}  G {row['loss_g']:.3f}" + (f"  eps {eps:.2f}" if eps is not None else "")
                    sum_d.zero_()
                    sum_g.zero_()
                    n_acc = 0
                if step % cfg["sample_every"] == 0 or step == cfg["steps"]:
                    save_grid(trainer.G, grid_z, run_dir / "samples" / f"step_{step:07d}.png")
                if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
                    save(step)
                bar.update(task, completed=step, info=info)
        except KeyboardInterrupt:
            save(step)
            log.warning("interrupted at step %d; checkpoint saved, rerun the same command to resume", step)
            raise


def _finish(trainer: _Trainer, run_dir: Path, images: np.ndarray, device: torch.device, progress: bool) -> None:
    """Final generator with re-estimated batch-norm statistics, quality report, summary."""

    cfg = trainer.config
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    G, _ = build_nets(cfg)
    G.load_state_dict(ckpt["G"])
    calibrate_batchnorm(G, cfg, device)
    atomic_torch_save(
        {"format": CHECKPOINT_FORMAT, "config": cfg, "step": ckpt["step"], "G": G.cpu().state_dict()},
        run_dir / "generator.pt",
    )
    n_q = min(cfg["quality_samples"], len(images))
    pick = np.random.default_rng(cfg["seed"]).permutation(len(images))
    real = images[np.sort(pick[:n_q])]
    quality = {}
    if n_q >= 4:
        fake = sample_gan(run_dir, n_q, seed=10_000 + cfg["seed"], device=str(device))
        quality = gan_quality(fake, real, device=str(device))
        # The floor: two disjoint halves of the real images (what a perfect generator would get
        # at this sample size, up to the halving).
        half = real[: n_q // 2], real[n_q // 2 : 2 * (n_q // 2)]
        floor = gan_quality(half[0], half[1], device=str(device))
        quality["kid_real_vs_real"] = floor["kid"]
        quality["spectrum_distance_real_vs_real"] = floor["spectrum_distance"]
        quality["note"] = (
            "computed against the training images; not covered by any DP guarantee" if cfg["dp"] else
            "computed against the training images"
        )
        atomic_write_text(run_dir / "quality.json", json.dumps(quality, indent=2))
    elapsed = ckpt["elapsed_s"]
    summary = {
        "arch": cfg["arch"],
        "seed": cfg["seed"],
        "size": cfg["size"],
        "steps": ckpt["step"],
        "elapsed_s": round(elapsed, 2),
        "steps_per_s": round(ckpt["step"] / elapsed, 3) if elapsed > 0 else None,
        "device": str(device),
        "amp_bf16": trainer.amp,
        "kid": quality.get("kid"),
    }
    if cfg["dp"]:
        hist = ckpt["accountant_history"] or []
        eps = trainer.epsilon() if trainer.accountant is not None and hist else 0.0
        summary["privacy"] = {**cfg["dp"], "epsilon": eps, "discriminator_steps": sum(h[2] for h in hist)}
        log.info("%s: (epsilon=%.3f, delta=%.2g)-DP generator after %d discriminator steps",
                 cfg["arch"], eps, cfg["dp"]["delta"], summary["privacy"]["discriminator_steps"])
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
