"""Empirical differential-privacy audit of an obfuscation mechanism.

The audit turns a distinguishing test into a statistically valid *lower* bound on epsilon
(Jagielski, Ullman, Oprea 2020; Nasr et al. 2021): for any epsilon-DP mechanism M and any test T
that says "B" or "A" after seeing M(x),

    FPR = P[T(M(x_A)) = B],  FNR = P[T(M(x_B)) = A],
    (1 - FNR) <= e^eps * FPR   and   (1 - FPR) <= e^eps * FNR,

so with one-sided Clopper-Pearson upper bounds FPR_u and FNR_u (each at level 1 - alpha/2, a
Bonferroni split, so both hold together with probability >= 1 - alpha)

    eps_lb = max(log((1 - FNR_u) / FPR_u), log((1 - FPR_u) / FNR_u))

is below the true epsilon with probability >= 1 - alpha. A correct mechanism's bound therefore
never exceeds its claim (except with probability alpha); a bound above the claim is evidence of a bug.

The neighbouring pair is chosen to move one cell as far as the neighbourhood allows: images
x_A (all zero) and x_B that differ in exactly ``m`` pixels (0 -> 255 in every channel), all inside
an *edge* cell with as few pixels n >= m as the cell grid allows. Its mean then moves by 255*m/n,
which is exactly the sensitivity the correct Laplace scale C*255*m/(n*eps) is calibrated for, so
the audit is tight for a correct mechanism with one channel and m <= b*b, and an implementation
that calibrates edge cells as full b*b cells (scale too small by n/(b*b)) is caught. With C > 1 the
statistic averages the channels (valid, looser); with m > b*b the pair flips one full cell of n < m
pixels and can show at most epsilon*n/m (valid, loose).

Test statistic: the mean output over the target cell (post-processing of the noisy cell mean for
pixel mechanisms; for DP-Blur the blur spreads the cell over its neighbours, the bound stays valid
but is loose). The threshold and the direction of the test are chosen on one half of the draws and
the error rates are measured on the other half, so the choice does not bias the bound.

Draws are vectorised: the mechanism is called on batches of copies of the same image with distinct
keys, so each copy gets independent noise (noise is a function of (seed, key)).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "AuditResult",
    "NeighbourPair",
    "UnauditableMechanism",
    "audit",
    "clopper_pearson_upper",
    "epsilon_lower_bound",
    "neighbouring_pair",
]


class UnauditableMechanism(ValueError):
    """The mechanism makes no claim this audit can test (e.g. d_X-privacy of SVD-MP)."""


@dataclass
class NeighbourPair:
    """Two neighbouring images for an m-pixel neighbourhood on a b x b cell grid.

    Attributes:
        image_a: uint8 C x H x W, all zero.
        image_b: uint8 C x H x W, ``image_a`` with ``changed_pixels`` pixels set to 255 in every channel.
        changed_pixels: number of pixels (C-vectors) that differ, at most m.
        cell: (y0, y1, x0, x1) of the target cell, end exclusive.
        cell_pixels: n, the number of pixels of the target cell.
        mean_shift: how far the target cell's mean moves, 255 * changed_pixels / n.
    """

    image_a: np.ndarray
    image_b: np.ndarray
    changed_pixels: int
    cell: tuple[int, int, int, int]
    cell_pixels: int
    mean_shift: float

    def describe(self) -> dict:
        c, h, w = self.image_a.shape
        return {
            "image_shape": [c, h, w],
            "changed_pixels": self.changed_pixels,
            "target_cell": list(self.cell),
            "target_cell_pixels": self.cell_pixels,
            "target_cell_mean_shift": self.mean_shift,
            "pair": "x_A all 0; x_B = x_A with changed_pixels pixels of the target corner cell set to 255",
        }


def neighbouring_pair(
    b: int, m: int, *, channels: int = 1, min_height: int | None = None, min_width: int | None = None
) -> NeighbourPair:
    """Build the worst-case neighbouring pair for DP-Pix-style mechanisms.

    The target is the bottom-right corner cell of a canvas whose last cell row and last cell
    column are partial: ``h x w`` pixels with ``w = min(b, ceil(sqrt(m)))`` and
    ``h = min(b, ceil(m / w))``, the smallest near-square edge cell that still holds m pixels
    (``n = h * w >= m``). Every cell with n >= m moves its mean by exactly the amount its noise is
    calibrated for, so the pair is as hard to hide as any; a corner cell (partial in both
    directions) also exposes a mechanism that calibrates the bottom edge or the right edge as
    full cells. When ``m > b * b`` no cell holds m pixels; the target is then a full cell, entirely
    flipped (``changed_pixels = b * b < m``).

    Args:
        b: cell size, >= 1.
        m: neighbourhood size in pixels, >= 1.
        channels: C, 1 or 3.
        min_height, min_width: smallest canvas (e.g. larger than a blur kernel); default one cell
            beside and above the target.

    Returns:
        The pair, images uint8 C x H x W.
    """
    if b < 1 or m < 1:
        raise ValueError(f"b and m must be >= 1, got b={b}, m={m}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    edge_width = min(b, math.ceil(math.sqrt(m)))
    edge_height = min(b, math.ceil(m / edge_width))
    full_rows = max(1, math.ceil((max(b + edge_height, min_height or 0) - edge_height) / b))
    full_columns = max(1, math.ceil((max(b + edge_width, min_width or 0) - edge_width) / b))
    height = full_rows * b + edge_height
    width = full_columns * b + edge_width
    y0, y1, x0, x1 = full_rows * b, height, full_columns * b, width
    n = (y1 - y0) * (x1 - x0)
    changed = min(m, n)
    image_a = np.zeros((channels, height, width), dtype=np.uint8)
    image_b = image_a.copy()
    cell_view = image_b[:, y0:y1, x0:x1].reshape(channels, -1)  # row-major inside the cell
    cell_view[:, :changed] = 255
    image_b[:, y0:y1, x0:x1] = cell_view.reshape(channels, y1 - y0, x1 - x0)
    return NeighbourPair(image_a, image_b, changed, (y0, y1, x0, x1), n, 255.0 * changed / n)


def clopper_pearson_upper(errors: np.ndarray | int, trials: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound on a binomial rate at level ``1 - alpha``.

    Args:
        errors: observed counts (any shape), 0 <= errors <= trials.
        trials: number of draws.
        alpha: error probability of the bound, in (0, 1).

    Returns:
        float64 array of the same shape: p_u with P[p <= p_u] >= 1 - alpha.
    """
    from scipy.stats import beta

    errors = np.asarray(errors, dtype=np.float64)
    upper = beta.ppf(1.0 - alpha, errors + 1.0, np.maximum(trials - errors, 1e-12))
    return np.where(errors >= trials, 1.0, upper)


