"""SNGAN (Miyato et al. 2018): residual generator and a spectrally normalised residual discriminator,
hinge loss. Nearest-neighbour upsampling + 3x3 convs (no transposed convs), so its frequency
fingerprint differs from the DCGAN family.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from privattrib.gans.registry import level_channels, register_arch


class GenBlock(nn.Module):
    """BN-ReLU-up-conv3-BN-ReLU-conv3, plus an upsampled 1x1 shortcut. B x c_in x H x W -> B x c_out x 2H x 2W."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DisBlock(nn.Module):
    """(ReLU)-conv3-ReLU-conv3-avgpool plus a 1x1-avgpool shortcut, all spectrally normalised.

    ``first=True`` is the "optimized" input block: no leading ReLU, shortcut pools before the 1x1.
    """

    def __init__(self, c_in: int, c_out: int, first: bool = False):
        super().__init__()
        self.first = first
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.shortcut = spectral_norm(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        s = self.shortcut(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.shortcut(x), 2)
        return h + s


class SNGANGenerator(nn.Module):
    """z -> linear 4x4 -> residual up blocks -> BN-ReLU-conv3-tanh.

    Shape:
        - Input: B x z_dim.
        - Output: B x channels x size x size in [-1, 1].
    """

    def __init__(self, size: int, channels: int, width: int, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        ch = level_channels(size, width) + [width]
        self.fc = nn.Linear(z_dim, ch[0] * 16)
        self.blocks = nn.Sequential(*[GenBlock(a, b) for a, b in zip(ch[:-1], ch[1:])])
        self.out = nn.Sequential(nn.BatchNorm2d(ch[-1]), nn.ReLU(True), nn.Conv2d(ch[-1], channels, 3, 1, 1), nn.Tanh())
        self._c0 = ch[0]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self._c0, 4, 4)
        return self.out(self.blocks(h))


class SNGANDiscriminator(nn.Module):
    """Spectrally normalised residual blocks down to 4x4, ReLU, global sum pooling, SN linear.

    Shape:
        - Input: B x channels x size x size.
        - Output: B logits.
    """

    def __init__(self, size: int, channels: int, width: int):
        super().__init__()
        ch = [width] + level_channels(size, width)[::-1][1:]  # size/2 ... 4
        blocks = [DisBlock(channels, ch[0], first=True)]
        blocks += [DisBlock(a, b) for a, b in zip(ch[:-1], ch[1:])]
        self.blocks = nn.Sequential(*blocks)
        self.fc = spectral_norm(nn.Linear(ch[-1], 1))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
                nn.init.xavier_uniform_(w)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.fc(h).flatten()


@register_arch(
    "sngan",
    description="SNGAN: residual nets, spectral norm in the discriminator, hinge loss",
    loss="hinge",
    fingerprint="nearest upsampling + 3x3 convs in residual blocks; spectral norm; hinge loss",
    # Two-timescale update (Heusel et al. 2017) instead of 5 critic steps: the same stability at a
    # fifth of the discriminator cost, which matters on a CPU.
    n_critic=1,
    lr_g=1e-4,
    lr_d=4e-4,
    betas=(0.0, 0.9),
)
def sngan(size: int, channels: int, width: int, z_dim: int):
    return SNGANGenerator(size, channels, width, z_dim), SNGANDiscriminator(size, channels, width)
