"""Attribution classifiers: one registry, one decorated builder per architecture (timm style).

Every classifier takes uint8-derived float input in [-1, 1], shape B x C x H x W (the training loop
in :mod:`privattrib.training` does the scaling on the device) and returns logits B x K.

Registered names:

- ``yu2019``: the network of Yu, Davis, Fritz (ICCV 2019), as in their ``C_patch`` with
  ``fmap_base=1024, fmap_max=512, latent_res=-1, mode='postpool'``: at every resolution from the
  input down to 8 x 8 two reflect-padded 3x3 convolutions and a 2x2 average pool (channels
  16/32, 32/64, 64/128, 128/256, 256/512 for 128/64/32/16/8 px), one 3x3 convolution of 512 at
  4 x 4, dense 8192 -> 512 -> K, LeakyReLU 0.2, no normalisation, no minibatch-stddev layer, and
  ProGAN's equalized learning rate (weights drawn N(0, 1), multiplied by He's constant at run
  time). Smaller inputs use fewer stages and end at 4 x 4. Any size >= 8 works: a stage halves
  while the side is 8 or more (rounding down, as the pool does), so 48 px runs three stages and
  ends at 6 x 6, with the widths of the 32 px network; powers of two give exactly the layout above.
- ``resnet18``: ResNet-18 (BasicBlock, 2-2-2-2, batch norm) written here, with a stem chosen for
  the input size (no early downsampling for small images: GAN fingerprints live in the highest
  frequencies).
- ``dct``: Frank et al. (ICML 2020): orthonormal 2-D DCT-II per channel, ``log(|DCT| + eps)``,
  standardised per coefficient with training-set statistics kept as buffers, then logistic
  regression (one linear layer, trained by the shared loop with softmax cross-entropy).

Add a classifier with::

    @register_classifier("mynet")
    def mynet(num_classes: int, image_size: int, in_channels: int, width: int = 64) -> nn.Module:
        ...

Every keyword option of the builder (with its default) becomes a resolved option recorded in
``model.classifier_config`` and written beside each checkpoint.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privattrib.common import atomic_torch_save, atomic_write_text
from privattrib.layers import EqualizedConv2d, EqualizedLinear

__all__ = [
    "make_classifier",
    "register_classifier",
    "available_classifiers",
    "classifier_options",
    "save_classifier",
    "load_classifier",
    "classifier_from_checkpoint",
    "EqualizedConv2d",
    "EqualizedLinear",
    "Yu2019Classifier",
    "ResNet18Classifier",
    "DCTClassifier",
    "dct_matrix",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# Other packages that register classifiers here; imported on first lookup so that every name is
# known wherever the registry is used (e.g. loading a re-identification checkpoint).
_PROVIDERS = ("privattrib.attacks.models",)


def _load_providers() -> None:
    import importlib

    for module in _PROVIDERS:
        importlib.import_module(module)
_BASE_ARGS = ("num_classes", "image_size", "in_channels")


def register_classifier(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(num_classes, image_size, in_channels, **options)`` as ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        params = list(inspect.signature(builder).parameters)
        if tuple(params[:3]) != _BASE_ARGS:
            raise TypeError(f"classifier builder {builder.__name__} must start with {_BASE_ARGS}")
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"classifier {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return wrap


def available_classifiers() -> list[str]:
    """Sorted names accepted by :func:`make_classifier`."""
    _load_providers()
    return sorted(_REGISTRY)


def classifier_options(name: str) -> dict[str, Any]:
    """The keyword options of classifier ``name`` with their defaults."""
    builder = _builder(name)
    return {
        p.name: p.default
        for p in list(inspect.signature(builder).parameters.values())[3:]
        if p.kind is inspect.Parameter.KEYWORD_ONLY or p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    }


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        _load_providers()
    if name not in _REGISTRY:
        raise ValueError(f"unknown classifier {name!r}; available: {', '.join(available_classifiers())}")
    return _REGISTRY[name]


def make_classifier(
    name: str,
    num_classes: int,
    image_size: int,
    in_channels: int = 3,
    *,
    seed: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered classifier and record every resolved option on it.

    Args:
        name: a name from :func:`available_classifiers`.
        num_classes: K, the number of output logits (>= 2).
        image_size: side of the square input images in pixels.
        in_channels: C, 1 (grey) or 3 (RGB).
        seed: when given, the weights are initialised from this seed without touching the global
            random state (so two calls with the same seed give identical models).
        **options: architecture options of that classifier; unknown ones are refused.

    Returns:
        the module, with ``model.classifier_config`` = ``{"arch": name, "num_classes": K,
        "image_size": S, "in_channels": C, **resolved_options}`` (JSON-serialisable).
    """
    builder = _builder(name)
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}")
    allowed = classifier_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"classifier {name!r} has no option(s) {unknown}; allowed: {sorted(allowed) or 'none'}"
        )
    resolved = {**allowed, **options}
    if seed is None:
        model = builder(int(num_classes), int(image_size), int(in_channels), **resolved)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = builder(int(num_classes), int(image_size), int(in_channels), **resolved)
    model.classifier_config = {
        "arch": name,
        "num_classes": int(num_classes),
        "image_size": int(image_size),
        "in_channels": int(in_channels),
        **{k: _jsonable(v) for k, v in resolved.items()},
    }
    return model


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def save_classifier(model: nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (atomically) and its resolved options beside it.

    The checkpoint holds ``{"config": model.classifier_config, "state_dict": ..., "extra": extra}``;
    ``path`` with suffix ``.json`` gets ``{"classifier": config, **extra}`` in readable form.
    """
    path = Path(path)
    config = getattr(model, "classifier_config", None)
    if config is None:
        raise ValueError("model has no classifier_config; build it with make_classifier")
    module = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    atomic_torch_save({"config": config, "state_dict": state, "extra": extra or {}}, path)
    atomic_write_text(
        path.with_suffix(".json"),
        json.dumps({"classifier": config, **(extra or {})}, indent=2, sort_keys=True, default=str),
    )
    return path


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a classifier written by :func:`save_classifier`, weights loaded, on ``device``."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    return classifier_from_checkpoint(blob).to(device)


def classifier_from_checkpoint(blob: dict) -> nn.Module:
    """The classifier of a checkpoint already read with ``torch.load`` (on the CPU), for a caller
    that also reads the checkpoint's ``extra``."""
    config = dict(blob["config"])
    name = config.pop("arch")
    base = {k: config.pop(k) for k in _BASE_ARGS}
    model = make_classifier(name, **base, **config)
    model.load_state_dict(blob["state_dict"])
    return model


# --------------------------------------------------------------------------------------------
# Equalized learning rate layers (Karras et al., ProGAN, ``use_wscale=True``)


class Yu2019Classifier(nn.Module):
    """Yu et al. (2019) attribution network; see the module docstring.

    Shape:
        input B x C x S x S in [-1, 1] (S >= 8) -> logits B x K.
    """

    def __init__(
        self, num_classes: int, image_size: int, in_channels: int, fmap_base: int = 1024,
        fmap_max: int = 512, equalized_lr: bool = True, padding_mode: str = "reflect",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"yu2019 image_size must be >= 8, got {image_size}")
        stages, side = 0, image_size
        while side >= 8:  # each stage halves the side (the pool rounds down) until it is 4-7
            stages, side = stages + 1, side // 2

        def nf(stage: int) -> int:  # ProGAN's feature-map rule with fmap_decay = 1
            return min(int(fmap_base / 2.0**stage), fmap_max)

        def conv(cin: int, cout: int) -> nn.Module:
            if equalized_lr:
                return EqualizedConv2d(cin, cout, 3, padding_mode=padding_mode)
            return nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding_mode)

        def dense(fin: int, fout: int, gain: float) -> nn.Module:
            return EqualizedLinear(fin, fout, gain) if equalized_lr else nn.Linear(fin, fout)

        act = nn.LeakyReLU(negative_slope)
        layers: list[nn.Module] = []
        channels = in_channels
        # res: log2 of the side the stage would have in the power-of-two network of as many stages
        for res in range(stages + 2, 2, -1):
            layers += [conv(channels, nf(res - 1)), act, conv(nf(res - 1), nf(res - 2)), act,
                       nn.AvgPool2d(2)]
            channels = nf(res - 2)
        layers += [conv(channels, nf(1)), act]  # side x side, 4 x 4 for powers of two
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), dense(nf(1) * side * side, nf(1), math.sqrt(2)), act, dense(nf(1), num_classes, 1.0)
        )
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"yu2019 built for {self.image_size} px input, got {tuple(x.shape[-2:])}")
        return self.head(self.features(x))