def epsilon_lower_bound(fpr_upper: np.ndarray | float, fnr_upper: np.ndarray | float) -> np.ndarray:
    """``max(log((1-FNR_u)/FPR_u), log((1-FPR_u)/FNR_u), 0)``, elementwise."""
    fpr_upper = np.asarray(fpr_upper, dtype=np.float64)
    fnr_upper = np.asarray(fnr_upper, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.log(np.clip(1.0 - fnr_upper, 0.0, None)) - np.log(fpr_upper)
        two = np.log(np.clip(1.0 - fpr_upper, 0.0, None)) - np.log(fnr_upper)
    best = np.fmax(one, two)
    return np.where(np.isfinite(best) & (best > 0), best, 0.0)


def _threshold_tests(scores_a: np.ndarray, scores_b: np.ndarray, thresholds: np.ndarray):
    """Error counts of the tests "say B when score >= t" (up) and "say B when score <= t" (down)."""
    sa, sb = np.sort(scores_a), np.sort(scores_b)
    na, nb = len(sa), len(sb)
    # up: FP = #A >= t, FN = #B < t ; down: FP = #A <= t, FN = #B > t
    a_below = np.searchsorted(sa, thresholds, side="left")
    b_below = np.searchsorted(sb, thresholds, side="left")
    a_at_or_below = np.searchsorted(sa, thresholds, side="right")
    b_at_or_below = np.searchsorted(sb, thresholds, side="right")
    up = (na - a_below, b_below)
    down = (a_at_or_below, nb - b_at_or_below)
    return up, down


@dataclass
class AuditResult:
    """What one audit found. ``epsilon_lower_bound`` holds with probability >= ``confidence``."""

    method: dict
    spec: str
    claimed_epsilon: float | None
    epsilon_lower_bound: float
    violated: bool
    #: the largest bound ``trials`` draws can give (a test with no error reaches it)
    epsilon_ceiling: float
    #: True when the test made no error: the bound is then the ceiling, not a measurement
    at_ceiling: bool
    trials: int
    confidence: float
    test: dict
    fpr: float
    fnr: float
    fpr_upper: float
    fnr_upper: float
    pair: dict
    seed: int
    wall_s: float
    draws_per_s: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _cell_mean_statistic(cell: tuple[int, int, int, int]):
    y0, y1, x0, x1 = cell

    def statistic(outputs):
        return outputs[:, :, y0:y1, x0:x1].double().mean(dim=(1, 2, 3))

    return statistic


def _draw(
    mechanism: Callable,
    image: np.ndarray,
    *,
    start: int,
    stop: int,
    seed: int,
    key_prefix: str,
    statistic: Callable | None,
    device,
    batch_size: int,
    progress_cb: Callable[[int], None] | None,
) -> np.ndarray:
    """Draws ``start..stop-1`` of the mechanism on ``image`` (key ``f"{key_prefix}/{i}"``).

    Returns the statistic of each draw (float64, stop - start), or the raw outputs (uint8,
    (stop - start) x C*H*W) when ``statistic`` is None.
    """
    import torch

    base = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    results = []
    done = start
    while done < stop:
        count = min(batch_size, stop - done)
        batch = base.unsqueeze(0).expand(count, *base.shape).contiguous()
        keys = [f"{key_prefix}/{i}" for i in range(done, done + count)]
        out = mechanism(batch, seed=seed, keys=keys)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out))
        if tuple(out.shape) != tuple(batch.shape):
            raise ValueError(f"mechanism returned shape {tuple(out.shape)} for input {tuple(batch.shape)}")
        if statistic is None:
            results.append(out.reshape(count, -1).cpu().numpy())
        else:
            results.append(statistic(out).cpu().numpy())
        done += count
        if progress_cb is not None:
            progress_cb(count)
    return np.concatenate(results)


