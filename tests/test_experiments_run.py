"""The grid runner end to end on generated data: results schema, resume after SIGKILL, report rebuild."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from privattrib.experiments import load_spec, read_csv, run_experiment, validate_spec
from privattrib.experiments.store import SpecChangedError
from privattrib.report import build_report

ROOT = Path(__file__).resolve().parents[1]


def make_fake_folder(folder: Path, n: int = 40, size: int = 16) -> Path:
    """A folder of PNG 'GAN outputs': other synthetic people plus a periodic fingerprint."""
    from PIL import Image

    from privattrib.data import synthetic_faces

    faces = synthetic_faces(n_identities=8, per_identity=n // 8, size=size, seed=123).images
    pattern = np.zeros((size, size), np.int16)
    pattern[::2, ::2] = 40  # a checkerboard-like high-frequency trace, like an upsampling artefact
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(faces):
        arr = np.clip(img.astype(np.int16) + pattern, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(arr).save(folder / f"{i:04d}.png")
    return folder


def kill_when_rows(proc: subprocess.Popen, cells_dir: Path, rows: int, timeout: float = 240) -> None:
    """SIGKILL ``proc`` (a ``privattrib run``) as soon as ``rows`` row files exist in ``cells_dir``."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if cells_dir.is_dir() and len(list(cells_dir.glob("*.json"))) >= rows:
                break
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed; make the grid larger")
            time.sleep(0.02)
        else:
            pytest.fail("no cells finished in time")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


def tiny_spec(tmp_path: Path, **changes) -> dict:
    raw = {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "data": {
            "size": 16,
            "sources": {"real": {"synthetic": {"n_identities": 10, "per_identity": 6, "seed": 0}},
                        "fake": str(make_fake_folder(tmp_path / "fakes"))},
            "per_class": {"train": 24, "val": 6, "test": 10},
            "cache_dir": str(tmp_path / "cache"),
        },
        "classifier": {"arch": "yu2019", "epochs": 1, "batch": 16, "fmap_base": 64, "fmap_max": 32},
        "obfuscations": ["none", "pixelate:b=[2,4]", "dp-pix:b=4,m=1,epsilon=[1]"],
        "scenarios": ["clean-train", "obfuscated-train", "fine-tune"],
        "seeds": [0],
    }
    raw.update(changes)
    return raw


def test_tiny_grid_schema_and_report(tmp_path):
    spec = validate_spec(tiny_spec(tmp_path))
    out = tmp_path / "run"
    result = run_experiment(spec, out, progress=False)
    assert not (out / "report.html").exists()  # the runner stores rows; the report is its own stage
    build_report(out)
    cells = spec.cells()
    assert result.failures == {}
    assert result.ran == len(cells) == 1 + 3 * 3
    rows = read_csv(out / "results.csv")
    assert len(rows) == len(cells)
    assert len({(r["scenario"], r["spec"], r["seed"]) for r in rows}) == len(rows)
    for col in ("scenario", "method", "spec", "param_b", "epsilon", "seed", "accuracy", "acc_real", "acc_fake",
                "chance", "laundering_rate", "n_train", "n_test", "mse", "psnr", "ssim", "wall_s", "noise",
                "privacy_notion"):
        assert col in rows[0], col
    by_key = {(r["scenario"], r["spec"]): r for r in rows}
    clean = by_key[("clean-train", "none")]
    assert clean["n_test"] == 20 and clean["chance"] == pytest.approx(0.5)
    assert 0.0 <= clean["accuracy"] <= 1.0
    dp = by_key[("obfuscated-train", "dp-pix:b=4,m=1,epsilon=1,noise=fast")]
    assert dp["epsilon"] == 1 and dp["method"] == "dp-pix" and dp["param_m"] == 1
    assert dp["privacy_notion"].startswith("epsilon-DP") and dp["noise"] == "fast"
    assert by_key[("clean-train", "pixelate:b=4")]["mse"] > by_key[("clean-train", "pixelate:b=2")]["mse"]
    assert all("[" not in r["spec"] for r in rows)

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert "src='http" not in html and 'src="http' not in html  # self-contained
    for text in ("Privacy-utility", "Laundering", "Confusion", "Example", "torch", "yu2019"):
        assert text in html, text

    # the report rebuilds from the directory alone
    os.unlink(out / "report.html")
    from typer.testing import CliRunner

    from privattrib.cli import app

    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file()

    # a rerun recomputes nothing
    again = run_experiment(spec, out, progress=False)
    assert again.ran == 0 and again.skipped == len(cells)

    # new fine-tune options invalidate the fine-tune rows only
    tuned = validate_spec(tiny_spec(tmp_path, classifier={**spec.classifier, "fine_tune_epochs": 2}))
    with pytest.raises(SpecChangedError, match="attribution:fine-tune"):
        run_experiment(tuned, out, progress=False)
    res = run_experiment(tuned, out, progress=False, force=True)
    assert res.ran == 3 and res.skipped == len(cells) - 3
    # a spec that no longer runs fine-tune only hides those rows
    no_ft = validate_spec(tiny_spec(tmp_path, scenarios=["clean-train", "obfuscated-train"]))
    assert run_experiment(no_ft, out, progress=False).ran == 0

    # a changed classifier invalidates the rows: refused, then moved aside with force
    changed = validate_spec(tiny_spec(tmp_path, classifier={"arch": "yu2019", "epochs": 2, "batch": 16, "fmap_base": 64, "fmap_max": 32}))
    with pytest.raises(SpecChangedError, match="classifier"):
        run_experiment(changed, out, progress=False)
    # a grown grid is not a change: only the new cells run
    grown = validate_spec(tiny_spec(tmp_path, obfuscations=["none", "pixelate:b=[2,4,8]", "dp-pix:b=4,m=1,epsilon=[1]"],
                                    scenarios=["clean-train"]))
    res = run_experiment(grown, out, progress=False)
    assert res.ran == 1 and res.skipped == 4


