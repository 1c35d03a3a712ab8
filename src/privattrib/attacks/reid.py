"""Re-identification attack (McPherson, Shokri, Shmatikov 2016; Fan 2018, Table 3).

An identity classifier is trained on identity-labelled training images and tested on held-out
images of the same people (AT&T protocol: 8 training and 2 test images per person).

Variants:

- ``retrain`` (the papers' protocol): trained on *obfuscated* training images, tested on obfuscated
  test images: the attacker obfuscates images he already knows and learns what survives.
- ``no-retrain``: trained on clean images, tested on obfuscated ones (a naive attacker).

``pretrain="others"`` models a stronger attacker who also holds face images of *other* people (a
public face data set): the network is first trained to tell those people apart, on their images
obfuscated the same way, and then fine-tuned on the targets (its last layer replaced). With few
images per target (CelebA: 4) this transfers what identity looks like under the obfuscation.

By default noise is drawn ONCE per image: each split is obfuscated a single time before training,
with the noise a function of (seed, image key). The attacker of ``retrain`` holds the clean training
images, so he can do better, and the options model that (Fan 2018's protocol does not say which
was done; docs/results-attacks.md measures each):

- ``noise_per_epoch``: the clean training batch is obfuscated afresh in every epoch (noise keyed by
  (seed, epoch, key)), so over E epochs the network sees E noisy copies of each training face. It
  costs the targets nothing: the training images are the attacker's own.
- ``train_releases=r``: each training image is the mean of r independent obfuscations (free for the
  same reason); with ``noise_per_epoch`` the r releases are redrawn every epoch.
- ``test_releases=r``: each test image is the mean of r independent releases of the same face, as
  when a face is published r times with fresh noise. This one is paid for: r releases at epsilon
  each cost r * epsilon (``epsilon_test_total`` in the row).
- ``max_light_angle``: Extended Yale B only, keep the faces lit from within that many degrees of
  the camera axis (AT&T's faces are evenly lit).

The classifier is trained by the one shared loop of
:mod:`privattrib.training`; the network is any name of the shared classifier registry
(``mcpherson2016`` is registered by :mod:`privattrib.attacks.models`, ``resnet18`` by attribution).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privattrib.attacks import models as _models  # noqa: F401  (registers mcpherson2016)
from privattrib.common import atomic_torch_save, atomic_write_text, file_lock, resolve_device, stable_hash
from privattrib.attribution.scenarios import obfuscate_images
from privattrib.data.dataset import LabeledImages
from privattrib.training import as_uint8_tensor

__all__ = [
    "VARIANTS",
    "PRETRAIN_CHOICES",
    "other_people",
    "DEFAULT_ARCH_CFG",
    "check_arch_cfg",
    "obfuscate_once",
    "release_keys",
    "obfuscate_releases",
    "fresh_noise_transform",
    "split_identity_set",
    "train_identity_classifier",
    "clean_identity_classifier",
    "identity_accuracy",
    "utility",
    "run_reid_cell",
    "train_reid_surrogate",
    "surrogate_figures",
    "check_surrogate_split",
]

VARIANTS = ("retrain", "no-retrain")

#: ``pretrain`` choices of :func:`run_reid_cell`: None (from scratch) or "others" (see the module doc).
PRETRAIN_CHOICES = (None, "others")
#: Learning-rate cap of both phases with pretraining. Telling 1,500 CelebA people apart from 5
#: images each, mcpherson2016 at Adam lr 1e-3 never learned (loss stuck at ln K: the same scores
#: for every face) and the fine-tuned attacker was at chance; at 3e-4 it learns (32 px: 11.2%
#: against 3.4-3.6% from scratch).
PRETRAIN_MAX_LR = 3e-4


def learning_rate(lr: float, pretraining: bool) -> float:
    """The learning rate an identity classifier trains with: capped at :data:`PRETRAIN_MAX_LR` for
    both phases when it first pretrains on other people."""
    return min(lr, PRETRAIN_MAX_LR) if pretraining else lr


#: Training options of the re-identification classifier. Keys that are fields of
#: :class:`privattrib.training.TrainConfig` go to the loop; ``arch`` names the network; every
#: other key is an option of that network (e.g. ``dropout``).
DEFAULT_ARCH_CFG: dict[str, Any] = {
    "arch": "mcpherson2016",
    "epochs": 40,
    "batch_size": 32,
    "lr": 1e-3,
    "betas": (0.9, 0.999),
    "hflip": True,
}


def _make(obfuscation):
    if obfuscation is None:
        return None
    if isinstance(obfuscation, str):
        from privattrib.obfuscation import make

        return make(obfuscation)
    return obfuscation


def _is_identity(ob) -> bool:
    return ob is None or getattr(ob, "name", None) == "none"


def method_info(obfuscation) -> dict:
    """``spec``, ``epsilon`` and ``describe()`` of an obfuscation (``None`` = clean images)."""
    ob = _make(obfuscation)
    if ob is None:
        return {"method": "none", "epsilon": None, "method_describe": {"name": "none"}}
    describe = ob.describe() if callable(getattr(ob, "describe", None)) else {}
    return {"method": str(getattr(ob, "spec", getattr(ob, "name", "?"))), "epsilon": getattr(ob, "epsilon", None),
            "method_describe": describe}


def obfuscate_once(
    obfuscation, data: LabeledImages, seed: int, *, device: str | torch.device = "auto", batch_size: int = 2048
) -> torch.Tensor:
    """Obfuscate every image of ``data`` once, noise keyed by (seed, ``data.keys[i]``).

    Args:
        obfuscation: an obfuscation object (``privattrib.obfuscation.make``), a spec string, or
            None for the clean images.
        data: N images, uint8 N x C x H x W.
        seed: obfuscation seed.
        device: where to obfuscate and where the result stays.
        batch_size: images per call (the noise does not depend on it).

    Returns:
        uint8 tensor N x C x H x W on ``device``.
    """
    ob = _make(obfuscation)
    dev = resolve_device(device)
    if _is_identity(ob):
        return as_uint8_tensor(data.images).to(dev)
    return obfuscate_images(ob, data.images, list(data.keys), seed, dev, chunk=batch_size)


def release_keys(keys, release: int = 0, epoch: int | None = None) -> list:
    """The noise keys of one release of images with ``keys``.

    Release 0 outside any epoch keeps the keys themselves, so a single release is exactly
    :func:`obfuscate_once`'s; release j of epoch e gets ``"{key}|epoch={e}|release={j}"`` (each
    part only when set), i.e. noise that depends on (seed, epoch, release, key) and on nothing else.
    """
    if release < 0:
        raise ValueError(f"release must be >= 0, got {release}")
    if release == 0 and epoch is None:
        return list(keys)
    tag = (f"|epoch={epoch}" if epoch is not None else "") + (f"|release={release}" if release else "")
    return [f"{key}{tag}" for key in keys]


def _check_releases(name: str, releases: int) -> int:
    if isinstance(releases, bool) or not isinstance(releases, (int, np.integer)) or releases < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {releases!r}")
    return int(releases)


def obfuscate_releases(
    obfuscation,
    images: torch.Tensor | np.ndarray,
    keys,
    seed: int,
    releases: int = 1,
    *,
    epoch: int | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 2048,
) -> torch.Tensor:
    """What an attacker who averages ``releases`` independent obfuscations of each image holds.

    The mean is taken over the uint8 releases (each clipped to [0, 255] as published) and rounded
    to the nearest grey level (ties to even). For a method without noise every release is the same
    image, so it is computed once.

    Args:
        obfuscation: an obfuscation object, a spec string, or None (clean images).
        images: uint8 N x C x H x W.
        keys: N image keys; release j gets the noise of :func:`release_keys` (keys, j, epoch).
        seed: obfuscation seed.
        releases: r >= 1.
        epoch: set for per-epoch noise (see :func:`fresh_noise_transform`).
        device: where to obfuscate and where the result stays.

    Returns:
        uint8 tensor N x C x H x W on ``device``.
    """
    return mean_and_first_release(obfuscation, images, keys, seed, releases, epoch=epoch, device=device,
                                  batch_size=batch_size)[0]


def mean_and_first_release(
    obfuscation,
    images: torch.Tensor | np.ndarray,
    keys,
    seed: int,
    releases: int = 1,
    *,
    epoch: int | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`obfuscate_releases` and, beside it, release 0 alone (what the readers of one
    publication see), without obfuscating release 0 twice (for ``adv`` that is a second PGD run).

    Returns:
        (the mean of the releases, release 0): uint8 tensors N x C x H x W on ``device``, the same
        tensor when there is one release.
    """
    releases = _check_releases("releases", releases)
    ob = _make(obfuscation)
    dev = resolve_device(device)
    if _is_identity(ob):
        clean = as_uint8_tensor(images).to(dev)
        return clean, clean
    if not getattr(ob, "randomized", True):
        releases = 1
    keys = list(keys)
    first = obfuscate_images(ob, images, release_keys(keys, 0, epoch), seed, dev, chunk=batch_size)
    if releases == 1:
        return first, first
    total = first.to(torch.int32)
    for release in range(1, releases):
        total.add_(obfuscate_images(ob, images, release_keys(keys, release, epoch), seed, dev, chunk=batch_size))
    return torch.round(total.to(torch.float64) / releases).to(torch.uint8), first


