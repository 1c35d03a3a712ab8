"""``privattrib attribute`` / ``train-attributor`` and their library API (issue 15, parts 1-3).

A small three-class problem the tests draw themselves (16 x 16 smooth gradients as ``real``, the
same with a checkerboard or with stripes as two "GANs") trains in seconds and is learnable, so
class names, probabilities, calibration figures and the CLI's exit codes can be checked for real.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bad_files import bad_names, good_names, make_corpus
from privattrib.attribution import calibration as cal
from privattrib.attribution.attributor import demo_attributor_path, fake_source, train_attributor
from privattrib.attribution.inference import AttributorError, load_attributor
from privattrib.cli import app

CLASSES = ["real", "checker", "stripes"]
SIZE = 16
SMALL_NET = {"arch": "dct", "epochs": 10, "batch": 16}


def _picture(rng: np.random.Generator, kind: str, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    a, b, c = rng.uniform(0.2, 1.0, 3)
    img = np.stack([xx * a * 255 / size, yy * b * 255 / size, (xx + yy) * c * 64 / size + 60], -1)
    if kind == "checker":
        img = img + 40 * ((xx + yy) % 2 - 0.5)[..., None]
    elif kind == "stripes":
        img = img + 40 * (xx % 2 - 0.5)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_class(folder: Path, kind: str, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(_picture(rng, kind)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attr-data")
    return {kind: (_write_class(root / kind, kind, 60, seed) and root / kind) for seed, kind in enumerate(CLASSES)}


@pytest.fixture(scope="module")
def trained(folders, tmp_path_factory):
    cache = tmp_path_factory.mktemp("attr-cache")
    out = tmp_path_factory.mktemp("attr-model") / "model.pt"
    result = train_attributor(folders["real"], {"checker": folders["checker"], "stripes": folders["stripes"]}, out,
                              size=SIZE, classifier=SMALL_NET, seed=0, device="cpu", cache_dir=cache, progress=False)
    return result


@pytest.fixture(scope="module")
def held_out(folders, tmp_path_factory) -> dict[str, Path]:
    """Fresh images of each class that no split saw."""
    root = tmp_path_factory.mktemp("attr-held-out")
    return {kind: (_write_class(root / kind, kind, 12, 100 + seed) and root / kind)
            for seed, kind in enumerate(CLASSES)}


# ---------------------------------------------------------------------------------------------
# train_attributor


def test_train_attributor_writes_a_self_sufficient_checkpoint(trained):
    assert trained.class_names == CLASSES  # real first, then the fakes sorted by name... as given here
    assert trained.accuracy >= 0.8, trained.confusion_matrix  # chance is 1/3
    assert trained.chance == pytest.approx(1 / 3)
    assert set(trained.per_class_accuracy) == set(CLASSES)
    assert np.asarray(trained.confusion_matrix).sum() == sum(trained.counts["test"].values())
    # the split: 60 per class -> 6 val, 12 test, 42 train, the same for every class
    assert trained.counts["train"] == {c: 42 for c in CLASSES}
    assert trained.counts["val"] == {c: 6 for c in CLASSES}
    assert trained.counts["test"] == {c: 12 for c in CLASSES}
    # these patterns are separable: the validation split has no error, so no temperature is fitted
    # (the NLL would fall without end as T -> 0) and the model says so instead of claiming certainty
    assert trained.temperature == 1.0 and trained.calibration["fitted_on"] is None
    assert "classified correctly" in trained.calibration["not_fitted"]
    for key in ("ece_before", "ece_after", "nll_before", "nll_after"):
        assert 0 <= trained.calibration[key] < 10
    assert trained.calibration["nll_after"] == trained.calibration["nll_before"]
    for png in trained.plots.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sidecar = json.loads(trained.path.with_suffix(".json").read_text())
    block = sidecar["attributor"]
    assert block["class_names"] == CLASSES and block["real_class"] == "real"
    assert block["image_size"] == SIZE and block["in_channels"] == 3
    assert block["temperature"] == pytest.approx(trained.temperature)
    assert block["calibration"]["ece_before"] == pytest.approx(trained.calibration["ece_before"])
    assert block["metrics"]["accuracy"] == pytest.approx(trained.accuracy)
    assert block["preprocess"]["crop"] == "center"
    assert len(block["data"]["test_keys"]) == 36 and block["data"]["sources"]["checker"]["available"] == 60
    assert "checker" in block["scope"] and "16x16" in block["scope"]


def test_fake_source_kinds(tmp_path, folders):
    assert fake_source("zoo:dcgan") == {"gan": {"arch": "dcgan", "preset": "tiny", "seed": 0}}
    assert fake_source("zoo:sngan:cpu-64")["gan"]["preset"] == "cpu-64"
    assert fake_source(str(folders["checker"])) == {"folder": str(folders["checker"])}
    run = tmp_path / "run"
    run.mkdir()
    (run / "generator.pt").write_bytes(b"")
    assert fake_source(str(run)) == {"gan_run": str(run)}
    with pytest.raises(ValueError, match="no such folder"):
        fake_source(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="zoo:ARCH"):
        fake_source("zoo:")


def test_train_attributor_refuses_bad_options(folders, tmp_path):
    fakes = {"checker": folders["checker"]}
    with pytest.raises(ValueError, match="more than the 60 usable images"):
        train_attributor(folders["real"], fakes, tmp_path / "m.pt", size=SIZE, per_class=500, progress=False,
                         cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fractions"):
        train_attributor(folders["real"], fakes, tmp_path / "m.pt", size=SIZE, val_fraction=0.5, test_fraction=0.5,
                         progress=False, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="real"):
        train_attributor(folders["real"], {"real": folders["checker"]}, tmp_path / "m.pt", progress=False)
    assert not (tmp_path / "m.pt").exists()


# ---------------------------------------------------------------------------------------------
# load_attributor and predict


def test_predict_names_classes_and_probabilities_sum_to_one(trained, held_out):
    attributor = load_attributor(trained.path, device="cpu")
    assert attributor.class_names == CLASSES and attributor.real_class == "real"
    assert not attributor.calibrated and attributor.temperature == 1.0
    assert any("uncalibrated: every one of the 18 validation images" in m for m in attributor.messages)
    images, truth = [], []
    for kind, folder in held_out.items():
        for path in sorted(folder.glob("*.png")):
            images.append(np.asarray(Image.open(path)))
            truth.append(kind)
    results = attributor.predict(images, keys=[f"k{i}" for i in range(len(images))], batch_size=7)
    assert [r.key for r in results] == [f"k{i}" for i in range(len(images))]
    for r in results:
        assert r.predicted in CLASSES and set(r.probabilities) == set(CLASSES)
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert r.probabilities[r.predicted] == max(r.probabilities.values())
        assert r.resized_from is None and r.channels_converted is None and r.notes == []
    accuracy = np.mean([r.predicted == t for r, t in zip(results, truth)])
    assert accuracy >= 0.75, accuracy
    d = attributor.describe()
    json.dumps(d)  # JSON-able
    assert d["classes"] == CLASSES and not d["calibrated"] and d["ece_bins"] == 15
    assert d["held_out_accuracy"] == pytest.approx(trained.accuracy)


def test_predict_divides_the_logits_by_the_temperature(trained, held_out):
    # softmax(z / 2) is the normalised square root of softmax(z): the temperature is applied, once
    attributor = load_attributor(trained.path, device="cpu")
    images = [np.asarray(Image.open(p)) for p in sorted(held_out["stripes"].glob("*.png"))[:4]]
    raw = np.array([[r.probabilities[c] for c in CLASSES] for r in attributor.predict(images)])
    attributor.temperature = 2.0
    warm = np.array([[r.probabilities[c] for c in CLASSES] for r in attributor.predict(images)])
    expected = np.sqrt(raw) / np.sqrt(raw).sum(1, keepdims=True)
    np.testing.assert_allclose(warm, expected, rtol=1e-5, atol=1e-9)


def test_predict_says_when_it_resized_or_converted(trained):
    attributor = load_attributor(trained.path, device="cpu")
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    tiny = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    g, a, t = attributor.predict([grey, rgba, tiny])
    assert g.resized_from == (30, 40) and g.channels_converted == "L -> RGB"
    assert any("centre-cropped to 30x30" in n and "40x30 -> 16x16" in n for n in g.notes)
    assert a.resized_from is None and a.channels_converted == "RGBA -> RGB"
    assert any("flattened onto black" in n for n in a.notes)
    assert t.resized_from == (8, 8) and any("upsampled" in n for n in t.notes)
    with pytest.raises(ValueError, match="uint8"):
        attributor.predict([np.zeros((16, 16, 3), np.float32)])
    with pytest.raises(ValueError, match="keys"):
        attributor.predict([grey], keys=["a", "b"])


def test_a_lab_image_is_converted_not_called_transparent(trained, tmp_path):
    attributor = load_attributor(trained.path, device="cpu")
    lab = tmp_path / "lab.tif"
    Image.fromarray(_picture(np.random.default_rng(3), "real")).convert("LAB").save(lab)
    (result,), skipped = attributor.predict_files([lab])
    assert skipped == [] and result.channels_converted == "LAB -> RGB"
    assert not any("transparent" in n for n in result.notes)
    (from_array,) = attributor.predict([np.zeros((16, 16, 3), np.uint8)], modes=["LAB"])
    assert not any("transparent" in n for n in from_array.notes)


def test_a_model_trained_on_stretched_images_stretches_too(trained):
    """A source with ``crop: none`` trains on whole images stretched to the square: such a model
    is prepared the same way (not refused, not centre-cropped), and says so."""
    from privattrib.attribution.inference import Attributor
    from privattrib.data.preprocess import Preprocess, prepare_array
    from privattrib.training import predict

    model = load_attributor(trained.path, device="cpu").model
    kw = dict(class_names=CLASSES, real_class="real", image_size=SIZE, in_channels=3, device="cpu")
    stretched, cropped = Attributor(model, crop="none", **kw), Attributor(model, crop="center", **kw)
    wide = np.kron(_picture(np.random.default_rng(9), "stripes"), np.ones((2, 5, 1), dtype=np.uint8))  # 32 x 80
    (a,), (b,) = stretched.predict([wide]), cropped.predict([wide])
    assert any("stretched 80x32 -> 16x16" in n for n in a.notes) and not any("stretched" in n for n in b.notes)
    whole = prepare_array(wide, Preprocess(size=(SIZE, SIZE), crop="none"))[None]
    expected = cal.softmax(predict(model, whole, device="cpu"))[0]
    assert [a.probabilities[c] for c in CLASSES] == pytest.approx(list(expected), abs=1e-5)
    with pytest.raises(AttributorError, match="unknown crop 'tight'"):
        Attributor(model, crop="tight", **kw)


def test_arrays_and_files_are_prepared_alike(trained, tmp_path):
    """predict (pixels in memory) and predict_files (the training path, prepare) agree on a PNG."""
    from privattrib.data.preprocess import Preprocess, prepare, prepare_array

    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    path = tmp_path / "odd.png"
    Image.fromarray(pixels).save(path)
    prep = Preprocess(size=(16, 16), crop="center", channels=3)
    assert np.array_equal(prepare_array(pixels, prep), prepare(path, prep))
    attributor = load_attributor(trained.path, device="cpu")
    (from_array,) = attributor.predict([pixels])
    (from_file,), skipped = attributor.predict_files([path])
    assert skipped == []
    assert from_file.key == str(path) and from_file.resized_from == (37, 23)
    for name in CLASSES:
        assert from_array.probabilities[name] == pytest.approx(from_file.probabilities[name], abs=1e-6)


def test_an_upload_in_memory_is_attributed_like_the_same_file(trained, tmp_path):
    """predict_encoded (the web page's upload) decodes a large JPEG at reduced scale exactly as
    predict_files does, so the page and `privattrib attribute` give the same answer."""
    from privattrib.data import BadImageError

    big = np.kron(_picture(np.random.default_rng(4), "checker"), np.ones((10, 12, 1), dtype=np.uint8))
    path = tmp_path / "big.jpg"
    Image.fromarray(big).save(path, quality=90)
    attributor = load_attributor(trained.path, device="cpu")
    (from_file,), _ = attributor.predict_files([path])
    from_bytes = attributor.predict_encoded(path.read_bytes(), "upload.jpg")
    assert from_bytes.key == "upload.jpg" and from_bytes.resized_from == from_file.resized_from == (160, 192)
    for name in CLASSES:
        assert from_bytes.probabilities[name] == pytest.approx(from_file.probabilities[name], abs=1e-6)
    with pytest.raises(BadImageError, match="upload.jpg"):
        attributor.predict_encoded(b"not a picture", "upload.jpg")
    with pytest.raises(BadImageError, match="over the limit of 1,000") as info:  # the caller's limit
        attributor.predict_encoded(path.read_bytes(), "upload.jpg", max_pixels=1000)
    assert info.value.too_large


def test_celeba_models_use_yu_crop_for_aligned_images(trained):
    attributor = load_attributor(trained.path, device="cpu")
    attributor.crop = "yu2019"
    aligned = np.random.default_rng(3).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    other = np.random.default_rng(4).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    a, o = attributor.predict([aligned, other])
    assert any("Yu et al." in n for n in a.notes)
    assert not any("Yu et al." in n for n in o.notes) and any("centre-cropped" in n for n in o.notes)


def test_run_checkpoints_load_uncalibrated(tmp_path):
    """A clean model of `privattrib run` (no temperature): T = 1, said so; an OUTDIR picks its clean
    model of the lowest seed, reads the crop from the experiment and its held-out row."""
    from privattrib.attribution.models import make_classifier, save_classifier

    outdir = tmp_path / "exp"
    names = ["real", "dcgan", "sngan"]
    for seed in (1, 0):
        model = make_classifier("yu2019", 3, 16, 3, seed=seed, fmap_base=32, fmap_max=16)
        save_classifier(model, outdir / "models" / "clean-models" / f"yu2019-key{seed}.pt",
                        extra={"class_names": names, "seed": seed})
    spec = {"name": "exp", "data": {"sources": {"real": {"kind": "celeba", "path": "/nowhere/celeba"},
                                                "dcgan": {"kind": "gan", "arch": "dcgan", "preset": "tiny", "seed": 0},
                                                "sngan": {"kind": "gan", "arch": "sngan", "preset": "tiny", "seed": 0}}}}
    (outdir / "experiment.json").write_text(json.dumps({"spec": spec}))
    (outdir / "cells").mkdir()
    row = {"task": "attribution", "spec": "none", "scenario": "clean-train", "seed": 0, "accuracy": 0.9,
           "chance": 1 / 3, "n_test": 30, "clean_model_path": str(outdir / "models/clean-models/yu2019-key0.pt")}
    (outdir / "cells" / "row.json").write_text(json.dumps(row))

    attributor = load_attributor(outdir, device="cpu")
    assert attributor.source.endswith("yu2019-key0.pt")
    assert attributor.class_names == names and attributor.temperature == 1.0 and not attributor.calibrated
    assert attributor.crop == "yu2019"  # the experiment's real source is CelebA
    assert any("using the one of seed 0" in m for m in attributor.messages)
    assert any("uncalibrated" in m for m in attributor.messages) and "Uncalibrated" in attributor.scope
    assert "GAN dcgan" in attributor.scope
    assert attributor.describe()["held_out_accuracy"] == 0.9
    (r,) = attributor.predict([np.zeros((16, 16, 3), np.uint8)])
    assert sum(r.probabilities.values()) == pytest.approx(1.0)

    # the same checkpoint elsewhere: no experiment to read, still usable
    lone = tmp_path / "lone.pt"
    lone.write_bytes((outdir / "models/clean-models/yu2019-key1.pt").read_bytes())
    attributor = load_attributor(lone, device="cpu")
    assert attributor.class_names == names and attributor.crop == "center"
    assert "not recorded" in attributor.scope


def test_unusable_models_are_refused_with_a_reason(tmp_path):
    with pytest.raises(AttributorError, match="model not found"):
        load_attributor(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(AttributorError, match="not a readable PyTorch checkpoint"):
        load_attributor(tmp_path / "text.pt")
    torch.save({"G": {}, "config": {}}, tmp_path / "gan.pt")
    with pytest.raises(AttributorError, match="not a privattrib classifier"):
        load_attributor(tmp_path / "gan.pt")
    from privattrib.attribution.models import make_classifier, save_classifier

    save_classifier(make_classifier("dct", 2, 8, 1), tmp_path / "nameless.pt")
    with pytest.raises(AttributorError, match="does not name its 2 classes"):
        load_attributor(tmp_path / "nameless.pt")
    save_classifier(make_classifier("dct", 2, 8, 1), tmp_path / "mismatched.pt",
                    extra={"attributor": {"class_names": ["real", "dcgan", "sngan"], "image_size": 8, "in_channels": 1}})
    with pytest.raises(AttributorError, match="names 3 classes but the classifier has 2 outputs"):
        load_attributor(tmp_path / "mismatched.pt")
    (tmp_path / "empty-outdir").mkdir()
    with pytest.raises(AttributorError, match="no classifier checkpoint"):
        load_attributor(tmp_path / "empty-outdir")


# ---------------------------------------------------------------------------------------------
# calibration


def _over_confident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a 4-class model that is right 70% of the time but ~99% sure every time."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    predicted = np.where(rng.random(n) < 0.7, labels, (labels + rng.integers(1, 4, n)) % 4)
    logits = rng.normal(0, 0.5, (n, 4))
    logits[np.arange(n), predicted] += 6.0
    return logits, labels


def test_temperature_scaling_fixes_an_over_confident_model():
    val_logits, val_labels = _over_confident(2000, 0)
    test_logits, test_labels = _over_confident(2000, 1)
    t = cal.fit_temperature(val_logits, val_labels)
    assert t > 1.5  # over-confident: the logits must be cooled
    before = cal.expected_calibration_error(cal.softmax(test_logits), test_labels)
    after = cal.expected_calibration_error(cal.softmax(test_logits, t), test_labels)
    assert before > 0.2 and after < 0.05 and after <= before
    assert cal.negative_log_likelihood(test_logits, test_labels, t) < cal.negative_log_likelihood(test_logits, test_labels)
    probs = cal.softmax(test_logits, t)
    assert np.allclose(probs.sum(1), 1.0) and (probs.argmax(1) == test_logits.argmax(1)).all()


def test_temperature_scaling_warms_an_under_confident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    predicted = np.where(rng.random(2000) < 0.95, labels, (labels + 1) % 4)
    logits = rng.normal(0, 0.1, (2000, 4))
    logits[np.arange(2000), predicted] += 0.5  # right 95% of the time, about 40% sure
    assert cal.fit_temperature(logits, labels) < 0.5


class _BrightnessModel(torch.nn.Module):
    """Class 0 for bright images, 1 for dark ones, with a margin that grows with the contrast."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([4 * m, -4 * m], dim=1)


def _labelled(values, labels):
    from privattrib.data.dataset import LabeledImages

    images = np.stack([np.full((1, 8, 8), v, np.uint8) for v in values])
    return LabeledImages(images=images, labels=np.asarray(labels), class_names=["real", "gan"],
                         keys=[f"k{i}" for i in range(len(values))])


def test_a_validation_split_without_errors_leaves_the_model_uncalibrated():
    from types import SimpleNamespace

    from privattrib.attribution.attributor import _calibrate_and_test
    from privattrib.training import TrainConfig

    test = _labelled([250, 10, 200, 40], [0, 1, 0, 1])
    config = TrainConfig(device="cpu")
    separable = SimpleNamespace(val=_labelled([240, 20, 180, 60], [0, 1, 0, 1]), test=test,
                                class_names=["real", "gan"])
    t, calibration, _ = _calibrate_and_test(_BrightnessModel(), separable, config, "off")
    assert t == 1.0 and calibration["fitted_on"] is None and "classified correctly" in calibration["not_fitted"]
    # one error on the validation split: the NLL has a minimum again, and T is fitted
    with_error = SimpleNamespace(val=_labelled([240, 20, 180, 60, 150], [0, 1, 0, 1, 1]), test=test,
                                 class_names=["real", "gan"])
    t, calibration, _ = _calibrate_and_test(_BrightnessModel(), with_error, config, "off")
    assert calibration["fitted_on"] and calibration["not_fitted"] is None and t != 1.0


def test_ece_by_hand_and_input_checks():
    # two images at confidence 0.9 (one right), one at 0.6 (right): bins (0.8, 0.9] and (0.5, 0.6]
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    labels = np.array([0, 0, 0])
    expected = (2 * abs(0.5 - 0.9) + 1 * abs(1.0 - 0.6)) / 3
    assert cal.expected_calibration_error(probs, labels) == pytest.approx(expected)
    bins = cal.reliability_bins(probs, labels)
    assert bins["count"].sum() == 3 and len(bins["edges"]) == 16
    assert cal.fit_temperature(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 1])) <= 1.0
    with pytest.raises(ValueError, match="temperature"):
        cal.softmax(probs, 0.0)
    with pytest.raises(ValueError, match="labels"):
        cal.expected_calibration_error(probs, np.array([0, 2, 0]))
    with pytest.raises(ValueError, match="N x K"):
        cal.fit_temperature(np.zeros(3), np.zeros(3, int))


