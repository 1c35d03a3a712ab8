"""Deterministic splits: per class, per identity (AT&T protocol), identity-disjoint, official."""

from __future__ import annotations

import numpy as np
import pytest

from privattrib.data import (
    LabeledImages,
    identity_disjoint_split,
    official_split,
    split_per_class,
    split_per_identity,
)


def test_per_class_counts_are_exact_disjoint_and_seeded():
    labels = np.repeat([0, 1, 2], [50, 30, 40])
    s = split_per_class(labels, {"train": 20, "val": 5, "test": 5}, seed=0)
    for part, n in (("train", 20), ("val", 5), ("test", 5)):
        assert np.bincount(labels[s[part]], minlength=3).tolist() == [n, n, n]
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert len(np.unique(allidx)) == len(allidx) == 90
    assert all((np.diff(v) > 0).all() for v in s.values())  # sorted for sequential reads
    again = split_per_class(labels, {"train": 20, "val": 5, "test": 5}, seed=0)
    other = split_per_class(labels, {"train": 20, "val": 5, "test": 5}, seed=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["train"], other["train"])
    with pytest.raises(ValueError, match="class 1 has 30 images"):
        split_per_class(labels, {"train": 31})


def test_per_class_fractions_round_to_the_total():
    labels = np.repeat([0, 1], [10, 7])
    s = split_per_class(labels, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=3)
    assert np.bincount(labels[s["train"]]).tolist() == [7, 5]
    assert len(s["train"]) + len(s["val"]) + len(s["test"]) == 17
    with pytest.raises(ValueError, match="sum to at most 1"):
        split_per_class(labels, {"train": 0.8, "test": 0.3})
    with pytest.raises(ValueError, match="non-negative"):
        split_per_class(labels, {"train": -1})


def test_per_identity_protocol_drops_and_counts_small_identities():
    ids = np.repeat(np.arange(6), [10, 10, 12, 9, 10, 3])
    s = split_per_identity(ids, train=8, test=2, seed=0)
    assert s.info["dropped_identities"] == [3, 5]
    assert np.bincount(ids[s["train"]], minlength=6).tolist() == [8, 8, 8, 0, 8, 0]
    assert np.bincount(ids[s["test"]], minlength=6).tolist() == [2, 2, 2, 0, 2, 0]
    assert not set(s["train"]) & set(s["test"])
    with pytest.raises(ValueError, match="no identity"):
        split_per_identity(ids, train=20, test=2)
    with pytest.raises(ValueError):
        split_per_identity(ids, train=0)


def test_identity_disjoint():
    ids = np.array([5, 5, 7, 7, 7, 9, 9, 11, -1, -1])
    s = identity_disjoint_split(ids, {"train": 0.5, "test": 0.5}, seed=0)
    tr, te = set(ids[s["train"]]) - {-1}, set(ids[s["test"]]) - {-1}
    assert not tr & te
    assert len(s["train"]) + len(s["test"]) == 10  # unknown rows are singletons, each placed once
    counts = identity_disjoint_split(ids, {"train": 2, "test": 1}, seed=4)
    assert counts.info["identities_per_part"] == {"train": 2, "test": 1}
    with pytest.raises(ValueError, match="identities, fewer"):
        identity_disjoint_split(ids, {"train": 100})


def test_official_split():
    data = LabeledImages(np.zeros((4, 3, 2, 2), np.uint8), np.zeros(4, np.int64), ["real"], list("abcd"),
                         meta={"partition": np.array([0, 2, 1, 0], np.int8)})
    s = official_split(data)
    assert s["train"].tolist() == [0, 3] and s["val"].tolist() == [2] and s["test"].tolist() == [1]
    data.meta.pop("partition")
    with pytest.raises(ValueError, match="no official partitions"):
        official_split(data)