def fresh_noise_transform(obfuscation, keys, seed: int, releases: int = 1):
    """A :data:`privattrib.training.BatchTransform` that obfuscates the CLEAN training batch afresh in
    every epoch: batch row i (training image ``index[i]``) gets the mean of ``releases``
    obfuscations keyed by (seed, epoch, ``keys[index[i]]``), so one epoch's noise is reproducible
    and independent of batch order, and every epoch sees a new release.

    Args:
        obfuscation: an obfuscation object or a spec string.
        keys: the training images' keys, in the order of the images given to the loop.
        seed: obfuscation seed.
        releases: obfuscations averaged per image and epoch (>= 1).
    """
    ob = _make(obfuscation)
    releases = _check_releases("train_releases", releases)
    key_array = np.asarray(list(keys), dtype=object)

    def transform(batch, labels, index, epoch, model):
        batch_keys = key_array[index.detach().cpu().numpy()]
        return obfuscate_releases(ob, batch, batch_keys, seed, releases, epoch=epoch, device=batch.device)

    return transform


def _people_of(data: LabeledImages) -> tuple[bool, np.ndarray]:
    """(whether ``identities`` name the people, the person of every image): ``data.identities``
    when every image has one (CelebA), else ``data.labels`` (identity folder sets)."""
    use_ids = data.identities is not None and bool(np.all(np.asarray(data.identities) >= 0))
    return use_ids, np.asarray(data.identities if use_ids else data.labels, dtype=np.int64)


