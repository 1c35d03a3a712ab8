"""benchmarks/gpu_check.sh is only ever run on a rented GPU machine, minutes at a time: a syntax
error or a misspelt step found there costs the whole lease, so check what can be checked here."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_unknown_step_is_refused_with_the_list_of_steps(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), "kernelz"], capture_output=True, text=True,
                          cwd=SCRIPT.parents[1])
    assert done.returncode == 2
    assert "unknown step kernelz" in done.stderr and "obfuscate" in done.stderr


def test_a_failing_step_is_summarised_and_the_next_one_still_runs(tmp_path):
    out = tmp_path / "out"
    # Without a GPU (no nvidia-smi, no CUDA device) the env step fails; the next step must still run.
    done = subprocess.run(["bash", str(SCRIPT), str(out), "env", "env"], capture_output=True, text=True,
                          cwd=SCRIPT.parents[1], env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in summary] == ["env", "env"], done.stdout
    assert all("rc=" in line for line in summary)
    assert done.returncode == 1 and "2 step(s) failed" in done.stderr


def test_a_misspelt_step_is_refused_before_any_step_runs(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(SCRIPT), str(out), "env", "kernelz"], capture_output=True, text=True,
                          cwd=SCRIPT.parents[1], env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 2 and "unknown step kernelz" in done.stderr
    assert not (out / "env.log").exists()


def test_outdir_gets_flat_files_only_and_run_folders_stay_in_work(tmp_path):
    # A device call brings back at most 8 files from its $OUT, none deeper than two folders: the
    # attack grid's (and the GAN's) run folders must not land there, only the rows and the logs.
    out, work, sets = tmp_path / "out", tmp_path / "work", tmp_path / "sets"
    sets.mkdir()  # no prepared sets: the grid is refused before its first cell, after its folder is made
    (work / "reid").mkdir(parents=True)
    (work / "reid" / "rows-gpu-0.jsonl").write_text('{"cell_key": "done-before"}\n')
    subprocess.run(["bash", str(SCRIPT), str(out), "reid"], capture_output=True, text=True, cwd=SCRIPT.parents[1],
                   env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "DEVICE": "cpu", "REID_SETS": str(sets),
                        "REID_SECONDS": "120", "WORK": str(work), "OMP_NUM_THREADS": "1"})
    assert sorted(p.name for p in out.iterdir()) == ["reid-rows.jsonl", "reid.log", "summary.txt"]
    assert (out / "reid-rows.jsonl").read_text() == '{"cell_key": "done-before"}\n'
    assert (work / "reid" / "sets.json").is_file()


def test_joined_steps_run_together_and_the_bundle_holds_every_log(tmp_path):
    out, bundle = tmp_path / "out", tmp_path / "all.tar.gz"
    done = subprocess.run(["bash", str(SCRIPT), str(out), "env+env"], capture_output=True, text=True,
                          cwd=SCRIPT.parents[1], env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                                      "BUNDLE": str(bundle), "WORK": str(tmp_path / "work")})
    assert [line.split()[0] for line in (out / "summary.txt").read_text().splitlines()] == ["env", "env"], done.stdout
    import tarfile

    with tarfile.open(bundle) as tar:
        assert {"./summary.txt", "./env.log"} <= set(tar.getnames())


def test_a_step_past_the_deadline_is_skipped_and_said_so(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(SCRIPT), str(out), "env"], capture_output=True, text=True,
                          cwd=SCRIPT.parents[1],
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "DEADLINE": "30"})
    assert (out / "summary.txt").read_text().startswith("env skipped")
    assert not (out / "env.log").exists()
    assert done.returncode == 0  # skipped is not failed


def test_sharded_grid_steps_log_each_shard_and_return_only_their_own_rows(tmp_path):
    # REID_DONE rows count as done (copied in as rows-done-*) but are not returned again; each of
    # the shards that share the GPU writes its own log.
    out, work, sets, done = tmp_path / "out", tmp_path / "work", tmp_path / "sets", tmp_path / "done"
    sets.mkdir()
    done.mkdir()
    (done / "rows-gpu-0.jsonl").write_text('{"cell_key": "from-an-earlier-lease"}\n')
    (work / "recon").mkdir(parents=True)
    (work / "recon" / "rows-gpu-1.jsonl").write_text('{"cell_key": "this-lease"}\n')
    subprocess.run(["bash", str(SCRIPT), str(out), "reid+recon"], capture_output=True, text=True,
                   cwd=SCRIPT.parents[1],
                   env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "DEVICE": "cpu", "REID_SETS": str(sets),
                        "REID_SHARDS": "2", "RECON_SHARDS": "3", "REID_DONE": str(done), "WORK": str(work),
                        "OMP_NUM_THREADS": "1"})
    assert sorted(p.name for p in out.iterdir()) == [
        "recon-0.log", "recon-1.log", "recon-2.log", "recon-rows.jsonl", "reid-0.log", "reid-1.log", "summary.txt"]
    assert (out / "recon-rows.jsonl").read_text() == '{"cell_key": "this-lease"}\n'
    assert (work / "reid" / "rows-done-gpu-0.jsonl").read_text() == '{"cell_key": "from-an-earlier-lease"}\n'
    assert (out / "recon-2.log").read_text().startswith("shard 2/3: 3 cells")  # 9 methods x 1 seed, every 3rd
