"""What a GAN run's config builds: its (untrained) nets, seeded, and the checkpoint format that
records them. Training (:mod:`privattrib.gans.train`) and sampling (:mod:`privattrib.gans.sample`)
both start here, so neither needs the other to rebuild a generator."""

from __future__ import annotations

import torch

from privattrib.gans.registry import get_arch

__all__ = ["CHECKPOINT_FORMAT", "build_nets", "mix_seed"]

CHECKPOINT_FORMAT = "privattrib-gan/1"


def mix_seed(seed: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for (run seed, step, stream): SplitMix64-style mixing, so that nearby inputs
    give unrelated, well-spread seeds."""
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


def build_nets(config: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The (untrained) generator and discriminator a config describes, seeded by its seed."""
    spec = get_arch(config["arch"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(config["seed"], 0, stream=1))
        return spec.build(config["size"], config["channels"], config["width"], config["z_dim"])
