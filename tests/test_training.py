"""The shared classifier-training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privattrib.attribution.models import make_classifier
from privattrib.training import TrainConfig, predict, train_classifier

SMALL_YU = {"fmap_base": 128, "fmap_max": 64}


def fingerprinted(n: int, num_classes: int, size: int, amplitude: float, seed: int):
    """Class = a fixed +-amplitude high-frequency pattern (a synthetic GAN fingerprint) added to
    images that otherwise share one distribution (random colour + per-pixel noise)."""
    fp_rng = np.random.default_rng(1234)  # fingerprints shared by every split
    patterns = fp_rng.choice([-1.0, 1.0], size=(num_classes, 3, size, size)) * amplitude
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    base = rng.integers(60, 200, size=(n, 3, 1, 1)) + rng.normal(0, 20, size=(n, 3, size, size))
    return np.clip(base + patterns[labels], 0, 255).astype(np.uint8), labels


def test_yu2019_learns_high_frequency_fingerprints_well_above_chance():
    x, y = fingerprinted(512, 2, 32, 20.0, seed=0)
    xv, yv = fingerprinted(256, 2, 32, 20.0, seed=1)
    model = make_classifier("yu2019", num_classes=2, image_size=32, seed=0, **SMALL_YU)
    result = train_classifier(model, x, y, TrainConfig(epochs=6, device="cpu"), val=(xv, yv), progress=False)
    assert result.history[0]["val_accuracy"] < 0.8
    assert result.history[-1]["val_accuracy"] >= 0.85  # chance 0.5
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_dct_logistic_regression_reaches_high_accuracy_on_an_easy_task():
    x, y = fingerprinted(300, 3, 16, 20.0, seed=0)
    xv, yv = fingerprinted(150, 3, 16, 20.0, seed=1)
    model = make_classifier("dct", num_classes=3, image_size=16, seed=0)
    result = train_classifier(model, x, y, TrainConfig(epochs=5, device="cpu"), val=(xv, yv), progress=False)
    assert result.history[-1]["val_accuracy"] >= 0.95  # chance 1/3
    logits = predict(result.model, xv, device="cpu")
    assert logits.shape == (150, 3) and logits.dtype == np.float32
    assert np.isclose((logits.argmax(1) == yv).mean(), result.history[-1]["val_accuracy"])


def _train_once(seed: int):
    x, y = fingerprinted(96, 2, 16, 20.0, seed=0)
    model = make_classifier("yu2019", num_classes=2, image_size=16, seed=7, **SMALL_YU)
    result = train_classifier(model, x, y, TrainConfig(epochs=2, batch_size=16, seed=seed, device="cpu"),
                              progress=False)
    return result


def test_training_is_reproducible_with_a_seed_on_cpu():
    a, b, c = _train_once(0), _train_once(0), _train_once(1)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]  # the seed matters


def test_dropout_does_not_depend_on_what_ran_before():
    # mcpherson2016 has dropout, which draws from torch's global RNG: a cell of a resumed grid
    # must train exactly as in the uninterrupted run, whatever the process did before it
    import privattrib.attacks.models  # noqa: F401  (registers mcpherson2016)

    x, y = fingerprinted(64, 2, 16, 30.0, seed=0)

    def train(global_seed):
        torch.manual_seed(global_seed)
        model = make_classifier("mcpherson2016", num_classes=2, image_size=16, in_channels=3, seed=0)
        result = train_classifier(model, torch.from_numpy(x), torch.from_numpy(y),
                                  TrainConfig(epochs=2, batch_size=16, seed=3, device="cpu"))
        return torch.cat([p.detach().flatten() for p in result.model.parameters()])

    assert torch.equal(train(1), train(2))
    # and the caller's global RNG is left as it was
    model = make_classifier("mcpherson2016", num_classes=2, image_size=16, in_channels=3, seed=0)
    state = torch.get_rng_state()
    train_classifier(model, torch.from_numpy(x), torch.from_numpy(y), TrainConfig(epochs=1, device="cpu"))
    assert torch.equal(torch.get_rng_state(), state)


def test_resnet18_trains_and_reports_resolved_config():
    x, y = fingerprinted(64, 2, 16, 30.0, seed=0)
    model = make_classifier("resnet18", num_classes=2, image_size=16, width=8, seed=0)
    result = train_classifier(model, torch.from_numpy(x), torch.from_numpy(y),
                              TrainConfig(epochs=1, batch_size=16, device="cpu"), progress=True)
    assert result.config["resolved_device"] == "cpu"
    assert result.config["resolved_amp"] == "off"
    assert result.config["resolved_channels_last"] is False
    assert result.config["batch_size"] == 16 and result.config["betas"] == [0.0, 0.99]
    assert not result.model.training


def test_keep_best_restores_the_best_validation_epoch():
    x, y = fingerprinted(96, 2, 16, 20.0, seed=0)
    xv, yv = fingerprinted(64, 2, 16, 20.0, seed=1)
    model = make_classifier("dct", num_classes=2, image_size=16, seed=0)
    result = train_classifier(model, x, y, TrainConfig(epochs=4, keep_best=True, device="cpu"),
                              val=(xv, yv), progress=False)
    best = max(result.history, key=lambda h: h["val_accuracy"])
    assert result.best_epoch == best["epoch"]
    acc = (predict(result.model, xv, device="cpu").argmax(1) == yv).mean()
    assert np.isclose(acc, best["val_accuracy"])


def test_dct_statistics_are_not_refitted_when_fine_tuning():
    x, y = fingerprinted(64, 2, 16, 20.0, seed=0)
    model = make_classifier("dct", num_classes=2, image_size=16, seed=0)
    train_classifier(model, x, y, TrainConfig(epochs=1, device="cpu"), progress=False)
    mean = model.mean.clone()
    other = np.clip(x.astype(int) + 50, 0, 255).astype(np.uint8)
    train_classifier(model, other, y, TrainConfig(epochs=1, device="cpu"), progress=False)
    assert torch.equal(model.mean, mean)
    train_classifier(model, other, y, TrainConfig(epochs=1, device="cpu", fit_statistics=True), progress=False)
    assert not torch.equal(model.mean, mean)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0}, "lr"),
     ({"betas": (0.0, 1.0)}, "betas"), ({"amp": "fp8"}, "amp"), ({"channels_last": "yes"}, "channels_last"),
     ({"weight_decay": -1}, "weight_decay"), ({"compile_mode": "fast"}, "compile_mode")],
)
def test_bad_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_inputs_are_refused():
    model = make_classifier("dct", num_classes=2, image_size=8)
    x = np.zeros((4, 3, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        train_classifier(model, x.astype(np.float32), [0, 1, 0, 1], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        train_classifier(model, x, [0, 1, 2, 1], progress=False)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(model, x, [0, 1], progress=False)
    with pytest.raises(ValueError, match="keep_best"):
        train_classifier(model, x, [0, 1, 0, 1], TrainConfig(keep_best=True), progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_bf16_channels_last_training_learns_and_predicts(compiled):
    x, y = fingerprinted(512, 2, 32, 20.0, seed=0)
    xv, yv = fingerprinted(256, 2, 32, 20.0, seed=1)
    model = make_classifier("yu2019", num_classes=2, image_size=32, seed=0)
    result = train_classifier(model, x, y, TrainConfig(epochs=8, device="cuda", compile=compiled),
                              val=(xv, yv), progress=False)
    assert result.config["resolved_amp"] == "bf16" and result.config["resolved_channels_last"] is True
    assert result.config["resolved_data_on_device"] is True
    assert result.history[-1]["val_accuracy"] >= 0.85
    logits = predict(result.model, xv, device="cuda")
    assert np.isclose((logits.argmax(1) == yv).mean(), result.history[-1]["val_accuracy"])
    cpu_logits = predict(result.model, xv[:16], device="cpu", amp="off")
    np.testing.assert_allclose(cpu_logits, logits[:16], atol=0.1 + 0.05 * np.abs(cpu_logits).max())


def test_device_side_input_scaling_flips_and_layout():
    from privattrib.training import _to_input

    x = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    y = _to_input(x, torch.tensor([True, False]), channels_last=True)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y[0], x[0].flip(-1).float() / 127.5 - 1)
    torch.testing.assert_close(y[1], x[1].float() / 127.5 - 1)
    assert float(_to_input(torch.tensor([[[[0, 255]]]], dtype=torch.uint8), None, False).min()) == -1.0


def test_batch_transform_sees_every_image_once_per_epoch_and_changes_what_is_learned():
    x, y = fingerprinted(40, 2, 16, 20.0, seed=0)
    seen: list[tuple[int, list[int]]] = []

    def record(batch, labels, index, epoch, model):
        assert batch.dtype == torch.uint8 and model.training
        assert torch.equal(labels, torch.from_numpy(y)[index])  # labels of the same rows
        assert torch.equal(batch, torch.from_numpy(x)[index])  # before flips
        seen.append((epoch, index.tolist()))
        return batch

    config = TrainConfig(epochs=2, batch_size=16, device="cpu")
    plain = train_classifier(make_classifier("dct", num_classes=2, image_size=16, seed=0), x, y, config,
                             progress=False)
    same = train_classifier(make_classifier("dct", num_classes=2, image_size=16, seed=0), x, y, config,
                            progress=False, batch_transform=record)
    assert [h["loss"] for h in same.history] == [h["loss"] for h in plain.history]  # identity: no change
    for epoch in (1, 2):
        rows = sorted(i for e, index in seen if e == epoch for i in index)
        assert rows == list(range(40))

    def blank(batch, labels, index, epoch, model):
        return torch.zeros_like(batch)  # nothing left to learn from

    blanked = train_classifier(make_classifier("dct", num_classes=2, image_size=16, seed=0), x, y, config,
                               progress=False, batch_transform=blank)
    assert blanked.history[-1]["accuracy"] <= 0.6 < plain.history[-1]["accuracy"]


def test_batch_transform_must_keep_the_batch_form():
    x, y = fingerprinted(16, 2, 16, 20.0, seed=0)
    model = make_classifier("dct", num_classes=2, image_size=16, seed=0)
    with pytest.raises(ValueError, match="uint8 batch of shape"):
        train_classifier(model, x, y, TrainConfig(epochs=1, device="cpu"), progress=False,
                         batch_transform=lambda b, *_: b.float())
