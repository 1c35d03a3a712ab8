"""Assemble an experiment's train/val/test sets from its sources, once, cached under OUTDIR.

The real class is split first, identity-disjointly where identities are known (the same person
never appears in two splits), so that a GAN trained on the real *training* pool has never seen a
test face. Each GAN source is then trained on that pool (resumable, under ``OUTDIR/gans``) and
sampled; folders and GAN runs given by the user are split at random. Class order is
:attr:`ExperimentSpec.class_names`: ``real`` first, then the other sources sorted by name.
"""

from __future__ import annotations

import inspect
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privattrib.common import atomic_write_bytes, atomic_write_text, stable_hash
from privattrib.data.dataset import LabeledImages
from privattrib.experiments.spec import REAL_CLASS, ExperimentSpec, SpecError

SPLITS = ("train", "val", "test")


@dataclass
class ExperimentData:
    """The assembled sets of an experiment (all clean uint8 N x C x H x W, labels = class index)."""

    train: LabeledImages
    val: LabeledImages
    test: LabeledImages
    info: dict
    directory: Path

    @property
    def class_names(self) -> list[str]:
        return list(self.train.class_names)


def derived_seed(*parts) -> int:
    """A seed for a sub-task (split, GAN, sampling) as a stable function of its parts."""
    return int(stable_hash(list(parts), 8), 16) % (2**31 - 1)


def data_dir(outdir: str | os.PathLike, spec: ExperimentSpec) -> Path:
    return Path(outdir) / "data" / spec.data_hash()


def _gan_run_dir(outdir: str | os.PathLike, name: str, src: dict, spec: ExperimentSpec, *, legacy: bool = False) -> Path:
    cfg = {k: v for k, v in src.items() if k != "kind"}
    return Path(outdir) / "gans" / f"{name}-{stable_hash({'gan': cfg, 'data': spec.data_hash(legacy=legacy)}, 8)}"


def adopt_legacy_folders(outdir: str | os.PathLike, spec: ExperimentSpec) -> list[str]:
    """Rename the data set and GAN runs that an older privattrib named by hashes of resolved paths
    (see :meth:`ExperimentSpec.data_key`) to today's names, so a later move of the repository still
    finds them. Re-assembling the data would be wasted work, and re-training a GAN source would
    change the experiment. Returns what was renamed."""
    pairs = [(data_dir(outdir, spec).with_name(spec.data_hash(legacy=True)), data_dir(outdir, spec))]
    pairs += [(_gan_run_dir(outdir, name, src, spec, legacy=True), _gan_run_dir(outdir, name, src, spec))
              for name, src in spec.data["sources"].items() if src["kind"] == "gan"]
    moved = []
    for old, new in pairs:
        if old != new and old.is_dir() and not new.exists():
            os.replace(old, new)
            moved.append(f"{old.parent.name}/{old.name} -> {new.name}")
    return moved


def load_experiment_data(directory: str | os.PathLike) -> ExperimentData:
    """Read sets written by :func:`assemble_data` (memory-mapped images are not needed: they fit)."""
    directory = Path(directory)
    info = json.loads((directory / "info.json").read_text(encoding="utf-8"))
    sets = {}
    for split in SPLITS:
        with np.load(directory / f"{split}.npz", allow_pickle=False) as z:
            identities = z["identities"] if "identities" in z.files else None
            sets[split] = LabeledImages(
                images=z["images"],
                labels=z["labels"].astype(np.int64),
                class_names=list(info["class_names"]),
                keys=[str(k) for k in z["keys"]],
                identities=identities,
                meta={"split": split, "data_hash": info["data_hash"]},
            )
    return ExperimentData(sets["train"], sets["val"], sets["test"], info, directory)


