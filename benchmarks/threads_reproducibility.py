"""Does a seeded training run depend on torch's CPU thread count? Trains the same small classifier
(yu2019 at 32 px, one epoch on 300 synthetic faces, seed 0) at each thread count and prints the
final loss and the largest weight difference to the first count.

    python benchmarks/threads_reproducibility.py            # 1 and 2 threads
    python benchmarks/threads_reproducibility.py --threads 1 2 4
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from privattrib import threads
from privattrib.attribution.models import make_classifier
from privattrib.data.synthetic import synthetic_faces
from privattrib.training import TrainConfig, train_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    data = synthetic_faces(n_identities=30, per_identity=10, size=32, seed=0)
    labels = np.arange(300) % 4
    first = None
    print("| threads | final loss | largest weight difference to the first row |")
    print("|---:|---:|---:|")
    for n in args.threads:
        threads.pin_threads(n)
        model = make_classifier("yu2019", 4, 32, 3, seed=0, fmap_base=64, fmap_max=32)
        result = train_classifier(model, data.images[:300], labels, TrainConfig(epochs=1, device="cpu", seed=0),
                                  progress=False)
        weights = torch.cat([p.detach().flatten() for p in result.model.parameters()])
        first = weights if first is None else first
        print(f"| {n} | {result.history[-1]['loss']:.10f} | {(weights - first).abs().max().item():.3g} |")


if __name__ == "__main__":
    main()
