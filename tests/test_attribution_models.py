"""The classifier registry and the three attribution classifiers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.fft
import torch

from privattrib.attribution.models import (
    EqualizedConv2d,
    EqualizedLinear,
    available_classifiers,
    dct_matrix,
    load_classifier,
    make_classifier,
    register_classifier,
    save_classifier,
)


def test_registry_lists_the_three_classifiers():
    assert {"yu2019", "resnet18", "dct"} <= set(available_classifiers())
    with pytest.raises(ValueError, match="unknown classifier"):
        make_classifier("nope", num_classes=2, image_size=32)


def test_unknown_option_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="no option"):
        make_classifier("yu2019", num_classes=2, image_size=32, widht=3)
    with pytest.raises(ValueError, match=">= 8"):
        make_classifier("yu2019", num_classes=2, image_size=7)
    with pytest.raises(ValueError, match="num_classes"):
        make_classifier("dct", num_classes=1, image_size=16)


def test_register_a_new_classifier_records_its_options():
    @register_classifier("test-linear")
    def _linear(num_classes, image_size, in_channels, hidden: int = 7):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * image_size**2, num_classes))

    model = make_classifier("test-linear", num_classes=3, image_size=8, in_channels=1)
    assert model.classifier_config == {"arch": "test-linear", "num_classes": 3, "image_size": 8,
                                       "in_channels": 1, "hidden": 7}


def test_yu2019_matches_the_paper_at_128():
    model = make_classifier("yu2019", num_classes=5, image_size=128)
    convs = [m for m in model.features if isinstance(m, EqualizedConv2d)]
    # two convs per resolution 128..8, then one at 4x4
    assert [c.weight.shape[0] for c in convs] == [16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512]
    assert convs[0].weight.shape[1] == 3
    dense = [m for m in model.head if isinstance(m, EqualizedLinear)]
    assert [tuple(d.weight.shape) for d in dense] == [(512, 8192), (5, 512)]
    # equalized learning rate: weights stored N(0, 1), He's constant applied at run time
    assert math.isclose(convs[1].scale, math.sqrt(2) / math.sqrt(16 * 9))
    assert math.isclose(dense[1].scale, 1 / math.sqrt(512))
    assert abs(float(convs[-1].weight.detach().std()) - 1.0) < 0.02
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    assert model(x).shape == (2, 5)


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_yu2019_smaller_inputs_use_fewer_stages_and_end_at_4x4(size):
    model = make_classifier("yu2019", num_classes=3, image_size=size, in_channels=1)
    convs = [m for m in model.features if isinstance(m, EqualizedConv2d)]
    assert len(convs) == 2 * int(math.log2(size // 4)) + 1
    assert convs[0].weight.shape[0] == min(512, 2048 // size)  # same width per resolution as at 128
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 3)
    with pytest.raises(ValueError, match="built for"):
        model(torch.zeros(1, 1, size * 2, size * 2))


def test_equalized_conv_is_a_scaled_conv():
    conv = EqualizedConv2d(2, 4, 3, padding_mode="zeros")
    x = torch.randn(1, 2, 5, 5)
    ref = torch.nn.functional.conv2d(x, conv.weight * math.sqrt(2) / math.sqrt(18), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref)


@pytest.mark.parametrize("size,stages,side", [(48, 3, 6), (96, 4, 6), (100, 4, 6), (33, 3, 4), (12, 1, 6)])
def test_yu2019_takes_sizes_that_are_not_powers_of_two(size, stages, side):
    model = make_classifier("yu2019", num_classes=3, image_size=size, in_channels=1)
    pools = [m for m in model.features if isinstance(m, torch.nn.AvgPool2d)]
    assert len(pools) == stages
    assert model.features(torch.zeros(1, 1, size, size)).shape[-2:] == (side, side)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 3)
    # the widths of the power-of-two network with as many stages (48 px: those of 32 px)
    reference = make_classifier("yu2019", num_classes=3, image_size=4 * 2**stages, in_channels=1)
    widths = [m.weight.shape for m in model.features if hasattr(m, "weight")]
    assert widths == [m.weight.shape for m in reference.features if hasattr(m, "weight")]


@pytest.mark.parametrize("size,stem", [(16, "small"), (128, "imagenet")])
def test_resnet18_stem_follows_input_size(size, stem):
    model = make_classifier("resnet18", num_classes=4, image_size=size, width=8)
    first = model.stem[0]
    assert first.stride == ((1, 1) if stem == "small" else (2, 2))
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 4)
    full = make_classifier("resnet18", num_classes=1000, image_size=224)
    # torchvision's resnet18 has 11,689,512 parameters with the same stem and head
    assert sum(p.numel() for p in full.parameters()) == 11_689_512


def test_dct_matrix_is_scipy_orthonormal_dct2():
    x = np.random.default_rng(0).normal(size=(8, 8))
    d = dct_matrix(8).numpy()
    np.testing.assert_allclose(d @ x @ d.T, scipy.fft.dctn(x, type=2, norm="ortho"), atol=1e-10)
    np.testing.assert_allclose(d @ d.T, np.eye(8), atol=1e-12)


def test_dct_statistics_are_fitted_on_training_images_and_saved():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(70, 3, 8, 8), dtype=np.uint8)
    model = make_classifier("dct", num_classes=2, image_size=8)
    with pytest.raises(RuntimeError, match="fit_statistics"):
        model(torch.zeros(1, 3, 8, 8))
    model.fit_statistics(images, batch_size=32)  # several chunks: checks the streaming variance
    x = images.astype(np.float64) / 127.5 - 1.0
    spec = np.log(np.abs(scipy.fft.dctn(x, type=2, norm="ortho", axes=(2, 3))) + 1e-6)
    np.testing.assert_allclose(model.mean.numpy(), spec.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.std.numpy(), spec.std(0, ddof=1), rtol=1e-4, atol=1e-4)
    assert bool(model.statistics_fitted)


def test_save_and_load_roundtrip_writes_options_beside(tmp_path):
    model = make_classifier("dct", num_classes=3, image_size=8, in_channels=1, seed=3)
    model.fit_statistics(np.random.default_rng(0).integers(0, 256, (10, 1, 8, 8), dtype=np.uint8))
    path = save_classifier(model, tmp_path / "m.pt", extra={"note": "test"})
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["classifier"]["arch"] == "dct" and sidecar["classifier"]["eps"] == 1e-6
    assert sidecar["note"] == "test"
    loaded = load_classifier(path)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.classifier_config == model.classifier_config


def test_seeded_construction_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = make_classifier("yu2019", num_classes=2, image_size=8, seed=5)
    after = torch.rand(1)
    b = make_classifier("yu2019", num_classes=2, image_size=8, seed=5)
    assert torch.equal(before, after)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_a_reid_checkpoint_loads_without_importing_the_attacks_package(tmp_path):
    """The registry finds classifiers that other packages register (mcpherson2016) on its own."""
    import subprocess
    import sys

    code = f"""
import torch
from privattrib.attacks.models import McPherson2016  # registers mcpherson2016
from privattrib.attribution.models import make_classifier, save_classifier
save_classifier(make_classifier("mcpherson2016", num_classes=4, image_size=32, in_channels=1, seed=0),
                r"{tmp_path / 'reid.pt'}")
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    load = f"""
import sys
from privattrib.attribution.models import load_classifier
model = load_classifier(r"{tmp_path / 'reid.pt'}")
assert type(model).__name__ == "McPherson2016", type(model)
"""
    subprocess.run([sys.executable, "-c", load], check=True)