def assemble_data(spec: ExperimentSpec, outdir: str | os.PathLike, *, device: str = "auto",
                  console=None, progress: bool = True) -> ExperimentData:
    """Build (or reuse) the experiment's train/val/test sets under ``OUTDIR/data/<data hash>``.

    Args:
        spec: the validated experiment.
        outdir: the experiment directory; GAN runs go to ``OUTDIR/gans``.
        device: where GANs train and sample.
        console: a ``rich.console.Console`` for stage messages (optional).
        progress: show the progress bars of loading and GAN training.

    Returns:
        :class:`ExperimentData` with ``train``/``val``/``test`` :class:`LabeledImages`:
        images uint8 N x C x H x W (C = ``data.channels``, H = W = ``data.size``), labels indexing
        ``class_names``, keys ``"<source>/<id>"``.
    """
    directory = data_dir(outdir, spec)
    if (directory / "info.json").is_file():
        return load_experiment_data(directory)
    say = console.log if console is not None else (lambda *a, **k: None)
    data = spec.data
    size, channels = data["size"], data["channels"]
    counts = data["per_class"]
    need = counts["train"] + counts["val"] + counts["test"]
    class_names = spec.class_names
    info: dict = {"data_hash": spec.data_hash(), "class_names": class_names, "sources": {}}

    # 1. The real class, split identity-disjointly.
    real_src = data["sources"][REAL_CLASS]
    say(f"loading the real source ({_describe(real_src)})")
    real = _load_plain_source(real_src, size, channels, data.get("cache_dir"), progress)
    if len(real) == 0:
        raise SpecError(f"data.sources.{REAL_CLASS}: no usable images in {_describe(real_src)}")
    real_parts = _split_real(real, counts, derived_seed(spec.seed, "split", REAL_CLASS))
    info["sources"][REAL_CLASS] = {
        "source": real_src, "available": len(real), "train_pool": int(len(real_parts["pool"])),
        "identity_disjoint": real_parts["identity_disjoint"],
    }
    per_class: dict[str, dict[str, np.ndarray | LabeledImages]] = {REAL_CLASS: {}}
    for split in SPLITS:
        per_class[REAL_CLASS][split] = real.subset(real_parts[split])
    real_pool = real.subset(real_parts["pool"])

    # 2. The other sources.
    for name in class_names[1:]:
        src = data["sources"][name]
        where = f"data.sources.{name}"
        if src["kind"] == "gan":
            images, src_info = _gan_source(name, src, real_pool, spec, outdir, need, device, say, progress)
        elif src["kind"] == "gan_run":
            images, src_info = _gan_run_source(name, src, spec, need, device, say)
        else:
            say(f"loading source {name} ({_describe(src)})")
            loaded = _load_plain_source(src, size, channels, data.get("cache_dir"), progress)
            images, src_info = loaded.images, {"available": len(loaded)}
            keys = loaded.keys
        images = conform_images(np.asarray(images), size, channels)
        if len(images) < need:
            raise SpecError(
                f"{where}: {len(images)} usable images, but per_class asks for {need} "
                f"(train {counts['train']} + val {counts['val']} + test {counts['test']})"
            )
        if src["kind"] in ("gan", "gan_run"):
            keys = [f"{i:06d}" for i in range(len(images))]
        order = np.random.default_rng(derived_seed(spec.seed, "split", name)).permutation(len(images))
        start = 0
        per_class[name] = {}
        for split in SPLITS:
            idx = np.sort(order[start:start + counts[split]])
            start += counts[split]
            per_class[name][split] = LabeledImages(
                images=np.ascontiguousarray(images[idx]),
                labels=np.zeros(len(idx), np.int64),
                class_names=[name],
                keys=[keys[i] for i in idx],
            )
        info["sources"][name] = {"source": src, **src_info}

    # 3. One set per split, labels = index in class_names, keys prefixed with the source name.
    sets = {}
    for split in SPLITS:
        parts = []
        for label, name in enumerate(class_names):
            part = per_class[name][split]
            ids = part.identities if part.identities is not None else np.full(len(part), -1, np.int64)
            parts.append(LabeledImages(
                images=conform_images(part.images, size, channels),
                labels=np.full(len(part), label, np.int64),
                class_names=class_names,
                keys=[f"{name}/{k}" for k in part.keys],
                identities=np.asarray(ids, np.int64),
            ))
        sets[split] = LabeledImages.concat(parts)
        sets[split].meta = {"split": split, "data_hash": info["data_hash"]}
    info["counts"] = {split: {name: int((sets[split].labels == i).sum()) for i, name in enumerate(class_names)}
                      for split in SPLITS}
    info["shape"] = list(sets["train"].images.shape[1:])

    directory.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        s = sets[split]
        _atomic_savez(directory / f"{split}.npz", images=s.images, labels=s.labels,
                      keys=np.asarray(s.keys, dtype=str), identities=s.identities)
    # info.json last: its presence marks the set as complete.
    atomic_write_text(directory / "info.json", json.dumps(info, indent=1, sort_keys=True, default=str))
    return ExperimentData(sets["train"], sets["val"], sets["test"], info, directory)