# ---------------------------------------------------------------------------------------------
# the demo model (a tiny recipe here; the real one is exercised by the integration test)


def test_demo_model_trains_once_under_a_lock(folders, tmp_path, monkeypatch):
    import privattrib.attribution.attributor as attributor_module

    recipe = {"version": "test", "real": str(folders["real"]),
              "fakes": {"checker": str(folders["checker"]), "stripes": str(folders["stripes"])},
              "size": SIZE, "channels": 3, "per_class": {"train": 30, "val": 6, "test": 12},
              "classifier": {**SMALL_NET, "epochs": 2}, "seed": 0}
    calls = []
    real_train = attributor_module.train_attributor

    def counting(*args, **kwargs):
        calls.append(kwargs.get("demo"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(attributor_module, "train_attributor", counting)
    monkeypatch.setattr(attributor_module, "demo_recipe", lambda: recipe)
    monkeypatch.setenv("PRIVATTRIB_CACHE", str(tmp_path / "cache"))
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(demo_attributor_path(device="cpu", progress=False)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [True]  # two concurrent callers, one training
    assert len(set(paths)) == 1 and paths[0].is_file() and paths[0].parent == tmp_path / "cache" / "attributor-demo"
    assert not list(paths[0].parent.glob("*.work"))  # the assembled data is not left behind
    attributor = load_attributor("demo", device="cpu")
    assert calls == [True] and attributor.source == "demo"
    assert "only the demo's built-in sources" in attributor.scope
    assert any("demo" in m for m in attributor.messages)


# ---------------------------------------------------------------------------------------------
# the command line


def _run(args: list[str]):
    return CliRunner().invoke(app, args)


def test_cli_attribute_table_json_and_csv(trained, held_out, tmp_path):
    result = _run(["attribute", str(held_out["checker"]), "--model", str(trained.path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "checker" in result.stdout and "12 image(s) attributed" in result.stdout
    assert "uncalibrated: every one of the 18 validation images" in result.stderr and "scope:" in result.stderr

    csv_path = tmp_path / "out.csv"
    result = _run(["attribute", str(held_out["real"]), str(held_out["stripes"]), "--model", str(trained.path),
                   "--json", "--csv", str(csv_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"]["classes"] == CLASSES and doc["skipped"] == []
    assert len(doc["images"]) == 24
    for image in doc["images"]:
        assert image["predicted"] in CLASSES and sum(image["probabilities"].values()) == pytest.approx(1.0)
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("file,status,predicted,confidence,p_real,p_checker,p_stripes") and len(rows) == 25


def test_cli_attribute_bad_input_corpus(trained, tmp_path):
    expect = make_corpus(tmp_path / "corpus")
    result = _run(["attribute", str(tmp_path / "corpus"), "--model", str(trained.path), "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    doc = json.loads(result.stdout)
    attributed = {Path(i["key"]).relative_to(tmp_path / "corpus").as_posix(): i for i in doc["images"]}
    assert sorted(attributed) == good_names(expect)
    skipped = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    for name in bad_names(expect):
        if name in ("notes.txt", "face.pgm.bad"):
            assert Path(name).name not in skipped  # not images by name: ignored, as obfuscate does
            continue
        assert expect[name].reason in skipped[Path(name).name], (name, skipped)
        assert f"skipped {tmp_path / 'corpus'}" in result.stderr and Path(name).name in result.stderr
    assert "ignored 2 entries" in result.stderr
    # odd-but-valid files are converted and resized, and say so
    assert attributed["rgba.png"]["channels_converted"] == "RGBA -> RGB"
    assert attributed["grey.png"]["channels_converted"] == "L -> RGB"
    assert attributed["cmyk.jpg"]["channels_converted"] == "CMYK -> RGB"
    assert attributed["palette_transparent.png"]["channels_converted"] == "P -> RGB"
    assert any("flattened" in n for n in attributed["palette_transparent.png"]["notes"])
    assert not any("flattened" in n for n in attributed["cmyk.jpg"]["notes"])
    assert attributed["good.png"]["resized_from"] == [30, 40]
    assert attributed["exif_rotated.jpg"]["resized_from"] == [40, 30]  # as displayed, EXIF applied


def test_cli_attribute_exit_codes(trained, held_out, tmp_path):
    one = str(sorted(held_out["real"].glob("*.png"))[0])
    assert _run(["attribute", one, "--model", str(tmp_path / "nope.pt")]).exit_code == 2
    assert _run(["attribute", str(tmp_path / "nope.png"), "--model", str(trained.path)]).exit_code == 2
    assert _run(["attribute", one, "--model", str(trained.path), "--batch-size", "0"]).exit_code == 2
    assert _run(["attribute", one, "--model", str(trained.path), "--show", "-1"]).exit_code == 2
    assert _run(["attribute", one, "--model", str(trained.path), "--device", "warp"]).exit_code == 2
    result = _run(["attribute", one, "--model", str(tmp_path / "nope.pt")])
    assert "model not found" in result.stderr
    (tmp_path / "bad.png").write_text("no picture")
    result = _run(["attribute", str(tmp_path / "bad.png"), "--model", str(trained.path)])
    assert result.exit_code == 1 and "not an image" in result.stderr and "no image could be attributed" in result.stderr
    (tmp_path / "notes.txt").write_text("hello")
    result = _run(["attribute", one, str(tmp_path / "notes.txt"), "--model", str(trained.path)])
    assert result.exit_code == 1 and "not an image file" in result.stderr


def test_cli_train_attributor(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVATTRIB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cli-model.pt"
    base = ["train-attributor", "--real", str(folders["real"]), "-o", str(out), "--size", str(SIZE), "--device", "cpu",
            "--no-progress"]
    assert _run(base + ["--fake", "checker"]).exit_code == 2
    assert _run(base + ["--fake", f"real={folders['checker']}"]).exit_code == 2
    assert _run(base + ["--fake", f"checker={tmp_path / 'missing'}"]).exit_code == 2
    assert _run(base + ["--fake", f"checker={folders['checker']}", "--option", "nonsense"]).exit_code == 2
    result = _run(base + ["--fake", f"checker={folders['checker']}", "--option", "no_such_option=1"])
    assert result.exit_code == 2 and "no_such_option" in result.stderr
    assert not out.exists()
    # "mixed" holds real and checker pictures alike: no classifier separates it, so the validation
    # split has errors and a temperature is fitted
    mixed = tmp_path / "mixed"
    _write_class(mixed, "real", 15, 7)
    for i, path in enumerate(_write_class(tmp_path / "checker-part", "checker", 15, 8)):
        path.rename(mixed / f"c{i:03d}.png")
    result = _run(base + ["--fake", f"checker={folders['checker']}", "--fake", f"mixed={mixed}",
                          "--epochs", "2", "--arch", "dct", "--option", "eval_batch_size=64", "--lr", "2e-3", "--per-class", "30"])
    assert result.exit_code == 0, result.output
    assert "held-out test split: accuracy" in result.stdout and "(fitted on the validation split" in result.stdout
    assert out.is_file() and out.with_name("cli-model.confusion.png").is_file()
    attributor = load_attributor(out, device="cpu")
    assert attributor.class_names == ["real", "checker", "mixed"] and attributor.calibrated
    result = _run(["attribute", str(mixed), "--model", str(out), "--device", "cpu"])
    assert result.exit_code == 0 and f"calibrated: temperature {attributor.temperature:.3f}" in result.stderr


# ---------------------------------------------------------------------------------------------
# integration: real faces against a zoo GAN, and the real demo model


@pytest.mark.integration
@pytest.mark.shared_data
def test_attributor_on_celeba_against_a_zoo_gan(celeba_root, tmp_path):
    """CelebA (3,000 faces, identity-disjoint split) against a tiny dcgan trained here on the real
    training identities: held-out accuracy far above chance (1/2), and `attribute`'s file path on
    the original CelebA JPEGs and on fresh GAN samples agrees."""
    from privattrib.gans import sample_gan

    out = tmp_path / "celeba-vs-dcgan.pt"
    result = train_attributor({"celeba": str(celeba_root), "limit": 3000}, {"dcgan": "zoo:dcgan:tiny"}, out,
                              size=32, per_class=600, seed=0, device="cpu", work_dir=tmp_path / "work",
                              cache_dir=tmp_path / "cache", progress=False,
                              classifier={"arch": "yu2019", "epochs": 4, "batch": 32, "fmap_base": 256,
                                          "fmap_max": 128})
    assert result.class_names == ["real", "dcgan"]
    assert result.accuracy >= 0.85, result.confusion_matrix
    assert min(result.per_class_accuracy.values()) >= 0.7
    assert result.calibration["ece_after"] < 0.15

    attributor = load_attributor(out, device="cpu")
    assert attributor.crop == "yu2019"
    block = json.loads(out.with_suffix(".json").read_text())["attributor"]
    real_files = [celeba_root / "img_align_celeba" / Path(k).name for k in block["data"]["test_keys"]
                  if k.startswith("real/")][:60]
    on_files, skipped = attributor.predict_files(real_files)
    assert skipped == [] and all(a.resized_from == (218, 178) for a in on_files)
    assert all(any("Yu et al." in n for n in a.notes) for a in on_files)
    real_hits = np.mean([a.predicted == "real" for a in on_files])
    info = block["data"]["sources"]["dcgan"]
    fresh = sample_gan(info["run_dir"], 60, seed=int(info["sample_seed"]) + 1, device="cpu")
    on_samples = attributor.predict(list(fresh.transpose(0, 2, 3, 1)))
    gan_hits = np.mean([a.predicted == "dcgan" for a in on_samples])
    assert (real_hits + gan_hits) / 2 >= 0.8, (real_hits, gan_hits)


@pytest.mark.integration
def test_demo_model_on_a_fresh_cache(tmp_path, monkeypatch):
    """`attribute --model demo` trains the real demo model once, then reuses it."""
    from privattrib.data import synthetic_faces

    monkeypatch.setenv("PRIVATTRIB_CACHE", str(tmp_path / "cache"))
    face = synthetic_faces(n_identities=1, per_identity=1, size=64, seed=123).images[0].transpose(1, 2, 0)
    Image.fromarray(face).save(tmp_path / "face.png")
    result = _run(["attribute", str(tmp_path / "face.png"), "--model", "demo", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"]["classes"] == ["real", "dcgan", "lsgan", "sngan"]
    assert doc["model"]["held_out_accuracy"] > 0.6  # chance 0.25
    assert "demo" in doc["model"]["scope"] and doc["images"][0]["resized_from"] == [64, 64]
    assert "training the demo model once" in result.stderr
    again = _run(["attribute", str(tmp_path / "face.png"), "--model", "demo", "--json", "--device", "cpu"])
    assert again.exit_code == 0 and "training the demo model" not in again.stderr
