"""Adversarial perturbation as an obfuscation (``adv``): PGD against a surrogate classifier.

A small, bounded change of the pixels chosen to fool one model: a face recogniser (``target=reid``,
the PriGAN idea: the photo looks unchanged to people but the network no longer recognises the
person) or a GAN-attribution classifier (``target=attribution``: with ``goal=real`` a fake image
is pushed to be called a camera photo, i.e. *laundered*). This is **not** a privacy mechanism with
a guarantee: the protection is empirical and holds, if at all, against the surrogate model and
models that happen to share its weaknesses. An attacker who trains on perturbed images, or simply
another network, may not be fooled; ``docs/adversarial.md`` measures how much.

The attack is projected gradient descent (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018), written here because the libraries that install beside the CPU
build of torch do not fit: torchattacks needs torchvision, and the Adversarial Robustness Toolbox
(checked against this code in ``benchmarks/adv_crosscheck_art.py``) draws its random start from a
global generator (no per-image keyed noise), works on host NumPy arrays (no CUDA tensors in and
out), and knows nothing of uint8 rounding. The details that matter for honest numbers:

- The budget is in **grey levels** of the uint8 image: ``norm=linf`` bounds every value's change
  by ``eps``; ``norm=l2`` bounds the Euclidean norm of the change over all C x H x W values of one
  image. The bound holds **exactly for the published uint8 image**, after rounding and clipping
  to 0..255 (see :func:`quantize`): L-inf changes are at most ``floor(eps)``, and an L2 change
  whose rounding would exceed ``eps`` has components rounded toward zero until it fits.
- Every PGD step is followed by the projection onto the ball and then onto the pixel box
  [0, 255] (clipping a point of the ball only shrinks its change, so it stays in the ball).
- The random start is uniform in the ball, drawn from the image's keyed noise stream
  (:mod:`privattrib.obfuscation.noise`): it is a function of (seed, spec, image key) alone, so an
  image gets the same start in every batch, on every device.
- Untargeted attacks push away from the surrogate's own prediction on the clean image (the
  obfuscation has no labels, and needs none); targeted ones (``goal=real``) pull toward the class
  named ``real`` of an attribution surrogate.
- The surrogate is a checkpoint written by
  :func:`privattrib.attribution.models.save_classifier` (``privattrib adv surrogate`` makes one);
  it is loaded once per process and device.

The same PGD serves adversarial training (:class:`AdversarialTraining`, the ``+adv`` scenarios of
the attribution grid): there the model under training is attacked at every batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from privattrib.obfuscation import noise as _noise
from privattrib.obfuscation.base import Obfuscation, Param, register_method

__all__ = [
    "NORMS",
    "GOALS",
    "TARGETS",
    "pgd",
    "pgd_delta",
    "quantize",
    "random_start",
    "load_surrogate",
    "Surrogate",
    "AdversarialPerturbation",
    "AdversarialTraining",
    "resolve_adv_train",
    "PerturbationGenerator",
    "train_perturbation_generator",
    "load_generator",
    "GeneratedPerturbation",
]

NORMS = ("linf", "l2")
GOALS = ("untargeted", "real")
TARGETS = ("reid", "attribution")
#: The attribution class a laundering attack aims at (the experiment files' camera class).
REAL_CLASS = "real"
_PATH_FORBIDDEN = ",=[]"
_CHUNK = {"cpu": 256, "cuda": 1024}
_OUTPUT_CACHE_BYTES = 256 << 20


# --------------------------------------------------------------------------- the attack
def default_step(eps: float, steps: int) -> float:
    """Madry et al.'s rule: 2.5 * eps / steps, so the walk can cross the ball from any start."""
    return 2.5 * float(eps) / int(steps)


def random_start(streams: np.ndarray, shape: tuple[int, ...], eps: float, norm: str, device) -> "torch.Tensor":
    """A point uniform in the ``norm`` ball of radius ``eps`` per image, from the keyed streams.

    Args:
        streams: uint64 ``(N,)``, one noise stream per image.
        shape: ``(N, C, H, W)``.
    Returns:
        float32 tensor ``shape`` on ``device``.
    """
    import torch

    d = int(np.prod(shape[1:]))
    if norm == "linf":
        u = _noise.uniforms_torch(streams, d, device)
        delta = (2.0 * u - 1.0) * eps
    else:  # Gaussian direction (Box-Muller) times radius eps * U^(1/d): uniform in the L2 ball
        u = _noise.uniforms_torch(streams, 2 * d + 1, device)
        g = torch.sqrt(-2.0 * torch.log(u[:, :d])) * torch.cos(2.0 * math.pi * u[:, d:2 * d])
        radius = eps * u[:, 2 * d:2 * d + 1] ** (1.0 / d)
        delta = g / g.norm(dim=1, keepdim=True) * radius
    return delta.to(torch.float32).view(shape)


