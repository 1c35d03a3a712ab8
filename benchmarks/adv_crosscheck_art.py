"""Cross-check privattrib's PGD against the Adversarial Robustness Toolbox (ART, IBM).

Both attacks start at zero (ART ``num_random_init=0``; privattrib ``streams=None``), take the same
steps against the same small CNN (random weights, the project's [-1, 1] input scaling done by
ART's ``preprocessing=(127.5, 127.5)``) in pixel units 0..255, for L-inf and L2, untargeted with
given labels and targeted, on images whose values stay away from 0 and 255. It prints the largest difference of the float perturbations (before
privattrib rounds them to uint8) and of the final losses. ART is not a dependency of privattrib;
install it beside, e.g.::

    pip install --target /tmp/artlib adversarial-robustness-toolbox==1.20.1 scikit-learn tqdm
    PYTHONPATH=/tmp/artlib:src python benchmarks/adv_crosscheck_art.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


def small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 5)).eval()


def main() -> None:
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    from privattrib.obfuscation.adversarial import pgd_delta

    torch.use_deterministic_algorithms(True)
    model = small_cnn(0)
    # values away from 0 and 255: where the pixel box binds the two orders of projection differ
    # (ART clips to the box and then projects onto the ball; privattrib projects and then clips,
    # both feasible), and the comparison would test that choice rather than the attack
    images = torch.from_numpy(np.random.default_rng(0).integers(40, 216, (16, 3, 16, 16), dtype=np.uint8))
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, 5, 16))
    art_model = PyTorchClassifier(model, nn.CrossEntropyLoss(), input_shape=(3, 16, 16), nb_classes=5,
                                  clip_values=(0.0, 255.0), preprocessing=(127.5, 127.5), device_type="cpu")
    worst = 0.0
    for norm, eps, step in (("linf", 8.0, 2.0), ("l2", 200.0, 50.0)):
        for targeted in (False, True):
            goal = torch.full_like(labels, 3) if targeted else labels
            attack = ProjectedGradientDescentPyTorch(art_model, norm=np.inf if norm == "linf" else 2, eps=eps,
                                                     eps_step=step, max_iter=10, targeted=targeted,
                                                     num_random_init=0, batch_size=16, verbose=False)
            x = images.numpy().astype(np.float32)
            theirs = attack.generate(x, y=np.eye(5, dtype=np.float32)[goal.numpy()]) - x
            ours = pgd_delta(model, images, eps=eps, norm=norm, steps=10, step=step,
                             labels=None if targeted else labels, target_class=3 if targeted else None).numpy()
            diff = float(np.abs(ours - theirs).max())
            worst = max(worst, diff)
            agree = float(np.mean(np.abs(ours - theirs) < 1e-3))
            print(f"{norm:4s} eps {eps:5.0f} {'targeted  ' if targeted else 'untargeted'}: max |ours - ART| = "
                  f"{diff:.2e} grey levels, {100 * agree:.1f}% of values within 1e-3")
    print(f"largest difference: {worst:.2e} grey levels")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
