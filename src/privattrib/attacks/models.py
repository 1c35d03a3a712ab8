"""Networks of the attacks: the McPherson/Fan re-identification CNN and the reconstruction U-Net.

``mcpherson2016`` is registered in the shared classifier registry
(:func:`privattrib.attribution.models.register_classifier`), so the one training loop of
:mod:`privattrib.training` trains it like any attribution classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from privattrib.attribution.models import register_classifier

__all__ = ["McPherson2016", "UNet"]


class McPherson2016(nn.Module):
    """The re-identification CNN of McPherson, Shokri, Shmatikov (2016), as used by Fan (2018).

    Three 3x3 convolutions (32, 64, 128 channels, padding 1), each followed by ReLU and 2x2 max
    pooling, then a dense layer of 1024 units with ReLU, dropout 0.5, and a linear layer to K.

    Args:
        num_classes: K identities.
        image_size: width W of the input, and its height unless ``height`` is given (>= 8; the
            dense input is 128 * (H // 8) * (W // 8)).
        in_channels: C.
        dropout: dropout probability before the last layer.
        height: H when the input is not square (AT&T's faces are 92 wide and 112 high).

    Shape:
        input B x C x H x W float in [-1, 1]; output B x K logits.
    """

    def __init__(self, num_classes: int, image_size: int, in_channels: int, dropout: float = 0.5,
                 height: int | None = None):
        super().__init__()
        height = image_size if height is None else int(height)
        if min(image_size, height) < 8:
            raise ValueError(f"mcpherson2016 needs images of at least 8 x 8 (three 2x2 poolings), "
                             f"got {height} x {image_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in (32, 64, 128):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * (height // 8) * (image_size // 8), 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_classifier("mcpherson2016")
def mcpherson2016(num_classes: int, image_size: int, in_channels: int, dropout: float = 0.5,
                  height: int | None = None) -> nn.Module:
    """McPherson et al. 2016 / Fan 2018 re-identification CNN (3 conv 32/64/128, dense 1024, dropout);
    ``image_size`` is the width, ``height`` the height of a non-square input."""
    return McPherson2016(num_classes, image_size, in_channels, dropout=dropout, height=height)


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = min(8, cout)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(groups, cout),
        nn.SiLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(groups, cout),
        nn.SiLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015) that restores obfuscated images.

    ``depth`` 2x2 max-pool downsamplings with double 3x3 convolutions (GroupNorm, SiLU), nearest
    upsampling with skip connections, and a 1x1 output convolution that predicts a residual added to
    the input: the network only has to learn what the obfuscation removed. GroupNorm (not batch
    norm) keeps small batches and evaluation consistent.

    Args:
        in_channels: C.
        base: channels at full resolution (doubles at each level).
        depth: number of downsamplings; any input size works (inputs are reflect-padded to a
            multiple of 2**depth and cropped back).

    Shape:
        input B x C x H x W float in [-1, 1]; output B x C x H x W float (not clipped).
    """

    def __init__(self, in_channels: int = 3, base: int = 32, depth: int = 3):
        super().__init__()
        if in_channels < 1 or base < 1 or depth < 1:
            raise ValueError(f"in_channels, base and depth must be >= 1, got {in_channels}, {base}, {depth}")
        self.depth = depth
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(_block(cin, w))
            cin = w
        self.bottom = _block(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            self.up.append(_block(widths[i + 1] + widths[i], widths[i]))
        self.out = nn.Conv2d(widths[0], in_channels, 1)
        nn.init.zeros_(self.out.weight)  # start as the identity map: restored = obfuscated
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        mult = 2**self.depth
        pad_h, pad_w = (-h) % mult, (-w) % mult
        y = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        skips = []
        for block in self.down:
            y = block(y)
            skips.append(y)
            y = F.max_pool2d(y, 2)
        y = self.bottom(y)
        for block, skip in zip(self.up, reversed(skips)):
            y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = block(torch.cat([y, skip], dim=1))
        y = self.out(y)[..., :h, :w]
        return x + y