def _project(delta: "torch.Tensor", x: "torch.Tensor", eps: float, norm: str) -> "torch.Tensor":
    """Onto the ``norm`` ball of radius ``eps``, then onto the pixel box (x + delta in [0, 255])."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / norms).clamp(max=1.0).view(-1, *([1] * (delta.ndim - 1)))
    return (x + delta).clamp(0.0, 255.0) - x


def quantize(images: "torch.Tensor", delta: "torch.Tensor", eps: float, norm: str) -> "torch.Tensor":
    """``images + delta`` as uint8, with the budget kept exactly after rounding and clipping.

    L-inf: the change is ``round(delta)`` clipped to ``[-floor(eps), floor(eps)]``. L2: the change
    is ``round(s * delta)`` for the largest scale ``s`` whose rounded change still has norm <= eps
    (found by bisection; the norm of ``round(s * delta)`` never decreases as ``s`` grows, and
    ``s = 0`` always fits). Plain rounding (``s = 1``) can leave the ball, and a budget spread
    thinly over many values (every component under half a grey level) would round to nothing;
    the scale fixes both. Integer squared norms are exact in float64. Clipping to 0..255
    afterwards only shrinks changes.

    Args:
        images: uint8 ``(N, C, H, W)``.
        delta: float ``(N, C, H, W)`` with ``images + delta`` in [0, 255] (as PGD leaves it).
    Returns:
        uint8 ``(N, C, H, W)``.
    """
    import torch

    d = delta.detach().to(torch.float64)
    if norm == "linf":
        bound = float(math.floor(eps))
        change = torch.round(d).clamp_(-bound, bound)
    else:
        flat = d.flatten(1)
        limit = float(eps) * float(eps)
        largest = flat.abs().amax(1)
        lo = torch.zeros_like(largest)
        # at hi the largest component alone rounds to at least eps + 0.5: outside the ball
        hi = torch.where(largest > 0, (float(eps) + 1.0) / largest.clamp_min(1e-300), lo)
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            fits = (torch.round(mid[:, None] * flat) ** 2).sum(1) <= limit
            lo = torch.where(fits, mid, lo)
            hi = torch.where(fits, hi, mid)
        change = torch.round(lo[:, None] * flat).view_as(d)
    return (images.to(torch.float64) + change).clamp_(0.0, 255.0).to(torch.uint8)


def pgd(
    model,
    images: "torch.Tensor",
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step: float | None = None,
    labels: "torch.Tensor | None" = None,
    target_class: int | None = None,
    streams: np.ndarray | None = None,
    amp: str = "auto",
) -> "torch.Tensor":
    """Projected gradient descent on uint8 images against ``model``, returned as uint8 within budget.

    Args:
        model: maps float ``B x C x H x W`` in [-1, 1] to logits ``B x K`` (the project's
            classifiers); used in eval mode, its weights are not changed (no ``.grad`` is written).
        images: uint8 ``(N, C, H, W)`` on the model's device.
        eps: budget in grey levels (L-inf: per value; L2: over the C x H x W values of one image).
        norm: ``"linf"`` or ``"l2"``.
        steps: gradient steps (>= 1).
        step: step length in grey levels (L-inf: per value; L2: in norm); None: 2.5 * eps / steps.
        labels: untargeted: the classes to push away from (None: the model's predictions on the
            clean images).
        target_class: targeted: pull every image toward this class (``labels`` is then unused).
        streams: one keyed noise stream per image for the random start; None: start at zero.
        amp: ``"auto"`` (bf16 autocast on CUDA), ``"off"``.

    Returns:
        uint8 ``(N, C, H, W)`` on the same device; see :func:`quantize` for the exact bound.
    """
    delta = pgd_delta(model, images, eps=eps, norm=norm, steps=steps, step=step, labels=labels,
                      target_class=target_class, streams=streams, amp=amp)
    return quantize(images, delta, eps, norm)


def pgd_delta(model, images, *, eps, norm="linf", steps=10, step=None, labels=None, target_class=None,
              streams=None, amp="auto"):
    """The float perturbation of :func:`pgd` before rounding (same arguments): ``(N, C, H, W)``
    float32 in grey levels, inside the ball, with ``images + delta`` in [0, 255]."""
    import torch

    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not eps >= 1:
        raise ValueError(f"eps must be >= 1 grey level, got {eps}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    step = default_step(eps, steps) if step is None else float(step)
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    if amp not in ("auto", "off"):
        raise ValueError(f"amp must be 'auto' or 'off', got {amp!r}")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"pgd needs uint8 N x C x H x W images, got {images.dtype} {tuple(images.shape)}")
    if len(images) == 0:
        return torch.zeros_like(images, dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        # the gradient is needed even when the caller works under no_grad or inference mode (an
        # evaluation loop, a web request): without this PGD would fail at its first step
        with torch.inference_mode(False), torch.enable_grad():
            x = (images.clone() if images.is_inference() else images).to(torch.float32)
            return _pgd_walk(model, x, eps=eps, norm=norm, steps=int(steps), step=step, labels=labels,
                             target_class=target_class, streams=streams, amp=amp)
    finally:
        model.train(was_training)


def _pgd_walk(model, x, *, eps, norm, steps, step, labels, target_class, streams, amp):
    """PGD's steps from the random start on float images ``x`` (grey levels): the checked
    arguments of :func:`pgd_delta`; returns the detached perturbation."""
    import torch
    import torch.nn.functional as F

    device = x.device
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda" and amp == "auto" \
        else contextlib.nullcontext()
    if target_class is not None:
        goal = torch.full((len(x),), int(target_class), dtype=torch.long, device=device)
    elif labels is not None:
        goal = torch.as_tensor(labels, device=device).long()
    else:
        with torch.no_grad(), autocast:
            goal = model(x / 127.5 - 1.0).float().argmax(1)
    sign = -1.0 if target_class is not None else 1.0  # descend toward a target, ascend away
    if streams is not None:
        delta = _project(random_start(streams, tuple(x.shape), eps, norm, device), x, eps, norm)
    else:
        delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        with autocast:
            logits = model((x + delta) / 127.5 - 1.0)
        loss = F.cross_entropy(logits.float(), goal, reduction="sum")
        (grad,) = torch.autograd.grad(loss, [delta])
        with torch.no_grad():
            grad = grad * sign
            if norm == "linf":
                delta = delta + step * grad.sign()
            else:
                gnorm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                delta = delta + step * grad / gnorm
            delta = _project(delta, x, eps, norm)
    return delta.detach()


# --------------------------------------------------------------------------- the surrogate
@dataclass(frozen=True)
class Surrogate:
    """A loaded surrogate checkpoint: the model (eval mode, on one device) and what it is."""

    model: Any
    path: str
    sha256: str
    arch: str
    num_classes: int
    image_size: int  # the input's width (and its height unless ``height`` differs)
    in_channels: int
    class_names: tuple[str, ...] | None
    task: str | None
    height: int = 0  # the input's height: ``image_size`` for square networks
    #: what the surrogate was trained on, where recorded (``train_reid_surrogate``: the split's
    #: seed, counts and training keys); None otherwise
    split: dict | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the surrogate takes."""
        return (self.in_channels, self.height or self.image_size, self.image_size)

    def info(self) -> dict[str, Any]:
        # fields by hand: asdict() would deep-copy the model at every call
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "split")}
        if self.split is not None:  # the key list is for checks, not for every result row
            out["split"] = {k: v for k, v in self.split.items() if k != "train_key_list"}
        out["class_names"] = list(self.class_names) if self.class_names is not None else None
        if self.class_names is not None and len(self.class_names) > 12:  # identities: a count is enough
            out["class_names"] = list(self.class_names[:5]) + [f"... {len(self.class_names)} in all"]
        return out