def test_spec_errors_exit_cleanly(tmp_path):
    from typer.testing import CliRunner

    from privattrib.cli import app

    bad = tiny_spec(tmp_path)
    bad["data"]["per_class"]["train"] = -3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    res = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "data.per_class.train" in res.output


def test_not_enough_images_names_the_source(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["data"]["per_class"] = {"train": 50, "val": 0, "test": 10}
    with pytest.raises(Exception, match="fake|real"):
        run_experiment(validate_spec(raw), tmp_path / "o", progress=False)


def test_ray_executor_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    with pytest.raises(RuntimeError, match="pip install"):
        run_experiment(validate_spec(tiny_spec(tmp_path)), tmp_path / "o", executor="ray", progress=False)


def test_resume_after_sigkill(tmp_path):
    """Kill the command after a few cells, rerun: every cell once, finished rows untouched."""
    raw = tiny_spec(tmp_path, obfuscations=["none", "pixelate:b=[2,4]", "blur:k=[3,5]", "dp-pix:b=4,m=1,epsilon=[1,5]"],
                    scenarios=["clean-train", "obfuscated-train"])
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "privattrib", "run", str(spec_path), "-o", str(out), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells_dir = out / "cells"
    kill_when_rows(proc, cells_dir, 3)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in cells_dir.glob("*.json")}
    total = len(load_spec(spec_path).cells())
    assert 3 <= len(before) < total
    # a kill may leave an atomic write's temp file behind, never a partial cell file
    leftovers = [p.name for p in cells_dir.iterdir() if not p.name.endswith(".json")]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in leftovers), leftovers
    for p in cells_dir.glob("*.json"):
        json.loads(p.read_text())

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in cells_dir.glob("*.json")}
    assert len(after) == total
    for name, stamp in before.items():
        assert after[name] == stamp, f"{name} was recomputed"
    rows = read_csv(out / "results.csv")
    keys = [(r["scenario"], r["spec"], r["seed"]) for r in rows]
    assert len(keys) == total == len(set(keys))
    manifest = json.loads((out / "experiment.json").read_text())
    assert manifest["runs"] == 2


def test_a_moved_repository_resumes_without_recomputing(tmp_path):
    """Runs and data moved together (relative paths in the spec) keep every finished cell."""
    import shutil

    repo = tmp_path / "repo"
    make_fake_folder(repo / "data" / "fakes")
    raw = tiny_spec(tmp_path, obfuscations=["none", "pixelate:b=2"], scenarios=["clean-train"])
    raw["data"]["sources"]["fake"] = "data/fakes"
    raw["data"]["cache_dir"] = "cache"
    first = run_experiment(validate_spec(raw, base_dir=repo), repo / "runs" / "x", progress=False)
    assert first.ran == 2 and not first.failures
    moved = tmp_path / "moved"
    shutil.move(repo, moved)
    again = run_experiment(validate_spec(raw, base_dir=moved), moved / "runs" / "x", progress=False)
    assert (again.skipped, again.ran) == (2, 0)
    assert len(list((moved / "runs" / "x" / "data").iterdir())) == 1  # the data were not assembled again


