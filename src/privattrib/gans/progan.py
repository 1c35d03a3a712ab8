"""ProGAN-like nets (Karras et al. 2018): nearest upsampling + 3x3 convs, pixel norm, equalised
learning rate, minibatch standard deviation, WGAN-GP loss with drift penalty.

Progressive growing is not used: the full-resolution nets train from the start (as in many later
reimplementations). The layers that shape the fingerprint -- nearest upsampling, pixelwise feature
normalisation, runtime weight scaling, a linear 1x1 toRGB -- are those of the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from privattrib.gans.registry import level_channels, register_arch
from privattrib.layers import EqualizedConv2d, EqualizedLinear


def equalized_conv(c_in: int, c_out: int, kernel: int, gain: float = math.sqrt(2)) -> nn.Module:
    """ProGAN's convolution: equalised learning rate, zero padding (the attribution net reflects)."""
    return EqualizedConv2d(c_in, c_out, kernel, gain=gain, padding_mode="zeros")


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each pixel's feature vector to unit RMS over channels (dim 1)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor) -> torch.Tensor:
    """Append one feature map: the batch standard deviation averaged over features and pixels.

    B x C x H x W -> B x (C+1) x H x W. Lets the discriminator see a lack of variety (collapse).
    """
    std = torch.sqrt(x.float().var(dim=0, unbiased=False) + 1e-8).mean().to(x.dtype)
    return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class ProGANGenerator(nn.Module):
    """pixel-normed z -> 4x4 (linear + conv3) -> [nearest x2, conv3, conv3] per level -> 1x1 toRGB.

    LeakyReLU 0.2 and pixel norm after every conv. Output is linear (no tanh), as in ProGAN;
    sampling clamps to [-1, 1].

    Shape:
        - Input: B x z_dim.
        - Output: B x channels x size x size.
    """

    def __init__(self, size: int, channels: int, width: int, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        ch = level_channels(size, width) + [width]
        self._c0 = ch[0]
        self.fc = EqualizedLinear(z_dim, ch[0] * 16, gain=math.sqrt(2) / 4)
        self.conv0 = equalized_conv(ch[0], ch[0], 3)
        self.levels = nn.ModuleList(
            nn.ModuleList([equalized_conv(a, b, 3), equalized_conv(b, b, 3)]) for a, b in zip(ch[:-1], ch[1:])
        )
        self.to_rgb = equalized_conv(ch[-1], channels, 1, gain=1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        act = lambda t: pixel_norm(F.leaky_relu(t, 0.2))  # noqa: E731
        h = act(self.fc(pixel_norm(z)).view(z.shape[0], self._c0, 4, 4))
        h = act(self.conv0(h))
        for conv_a, conv_b in self.levels:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = act(conv_b(act(conv_a(h))))
        return self.to_rgb(h)


class ProGANDiscriminator(nn.Module):
    """1x1 fromRGB -> [conv3, conv3, avgpool] per level -> minibatch stddev, conv3, dense, dense.

    Shape:
        - Input: B x channels x size x size.
        - Output: B critic scores.
    """

    def __init__(self, size: int, channels: int, width: int):
        super().__init__()
        ch = [width] + level_channels(size, width)[::-1]  # size ... 4
        self.from_rgb = equalized_conv(channels, ch[0], 1)
        self.levels = nn.ModuleList(
            nn.ModuleList([equalized_conv(a, a, 3), equalized_conv(a, b, 3)]) for a, b in zip(ch[:-1], ch[1:])
        )
        self.conv_final = equalized_conv(ch[-1] + 1, ch[-1], 3)
        self.fc1 = EqualizedLinear(ch[-1] * 16, ch[-1])
        self.fc2 = EqualizedLinear(ch[-1], 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.from_rgb(x), 0.2)
        for conv_a, conv_b in self.levels:
            h = F.leaky_relu(conv_b(F.leaky_relu(conv_a(h), 0.2)), 0.2)
            h = F.avg_pool2d(h, 2)
        h = F.leaky_relu(self.conv_final(minibatch_stddev(h)), 0.2)
        h = F.leaky_relu(self.fc1(h.flatten(1)), 0.2)
        return self.fc2(h).flatten()


@register_arch(
    "progan",
    description="ProGAN-like: nearest upsampling + convs, pixel norm, equalised lr, WGAN-GP + drift",
    loss="wgan-gp",
    fingerprint="nearest upsampling, pixel norm, equalised learning rate, linear 1x1 toRGB",
    n_critic=1,
    lr_g=1e-3,
    lr_d=1e-3,
    betas=(0.0, 0.99),
    gp_weight=10.0,
    drift=1e-3,
)
def progan(size: int, channels: int, width: int, z_dim: int):
    return ProGANGenerator(size, channels, width, z_dim), ProGANDiscriminator(size, channels, width)