def split_identity_set(
    data: LabeledImages,
    train_per_identity: int = 8,
    test_per_identity: int = 2,
    seed: int = 0,
    max_identities: int | None = None,
) -> tuple[LabeledImages, LabeledImages]:
    """Per-identity split (AT&T protocol): ``train_per_identity`` + ``test_per_identity`` images of
    every person with at least that many; people with fewer are dropped.

    The person of an image is ``data.identities`` when given (CelebA: the identity ids, labels all
    0), else ``data.labels`` (identity folder sets). Labels are re-indexed 0..K-1 over the kept
    people, so chance is 1/K.

    Args:
        data: clean images, uint8 N x C x H x W.
        train_per_identity, test_per_identity: images per person in each split (>= 1).
        seed: which images (and which people, with ``max_identities``) are drawn.
        max_identities: keep at most this many people, drawn at random (e.g. 500 of CelebA's 2,000).

    Returns:
        (train, test) LabeledImages with K * train_per_identity and K * test_per_identity images.
    """
    from privattrib.data import split_per_identity

    if train_per_identity < 1 or test_per_identity < 1:
        raise ValueError(
            f"train_per_identity and test_per_identity must be >= 1, got {train_per_identity}, {test_per_identity}"
        )
    if max_identities is not None and max_identities < 2:
        raise ValueError(f"max_identities must be >= 2, got {max_identities}")
    use_ids, people = _people_of(data)
    parts = split_per_identity(people, train=train_per_identity, test=test_per_identity, seed=seed)
    train_idx, test_idx = np.asarray(parts["train"], dtype=np.int64), np.asarray(parts["test"], dtype=np.int64)
    kept = np.unique(people[np.concatenate([train_idx, test_idx])])
    if max_identities is not None and len(kept) > max_identities:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1D]))
        kept = np.sort(rng.choice(kept, size=max_identities, replace=False))
        train_idx = train_idx[np.isin(people[train_idx], kept)]
        test_idx = test_idx[np.isin(people[test_idx], kept)]
    if len(kept) < 2:
        raise ValueError(
            f"only {len(kept)} identities have {train_per_identity + test_per_identity} images; need at least 2"
        )
    index_of = {int(p): i for i, p in enumerate(kept)}
    if use_ids and not np.array_equal(people, np.asarray(data.labels)):
        names = [str(int(p)) for p in kept]
    else:
        names = [data.class_names[p] if 0 <= p < len(data.class_names) else str(int(p)) for p in kept]
    meta_split = {"train_per_identity": train_per_identity, "test_per_identity": test_per_identity,
                  "seed": seed, "max_identities": max_identities, "dropped_identities": int(
                      len(np.unique(people)) - len(kept))}

    def pick(index: np.ndarray) -> LabeledImages:
        part = data.subset(index)
        return LabeledImages(
            images=part.images,
            labels=np.array([index_of[int(p)] for p in people[index]], dtype=np.int64),
            class_names=names,
            keys=part.keys,
            identities=part.identities,
            meta={**part.meta, "split": meta_split},
        )

    return pick(train_idx), pick(test_idx)


