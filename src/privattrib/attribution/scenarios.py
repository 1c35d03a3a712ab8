"""Attribution under obfuscation: one grid cell (method, scenario, seed) -> one results row.

Scenarios (DESIGN.md §3; Yu et al. 2019 for the immunization):

- ``clean-train``: the classifier is trained on clean images and tested on obfuscated ones (what
  a deployed attribution model sees when someone publishes an obfuscated fake).
- ``obfuscated-train``: trained and tested on obfuscated images (the classifier "adapts"; the
  attacker/forensic analyst knows the method and its parameters).
- ``fine-tune``: the clean model fine-tuned on obfuscated training images ("immunized").
- ``obfuscated-train+adv``, ``fine-tune+adv``: the same, with adversarial training on top: at
  every batch a seeded share of the (obfuscated) training images is replaced by PGD examples
  against the current weights (options ``classifier.adv_train``, see
  :func:`privattrib.obfuscation.adversarial.resolve_adv_train`): Yu et al.'s immunization against
  perturbations, tested against the ``adv`` laundering attack.

Rows of an ``adv`` method also carry the figures of the attacked surrogate (``*_surrogate``:
white-box) and of the same attack aimed at the scenario's own model (``*_adaptive``: an attacker
who knows the deployed detector); the main columns are then transfer figures (the detector is
not the surrogate).

Protocol details that matter for honest numbers:

- Noise is drawn once per image: the training (and validation) set is obfuscated once, before
  training, with noise that is a function of (obfuscation seed, image key); it is never redrawn
  per epoch (that would be data augmentation and would inflate the attacker's accuracy).
- The obfuscation seed is derived from the cell seed only, so the three scenarios of one
  (method, seed) see exactly the same obfuscated test images.
- A share ``obfuscated_fraction`` of the test images (stratified per class, chosen from the seed)
  is obfuscated; the rest stay clean (1.0 by default; Yu et al. obfuscate half).
- The clean model of a (training data, validation data, classifier options, seed) is trained
  once and cached in ``work_dir/clean-models`` (a file lock serialises concurrent trainers,
  checkpoints are written by atomic rename), so a grid reuses it across methods, scenarios and
  resumed runs.
- Fine-tuning starts from the cached clean weights with a fresh Adam state; a ``dct`` model
  keeps its clean standardisation statistics (only the logistic regression is fine-tuned).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privattrib.attribution.models import load_classifier, make_classifier, save_classifier
from privattrib.common import file_lock, resolve_device, stable_hash
from privattrib.data.dataset import LabeledImages
from privattrib.threads import fit_threads
from privattrib.training import TrainConfig, TrainResult, as_uint8_tensor, clone_model, predict, train_classifier

__all__ = [
    "SCENARIOS",
    "run_attribution_cell",
    "split_classifier_config",
    "clean_model",
    "obfuscate_images",
    "select_obfuscated",
    "derive_seed",
    "adv_train_options",
]

SCENARIOS: tuple[str, ...] = ("clean-train", "obfuscated-train", "fine-tune", "obfuscated-train+adv", "fine-tune+adv")
#: The suffix of scenarios that add adversarial training.
ADV_SUFFIX = "+adv"

#: Classifier-config keys that are training options (aliases map to ``TrainConfig`` fields).
_TRAIN_KEYS = {
    "epochs": "epochs", "batch": "batch_size", "batch_size": "batch_size", "lr": "lr", "betas": "betas",
    "eps": "eps", "weight_decay": "weight_decay", "hflip": "hflip", "amp": "amp",
    "channels_last": "channels_last", "compile": "compile", "compile_mode": "compile_mode", "eval_batch_size": "eval_batch_size",
    "keep_best": "keep_best", "data_on_device": "data_on_device",
}
#: Classifier options only the fine-tune scenario reads.
FINE_TUNE_KEYS = ("fine_tune_epochs", "fine_tune_lr")
#: Classifier option only the ``+adv`` scenarios read (adversarial training).
ADV_TRAIN_KEY = "adv_train"
_CACHE_VERSION = 1
_OBFUSCATE_CHUNK = 1024


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose (``"obfuscation"``, ``"test-selection"``...) of a cell seed."""
    return int(stable_hash({"seed": int(seed), "purpose": purpose}), 16) & ((1 << 63) - 1)


