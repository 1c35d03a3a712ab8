"""Train one attribution classifier for use on new images: ``privattrib train-attributor``.

The experiment machinery does the data work, so a model trained here sees its images exactly as a
grid cell would: :func:`privattrib.experiments.sources.assemble_data` loads the real folder and
any GAN folders through the data layer's cache, samples GAN-zoo runs, trains zoo GANs on the real
*training* pool only (``zoo:ARCH``), and splits every class with a seed (the real class
identity-disjointly where identities are known, e.g. CelebA). The model is trained by the one
training loop (:func:`privattrib.training.train_classifier`); then a temperature is fitted on the
validation split (:mod:`privattrib.attribution.calibration`) and everything is measured on the
test split, which neither the training nor the temperature saw.

The checkpoint (``save_classifier`` format, readable by :func:`load_classifier` too) carries an
``attributor`` block with the class names, the real class, image size, channels, preprocessing,
temperature, calibration and test figures, the data it saw and a scope sentence, so that
:func:`privattrib.attribution.inference.load_attributor` needs nothing else.

Example::

    result = train_attributor("../shared/data/celeba", {"dcgan": "runs/gan/dcgan64",
                              "wgan-gp": "zoo:wgan-gp:cpu-64"}, "celeba-vs-zoo.pt", size=64)
    result.accuracy, result.calibration["ece_before"], result.calibration["ece_after"]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from privattrib.attribution.inference import ATTRIBUTOR_FORMAT, resolved_source, training_crop
from privattrib.common import json_ready

__all__ = ["AttributorTraining", "train_attributor", "fake_source", "demo_attributor_path", "demo_recipe",
           "DEFAULT_CLASSIFIER"]

#: The classifier when none is given: Yu et al.'s network with their training options.
DEFAULT_CLASSIFIER = {"arch": "yu2019", "epochs": 10, "batch": 32}
_RUN_FILES = ("generator.pt", "checkpoint.pt")
_DEMO_VERSION = 1


@dataclass
class AttributorTraining:
    """What :func:`train_attributor` did and measured (all figures on the held-out test split).

    Attributes:
        path: the checkpoint written.
        class_names: the classes (``real`` first, then the fake sources sorted by name).
        counts: images per split and class, ``{"train": {class: n}, "val": ..., "test": ...}``.
        accuracy, per_class_accuracy, confusion_matrix (rows = true class), chance,
            laundering_rate (share of fake test images attributed to ``real``).
        temperature: T fitted on the validation split (1.0 when there is none, or when it is
            classified without an error: see ``calibration["not_fitted"]``).
        calibration: ``{"method", "bins", "ece_before", "ece_after", "nll_before", "nll_after",
            "fitted_on", "not_fitted", "evaluated_on", "reliability_before", "reliability_after"}``.
        plots: ``{"confusion": PNG path, "calibration": PNG path}``.
        seconds: wall time; train_seconds: of the training loop alone.
        work_dir: where the assembled data (and zoo GAN runs) live, or None when it was temporary.
        scope: the scope sentence stored in the checkpoint.
    """

    path: Path
    class_names: list[str]
    counts: dict
    accuracy: float
    per_class_accuracy: dict[str, float]
    confusion_matrix: list[list[int]]
    chance: float
    laundering_rate: float
    temperature: float
    calibration: dict
    plots: dict[str, Path]
    seconds: float
    train_seconds: float
    work_dir: Path | None
    scope: str
    history: list[dict] = field(default_factory=list)


def fake_source(value: str | os.PathLike | Mapping) -> Any:
    """A fake source as given on the command line -> an experiment-spec source entry.

    ``zoo:ARCH`` or ``zoo:ARCH:PRESET`` (default preset ``tiny``) trains a GAN-zoo architecture on
    the real training images; a folder holding a GAN run (``generator.pt`` or ``checkpoint.pt``)
    is sampled; any other folder is read as images. A mapping is taken as a spec entry as is.
    """
    if isinstance(value, Mapping):
        return dict(value)
    text = os.fspath(value)
    if text.startswith("zoo:"):
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise ValueError(f"{text!r}: write zoo:ARCH or zoo:ARCH:PRESET, e.g. zoo:dcgan:cpu-64")
        return {"gan": {"arch": parts[1], "preset": parts[2] if len(parts) == 3 else "tiny", "seed": 0}}
    path = Path(text)
    if not path.exists():
        raise ValueError(f"{text}: no such folder (give a folder of images, a GAN run folder, or zoo:ARCH)")
    if path.is_dir() and any((path / f).is_file() for f in _RUN_FILES):
        return {"gan_run": text}
    if not path.is_dir():
        raise ValueError(f"{text}: a fake source is a folder of images or a GAN run folder, not a file")
    return {"folder": text}


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    if not 0 <= val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val and test fractions must be in [0, 1) and (0, 1) with a sum below 1, "
                         f"got {val_fraction} and {test_fraction}")
    test = max(1, round(n * test_fraction))
    val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    train = n - test - val
    if train < 1:
        raise ValueError(f"{n} images per class leave no training images after {val} validation and "
                         f"{test} test images")
    return {"train": train, "val": val, "test": test}


def _count_sources(spec, cache_dir, progress: bool, say: Callable[[str], None]) -> tuple[dict, dict]:
    """Load every file source once (the data layer caches it for the assembly that follows) and
    return ``({name: LabeledImages}, {name: cache hash})``."""
    from privattrib.experiments.sources import _describe, _load_plain_source

    loaded, hashes = {}, {}
    for name, src in spec.data["sources"].items():
        if src["kind"] in ("gan", "gan_run"):
            continue
        say(f"reading {name} ({_describe(src)})")
        data = _load_plain_source(src, spec.data["size"], spec.data["channels"], cache_dir, progress)
        skipped = [s for s in data.meta.get("skipped", []) if isinstance(s, dict)]
        if skipped:
            say(f"  {name}: {len(skipped)} file(s) skipped (see `privattrib data check {src.get('path', '')}`)")
        if len(data) == 0:
            raise ValueError(f"{name}: no usable image in {_describe(src)}")
        loaded[name] = data
        hashes[name] = (data.meta.get("cache") or {}).get("hash")
    return loaded, hashes


def _per_class(loaded: dict, per_class: int | Mapping | None, val_fraction: float, test_fraction: float,
               seed: int) -> dict[str, int]:
    """Images per class and split, the same for every class (a balanced problem: chance = 1/K)."""
    from privattrib.experiments.sources import _split_real, derived_seed
    from privattrib.experiments.spec import REAL_CLASS

    if isinstance(per_class, Mapping):
        counts = {k: int(per_class.get(k, 0)) for k in ("train", "val", "test")}
        if counts["train"] < 1 or counts["test"] < 1 or counts["val"] < 0:
            raise ValueError(f"per_class needs train >= 1, test >= 1 and val >= 0, got {dict(per_class)}")
        return counts
    smallest = min(loaded, key=lambda name: len(loaded[name]))
    n = len(loaded[smallest])
    if per_class is not None:
        if int(per_class) < 3:
            raise ValueError(f"per_class must be >= 3 (train, validation and test images), got {per_class}")
        if int(per_class) > n:
            raise ValueError(f"per_class {per_class} is more than the {n} usable images of {smallest}")
        n = int(per_class)
    counts = _split_counts(n, val_fraction, test_fraction)
    real = loaded[REAL_CLASS]
    if real.identities is not None and np.all(np.asarray(real.identities) >= 0):
        # Whole identities go to test and val; the identities left form the training pool, which
        # may hold fewer images than asked. The draw is the one assemble_data makes with this seed.
        parts = _split_real(real, {**counts, "train": 0}, derived_seed(seed, "split", REAL_CLASS))
        counts["train"] = min(counts["train"], len(parts["pool"]))
        if counts["train"] < 1:
            raise ValueError("the real source has no training identities left after the test and validation ones")
    return counts


def _scope(spec, counts: dict, demo: bool) -> str:
    from privattrib.experiments.sources import _describe

    sources = {name: resolved_source(src) for name, src in spec.data["sources"].items()}
    described = "; ".join(f"{name} = {_describe(sources[name])}" for name in spec.class_names)
    size = spec.data["size"]
    zoo = any(src["kind"] == "gan" for src in sources.values())
    text = (f"Knows {len(spec.class_names)} sources: {described}. Trained on {counts['train']:,} images per class "
            f"at {size}x{size} px{' (zoo GANs trained on the real training images only)' if zoo else ''}. "
            "An image from any other source (another GAN, another camera or kind of photo) still gets one "
            "of these classes.")
    if demo:
        text = ("Demo model: it knows only the demo's built-in sources, procedurally drawn synthetic faces and "
                "three tiny GANs trained on them, and says nothing about real photos or other generators. " + text)
    return text


def _preprocess_block(spec) -> dict:
    real = spec.data["sources"]["real"]
    return {"size": [spec.data["size"]] * 2, "channels": spec.data["channels"], "crop": training_crop(real),
            "jpeg_draft": True, "resize": "Pillow bicubic, antialiased (privattrib.data.preprocess.prepare)",
            "real_source_kind": resolved_source(real)["kind"]}


@contextlib.contextmanager
def _work_directory(work_dir: str | os.PathLike | None, spec, hashes: dict, cache_dir,
                    say: Callable[[str], None]):
    """The experiment-style folder the data is assembled in: ``work_dir`` when given; under the cache
    when a zoo GAN must be trained (so a rerun reuses it); else a temporary folder, removed after."""
    from privattrib.common import stable_hash
    from privattrib.data.cache import default_cache_dir

    if work_dir is not None:
        yield Path(work_dir), True
        return
    if any(src["kind"] == "gan" for src in spec.data["sources"].values()):
        key = stable_hash({"data": spec.data_key(legacy=True), "files": hashes}, 16)
        folder = Path(cache_dir or default_cache_dir()) / "attributors" / key
        say(f"zoo GANs and the assembled data are kept in {folder} (a rerun reuses them)")
        yield folder, True
        return
    with tempfile.TemporaryDirectory(prefix="privattrib-attributor-") as tmp:
        yield Path(tmp), False


def train_attributor(
    real: str | os.PathLike | Mapping,
    fakes: Mapping[str, str | os.PathLike | Mapping],
    out: str | os.PathLike,
    *,
    size: int = 64,
    channels: int = 3,
    per_class: int | Mapping[str, int] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    classifier: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    work_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    console: Any = None,
    demo: bool = False,
) -> AttributorTraining:
    """Train, calibrate and evaluate one attribution classifier; write it with its figures.

    Args:
        real: the camera images: a CelebA root, a folder of images, or a spec source mapping
            (e.g. ``{"synthetic": {...}}``); its class is ``real``.
        fakes: class name -> a folder of GAN images, a GAN-zoo run folder, ``zoo:ARCH[:PRESET]``
            (trained here on the real training images), or a spec source mapping.
        out: the checkpoint to write (``.pt``); ``<stem>.json`` (everything readable),
            ``<stem>.confusion.png`` and ``<stem>.calibration.png`` go beside it.
        size: side of the model's square input in pixels (>= 8; zoo GANs: 32, 64 or 128).
        channels: 3 (RGB) or 1 (grey).
        per_class: images per class, split by ``val_fraction`` and ``test_fraction`` (default: all
            images of the smallest file source); or ``{"train", "val", "test"}`` counts. Every class
            gets the same counts. With identities (CelebA), whole identities go to test and
            validation, so the training split may get a few images fewer.
        val_fraction: share for the validation split (temperature fitting, per-epoch figures); 0
            leaves the model uncalibrated (T = 1).
        test_fraction: share for the held-out test split (every reported figure).
        classifier: ``{"arch": ..., "epochs", "batch", "lr", ...architecture options}`` as in an
            experiment file (default :data:`DEFAULT_CLASSIFIER`).
        seed: seeds the split, GAN sampling, weights and shuffling.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        work_dir: keep the assembled data and zoo GAN runs here (see :func:`_work_directory`).
        cache_dir: the data layer's cache (default ``privattrib.data.cache.default_cache_dir()``).
        progress: progress bars (stderr).
        console: a ``rich.console.Console`` for stage messages (default: none printed).
        demo: mark the model as the demo model (its scope says so).

    Returns:
        :class:`AttributorTraining`.

    Raises:
        ValueError (``SpecError`` included): a source or option is unusable; the message names it.
    """
    from privattrib.attribution.models import make_classifier, save_classifier
    from privattrib.attribution.scenarios import split_classifier_config
    from privattrib.training import TrainConfig, train_classifier

    start = time.perf_counter()
    say = console.log if console is not None else (lambda *a, **k: None)
    out = Path(out)
    spec, data, work_dir_kept = _assemble(real, fakes, size=size, channels=channels, per_class=per_class,
                                          val_fraction=val_fraction, test_fraction=test_fraction,
                                          classifier=classifier, seed=seed, device=device, work_dir=work_dir,
                                          cache_dir=cache_dir, progress=progress, console=console)
    train, val = data.train, data.val
    class_names = data.class_names
    counts = spec.data["per_class"]

    arch, model_options, train_kwargs, _ = split_classifier_config(dict(spec.classifier))
    config = TrainConfig(**train_kwargs, seed=int(seed), device=device)
    model = make_classifier(arch, len(class_names), int(size), int(channels), seed=int(seed), **model_options)
    say(f"training {arch} on {len(train):,} images ({counts['train']:,} per class), validating on {len(val):,}")
    result = train_classifier(model, train.images, train.labels, config,
                              val=(val.images, val.labels) if len(val) else None, progress=progress,
                              description=f"attributor {arch}")
    temperature, calibration, test_metrics = _calibrate_and_test(result.model, data, config,
                                                                 train_kwargs.get("amp", "auto"))
    scope = _scope(spec, counts, demo)
    block = _attributor_block(spec, data, temperature, calibration, test_metrics, scope, demo)
    extra = {"class_names": class_names, "attributor": block, "train_config": result.config,
             "history": result.history, "train_seconds": result.seconds, "seed": int(seed)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_classifier(result.model, out, extra=extra)
    plots = _write_plots(out, class_names, np.asarray(test_metrics["confusion_matrix"]), calibration, temperature,
                         test_metrics["accuracy"])
    return AttributorTraining(
        path=out, class_names=class_names, counts=data.info.get("counts", {}),
        accuracy=test_metrics["accuracy"], per_class_accuracy=test_metrics["per_class_accuracy"],
        confusion_matrix=test_metrics["confusion_matrix"], chance=test_metrics["chance"],
        laundering_rate=test_metrics["laundering_rate"], temperature=float(temperature), calibration=calibration,
        plots=plots, seconds=time.perf_counter() - start, train_seconds=result.seconds, work_dir=work_dir_kept,
        scope=scope, history=result.history,
    )


def _assemble(real, fakes, *, size, channels, per_class, val_fraction, test_fraction, classifier, seed, device,
              work_dir, cache_dir, progress, console):
    """The experiment spec of the sources, and its train/val/test sets assembled by the experiment
    machinery: ``(spec, ExperimentData, the work folder when it is kept)``."""
    from privattrib.experiments.sources import assemble_data
    from privattrib.experiments.spec import REAL_CLASS, validate_spec

    say = console.log if console is not None else (lambda *a, **k: None)
    if REAL_CLASS in fakes:
        raise ValueError(f"a fake source cannot be called {REAL_CLASS!r} (that is the camera class)")
    if not fakes:
        raise ValueError("give at least one fake source")
    real_src = real if isinstance(real, Mapping) else os.fspath(real)
    sources = {REAL_CLASS: real_src, **{name: fake_source(src) for name, src in fakes.items()}}
    raw = {"name": "attributor", "seed": int(seed), "device": device,
           "data": {"size": int(size), "channels": int(channels), "sources": sources,
                    "per_class": {"train": 1, "test": 1}},  # replaced once the sources are counted
           "classifier": dict(classifier or DEFAULT_CLASSIFIER), "obfuscations": ["none"],
           "scenarios": ["clean-train"]}
    if cache_dir is not None:
        raw["data"]["cache_dir"] = os.fspath(cache_dir)
    spec = validate_spec(raw)
    loaded, hashes = _count_sources(spec, spec.data.get("cache_dir"), progress, say)
    spec.data["per_class"] = _per_class(loaded, per_class, val_fraction, test_fraction, int(seed))
    del loaded
    if spec.data["per_class"]["val"] == 0:
        say("no validation split: the model stays uncalibrated (T = 1)")
    with _work_directory(work_dir, spec, hashes, spec.data.get("cache_dir"), say) as (folder, kept):
        data = assemble_data(spec, folder, device=device, console=console, progress=progress)
    return spec, data, folder if kept else None


def _calibrate_and_test(model, data, config, amp) -> tuple[float, dict, dict]:
    """Fit the temperature on the validation split, then measure on the test split:
    ``(temperature, calibration figures, test figures)``."""
    from privattrib import metrics
    from privattrib.attribution import calibration as cal
    from privattrib.experiments.spec import REAL_CLASS
    from privattrib.training import predict

    val, test, class_names = data.val, data.test, data.class_names
    test_logits = predict(model, test.images, batch_size=config.eval_batch_size, device=config.device, amp=amp)
    y_test = np.asarray(test.labels, dtype=np.int64)
    temperature, fitted_on, not_fitted = 1.0, None, None
    if len(val):
        val_logits = predict(model, val.images, batch_size=config.eval_batch_size, device=config.device, amp=amp)
        y_val = np.asarray(val.labels, dtype=np.int64)
        if (val_logits.argmax(1) == y_val).all():
            # the NLL then falls without end as T -> 0: the fit would end at its bound with every
            # probability ~1, a claim of certainty the validation split cannot support
            not_fitted = (f"every one of the {len(val):,} validation images was classified correctly, and the "
                          "validation NLL then has no minimum in T")
        else:
            temperature = cal.fit_temperature(val_logits, y_val)
            fitted_on = f"validation split ({len(val):,} images)"
    before, after = cal.softmax(test_logits), cal.softmax(test_logits, temperature)
    calibration = {
        "method": "temperature scaling (Guo et al. 2017): T minimises the validation NLL, bounded 1-D search on log T",
        "bins": cal.ECE_BINS,
        "fitted_on": fitted_on,
        "not_fitted": not_fitted,
        "evaluated_on": f"test split ({len(test):,} images)",
        "ece_before": cal.expected_calibration_error(before, y_test),
        "ece_after": cal.expected_calibration_error(after, y_test),
        "nll_before": cal.negative_log_likelihood(test_logits, y_test),
        "nll_after": cal.negative_log_likelihood(test_logits, y_test, temperature),
        "reliability_before": json_ready(cal.reliability_bins(before, y_test)),
        "reliability_after": json_ready(cal.reliability_bins(after, y_test)),
    }
    pred = test_logits.argmax(1)
    test_metrics = {
        **metrics.class_figures(y_test, pred, class_names),
        "chance": 1.0 / len(class_names),
        "laundering_rate": metrics.laundering_rate(y_test, pred, class_names.index(REAL_CLASS)),
        "n_test": int(len(test)),
        "note": "accuracy on the held-out test split (identity-disjoint from training for CelebA-like sources)",
    }
    return float(temperature), calibration, test_metrics


def _attributor_block(spec, data, temperature: float, calibration: dict, test_metrics: dict, scope: str,
                      demo: bool) -> dict:
    """The checkpoint's ``attributor`` block: everything ``load_attributor`` needs."""
    import privattrib
    from privattrib.experiments.spec import REAL_CLASS

    return {
        "format": ATTRIBUTOR_FORMAT,
        "class_names": data.class_names,
        "real_class": REAL_CLASS,
        "image_size": int(spec.data["size"]),
        "in_channels": int(spec.data["channels"]),
        "preprocess": _preprocess_block(spec),
        "temperature": float(temperature),
        "calibrated": calibration["fitted_on"] is not None,
        "calibration": {k: v for k, v in calibration.items() if not k.startswith("reliability")},
        "metrics": test_metrics,
        "data": {
            "sources": data.info.get("sources"),
            "counts": data.info.get("counts"),
            "split_seed": int(spec.seed),
            "test_keys": list(data.test.keys),
            "val_keys": list(data.val.keys),
        },
        "scope": scope,
        "demo": bool(demo),
        "privattrib": privattrib.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _write_plots(out: Path, class_names: list[str], cm: np.ndarray, calibration: dict, temperature: float,
                 accuracy: float) -> dict[str, Path]:
    from privattrib.common import atomic_write_bytes
    from privattrib.report.plots import confusion_figure, reliability_figure

    paths = {"confusion": out.with_name(out.stem + ".confusion.png"),
             "calibration": out.with_name(out.stem + ".calibration.png")}
    atomic_write_bytes(paths["confusion"], confusion_figure(
        cm, class_names, f"{out.name}: held-out test split, accuracy {accuracy:.3f} (chance {1 / len(class_names):.3f})"))

    def bins(key: str) -> dict:
        return {k: np.array([np.nan if v is None else v for v in vals], dtype=float)
                for k, vals in calibration[key].items()}

    curves = {f"before (T = 1), ECE {calibration['ece_before']:.3f}": bins("reliability_before")}
    if calibration["fitted_on"] is not None:
        curves[f"after (T = {temperature:.2f}), ECE {calibration['ece_after']:.3f}"] = bins("reliability_after")
    atomic_write_bytes(paths["calibration"], reliability_figure(
        curves, f"{out.name}: calibration on the test split ({calibration['bins']} bins)"))
    return paths


# --------------------------------------------------------------------------------------------
# the demo model


def demo_recipe() -> dict:
    """How the demo model is trained: the demo experiment's data (synthetic faces and three tiny
    zoo GANs trained on them, 32 x 32, with half the GAN steps) and its small classifier, with a
    few more epochs."""
    from privattrib.experiments.spec import load_builtin_spec

    raw = load_builtin_spec("demo")
    data = raw["data"]
    sources = dict(data["sources"])
    real = sources.pop("real")
    # Half the demo grid's GAN steps, and a smaller "did it learn?" sample: the three sources stay
    # distinct (held-out accuracy 0.98, against 0.93 with the full steps), and the first
    # `attribute --model demo` needs a third less CPU time (67 s against 100 s with one thread).
    fakes = {name: {"gan": {**src["gan"], "steps": max(1, src["gan"]["steps"] // 2),
                            "overrides": {"quality_samples": 200}}}
             for name, src in sources.items()}
    return {
        "version": _DEMO_VERSION,
        "real": real,
        "fakes": fakes,
        "size": int(data["size"]),
        "channels": int(data.get("channels", 3)),
        "per_class": dict(data["per_class"]),
        "classifier": {**raw["classifier"], "epochs": 5},
        "seed": int(raw.get("seed", 0)),
    }


def demo_attributor_path(device: str = "auto", progress: bool = True, cache_dir: str | os.PathLike | None = None,
                         recipe: Mapping | None = None, console: Any = None) -> Path:
    """The demo model's checkpoint: trained on first use (one to two minutes of CPU time, said on
    stderr), then reused from ``<cache dir>/attributor-demo``. A file lock makes a second process
    wait for the first trainer instead of training the same model twice.

    Args:
        recipe: the training recipe (default :func:`demo_recipe`; tests pass a smaller one).
    """
    from privattrib.common import file_lock, stable_hash
    from privattrib.data.cache import default_cache_dir

    recipe = dict(recipe or demo_recipe())
    folder = Path(cache_dir or default_cache_dir()) / "attributor-demo"
    path = folder / f"demo-{stable_hash(recipe, 12)}.pt"
    if path.is_file():
        return path
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    with file_lock(folder / f"{path.stem}.lock"):
        if path.is_file():  # another process trained it while this one waited
            return path
        console.print(f"training the demo model once (demo sources only: synthetic faces and tiny GANs; "
                      f"one to two minutes of CPU time, longer on a busy machine) -> {path}")
        work = folder / f"{path.stem}.work"
        # (the GAN and training loops fit their torch threads to the free cores: privattrib.threads)
        train_attributor(recipe["real"], recipe["fakes"], path, size=recipe["size"], channels=recipe["channels"],
                         per_class=recipe["per_class"], classifier=recipe["classifier"], seed=recipe["seed"],
                         device=device, work_dir=work, progress=progress, demo=True)
        shutil.rmtree(work, ignore_errors=True)
    return path