def _describe(mechanism) -> dict:
    describe = getattr(mechanism, "describe", None)
    if callable(describe):
        try:
            return dict(describe())
        except Exception as exc:  # a broken describe() must not hide the audit result
            return {"name": getattr(mechanism, "name", "?"), "describe_error": repr(exc)}
    return {"name": getattr(mechanism, "name", "?"), "params": dict(getattr(mechanism, "params", {}) or {})}


def audit(
    mechanism: Any,
    *,
    trials: int = 50_000,
    confidence: float = 0.95,
    seed: int = 0,
    channels: int = 1,
    min_size: int | None = None,
    device: str = "auto",
    batch_size: int = 8192,
    progress: bool = False,
    statistic: str = "auto",
) -> AuditResult:
    """Audit a DP obfuscation empirically and return a lower bound on its epsilon.

    Args:
        mechanism: a spec string (``"dp-pix:b=16,m=16,epsilon=0.5"``) or an object with
            ``__call__(images, seed=, keys=)`` on uint8 torch N x C x H x W, ``name``, ``params``
            (with ``b`` and ``m`` for the cell grid; ``m`` defaults to 1 for mechanisms without a
            neighbourhood parameter) and ``epsilon`` (None when the method claims no DP).
        trials: draws of the mechanism on EACH of the two images (>= 200); half choose the
            test, half measure its error rates.
        confidence: 1 - alpha of the final bound, in (0, 1).
        seed: obfuscation seed; draw i on image A uses key ``"audit/A/i"``.
        channels: C of the pair (the DP-Pix sensitivity is C*255*m).
        min_size: smallest canvas side (default: the smallest canvas that holds the pair, which
            keeps other cells' noise out of a blurred output).
        device: where the mechanism runs (``"auto"``, ``"cpu"``, ``"cuda"``).
        batch_size: draws per mechanism call.
        progress: show a rich progress bar.
        statistic: ``"cell-mean"`` (mean output over the target cell: the noisy cell mean itself for
            pixel mechanisms), ``"matched"`` (projection on the mean output difference, estimated on
            the selection half: uses what a blur spreads over other pixels), or ``"auto"`` (matched
            for blurring methods, else cell-mean).

    Returns:
        An :class:`AuditResult`; ``violated`` is True when the bound exceeds the claim.

    Raises:
        UnauditableMechanism: for d_X-private methods (``svd-mp``), whose epsilon is per unit of
            a metric on singular values, not an m-pixel neighbourhood epsilon.
        ValueError: bad parameters.
    """
    from privattrib.common import resolve_device

    if trials < 200:
        raise ValueError(f"trials must be >= 200 (half select the test, half measure it), got {trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if statistic not in ("auto", "cell-mean", "matched"):
        raise ValueError(f"statistic must be 'auto', 'cell-mean' or 'matched', got {statistic!r}")
    mechanism, info = _auditable(mechanism)
    name = str(getattr(mechanism, "name", ""))
    params = dict(getattr(mechanism, "params", {}) or {})
    claimed = getattr(mechanism, "epsilon", None)
    claimed = None if claimed is None else float(claimed)
    blurs = "k" in params or "blur" in name
    pair = neighbouring_pair(int(params.get("b", 1)), int(params.get("m", 1)), channels=channels,
                             min_height=min_size, min_width=min_size)
    notes = _setup_notes(params, claimed, blurs, pair)
    if statistic == "auto":
        statistic = "matched" if blurs else "cell-mean"
    dev = resolve_device(device)
    alpha = 1.0 - confidence
    start = time.perf_counter()

    def sample(progress_cb=None):
        return _sample_scores(mechanism, pair, statistic, trials, seed=seed, device=dev, batch_size=batch_size,
                              progress_cb=progress_cb)

    if progress:
        from rich.console import Console
        from rich.progress import Progress

        with Progress(transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task(f"audit {getattr(mechanism, 'spec', name)}", total=2 * trials)
            draws, statistic_text = sample(lambda k: bar.advance(task, k))
    else:
        draws, statistic_text = sample()
    draw_s = time.perf_counter() - start

    # Each sample is split into a selection half (chooses the statistic's direction, the threshold
    # and the side of the test) and an evaluation half (measures the error rates): draws are
    # i.i.d., so the bound on the evaluation half is valid whatever the selection chose.
    (sel_a, ev_a), (sel_b, ev_b) = draws["A"], draws["B"]
    direction, threshold = _choose_test(sel_a, sel_b, alpha)
    measured = _measure_test(ev_a, ev_b, direction, threshold, alpha)
    if measured.at_ceiling:
        notes.append(
            f"the test made no error in {len(ev_a)} + {len(ev_b)} evaluation draws, so {measured.epsilon:.4g} is "
            "the ceiling of what this many draws can show, not an estimate: the true epsilon may be far larger "
            "(more --trials raise the ceiling slowly, about log(trials))"
        )
    half = trials // 2
    return AuditResult(
        method=info,
        spec=str(getattr(mechanism, "spec", name)),
        claimed_epsilon=claimed,
        epsilon_lower_bound=measured.epsilon,
        violated=claimed is not None and measured.epsilon > claimed,
        epsilon_ceiling=measured.ceiling,
        at_ceiling=measured.at_ceiling,
        trials=trials,
        confidence=confidence,
        test={
            "statistic": statistic_text,
            "rule": f"say x_B when statistic {direction} {threshold:.4g}",
            "direction": direction,
            "threshold": threshold,
            "selection_draws_per_image": half,
            "evaluation_draws_per_image": trials - half,
            "bounds": "one-sided Clopper-Pearson upper bounds on FPR and FNR, each at 1 - alpha/2 (Bonferroni)",
        },
        fpr=measured.fp / len(ev_a),
        fnr=measured.fn / len(ev_b),
        fpr_upper=measured.fpr_upper,
        fnr_upper=measured.fnr_upper,
        pair=pair.describe(),
        seed=seed,
        wall_s=time.perf_counter() - start,
        draws_per_s=2 * trials / max(draw_s, 1e-9),
        notes=notes,
    )


def _auditable(mechanism: Any) -> tuple[Any, dict]:
    """The mechanism object (a spec string is made) and its ``describe()``; refuses d_X-private
    methods, which have no neighbourhood epsilon."""
    if isinstance(mechanism, str):
        from privattrib.obfuscation import make

        mechanism = make(mechanism)
    name = str(getattr(mechanism, "name", ""))
    info = _describe(mechanism)
    notion = str(info.get("privacy", info.get("privacy_notion", ""))).lower()
    if name.startswith("svd") or "d_x" in notion:
        raise UnauditableMechanism(
            f"{name or 'this method'} claims d_X-privacy (epsilon per unit of the L2 distance between the "
            "top-k singular values, with the input's singular vectors released un-noised), not epsilon-DP "
            "for m-pixel neighbours; there is no neighbourhood epsilon to audit. Two images that differ in "
            "a few pixels also differ in their singular vectors, which this mechanism does not protect."
        )
    return mechanism, info


def _setup_notes(params: dict, claimed: float | None, blurs: bool, pair: NeighbourPair) -> list[str]:
    """What the reader of the bound should know about how the method was audited."""
    notes: list[str] = []
    m = int(params.get("m", 1))
    if "m" not in params:
        notes.append("method has no neighbourhood parameter m; audited with m = 1 (a one-pixel change)")
    if claimed is None:
        notes.append("method claims no differential privacy; the bound shows how distinguishable it is")
    if blurs and claimed is not None:
        notes.append(
            "the output is blurred after the noisy cells: every output pixel mixes the target cell with "
            "its neighbours' noise, so the bound is valid but loose"
        )
    if pair.changed_pixels < m:
        notes.append(f"no cell holds m={m} pixels (b={int(params.get('b', 1))}); the pair flips one full cell of "
                     f"{pair.changed_pixels}, so the bound can show at most epsilon*{pair.changed_pixels}/{m}: "
                     "valid but loose")
    return notes


def _sample_scores(mechanism: Any, pair: NeighbourPair, statistic: str, trials: int, *, seed: int, device,
                   batch_size: int, progress_cb: Callable[[int], None] | None):
    """``trials`` draws of the mechanism on each image of the pair, reduced to one score each.

    Returns:
        ``({"A": (selection, evaluation), "B": (...)}, description of the statistic)``: float64
        scores, the first ``trials // 2`` draws of each image for selecting the test, the rest for
        measuring it.
    """
    import torch

    half = trials // 2
    common = dict(seed=seed, device=device, batch_size=batch_size, progress_cb=progress_cb)
    images = (("A", pair.image_a), ("B", pair.image_b))
    draws = {}
    with torch.no_grad():
        if statistic == "cell-mean":
            cell_mean = _cell_mean_statistic(pair.cell)
            for name, image in images:
                scores = _draw(mechanism, image, start=0, stop=trials, key_prefix=f"audit/{name}",
                               statistic=cell_mean, **common)
                draws[name] = (scores[:half], scores[half:])
            return draws, "mean output value over the target cell"
        # matched filter: the direction E[M(x_B)] - E[M(x_A)] is estimated on the selection
        # draws only, then every draw is projected onto it
        selection = {name: _draw(mechanism, image, start=0, stop=half, key_prefix=f"audit/{name}",
                                 statistic=None, **common)
                     for name, image in images}
        direction = selection["B"].mean(axis=0, dtype=np.float64) - selection["A"].mean(axis=0, dtype=np.float64)
        weights = torch.from_numpy(direction).to(device)

        def project(outputs):
            return outputs.reshape(len(outputs), -1).double() @ weights

        for name, image in images:
            evaluation = _draw(mechanism, image, start=half, stop=trials, key_prefix=f"audit/{name}",
                               statistic=project, **common)
            draws[name] = (selection[name].astype(np.float64) @ direction, evaluation)
        return draws, ("projection of the output on E[M(x_B)] - E[M(x_A)] (matched filter), the direction "
                       "estimated on the selection draws")


def _choose_test(sel_a: np.ndarray, sel_b: np.ndarray, alpha: float) -> tuple[str, float]:
    """The threshold test (side, threshold) with the largest bound on the selection draws."""
    candidates = np.unique(np.concatenate([sel_a, sel_b]))
    if len(candidates) > 4096:
        candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, 4096)))
    (up_fp, up_fn), (down_fp, down_fn) = _threshold_tests(sel_a, sel_b, candidates)
    eps_up = epsilon_lower_bound(
        clopper_pearson_upper(up_fp, len(sel_a), alpha / 2), clopper_pearson_upper(up_fn, len(sel_b), alpha / 2)
    )
    eps_down = epsilon_lower_bound(
        clopper_pearson_upper(down_fp, len(sel_a), alpha / 2),
        clopper_pearson_upper(down_fn, len(sel_b), alpha / 2),
    )
    if eps_up.max() >= eps_down.max():
        return ">=", float(candidates[int(np.argmax(eps_up))])
    return "<=", float(candidates[int(np.argmax(eps_down))])