def other_people(data: LabeledImages, *splits: LabeledImages) -> LabeledImages:
    """The images of ``data`` whose person appears in none of ``splits`` (matched by image key),
    labelled 0..K'-1 over those people: an attacker's auxiliary set of other people.

    Raises:
        ValueError: when fewer than two other people are left (e.g. every person is a target).
    """
    _, people = _people_of(data)
    used_keys = {k for part in splits for k in part.keys}
    targets = {int(p) for p, k in zip(people, data.keys) if k in used_keys}
    index = np.flatnonzero(~np.isin(people, np.fromiter(targets, np.int64, len(targets))))
    kept, labels = np.unique(people[index], return_inverse=True)
    if len(kept) < 2:
        raise ValueError(
            f"pretraining on other people needs at least 2 people outside the targets, found {len(kept)}; "
            "use max_identities to keep some people out of the targets"
        )
    part = data.subset(index)
    return LabeledImages(images=part.images, labels=labels.astype(np.int64), class_names=[str(int(p)) for p in kept],
                         keys=part.keys, identities=part.identities, meta={**part.meta, "role": "other people"})


def _replace_last_linear(model: torch.nn.Module, num_classes: int, seed: int) -> None:
    """Swap the model's last ``nn.Linear`` for a fresh one with ``num_classes`` outputs."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = name
    if last is None:
        raise ValueError(f"{type(model).__name__} has no linear layer to replace for fine-tuning")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = torch.nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(parent, child, fresh.to(old.weight.device, old.weight.dtype))
    config = getattr(model, "classifier_config", None)
    if isinstance(config, dict):  # a checkpoint saved from it must rebuild the new head, not the old one
        model.classifier_config = {**config, "num_classes": int(num_classes)}


def _resolve_arch_cfg(arch_cfg: dict | str | None) -> dict:
    if isinstance(arch_cfg, str):  # just a network name
        arch_cfg = {"arch": arch_cfg}
    if arch_cfg is not None and not isinstance(arch_cfg, dict):
        raise ValueError(f"arch_cfg must be a dict of options or a network name, got {type(arch_cfg).__name__}")
    cfg = {**DEFAULT_ARCH_CFG, **(arch_cfg or {})}
    if "name" in cfg and "arch" not in (arch_cfg or {}):
        cfg["arch"] = cfg.pop("name")
    cfg.pop("name", None)
    cfg["betas"] = tuple(cfg["betas"]) if "betas" in cfg else None
    return cfg


def _split_cfg(cfg: dict, seed: int, device) -> tuple[str, dict, Any]:
    from privattrib.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_kw = {k: v for k, v in cfg.items() if k in fields and k not in ("seed", "device")}
    options = {k: v for k, v in cfg.items() if k not in fields and k != "arch"}
    config = TrainConfig(**train_kw, seed=seed, device=str(device))
    return cfg["arch"], options, config


def _build_classifier(arch: str, num_classes: int, shape: tuple, seed: int, options: dict) -> torch.nn.Module:
    """``make_classifier`` for uint8 images of ``shape`` (N x C x H x W); a non-square input passes
    its height as the network's ``height`` option (``image_size`` is the width)."""
    from privattrib.attribution.models import classifier_options, make_classifier

    _, channels, height, width = shape
    if height != width:
        if "height" not in classifier_options(arch):
            raise ValueError(f"{arch} takes square images only, got {height} x {width} (H x W); "
                             "mcpherson2016 takes any H x W")
        options = {**options, "height": height}
    return make_classifier(arch, num_classes=num_classes, image_size=width, in_channels=channels, seed=seed,
                           **options)


def check_arch_cfg(arch_cfg: dict | str | None, image_size: int, in_channels: int) -> dict:
    """Resolve and check network + loop options without training: builds the network once (so a
    misspelt option or a size the network cannot take fails now, not in every cell).

    Returns:
        the resolved options; raises ValueError naming what is wrong.
    """
    from privattrib.attribution.models import make_classifier

    cfg = _resolve_arch_cfg(arch_cfg)
    try:
        arch, options, _ = _split_cfg(cfg, 0, "cpu")
        make_classifier(arch, num_classes=2, image_size=image_size, in_channels=in_channels, seed=0, **options)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    return cfg


