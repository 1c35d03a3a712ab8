"""GAN zoo: every architecture trains and samples, runs resume exactly, DP accounting, quality metric."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from privattrib.data.dataset import LabeledImages
from privattrib.gans import available_archs, gan_quality, load_gan, sample_gan, sample_to_folder, train_gan
from privattrib.gans.nets import build_nets

FAST = {"width": 8, "z_dim": 16, "quality_samples": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    # On a busy 2-core machine two OpenMP threads per process spin against each other (measured
    # 20-70x slower for these small convs); one thread keeps these tests fast anywhere.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def smooth_images(n: int, size: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields: an easy 'real' distribution, uint8 n x C x size x size."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 4, 4, generator=g) * 255
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def real() -> LabeledImages:
    images = smooth_images(48)
    return LabeledImages(images, np.zeros(len(images), np.int64), ["real"], [f"r{i}" for i in range(len(images))])


def weights(run) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=False)


@pytest.mark.parametrize("arch", ["dcgan", "lsgan", "wgan-gp", "sngan", "progan", "dp-dcgan"])
def test_each_arch_trains_and_samples_deterministically(arch, real, tmp_path):
    run = train_gan(arch, real, size=32, steps=3, batch_size=8, out=tmp_path / arch, progress=False,
                    sample_every=2, overrides=FAST)
    for name in ("config.json", "checkpoint.pt", "generator.pt", "log.jsonl", "quality.json", "summary.json",
                 "samples/step_0000002.png", "samples/step_0000003.png"):
        assert (run / name).is_file(), name
    a = sample_gan(run, 5, seed=3, device="cpu")
    assert a.shape == (5, 3, 32, 32) and a.dtype == np.uint8
    assert a.std() > 0  # not a constant image
    np.testing.assert_array_equal(a, sample_gan(run, 5, seed=3, device="cpu"))
    # Batch-independent (eval mode), up to float rounding: conv kernels may differ by batch size.
    other_batching = sample_gan(run, 5, seed=3, device="cpu", batch_size=2)
    assert np.abs(a.astype(int) - other_batching).max() <= 1
    assert not np.array_equal(a, sample_gan(run, 5, seed=4, device="cpu"))
    ckpt = weights(run)
    assert ckpt["step"] == 3
    before, _ = build_nets(ckpt["config"])
    changed = [k for k, v in before.state_dict().items() if not torch.equal(v, ckpt["G"][k])]
    assert changed, "the generator did not change during training"
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite([r["loss_d"], r["loss_g"]]).all() for r in rows)


def test_greyscale_and_64px(tmp_path):
    grey = smooth_images(20, size=40, channels=1)  # resized to 64 and trained on 1 channel
    run = train_gan("dcgan", grey, size=64, steps=1, batch_size=4, out=tmp_path / "g", progress=False, overrides=FAST)
    assert sample_gan(run, 2, device="cpu").shape == (2, 1, 64, 64)


def test_same_seed_same_training_and_two_seeds_differ(real, tmp_path):
    kw = dict(size=32, steps=2, batch_size=8, progress=False, overrides=FAST)
    a = train_gan("dcgan", real, seed=1, out=tmp_path / "a", **kw)
    b = train_gan("dcgan", real, seed=1, out=tmp_path / "b", **kw)
    c = train_gan("dcgan", real, seed=2, out=tmp_path / "c", **kw)
    np.testing.assert_array_equal(sample_gan(a, 4, device="cpu"), sample_gan(b, 4, device="cpu"))
    assert not np.array_equal(sample_gan(a, 4, device="cpu"), sample_gan(c, 4, device="cpu"))


@pytest.mark.parametrize("arch", ["dcgan", "dp-dcgan"])
def test_resume_continues_exactly(arch, real, tmp_path):
    kw = dict(size=32, batch_size=8, progress=False, overrides=FAST, seed=5)
    whole = train_gan(arch, real, steps=4, out=tmp_path / "whole", **kw)
    part = train_gan(arch, real, steps=2, out=tmp_path / "part", **kw)
    assert weights(part)["step"] == 2
    part = train_gan(arch, real, steps=4, out=tmp_path / "part", **kw)  # same call, more steps: continues
    w, p = weights(whole), weights(part)
    assert p["step"] == 4
    for key in w["G"]:
        torch.testing.assert_close(p["G"][key], w["G"][key], rtol=0, atol=0)
    for key in w["D"]:
        torch.testing.assert_close(p["D"][key], w["D"][key], rtol=0, atol=0)
    steps = [json.loads(line)["step"] for line in (part / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    np.testing.assert_array_equal(sample_gan(whole, 3, device="cpu"), sample_gan(part, 3, device="cpu"))


def test_resume_drops_log_lines_after_the_checkpoint(real, tmp_path):
    kw = dict(size=32, batch_size=8, progress=False, overrides={**FAST, "checkpoint_every": 2})
    run = train_gan("dcgan", real, steps=3, out=tmp_path / "r", **kw)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    # Simulate a crash after step 3's log line but with the step-2 checkpoint on disk.
    ckpt_2 = train_gan("dcgan", real, steps=2, out=tmp_path / "r2", **kw) / "checkpoint.pt"
    (run / "checkpoint.pt").write_bytes(ckpt_2.read_bytes())
    assert ckpt["step"] == 3
    train_gan("dcgan", real, steps=3, out=run, **kw)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_different_config_in_same_folder_is_refused(real, tmp_path):
    kw = dict(size=32, steps=1, batch_size=8, progress=False, overrides=FAST)
    train_gan("dcgan", real, out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match="different configuration.*seed"):
        train_gan("dcgan", real, out=tmp_path / "x", seed=9, **kw)
    with pytest.raises(ValueError, match="different configuration.*arch"):
        train_gan("lsgan", real, out=tmp_path / "x", **kw)
    other = LabeledImages(smooth_images(48, seed=7), real.labels, real.class_names, real.keys)
    with pytest.raises(ValueError, match="different configuration.*data"):
        train_gan("dcgan", other, out=tmp_path / "x", **kw)


def test_bad_parameters_are_refused(real, tmp_path):
    kw = dict(out=tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="unknown GAN architecture"):
        train_gan("stylegan9", real, **kw)
    with pytest.raises(ValueError, match="32, 64, 128"):
        train_gan("dcgan", real, size=48, **kw)
    with pytest.raises(ValueError, match="unknown preset"):
        train_gan("dcgan", real, preset="huge", **kw)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        train_gan("dcgan", real, steps=0, **kw)
    with pytest.raises(ValueError, match="unknown override"):
        train_gan("dcgan", real, overrides={"learning_rate": 1}, **kw)
    with pytest.raises(ValueError, match="uint8"):
        train_gan("dcgan", real.images.astype(np.float32), **kw)
    with pytest.raises(ValueError, match="dp_noise_multiplier"):
        train_gan("dp-dcgan", real, overrides={"dp_noise_multiplier": 0.0}, **kw)
    with pytest.raises(ValueError, match="non-negative"):
        sample_gan(tmp_path, -1)
    with pytest.raises(FileNotFoundError):
        load_gan(tmp_path / "nothing")


def test_tiny_preset_resolves_per_arch(real, tmp_path):
    from privattrib.gans.train import resolve_config

    kw = dict(size=None, steps=None, preset="tiny", seed=0, batch_size=None, sample_every=None, overrides=None)
    a = resolve_config("dcgan", real.images, **kw)
    b = resolve_config("progan", real.images, **kw)
    w = resolve_config("wgan-gp", real.images, **kw)
    assert a["size"] == b["size"] == 32
    assert a["width"] > b["width"] and a["steps"] > b["steps"]
    assert w["recipe"]["n_critic"] == 2 and a["recipe"]["n_critic"] == 1  # per-arch recipe change
    assert resolve_config("wgan-gp", real.images, **{**kw, "preset": None})["recipe"]["n_critic"] == 5
    assert resolve_config("dcgan", real.images, **{**kw, "steps": 7})["steps"] == 7
    # cpu-64 is the same narrow recipe at 64 px with more steps
    c = resolve_config("wgan-gp", real.images, **{**kw, "preset": "cpu-64"})
    assert c["size"] == 64 and c["recipe"]["n_critic"] == 2 and c["steps"] > w["steps"]
    assert resolve_config("sngan", real.images, **{**kw, "preset": "cpu-64"})["width"] == a["width"]
    # ... except lsgan and progan, which learn at 64 px only with their full recipes (docs/gans.md)
    ls = resolve_config("lsgan", real.images, **{**kw, "preset": "cpu-64"})
    pro = resolve_config("progan", real.images, **{**kw, "preset": "cpu-64"})
    assert ls["recipe"]["lr_d"] == ls["recipe"]["lr_g"] == 2e-4 and ls["z_dim"] == 128 and ls["steps"] == 3000
    assert pro["width"] == b["width"] and pro["z_dim"] == 128 and pro["steps"] == 1500
    assert resolve_config("lsgan", real.images, **kw)["recipe"]["lr_d"] == 1e-4  # tiny keeps its own


def test_dp_dcgan_reports_epsilon_that_grows(real, tmp_path):
    from opacus.accountants import RDPAccountant

    run = train_gan("dp-dcgan", real, size=32, steps=6, batch_size=8, out=tmp_path / "dp", progress=False,
                    overrides={**FAST, "dp_noise_multiplier": 1.2, "dp_delta": 1e-4})
    eps = [json.loads(line)["epsilon"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(eps)) and all(e > 0 for e in eps)
    assert all(b > a for a, b in zip(eps, eps[1:]))
    privacy = json.loads((run / "summary.json").read_text())["privacy"]
    assert privacy["delta"] == 1e-4 and privacy["sampling"] == "poisson"
    assert privacy["sample_rate"] == pytest.approx(8 / 48)
    assert privacy["discriminator_steps"] == 6
    # The reported epsilon is what Opacus's RDP accountant gives for 6 Poisson-subsampled steps.
    acc = RDPAccountant()
    for _ in range(6):
        acc.step(noise_multiplier=1.2, sample_rate=8 / 48)
    assert privacy["epsilon"] == pytest.approx(acc.get_epsilon(1e-4))
    assert privacy["epsilon"] == pytest.approx(eps[-1])
    # More noise, less epsilon for the same steps.
    quiet = train_gan("dp-dcgan", real, size=32, steps=6, batch_size=8, out=tmp_path / "dp2", progress=False,
                      overrides={**FAST, "dp_noise_multiplier": 3.0, "dp_delta": 1e-4})
    assert json.loads((quiet / "summary.json").read_text())["privacy"]["epsilon"] < privacy["epsilon"]


def test_dp_dcgan_survives_empty_poisson_batches(tmp_path):
    images = smooth_images(200)
    # Expected batch 2 of 200: about 1 step in 7 draws no real image and must still make a noisy update.
    run = train_gan("dp-dcgan", images, size=32, steps=12, batch_size=2, out=tmp_path / "e", progress=False,
                    overrides=FAST)
    ckpt = weights(run)
    assert ckpt["step"] == 12 and sum(h[2] for h in ckpt["accountant_history"]) == 12
    assert all(torch.isfinite(v).all() for v in ckpt["D"].values() if v.is_floating_point())


def test_quality_ranks_real_closer_than_noise_and_untrained():
    real_a, real_b = smooth_images(200, seed=1), smooth_images(200, seed=2)
    noise = np.random.default_rng(0).integers(0, 256, real_a.shape, dtype=np.uint8)
    same = gan_quality(real_a, real_b, device="cpu")
    far = gan_quality(noise, real_b, device="cpu")
    assert same["kid"] < 0.1 * far["kid"]
    assert same["spectrum_distance"] < far["spectrum_distance"]
    assert same["colour_distance"] < far["colour_distance"]
    assert abs(same["kid"]) < 0.05
    # Unbiased: an exact copy scores about zero, not a positive bias.
    assert abs(gan_quality(real_a[:100], real_a[100:], device="cpu")["kid"]) < 0.05
    # Real images of another size are resized to the fake size.
    big = np.repeat(np.repeat(real_b, 2, axis=2), 2, axis=3)
    assert gan_quality(real_a, big, device="cpu")["size"] == [32, 32]
    with pytest.raises(ValueError, match="channels"):
        gan_quality(real_a, real_b[:, :1])
    with pytest.raises(ValueError, match="uint8"):
        gan_quality(real_a.astype(float), real_b)


def test_sample_to_folder_and_cli(real, tmp_path):
    from PIL import Image

    from privattrib.cli import app

    run = train_gan("dcgan", real, size=32, steps=1, batch_size=8, out=tmp_path / "run", progress=False, overrides=FAST)
    paths = sample_to_folder(run, 3, tmp_path / "png", seed=2, device="cpu")
    assert [p.name for p in paths] == [f"dcgan_s0_2_{i:06d}.png" for i in range(3)]
    with Image.open(paths[0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB" and not im.info
    np.testing.assert_array_equal(np.asarray(Image.open(paths[1])).transpose(2, 0, 1), sample_gan(run, 3, seed=2, device="cpu")[1])
    runner = CliRunner()
    result = runner.invoke(app, ["gan", "sample", str(run), "-n", "3", "-o", str(tmp_path / "cli"), "--seed", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert [(tmp_path / "cli" / p.name).read_bytes() for p in paths] == [p.read_bytes() for p in paths]
    result = runner.invoke(app, ["gan", "archs"])
    assert result.exit_code == 0 and all(a in result.output for a in available_archs())
    result = runner.invoke(app, ["gan", "sample", str(tmp_path / "nothing"), "-n", "1", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no trained GAN" in result.output


@pytest.mark.integration
def test_tiny_dcgan_on_celeba_learns(celeba_root, tmp_path):
    from privattrib.data import load_celeba
    from privattrib.gans.sample import calibrate_batchnorm, fixed_noise, to_uint8

    faces = load_celeba(celeba_root, size=32, limit=400, progress=False)
    run = train_gan("dcgan", faces, preset="tiny", steps=200, out=tmp_path / "celeba", progress=False)
    trained = json.loads((run / "quality.json").read_text())
    config = json.loads((run / "config.json").read_text())
    untrained_G, _ = build_nets(config)
    calibrate_batchnorm(untrained_G, config, "cpu")
    with torch.no_grad():
        untrained = to_uint8(untrained_G(fixed_noise(config, 400, seed=1)))
    before = gan_quality(untrained, faces.images, device="cpu")
    assert trained["kid"] < 0.5 * before["kid"]
    assert trained["colour_distance"] < before["colour_distance"]
    # A trained GAN is still measurably further from the real images than real images are from each other.
    assert trained["kid_real_vs_real"] < trained["kid"]


def test_cli_train_from_an_image_folder_resumes(tmp_path, monkeypatch):
    from privattrib.cli import app
    from privattrib.data.io import save_png

    monkeypatch.setenv("PRIVATTRIB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, img in enumerate(smooth_images(12, size=40)):
        save_png(folder / f"{i:03d}.png", img.transpose(1, 2, 0))
    args = ["gan", "train", "--arch", "lsgan", "--data", str(folder), "--size", "32", "--steps", "2",
            "--width", "8", "--batch-size", "4", "--device", "cpu", "--quiet", "-o", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 steps" in result.output
    result = CliRunner().invoke(app, [*args[:9], "3", *args[10:]])  # --steps 3: continues
    assert result.exit_code == 0, result.output
    assert weights(tmp_path / "run")["step"] == 3
    result = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "run"), "--seed", "4"])
    assert result.exit_code == 2 and "different configuration" in result.output


def test_rerunning_a_finished_run_recomputes_nothing(real, tmp_path):
    kw = dict(size=32, steps=2, batch_size=8, progress=False, overrides=FAST)
    run = train_gan("dcgan", real, out=tmp_path / "done", **kw)
    stamps = {f: (run / f).stat().st_mtime_ns for f in ("checkpoint.pt", "generator.pt", "quality.json", "summary.json")}
    assert train_gan("dcgan", real, out=run, **kw) == run
    assert stamps == {f: (run / f).stat().st_mtime_ns for f in stamps}