def split_classifier_config(cfg: dict[str, Any]) -> tuple[str, dict, dict, dict]:
    """Split an experiment's ``classifier`` mapping into its parts.

    Args:
        cfg: e.g. ``{"arch": "yu2019", "epochs": 10, "batch": 64, "fmap_max": 256}``; training keys
            are ``TrainConfig`` fields (``batch`` is an alias of ``batch_size``), ``fine_tune_epochs``
            and ``fine_tune_lr`` (default: ``epochs`` and ``lr``) drive the ``fine-tune`` scenario,
            ``adv_train`` (a mapping) the adversarial training of the ``+adv`` scenarios,
            ``options`` (a mapping) and every other key are architecture options of ``arch``.

    Returns:
        ``(arch, model_options, train_kwargs, scenario_options)``: the last holds the fine-tune
        keys given and ``adv_train`` (resolved, defaults filled in) when given.
    """
    if not isinstance(cfg, dict):
        raise ValueError(f"classifier config must be a mapping, got {type(cfg).__name__}")
    cfg = dict(cfg)
    arch = cfg.pop("arch", "yu2019")
    model_options = dict(cfg.pop("options", None) or {})
    train_kwargs: dict[str, Any] = {}
    fine_tune: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in _TRAIN_KEYS:
            train_kwargs[_TRAIN_KEYS[key]] = tuple(value) if key == "betas" else value
        elif key in FINE_TUNE_KEYS:
            fine_tune[key] = value
        elif key == ADV_TRAIN_KEY:
            from privattrib.obfuscation.adversarial import resolve_adv_train

            fine_tune[key] = resolve_adv_train(value)
        elif key in ("seed", "device"):
            raise ValueError(f"classifier.{key} is set per cell (the cell's seed and device), not in the classifier config")
        else:
            model_options[key] = value
    if "fine_tune_epochs" in fine_tune and int(fine_tune["fine_tune_epochs"]) < 1:
        raise ValueError(f"fine_tune_epochs must be >= 1, got {fine_tune['fine_tune_epochs']}")
    if "fine_tune_lr" in fine_tune and not float(fine_tune["fine_tune_lr"]) > 0:
        raise ValueError(f"fine_tune_lr must be > 0, got {fine_tune['fine_tune_lr']}")
    return str(arch), model_options, train_kwargs, fine_tune


def _data_fingerprint(data: LabeledImages) -> dict[str, Any]:
    """Cheap identity of a data set: keys, labels, classes, shape and a hash of a strided sample
    of the pixels (hashing every pixel of a 10 GB cache per cell would cost more than the cell)."""
    n = len(data)
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 256)).astype(np.int64)) if n else np.zeros(0, np.int64)
    sample = np.ascontiguousarray(np.asarray(data.images[rows]))
    return {
        "n": n,
        "shape": list(data.images.shape),
        "classes": list(data.class_names),
        "keys": stable_hash(list(map(str, data.keys)), 32),
        "labels": hashlib.sha256(np.ascontiguousarray(data.labels, dtype=np.int64).tobytes()).hexdigest()[:32],
        "pixels": hashlib.sha256(sample.tobytes()).hexdigest()[:32],
    }


