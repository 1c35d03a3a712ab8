"""The GAN zoo: train several architectures on real images and sample the fake sources to attribute.

Public API::

    from privattrib.gans import available_archs, train_gan, sample_gan, sample_to_folder, load_gan, gan_quality

    run = train_gan("dcgan", images, preset="tiny", seed=0, out="runs/dcgan-s0")
    fakes = sample_gan(run, 1000, seed=0)          # uint8 N x C x H x W
    report = gan_quality(fakes, real_images)       # KID on random-CNN features, colour, spectrum

Add an architecture with :func:`register_arch` in a module imported by the registry.
"""

from privattrib.gans.quality import gan_quality
from privattrib.gans.registry import GanArch, available_archs, get_arch, register_arch
from privattrib.gans.sample import load_gan, sample_gan, sample_to_folder
from privattrib.gans.train import PRESETS, available_presets, train_gan

__all__ = [
    "GanArch",
    "PRESETS",
    "available_archs",
    "available_presets",
    "gan_quality",
    "get_arch",
    "load_gan",
    "register_arch",
    "sample_gan",
    "sample_to_folder",
    "train_gan",
]