_SURROGATES: "OrderedDict[tuple, Surrogate]" = OrderedDict()
#: Checkpoints kept per process (per file, its version and the device).
_LOADED_PER_KIND = 8


def _load_once(cache: OrderedDict, path: str | os.PathLike, device, missing: str, build) -> Any:
    """``build(data, sha256, resolved path)`` of the checkpoint at ``path``, its bytes read once
    (the hash and ``torch.load`` come from the same read) and kept in ``cache`` by path, mtime,
    size and device, least recently used out first; ``missing`` is the error for a path that is
    not a file."""
    import torch

    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ValueError(missing)
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size, str(torch.device(device)))
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    data = resolved.read_bytes()
    cache[key] = build(data, hashlib.sha256(data).hexdigest(), resolved)
    while len(cache) > _LOADED_PER_KIND:
        cache.popitem(last=False)
    return cache[key]


def _torch_load(data: bytes) -> dict:
    import io

    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_surrogate(path: str | os.PathLike, device="cpu") -> Surrogate:
    """Load a checkpoint of :func:`privattrib.attribution.models.save_classifier` once per process
    and device (reloaded when the file changes), in eval mode with frozen weights."""

    def build(data: bytes, sha256: str, resolved: Path) -> Surrogate:
        from privattrib.attribution.models import classifier_from_checkpoint

        try:
            blob = _torch_load(data)
            model = classifier_from_checkpoint(blob).to(device)
        except Exception:  # a file that is not a classifier checkpoint: say so, not a traceback (nor its bytes)
            raise ValueError(f"adv: model={path} is not a classifier checkpoint of privattrib") from None
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        config, extra = blob.get("config", {}), blob.get("extra") or {}
        names = extra.get("class_names")
        return Surrogate(model=model, path=str(resolved), sha256=sha256,
                         arch=str(config.get("arch")), num_classes=int(config.get("num_classes", 0)),
                         image_size=int(config.get("image_size", 0)), in_channels=int(config.get("in_channels", 0)),
                         class_names=tuple(map(str, names)) if names else None, task=extra.get("task"),
                         height=int(config.get("height") or config.get("image_size", 0)),
                         split=extra.get("split") if isinstance(extra.get("split"), dict) else None)

    return _load_once(_SURROGATES, path, device, f"adv: model={path}: no such checkpoint (make one with `privattrib "
                      "adv surrogate` or privattrib.attribution.models.save_classifier)", build)


