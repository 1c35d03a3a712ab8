"""Re-identification risk of one photo against an identity gallery (the web page's figure).

A gallery is an identity folder set (one sub-folder of photos per person, as ``privattrib attack
reid`` reads them). An identity classifier is trained on its CLEAN photos with the attack's own
code (:func:`privattrib.attacks.reid.clean_identity_classifier`, cached on disk by a hash of the
pixels and options), one photo per person held out to measure how often it names the right
person. A photo and its protected version are then both put to the classifier: if the protected
one is still matched to the person the original is matched to, the protection did not stop this
attacker.

What the figure is and is not:

* It is the **naive attacker** of the ``no-retrain`` variant: trained on clean photos. An attacker
  who obfuscates his gallery the same way and retrains (``retrain``, the papers' protocol) does
  better against pixelization and blur; ``privattrib attack reid`` measures that on a whole set.
* The classifier always names one of the gallery's people. The figure means something only when
  the photo shows one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["IdentityGallery", "GalleryMatch", "DEFAULT_GALLERY_SIZE"]

#: Side of the square images the gallery classifier works at (pixels).
DEFAULT_GALLERY_SIZE = 64


@dataclass
class GalleryMatch:
    """The gallery's answer for one image.

    Attributes:
        person: the most probable person (folder name).
        probability: its softmax probability.
        top: the five most probable people with their probabilities, best first.
        rank_of: person -> rank (1 = best) for every gallery person.
    """

    person: str
    probability: float
    top: list[tuple[str, float]]
    rank_of: dict[str, int] = field(repr=False)
    probabilities: dict[str, float] = field(repr=False)


class IdentityGallery:
    """An identity classifier trained on a gallery's clean photos, ready to match new photos.

    Build it with :meth:`load`. Attributes: ``people`` (folder names, the classes), ``image_size``,
    ``in_channels``, ``held_out_accuracy`` (top-1 on one held-out clean photo per person),
    ``held_out_top5`` (None with 5 people or fewer), ``n_train``, ``n_held_out``, ``root``,
    ``from_cache``.
    """

    def __init__(self, model: Any, *, people: Sequence[str], image_size: int, in_channels: int,
                 held_out_accuracy: float | None, held_out_top5: float | None, n_train: int, n_held_out: int,
                 root: str, from_cache: bool, device: Any) -> None:
        self.model = model
        self.people = [str(p) for p in people]
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.held_out_accuracy = held_out_accuracy
        self.held_out_top5 = held_out_top5
        self.n_train = n_train
        self.n_held_out = n_held_out
        self.root = root
        self.from_cache = from_cache
        self.device = device

    @classmethod
    def load(
        cls,
        root: str | Path,
        *,
        size: int = DEFAULT_GALLERY_SIZE,
        channels: int | None = None,
        epochs: int | None = None,
        seed: int = 0,
        device: str = "auto",
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> "IdentityGallery":
        """Load the gallery at ``root`` and train (or reuse from the cache) its identity classifier.

        Args:
            root: one sub-folder of photos per person (at least two people).
            size: the classifier's input side; every photo is centre-cropped to a square and resized.
            channels: 1 or 3 (None: 1 when every gallery photo is grey, else 3).
            epochs: training epochs (None: the attack's default, see
                :data:`privattrib.attacks.reid.DEFAULT_ARCH_CFG`).
            seed: the held-out draw and the training seed.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``.
            cache_dir: where the decoded gallery and the trained model are cached (default: the
                data cache, ``$PRIVATTRIB_CACHE`` or ``~/.cache/privattrib``).
            progress: progress bars while decoding and training.

        Raises:
            ValueError: the folder is not an identity set with at least two people with photos.
        """
        from privattrib.attacks.reid import clean_identity_classifier, identity_accuracy
        from privattrib.common import resolve_device
        from privattrib.data import default_cache_dir, load_identity_set

        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"identity gallery {root} is not a folder (expected one sub-folder of photos per person)")
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        data = load_identity_set(root, size, channels=channels, cache_dir=cache, progress=progress)
        people_with_photos = np.unique(data.labels)
        if len(people_with_photos) < 2:
            raise ValueError(f"identity gallery {root}: needs photos of at least two people (one sub-folder each), "
                             f"found {len(people_with_photos)}")
        train_idx, held_idx = _hold_out_one_per_person(np.asarray(data.labels), seed)
        train = data.subset(train_idx)
        dev = resolve_device(device)
        arch_cfg = {"epochs": int(epochs)} if epochs is not None else None
        model, cached = clean_identity_classifier(train, arch_cfg=arch_cfg, seed=seed,
                                                  work_dir=cache / "reid-gallery", device=dev, progress=progress)
        accuracy = top5 = None
        if len(held_idx):
            held = data.subset(held_idx)
            accuracy = identity_accuracy(model, held.images, held.labels, device=dev)
            if data.num_classes > 5:
                top5 = identity_accuracy(model, held.images, held.labels, device=dev, top_k=5)
        return cls(model.eval(), people=data.class_names, image_size=size, in_channels=data.images.shape[1],
                   held_out_accuracy=accuracy, held_out_top5=top5, n_train=len(train_idx),
                   n_held_out=len(held_idx), root=str(root), from_cache=cached, device=dev)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.people)

    def match(self, images: Sequence[np.ndarray]) -> list[GalleryMatch]:
        """Match photos against the gallery.

        Args:
            images: uint8 H x W x C pixels of any size; each is centre-cropped and resized the way
                the gallery photos were.

        Returns:
            One :class:`GalleryMatch` per image.
        """
        from privattrib.attribution.calibration import softmax
        from privattrib.data.preprocess import Preprocess, prepare_array
        from privattrib.training import predict

        prep = Preprocess(size=(self.image_size, self.image_size), crop="center", channels=self.in_channels)
        batch = np.stack([prepare_array(img, prep, name=f"image {i}") for i, img in enumerate(images)])
        probs = softmax(predict(self.model, batch, device=self.device), 1.0)
        out = []
        for row in probs:
            order = np.argsort(-row, kind="stable")
            out.append(GalleryMatch(
                person=self.people[order[0]], probability=float(row[order[0]]),
                top=[(self.people[i], float(row[i])) for i in order[:5]],
                rank_of={self.people[i]: r + 1 for r, i in enumerate(order)},
                probabilities={p: float(v) for p, v in zip(self.people, row)}))
        return out

    def risk(self, original: np.ndarray, protected: np.ndarray) -> dict[str, Any]:
        """Whether ``protected`` is still matched to the person ``original`` is matched to.

        Returns:
            JSON-ready: ``original`` and ``protected`` (person, probability, top 5), ``same_person``,
            ``rank`` (the rank of the original's person for the protected photo, 1 = still the best
            match), ``probability_of_original_person``, ``people``, ``chance``, and the gallery's
            ``held_out_accuracy`` / ``held_out_top5``.
        """
        before, after = self.match([original, protected])
        return {
            "original": {"person": before.person, "probability": before.probability, "top": before.top},
            "protected": {"person": after.person, "probability": after.probability, "top": after.top},
            "same_person": after.person == before.person,
            "rank": after.rank_of[before.person],
            "probability_of_original_person": after.probabilities[before.person],
            **self.describe(),
        }

    def describe(self) -> dict[str, Any]:
        """What the classifier is: its gallery, size, training and held-out figures."""
        return {
            "root": self.root,
            "people": len(self.people),
            "chance": self.chance,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "n_train": self.n_train,
            "n_held_out": self.n_held_out,
            "held_out_accuracy": self.held_out_accuracy,
            "held_out_top5": self.held_out_top5,
            "attacker": "naive: trained on clean gallery photos (the no-retrain variant of privattrib attack reid)",
        }


def _hold_out_one_per_person(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): one random photo of every person with at least two, held out."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6A11]))
    held = []
    for person in np.unique(labels):
        rows = np.flatnonzero(labels == person)
        if len(rows) >= 2:
            held.append(int(rng.choice(rows)))
    held_arr = np.sort(np.asarray(held, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), held_arr), held_arr
