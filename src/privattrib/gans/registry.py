"""One registry for GAN architectures: adding a model is one decorated function (timm style).

An architecture is a builder ``build(size, channels, width, z_dim) -> (generator, discriminator)``
plus the training recipe that belongs to it (loss, learning rates, critic steps, DP or not).
The recipe lives beside the builder so that ``config.json`` of a run can name every choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from torch import nn

SUPPORTED_SIZES = (32, 64, 128)
LOSSES = ("ns", "ls", "wgan-gp", "hinge")


@dataclass(frozen=True)
class GanArch:
    """An architecture and its training recipe.

    Attributes:
        name: registry key (``"dcgan"``).
        description: one line for ``privattrib gan archs``.
        build: ``build(size, channels, width, z_dim) -> (G, D)``; ``G(z)`` maps B x z_dim noise
            to B x channels x size x size images in [-1, 1] (tanh), ``D(x)`` maps images to B logits.
        loss: ``"ns"`` non-saturating logistic, ``"ls"`` least squares, ``"wgan-gp"`` Wasserstein
            with gradient penalty, ``"hinge"``.
        fingerprint: what differs from the others (upsampling, normalisation, loss) -- the reason it
            is in the zoo.
        n_critic: discriminator updates per generator update.
        lr_g, lr_d, betas: Adam settings.
        gp_weight: gradient-penalty weight (``wgan-gp`` loss only).
        drift: ProGAN's drift penalty on real critic outputs (keeps them near 0).
        dp: the discriminator is trained with DP-SGD (Opacus); the generator only sees it.
        amp_safe: bf16 autocast is allowed on CUDA (False where per-sample gradients or the
            penalty need fp32).
    """

    name: str
    description: str
    build: Callable[[int, int, int, int], tuple[nn.Module, nn.Module]]
    loss: str
    fingerprint: str
    n_critic: int = 1
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    gp_weight: float = 0.0
    drift: float = 0.0
    dp: bool = False
    amp_safe: bool = True
    extra: dict = field(default_factory=dict)

    def recipe(self) -> dict:
        """The training choices as a JSON-ready dict (everything but the builder)."""
        d = asdict(self)
        d.pop("build")
        d["betas"] = list(self.betas)
        return d


_REGISTRY: dict[str, GanArch] = {}


def register_arch(name: str, *, description: str, loss: str, fingerprint: str, **recipe):
    """Decorator: register ``build(size, channels, width, z_dim)`` under ``name``.

    Example::

        @register_arch("dcgan", description="...", loss="ns", fingerprint="...")
        def dcgan(size, channels, width, z_dim):
            return DCGANGenerator(...), DCGANDiscriminator(...)
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")

    def decorator(build):
        if name in _REGISTRY:
            raise ValueError(f"GAN architecture {name!r} is registered twice")
        _REGISTRY[name] = GanArch(
            name=name, description=description, build=build, loss=loss, fingerprint=fingerprint, **recipe
        )
        return build

    return decorator


def _ensure_loaded() -> None:
    # The architecture modules register themselves on import.
    from privattrib.gans import dcgan, progan, sngan, wgan  # noqa: F401


def available_archs() -> list[str]:
    """Names of all registered architectures, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_arch(name: str) -> GanArch:
    """The registered architecture ``name``; a ValueError lists the choices otherwise."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"unknown GAN architecture {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def check_size(size: int) -> int:
    """Refuse sizes the builders do not support (depth is chosen by size)."""
    if size not in SUPPORTED_SIZES:
        raise ValueError(f"GAN image size must be one of {SUPPORTED_SIZES}, got {size}")
    return size


def level_channels(size: int, width: int, cap: int = 8) -> list[int]:
    """Channels per resolution for a net of depth ``log2(size) - 2``.

    Returns one entry per resolution 4, 8, ..., size/2: ``width * min(cap, 2**(levels-1-i))``,
    so the 4x4 stage is widest and the last stage before ``size`` has ``width`` channels.
    """
    check_size(size)
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    levels = size.bit_length() - 3  # 32 -> 3, 64 -> 4, 128 -> 5
    return [width * min(cap, 2 ** (levels - 1 - i)) for i in range(levels)]