# --------------------------------------------------------------------------- the method
_OUTPUTS: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def _cached_output(key: tuple, compute):
    """PGD is costly and deterministic: an image set perturbed for one cell of a grid (a training
    set used by two scenarios, a test set by three attackers) is computed once per process. The
    key holds the spec, the surrogate's SHA-256, the noise streams (seed and keys) and the pixels."""
    if key in _OUTPUTS:
        _OUTPUTS.move_to_end(key)
        return _OUTPUTS[key].copy()
    out = compute()
    _OUTPUTS[key] = out
    total = sum(a.nbytes for a in _OUTPUTS.values())
    while total > _OUTPUT_CACHE_BYTES and len(_OUTPUTS) > 1:
        total -= _OUTPUTS.popitem(last=False)[1].nbytes
    return out.copy()


@register_method
class AdversarialPerturbation(Obfuscation):
    """PGD perturbation against a surrogate model: empirical protection only, no guarantee."""

    name = "adv"
    summary = ("PGD adversarial perturbation (L-inf or L2 budget in grey levels) against a surrogate "
               "classifier; NO formal privacy guarantee (empirical, against that model)")
    params_spec = (
        Param("eps", float, 4.0, "budget in grey levels: per value (linf) or L2 norm of one image's change",
              minimum=1.0),
        Param("norm", str, "linf", "the budget's norm", choices=NORMS),
        Param("steps", int, 10, "PGD steps", minimum=1),
        Param("step", float, None, "step length in grey levels (default 2.5 * eps / steps)", exclusive_minimum=0.0),
        Param("target", str, "reid", "what the surrogate recognises: identities or image sources", choices=TARGETS),
        Param("goal", str, "untargeted", "away from the surrogate's prediction, or toward the class 'real' "
              "(attribution laundering)", choices=GOALS),
        Param("model", str, None, "surrogate checkpoint (privattrib adv surrogate); no ',', '=', '[' or ']'",
              required=True, keep_case=True),
    )
    privacy = "none"
    paper = ("Madry et al., 'Towards Deep Learning Models Resistant to Adversarial Attacks', ICLR 2018 (PGD); "
             "PriGAN-style privacy perturbation")
    randomized = True
    reads_local_files = True
    example = "adv:eps=4,norm=linf,steps=10,target=reid,model=surrogate.pt"

    def _check(self) -> None:
        p = self.params
        bad = [c for c in _PATH_FORBIDDEN if c in p["model"]]
        if bad or not p["model"]:
            raise ValueError(f"adv: model={p['model']!r}: a checkpoint path without {', '.join(repr(c) for c in _PATH_FORBIDDEN)} "
                             "(they separate a spec's parameters)")
        if p["goal"] == "real" and p["target"] != "attribution":
            raise ValueError("adv: goal=real (launder a fake image as a camera photo) needs target=attribution; "
                             "with target=reid use goal=untargeted")
        # The checkpoint is read at the first call (or by surrogate()), not here: an experiment
        # file may name a surrogate that `privattrib adv surrogate` makes from that same file.

    @property
    def step_used(self) -> float:
        p = self.params
        return p["step"] if p["step"] is not None else default_step(p["eps"], p["steps"])

    @property
    def noise_backend(self) -> str:
        return "fast"

    def surrogate(self, device="cpu") -> Surrogate:
        """The surrogate, loaded (once per process and device) and checked against the parameters."""
        s = load_surrogate(self.params["model"], device)
        names = s.class_names or ()
        if self.params["target"] == "attribution" and self.params["goal"] == "real" and REAL_CLASS not in names:
            raise ValueError(f"adv: goal=real needs an attribution surrogate with a class named 'real'; "
                             f"{self.params['model']} has classes {list(names) or 'not recorded'}")
        if self.params["target"] == "reid" and REAL_CLASS in names:
            raise ValueError(f"adv: target=reid, but {self.params['model']} is an attribution classifier "
                             f"(its classes include 'real'); use target=attribution")
        if s.task is not None and s.task != self.params["target"]:
            raise ValueError(f"adv: target={self.params['target']}, but {self.params['model']} was saved as a "
                             f"{s.task} model")
        return s

    def _describe_extra(self) -> dict[str, Any]:
        p = self.params
        s = self.surrogate("cpu")
        goal = "toward the class 'real' (laundering)" if p["goal"] == "real" else \
            "away from the surrogate's prediction on the clean image"
        return {
            "guarantee": ("NONE: no formal privacy guarantee. The protection is empirical, measured against the "
                          f"surrogate model below ({s.arch}, {s.num_classes} classes); other networks, other "
                          "seeds and an attacker who retrains on perturbed images may not be fooled"),
            "attack": f"PGD, {p['norm']} ball of {p['eps']:g} grey levels, {p['steps']} steps of {self.step_used:g}, "
                      f"random start from the image's keyed noise, {goal}",
            "bound": ("every value changes by at most floor(eps) grey levels" if p["norm"] == "linf" else
                      "the L2 norm of each image's change over all C x H x W values is at most eps") +
                     ", exactly, in the rounded uint8 output",
            "step_used": self.step_used,
            "surrogate": s.info(),
        }

    def _attack(self, x, streams: np.ndarray):
        """uint8 torch ``(N, C, H, W)`` on any device -> perturbed uint8, in chunks."""
        import torch

        s = self.surrogate(x.device)
        n, c, h, w = x.shape
        if (c, h, w) != s.input_shape:
            raise ValueError(f"adv: the surrogate {self.params['model']} takes {s.input_shape[1]} x {s.input_shape[2]} "
                             f"images with {s.in_channels} channel(s); got {h} x {w} with {c}")
        target = s.class_names.index(REAL_CLASS) if self.params["goal"] == "real" else None
        chunk = _CHUNK.get(x.device.type, 256)
        out = torch.empty_like(x)
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            out[sl] = pgd(s.model, x[sl], eps=self.params["eps"], norm=self.params["norm"], steps=self.params["steps"],
                          step=self.step_used, target_class=target, streams=streams[sl])
        return out

    def _forward_numpy(self, x, layout, streams):
        import torch

        nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "nhwc" else x)
        key = (self.spec, self.surrogate("cpu").sha256, hashlib.blake2b(streams.tobytes(), digest_size=16).digest(),
               hashlib.blake2b(nchw.data, digest_size=16).digest(), nchw.shape)
        out = _cached_output(key, lambda: self._attack(torch.from_numpy(nchw), streams).numpy())
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1)) if layout == "nhwc" else out

    def _forward_torch(self, x, streams):
        return self._attack(x, streams)

    def against(self, model) -> "BoundAdversarialPerturbation":
        """The same attack aimed at ``model`` instead of the surrogate (an adaptive attacker who
        knows the model he must fool); used to report white-box figures in the grids."""
        return BoundAdversarialPerturbation(self, model)


