"""The empirical DP audit: valid for correct mechanisms, catches broken ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import binom
from typer.testing import CliRunner

from privattrib.attacks.audit import (
    UnauditableMechanism,
    audit,
    clopper_pearson_upper,
    epsilon_lower_bound,
    neighbouring_pair,
)
from privattrib.cli import app
from privattrib.obfuscation import make


class ClaimsMore:
    """A broken mechanism built by wrapping a real one: it runs ``actual`` but claims ``claimed_epsilon``."""

    def __init__(self, actual: str, claimed_epsilon: float):
        self.inner = make(actual)
        self.name, self.spec = self.inner.name, f"broken({self.inner.spec})"
        self.params = dict(self.inner.params, epsilon=claimed_epsilon)
        self.epsilon = claimed_epsilon

    def describe(self):
        return {**self.inner.describe(), "epsilon": self.epsilon}

    def __call__(self, images, seed=0, keys=None):
        return self.inner(images, seed=seed, keys=keys)


class EdgeCellsAsFull(ClaimsMore):
    """DP-Pix whose noise ignores how narrow the cells of one image edge are: along ``edge``
    ("right" or "bottom") it calibrates a partial cell as if that side were b long. Wraps the real
    DP-Pix and re-obfuscates the audit's h x w corner cell with epsilon scaled by b/w (right) or
    b/h (bottom), which is exactly the noise scale of that bug on that cell."""

    def __init__(self, b: int, m: int, epsilon: float, corner_hw: tuple[int, int], edge: str):
        super().__init__(f"dp-pix:b={b},m={m},epsilon={epsilon}", epsilon)
        self.h, self.w = corner_hw
        factor = b / self.w if edge == "right" else b / self.h
        self.corner = make(f"dp-pix:b={b},m={m},epsilon={epsilon * factor}")

    def __call__(self, images, seed=0, keys=None):
        out = self.inner(images, seed=seed, keys=keys)
        h, w = self.h, self.w
        out[..., -h:, -w:] = self.corner(images[..., -h:, -w:].contiguous(), seed=seed, keys=keys)
        return out


def test_clopper_pearson_matches_closed_form_and_coverage():
    n, alpha = 1000, 0.05
    assert clopper_pearson_upper(0, n, alpha) == pytest.approx(1 - alpha ** (1 / n))
    assert clopper_pearson_upper(n, n, alpha) == 1.0
    # exactness: P[Binom(n, p_u(k)) <= k] = alpha
    for k in (3, 100, 500):
        assert binom.cdf(k, n, float(clopper_pearson_upper(k, n, alpha))) == pytest.approx(alpha, rel=1e-6)


def test_epsilon_lower_bound_formula():
    assert epsilon_lower_bound(0.1, 0.5) == pytest.approx(np.log(0.5 / 0.1))
    assert epsilon_lower_bound(0.5, 0.1) == pytest.approx(np.log(0.5 / 0.1))
    assert epsilon_lower_bound(0.6, 0.6) == 0.0  # a useless test proves nothing
    assert epsilon_lower_bound(1.0, 1.0) == 0.0


@pytest.mark.parametrize("b,m", [(16, 16), (8, 16), (4, 16), (16, 1), (4, 40), (16, 20), (16, 300)])
def test_neighbouring_pair_moves_one_smallest_corner_cell(b, m):
    pair = neighbouring_pair(b, m, channels=3)
    differ = np.any(pair.image_a != pair.image_b, axis=0)
    y0, y1, x0, x1 = pair.cell
    assert differ.sum() == pair.changed_pixels == min(m, b * b)
    assert differ[y0:y1, x0:x1].sum() == pair.changed_pixels  # all inside the target cell
    assert pair.cell_pixels == (y1 - y0) * (x1 - x0) >= pair.changed_pixels
    height, width = pair.image_a.shape[1:]
    assert (y1, x1) == (height, width)  # the bottom-right corner cell
    assert y0 % b == 0 and x0 % b == 0 and y0 >= b and x0 >= b  # on the cell grid, full cells above and left
    if m < b * b:
        assert (y1 - y0) < b or (x1 - x0) < b  # partial along at least one edge
        assert pair.cell_pixels < m + max(y1 - y0, x1 - x0)  # no smaller near-square cell holds m
    assert set(np.unique(pair.image_b)) == {0, 255}


@pytest.mark.parametrize("spec", ["dp-pix:b=16,m=16,epsilon=0.5", "dp-pix:b=16,m=16,epsilon=1",
                                  "dp-pix:b=8,m=16,epsilon=0.3"])
def test_correct_dp_pix_fast_stays_below_its_claim_and_is_tight(spec):
    result = audit(spec, trials=20_000, seed=1)
    assert not result.violated
    assert result.epsilon_lower_bound <= result.claimed_epsilon
    # the edge-cell pair makes the audit nearly tight: the bound is well above half the claim
    assert result.epsilon_lower_bound > 0.6 * result.claimed_epsilon


def test_correct_dp_pix_secure_backend_stays_below_its_claim():
    result = audit("dp-pix:b=16,m=16,epsilon=0.5,noise=secure", trials=4_000, seed=2)
    assert not result.violated
    assert 0 < result.epsilon_lower_bound <= 0.5


def test_correct_dp_blur_stays_below_its_claim():
    result = audit("dp-blur:b=4,m=16,epsilon=1,k=15", trials=4_000, seed=3)
    assert not result.violated and result.epsilon_lower_bound <= 1
    assert any("blur" in note for note in result.notes)


def test_catches_halved_noise_scale():
    # dp-pix at epsilon 1 has half the noise scale of the claimed epsilon 0.5
    result = audit(ClaimsMore("dp-pix:b=16,m=16,epsilon=1", 0.5), trials=20_000, seed=4)
    assert result.violated and result.epsilon_lower_bound > 0.5


@pytest.mark.parametrize("edge", ["right", "bottom"])
def test_catches_edge_cells_calibrated_as_full_cells(edge):
    y0, y1, x0, x1 = neighbouring_pair(16, 16).cell
    broken = EdgeCellsAsFull(b=16, m=16, epsilon=0.5, corner_hw=(y1 - y0, x1 - x0), edge=edge)
    result = audit(broken, trials=10_000, seed=5)
    assert result.pair["target_cell_pixels"] == 16 and (y1 - y0, x1 - x0) == (4, 4)
    assert result.violated and result.epsilon_lower_bound > 2 * 0.5


def test_svd_mp_is_refused_with_the_reason():
    with pytest.raises(UnauditableMechanism, match="d_X-privacy"):
        audit("svd-mp:k=4,epsilon=1")


def test_methods_without_dp_claim_are_fully_distinguishable():
    result = audit("pixelate:b=8", trials=2_000)
    assert result.claimed_epsilon is None and not result.violated
    assert result.epsilon_lower_bound > 5  # deterministic: only the sample size limits the bound
    # ... so the bound is the ceiling of the sample size, and says so
    assert result.at_ceiling and result.epsilon_lower_bound == pytest.approx(result.epsilon_ceiling)
    assert any("ceiling" in note for note in result.notes)
    assert audit("pixelate:b=8", trials=8_000).epsilon_ceiling > result.epsilon_ceiling


def test_a_measured_bound_is_below_the_ceiling_and_notes_fit_the_method():
    noisy = audit("dp-pix:b=4,m=1,epsilon=1", trials=4_000)
    assert not noisy.at_ceiling and noisy.epsilon_lower_bound < noisy.epsilon_ceiling
    assert not any("ceiling" in note for note in noisy.notes)
    # the note on noise spread by the blur belongs to dp-blur, not to the noiseless blur
    assert not any("noise" in note for note in audit("blur:k=5", trials=400).notes)
    assert any("noise" in note for note in audit("dp-blur:b=4,m=1,epsilon=1,k=5", trials=400).notes)


def test_bad_parameters():
    with pytest.raises(ValueError, match="trials"):
        audit("dp-pix:b=16,m=16,epsilon=0.5", trials=10)
    with pytest.raises(ValueError, match="confidence"):
        audit("dp-pix:b=16,m=16,epsilon=0.5", confidence=1.5)


def test_cli_audit_json_schema():
    result = CliRunner().invoke(app, ["audit", "dp-pix:b=16,m=16,epsilon=0.5", "--trials", "4000", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    for key in ("claimed_epsilon", "epsilon_lower_bound", "trials", "confidence", "test", "violated", "pair"):
        assert key in row
    assert row["claimed_epsilon"] == 0.5 and row["epsilon_lower_bound"] <= 0.5 and row["trials"] == 4000


def test_cli_audit_without_a_claim_gives_no_verdict_and_names_the_ceiling():
    result = CliRunner().invoke(app, ["audit", "pixelate:b=8", "--trials", "400"])
    assert result.exit_code == 0, result.output
    assert "no claim to check" in result.output and "consistent" not in result.output
    assert "ceiling of this many draws" in result.output
    # a claim above the ceiling cannot be checked with these draws: said so, not "consistent"
    loose = CliRunner().invoke(app, ["audit", "dp-pix:b=4,m=1,epsilon=20", "--trials", "600"])
    assert loose.exit_code == 0 and "inconclusive" in loose.output and "consistent" not in loose.output


def test_cli_refuses_a_device_it_cannot_use_before_any_work():
    bad = CliRunner().invoke(app, ["audit", "dp-pix:b=4", "--device", "gpu"])
    assert bad.exit_code == 2 and "'gpu' is not a device" in bad.output and "Traceback" not in bad.output
    if not torch.cuda.is_available():
        absent = CliRunner().invoke(app, ["attack", "reid", "--data", "synthetic", "--method", "none",
                                          "--device", "cuda"])
        assert absent.exit_code == 2 and "CUDA is not available" in absent.output


def test_cli_audit_refuses_svd_mp():
    result = CliRunner().invoke(app, ["audit", "svd-mp:k=4,epsilon=1", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output)["auditable"] is False


def test_rgb_dp_pix_accounts_for_all_channels():
    """A pixel is the whole C-vector: the claim must hold when all three channels of m pixels change."""
    result = audit("dp-pix:b=16,m=16,epsilon=1", channels=3, trials=10_000, seed=6)
    assert result.pair["image_shape"][0] == 3
    assert not result.violated and 0 < result.epsilon_lower_bound <= 1
