"""Attribute your own images: a trained classifier applied to new files or pixels.

The one library entry point that ``privattrib attribute`` and the web page (``privattrib serve``)
both call::

    from privattrib.attribution.inference import load_attributor

    attributor = load_attributor("model.pt")         # or an experiment OUTDIR, or "demo"
    for a in attributor.predict([pixels], keys=["photo.jpg"]):   # uint8 H x W x C, any size
        print(a.predicted, a.probabilities, a.resized_from, a.notes)
    attributor.describe()                              # classes, calibration, accuracy, scope

What it loads: a checkpoint of ``privattrib train-attributor`` (calibrated: it carries a
temperature fitted on its validation split and its held-out figures), any classifier checkpoint of
``privattrib run`` (a clean model under ``OUTDIR/models/clean-models`` or a scenario model under
``OUTDIR/models``: uncalibrated, T = 1), an experiment OUTDIR (its clean model), or ``"demo"``
(a small model of the demo's synthetic sources, trained on first use and cached).

Images are prepared exactly as the training images were: the data layer's crop and resize
(:func:`privattrib.data.preprocess.prepare`: the largest centred square, or Yu et al.'s CelebA
crop for 178 x 218 aligned CelebA images when the model's real class was CelebA, then Pillow's
antialiased bicubic resize, with libjpeg's reduced-scale decoding for large JPEG files), and the
data layer's channel conversion. Every change is reported per image.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from privattrib.common import ProgressBar

__all__ = ["Attribution", "Attributor", "AttributorError", "load_attributor", "ATTRIBUTOR_FORMAT", "DEMO_MODEL"]

#: Version of the ``attributor`` block that ``train-attributor`` writes into a checkpoint.
ATTRIBUTOR_FORMAT = 1
#: The model name that :func:`load_attributor` resolves to the built-in demo model.
DEMO_MODEL = "demo"
_REAL_CLASS = "real"


class AttributorError(ValueError):
    """A model that cannot be used for attribution; the message names it and says why."""


@dataclass
class Attribution:
    """The attribution of one image.

    Attributes:
        key: the file path, or the caller's name for the image.
        predicted: the most probable class (a class name from the checkpoint, never an index).
        probabilities: every class name -> its probability (temperature-scaled where the model is
            calibrated); they sum to 1.
        resized_from: (H, W) of the image when it was resized to the model's size, else None.
        channels_converted: e.g. ``"RGBA -> RGB"`` or ``"L -> RGB"`` when the channels were
            converted to the model's, else None.
        notes: what else the reader should know about this image (crop used, upsampling...).
    """

    key: str
    predicted: str
    probabilities: dict[str, float]
    resized_from: tuple[int, int] | None = None
    channels_converted: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        """The probability of the predicted class."""
        return self.probabilities[self.predicted]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resized_from"] = list(self.resized_from) if self.resized_from is not None else None
        return d


@dataclass
class _Prepared:
    """One image brought to the model's input, and what was done to it."""

    pixels: np.ndarray  # uint8 C x S x S
    resized_from: tuple[int, int] | None
    channels_converted: str | None
    notes: list[str]