class BoundAdversarialPerturbation:
    """An ``adv`` method whose PGD targets a given in-memory model (same budget, goal, keyed
    random start); callable like a method on uint8 torch N x C x H x W batches."""

    def __init__(self, method: AdversarialPerturbation, model) -> None:
        self.method, self.model = method, model
        self.spec = method.spec + " (against the evaluated model)"

    def __call__(self, images, seed: int, keys):
        import torch

        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
        streams = _noise.image_streams(_noise.resolve_seed(seed), keys, len(x), salt=self.method.spec)
        p = self.method.params
        target = None
        if p["goal"] == "real":
            target = self.method.surrogate("cpu").class_names.index(REAL_CLASS)
        device = next(self.model.parameters()).device
        return pgd(self.model, x.to(device), eps=p["eps"], norm=p["norm"], steps=p["steps"], step=self.method.step_used,
                   target_class=target, streams=streams)


# --------------------------------------------------------------------------- adversarial training
_ADV_TRAIN_DEFAULTS = {"eps": 4.0, "norm": "linf", "steps": 3, "step": None, "goal": "untargeted", "fraction": 0.5}


def resolve_adv_train(options: Any) -> dict[str, Any]:
    """Check the ``classifier.adv_train`` options of an experiment and fill in the defaults.

    Keys: ``eps`` (grey levels, >= 1), ``norm`` (linf | l2), ``steps`` (>= 1), ``step`` (None: 2.5
    eps / steps), ``goal`` (untargeted: away from the true class; real: fake images toward
    ``real``, the laundering direction) and ``fraction`` (share of each batch perturbed, in (0, 1]).

    Raises:
        ValueError: naming the key and what is allowed.
    """
    if options is None or options is True:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(f"adv_train must be a mapping of options {sorted(_ADV_TRAIN_DEFAULTS)}, got {options!r}")
    options = {k: v for k, v in options.items() if k != "step_used"}  # resolved options resolve to themselves
    unknown = sorted(set(options) - set(_ADV_TRAIN_DEFAULTS))
    if unknown:
        raise ValueError(f"adv_train: unknown option(s) {unknown}; allowed: {sorted(_ADV_TRAIN_DEFAULTS)}")
    out = {**_ADV_TRAIN_DEFAULTS, **options}
    checks = {
        "eps": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1,
        "norm": lambda v: v in NORMS,
        "steps": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "step": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
        "goal": lambda v: v in GOALS,
        "fraction": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
    }
    allowed = {"eps": "a number >= 1 (grey levels)", "norm": " | ".join(NORMS), "steps": "an integer >= 1",
               "step": "a number > 0 or null", "goal": " | ".join(GOALS), "fraction": "a number in (0, 1]"}
    for key, ok in checks.items():
        if not ok(out[key]):
            raise ValueError(f"adv_train.{key}={out[key]!r} is not allowed; {key} must be {allowed[key]}")
    out["eps"] = float(out["eps"])
    out["fraction"] = float(out["fraction"])
    out["step_used"] = float(out["step"]) if out["step"] is not None else default_step(out["eps"], out["steps"])
    return out


