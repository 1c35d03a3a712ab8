"""DistributedDataParallel through the one training loop: two gloo processes on CPU train like one
process, every image is seen exactly once per epoch across the ranks, and ``torchrun`` drives the
``privattrib train`` verb."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training import SMALL_YU, fingerprinted
from privattrib.attribution.models import make_classifier
from privattrib.training import TrainConfig, train_classifier

N_TRAIN, SIZE, EPOCHS, BATCH = 133, 16, 3, 16  # 133 = 8 full batches + one of 5: uneven last shares


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(record_dir: Path | None, rank: int) -> dict:
    x, y = fingerprinted(N_TRAIN, 2, SIZE, 40.0, seed=0)
    xv, yv = fingerprinted(64, 2, SIZE, 40.0, seed=1)
    seen: list[list[int]] = []

    def record(batch, labels, index, epoch, model):
        # the hook still gets the rows it transforms, with their labels, under DDP
        assert torch.equal(labels, torch.from_numpy(y)[index]) and torch.equal(batch, torch.from_numpy(x)[index])
        seen.append([epoch, *index.tolist()])
        return batch

    model = make_classifier("yu2019", num_classes=2, image_size=SIZE, seed=3, **SMALL_YU)
    # keep_best: every rank must pick the same epoch's weights from the reduced validation figures
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, seed=5, device="cpu", keep_best=True)
    result = train_classifier(model, x, y, config, val=(xv, yv), progress=False, batch_transform=record)
    out = {"history": result.history, "seen": seen, "world": result.config["resolved_world_size"],
           "params": [p.detach().flatten()[:50].tolist() for p in result.model.parameters()]}
    if record_dir is not None:
        (record_dir / f"rank{rank}.json").write_text(json.dumps(out))
    return out


def _ddp_worker(rank: int, world: int, port: int, record_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _train(Path(record_dir), rank)
        _train_batchnorm(Path(record_dir), rank)
    finally:
        dist.destroy_process_group()


def _train_batchnorm(record_dir: Path, rank: int) -> None:
    """A BatchNorm model (its running statistics follow each rank's own share) validated on a set
    of 21, which two ranks split 11 / 10."""
    from privattrib.training import evaluate_logits

    x, y = fingerprinted(48, 2, SIZE, 40.0, seed=2)
    xv, yv = fingerprinted(21, 2, SIZE, 40.0, seed=3)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    config = TrainConfig(epochs=2, batch_size=16, seed=1, device="cpu")
    result = train_classifier(model, x, y, config, val=(xv, yv), progress=False)
    # what this rank's final model scores on the whole validation set, evaluated alone
    logits = evaluate_logits(result.model, torch.from_numpy(xv), 64, torch.device("cpu"), None, False)
    alone = int((logits.argmax(1) == torch.from_numpy(yv)).sum()) / len(yv)
    bn = result.model[1]
    (record_dir / f"bn{rank}.json").write_text(json.dumps({
        "history": result.history, "alone": alone,
        "buffers": [bn.running_mean.tolist(), bn.running_var.tolist(), int(bn.num_batches_tracked)]}))


def test_two_gloo_processes_train_like_one_and_see_every_image_once(tmp_path):
    one = _train(None, 0)
    assert one["world"] == 1
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 for r in ranks)
    # Every image exactly once per epoch across the ranks, each rank about half of them.
    for epoch in range(1, EPOCHS + 1):
        rows = [i for r in ranks for e, *index in r["seen"] if e == epoch for i in index]
        assert sorted(rows) == list(range(N_TRAIN))
        assert [sum(len(index) for e, *index in r["seen"] if e == epoch) for r in ranks] == [67, 66]
    # Both ranks end with the same weights and the same (all-reduced / broadcast) history.
    assert ranks[0]["params"] == ranks[1]["params"]
    assert ranks[0]["history"] == [{**h, "seconds": ranks[0]["history"][i]["seconds"],
                                    "images_per_second": ranks[0]["history"][i]["images_per_second"]}
                                   for i, h in enumerate(ranks[1]["history"])]
    # The same training as one process: DDP's averaged gradient is the global batch's gradient, so
    # losses agree up to float summation order, and accuracy within noise.
    ddp, single = ranks[0]["history"], one["history"]
    np.testing.assert_allclose([h["loss"] for h in ddp], [h["loss"] for h in single], rtol=2e-3)
    assert abs(ddp[-1]["val_accuracy"] - single[-1]["val_accuracy"]) <= 0.05
    assert single[-1]["val_accuracy"] >= 0.8  # and it learned (chance 0.5)
    np.testing.assert_allclose(np.concatenate(ranks[0]["params"]), np.concatenate(one["params"]), atol=2e-3)
    # Validation is split between the ranks and reduced: the figures are those of the whole set, for
    # rank 0's model, which every rank now holds, BatchNorm statistics included.
    bn = [json.loads((tmp_path / f"bn{r}.json").read_text()) for r in range(2)]
    assert bn[0]["buffers"] == bn[1]["buffers"]
    assert [h["val_accuracy"] for h in bn[0]["history"]] == [h["val_accuracy"] for h in bn[1]["history"]]
    assert bn[0]["history"][-1]["val_accuracy"] == bn[0]["alone"] == bn[1]["alone"]


@pytest.mark.integration  # two fresh processes import torch: about 20 s on 2 busy cores
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this python")
def test_torchrun_drives_the_train_verb(tmp_path):
    from PIL import Image

    from bad_files import gradient_rgb

    faces = tmp_path / "faces"
    for person in range(3):
        (faces / f"s{person + 1}").mkdir(parents=True)
        for j in range(8):
            img = gradient_rgb(20, 20, seed=person * 100 + j)
            img[:, :, person] = 255  # a class signal
            Image.fromarray(img).save(faces / f"s{person + 1}" / f"{j}.png")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PRIVATTRIB_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "privattrib", "train",
           str(faces), "-o", str(tmp_path / "out"), "--arch", "mcpherson2016", "--size", "16", "--epochs", "2",
           "--batch", "8", "--val-fraction", "0.25", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout and proc.stdout.count("checkpoint:") == 1  # rank 0 reports
    saved = json.loads((tmp_path / "out" / "classifier.json").read_text())
    assert saved["training"]["world_size"] == 2 and saved["training"]["backend"] == "gloo"
    assert saved["training"]["data"]["train"] == 18 and saved["training"]["data"]["val"] == 6
    assert (tmp_path / "out" / "classifier.pt").is_file()


def test_train_verb_refuses_a_source_with_one_class(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from bad_files import gradient_rgb
    from privattrib.cli import app

    (tmp_path / "imgs").mkdir()
    for j in range(4):
        Image.fromarray(gradient_rgb(16, 16, seed=j)).save(tmp_path / "imgs" / f"{j}.png")
    res = CliRunner().invoke(app, ["train", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--size", "16",
                                   "--device", "cpu", "--no-progress"], env={"PRIVATTRIB_CACHE": str(tmp_path / "c")})
    assert res.exit_code == 2 and "a classifier needs at least two" in res.output


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK, MASTER_ADDR, MASTER_PORT are not"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"}, "WORLD_SIZE=2 is set but MASTER_PORT is not"),
    ({"RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "RANK=1 is set but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, r"RANK=2 is outside \[0, WORLD_SIZE=2\)"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0: must be >= 1"),
])
def test_a_half_set_torchrun_environment_is_named(monkeypatch, env, message):
    from privattrib.distributed import init_process_group

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message) as caught:
        init_process_group(device="cpu")
    assert "torchrun --nproc-per-node" in str(caught.value)


def test_one_process_environments_train_without_a_group(monkeypatch):
    import torch.distributed as dist

    from privattrib.distributed import init_process_group

    for env in ({}, {"WORLD_SIZE": "1", "RANK": "0"}, {"MASTER_ADDR": "127.0.0.1"}, {"RANK": "0"}):
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert init_process_group(device="cpu") == (0, 1) and not dist.is_initialized(), env
