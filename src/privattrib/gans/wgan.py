"""WGAN-GP (Gulrajani et al. 2017): DCGAN generator, a critic with no batch norm, gradient penalty.

Batch norm in the critic would make the penalty on one interpolate depend on the rest of the
batch, which the per-sample gradient-norm constraint forbids; so the critic has no normalisation.
"""

from __future__ import annotations

from privattrib.gans.dcgan import DCGANDiscriminator, DCGANGenerator
from privattrib.gans.registry import register_arch


@register_arch(
    "wgan-gp",
    description="WGAN-GP: DCGAN generator, norm-free critic, Wasserstein loss + gradient penalty",
    loss="wgan-gp",
    fingerprint="transposed convs; critic without normalisation; Wasserstein objective",
    n_critic=5,
    lr_g=1e-4,
    lr_d=1e-4,
    betas=(0.0, 0.9),
    gp_weight=10.0,
    # The penalty is computed in fp32 (double backward); the forward passes may use bf16.
)
def wgan_gp(size: int, channels: int, width: int, z_dim: int):
    return DCGANGenerator(size, channels, width, z_dim), DCGANDiscriminator(size, channels, width, "none")
