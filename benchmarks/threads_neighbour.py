"""How much slower does privattrib get when another process holds a core, per thread policy?

Runs one workload in a fresh process, alone and beside one busy process (``yes > /dev/null``),
under three thread policies, interleaved over ``--repeat`` rounds, and prints the median seconds
and the ratios measured in this one run:

- ``fixed (old)``: ``PRIVATTRIB_THREADS=<cores>``, torch's default of one thread per core, never
  lowered (what privattrib did before it followed the free cores);
- ``one thread``: ``OMP_NUM_THREADS=1``;
- ``follow free cores``: the default (``privattrib.threads.fit_threads``).

Workloads: ``slice`` (default, about 10 s alone on 2 cores: the demo's tiny DCGAN for 60 steps,
then the demo's classifier for 2 epochs on 600 synthetic faces), ``demo`` (``privattrib demo``
end to end, about two minutes alone) or ``tests`` (the fast test files that train models:
``TEST_FILES`` under pytest, about a minute alone).

    python benchmarks/threads_neighbour.py                      # slice, 3 rounds
    python benchmarks/threads_neighbour.py --workload demo --repeat 1
    python benchmarks/threads_neighbour.py --workload tests --repeat 1
    taskset -c 0,1 python benchmarks/threads_neighbour.py       # a 2-core slice of a larger machine
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

SLICE = r"""
import sys, tempfile, numpy as np
from privattrib.gans.train import train_gan
from privattrib.data.synthetic import synthetic_faces
from privattrib.attribution.models import make_classifier
from privattrib.training import TrainConfig, train_classifier
data = synthetic_faces(n_identities=60, per_identity=10, size=32, seed=0)
with tempfile.TemporaryDirectory() as d:
    train_gan("dcgan", data, preset="tiny", steps=60, out=d, device="cpu", progress=False)
model = make_classifier("yu2019", 4, 32, 3, seed=0, fmap_base=256, fmap_max=128)
train_classifier(model, data.images[:600], np.arange(600) % 4, TrainConfig(epochs=2, device="cpu"), progress=False)
"""

#: The ``tests`` workload: the fast test files that spend their time in torch training loops.
TEST_FILES = ["tests/test_training.py", "tests/test_gans.py", "tests/test_attribute.py", "tests/test_attacks.py",
              "tests/test_attribution_scenarios.py"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def policies(cores: int) -> dict[str, dict[str, str]]:
    return {
        "fixed (old)": {"PRIVATTRIB_THREADS": str(cores)},
        "one thread": {"OMP_NUM_THREADS": "1"},
        "follow free cores": {},
    }


def run_workload(workload: str, env_extra: dict[str, str], timeout: float) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PRIVATTRIB_THREADS")}
    env.update(env_extra)
    with tempfile.TemporaryDirectory() as tmp:
        if workload == "slice":
            cmd = [sys.executable, "-c", SLICE]
        elif workload == "tests":
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ROOT,
                   "--basetemp", os.path.join(tmp, "pytest"), *(os.path.join(ROOT, f) for f in TEST_FILES)]
        else:
            cmd = [sys.executable, "-m", "privattrib", "demo", "-o", os.path.join(tmp, "demo"), "--no-progress",
                   "--device", "cpu"]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("slice", "demo", "tests"), default="slice")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.repeat):
        for mode in ("alone", "beside yes"):
            neighbour = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if mode == "beside yes" else None
            try:
                for name, env in policies(cores).items():
                    seconds = run_workload(args.workload, env, args.timeout)
                    times.setdefault((name, mode), []).append(seconds)
                    print(f"round {round_ + 1}: {name:18s} {mode:10s} {seconds:8.1f} s", file=sys.stderr, flush=True)
            finally:
                if neighbour is not None:
                    neighbour.kill()
                    neighbour.wait()

    median = {key: statistics.median(v) for key, v in times.items()}
    base = median[("fixed (old)", "alone")]
    print(f"\n{args.workload} workload, {cores} cores, median of {args.repeat} round(s); load average at the end "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| policy | alone (s) | beside `yes` (s) | beside / alone | beside / old alone |")
    print("|---|---:|---:|---:|---:|")
    for name in policies(cores):
        alone, beside = median[(name, "alone")], median[(name, "beside yes")]
        print(f"| {name} | {alone:.1f} | {beside:.1f} | {beside / alone:.2f} | {beside / base:.2f} |")


if __name__ == "__main__":
    main()