@register_classifier("yu2019")
def yu2019(
    num_classes: int, image_size: int, in_channels: int, fmap_base: int = 1024, fmap_max: int = 512,
    equalized_lr: bool = True, padding_mode: str = "reflect",
) -> nn.Module:
    """Yu et al. 2019 (``C_patch``, postpool, dense head). ``equalized_lr=False`` is for ablation."""
    return Yu2019Classifier(num_classes, image_size, in_channels, fmap_base, fmap_max, equalized_lr,
                            padding_mode)


# --------------------------------------------------------------------------------------------
# ResNet-18


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)  # each residual branch starts as identity (Goyal et al. 2017)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet18Classifier(nn.Module):
    """ResNet-18 (He et al. 2016) with an input-size-aware stem.

    ``stem="small"``: 3x3 stride-1 conv, no max-pool (CIFAR style; keeps the highest frequencies);
    ``stem="imagenet"``: 7x7 stride-2 conv + 3x3 stride-2 max-pool.

    Shape:
        input B x C x H x W in [-1, 1] -> logits B x K (global average pooling, any H, W >= 8).
    """

    def __init__(self, num_classes: int, in_channels: int, stem: str, width: int = 64) -> None:
        super().__init__()
        if stem == "small":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
            )
        elif stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
        blocks: list[nn.Module] = []
        cin = width
        for i, mult in enumerate((1, 2, 4, 8)):
            cout = width * mult
            blocks += [_BasicBlock(cin, cout, 1 if i == 0 else 2), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_classifier("resnet18")
def resnet18(
    num_classes: int, image_size: int, in_channels: int, stem: str = "auto", width: int = 64
) -> nn.Module:
    """ResNet-18; ``stem="auto"`` is ``"small"`` below 128 px and ``"imagenet"`` from 128 px."""
    if image_size < 8:
        raise ValueError(f"resnet18 needs image_size >= 8, got {image_size}")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    if stem == "auto":
        stem = "small" if image_size < 128 else "imagenet"
    return ResNet18Classifier(num_classes, in_channels, stem, width)


# --------------------------------------------------------------------------------------------
# DCT spectrum + logistic regression (Frank et al. 2020)


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): ``D @ x`` is ``scipy.fft.dct(x, norm="ortho")``."""
    k = torch.arange(n, dtype=dtype)[:, None]
    i = torch.arange(n, dtype=dtype)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


class DCTClassifier(nn.Module):
    """log|DCT-II| per channel, per-coefficient standardisation, then a linear layer (logistic
    regression over K classes).

    The standardisation statistics are buffers fitted on the training images by
    :meth:`fit_statistics` (the shared training loop calls it before the first step when the
    statistics are not fitted yet), so they travel with every checkpoint.

    Shape:
        input B x C x S x S in [-1, 1] -> logits B x K; features B x (C*S*S).
    """

    def __init__(self, num_classes: int, image_size: int, in_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = float(eps)
        self.register_buffer("dct", dct_matrix(image_size).float())
        shape = (in_channels, image_size, image_size)
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("statistics_fitted", torch.tensor(False))
        # A host-side mirror of the buffer, so forward() never syncs with the GPU to check it.
        self._fitted = False
        self.register_load_state_dict_post_hook(_sync_fitted_flag)
        self.linear = nn.Linear(in_channels * image_size * image_size, num_classes)
        nn.init.zeros_(self.linear.weight)  # logistic regression: start from the uniform prediction
        nn.init.zeros_(self.linear.bias)

    def log_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``log(|D x D^T| + eps)`` per channel in float32 (never bf16: small coefficients matter)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            d = self.dct
            return torch.log(torch.abs(d @ x @ d.T) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fitted:
            # A silent identity standardisation would make training badly conditioned.
            raise RuntimeError("DCTClassifier.fit_statistics(train_images) must run before use")
        z = (self.log_spectrum(x) - self.mean) / self.std
        return self.linear(torch.flatten(z, 1))

    @torch.no_grad()
    def fit_statistics(self, images: torch.Tensor | np.ndarray, batch_size: int = 512) -> None:
        """Fit per-coefficient mean and std of the log spectrum on uint8 images N x C x S x S.

        Accumulates in float64 on the model's device (Chan et al. parallel variance).
        """
        device = self.dct.device
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"fit_statistics wants uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        if len(images) < 2:
            raise ValueError("fit_statistics needs at least two images")
        total = 0
        mean = torch.zeros(self.mean.shape, dtype=torch.float64, device=device)
        m2 = torch.zeros_like(mean)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size].to(device, non_blocking=True)
            spec = self.log_spectrum(chunk.float() / 127.5 - 1.0).double()
            n_b = len(spec)
            mean_b = spec.mean(0)
            m2_b = ((spec - mean_b) ** 2).sum(0)
            delta = mean_b - mean
            new_total = total + n_b
            mean += delta * (n_b / new_total)
            m2 += m2_b + delta**2 * (total * n_b / new_total)
            total = new_total
        std = torch.sqrt(m2 / (total - 1)).clamp_min(1e-6)
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        self.statistics_fitted.fill_(True)
        self._fitted = True


def _sync_fitted_flag(module: nn.Module, incompatible_keys: Any) -> None:
    module._fitted = bool(module.statistics_fitted)


@register_classifier("dct")
def dct(num_classes: int, image_size: int, in_channels: int, eps: float = 1e-6) -> nn.Module:
    """Frank et al. 2020 DCT baseline: log-spectrum, standardised, logistic regression."""
    return DCTClassifier(num_classes, image_size, in_channels, eps)
