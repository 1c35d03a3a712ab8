"""Layers shared by several model families (attribution classifiers, GAN zoo)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualizedConv2d(nn.Module):
    """Conv2d whose weight is stored N(0, 1) and multiplied by ``gain / sqrt(fan_in)`` at run time.

    With Adam this equalises the effective learning rate of every layer, which is what lets the
    deep, normalisation-free Yu et al. network train at lr 1e-3 (plain init can stay at chance).

    Shape:
        input B x C_in x H x W -> output B x C_out x H x W (odd kernel, same-size padding).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, gain: float = math.sqrt(2),
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if padding_mode not in ("reflect", "zeros"):
            raise ValueError(f"padding_mode must be 'reflect' or 'zeros', got {padding_mode!r}")
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.pad = kernel_size // 2
        self.padding_mode = padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.scale
        if self.pad == 0:
            return F.conv2d(x, weight, self.bias)
        if self.padding_mode == "reflect":
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
            return F.conv2d(x, weight, self.bias)
        return F.conv2d(x, weight, self.bias, padding=self.pad)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, scale={self.scale:.4g}, padding_mode={self.padding_mode}"


class EqualizedLinear(nn.Module):
    """Linear layer with ProGAN's run-time weight scaling. Shape: B x in -> B x out."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, scale={self.scale:.4g}"