def clean_model(
    train: LabeledImages,
    val: LabeledImages | None,
    classifier_cfg: dict[str, Any],
    seed: int,
    work_dir: str | os.PathLike,
    device: str = "auto",
    progress: Any = True,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The clean model of (data, classifier options, seed): trained once, then loaded from cache.

    Returns:
        ``(model, info)`` with ``info = {"path", "cached", "train_seconds", "history", "train_config"}``.
    """
    arch, model_options, train_kwargs, _ = split_classifier_config(classifier_cfg)
    config = TrainConfig(**train_kwargs, seed=int(seed), device=device)
    probe = make_classifier(arch, train.num_classes, train.images.shape[-1], train.images.shape[1],
                            seed=int(seed), **model_options)
    key_blob = {
        "version": _CACHE_VERSION,
        "train": _data_fingerprint(train),
        "val": _data_fingerprint(val) if val is not None and len(val) else None,
        "classifier": probe.classifier_config,
        # where and on how many processes it trains changes nothing the key stands for
        "training": {k: v for k, v in config.to_dict().items() if k not in ("device", "distributed")},
        "seed": int(seed),
    }
    key = stable_hash(key_blob, 20)
    directory = Path(work_dir) / "clean-models"
    path = directory / f"{arch}-{key}.pt"
    resolved_device = resolve_device(device)
    with file_lock(directory / f"{arch}-{key}.lock"):
        if path.exists():
            model = load_classifier(path, resolved_device)
            # The checkpoint is the unit of atomicity: a kill between its rename and the sidecar's
            # leaves no .json, so read the same metadata from the checkpoint's ``extra`` then.
            sidecar = path.with_suffix(".json")
            if sidecar.is_file():
                meta = json.loads(sidecar.read_text())
            else:
                meta = torch.load(path, map_location="cpu", weights_only=True).get("extra", {})
            return model, {"path": str(path), "cached": True, "train_seconds": meta.get("train_seconds"),
                           "history": meta.get("history"), "train_config": meta.get("train_config")}
        result = train_classifier(probe, train.images, train.labels, config,
                                  val=(val.images, val.labels) if val is not None and len(val) else None,
                                  progress=progress, description=f"clean {arch} seed {seed}")
        extra = {"train_config": result.config, "history": result.history, "train_seconds": result.seconds,
                 "class_names": list(train.class_names), "cache_key": key_blob, "seed": int(seed)}
        save_classifier(result.model, path, extra=extra)
    return result.model, {"path": str(path), "cached": False, "train_seconds": result.seconds,
                          "history": result.history, "train_config": result.config}


def obfuscate_images(
    obfuscation: Any,
    images: np.ndarray | torch.Tensor,
    keys: list[str],
    seed: int,
    device: torch.device,
    chunk: int = _OBFUSCATE_CHUNK,
) -> torch.Tensor:
    """Obfuscate uint8 images N x C x H x W once, in chunks, on ``device``.

    The noise of an image depends only on (seed, key), so chunking changes nothing. On CUDA the
    result stays on the GPU (ready for training); on the CPU the method's NumPy/OpenCV path runs.

    Returns:
        uint8 tensor N x C x H x W on ``device``.
    """
    src = as_uint8_tensor(images)
    if len(keys) != len(src):
        raise ValueError(f"{len(src)} images but {len(keys)} keys")
    out = torch.empty(src.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(src), chunk):
        fit_threads(device)
        part = src[start:start + chunk].to(device)
        result = obfuscation(part, seed=seed, keys=list(keys[start:start + chunk]))
        result = as_uint8_tensor(result, f"output of {getattr(obfuscation, 'spec', obfuscation)!r}")
        if result.shape != part.shape:
            raise ValueError(f"obfuscation changed the shape {tuple(part.shape)} -> {tuple(result.shape)}")
        out[start:start + chunk] = result.to(device)
    return out


def select_obfuscated(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test images to obfuscate: ``round(fraction * n_c)`` per class c,
    drawn with ``seed`` (the same images for every method and scenario of a seed)."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"obfuscated_fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    if fraction >= 1.0:
        mask[:] = True
        return mask
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(float(fraction) * len(idx)))
        mask[rng.permutation(idx)[:k]] = True
    return mask


def _is_identity(obfuscation: Any) -> bool:
    return obfuscation is None or getattr(obfuscation, "name", None) == "none"


def _chance(labels: np.ndarray, num_classes: int) -> tuple[float, str]:
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() == counts.max():
        return 1.0 / num_classes, "uniform (balanced classes: 1/K)"
    return float(counts.max() / counts.sum()), "majority class share (unbalanced classes)"


def _utility(originals: torch.Tensor, obfuscated: torch.Tensor) -> dict[str, float]:
    """Mean MSE, PSNR (over the changed images) and SSIM of obfuscated vs original images."""
    from privattrib.metrics import mean_utility

    return mean_utility(originals, obfuscated)



@dataclass
class TrainedModel:
    """The model a scenario evaluates, with the history and options of the training that made it
    and the seconds spent training in this cell (0 when loaded from the cache)."""

    model: torch.nn.Module
    history: list[dict] | None
    config: dict | None
    seconds: float


def _checked_cell_inputs(train: LabeledImages, val: LabeledImages | None, test: LabeledImages, obfuscation: Any,
                         scenario: str, real_class: str) -> Any:
    """Refuse inconsistent splits, an unknown scenario or real class; a spec string becomes a method."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if isinstance(obfuscation, str):
        from privattrib.obfuscation import make

        obfuscation = make(obfuscation)
    for name, part in (("val", val), ("test", test)):
        if part is not None and (part.class_names != train.class_names or part.images.shape[1:] != train.images.shape[1:]):
            raise ValueError(f"{name} set must have the training set's classes and image shape")
    if len(train) == 0 or len(test) == 0:
        raise ValueError("train and test sets must not be empty")
    if real_class not in train.class_names:
        raise ValueError(f"real class {real_class!r} is not among the classes {train.class_names}")
    return obfuscation


def adv_train_options(scenario: str, classifier_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved adversarial-training options of a ``+adv`` scenario (defaults when the
    classifier config gives none), None for the other scenarios."""
    if not scenario.endswith(ADV_SUFFIX):
        return None
    from privattrib.obfuscation.adversarial import resolve_adv_train

    return split_classifier_config(classifier_cfg)[3].get(ADV_TRAIN_KEY) or resolve_adv_train(None)


def _scenario_model(train: LabeledImages, val: LabeledImages | None, obfuscation: Any, scenario: str,
                    classifier_cfg: dict[str, Any], clean: torch.nn.Module, clean_info: dict[str, Any], seed: int,
                    ob_seed: int, work_dir: str | os.PathLike, device: str, progress: Any,
                    save_model: bool, real_class: str = "real") -> TrainedModel:
    """Train the ``obfuscated-train`` model from scratch, or fine-tune the clean one (``fine-tune``),
    on the training images obfuscated once; ``+adv`` scenarios add adversarial training."""
    arch, model_options, train_kwargs, fine_tune = split_classifier_config(classifier_cfg)
    adv_options = adv_train_options(scenario, classifier_cfg)
    transform = None
    if adv_options is not None:
        from privattrib.obfuscation.adversarial import AdversarialTraining

        real_index = train.class_names.index(real_class) if real_class in train.class_names else None
        transform = AdversarialTraining(adv_options, seed=derive_seed(seed, "adv-train"), real_index=real_index)
    dev = resolve_device(device)
    train_obf = obfuscate_images(obfuscation, train.images, train.keys, ob_seed, dev)
    val_pair = None
    if val is not None and len(val):
        val_pair = (obfuscate_images(obfuscation, val.images, val.keys, ob_seed, dev), val.labels)
    if scenario.removesuffix(ADV_SUFFIX) == "obfuscated-train":
        model = make_classifier(arch, train.num_classes, train.images.shape[-1], train.images.shape[1],
                                seed=int(seed), **model_options)
        config = TrainConfig(**train_kwargs, seed=int(seed), device=device)
    else:  # fine-tune: from the clean weights, fresh optimiser state
        model = clone_model(clean)
        ft_kwargs = dict(train_kwargs)
        ft_kwargs["epochs"] = int(fine_tune.get("fine_tune_epochs", train_kwargs.get("epochs", TrainConfig.epochs)))
        ft_kwargs["lr"] = float(fine_tune.get("fine_tune_lr", train_kwargs.get("lr", TrainConfig.lr)))
        config = TrainConfig(**ft_kwargs, seed=derive_seed(seed, "fine-tune"), device=device)
    result: TrainResult = train_classifier(model, train_obf, train.labels, config, val=val_pair, progress=progress,
                                           description=f"{scenario} {getattr(obfuscation, 'spec', '')}",
                                           batch_transform=transform)
    del train_obf
    if save_model:
        # the clean model's file name, not its absolute path: the same name after OUTDIR moved
        clean_name = Path(clean_info["path"]).name if clean_info.get("path") else None
        name = f"{scenario}-{arch}-{stable_hash([getattr(obfuscation, 'spec', None), seed, clean_name], 12)}"
        save_classifier(result.model, Path(work_dir) / "models" / f"{name}.pt",
                        extra={"scenario": scenario, "spec": obfuscation.spec, "seed": int(seed), "adv_train": adv_options,
                               "train_config": result.config, "history": result.history,
                               "clean_model": clean_info["path"], "class_names": list(train.class_names)})
    return TrainedModel(result.model, result.history, result.config, result.seconds)


def _mixed_test_images(test: LabeledImages, obfuscation: Any, mask: np.ndarray, ob_seed: int,
                       dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(originals, mixed): the test images on ``dev``, and a copy whose ``mask`` rows are obfuscated once."""
    originals = as_uint8_tensor(test.images).to(dev)
    mixed = originals.clone()
    index = np.flatnonzero(mask)
    if not _is_identity(obfuscation) and len(index):
        index_t = torch.from_numpy(index).to(dev)
        mixed[index_t] = obfuscate_images(obfuscation, originals.index_select(0, index_t),
                                          [test.keys[i] for i in index], ob_seed, dev)
    return originals, mixed


def _prediction_figures(labels: np.ndarray, pred: np.ndarray, pred_orig: np.ndarray, mask: np.ndarray,
                        class_names: list[str], real_class: str) -> dict[str, Any]:
    """Accuracy, per-class accuracy, confusion matrix, chance and laundering rate of ``pred`` (on
    the mixed test set) and ``pred_orig`` (the same model on the clean originals)."""
    from privattrib import metrics

    real_index = class_names.index(real_class)
    chance, chance_rule = _chance(labels, len(class_names))
    return {
        **metrics.class_figures(labels, pred, class_names),
        "class_names": list(class_names),
        "laundering_rate": metrics.laundering_rate(labels[mask], pred[mask], real_index),
        "chance": chance,
        "chance_rule": chance_rule,
        "accuracy_obfuscated": metrics.accuracy(labels[mask], pred[mask]),
        "accuracy_unobfuscated": metrics.accuracy(labels[~mask], pred[~mask]),
        "accuracy_on_originals": metrics.accuracy(labels, pred_orig),
        "laundering_rate_on_originals": metrics.laundering_rate(labels, pred_orig, real_index),
    }


def _adversarial_figures(obfuscation: Any, model: torch.nn.Module, originals: torch.Tensor, mixed: torch.Tensor,
                         mask: np.ndarray, labels: np.ndarray, keys: list, ob_seed: int, class_names: list[str],
                         real_class: str, eval_batch: int, amp: Any, dev: torch.device) -> dict[str, Any]:
    """For a method that attacks a surrogate (``adv``): the surrogate's own figures on the mixed
    test set (``*_surrogate``, white-box) and those of this cell's model when the same attack is
    aimed at it (``*_adaptive``); ``{}`` for other methods."""
    from privattrib import metrics

    if not callable(getattr(obfuscation, "surrogate", None)) or not callable(getattr(obfuscation, "against", None)):
        return {}
    surrogate = obfuscation.surrogate(dev)
    out: dict[str, Any] = {"surrogate": surrogate.info()}
    names = list(surrogate.class_names or [])
    pred_s = predict(surrogate.model, mixed, batch_size=eval_batch, device=dev, amp=amp).argmax(1)
    if real_class in names:
        fake = mask & (labels != class_names.index(real_class))
        out["laundering_rate_surrogate"] = float(np.mean(pred_s[fake] == names.index(real_class))) if fake.any() else None
    if names == list(class_names):
        out["accuracy_surrogate"] = metrics.accuracy(labels, pred_s)
        out["accuracy_obfuscated_surrogate"] = metrics.accuracy(labels[mask], pred_s[mask])
    index = np.flatnonzero(mask)
    adaptive = mixed.clone()
    if len(index):
        index_t = torch.from_numpy(index).to(dev)
        adaptive[index_t] = obfuscate_images(obfuscation.against(model), originals.index_select(0, index_t),
                                             [keys[i] for i in index], ob_seed, dev)
    pred_a = predict(model, adaptive, batch_size=eval_batch, device=dev, amp=amp).argmax(1)
    out["accuracy_adaptive"] = metrics.accuracy(labels, pred_a)
    out["accuracy_obfuscated_adaptive"] = metrics.accuracy(labels[mask], pred_a[mask])
    out["laundering_rate_adaptive"] = metrics.laundering_rate(labels[mask], pred_a[mask], class_names.index(real_class))
    return out


def _training_figures(history: list[dict] | None) -> dict[str, Any]:
    last = (history or [{}])[-1]
    return {"train_accuracy": last.get("accuracy"), "train_loss": last.get("loss"),
            "val_accuracy": last.get("val_accuracy")}


def run_attribution_cell(
    train: LabeledImages,
    val: LabeledImages | None,
    test: LabeledImages,
    obfuscation: Any,
    scenario: str,
    classifier_cfg: dict[str, Any],
    seed: int,
    work_dir: str | os.PathLike,
    obfuscated_fraction: float = 1.0,
    real_class: str = "real",
    device: str = "auto",
    progress: Any = True,
    save_model: bool = False,
) -> dict[str, Any]:
    """Train (or reuse) a classifier for ``scenario`` and evaluate it on obfuscated test images.

    Args:
        train, val, test: clean :class:`LabeledImages` (uint8 N x C x S x S) with the same classes.
            ``val`` (may be None) gives per-epoch validation figures (obfuscated like the training
            set in the ``obfuscated-train`` and ``fine-tune`` scenarios).
        obfuscation: an object of :func:`privattrib.obfuscation.make` (or a spec string, or
            None / ``"none"`` for the clean baseline, where every scenario is the clean model).
        scenario: one of :data:`SCENARIOS`.
        classifier_cfg: see :func:`split_classifier_config`.
        seed: the cell seed (weights, shuffling, obfuscation noise, test selection).
        work_dir: where clean models are cached (and scenario models saved with ``save_model``).
        obfuscated_fraction: share of test images obfuscated, in (0, 1].
        real_class: the class name of camera images (for the laundering rate).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        progress: as in :func:`privattrib.training.train_classifier`.
        save_model: also save the ``obfuscated-train`` / ``fine-tune`` model (options beside it).

    Returns:
        The row: ``scenario, method, spec, epsilon, seed, accuracy, per_class_accuracy`` (dict by
        class name), ``confusion_matrix`` (list of lists, rows = true class, order
        ``class_names``), ``laundering_rate`` (share of obfuscated GAN test images predicted
        ``real_class``), ``chance`` and ``chance_rule``, ``n_train, n_val, n_test,
        n_test_obfuscated``, ``accuracy_obfuscated`` / ``accuracy_unobfuscated`` (on the two parts
        of the test set), ``accuracy_on_originals`` and ``laundering_rate_on_originals`` (the same
        model on the clean versions of all test images), ``mse, psnr, ssim`` (means over the
        obfuscated test images vs their originals), ``train_accuracy, train_loss, val_accuracy``
        (last epoch of the training done for this scenario), ``clean_model_cached``,
        ``clean_model_path``, ``classifier``, ``classifier_options``, ``train_config``,
        ``device``, ``obfuscation_seed``, ``adv_train`` (the adversarial-training options of a
        ``+adv`` scenario, else None), ``train_seconds``, ``wall_seconds``; for an ``adv`` method
        also ``surrogate``, ``accuracy_surrogate``, ``accuracy_obfuscated_surrogate``,
        ``laundering_rate_surrogate`` (the attacked model on the same images) and
        ``accuracy_adaptive``, ``accuracy_obfuscated_adaptive``, ``laundering_rate_adaptive`` (the
        same attack aimed at this cell's model).
    """
    start = time.perf_counter()
    obfuscation = _checked_cell_inputs(train, val, test, obfuscation, scenario, real_class)
    arch, _, train_kwargs, _ = split_classifier_config(classifier_cfg)
    dev = resolve_device(device)
    identity = _is_identity(obfuscation)
    ob_seed = derive_seed(seed, "obfuscation")

    # 1. The clean model (cached across methods, scenarios and resumed runs).
    clean, clean_info = clean_model(train, val, classifier_cfg, seed, work_dir, device=device, progress=progress)

    # 2. The model of this scenario.
    trained = TrainedModel(clean, clean_info["history"], clean_info["train_config"],
                           0.0 if clean_info["cached"] else float(clean_info["train_seconds"] or 0.0))
    if scenario != "clean-train" and not identity:
        trained = _scenario_model(train, val, obfuscation, scenario, classifier_cfg, clean, clean_info, seed,
                                  ob_seed, work_dir, device, progress, save_model, real_class)

    # 3. The test set: a seeded, stratified share of the images obfuscated once.
    labels = np.asarray(test.labels, dtype=np.int64)
    mask = select_obfuscated(labels, obfuscated_fraction, derive_seed(seed, "test-selection"))
    originals, mixed = _mixed_test_images(test, obfuscation, mask, ob_seed, dev)

    # 4. Predictions and the row.
    eval_batch = int(train_kwargs.get("eval_batch_size", TrainConfig.eval_batch_size))
    amp = train_kwargs.get("amp", "auto")
    pred = predict(trained.model, mixed, batch_size=eval_batch, device=dev, amp=amp).argmax(1)
    pred_orig = predict(trained.model, originals, batch_size=eval_batch, device=dev, amp=amp).argmax(1)
    changed = torch.from_numpy(np.flatnonzero(mask)).to(dev)
    row: dict[str, Any] = {
        "scenario": scenario,
        "method": getattr(obfuscation, "name", "none") if obfuscation is not None else "none",
        "spec": getattr(obfuscation, "spec", "none") if obfuscation is not None else "none",
        "epsilon": getattr(obfuscation, "epsilon", None) if obfuscation is not None else None,
        "seed": int(seed),
        **_prediction_figures(labels, pred, pred_orig, mask, train.class_names, real_class),
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "n_test": len(test),
        "n_test_obfuscated": int(mask.sum()),
        "obfuscated_fraction": float(obfuscated_fraction),
        **_utility(originals[changed], mixed[changed]),
        **_training_figures(trained.history),
        "clean_model_cached": bool(clean_info["cached"]),
        "clean_model_path": clean_info["path"],
        "classifier": arch,
        "classifier_options": dict(getattr(trained.model, "classifier_config", {})),
        "train_config": trained.config,
        "device": str(dev),
        "obfuscation_seed": ob_seed,
        "adv_train": adv_train_options(scenario, classifier_cfg) if not identity else None,
        **_adversarial_figures(obfuscation, trained.model, originals, mixed, mask, labels, list(test.keys), ob_seed,
                               train.class_names, real_class, eval_batch, amp, dev),
        "train_seconds": trained.seconds,
        "wall_seconds": time.perf_counter() - start,
    }
    if identity:
        row["note"] = "no obfuscation: every scenario is the clean model on clean images"
    return row