class AdversarialTraining:
    """A :data:`privattrib.training.BatchTransform`: replaces a seeded share of every training
    batch by PGD examples against the current weights (Madry et al. 2018; mixed with clean
    examples as in Goodfellow et al. 2015, so clean accuracy is kept).

    Which images are perturbed and their random starts are functions of (seed, epoch, image index),
    so a run is reproducible. With ``goal="real"`` only images of other classes are perturbed,
    toward ``real_index`` (the laundering direction the detector must learn to resist).
    """

    def __init__(self, options: dict[str, Any], seed: int, real_index: int | None = None) -> None:
        self.options = resolve_adv_train(options)
        if self.options["goal"] == "real" and real_index is None:
            raise ValueError("adv_train.goal=real needs a class named 'real'")
        self.seed = int(seed)
        self.real_index = real_index

    def __call__(self, batch, labels, index, epoch: int, model):
        import torch

        o = self.options
        keys = index.detach().cpu().numpy().astype(np.int64)
        pick_streams = _noise.image_streams(self.seed, keys, len(keys), salt=f"adv-train-pick:{epoch}")
        chosen = _noise.uniforms_numpy(pick_streams, 1)[:, 0] < o["fraction"]
        if o["goal"] == "real":
            chosen &= labels.detach().cpu().numpy() != self.real_index
        rows = np.flatnonzero(chosen)
        if len(rows) == 0:
            return batch
        start_streams = _noise.image_streams(self.seed, keys[rows], len(rows), salt=f"adv-train-start:{epoch}")
        rows_t = torch.from_numpy(rows).to(batch.device)
        target = self.real_index if o["goal"] == "real" else None
        perturbed = pgd(model, batch.index_select(0, rows_t), eps=o["eps"], norm=o["norm"], steps=o["steps"],
                        step=o["step_used"], labels=labels.index_select(0, rows_t.to(labels.device)),
                        target_class=target, streams=start_streams)
        out = batch.clone()
        out[rows_t] = perturbed
        return out