# ----------------------------------------------------------------------------------------------


def _describe(src: dict) -> str:
    if src["kind"] == "gan":
        how = f"preset {src['preset']}" if "preset" in src else f"{src['steps']} steps"
        return f"GAN {src['arch']}, {how}, seed {src['seed']}"
    if src["kind"] == "synthetic":
        return f"synthetic faces {src.get('options', {})}"
    return f"{src['kind']}: {src['path']}"


def _call_with_supported(fn, *args, **kwargs):
    """Call ``fn`` with only the keyword arguments its signature accepts."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


def _load_plain_source(src: dict, size: int, channels: int, cache_dir, progress: bool) -> LabeledImages:
    from privattrib import data as data_layer

    if src["kind"] == "synthetic":
        opts = dict(src.get("options", {}))
        return _call_with_supported(data_layer.synthetic_faces, size=size, channels=channels, **opts)
    if not Path(src["path"]).exists():
        raise SpecError(f"{src['kind']} source not found: {src['path']}")
    kind = src["kind"]
    if kind == "auto":
        kind = data_layer.detect_kind(src["path"]) if hasattr(data_layer, "detect_kind") else "auto"
    options = dict(src.get("options", {}))
    options.update({"cache_dir": cache_dir, "progress": progress})
    if kind != "celeba":  # CelebA is RGB; the others decode to the channels asked for
        options["channels"] = channels
    arg = src["path"] if kind == "auto" else {kind: src["path"]}
    return data_layer.load_source(arg, size, **options)


def _split_real(real: LabeledImages, counts: dict, seed: int) -> dict:
    """Index arrays ``train``/``val``/``test`` (sizes as asked) and ``pool`` (every image usable for
    training, i.e. of no val/test identity; ``train`` is drawn from it).

    Identity-disjoint when identities are known: whole identities go to test, then val, until each
    has its count (images of an identity that would overflow a split are left unused rather than
    leak into another split); the remaining identities form the training pool.
    """
    rng = np.random.default_rng(seed)
    n = len(real)
    ids = real.identities
    known = ids is not None and np.all(np.asarray(ids) >= 0)
    need = counts["train"] + counts["val"] + counts["test"]
    if not known:
        if n < need:
            raise SpecError(f"data.sources.{REAL_CLASS}: {n} images, per_class needs {need}")
        order = rng.permutation(n)
        test, val = order[:counts["test"]], order[counts["test"]:counts["test"] + counts["val"]]
        pool = order[counts["test"] + counts["val"]:]
        train = pool[:counts["train"]]
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test),
                "pool": np.sort(pool), "identity_disjoint": False}
    ids = np.asarray(ids)
    unique = rng.permutation(np.unique(ids))
    members = {int(u): rng.permutation(np.flatnonzero(ids == u)) for u in unique}
    taken: dict[str, list[int]] = {"test": [], "val": []}
    cursor = 0
    for split in ("test", "val"):
        while len(taken[split]) < counts[split]:
            if cursor >= len(unique):
                raise SpecError(
                    f"data.sources.{REAL_CLASS}: not enough identities for an identity-disjoint "
                    f"split ({n} images of {len(unique)} identities; per_class needs {need})"
                )
            room = counts[split] - len(taken[split])
            taken[split].extend(members[int(unique[cursor])][:room].tolist())
            cursor += 1
    pool = np.concatenate([members[int(u)] for u in unique[cursor:]]) if cursor < len(unique) else np.array([], int)
    if len(pool) < counts["train"]:
        raise SpecError(
            f"data.sources.{REAL_CLASS}: {len(pool)} training images left after taking identity-disjoint "
            f"val/test sets; per_class.train asks for {counts['train']} ({n} images of {len(unique)} identities)"
        )
    pool = rng.permutation(pool)
    return {"train": np.sort(pool[:counts["train"]]), "val": np.sort(np.asarray(taken["val"], int)),
            "test": np.sort(np.asarray(taken["test"], int)), "pool": np.sort(pool),
            "identity_disjoint": True}


def _gan_source(name, src, real_pool: LabeledImages, spec, outdir, need, device, say, progress):
    from privattrib.gans import sample_gan, train_gan

    run_dir = _gan_run_dir(outdir, name, src, spec)
    say(f"training GAN source {name} ({_describe(src)}) on {len(real_pool)} real training images -> {run_dir}")
    kwargs = {"size": spec.data["size"], "seed": src["seed"], "out": run_dir, "device": device,
              "progress": progress}
    if "steps" in src:
        kwargs["steps"] = src["steps"]
    if "preset" in src:
        kwargs["preset"] = src["preset"]
    if "batch_size" in src:
        kwargs["batch_size"] = src["batch_size"]
    if src.get("overrides"):
        kwargs["overrides"] = dict(src["overrides"])
    run_dir = Path(_call_with_supported(train_gan, src["arch"], real_pool, **kwargs) or run_dir)
    sample_seed = derived_seed(spec.seed, "sample", name)
    images = _call_with_supported(sample_gan, run_dir, need, seed=sample_seed, device=device)
    info = {"run_dir": str(run_dir), "sample_seed": sample_seed, "trained_on": len(real_pool)}
    quality = run_dir / "quality.json"  # the zoo's "did it learn?" report, written at the end of training
    if quality.is_file():
        info["quality"] = json.loads(quality.read_text(encoding="utf-8"))
    return np.asarray(images), info


def _gan_run_source(name, src, spec, need, device, say):
    from privattrib.gans import sample_gan

    if not Path(src["path"]).is_dir():
        raise SpecError(f"data.sources.{name}.gan_run: no GAN run directory at {src['path']}")
    say(f"sampling {need} images of source {name} from the GAN run {src['path']}")
    sample_seed = derived_seed(spec.seed, "sample", name)
    images = _call_with_supported(sample_gan, src["path"], need, seed=sample_seed, device=device)
    return np.asarray(images), {"run_dir": src["path"], "sample_seed": sample_seed}


def conform_images(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Bring uint8 N x C x H x W images to ``channels`` and ``size`` x ``size``.

    Grey -> RGB repeats the channel; RGB -> grey uses ITU-R 601 luma; a different size is resized
    with area interpolation (anti-aliased), as the data layer does.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 N x C x H x W images, got {images.dtype} {images.shape}")
    c = images.shape[1]
    if c != channels:
        if c == 1 and channels == 3:
            images = np.repeat(images, 3, axis=1)
        elif c == 3 and channels == 1:
            w = np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]
            images = np.clip((images.astype(np.float32) * w).sum(1, keepdims=True) + 0.5, 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"cannot convert {c}-channel images to {channels} channels")
    if images.shape[2] != size or images.shape[3] != size:
        import cv2

        out = np.empty((len(images), images.shape[1], size, size), np.uint8)
        for i, img in enumerate(images):
            hwc = np.ascontiguousarray(img.transpose(1, 2, 0))
            res = cv2.resize(hwc, (size, size), interpolation=cv2.INTER_AREA)
            out[i] = res.reshape(size, size, -1).transpose(2, 0, 1)
        images = out
    return np.ascontiguousarray(images)


def _atomic_savez(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    atomic_write_bytes(path, buffer.getvalue())