@dataclass
class _Measured:
    """Error counts of the chosen test on the evaluation draws and the bound they give."""

    fp: int
    fn: int
    fpr_upper: float
    fnr_upper: float
    epsilon: float
    ceiling: float  # the largest bound this many draws can give (no error at all)

    @property
    def at_ceiling(self) -> bool:
        return self.fp == 0 and self.fn == 0


def _measure_test(ev_a: np.ndarray, ev_b: np.ndarray, direction: str, threshold: float, alpha: float) -> _Measured:
    up, down = _threshold_tests(ev_a, ev_b, np.array([threshold]))
    fp, fn = up if direction == ">=" else down
    fp, fn = int(fp[0]), int(fn[0])
    fpr_u = float(clopper_pearson_upper(fp, len(ev_a), alpha / 2))
    fnr_u = float(clopper_pearson_upper(fn, len(ev_b), alpha / 2))
    ceiling = float(epsilon_lower_bound(clopper_pearson_upper(0, len(ev_a), alpha / 2),
                                        clopper_pearson_upper(0, len(ev_b), alpha / 2)))
    return _Measured(fp=fp, fn=fn, fpr_upper=fpr_u, fnr_upper=fnr_u,
                     epsilon=float(epsilon_lower_bound(fpr_u, fnr_u)), ceiling=ceiling)
