"""The Ray executor on a real local Ray cluster: a head and two worker nodes (one declaring a GPU),
driven by ``privattrib run --executor ray --address ...`` as a user would, with a worker process
killed mid-run, the driver killed mid-run, and cells that ask for a GPU."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'privattrib[ray]'): "
                                        "the real-cluster tests need it")

from test_experiments_run import kill_when_rows, tiny_spec  # noqa: E402
from privattrib.experiments import load_spec, read_csv, run_experiment, validate_spec  # noqa: E402

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
#: Columns that say how long or where, not what: they differ between two runs of a cell (the clean
#: model's path names the run's OUTDIR).
NOT_RESULTS = {"wall_s", "cell_wall_s", "wall_seconds", "train_seconds", "finished_at", "ray", "clean_model_path"}


@pytest.fixture(scope="module")
def cluster():
    """A head (1 CPU) and two worker nodes: one CPU-only, one declaring a GPU (``num_gpus=1`` on a
    CPU-only machine: Ray schedules by declared resources, and torch there still computes on CPU)."""
    from ray.cluster_utils import Cluster

    old = os.environ.get("PYTHONPATH")
    # Ray's workers inherit the nodes' environment: make them import this checkout's privattrib.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), old or ""])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cpu_node = c.add_node(num_cpus=1)
        gpu_node = c.add_node(num_cpus=1, num_gpus=1)
        c.wait_for_nodes()
        yield {"address": c.address, "cluster": c, "cpu_node": cpu_node, "gpu_node": gpu_node.node_id}
    finally:
        c.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _write_spec(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(tmp_path, **changes)))
    return path


def _command(spec: Path, out: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "privattrib", "run", str(spec), "-o", str(out), "--executor", "ray",
            "--address", address, "--no-progress", *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def _cell_processes(parent: int | None = None) -> list[int]:
    """PIDs of Ray workers running a cell now (Ray titles a busy worker ``ray::<task name>``),
    those started by the raylet ``parent`` only when given."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if cmdline.startswith(b"ray::_placed") and parent in (None, ppid):
            pids.append(int(entry))
    return pids


def _raylet_pid(node) -> int:
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def _results(rows: list[dict]) -> dict:
    return {r["cell_id"]: {k: v for k, v in r.items() if k not in NOT_RESULTS} for r in rows}


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _rows(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]


def test_a_killed_worker_is_retried_and_the_rows_equal_the_local_executor(cluster, tmp_path):
    # gpus: 0, or the cluster's (declared) GPU would make every cell ask for one (the default)
    spec_path = _write_spec(tmp_path, resources={"cpus": 1, "gpus": 0})
    spec = load_spec(spec_path)
    cells = spec.cells()
    local = run_experiment(validate_spec(tiny_spec(tmp_path, resources={"cpus": 1, "gpus": 0})), tmp_path / "local",
                           progress=False)
    assert local.failures == {} and local.ran == len(cells)

    out = tmp_path / "ray"
    proc = subprocess.Popen(_command(spec_path, out, cluster["address"]), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    raylet = _raylet_pid(cluster["cpu_node"])
    killed_worker = killed_node = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and killed_node is None:
            # in the second wave, when cells run at once on the three nodes: first a worker process
            # in the middle of a cell, then the raylet of a whole node (the CPU-only one, not the
            # head the driver is attached to) while it runs a cell
            if killed_worker is None and len(list((out / "cells").glob("*.json"))) >= 1:
                busy = _cell_processes()
                if busy:
                    killed_worker = busy[0]
                    os.kill(killed_worker, signal.SIGKILL)
            elif killed_worker is not None and _cell_processes(parent=raylet):
                killed_node = raylet
                os.kill(raylet, signal.SIGKILL)
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster["cluster"].remove_node(cluster["cpu_node"], allow_graceful=False)  # what the kill left of it
    assert killed_worker is not None and killed_node is not None, \
        "the run ended before a worker and a node could be killed:\n" + stderr[-2000:]
    assert proc.returncode == 0, stderr[-3000:]
    assert not (out / "failures.json").exists()  # the killed cell was retried, not reported failed

    # Every cell exactly once: one row file per cell, one csv row per cell, nothing else.
    rows = _rows(out)
    assert sorted(r["cell_id"] for r in rows) == sorted(c.cell_id for c in cells)
    csv_rows = read_csv(out / "results.csv")
    assert sorted((r["scenario"], r["spec"], r["seed"]) for r in csv_rows) == \
        sorted((c.scenario, c.spec, c.seed) for c in cells)
    # The same results as the local executor (timing and placement columns aside).
    ray_results, local_results = _results(rows), _results(local.rows)
    assert ray_results.keys() == local_results.keys()
    for cell_id in ray_results:
        assert _same(ray_results[cell_id], local_results[cell_id]), cell_id
    # Rows say where Ray ran them; cells asked for one CPU and no GPU, so they spread over the nodes.
    assert {r["ray"]["num_cpus"] for r in rows} == {1.0} and {r["ray"]["num_gpus"] for r in rows} == {0.0}
    assert len({r["ray"]["node_id"] for r in rows}) >= 2


def test_a_killed_driver_resumes_without_recomputing_or_losing_a_cell(cluster, tmp_path):
    spec_path = _write_spec(tmp_path)
    cells = load_spec(spec_path).cells()
    out = tmp_path / "ray"
    cmd = _command(spec_path, out, cluster["address"])
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when_rows(proc, out / "cells", 2)
    before = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    assert 2 <= len(before) < len(cells)
    time.sleep(1.0)  # Ray notices the dead driver and ends its tasks
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    assert len(after) == len(cells)
    for name, content in before.items():
        assert after[name] == content, f"{name} was recomputed"
    assert f"{len(before)} already done" in done.stderr.replace("\n", " ")


def test_cells_that_ask_for_a_gpu_run_only_on_the_gpu_node(cluster, tmp_path):
    spec_path = _write_spec(tmp_path, obfuscations=["none", "pixelate:b=[2,4]"], scenarios=["clean-train"],
                            resources={"cpus": 1, "gpus": 0.5})
    out = tmp_path / "ray"
    done = subprocess.run(_command(spec_path, out, cluster["address"]), env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(out)
    assert len(rows) == 3
    for row in rows:
        assert row["ray"]["node_id"] == cluster["gpu_node"], "a GPU cell ran on a node without a GPU"
        assert row["ray"]["num_gpus"] == 0.5 and row["ray"]["gpu_ids"] == ["0"]
    # --gpus-per-cell overrides the spec, checked as Ray would (above 1 only whole GPUs) before any work
    bad = subprocess.run(_command(spec_path, tmp_path / "bad", cluster["address"], "--gpus-per-cell", "1.5"),
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "whole number" in bad.stderr


def test_an_unreachable_address_is_a_message_not_a_hang(tmp_path):
    """Real Ray would retry the GCS for minutes; the run names the address within seconds."""
    from test_experiments_executors import _closed_port

    port = _closed_port()
    started = time.monotonic()
    done = subprocess.run(_command(_write_spec(tmp_path), tmp_path / "out", f"127.0.0.1:{port}"), env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - started < 60, done.stderr[-2000:]
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "data").exists()  # refused before any data was assembled
