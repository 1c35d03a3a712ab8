"""Attribution scenarios end to end on a tiny generated 3-class set at 32 px."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

from privattrib.attribution import scenarios
from privattrib.attribution.scenarios import SCENARIOS, run_attribution_cell, select_obfuscated
from privattrib.data.dataset import LabeledImages

CLASSES = ["gan-a", "gan-b", "real"]  # sorted, as the data layer hands them out
CFG = {"arch": "yu2019", "epochs": 2, "batch": 16, "fmap_base": 64, "fmap_max": 32}


def tiny_set(n_per_class: int, seed: int, prefix: str, size: int = 32) -> LabeledImages:
    """GAN classes carry a fixed high-frequency pattern; real images carry none."""
    patterns = np.random.default_rng(99).choice([-1.0, 1.0], size=(3, 3, size, size)) * 25.0
    patterns[CLASSES.index("real")] = 0.0
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    base = rng.integers(60, 200, size=(len(labels), 3, 1, 1)) + rng.normal(0, 15, size=(len(labels), 3, size, size))
    images = np.clip(base + patterns[labels], 0, 255).astype(np.uint8)
    keys = [f"{prefix}/{CLASSES[c]}/{i:04d}" for i, c in enumerate(labels)]
    return LabeledImages(images=images, labels=labels.astype(np.int64), class_names=list(CLASSES), keys=keys)


class CountingPixelate:
    """Stand-in with the obfuscation API: 4x4 cell means plus seeded noise per (seed, key);
    it counts how often each image key is obfuscated."""

    name = "pixelate"
    params = {"b": 4}
    epsilon = None
    spec = "pixelate:b=4"

    def __init__(self) -> None:
        self.calls = collections.Counter()

    def __call__(self, images, seed=0, keys=None):
        assert isinstance(images, torch.Tensor) and images.ndim == 4
        self.calls.update(keys)
        x = images.float()
        pooled = torch.nn.functional.avg_pool2d(x, 4)
        up = pooled.repeat_interleave(4, -2).repeat_interleave(4, -1)
        noise = torch.stack([
            torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(hash((seed, k)) & 0xFFFFFFFF))
            for k in keys
        ]).to(x.device)
        return (up + 2 * noise).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def data():
    return tiny_set(32, 0, "train"), tiny_set(8, 1, "val"), tiny_set(16, 2, "test")


REQUIRED = {
    "scenario", "method", "spec", "epsilon", "seed", "accuracy", "per_class_accuracy", "confusion_matrix",
    "class_names", "laundering_rate", "chance", "chance_rule", "n_train", "n_test", "n_test_obfuscated",
    "mse", "psnr", "ssim", "wall_seconds", "classifier", "classifier_options", "train_config",
    "clean_model_cached", "accuracy_obfuscated", "accuracy_on_originals",
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_end_to_end_with_row_schema(tmp_path, data, scenario):
    train, val, test = data
    ob = CountingPixelate()
    row = run_attribution_cell(train, val, test, ob, scenario, CFG, seed=0, work_dir=tmp_path,
                               device="cpu", progress=False)
    assert REQUIRED <= set(row)
    assert row["scenario"] == scenario and row["spec"] == "pixelate:b=4" and row["classifier"] == "yu2019"
    assert row["n_train"] == 96 and row["n_test"] == 48 and row["n_test_obfuscated"] == 48
    cm = np.array(row["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 48
    assert np.isclose(row["accuracy"], np.trace(cm) / 48)
    assert set(row["per_class_accuracy"]) == set(CLASSES)
    assert row["chance"] == pytest.approx(1 / 3)
    assert 0.0 <= row["laundering_rate"] <= 1.0
    gan_rows = cm[[0, 1]]
    assert row["laundering_rate"] == pytest.approx(gan_rows[:, 2].sum() / gan_rows.sum())
    assert row["mse"] > 0 and 0 < row["ssim"] < 1 and np.isfinite(row["psnr"])
    assert row["classifier_options"]["fmap_max"] == 32
    json.dumps(row)  # the row is JSON-serialisable as it stands
    # noise drawn once per image: every training, validation and test image obfuscated exactly once
    if scenario == "clean-train":
        assert set(ob.calls) == set(test.keys)
    else:
        assert set(ob.calls) == set(train.keys) | set(val.keys) | set(test.keys)
    assert set(ob.calls.values()) == {1}
    assert row["train_config"]["epochs"] == 2


def test_clean_model_is_cached_and_reused(tmp_path, data, monkeypatch):
    train, val, test = data
    calls = []
    real_train = scenarios.train_classifier

    def counting(*args, **kwargs):
        calls.append(kwargs.get("description"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(scenarios, "train_classifier", counting)
    first = run_attribution_cell(train, val, test, CountingPixelate(), "clean-train", CFG, 0, tmp_path,
                                 device="cpu", progress=False)
    second = run_attribution_cell(train, val, test, "none", "clean-train", CFG, 0, tmp_path,
                                  device="cpu", progress=False)
    assert len(calls) == 1
    assert not first["clean_model_cached"] and second["clean_model_cached"]
    assert first["clean_model_path"] == second["clean_model_path"]
    sidecar = json.loads(open(first["clean_model_path"][:-3] + ".json").read())
    assert sidecar["classifier"]["arch"] == "yu2019" and sidecar["train_config"]["batch_size"] == 16
    # the clean baseline: nothing obfuscated, identical utility
    assert second["mse"] == 0.0 and second["ssim"] == pytest.approx(1.0)
    assert second["accuracy"] == second["accuracy_on_originals"]
    # another seed is another clean model
    run_attribution_cell(train, val, test, "none", "clean-train", CFG, 1, tmp_path, device="cpu", progress=False)
    assert len(calls) == 2


def test_fine_tune_starts_from_the_clean_weights(tmp_path, data):
    train, val, test = data
    ob = CountingPixelate()
    clean_row = run_attribution_cell(train, val, test, ob, "clean-train", CFG, 0, tmp_path,
                                     device="cpu", progress=False)
    # a vanishing learning rate: the fine-tuned model must predict exactly like the clean one
    frozen = dict(CFG, fine_tune_lr=1e-12, fine_tune_epochs=1)
    ft_row = run_attribution_cell(train, val, test, ob, "fine-tune", frozen, 0, tmp_path,
                                  device="cpu", progress=False)
    assert ft_row["clean_model_cached"]
    assert ft_row["confusion_matrix"] == clean_row["confusion_matrix"]
    assert ft_row["train_config"]["lr"] == 1e-12 and ft_row["train_config"]["epochs"] == 1
    # while a model trained from scratch on the same data with that rate stays at its initialisation
    scratch = run_attribution_cell(train, val, test, ob, "obfuscated-train", dict(CFG, lr=1e-12), 0, tmp_path,
                                   device="cpu", progress=False)
    assert scratch["confusion_matrix"] != clean_row["confusion_matrix"]
    # fine-tuning did not touch the cached clean model
    again = run_attribution_cell(train, val, test, ob, "clean-train", CFG, 0, tmp_path, device="cpu", progress=False)
    assert again["confusion_matrix"] == clean_row["confusion_matrix"]


def test_half_of_the_test_set_obfuscated_stratified_and_deterministic(tmp_path, data):
    train, val, test = data
    mask = select_obfuscated(test.labels, 0.5, seed=3)
    assert all(mask[test.labels == c].sum() == 8 for c in range(3))
    assert np.array_equal(mask, select_obfuscated(test.labels, 0.5, seed=3))
    assert not np.array_equal(mask, select_obfuscated(test.labels, 0.5, seed=4))
    ob = CountingPixelate()
    row = run_attribution_cell(train, None, test, ob, "clean-train", CFG, 0, tmp_path, obfuscated_fraction=0.5,
                               device="cpu", progress=False)
    assert row["n_test_obfuscated"] == 24 and len(ob.calls) == 24
    assert row["accuracy"] == pytest.approx((row["accuracy_obfuscated"] + row["accuracy_unobfuscated"]) / 2)


def test_real_obfuscation_methods_run_through_a_cell(tmp_path, data):
    from privattrib.obfuscation import make

    train, val, test = data
    ob = make("dp-pix:b=4,m=1,epsilon=10")
    row = run_attribution_cell(train, val, test, ob, "obfuscated-train", dict(CFG, epochs=1), 0, tmp_path,
                               device="cpu", progress=False)
    assert row["spec"] == ob.spec and row["epsilon"] == 10 and row["method"] == "dp-pix"
    assert row["mse"] > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [({"scenario": "train-twice"}, "scenario"), ({"obfuscated_fraction": 0.0}, "obfuscated_fraction"),
     ({"real_class": "camera"}, "real class"), ({"classifier_cfg": dict(CFG, seed=3)}, "per cell"),
     ({"classifier_cfg": dict(CFG, widht=3)}, "no option")],
)
def test_bad_arguments_are_refused(tmp_path, data, kwargs, match):
    train, val, test = data
    args = dict(train=train, val=val, test=test, obfuscation=CountingPixelate(), scenario="clean-train",
                classifier_cfg=CFG, seed=0, work_dir=tmp_path, device="cpu", progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_attribution_cell(**args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cell_on_cuda_with_a_real_method(tmp_path):
    from privattrib.obfuscation import make

    # 32 images per class with flips did not learn in 4 epochs on either device (0.40 on the H100 and
    # on the CPU alike); 64 per class without flips reaches 0.85 on the CPU in 8 epochs
    train, val, test = tiny_set(64, 0, "train"), tiny_set(8, 1, "val"), tiny_set(16, 2, "test")
    cfg = dict(CFG, fmap_base=1024, fmap_max=512, epochs=8, hflip=False)
    ob = make("pixelate:b=4")
    rows = [run_attribution_cell(train, val, test, ob, s, cfg, 0, tmp_path, device="cuda", progress=False)
            for s in SCENARIOS]
    assert all(r["device"].startswith("cuda") for r in rows)
    assert rows[0]["accuracy_on_originals"] > 0.6  # the clean model learned the fingerprints (chance 1/3)
    cpu = run_attribution_cell(train, val, test, ob, "clean-train", cfg, 0, tmp_path / "cpu", device="cpu",
                               progress=False)
    assert cpu["mse"] == pytest.approx(rows[0]["mse"], rel=1e-3)  # same obfuscation on both devices


def test_concurrent_requests_for_one_clean_model_train_it_once(tmp_path, data, monkeypatch):
    import threading

    train, val, _ = data
    calls = []
    real_train = scenarios.train_classifier

    def counting(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(scenarios, "train_classifier", counting)
    cfg = {"arch": "dct", "epochs": 1}
    results = []
    # flock conflicts between separate open() calls even inside one process, so threads exercise the lock
    threads = [threading.Thread(target=lambda: results.append(
        scenarios.clean_model(train, val, cfg, 0, tmp_path, device="cpu", progress=False)[1])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 3
    assert sorted(r["cached"] for r in results) == [False, True, True]
    assert len({r["path"] for r in results}) == 1
    assert not list((tmp_path / "clean-models").glob("*.tmp"))


def test_cached_clean_model_without_its_sidecar_still_loads(tmp_path, data):
    """A SIGKILL between the checkpoint's rename and the .json sidecar's must not break resuming."""
    import os

    train, val, _ = data
    cfg = {"arch": "dct", "epochs": 1}
    _, first = scenarios.clean_model(train, val, cfg, 0, tmp_path, device="cpu", progress=False)
    os.unlink(first["path"][:-3] + ".json")
    _, again = scenarios.clean_model(train, val, cfg, 0, tmp_path, device="cpu", progress=False)
    assert again["cached"] and again["path"] == first["path"]
    assert again["history"] == first["history"] and again["train_config"]["epochs"] == 1


def test_adversarial_training_changes_training_and_is_recorded(tmp_path, data):
    train, val, test = data
    cfg = {**CFG, "adv_train": {"eps": 8, "steps": 2, "fraction": 1.0}}
    plain = run_attribution_cell(train, val, test, CountingPixelate(), "fine-tune", cfg, 0, tmp_path,
                                 device="cpu", progress=False)
    adv = run_attribution_cell(train, val, test, CountingPixelate(), "fine-tune+adv", cfg, 0, tmp_path,
                               device="cpu", progress=False)
    assert plain["adv_train"] is None
    assert adv["adv_train"]["eps"] == 8.0 and adv["adv_train"]["goal"] == "untargeted" and adv["adv_train"]["steps"] == 2
    assert adv["train_loss"] != pytest.approx(plain["train_loss"])  # the same start, other batches
    obf = run_attribution_cell(train, val, test, CountingPixelate(), "obfuscated-train+adv", cfg, 0, tmp_path,
                               device="cpu", progress=False)
    assert obf["adv_train"] == adv["adv_train"] and obf["train_config"]["epochs"] == CFG["epochs"]
    json.dumps(adv)


def test_adv_method_rows_carry_the_surrogate_and_adaptive_figures(tmp_path, data):
    from privattrib.attribution.models import make_classifier, save_classifier
    from privattrib.obfuscation import make
    from privattrib.training import TrainConfig, predict, train_classifier

    train, val, test = data
    surrogate = make_classifier("dct", 3, 32, 3, seed=9)
    train_classifier(surrogate, train.images, train.labels, TrainConfig(epochs=3, batch_size=16, hflip=False,
                                                                        device="cpu"), progress=False)
    clean_acc = float((predict(surrogate, test.images, device="cpu").argmax(1) == test.labels).mean())
    path = tmp_path / "surrogate.pt"
    save_classifier(surrogate, path, extra={"class_names": CLASSES, "task": "attribution"})
    ob = make(f"adv:eps=16,steps=10,target=attribution,model={path}")
    row = run_attribution_cell(train, val, test, ob, "clean-train", CFG, 0, tmp_path, device="cpu", progress=False)
    for key in ("accuracy_surrogate", "laundering_rate_surrogate", "accuracy_adaptive", "laundering_rate_adaptive",
                "accuracy_obfuscated_adaptive"):
        assert 0.0 <= row[key] <= 1.0, key
    assert row["surrogate"]["arch"] == "dct" and row["adv_train"] is None
    assert clean_acc >= 0.9 and row["accuracy_surrogate"] < clean_acc - 0.2  # white-box
    assert row["psnr"] > 20
    json.dumps(row)
