"""GAN objectives. Each takes discriminator outputs (B logits / critic scores, float32) and returns
a scalar; the discriminator losses are what the discriminator minimises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(kind: str, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """Discriminator loss (penalties are added by the trainer).

    Args:
        kind: ``"ns"``, ``"ls"``, ``"wgan-gp"`` or ``"hinge"``.
        real_out: B_r outputs on real images.
        fake_out: B_f outputs on generated images.
    """
    if kind == "ns":
        return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()
    if kind == "ls":
        return 0.5 * ((real_out - 1).pow(2).mean() + fake_out.pow(2).mean())
    if kind == "wgan-gp":
        return fake_out.mean() - real_out.mean()
    if kind == "hinge":
        return F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def g_loss(kind: str, fake_out: torch.Tensor) -> torch.Tensor:
    """Generator loss on discriminator outputs for generated images (B_f)."""
    if kind == "ns":
        return F.softplus(-fake_out).mean()
    if kind == "ls":
        return 0.5 * (fake_out - 1).pow(2).mean()
    if kind in ("wgan-gp", "hinge"):
        return -fake_out.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def gradient_penalty(
    discriminator, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates, in fp32.

    Args:
        real, fake: B x C x H x W, same B.
        generator: source of the interpolation weights (for reproducible runs).
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
    x_hat = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        out = discriminator(x_hat).float()
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()