def train_identity_classifier(
    images: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    arch_cfg: dict | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    pretrain_on: tuple[Any, np.ndarray, int] | None = None,
    batch_transform=None,
    val: tuple[Any, np.ndarray] | None = None,
    return_result: bool = False,
):
    """Train an identity classifier with the shared loop.

    Args:
        images: uint8 N x C x H x W, NumPy or torch on any device (non-square only for networks
            with a ``height`` option, such as mcpherson2016).
        labels: int N, identity index in 0..K-1.
        num_classes: K.
        arch_cfg: network and loop options, merged over :data:`DEFAULT_ARCH_CFG`.
        seed: weight initialisation and batch order.
        pretrain_on: ``(images, labels, K')`` of other people: train on them first (same options,
            learning rate capped at :data:`PRETRAIN_MAX_LR`), then replace the last linear layer
            and fine-tune on ``images``.
        batch_transform: applied to every batch of ``images`` (not of the pretraining set), e.g.
            :func:`fresh_noise_transform` with ``images`` the clean training images.
        val: ``(images, labels)`` scored after every epoch (``history[i]["val_accuracy"]``).
        return_result: return the loop's :class:`~privattrib.training.TrainResult` (of the
            fine-tuning phase with ``pretrain_on``) instead of the model.

    Returns:
        the trained model (``model.classifier_config`` records the network's options), or the
        TrainResult with ``return_result``.
    """
    from privattrib.training import train_classifier

    cfg = _resolve_arch_cfg(arch_cfg)
    arch, options, config = _split_cfg(cfg, seed, resolve_device(device))
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise ValueError(f"identity classifier needs uint8 N x C x H x W images, got {shape}")
    if pretrain_on is not None:
        config = dataclasses.replace(config, lr=learning_rate(config.lr, pretraining=True))
        aux_images, aux_labels, aux_classes = pretrain_on
        model = _build_classifier(arch, aux_classes, shape, seed, options)
        model = train_classifier(model, aux_images, np.asarray(aux_labels), config=config, progress=progress).model
        _replace_last_linear(model, num_classes, seed)
    else:
        model = _build_classifier(arch, num_classes, shape, seed, options)
    result = train_classifier(model, images, np.asarray(labels), config=config, progress=progress,
                              batch_transform=batch_transform, val=val)
    return result if return_result else result.model


def clean_identity_classifier(
    train: LabeledImages,
    *,
    arch_cfg: dict | None,
    seed: int,
    work_dir: str | Path | None,
    device: str | torch.device = "auto",
    progress: bool = False,
    others: LabeledImages | None = None,
) -> tuple[torch.nn.Module, bool]:
    """The classifier trained on CLEAN ``train`` images (after pretraining on the clean images of
    ``others`` when given), cached in ``work_dir``.

    The cache key is a hash of the training keys, labels and pixels, the image shape, the
    resolved options and the seed, so every method of a grid (and a resumed run) reuses one model. The
    checkpoint is written atomically (temp file + rename) with its options beside it as JSON.

    Returns:
        (model, loaded_from_cache)
    """
    cfg = _resolve_arch_cfg(arch_cfg)
    # the pixels too: the same keys and shape can hold other pixels (another crop, colour mode or
    # copy of the same files), and a model trained on those must not be reused
    pixels = hashlib.blake2b(np.ascontiguousarray(train.images).data, digest_size=16).hexdigest()
    identity = {"keys": list(train.keys), "labels": np.asarray(train.labels).tolist(),
                "shape": list(train.images.shape), "pixels": pixels, "cfg": cfg, "seed": seed}
    if others is not None:
        identity["pretrain_others"] = {
            "keys": list(others.keys), "labels": np.asarray(others.labels).tolist(),
            "pixels": hashlib.blake2b(np.ascontiguousarray(others.images).data, digest_size=16).hexdigest()}
    key = stable_hash(identity, length=20)
    path = Path(work_dir) / f"reid-clean-{cfg['arch']}-{key}.pt" if work_dir is not None else None
    dev = resolve_device(device)
    # grid shards that need the same model at once: one trains it, the others wait and load it
    with file_lock(path.with_suffix(".lock")) if path is not None else contextlib.nullcontext():
        if path is not None and path.exists():
            state = torch.load(path, map_location="cpu", weights_only=False)
            arch, options, _ = _split_cfg(cfg, seed, dev)
            model = _build_classifier(arch, train.num_classes, tuple(train.images.shape), seed, options)
            model.load_state_dict(state["state_dict"])
            return model.to(dev).eval(), True
        pretrain_on = (others.images, others.labels, others.num_classes) if others is not None else None
        model = train_identity_classifier(train.images, train.labels, train.num_classes, arch_cfg=cfg, seed=seed,
                                          device=dev, progress=progress, pretrain_on=pretrain_on)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            atomic_torch_save({"state_dict": state_dict, "cfg": cfg, "seed": seed}, path)
            atomic_write_text(path.with_suffix(".json"), json.dumps(
                {"arch_cfg": cfg, "classifier_config": getattr(model, "classifier_config", None), "seed": seed,
                 "n_train": len(train), "num_classes": train.num_classes}, indent=2, default=str))
        return model, False