def test_a_run_of_an_older_version_is_adopted_and_then_survives_a_move(tmp_path):
    """Rows and data keyed by resolved paths (before keys held paths as written) resume in place,
    take today's stamps and names, appear in the report, and stay valid after a move."""
    import shutil

    repo = tmp_path / "repo"
    make_fake_folder(repo / "data" / "fakes")
    raw = tiny_spec(tmp_path, obfuscations=["none", "pixelate:b=2"], scenarios=["clean-train"])
    raw["data"]["sources"]["fake"] = "data/fakes"
    spec, out = validate_spec(raw, base_dir=repo), repo / "runs" / "x"
    run_experiment(spec, out, progress=False)
    # what an older privattrib left: rows stamped with the resolved-path key, data named by it
    old_stamp = spec.task_hashes(legacy=True)["attribution"]
    assert old_stamp != spec.task_hashes()["attribution"]
    for path in (out / "cells").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "rows_hash": old_stamp}))
    (out / "data" / spec.data_hash()).rename(out / "data" / spec.data_hash(legacy=True))

    again = run_experiment(validate_spec(raw, base_dir=repo), out, progress=False)
    assert (again.skipped, again.ran) == (2, 0)
    assert [p.name for p in (out / "data").iterdir()] == [spec.data_hash()]
    assert {json.loads(p.read_text())["rows_hash"] for p in (out / "cells").glob("*.json")} == {
        spec.task_hashes()["attribution"]}
    assert "2 of 2 cells finished" in build_report(out).read_text()

    shutil.move(repo, tmp_path / "moved")
    moved = run_experiment(validate_spec(raw, base_dir=tmp_path / "moved"), tmp_path / "moved" / "runs" / "x",
                           progress=False)
    assert (moved.skipped, moved.ran) == (2, 0)


def test_one_run_per_outdir(tmp_path):
    from privattrib.experiments.runner import _exclusive

    out = tmp_path / "run"
    out.mkdir()
    with _exclusive(out):
        with pytest.raises(RuntimeError, match="another"):
            run_experiment(validate_spec(tiny_spec(tmp_path)), out, progress=False)


def test_gan_sources_train_on_the_real_training_pool(tmp_path):
    """`gan` trains on the real TRAIN pool only (identity-disjoint from test); `gan_run` samples a run."""
    raw = tiny_spec(tmp_path, obfuscations=["none"], scenarios=["clean-train"])
    raw["data"]["size"] = 32
    raw["data"]["sources"] = {
        "real": {"synthetic": {"n_identities": 10, "per_identity": 6, "seed": 0}},
        "dcgan": {"gan": {"arch": "dcgan", "steps": 2, "batch_size": 8, "seed": 0,
                          "overrides": {"width": 8, "quality_samples": 16}}},
    }
    spec = validate_spec(raw)
    result = run_experiment(spec, tmp_path / "run", progress=False)
    assert result.failures == {} and result.ran == 1
    from privattrib.experiments import load_experiment_data

    data = load_experiment_data(next((tmp_path / "run" / "data").iterdir()))
    info = data.info["sources"]
    assert info["real"]["identity_disjoint"] is True
    assert info["dcgan"]["trained_on"] == info["real"]["train_pool"]
    test_people = set(data.test.identities[data.test.labels == 0].tolist())
    train_people = set(data.train.identities[data.train.labels == 0].tolist())
    assert test_people and not test_people & train_people
    assert data.train.images.shape[1:] == (3, 32, 32) and data.class_names == ["real", "dcgan"]
    assert all(k.startswith("dcgan/") for k, lab in zip(data.test.keys, data.test.labels) if lab == 1)

    # the same run as a `gan_run` source: sampled, not retrained
    run_dir = info["dcgan"]["run_dir"]
    raw2 = dict(raw, name="reuse")
    raw2["data"] = dict(raw["data"], sources={"real": raw["data"]["sources"]["real"], "zoo": {"gan_run": run_dir}})
    res2 = run_experiment(validate_spec(raw2), tmp_path / "run2", progress=False)
    assert res2.failures == {} and res2.ran == 1


