"""Re-identification and reconstruction attacks, end to end on small generated identity sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from privattrib.attacks import models as attack_models
from privattrib.attacks.reconstruction import example_grid, restore, run_reconstruct_cell, train_reconstructor
from privattrib.attacks.reid import obfuscate_once, run_reid_cell, split_identity_set
from privattrib.cli import app
from privattrib.data import synthetic_faces
from privattrib.obfuscation import make

REID_KEYS = {"accuracy", "chance", "n_identities", "n_train", "n_test", "method", "method_describe", "arch", "seed",
             "variant", "wall_s"}
RECON_KEYS = {"psnr_obfuscated", "psnr_restored", "ssim_obfuscated", "ssim_restored", "reid_obfuscated",
              "reid_restored", "reid_clean", "chance", "reid_protocol", "wall_s"}
FAST = {"epochs": 6, "batch_size": 32}


@pytest.fixture(scope="module")
def att_like():
    """An identity set shaped like AT&T: 40 people x 10 images (generated, 16 px grey to stay fast)."""
    return synthetic_faces(n_identities=40, per_identity=10, size=16, channels=1, seed=0)


@pytest.fixture(scope="module")
def small_set():
    return synthetic_faces(n_identities=8, per_identity=10, size=16, channels=1, seed=1)


class CountingObfuscation:
    """Wraps a real method and counts how often each image key is obfuscated."""

    def __init__(self, spec: str):
        self.inner = make(spec)
        self.name, self.params, self.spec, self.epsilon = (self.inner.name, self.inner.params, self.inner.spec,
                                                           self.inner.epsilon)
        self.calls: dict[str, int] = {}

    def describe(self):
        return self.inner.describe()

    def __call__(self, images, seed=0, keys=None):
        for key in keys:
            self.calls[key] = self.calls.get(key, 0) + 1
        return self.inner(images, seed=seed, keys=keys)


def test_att_protocol_split_is_8_train_2_test_per_person(att_like):
    train, test = split_identity_set(att_like, 8, 2, seed=3)
    assert (len(train), len(test)) == (320, 80)
    assert train.num_classes == test.num_classes == 40
    assert set(train.keys).isdisjoint(test.keys)
    assert np.all(np.bincount(train.labels, minlength=40) == 8)
    assert np.all(np.bincount(test.labels, minlength=40) == 2)
    # labels follow the person: every image keeps its original identity
    original = dict(zip(att_like.keys, att_like.identities))
    for part in (train, test):
        names = [part.class_names[label] for label in part.labels]
        people = [original[key] for key in part.keys]
        assert len(set(zip(names, people))) == 40
    again = split_identity_set(att_like, 8, 2, seed=3)[1]
    assert again.keys == test.keys
    assert split_identity_set(att_like, 8, 2, seed=4)[1].keys != test.keys


def test_split_drops_people_with_too_few_images_and_limits_identities(att_like):
    keep = np.ones(len(att_like), bool)
    keep[np.flatnonzero(att_like.identities == att_like.identities[0])[:5]] = False  # person 0: 5 images left
    train, test = split_identity_set(att_like.subset(keep), 8, 2, seed=0)
    assert train.num_classes == 39 and len(test) == 78
    train, test = split_identity_set(att_like, 4, 1, seed=0, max_identities=10)
    assert train.num_classes == 10 and len(train) == 40 and len(test) == 10
    with pytest.raises(ValueError, match="train_per_identity"):
        split_identity_set(att_like, 0, 2)


def test_noise_is_drawn_once_per_image(small_set):
    counting = CountingObfuscation("dp-pix:b=8,m=16,epsilon=0.5")
    run_reid_cell(small_set, counting, seed=0, arch_cfg={"epochs": 3}, work_dir=None,
                  train_per_identity=8, test_per_identity=2)
    assert len(counting.calls) == 80 and set(counting.calls.values()) == {1}


def test_obfuscate_once_is_keyed_not_batched(small_set):
    ob = make("dp-pix:b=8,m=16,epsilon=0.5")
    whole = obfuscate_once(ob, small_set, seed=5).numpy()
    pieces = obfuscate_once(ob, small_set, seed=5, batch_size=7).numpy()
    assert np.array_equal(whole, pieces)
    assert not np.array_equal(whole, obfuscate_once(ob, small_set, seed=6).numpy())


def test_reid_att_protocol_end_to_end(att_like, tmp_path):
    """Plain 2 x 2 pixelization of 16 px faces leaves identity; DP-Pix at a small epsilon destroys it."""
    plain = run_reid_cell(att_like, "pixelate:b=2", 0, FAST, tmp_path)
    assert REID_KEYS <= set(plain)
    assert (plain["n_identities"], plain["n_train"], plain["n_test"]) == (40, 320, 80)
    assert plain["chance"] == pytest.approx(1 / 40)
    assert plain["accuracy"] > 10 * plain["chance"]
    private = run_reid_cell(att_like, "dp-pix:b=2,m=16,epsilon=0.05", 0, FAST, tmp_path)
    assert private["accuracy"] < plain["accuracy"]
    assert private["epsilon"] == pytest.approx(0.05)


def test_no_retrain_reuses_the_cached_clean_model(small_set, tmp_path):
    first = run_reid_cell(small_set, "blur:k=7", 0, {"epochs": 3}, tmp_path, variant="no-retrain")
    second = run_reid_cell(small_set, "pixelate:b=4", 0, {"epochs": 3}, tmp_path, variant="no-retrain")
    assert first["clean_model_cached"] is False and second["clean_model_cached"] is True
    assert len(list(tmp_path.glob("reid-clean-*.pt"))) == 1
    assert len(list(tmp_path.glob("reid-clean-*.json"))) == 1
    by_name = run_reid_cell(small_set, "blur:k=7", 0, "mcpherson2016", None, variant="no-retrain", max_identities=2)
    assert by_name["arch"] == "mcpherson2016"
    with pytest.raises(ValueError, match="arch_cfg"):
        run_reid_cell(small_set, "blur:k=7", 0, 3, None)
    with pytest.raises(ValueError, match="variant"):
        run_reid_cell(small_set, "blur:k=7", 0, {"epochs": 1}, tmp_path, variant="sometimes")


def test_mcpherson_network_shape_and_registry():
    from privattrib.attribution.models import available_classifiers, make_classifier

    assert "mcpherson2016" in available_classifiers()
    model = make_classifier("mcpherson2016", num_classes=7, image_size=48, in_channels=1, seed=0)
    assert isinstance(model, attack_models.McPherson2016)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128] and all(c.kernel_size == (3, 3) for c in convs)
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert dense[0].out_features == 1024 and dense[0].in_features == 128 * 6 * 6
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def test_unet_starts_as_identity_and_learns_to_undo_blur(small_set):
    unet = attack_models.UNet(in_channels=1, base=8, depth=2)
    x = torch.rand(2, 1, 14, 14) * 2 - 1  # size not a multiple of 4: padded and cropped back
    assert torch.equal(unet(x), x)
    images = torch.from_numpy(small_set.images)
    blurred = make("blur:k=5")(images, seed=0)
    result = train_reconstructor(blurred, images, unet_cfg={"epochs": 8, "base": 8, "depth": 2}, seed=0)
    assert result.history[-1]["l1"] < result.history[0]["l1"]
    restored = restore(result.model, blurred)
    err_before = (blurred.float() - images.float()).abs().mean()
    err_after = (restored.float() - images.float()).abs().mean()
    assert err_after < err_before


def test_reconstruct_cell_end_to_end(small_set, tmp_path):
    grid = tmp_path / "grid.png"
    row = run_reconstruct_cell(small_set, "blur:k=5", 0, {"epochs": 4}, tmp_path,
                               unet_cfg={"epochs": 6, "base": 8, "depth": 2}, grid_path=grid, grid_count=4)
    assert RECON_KEYS <= set(row)
    assert row["psnr_restored"] > row["psnr_obfuscated"]
    assert 0 <= row["reid_restored"] <= 1 and row["chance"] == pytest.approx(1 / 8)
    png = grid.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"tEXt" not in png and b"iTXt" not in png and b"eXIf" not in png
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size == (4 * 16 + 5 * 2, 3 * 16 + 4 * 2)


def test_example_grid_layout():
    a = np.zeros((3, 1, 4, 4), np.uint8)
    b = np.full((3, 1, 4, 4), 100, np.uint8)
    c = np.full((3, 1, 4, 4), 200, np.uint8)
    grid = example_grid(a, b, c, count=2)
    assert grid.shape == (3 * 4 + 4 * 2, 2 * 4 + 3 * 2, 1)
    assert grid[2, 2, 0] == 0 and grid[2 + 6, 2, 0] == 100 and grid[2 + 12, 2, 0] == 200 and grid[0, 0, 0] == 255


def test_cli_reid_json_schema():
    result = CliRunner().invoke(app, ["attack", "reid", "--data", "synthetic:n_identities=6,per_identity=5",
                                      "--method", "pixelate:b=4", "--train-per-identity", "4",
                                      "--test-per-identity", "1", "--epochs", "2", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert REID_KEYS <= set(row)
    assert (row["n_identities"], row["n_train"], row["n_test"]) == (6, 24, 6)
    assert row["method"] == "pixelate:b=4" and row["arch"] == "mcpherson2016"


def test_cli_reconstruct_json_schema(tmp_path):
    grid = tmp_path / "g.png"
    result = CliRunner().invoke(app, ["attack", "reconstruct", "--data", "synthetic:n_identities=5,per_identity=4",
                                      "--method", "pixelate:b=4", "--train-per-identity", "3",
                                      "--test-per-identity", "1", "--epochs", "1", "--reid-epochs", "1",
                                      "--base", "8", "--grid", str(grid), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert RECON_KEYS <= set(row) and grid.exists()


def test_cli_reid_refuses_bad_input():
    runner = CliRunner()
    result = runner.invoke(app, ["attack", "reid", "--data", "/nonexistent/folder", "--method", "pixelate:b=4"])
    assert result.exit_code != 0 and "no such file" in result.output
    result = runner.invoke(app, ["attack", "reid", "--data", "synthetic:n_identities=3,per_identity=3",
                                 "--method", "pixelate:b=4", "--train-per-identity", "8"])
    assert result.exit_code != 0 and "needs" in result.output


@pytest.mark.integration
@pytest.mark.shared_data
def test_reid_on_real_yale_b(yaleb_root, tmp_path):
    from privattrib.data import load_source

    faces = load_source(str(yaleb_root), size=32)
    # With 8 lighting conditions per person, 32 px Yale B is hard even clean (about 35% after 20
    # epochs, docs/results-attacks.md) and a single short run is too noisy to assert on; 40 training
    # images per person make the attack reliable (about 72% at 48/12 in the same table).
    row = run_reid_cell(faces, "pixelate:b=4", 0, {"epochs": 10}, tmp_path, train_per_identity=40,
                        test_per_identity=10)
    assert row["n_identities"] >= 37  # people with fewer than 50 usable faces are dropped
    assert row["n_test"] == 10 * row["n_identities"]
    assert row["accuracy"] > 8 * row["chance"]


def test_clean_model_cache_is_keyed_by_pixels_not_only_keys(small_set, tmp_path):
    """Same keys, labels and shape but other pixels (e.g. another crop of the same files): the
    cached clean model must not be reused."""
    from privattrib.data.dataset import LabeledImages

    first = run_reid_cell(small_set, "blur:k=7", 0, {"epochs": 1}, tmp_path, variant="no-retrain")
    other = LabeledImages(images=255 - small_set.images, labels=small_set.labels, class_names=small_set.class_names,
                          keys=small_set.keys, identities=small_set.identities, meta=dict(small_set.meta))
    second = run_reid_cell(other, "blur:k=7", 0, {"epochs": 1}, tmp_path, variant="no-retrain")
    assert first["clean_model_cached"] is False and second["clean_model_cached"] is False
    assert len(list(tmp_path.glob("reid-clean-*.pt"))) == 2


def test_reconstructor_sees_only_training_pairs(small_set, monkeypatch):
    """The U-Net is trained on (obfuscated, original) pairs of the TRAINING split only and scored on
    the held-out test images."""
    from privattrib.attacks import reconstruction

    seen = {}
    real_train = reconstruction.train_reconstructor

    def spy(obfuscated, originals, **kw):
        seen["originals"] = originals.cpu().numpy().copy()
        return real_train(obfuscated, originals, **kw)

    monkeypatch.setattr(reconstruction, "train_reconstructor", spy)
    row = run_reconstruct_cell(small_set, "pixelate:b=4", 0, {"epochs": 1}, None,
                               unet_cfg={"epochs": 1, "base": 8, "depth": 2})
    train, test = split_identity_set(small_set, 8, 2, seed=0)
    assert np.array_equal(seen["originals"], train.images)
    flat_train = {img.tobytes() for img in seen["originals"]}
    assert not any(img.tobytes() in flat_train for img in test.images)
    assert row["n_test"] == len(test) == 16


def test_cli_unreadable_data_is_a_clear_error(tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()

    def text(result):  # rich wraps the message in a box
        return " ".join(result.output.replace("\u2502", " ").split())

    for verb in ("reid", "reconstruct"):
        result = runner.invoke(app, ["attack", verb, "--data", str(empty), "--method", "pixelate:b=4"])
        assert result.exit_code == 2 and "no image files" in text(result), result.output
    result = runner.invoke(app, ["attack", "reid", "--data", "synthetic:n_identities=many", "--method", "pixelate:b=4"])
    assert result.exit_code == 2 and "must be an integer" in text(result), result.output


def test_other_people_are_disjoint_from_the_targets(att_like):
    from privattrib.attacks.reid import other_people

    train, test = split_identity_set(att_like, 8, 2, seed=0, max_identities=10)
    others = other_people(att_like, train, test)
    assert others.num_classes == 30 and len(others) == 300
    target_keys = set(train.keys) | set(test.keys)
    assert not target_keys & set(others.keys)
    people = np.asarray(att_like.labels)
    key_to_person = dict(zip(att_like.keys, people))
    assert not {key_to_person[k] for k in others.keys} & {key_to_person[k] for k in target_keys}
    assert sorted(np.unique(others.labels)) == list(range(30))
    with pytest.raises(ValueError, match="at least 2 people outside"):
        other_people(att_like, *split_identity_set(att_like, 8, 2, seed=0))


def test_pretraining_on_other_people_helps_a_data_poor_attacker(att_like, tmp_path):
    """Two training images per target: learning identity on 30 other people first helps (on these
    generated faces, 20 test images per seed: 60 / 50 / 55% against 55 / 40 / 25% from scratch)."""
    cfg = {"epochs": 15, "batch_size": 32}
    kw = dict(train_per_identity=2, test_per_identity=2, max_identities=10)
    scratch = [run_reid_cell(att_like, "pixelate:b=2", s, cfg, tmp_path, **kw) for s in (0, 1, 2)]
    strong = [run_reid_cell(att_like, "pixelate:b=2", s, cfg, tmp_path, pretrain="others", **kw) for s in (0, 1, 2)]
    assert (strong[0]["pretrain"], strong[0]["n_pretrain"], strong[0]["n_pretrain_identities"]) == ("others", 300, 30)
    assert scratch[0]["pretrain"] is None and scratch[0]["n_pretrain"] == 0
    assert strong[0]["n_identities"] == scratch[0]["n_identities"] == 10
    assert np.mean([r["accuracy"] for r in strong]) > np.mean([r["accuracy"] for r in scratch]) + 0.05
    clean = run_reid_cell(att_like, "pixelate:b=2", 0, cfg, tmp_path, variant="no-retrain", pretrain="others", **kw)
    assert clean["clean_model_cached"] is False  # its cache entry differs from the scratch model's
    with pytest.raises(ValueError, match="pretrain"):
        run_reid_cell(att_like, "pixelate:b=2", 0, cfg, tmp_path, pretrain="everyone", **kw)
