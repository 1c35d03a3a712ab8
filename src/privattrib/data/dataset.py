"""The in-memory form every stage hands on: uint8 images N x C x H x W with their labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabeledImages:
    """A labelled batch of images, as the cache hands it out.

    Attributes:
        images: uint8 array, N x C x H x W (often a read-only memory map).
        labels: int64 array, N: the class index (source for attribution, identity for re-id).
        class_names: name of each class index, sorted (never taken from an unsorted listing).
        keys: one stable string per image (e.g. ``"real/000123.jpg"``); obfuscation noise is a
            function of (seed, key), so an image keeps its noise whatever batch it is in.
        identities: optional int64 array, N: person id where known (-1 unknown).
        meta: free-form provenance (source paths, preprocessing, cache hash).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    keys: list[str]
    identities: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 N x C x H x W, got {self.images.dtype} {self.images.shape}"
            )
        n = len(self.images)
        if len(self.labels) != n or len(self.keys) != n:
            raise ValueError(
                f"{n} images but {len(self.labels)} labels and {len(self.keys)} keys"
            )
        if self.identities is not None and len(self.identities) != n:
            raise ValueError(f"{n} images but {len(self.identities)} identities")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index) -> "LabeledImages":
        """Rows ``index`` (an integer array or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return LabeledImages(
            images=np.asarray(self.images[index]),
            labels=np.asarray(self.labels[index]),
            class_names=list(self.class_names),
            keys=[self.keys[i] for i in index],
            identities=None if self.identities is None else np.asarray(self.identities[index]),
            meta=dict(self.meta),
        )

    @staticmethod
    def concat(parts: list["LabeledImages"]) -> "LabeledImages":
        """Join sets that share the same class list."""
        if not parts:
            raise ValueError("nothing to concatenate")
        names = parts[0].class_names
        if any(p.class_names != names for p in parts):
            raise ValueError("cannot concatenate sets with different class lists")
        ids = None
        if all(p.identities is not None for p in parts):
            ids = np.concatenate([p.identities for p in parts])
        return LabeledImages(
            images=np.concatenate([p.images for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            class_names=list(names),
            keys=[k for p in parts for k in p.keys],
            identities=ids,
            meta=dict(parts[0].meta),
        )