# --------------------------------------------------------------------------- the one-pass generator
class PerturbationGenerator:
    """PriGAN-style one-pass perturbation: a small U-Net maps an image to ``eps * tanh(u)`` (an
    L-inf-bounded change in grey levels), trained once to fool a surrogate; applying it costs one
    forward pass instead of PGD's ``steps`` forward and backward passes.

    Built on :class:`privattrib.attacks.models.UNet` (its zero-initialised output layer makes the
    untrained generator the identity: no change).
    """

    def __init__(self, in_channels: int, eps: float, base: int = 16, depth: int = 2) -> None:
        from privattrib.attacks.models import UNet

        self.eps, self.base, self.depth, self.in_channels = float(eps), int(base), int(depth), int(in_channels)
        self.net = UNet(in_channels, base=base, depth=depth)

    def delta(self, images: "torch.Tensor") -> "torch.Tensor":
        """uint8 ``(N, C, H, W)`` -> float change in grey levels within [-eps, eps] and the pixel box."""
        import torch

        x = images.to(torch.float32)
        scaled = x / 127.5 - 1.0
        change = self.eps * torch.tanh(self.net(scaled) - scaled)
        return (x + change).clamp(0.0, 255.0) - x

    def state(self) -> dict[str, Any]:
        return {"eps": self.eps, "base": self.base, "depth": self.depth, "in_channels": self.in_channels,
                "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], device="cpu") -> "PerturbationGenerator":
        gen = cls(state["in_channels"], state["eps"], state["base"], state["depth"])
        gen.net.load_state_dict(state["state_dict"])
        gen.net.to(device).eval()
        for p in gen.net.parameters():
            p.requires_grad_(False)
        return gen


def _check_generator_options(**options) -> None:
    """Refuse generator options that would fail deep inside training (or train nothing), naming
    the option and what is allowed."""
    def integer(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1

    def number(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)

    rules = {
        "goal": (lambda v: v in GOALS, " | ".join(GOALS)),
        "eps": (lambda v: number(v) and v >= 1, "a number >= 1 (grey levels)"),
        "epochs": (integer, "an integer >= 1"),
        "batch_size": (integer, "an integer >= 1"),
        "lr": (lambda v: number(v) and v > 0, "a finite number > 0"),
        "base": (integer, "an integer >= 1"),
        "depth": (integer, "an integer >= 1"),
    }
    for name, value in options.items():
        ok, allowed = rules[name]
        if not ok(value):
            raise ValueError(f"{name} must be {allowed}, got {value!r}")


def train_perturbation_generator(
    surrogate_path: str | os.PathLike,
    images,
    path: str | os.PathLike,
    *,
    eps: float = 4.0,
    goal: str = "untargeted",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    base: int = 16,
    depth: int = 2,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
) -> Path:
    """Train a :class:`PerturbationGenerator` against a surrogate on ``images`` and save it.

    The loss is the surrogate's cross-entropy: maximised away from its own prediction on the clean
    image (``untargeted``) or minimised toward ``real`` (``goal="real"``), as PGD does.

    Args:
        surrogate_path: the checkpoint the generator learns to fool (as ``adv``'s ``model``).
        images: uint8 ``(N, C, H, W)``: images like the ones to protect (e.g. the training faces of
            a re-identification split; never the test faces the attack is measured on).
        path: the generator checkpoint to write (``adv-gen:model=PATH`` reads it).

    Returns:
        ``path``.
    """
    import torch
    import torch.nn.functional as F

    from privattrib.common import atomic_torch_save, resolve_device
    from privattrib.training import as_uint8_tensor

    _check_generator_options(goal=goal, eps=eps, epochs=epochs, batch_size=batch_size, lr=lr, base=base, depth=depth)
    dev = resolve_device(device)
    surrogate = load_surrogate(surrogate_path, dev)
    if goal == "real" and REAL_CLASS not in (surrogate.class_names or ()):
        raise ValueError(f"goal=real needs a surrogate with a class named 'real'; {surrogate_path} has none")
    images = as_uint8_tensor(images)
    if images.ndim != 4 or len(images) == 0 or tuple(images.shape[1:]) != surrogate.input_shape:
        raise ValueError(f"images: the surrogate {surrogate_path} takes N x {' x '.join(map(str, surrogate.input_shape))} "
                         f"uint8 images (N >= 1), got {' x '.join(map(str, images.shape))}")
    images = images.to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        gen = PerturbationGenerator(images.shape[1], eps, base, depth)
    gen.net.to(dev).train()
    with torch.no_grad():
        from privattrib.training import predict

        labels = torch.from_numpy(predict(surrogate.model, images, device=dev).argmax(1)).to(dev)
    target = surrogate.class_names.index(REAL_CLASS) if goal == "real" else None
    optimizer = torch.optim.Adam(gen.net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(int(seed))
    history = []
    for epoch in range(int(epochs)):
        perm = torch.randperm(len(images), generator=order).to(dev)
        total = 0.0
        for start in range(0, len(images), batch_size):
            idx = perm[start:start + batch_size]
            x = images.index_select(0, idx)
            logits = surrogate.model((x.float() + gen.delta(x)) / 127.5 - 1.0)
            if target is None:
                loss = -F.cross_entropy(logits, labels.index_select(0, idx))
            else:
                loss = F.cross_entropy(logits, torch.full_like(idx, target))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(images))
        if progress:
            print(f"generator epoch {epoch + 1}/{epochs}: loss {history[-1]:.3f}", flush=True)
    gen.net.eval()
    path = Path(path)
    atomic_torch_save({"generator": gen.state(), "goal": goal, "surrogate": surrogate.info(), "history": history,
                       "epochs": int(epochs), "lr": lr, "seed": int(seed), "n_images": len(images)}, path)
    return path


_GENERATORS: "OrderedDict[tuple, tuple[PerturbationGenerator, dict]]" = OrderedDict()


def load_generator(path: str | os.PathLike, device="cpu") -> tuple[PerturbationGenerator, dict]:
    """A generator checkpoint of :func:`train_perturbation_generator`, loaded once per process and device."""

    def build(data: bytes, sha256: str, resolved: Path) -> tuple[PerturbationGenerator, dict]:
        try:
            blob = _torch_load(data)
            gen = PerturbationGenerator.from_state(blob["generator"], device)
        except Exception as exc:  # noqa: BLE001 - a wrong file: say what it is not
            raise ValueError(f"adv-gen: model={path} is not a perturbation generator of privattrib ({exc})") from None
        return gen, {**{k: v for k, v in blob.items() if k != "generator"}, "sha256": sha256}

    return _load_once(_GENERATORS, path, device, f"adv-gen: model={path}: no such generator (make one with "
                      "`privattrib adv train-generator`)", build)


@register_method
class GeneratedPerturbation(Obfuscation):
    """A trained one-pass perturbation generator (PriGAN-style): empirical protection only."""

    name = "adv-gen"
    summary = ("a U-Net trained once to emit an L-inf-bounded perturbation that fools a surrogate, in one "
               "forward pass; NO formal privacy guarantee (empirical, against that model)")
    params_spec = (
        Param("model", str, None, "generator checkpoint (privattrib adv train-generator); no ',', '=', '[' or ']'",
              required=True, keep_case=True),
    )
    privacy = "none"
    paper = "PriGAN-style one-pass privacy perturbation; trained like PGD's objective (Madry et al., ICLR 2018)"
    reads_local_files = True
    example = "adv-gen:model=generator.pt"

    def _check(self) -> None:
        if any(c in self.params["model"] for c in _PATH_FORBIDDEN):
            raise ValueError(f"adv-gen: model={self.params['model']!r}: a path without "
                             f"{', '.join(repr(c) for c in _PATH_FORBIDDEN)}")

    def _describe_extra(self) -> dict[str, Any]:
        gen, meta = load_generator(self.params["model"], "cpu")
        s = meta.get("surrogate") or {}
        return {"guarantee": ("NONE: no formal privacy guarantee. The protection is empirical, learnt against the "
                              f"surrogate {s.get('arch')} ({s.get('num_classes')} classes)"),
                "bound": "every value changes by at most floor(eps) grey levels, exactly, in the rounded uint8 output",
                "eps": gen.eps, "goal": meta.get("goal"), "surrogate": s, "generator_sha256": meta["sha256"],
                "epochs": meta.get("epochs")}

    def surrogate(self, device="cpu") -> Surrogate:
        """The model the generator was trained to fool (its path is recorded in the generator)."""
        _, meta = load_generator(self.params["model"], "cpu")
        return load_surrogate(meta["surrogate"]["path"], device)

    def _apply(self, x):
        import torch

        gen, _ = load_generator(self.params["model"], x.device)
        if x.shape[1] != gen.in_channels:
            raise ValueError(f"adv-gen: the generator {self.params['model']} takes {gen.in_channels} channel(s), "
                             f"got {x.shape[1]}")
        out = torch.empty_like(x)
        chunk = _CHUNK.get(x.device.type, 256)
        with torch.no_grad():
            for start in range(0, len(x), chunk):
                part = x[start:start + chunk]
                out[start:start + chunk] = quantize(part, gen.delta(part), gen.eps, "linf")
        return out

    def _forward_numpy(self, x, layout, streams):
        import torch

        nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "nhwc" else x)
        out = self._apply(torch.from_numpy(nchw)).numpy()
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1)) if layout == "nhwc" else out

    def _forward_torch(self, x, streams):
        return self._apply(x)