def test_attack_rows_join_the_grid(tmp_path):
    """`attacks: {reid, reconstruct}` add rows with task reid/reconstruct beside attribution rows."""
    raw = tiny_spec(tmp_path, obfuscations=["none", "pixelate:b=4"], scenarios=["clean-train"])
    raw["attacks"] = {
        "reid": {"arch": {"arch": "mcpherson2016", "epochs": 1}, "train_per_identity": 4, "test_per_identity": 2},
        "reconstruct": {"arch": {"arch": "mcpherson2016", "epochs": 1}, "train_per_identity": 4,
                        "test_per_identity": 2, "unet": {"epochs": 1}},
    }
    spec = validate_spec(raw)
    scenarios = [c.scenario for c in spec.cells()]
    assert scenarios.count("reid:retrain") == 2 and scenarios.count("reid:no-retrain") == 1
    assert scenarios.count("reconstruct") == 1
    result = run_experiment(spec, tmp_path / "run", progress=False)
    assert result.failures == {}
    rows = read_csv(tmp_path / "run" / "results.csv")
    assert {r["task"] for r in rows} == {"attribution", "reid", "reconstruct"}
    reid = [r for r in rows if r["task"] == "reid"]
    assert all(r["n_identities"] == 10 and r["chance"] == pytest.approx(0.1) for r in reid)
    rec = next(r for r in rows if r["task"] == "reconstruct")
    for col in ("psnr_obfuscated", "psnr_restored", "reid_obfuscated", "reid_restored"):
        assert rec[col] is not None
    html = build_report(tmp_path / "run").read_text()
    assert "Re-identification" in html and "Reconstruction" in html


def test_other_images_behind_an_attack_path_are_refused_not_mixed_in(tmp_path):
    """Attack cells reload their identity set each run; its fingerprint must match the finished rows'."""
    from PIL import Image

    from privattrib.data import synthetic_faces

    def write_identities(seed):
        faces = synthetic_faces(n_identities=6, per_identity=6, size=16, channels=1, seed=seed)
        for i, (img, label) in enumerate(zip(faces.images, faces.labels)):
            folder = tmp_path / "ids" / f"p{int(label):02d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0]).save(folder / f"{i:03d}.png")

    write_identities(seed=0)
    raw = tiny_spec(tmp_path, obfuscations=["none"], scenarios=["clean-train"])
    raw["attacks"] = {"reid": {"data": {"identities": "ids"}, "arch": {"arch": "mcpherson2016", "epochs": 1},
                               "train_per_identity": 4, "test_per_identity": 2, "variants": ["retrain"]}}
    out = tmp_path / "run"
    first = run_experiment(validate_spec(raw, base_dir=tmp_path), out, progress=False)
    assert first.failures == {} and first.ran == 2
    write_identities(seed=1)  # other people's images under the same file names
    raw["seeds"] = [0, 1]
    with pytest.raises(SpecChangedError, match="identity set of attack reid"):
        run_experiment(validate_spec(raw, base_dir=tmp_path), out, progress=False)
    forced = run_experiment(validate_spec(raw, base_dir=tmp_path), out, progress=False, force=True)
    assert forced.failures == {} and forced.skipped == 1 and forced.ran == 3  # seed 0's reid row recomputed
    assert len(list((out / "stale").rglob("*.json"))) == 1


def test_unavailable_device_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    spec = validate_spec(tiny_spec(tmp_path, device="cuda"))
    with pytest.raises(RuntimeError, match="CUDA is not available"):  # not torch's AssertionError traceback
        run_experiment(spec, tmp_path / "o", progress=False)


def test_only_seeds_runs_a_subset_and_keeps_every_finished_seed_in_the_results(tmp_path):
    spec = validate_spec(tiny_spec(tmp_path, obfuscations=["none"], scenarios=["clean-train"], seeds=[0, 1]))
    first = run_experiment(spec, tmp_path / "out", progress=False, only_seeds=[1])
    assert first.ran == 1 and [r["seed"] for r in first.rows] == [1]
    second = run_experiment(spec, tmp_path / "out", progress=False, only_seeds=[0])
    assert second.ran == 1 and second.skipped == 1
    assert sorted(r["seed"] for r in read_csv(second.results_csv)) == [0, 1]
