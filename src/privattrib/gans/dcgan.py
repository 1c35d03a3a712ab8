"""DCGAN family (Radford et al. 2016): transposed-convolution generator, strided-conv discriminator.

Three registry entries share these nets:

- ``dcgan``: batch norm in both nets, non-saturating logistic loss.
- ``lsgan``: the same nets with the least-squares loss (Mao et al. 2017).
- ``dp-dcgan``: the DCGAN generator, and a discriminator with GroupNorm instead of batch norm
  (Opacus cannot compute per-sample gradients through batch norm, which mixes samples), trained
  with DP-SGD (Zhang et al. 2018, dp-GAN).
"""

from __future__ import annotations

import torch
from torch import nn

from privattrib.gans.registry import level_channels, register_arch


class DCGANGenerator(nn.Module):
    """z -> 4x4 (transposed conv) -> x2 transposed convs with BN + ReLU -> tanh image.

    Args:
        size: output side, 32 / 64 / 128.
        channels: output channels (1 or 3).
        width: channels of the last hidden stage; earlier stages have up to 8x this.
        z_dim: latent size.

    Shape:
        - Input: B x z_dim.
        - Output: B x channels x size x size, in [-1, 1].
    """

    def __init__(self, size: int, channels: int, width: int, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        ch = level_channels(size, width)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, ch[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ch[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        # 8 groups or fewer (GroupNorm needs c % groups == 0); per-sample, so Opacus can clip it.
        return nn.GroupNorm(min(8, c), c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class DCGANDiscriminator(nn.Module):
    """image -> strided 4x4 convs (LeakyReLU 0.2) down to 4x4 -> one logit.

    Args:
        size, channels, width: as the generator.
        norm: ``"batch"`` (DCGAN), ``"group"`` (DP-trainable) or ``"none"`` (WGAN-GP critic).

    Shape:
        - Input: B x channels x size x size in [-1, 1].
        - Output: B logits.
    """

    def __init__(self, size: int, channels: int, width: int, norm: str = "batch"):
        super().__init__()
        ch = level_channels(size, width)[::-1]  # size/2 ... 4
        layers: list[nn.Module] = [nn.Conv2d(channels, ch[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm == "none"), _norm(norm, c_out),
                       nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(ch[-1], 1, 4, 1, 0)]
        self.net = nn.Sequential(*layers)
        init_dcgan_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def init_dcgan_(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@register_arch(
    "dcgan",
    description="DCGAN: transposed convs, batch norm, non-saturating loss",
    loss="ns",
    fingerprint="4x4 stride-2 transposed convolutions (checkerboard), batch norm, logistic loss",
)
def dcgan(size: int, channels: int, width: int, z_dim: int):
    return DCGANGenerator(size, channels, width, z_dim), DCGANDiscriminator(size, channels, width, "batch")


@register_arch(
    "lsgan",
    description="LSGAN: DCGAN nets, least-squares loss",
    loss="ls",
    fingerprint="DCGAN nets; least-squares loss changes what the generator is pushed towards",
)
def lsgan(size: int, channels: int, width: int, z_dim: int):
    return DCGANGenerator(size, channels, width, z_dim), DCGANDiscriminator(size, channels, width, "batch")


@register_arch(
    "dp-dcgan",
    description="DP-DCGAN: DCGAN whose discriminator is trained with DP-SGD (Opacus); reports (eps, delta)",
    loss="ns",
    fingerprint="DCGAN generator; noisy clipped discriminator gradients (GroupNorm discriminator)",
    dp=True,
    # Per-sample gradients (Opacus hooks, unfold-based conv grad samplers) are kept in fp32.
    amp_safe=False,
)
def dp_dcgan(size: int, channels: int, width: int, z_dim: int):
    return DCGANGenerator(size, channels, width, z_dim), DCGANDiscriminator(size, channels, width, "group")