def identity_accuracy(model: torch.nn.Module, images, labels, *, device="auto", top_k: int = 1) -> float:
    """Top-k accuracy of ``model`` on uint8 N x C x H x W ``images``."""
    from privattrib.training import predict

    logits = np.asarray(predict(model, images, device=device))
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("no test images")
    k = min(top_k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def train_reid_surrogate(
    identity_set: LabeledImages,
    path: str | Path,
    *,
    seed: int,
    surrogate_seed: int,
    arch_cfg: dict | str | None = None,
    train_per_identity: int = 8,
    test_per_identity: int = 2,
    max_identities: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    pretrain_others: bool = False,
) -> Path:
    """The surrogate of ``adv:target=reid`` for the split of ``seed``: an identity classifier
    trained on the CLEAN training images of that split (the people the protector knows, from
    photos other than the ones he will publish), with its own weight seed ``surrogate_seed``, so
    that the grid's own classifiers of the same split (seed ``seed``) are independent models of it.

    With ``pretrain_others`` it is first trained on the clean images of the people outside the
    split (as ``run_reid_cell(pretrain="others")`` trains the attacker): with a few photos per
    person (CelebA's 4) a network trained from scratch recognises almost nobody, and a perturbation
    against it would measure nothing.

    Writes a checkpoint of :func:`privattrib.attribution.models.save_classifier` with
    ``class_names``, ``task="reid"`` and the split beside it.

    Returns:
        ``path``.
    """
    from privattrib.attribution.models import save_classifier

    if int(surrogate_seed) == int(seed):
        raise ValueError("surrogate_seed must differ from seed: the grid's own classifiers use the cell seed")
    train, test = split_identity_set(identity_set, train_per_identity, test_per_identity, seed=seed,
                                     max_identities=max_identities)
    others = other_people(identity_set, train, test) if pretrain_others else None
    model = train_identity_classifier(train.images, train.labels, train.num_classes, arch_cfg=arch_cfg,
                                      seed=int(surrogate_seed), device=device, progress=progress,
                                      pretrain_on=(others.images, others.labels, others.num_classes)
                                      if others is not None else None)
    split = {"seed": int(seed), "train_per_identity": train_per_identity, "test_per_identity": test_per_identity,
             "max_identities": max_identities, "train_keys": stable_hash(list(map(str, train.keys)), 20),
             # the keys themselves: a cell can then refuse a surrogate that saw its test faces
             "train_key_list": [str(k) for k in train.keys],
             "pretrained_on_others": len(others) if others is not None else 0}
    return save_classifier(model, path, extra={"task": "reid", "class_names": list(train.class_names),
                                               "weights_seed": int(surrogate_seed), "split": split,
                                               "arch_cfg": _resolve_arch_cfg(arch_cfg)})


def surrogate_figures(obfuscation, images, labels, device, clean_images=None) -> dict:
    """For a method that attacks a surrogate model (``adv``): the surrogate's own top-1 accuracy
    on the obfuscated ``images`` (the white-box figure), on ``clean_images`` when given (what the
    perturbation took away: a surrogate that recognises few faces has little to lose) and what it
    is; ``{}`` for other methods."""
    if not callable(getattr(obfuscation, "surrogate", None)):
        return {}
    s = obfuscation.surrogate(resolve_device(device))
    out = {"accuracy_surrogate": identity_accuracy(s.model, images, labels, device=device),
           "surrogate": {k: v for k, v in s.info().items() if k != "class_names"}}
    if clean_images is not None:
        out["accuracy_surrogate_clean"] = identity_accuracy(s.model, clean_images, labels, device=device)
    return out


def utility(original, other) -> dict:
    """Means over images of MSE, PSNR (dB, over the changed images) and SSIM of ``other`` against
    ``original`` (uint8 N x C x H x W, NumPy or torch)."""
    from privattrib.metrics import mean_utility

    a = original if isinstance(original, torch.Tensor) else torch.from_numpy(np.asarray(original))
    b = other if isinstance(other, torch.Tensor) else torch.from_numpy(np.asarray(other))
    return mean_utility(a.cpu(), b.cpu())


def run_reid_cell(
    identity_set: LabeledImages,
    obfuscation,
    seed: int,
    arch_cfg: dict | None,
    work_dir: str | Path | None,
    train_per_identity: int = 8,
    test_per_identity: int = 2,
    variant: str = "retrain",
    device: str = "auto",
    progress: bool = False,
    max_identities: int | None = None,
    pretrain: str | None = None,
    *,
    noise_per_epoch: bool = False,
    train_releases: int = 1,
    test_releases: int = 1,
    max_light_angle: float | None = None,
    epoch_curve: bool = False,
) -> dict:
    """One re-identification result row (one method, one seed, one variant).

    Args:
        identity_set: clean uint8 images N x C x H x W, labels = identity index (``identities``
            used when present).
        obfuscation: obfuscation object, spec string, or None (clean images).
        seed: seeds the split, the obfuscation noise and the training.
        arch_cfg: network and loop options (see :data:`DEFAULT_ARCH_CFG`), or just a network name.
        work_dir: where the clean model of ``no-retrain`` is cached (None: no cache).
        train_per_identity, test_per_identity: the per-identity protocol (AT&T: 8 / 2).
        variant: ``"retrain"`` (train and test obfuscated) or ``"no-retrain"`` (train clean).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        progress: show the training loop's progress bar.
        max_identities: keep at most this many people (drawn by seed), e.g. 500 of CelebA's 2,000.
        pretrain: None, or ``"others"``: first train on every image of the people left out of the
            targets (obfuscated like the targets' images for ``retrain``, clean for
            ``no-retrain``), then fine-tune on the targets; needs ``max_identities`` (or people
            with too few images) to leave at least two people out.
        noise_per_epoch: ``retrain`` only: obfuscate the clean training images afresh every epoch
            (noise keyed by (seed, epoch, key)) instead of once (see the module doc).
        train_releases: ``retrain`` only: each training image is the mean of this many
            independent obfuscations (redrawn every epoch with ``noise_per_epoch``).
        test_releases: each test image is the mean of this many independent releases; the person
            pays ``test_releases * epsilon``.
        max_light_angle: Extended Yale B only: keep the images lit from within this many degrees
            of the camera axis (see :func:`privattrib.data.select_even_light`) before the split.
        epoch_curve: ``retrain`` only: also score the test images after every epoch
            (``accuracy_by_epoch``; ``best_epoch_accuracy`` is their maximum, i.e. an epoch chosen
            on the test set: optimistic, as a paper that reports its best epoch would be).

    Returns:
        dict with attack, variant, method, epsilon, method_describe, arch, arch_cfg, seed,
        accuracy, top5_accuracy, chance, n_identities, n_train, n_test, train_per_identity,
        test_per_identity, the attacker's options (noise_per_epoch, train_releases, test_releases,
        epsilon_test_total, max_light_angle), cell_grid (cells per column and row of a
        cell-based method), image_shape, mse/psnr/ssim of the obfuscated test images as the
        attacker holds them (``*_obfuscated``: with ``test_releases`` > 1 the mean of the releases)
        and, with ``test_releases`` > 1, of one release as published (``*_one_release``), wall_s;
        for an ``adv`` method also ``accuracy_surrogate`` (the attacked model's own accuracy on the
        perturbed test images), ``accuracy_surrogate_clean`` (on the clean ones) and ``surrogate``
        (what it is).

    Raises:
        ValueError: for options that do not fit together, and for an ``adv`` surrogate trained on
            test faces of this split (see :func:`check_surrogate_split`).
    """
    train_releases, test_releases = _check_cell_options(variant, pretrain, noise_per_epoch, train_releases,
                                                        test_releases, epoch_curve)
    start = time.perf_counter()
    dev = resolve_device(device)
    ob = _make(obfuscation)
    cfg = _resolve_arch_cfg(arch_cfg)
    if max_light_angle is not None:
        from privattrib.data import select_even_light

        identity_set = select_even_light(identity_set, max_light_angle)
    train, test = split_identity_set(identity_set, train_per_identity, test_per_identity, seed=seed,
                                     max_identities=max_identities)
    check_surrogate_split(ob, test)
    others = other_people(identity_set, train, test) if pretrain == "others" else None
    obf_test, one_release = mean_and_first_release(ob, test.images, test.keys, seed, test_releases, device=dev)
    curve = None
    if variant == "retrain":
        result = _train_retrain_attacker(ob, train, others, obf_test, test, cfg, seed, dev, progress,
                                         noise_per_epoch=noise_per_epoch, train_releases=train_releases,
                                         epoch_curve=epoch_curve)
        model, cached = result.model, False
        if epoch_curve:
            curve = [float(h["val_accuracy"]) for h in result.history]
    else:
        model, cached = clean_identity_classifier(train, arch_cfg=cfg, seed=seed, work_dir=work_dir, device=dev,
                                                  progress=progress, others=others)
    accuracy = identity_accuracy(model, obf_test, test.labels, device=dev)
    # with 5 people or fewer every guess is in the top 5: no information, so no figure
    top5 = identity_accuracy(model, obf_test, test.labels, device=dev, top_k=5) if train.num_classes > 5 else None
    info = method_info(ob)
    height, width = identity_set.images.shape[2:]
    b = (info["method_describe"].get("parameters") or {}).get("b")
    row = {
        "attack": "reid",
        "variant": variant,
        **info,
        "arch": cfg["arch"],
        "arch_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "seed": seed,
        "accuracy": accuracy,
        "top5_accuracy": top5,
        "chance": 1.0 / train.num_classes,
        "n_identities": train.num_classes,
        "n_train": len(train),
        "n_test": len(test),
        "train_per_identity": train_per_identity,
        "test_per_identity": test_per_identity,
        "max_identities": max_identities,
        "pretrain": pretrain,
        "n_pretrain": len(others) if others is not None else 0,
        "n_pretrain_identities": others.num_classes if others is not None else 0,
        "lr_used": learning_rate(cfg["lr"], pretraining=others is not None),
        "noise_per_epoch": bool(noise_per_epoch),
        "train_releases": train_releases,
        "test_releases": test_releases,
        "epsilon_test_total": info["epsilon"] * test_releases if info["epsilon"] is not None else None,
        "max_light_angle": max_light_angle,
        "image_shape": list(identity_set.images.shape[1:]),
        "cell_grid": [-(-height // b), -(-width // b)] if isinstance(b, int) else None,
        "clean_model_cached": cached,
        "device": str(dev),
    }
    if curve is not None:
        row["accuracy_by_epoch"] = curve
        row["best_epoch_accuracy"] = max(curve)
        row["best_epoch"] = int(np.argmax(curve)) + 1
    row.update({f"{k}_obfuscated": v for k, v in utility(test.images, obf_test).items()})
    if test_releases > 1 and not _is_identity(ob):
        # what the publisher's readers see is one release, not the attacker's average of several
        row.update({f"{k}_one_release": v for k, v in utility(test.images, one_release).items()})
    row.update(surrogate_figures(ob, obf_test, test.labels, dev, clean_images=test.images))
    row["wall_s"] = time.perf_counter() - start
    return row


def _check_cell_options(variant, pretrain, noise_per_epoch, train_releases, test_releases,
                        epoch_curve) -> tuple[int, int]:
    """Refuse attacker options that do not fit together; returns the checked release counts."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if pretrain not in PRETRAIN_CHOICES:
        raise ValueError(f"pretrain must be one of {PRETRAIN_CHOICES}, got {pretrain!r}")
    train_releases = _check_releases("train_releases", train_releases)
    test_releases = _check_releases("test_releases", test_releases)
    if variant == "no-retrain" and (noise_per_epoch or train_releases > 1 or epoch_curve):
        raise ValueError("noise_per_epoch, train_releases and epoch_curve apply to the retrain variant only "
                         "(no-retrain trains on clean images)")
    if noise_per_epoch and pretrain is not None:
        raise ValueError("noise_per_epoch with pretrain='others' is not supported: the pretraining images "
                         "would need their own per-epoch noise")
    return train_releases, test_releases


def _train_retrain_attacker(ob, train: LabeledImages, others: LabeledImages | None, obf_test, test: LabeledImages,
                            cfg: dict, seed: int, dev, progress: bool, *, noise_per_epoch: bool, train_releases: int,
                            epoch_curve: bool):
    """The ``retrain`` attacker: an identity classifier trained on training faces he obfuscates
    himself (once, or afresh every epoch), after pretraining on other people when ``others``;
    returns the loop's TrainResult (test accuracy per epoch in its history with ``epoch_curve``)."""
    if noise_per_epoch:  # the loop obfuscates the clean images batch by batch, epoch by epoch
        obf_train = as_uint8_tensor(train.images).to(dev)
        transform = fresh_noise_transform(ob, train.keys, seed, train_releases) if not _is_identity(ob) else None
    else:
        obf_train = obfuscate_releases(ob, train.images, train.keys, seed, train_releases, device=dev)
        transform = None
    pretrain_on = None
    if others is not None:  # the attacker obfuscates his other people's images the same way
        pretrain_on = (obfuscate_releases(ob, others.images, others.keys, seed, train_releases, device=dev),
                       others.labels, others.num_classes)
    return train_identity_classifier(obf_train, train.labels, train.num_classes, arch_cfg=cfg, seed=seed,
                                     device=dev, progress=progress, pretrain_on=pretrain_on,
                                     batch_transform=transform,
                                     val=(obf_test, test.labels) if epoch_curve else None, return_result=True)


def check_surrogate_split(obfuscation, test: LabeledImages) -> None:
    """Refuse a method that attacks a re-identification surrogate (``adv``, ``adv-gen``) whose
    recorded training faces include test faces of this split: the white-box figure and the
    perturbation itself would rest on faces the protector is not supposed to know (e.g. a
    surrogate made for the split of another seed). A surrogate without recorded training keys
    (not made by :func:`train_reid_surrogate`) cannot be checked and is taken as it is.

    Raises:
        ValueError: naming the surrogate, how many test faces it saw and how to make the right one.
    """
    if not callable(getattr(obfuscation, "surrogate", None)):
        return
    s = obfuscation.surrogate("cpu")
    known = (s.split or {}).get("train_key_list")
    if not known:
        return
    seen = set(map(str, known))
    leaked = sum(str(k) in seen for k in test.keys)
    if leaked:
        raise ValueError(
            f"the surrogate {s.path} was trained on {leaked} of the {len(test)} test faces of this split (it was "
            f"made for the split of seed {s.split.get('seed')}); make one for this split with "
            "`privattrib adv reid-surrogate --seed` equal to this attack's --seed and the same per-identity counts")
