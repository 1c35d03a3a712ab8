"""The re-identification attacker's options that issue 18 measures against Fan 2018: fresh noise
per epoch, averaged releases, Yale B's lighting filter and non-square faces."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from privattrib.attacks.reid import (fresh_noise_transform, mean_and_first_release, obfuscate_once,
                                     obfuscate_releases, release_keys, run_reid_cell)
from privattrib.attribution.models import make_classifier
from privattrib.data import LabeledImages, select_even_light, synthetic_faces, yaleb_light_angles
from privattrib.obfuscation import make

DP = "dp-pix:b=4,m=1,epsilon=1"
FAST = {"epochs": 3, "batch_size": 16}


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(n_identities=6, per_identity=6, size=16, channels=1, seed=2)


class KeyLog:
    """Wraps a real method and records every key it obfuscates, in order."""

    def __init__(self, spec: str):
        self.inner = make(spec)
        self.name, self.params, self.spec, self.epsilon = (self.inner.name, self.inner.params, self.inner.spec,
                                                           self.inner.epsilon)
        self.randomized = self.inner.randomized
        self.keys: list[str] = []

    def describe(self):
        return self.inner.describe()

    def __call__(self, images, seed=0, keys=None):
        self.keys.extend(keys)
        return self.inner(images, seed=seed, keys=keys)


def test_per_epoch_noise_is_new_every_epoch_and_keyed(faces):
    images = torch.from_numpy(faces.images)
    index = torch.tensor([5, 0, 17, 3])
    transform = fresh_noise_transform(DP, faces.keys, seed=3)
    epoch1 = transform(images[index], None, index, 1, None)
    assert torch.equal(epoch1, transform(images[index], None, index, 1, None))  # reproducible
    epoch2 = transform(images[index], None, index, 2, None)
    assert not torch.equal(epoch1, epoch2)  # a new release every epoch
    # keyed by (seed, epoch, key): the same image gets the same noise in any batch position
    flipped = index.flip(0)
    assert torch.equal(transform(images[flipped], None, flipped, 1, None), epoch1.flip(0))
    keys = [faces.keys[i] for i in index.tolist()]
    expected = obfuscate_releases(DP, images[index], keys, seed=3, epoch=1, device="cpu")
    assert torch.equal(epoch1, expected)
    # and none of the epochs reuses the once-per-image release
    assert not torch.equal(epoch1, obfuscate_once(DP, faces, seed=3)[index])


def test_training_loop_obfuscates_each_training_image_once_per_epoch(faces):
    log = KeyLog(DP)
    row = run_reid_cell(faces, log, seed=0, arch_cfg=FAST, work_dir=None, train_per_identity=4,
                        test_per_identity=2, device="cpu", noise_per_epoch=True)
    train_keys = [k for k in log.keys if "|epoch=" in k]
    test_keys = [k for k in log.keys if "|epoch=" not in k]
    assert len(test_keys) == len(set(test_keys)) == row["n_test"]  # the released test faces: once
    assert len(train_keys) == len(set(train_keys)) == 3 * row["n_train"]
    for epoch in (1, 2, 3):
        assert sum(k.endswith(f"|epoch={epoch}") for k in train_keys) == row["n_train"]
    assert row["noise_per_epoch"] is True


def test_averaging_r_releases_divides_the_noise_variance_by_r():
    grey = np.full((64, 1, 32, 32), 128, dtype=np.uint8)  # 4,096 cells far from the clipping bounds
    keys = [f"img{i}" for i in range(len(grey))]

    def cell_noise(releases):
        out = obfuscate_releases(DP, grey, keys, seed=1, releases=releases, device="cpu").numpy()
        return out[:, 0, ::4, ::4].astype(np.float64) - 128.0

    single = cell_noise(1)
    assert abs(single.var() / (2 * (255 / 16) ** 2) - 1) < 0.1  # Laplace of scale 255*m/(b*b*epsilon)
    for releases in (4, 16):
        averaged = cell_noise(releases)
        assert abs(averaged.mean()) < 1.0
        assert single.var() / averaged.var() == pytest.approx(releases, rel=0.15)


def test_one_release_is_the_once_per_image_release_and_plain_methods_do_not_average(faces):
    assert torch.equal(obfuscate_releases(DP, faces.images, faces.keys, seed=4, device="cpu"),
                       obfuscate_once(DP, faces, seed=4, device="cpu"))
    pix = KeyLog("pixelate:b=4")
    once = obfuscate_once("pixelate:b=4", faces, seed=4, device="cpu")
    assert torch.equal(obfuscate_releases(pix, faces.images, faces.keys, seed=4, releases=5, device="cpu"), once)
    assert len(pix.keys) == len(faces)  # no noise: computed once, not five times
    assert release_keys(["a"], 2, 7) == ["a|epoch=7|release=2"] and release_keys(["a"]) == ["a"]


def test_the_first_release_comes_with_the_mean_without_a_second_run(faces):
    dp = KeyLog(DP)
    mean, first = mean_and_first_release(dp, faces.images, faces.keys, seed=4, releases=3, device="cpu")
    assert len(dp.keys) == 3 * len(faces)  # three releases, release 0 among them, each once
    assert torch.equal(first, obfuscate_once(DP, faces, seed=4, device="cpu"))
    assert torch.equal(mean, obfuscate_releases(DP, faces.images, faces.keys, seed=4, releases=3, device="cpu"))
    assert not torch.equal(mean, first)


def test_the_row_records_the_attacker_and_the_epoch_curve(faces):
    tall = dataclasses.replace(faces, images=np.ascontiguousarray(faces.images[:, :, :, 2:14]))  # 16 x 12
    row = run_reid_cell(tall, DP, seed=1, arch_cfg=FAST, work_dir=None, train_per_identity=4,
                        test_per_identity=2, device="cpu", train_releases=2, test_releases=3, epoch_curve=True)
    assert row["image_shape"] == [1, 16, 12] and row["cell_grid"] == [4, 3]
    assert (row["train_releases"], row["test_releases"], row["noise_per_epoch"]) == (2, 3, False)
    assert row["epsilon_test_total"] == pytest.approx(3.0)
    # the attacker's mean of 3 releases is closer to the face than the one release a reader sees
    assert row["mse_one_release"] > 1.2 * row["mse_obfuscated"] > 0  # (the pixelization error stays)
    assert row["psnr_one_release"] < row["psnr_obfuscated"]
    assert len(row["accuracy_by_epoch"]) == 3
    assert row["accuracy_by_epoch"][-1] == pytest.approx(row["accuracy"])  # the curve scores the same model
    assert row["best_epoch_accuracy"] == max(row["accuracy_by_epoch"])
    assert row["arch_cfg"]["arch"] == "mcpherson2016"


def test_attacker_options_are_checked(faces):
    common = dict(seed=0, arch_cfg=FAST, work_dir=None, train_per_identity=4, test_per_identity=2, device="cpu")
    with pytest.raises(ValueError, match="test_releases"):
        run_reid_cell(faces, DP, test_releases=0, **common)
    with pytest.raises(ValueError, match="train_releases"):
        run_reid_cell(faces, DP, train_releases=1.5, **common)
    with pytest.raises(ValueError, match="retrain variant only"):
        run_reid_cell(faces, DP, variant="no-retrain", noise_per_epoch=True, **common)
    tall = dataclasses.replace(faces, images=np.ascontiguousarray(faces.images[:, :, :, 2:14]))
    with pytest.raises(ValueError, match="square images only"):
        run_reid_cell(tall, DP, **{**common, "arch_cfg": {**FAST, "arch": "resnet18"}})
    with pytest.raises(ValueError, match="Yale B light direction"):
        run_reid_cell(faces, DP, max_light_angle=25, **common)


def test_mcpherson_takes_non_square_faces():
    model = make_classifier("mcpherson2016", num_classes=40, image_size=92, in_channels=1, seed=0, height=112)
    assert model(torch.zeros(2, 1, 112, 92)).shape == (2, 40)
    assert model.classifier_config["height"] == 112
    assert model.classifier[1].in_features == 128 * (112 // 8) * (92 // 8)


def test_yale_b_lighting_filter():
    names = ["yaleB01/yaleB01_P00A+000E+00.pgm", "yaleB01/yaleB01_P00A-025E+00.pgm",
             "yaleB02/yaleB02_P00A+035E-20.pgm", "yaleB02/yaleB02_P00A+020E-40.pgm", "yaleB02_P00A-010E+00"]
    azimuth, elevation = yaleb_light_angles(names)
    assert azimuth.tolist() == [0, -25, 35, 20, -10] and elevation.tolist() == [0, 0, -20, -40, 0]
    data = LabeledImages(images=np.zeros((5, 1, 8, 8), np.uint8), labels=np.array([0, 0, 1, 1, 1]),
                         class_names=["yaleB01", "yaleB02"], keys=names)
    kept = select_even_light(data, 25)
    assert kept.keys == [names[0], names[1], names[4]] and kept.labels.tolist() == [0, 0, 1]
    assert kept.meta["max_light_angle"] == 25
    with pytest.raises(ValueError, match="nothing.pgm"):
        yaleb_light_angles(["yaleB01/nothing.pgm"])
    with pytest.raises(ValueError, match=">= 0"):
        select_even_light(data, -1)


def test_cli_passes_the_attacker_options_and_refuses_bad_ones():
    import json

    from typer.testing import CliRunner

    from privattrib.cli import app

    base = ["attack", "reid", "--data", "synthetic:n_identities=6,per_identity=5", "--method", DP,
            "--train-per-identity", "4", "--test-per-identity", "1", "--epochs", "2", "--json"]
    result = CliRunner().invoke(app, [*base, "--noise-per-epoch", "--train-releases", "2", "--test-releases", "3"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert (row["noise_per_epoch"], row["train_releases"], row["test_releases"]) == (True, 2, 3)
    assert row["epsilon_test_total"] == 3.0
    result = CliRunner().invoke(app, [*base, "--test-releases", "0"])
    assert result.exit_code != 0 and "test_releases" in result.output
    result = CliRunner().invoke(app, [*base, "--height", "20"])
    assert result.exit_code != 0 and "square" in result.output


@pytest.mark.shared_data
def test_even_light_keeps_18_to_19_faces_of_every_yale_b_person(yaleb_root):
    from privattrib.data.sources import identity_entries

    entries = identity_entries(yaleb_root)
    azimuth, elevation = yaleb_light_angles(entries.keys)  # every face file names its light
    even = (np.abs(azimuth) <= 25) & (np.abs(elevation) <= 25)
    per_person = np.bincount(entries.rows["identities"][even])
    assert len(per_person) == 38 and per_person.min() == 18 and per_person.max() == 19  # 8 train + 10 test fit
