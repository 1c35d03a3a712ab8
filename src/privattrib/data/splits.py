"""Deterministic train/val/test splits: per class, per identity (AT&T protocol), identity-disjoint.

Every function takes the labels (or identities) as an array and a seed and returns a
:class:`Split`: a dict of split name -> sorted int64 row indices (sorted so memory-mapped reads
stay sequential), with ``info`` saying what was dropped and why. Same input, same seed, same split,
on every machine (NumPy's PCG64 ``default_rng``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


class Split(dict):
    """``{"train": idx, "val": idx, "test": idx}`` plus ``info`` (dropped identities, counts)."""

    def __init__(self, parts: Mapping[str, np.ndarray], info: dict | None = None) -> None:
        super().__init__({k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in parts.items()})
        self.info = info or {}


def _check_sizes(sizes: Mapping[str, float | int]) -> tuple[dict[str, float | int], bool]:
    if not isinstance(sizes, Mapping) or not sizes:
        raise ValueError("give the split sizes as a mapping, e.g. {'train': 0.8, 'test': 0.2} or {'train': 100, 'test': 20}")
    values = list(sizes.values())
    if any(not isinstance(v, (int, float, np.integer, np.floating)) or v < 0 for v in values):
        raise ValueError(f"split sizes must be non-negative numbers, got {dict(sizes)}")
    as_fractions = any(isinstance(v, (float, np.floating)) for v in values)
    if as_fractions:
        if any(v > 1 for v in values) or sum(values) > 1 + 1e-9:
            raise ValueError(f"split fractions must each be in [0, 1] and sum to at most 1, got {dict(sizes)}")
    return dict(sizes), as_fractions


def _counts_from_fractions(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Largest-remainder rounding, so the counts add up to round(n * sum(fractions))."""
    raw = {k: n * f for k, f in fractions.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    target = int(round(n * sum(fractions.values())))
    order = sorted(raw, key=lambda k: (-(raw[k] - counts[k]), list(raw).index(k)))
    for k in order[: max(0, target - sum(counts.values()))]:
        counts[k] += 1
    return counts


def split_per_class(labels, counts: Mapping[str, float | int], seed: int = 0) -> Split:
    """Split every class separately into named parts.

    Args:
        labels: int array N.
        counts: per-class sizes: integers (images of each class, e.g. ``{"train": 800, "val": 100,
            "test": 100}``) or fractions (floats summing to at most 1).
        seed: shuffling seed.

    Returns:
        Split of row indices; with integer counts every class contributes exactly that many.

    Raises:
        ValueError: a class has fewer images than the counts ask for, or the sizes are malformed.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    sizes, fractions = _check_sizes(counts)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in sizes}
    per_class = {}
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        want = _counts_from_fractions(len(rows), sizes) if fractions else {k: int(v) for k, v in sizes.items()}
        if sum(want.values()) > len(rows):
            raise ValueError(f"class {c} has {len(rows)} images, fewer than the {sum(want.values())} asked for ({want})")
        lo = 0
        for k, m in want.items():
            parts[k].append(rows[lo : lo + m])
            lo += m
        per_class[int(c)] = want
    return Split({k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in parts.items()},
                 {"per_class": per_class, "seed": seed})


def split_per_identity(identities, train: int = 8, test: int = 2, seed: int = 0) -> Split:
    """Re-identification protocol (AT&T: 8 train and 2 test images per person).

    Every identity with at least ``train + test`` images contributes a random ``train`` of them to
    train and ``test`` others to test; identities with fewer are dropped and listed in
    ``info["dropped_identities"]`` (identities < 0, unknown, are ignored).
    """
    identities = np.asarray(identities)
    if train < 1 or test < 1:
        raise ValueError(f"train and test must be >= 1, got {train}, {test}")
    rng = np.random.default_rng(seed)
    tr, te, dropped = [], [], []
    for ident in np.unique(identities[identities >= 0]):
        rows = np.flatnonzero(identities == ident)
        if len(rows) < train + test:
            dropped.append(int(ident))
            continue
        rows = rng.permutation(rows)
        tr.append(rows[:train])
        te.append(rows[train : train + test])
    if not tr:
        raise ValueError(f"no identity has the {train + test} images the protocol needs")
    return Split({"train": np.concatenate(tr), "test": np.concatenate(te)},
                 {"dropped_identities": dropped, "kept_identities": len(tr), "seed": seed})


def identity_disjoint_split(identities, sizes: Mapping[str, float | int], seed: int = 0) -> Split:
    """Split so that no person appears in two parts (attribution without identity leakage).

    Args:
        identities: int array N; rows with identity < 0 (unknown, e.g. GAN images) are each
            treated as a person of their own.
        sizes: fractions of identities (floats) or numbers of identities (ints) per part.
        seed: shuffling seed.
    """
    identities = np.asarray(identities)
    sizes, fractions = _check_sizes(sizes)
    groups = identities.astype(np.int64).copy()
    unknown = groups < 0
    # Unknown rows become distinct negative groups so they never share a group with each other.
    groups[unknown] = -1 - np.arange(unknown.sum())
    people = np.unique(groups)
    rng = np.random.default_rng(seed)
    people = rng.permutation(people)
    want = _counts_from_fractions(len(people), sizes) if fractions else {k: int(v) for k, v in sizes.items()}
    if sum(want.values()) > len(people):
        raise ValueError(f"{len(people)} identities, fewer than the {sum(want.values())} asked for ({want})")
    parts = {}
    lo = 0
    for k, m in want.items():
        parts[k] = np.flatnonzero(np.isin(groups, people[lo : lo + m]))
        lo += m
    return Split(parts, {"identities_per_part": want, "seed": seed})


def official_split(data) -> Split:
    """CelebA's official partitions (``meta["partition"]``: 0 train, 1 val, 2 test)."""
    part = data.meta.get("partition") if hasattr(data, "meta") else None
    if part is None:
        raise ValueError("this set has no official partitions (only CelebA loaded with load_celeba has)")
    part = np.asarray(part)
    return Split({name: np.flatnonzero(part == p) for name, p in (("train", 0), ("val", 1), ("test", 2))},
                 {"official": True})
