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