#: Pillow modes with an alpha band ("LAB"'s A is a colour axis, not alpha).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class Attributor:
    """A loaded attribution classifier with everything needed to use it on new images.

    Attributes:
        class_names: the classes, in the model's output order.
        real_class: the class of camera images (``"real"``), or None when the model has none.
        image_size: side S of the square input (pixels).
        in_channels: C, 1 (grey) or 3 (RGB).
        temperature: T > 0 the logits are divided by (1.0 for an uncalibrated model).
        calibrated: whether T was fitted on held-out data.
        scope: a sentence or two: which sources the model knows and what it was trained on.
        source: the checkpoint path, or ``"demo"``.
        crop: how non-square or other-size images are cropped before resizing: ``"center"``,
            ``"yu2019"`` (Yu et al.'s CelebA crop for 178 x 218 aligned CelebA images, the centre
            square for any other image) or ``"none"`` (the whole image stretched to the square, as
            a source with ``crop: none`` was in training).
        metrics: held-out figures recorded with the model (may be empty).
        messages: things to tell the user about the model itself (which checkpoint of an OUTDIR
            was picked, that it is uncalibrated, that it is the demo model...).
    """

    def __init__(
        self,
        model: Any,
        *,
        class_names: Sequence[str],
        real_class: str | None,
        image_size: int,
        in_channels: int,
        temperature: float = 1.0,
        calibrated: bool = False,
        scope: str = "",
        source: str = "",
        crop: str = "center",
        draft: bool = True,
        metrics: dict | None = None,
        calibration: dict | None = None,
        messages: Sequence[str] = (),
        info: dict | None = None,
        device: str = "auto",
    ) -> None:
        from privattrib.common import resolve_device

        if len(class_names) < 2:
            raise AttributorError(f"{source or 'model'}: needs at least two classes, got {list(class_names)}")
        if not (float(temperature) > 0 and math.isfinite(float(temperature))):
            raise AttributorError(f"{source or 'model'}: temperature must be > 0, got {temperature}")
        from privattrib.data.preprocess import CROPS

        if crop not in CROPS:
            raise AttributorError(f"{source or 'model'}: unknown crop {crop!r} ({', '.join(CROPS)})")
        self.model = model
        self.class_names = [str(c) for c in class_names]
        self.real_class = real_class
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.temperature = float(temperature)
        self.calibrated = bool(calibrated)
        self.scope = scope
        self.source = str(source)
        self.crop = crop
        self.draft = bool(draft)
        self.metrics = dict(metrics or {})
        self.calibration = dict(calibration or {})
        self.messages = list(messages)
        self.info = dict(info or {})
        self.device = resolve_device(device)
        self.model.to(self.device).eval()

    # -- preparing images -----------------------------------------------------------------

    def _preprocess(self, height: int, width: int):
        from privattrib.data.preprocess import CELEBA_ALIGNED_SIZE, Preprocess

        if self.crop == "yu2019":
            crop = "yu2019" if (width, height) == CELEBA_ALIGNED_SIZE else "center"
        else:
            crop = self.crop
        return Preprocess(size=(self.image_size, self.image_size), crop=crop, channels=self.in_channels,
                          draft=self.draft)

    def _notes(self, height: int, width: int, mode: str | None, crop: str, transparent: bool) -> tuple[
            tuple[int, int] | None, str | None, list[str]]:
        s = self.image_size
        notes: list[str] = []
        resized_from = None
        if (height, width) != (s, s):
            resized_from = (height, width)
            if crop == "yu2019":
                notes.append(f"cropped 128x128 around (89, 121) of the {width}x{height} image, Yu et al.'s crop of "
                             f"aligned CelebA images (as the real training images were), then resized to {s}x{s}")
            elif crop == "none" and height != width:
                notes.append(f"stretched {width}x{height} -> {s}x{s}, the aspect ratio not kept (antialiased "
                             "bicubic, as the training images were)")
            else:
                side = min(height, width)
                how = f"centre-cropped to {side}x{side}, then resized" if height != width else "resized"
                notes.append(f"{how} {width}x{height} -> {s}x{s} (antialiased bicubic, as the training images were)")
            if min(height, width) < s:
                notes.append(f"upsampled: the image ({width}x{height}) is smaller than the model's {s}x{s} input, "
                             "so the fine detail the model looks at was never there")
        target = "RGB" if self.in_channels == 3 else "L"
        converted = None
        if mode is not None and mode != target:
            converted = f"{mode} -> {target}"
        if transparent:
            notes.append("transparent pixels were flattened onto black")
        return resized_from, converted, notes

    def _prepare_array(self, image: Any, key: str, mode: str | None) -> _Prepared:
        from privattrib.data.io import BadImageError
        from privattrib.data.preprocess import prepare_array

        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise BadImageError(key, f"pixels must be uint8 H x W x C, got {arr.dtype} {arr.shape}")
        height, width = arr.shape[:2]
        if mode is None:
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(1 if arr.ndim == 2 else arr.shape[2])
        prep = self._preprocess(height, width)
        pixels = prepare_array(arr, prep, name=key)
        return _Prepared(pixels, *self._notes(height, width, mode, prep.crop, mode in _ALPHA_MODES))

    def _prepare_file(self, path: str | os.PathLike) -> _Prepared:
        from privattrib.data.io import open_image

        return self._prepare_opened(open_image(path), path)

    def _prepare_opened(self, im: Any, path: str | os.PathLike) -> _Prepared:
        """An opened (not yet decoded) image: decoded the way the training files were, libjpeg's
        reduced-scale decoding of large JPEGs included (decoded pixels can no longer get it)."""
        from privattrib.data.preprocess import oriented_size, prepare_image

        height, width = oriented_size(im)
        mode = im.mode
        prep = self._preprocess(height, width)
        transparent = mode in _ALPHA_MODES or "transparency" in im.info
        pixels = prepare_image(im, path, prep)
        return _Prepared(pixels, *self._notes(height, width, mode, prep.crop, transparent))

    # -- predicting -----------------------------------------------------------------------

    def _attribute(self, prepared: list[_Prepared], keys: list[str], batch_size: int) -> list[Attribution]:
        from privattrib.attribution.calibration import softmax
        from privattrib.training import predict

        if not prepared:
            return []
        batch = np.stack([p.pixels for p in prepared])
        logits = predict(self.model, batch, batch_size=batch_size, device=self.device)
        probs = softmax(logits, self.temperature)
        out = []
        for p, key, row in zip(prepared, keys, probs):
            probabilities = {name: float(v) for name, v in zip(self.class_names, row)}
            out.append(Attribution(key=key, predicted=self.class_names[int(np.argmax(row))],
                                   probabilities=probabilities, resized_from=p.resized_from,
                                   channels_converted=p.channels_converted, notes=list(p.notes)))
        return out

    def predict(
        self,
        images: Sequence[np.ndarray],
        keys: Sequence[str] | None = None,
        batch_size: int = 256,
        progress: bool = False,
        *,
        modes: Sequence[str | None] | None = None,
    ) -> list[Attribution]:
        """Attribute images held in memory.

        Args:
            images: uint8 pixels, each H x W (grey), H x W x 1, x 3 (RGB) or x 4 (RGBA, flattened
                onto black), any size (as :func:`privattrib.data.load_image` returns them).
            keys: a name per image (default ``"image 0"``, ``"image 1"``...).
            batch_size: images per forward pass (>= 1).
            progress: a progress bar on stderr.
            modes: optional Pillow mode of each image's source file (e.g. ``"RGBA"``, ``"CMYK"``),
                to report conversions done before the pixels got here (``load_image`` flattens
                alpha and converts CMYK); by default the mode follows from the array's shape.

        Returns:
            One :class:`Attribution` per image, in order.

        Raises:
            privattrib.data.BadImageError: an image is not uint8 pixels of a usable shape (it names
                the image by its key).
        """
        images = list(images)
        keys = [f"image {i}" for i in range(len(images))] if keys is None else [str(k) for k in keys]
        if len(keys) != len(images):
            raise ValueError(f"{len(images)} images but {len(keys)} keys")
        modes = [None] * len(images) if modes is None else list(modes)
        if len(modes) != len(images):
            raise ValueError(f"{len(images)} images but {len(modes)} modes")
        batch_size = _check_batch_size(batch_size)
        out: list[Attribution] = []
        with ProgressBar(progress and len(images) > 0, len(images), "attributing") as bar:
            for start in range(0, len(images), batch_size):
                stop = start + batch_size
                prepared = [self._prepare_array(img, key, mode)
                            for img, key, mode in zip(images[start:stop], keys[start:stop], modes[start:stop])]
                out += self._attribute(prepared, keys[start:stop], batch_size)
                bar.advance(len(prepared))
        return out

    def predict_encoded(self, data: bytes, key: str = "<bytes>", *, max_pixels: int | None = None) -> Attribution:
        """Attribute one encoded image held in memory (an upload) exactly as :meth:`predict_files`
        would the same file: the pixels of a JPEG decoded at reduced scale like the training files.

        Args:
            max_pixels: the decompression-bomb limit (default: the data layer's).

        Raises:
            privattrib.data.BadImageError: the bytes are not a usable image (named by ``key``).
        """
        from privattrib.data.io import DEFAULT_MAX_PIXELS, open_image_bytes

        im = open_image_bytes(data, key, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        return self._attribute([self._prepare_opened(im, key)], [key], 1)[0]

    def predict_files(
        self,
        paths: Sequence[str | os.PathLike],
        keys: Sequence[str] | None = None,
        batch_size: int = 256,
        progress: bool = False,
        workers: int | None = None,
    ) -> tuple[list[Attribution], list[Any]]:
        """Attribute image files, decoding them as the training files were decoded.

        Files are read and decoded in a thread pool (Pillow releases the GIL while decoding and
        resizing), a batch ahead of the model. Unusable files are skipped, not raised.

        Args:
            paths: image files.
            keys: a name per file (default: the path as given).
            batch_size: images per forward pass.
            progress: a progress bar on stderr.
            workers: decoding threads (default: the usable CPU cores, at most 8).

        Returns:
            (the attributions of the usable files in input order, the skipped files as
            :class:`privattrib.data.io.Skipped` with their reasons).
        """
        from privattrib.data.io import BadImageError, Skipped

        paths = list(paths)
        keys = [str(p) for p in paths] if keys is None else [str(k) for k in keys]
        if len(keys) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(keys)} keys")
        batch_size = _check_batch_size(batch_size)
        workers = _default_workers() if workers is None else max(1, int(workers))

        def load(item: tuple) -> tuple:
            path, key = item
            try:
                return self._prepare_file(path), key
            except BadImageError as exc:
                return Skipped(exc.path, exc.reason), key

        out: list[Attribution] = []
        skipped: list[Skipped] = []
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                ProgressBar(progress and len(paths) > 0, len(paths), "attributing") as bar:
            for chunk in _prefetched(pool, load, list(zip(paths, keys)), batch_size):
                ready = [(p, key) for p, key in chunk if isinstance(p, _Prepared)]
                skipped += [p for p, _ in chunk if not isinstance(p, _Prepared)]
                out += self._attribute([p for p, _ in ready], [key for _, key in ready], batch_size)
                bar.advance(len(chunk))
        return out, skipped

    # -- describing -----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Everything a reader needs to trust (or not) the probabilities, JSON-serialisable:
        ``source, classes, real_class, image_size, in_channels, arch, temperature, calibrated,
        ece_before, ece_after, ece_bins, held_out_accuracy, per_class_accuracy, chance, n_test,
        confusion_matrix, scope, preprocess, notes``."""
        config = getattr(self.model, "classifier_config", {}) or {}
        m, c = self.metrics, self.calibration
        return {
            "source": self.source,
            "classes": list(self.class_names),
            "real_class": self.real_class,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "arch": config.get("arch"),
            "temperature": self.temperature,
            "calibrated": self.calibrated,
            "ece_before": c.get("ece_before"),
            "ece_after": c.get("ece_after"),
            "ece_bins": c.get("bins"),
            "held_out_accuracy": m.get("accuracy"),
            "per_class_accuracy": m.get("per_class_accuracy"),
            "chance": m.get("chance"),
            "n_test": m.get("n_test"),
            "confusion_matrix": m.get("confusion_matrix"),
            "held_out_note": m.get("note"),
            "scope": self.scope,
            "preprocess": {
                "size": [self.image_size, self.image_size],
                "channels": self.in_channels,
                "crop": self.crop,
                "resize": "Pillow bicubic, antialiased (the data layer's prepare)",
                "jpeg_draft": self.draft,
            },
            "notes": list(self.messages),
        }


# --------------------------------------------------------------------------------------------
# helpers of predict


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _default_workers() -> int:
    from privattrib.data.cache import default_workers

    return min(8, default_workers())


def _prefetched(pool: ThreadPoolExecutor, fn: Any, items: list, size: int, ahead: int = 2) -> Iterator[list]:
    """``[fn(item) for item in chunk]`` for consecutive chunks of ``size`` items, computed in
    ``pool`` with up to ``ahead`` chunks in flight: the threads decode the next files while the
    model runs on this chunk, and memory stays bounded however many files there are."""
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    pending = deque([pool.submit(fn, x) for x in chunk] for chunk in chunks[:ahead])
    following = ahead
    while pending:
        futures = pending.popleft()
        if following < len(chunks):
            pending.append([pool.submit(fn, x) for x in chunks[following]])
            following += 1
        yield [f.result() for f in futures]


# --------------------------------------------------------------------------------------------
# loading


def load_attributor(model: str | os.PathLike, device: str = "auto", *, progress: bool = True) -> Attributor:
    """Load a model for attribution.

    Args:
        model: a checkpoint written by ``privattrib train-attributor``; a classifier checkpoint
            written by ``privattrib run`` (``OUTDIR/models/clean-models/*.pt`` or a scenario model
            ``OUTDIR/models/*.pt``), which is uncalibrated (T = 1); an experiment OUTDIR (its clean
            model of the lowest seed); or ``"demo"`` (trains the demo model on first use, one to two
            minutes of CPU time, then reuses it from the cache).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        progress: progress bars while the demo model trains.

    Returns:
        An :class:`Attributor`; ``messages`` says what the caller should tell the user.

    Raises:
        AttributorError: the model is missing or is not a usable classifier checkpoint.
    """
    messages: list[str] = []
    if str(model) == DEMO_MODEL and not Path(DEMO_MODEL).exists():
        from privattrib.attribution.attributor import demo_attributor_path

        path = demo_attributor_path(device=device, progress=progress)
        attributor = _from_checkpoint(path, device, messages)
        attributor.source = DEMO_MODEL
        return attributor
    path = Path(model)
    if not path.exists():
        raise AttributorError(f"model not found: {path} (give a checkpoint .pt, an experiment folder, or 'demo')")
    if path.is_dir():
        path = _pick_clean_model(path, messages)
    return _from_checkpoint(path, device, messages)


def _pick_clean_model(outdir: Path, messages: list[str]) -> Path:
    """The clean model of an experiment OUTDIR (of its lowest seed when there are several)."""
    folder = outdir / "models" / "clean-models"
    found = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    if not found:
        raise AttributorError(f"{outdir}: no classifier checkpoint under {folder} (is it an OUTDIR of "
                              "`privattrib run` whose clean-train cells ran?)")

    def seed_of(path: Path) -> tuple[int, str]:
        try:
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            return int(meta.get("seed", 0)), path.name
        except (OSError, ValueError):
            return 0, path.name

    found.sort(key=seed_of)
    chosen = found[0]
    seeds = [seed_of(p)[0] for p in found]
    messages.append(f"{outdir} holds {len(found)} clean model(s) (seeds {', '.join(map(str, seeds))}); "
                    f"using the one of seed {seeds[0]}: {chosen}")
    return chosen


def _read_checkpoint(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise AttributorError(f"model not found: {path} is not a file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
        raise AttributorError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise AttributorError(f"{path}: not a privattrib classifier checkpoint (no 'config' and 'state_dict'); "
                              "GAN runs and other files cannot attribute images")
    return blob


def _from_checkpoint(path: Path, device: str, messages: list[str]) -> Attributor:
    from privattrib.attribution.models import classifier_from_checkpoint

    blob = _read_checkpoint(path)
    extra = blob.get("extra") or {}
    config = dict(blob["config"])
    try:
        model = classifier_from_checkpoint(blob)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise AttributorError(f"{path}: the classifier cannot be rebuilt from it ({exc})") from None
    k = int(config["num_classes"])
    block = extra.get("attributor")
    if block is not None:
        if len(block.get("class_names") or ()) != k:
            raise AttributorError(f"{path}: its attributor block names {len(block.get('class_names') or ())} "
                                  f"classes but the classifier has {k} outputs; the file is inconsistent")
        return _from_attributor_block(model, path, block, extra, device, messages)
    class_names = extra.get("class_names") or ((extra.get("cache_key") or {}).get("train") or {}).get("classes")
    if not class_names or len(class_names) != k:
        raise AttributorError(f"{path}: the checkpoint does not name its {k} classes; attribution needs class "
                              "names (train one with `privattrib train-attributor`)")
    return _from_run_checkpoint(model, path, list(class_names), extra, config, device, messages)


def _from_attributor_block(model, path: Path, block: dict, extra: dict, device: str, messages: list[str]) -> Attributor:
    if int(block.get("format", 0)) > ATTRIBUTOR_FORMAT:
        raise AttributorError(f"{path}: written by a newer privattrib (attributor format {block.get('format')}); "
                              "upgrade privattrib")
    calibrated = bool(block.get("calibrated"))
    if not calibrated:
        why = (block.get("calibration") or {}).get("not_fitted") or "no validation split was kept when this model was trained"
        messages.append(f"uncalibrated: {why}, so its probabilities are the raw softmax (T = 1), usually "
                        "over-confident")
    if block.get("demo"):
        messages.append("the demo model knows only the demo's sources (synthetic faces and three tiny GANs); "
                        "its answers say nothing about real photos or other generators")
    return Attributor(
        model, class_names=block["class_names"], real_class=block.get("real_class"),
        image_size=block["image_size"], in_channels=block["in_channels"],
        temperature=block.get("temperature", 1.0), calibrated=calibrated, scope=block.get("scope", ""),
        source=str(path), crop=block.get("preprocess", {}).get("crop", "center"),
        draft=block.get("preprocess", {}).get("jpeg_draft", True), metrics=block.get("metrics"),
        calibration=block.get("calibration"), messages=messages, info=block, device=device,
    )


def resolved_source(src: dict) -> dict:
    """An experiment-spec source with an ``auto`` kind replaced by the kind the data layer detects
    (left as it is when its path is gone)."""
    if src.get("kind") != "auto" or not Path(src.get("path", "")).exists():
        return src
    from privattrib.data.sources import detect_kind

    return {**src, "kind": detect_kind(src["path"])}


def training_crop(real_source: dict) -> str:
    """How the data layer cropped the real class's training images: the source's own ``crop``
    option, else Yu et al.'s crop for CelebA and the centred square for anything else."""
    real_source = resolved_source(real_source)
    return (real_source.get("options") or {}).get("crop") or (
        "yu2019" if real_source.get("kind") == "celeba" else "center")


def _experiment_dir(path: Path) -> Path | None:
    """The OUTDIR of a checkpoint written by ``privattrib run``, if it is where run puts them."""
    parent = path.resolve().parent
    for outdir in (parent.parent.parent, parent.parent):  # models/clean-models/x.pt, models/x.pt
        if (outdir / "experiment.json").is_file() and parent.is_relative_to(outdir / "models"):
            return outdir
    return None


def _from_run_checkpoint(model, path: Path, class_names: list[str], extra: dict, config: dict, device: str,
                         messages: list[str]) -> Attributor:
    from privattrib.experiments.sources import _describe

    outdir = _experiment_dir(path)
    manifest: dict = {}
    if outdir is not None:
        try:
            manifest = json.loads((outdir / "experiment.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
    spec = manifest.get("spec") or {}
    sources = (spec.get("data") or {}).get("sources") or {}
    sources = {name: resolved_source(src) for name, src in sources.items()}
    crop = training_crop(sources[_REAL_CLASS]) if _REAL_CLASS in sources else "center"
    size, channels = int(config["image_size"]), int(config["in_channels"])
    scenario = extra.get("scenario", "clean-train")
    trained_on = "clean images" if scenario == "clean-train" else f"images obfuscated with {extra.get('spec')} ({scenario})"
    if sources:
        described = "; ".join(f"{name} = {_describe(src)}" for name, src in sources.items())
        scope = (f"Knows the {len(class_names)} sources of experiment {spec.get('name', '?')}: {described}. "
                 f"Trained by `privattrib run` on {trained_on} at {size}x{size} px. Images of any other source "
                 "are still given one of these classes. Uncalibrated (T = 1).")
    else:
        scope = (f"Knows {len(class_names)} classes ({', '.join(class_names)}), trained at {size}x{size} px on "
                 f"{trained_on}; where its training images came from is not recorded beside this checkpoint. "
                 "Uncalibrated (T = 1).")
    messages.append("uncalibrated: a `privattrib run` checkpoint carries no temperature, so its probabilities are "
                    "the raw softmax (T = 1), usually over-confident; `privattrib train-attributor` calibrates")
    metrics = _run_metrics(outdir, path, extra) if outdir is not None else {}
    return Attributor(model, class_names=class_names, real_class=_REAL_CLASS if _REAL_CLASS in class_names else None,
                      image_size=size, in_channels=channels, temperature=1.0, calibrated=False, scope=scope,
                      source=str(path), crop=crop, metrics=metrics, messages=messages,
                      info={"experiment": str(outdir) if outdir else None, "scenario": scenario,
                            "spec": extra.get("spec"), "seed": extra.get("seed")}, device=device)


def _run_metrics(outdir: Path, path: Path, extra: dict) -> dict:
    """Held-out figures of a run checkpoint from its experiment's results rows (empty if none)."""
    from privattrib.experiments.store import ResultsStore

    scenario = extra.get("scenario")
    for row in ResultsStore(outdir).rows():
        if row.get("task", "attribution") != "attribution":
            continue
        if scenario is None:
            match = row.get("spec") == "none" and Path(str(row.get("clean_model_path", ""))).name == path.name
            note = "accuracy on the experiment's clean test images"
        else:
            match = (row.get("scenario") == scenario and row.get("spec") == extra.get("spec")
                     and row.get("seed") == extra.get("seed"))
            note = f"accuracy on the experiment's test images obfuscated with {extra.get('spec')}"
        if match:
            return {"accuracy": row.get("accuracy"), "per_class_accuracy": row.get("per_class_accuracy"),
                    "chance": row.get("chance"), "n_test": row.get("n_test"),
                    "confusion_matrix": row.get("confusion_matrix"), "note": note}
    return {}
