"""Image sources: CelebA (official layout), any folder of images, identity sets.

Each source first lists its candidate files with labels (``*_entries``), cheaply and without
decoding; the cache then decodes them once (``load_*``), or ``check_path`` decodes them only to
report what is usable and what is skipped and why.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from privattrib.common import stable_hash
from privattrib.data.cache import (
    STAT_FORMAT,
    CacheKey,
    CachedSet,
    Entries,
    build_or_open,
    files_signature,
    try_open,
    validate,
)
from privattrib.data.dataset import LabeledImages
from privattrib.data.io import IMAGE_EXTENSIONS, Skipped, walk_image_files, walk_images
from privattrib.data.preprocess import Preprocess, normalize_size

log = logging.getLogger("privattrib.data")

KINDS = ("auto", "celeba", "folder", "identities")
PARTITIONS = {"train": 0, "val": 1, "test": 2}
PARTITION_NAMES = {v: k for k, v in PARTITIONS.items()}


def _is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()`` that treats symlink loops and vanished entries as "not a folder"."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def natural_key(name: str):
    """Sort key that orders ``s2`` before ``s10`` (deterministic, never listing order)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


# ----------------------------------------------------------------------------- CelebA

def _read_pairs(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return dict(parts for parts in map(str.split, f) if len(parts) == 2)


def _find_attr_file(root: Path) -> Path | None:
    official = root / "list_attr_celeba.txt"
    if official.is_file():
        return official
    others = sorted(root.glob("list_attr_celeba*.txt"))
    return others[0] if others else None


def _read_attributes(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The 40-attribute file, with or without its leading count line (values -1 / 1)."""
    with open(path, encoding="utf-8") as f:
        first = f.readline().split()
        if len(first) == 1 and first[0].isdigit():  # official file: count line, then names
            first = f.readline().split()
        names = first
        # Rows stay text until selected: converting 200k rows eagerly costs more than the load.
        table = {parts[0]: parts[1:] for parts in map(str.split, f) if len(parts) == len(names) + 1}
    return names, table


def celeba_entries(
    root: str | os.PathLike,
    partitions: tuple[str, ...] | list[str] | None = None,
    limit: int | None = None,
    class_name: str = "real",
) -> Entries:
    """CelebA's candidate files with identities, official partitions and attributes.

    Label rows whose image is absent (a subset of the 202,599 images) are counted in
    ``info["labels_without_image"]`` and logged once; images without an identity label are skipped.
    """
    root = Path(root)
    img_dir = root / "img_align_celeba"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir} not found: expected CelebA's official layout (img_align_celeba/ and label files)")
    id_file = root / "identity_CelebA.txt"
    part_file = root / "list_eval_partition.txt"
    for f in (id_file, part_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: CelebA needs identity_CelebA.txt and list_eval_partition.txt")
    if partitions is not None:
        partitions = tuple(partitions)
        bad = [p for p in partitions if p not in PARTITIONS]
        if bad:
            raise ValueError(f"unknown CelebA partition(s) {bad}; use train, val, test")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")

    identity = _read_pairs(id_file)
    partition = _read_pairs(part_file)
    attr_file = _find_attr_file(root)
    attr_names, attr_table = _read_attributes(attr_file) if attr_file else ([], {})

    rels, skipped = walk_image_files(img_dir)
    present = {}
    img_dir_s = str(img_dir)
    for rel in rels:
        path = os.path.join(img_dir_s, rel)
        if rel not in identity:
            skipped.append(Skipped(path, "no identity label in identity_CelebA.txt"))
        elif rel not in partition:
            skipped.append(Skipped(path, "no partition in list_eval_partition.txt"))
        else:
            present[rel] = path
    missing = sum(1 for name in identity if name not in present)
    names = sorted(present)
    if partitions is not None:
        wanted = {PARTITIONS[p] for p in partitions}
        names = [n for n in names if int(partition[n]) in wanted]
    if limit is not None:
        names = names[:limit]
    n = len(names)
    rows = {
        "labels": np.zeros(n, dtype=np.int64),
        "identities": np.array([int(identity[x]) for x in names], dtype=np.int64),
        "partition": np.array([int(partition[x]) for x in names], dtype=np.int8),
    }
    if attr_names:
        attrs = np.zeros((n, len(attr_names)), dtype=np.int8)  # 0 = unknown
        known = np.array([x in attr_table for x in names], dtype=bool)
        if known.any():
            attrs[known] = np.array([attr_table[x] for x in names if x in attr_table], dtype=np.int8)
        rows["attributes"] = attrs
        rows["attributes_known"] = known
    label_files = [str(id_file), str(part_file)] + ([str(attr_file)] if attr_file else [])
    return Entries(
        paths=[present[x] for x in names],
        keys=[f"{class_name}/{x}" for x in names],
        rows=rows,
        class_names=[class_name],
        skipped=skipped,
        label_files=label_files,
        info={
            "root": str(root),
            "labels_without_image": missing,
            "labelled_images": len(identity),
            "attribute_names": attr_names,
            "partitions": list(partitions) if partitions else None,
            "limit": limit,
        },
    )


def load_celeba(
    root: str | os.PathLike,
    size: int | tuple[int, int] = 64,
    crop: str = "yu2019",
    partitions: tuple[str, ...] | list[str] | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    *,
    class_name: str = "real",
    strict: bool = False,
    progress: bool = True,
    rebuild: bool = False,
) -> LabeledImages:
    """CelebA (aligned, official layout) as a cached uint8 set.

    Args:
        root: folder with ``img_align_celeba/``, ``identity_CelebA.txt``,
            ``list_eval_partition.txt`` and optionally ``list_attr_celeba*.txt``.
        size: output side (or (H, W)).
        crop: ``"yu2019"`` (128 x 128 around (89, 121), Yu et al. 2019) or ``"center"``.
        partitions: official partitions to keep (``"train"``, ``"val"``, ``"test"``); all if None.
        limit: keep the first ``limit`` images (file-name order) after the partition filter.
        cache_dir, workers, strict, progress, rebuild: see :func:`privattrib.data.cache.build_or_open`.
        class_name: the single class name (labels are all 0).

    Returns:
        LabeledImages with images N x 3 x H x W (memory-mapped, read-only), labels all 0,
        ``identities`` = CelebA identity ids, keys ``"<class_name>/<file>"``, and ``meta`` with
        ``partition`` (int8 N: 0 train, 1 val, 2 test), ``attributes`` (int8 N x 40, -1/1, 0 where
        the attribute file has no row), ``attribute_names``, ``labels_without_image``, ``skipped``.
    """
    size_hw = normalize_size(size)
    if size_hw is None:
        raise ValueError("load_celeba needs a size")
    prep = Preprocess(size=size_hw, crop=crop, channels=3)
    # The key needs only the listing and the label files (their size and mtime for the pre-check,
    # their content otherwise), so a cache hit skips parsing 2 x 202,599 label lines.
    root = Path(root)
    img_dir = str(root / "img_align_celeba")
    listing, _ = walk_image_files(img_dir) if os.path.isdir(img_dir) else ([], [])
    label_files = [str(p) for p in [root / "identity_CelebA.txt", root / "list_eval_partition.txt",
                                    _find_attr_file(root)] if p is not None]
    files = [os.path.join(img_dir, r) for r in listing]
    params = {"prep": prep.as_dict(), "partitions": sorted(partitions) if partitions else None, "limit": limit,
              "class_name": class_name}
    stat = stable_hash({
        "format": STAT_FORMAT, "kind": "celeba", "prep": prep.as_dict(),
        "files": files_signature(files), "label_files": files_signature(label_files),
        "partitions": params["partitions"], "limit": limit, "class_name": class_name,
    }, length=20)
    key = CacheKey("celeba", str(root), files, label_files, params, stat)
    if not strict and not rebuild:  # strict must re-raise on skipped files: it always looks at the entries
        cached = try_open(key, cache_dir, workers)
        if cached is not None:
            return _labeled_from_cache("celeba", cached)
    entries = celeba_entries(root, partitions, limit, class_name)
    return _to_labeled("celeba", entries, prep, cache_dir, workers, strict, progress, key=key, rebuild=rebuild)


# ----------------------------------------------------------------------------- folders

def folder_entries(path: str | os.PathLike, class_name: str | None = None, limit: int | None = None) -> Entries:
    """Every image under ``path`` (recursive) as one class."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder")
    rels, skipped = walk_image_files(path)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        rels = rels[:limit]
    name = class_name or path.resolve().name
    n = len(rels)
    root_s = str(path)
    return Entries(
        paths=[os.path.join(root_s, r) for r in rels],
        keys=[f"{name}/{r}" for r in rels],
        rows={"labels": np.zeros(n, dtype=np.int64), "identities": np.full(n, -1, dtype=np.int64)},
        class_names=[name],
        skipped=skipped,
        info={"root": str(path), "limit": limit},
    )


def load_folder(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None,
    channels: int = 3,
    class_name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    *,
    crop: str = "center",
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    rebuild: bool = False,
) -> LabeledImages:
    """Any folder of images (PNG, JPEG, WebP, BMP, PGM, TIFF, GIF; nested) as one class.

    Args:
        path: the folder.
        size: output side or (H, W); ``None`` keeps the most common native size and skips
            images of other sizes.
        channels: 1 or 3 (``None``: 1 when every image is grey).
        class_name: the class name (default: the folder's name).
        crop: ``"center"`` (largest centred box of the output's aspect) or ``"none"`` (stretch).

    Returns:
        LabeledImages, labels all 0, identities all -1, keys ``"<class_name>/<relative path>"``.
    """
    entries = folder_entries(path, class_name, limit)
    prep = Preprocess(size=normalize_size(size), crop=crop, channels=channels)
    return _to_labeled("folder", entries, prep, cache_dir, workers, strict, progress, rebuild=rebuild)


# ----------------------------------------------------------------------------- identity sets

_AMBIENT = re.compile(r"_ambient$", re.IGNORECASE)


def identity_entries(path: str | os.PathLike, skip_ambient: bool = True) -> Entries:
    """One sub-folder per person (``s1/1.pgm``, ``yaleB01/*.pgm``, ``Alice/*.jpg``).

    Identity index = position of the folder name in natural sort order (``s2`` before ``s10``).
    Files directly in ``path`` are skipped (they belong to no person). With ``skip_ambient``,
    Extended Yale B's ``*_Ambient.pgm`` frames are skipped: they are the no-flash reference shot,
    not one of the 64 illumination conditions of the set, and those of B11-B39 are uncropped
    640 x 480 frames that show far more than the face.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder")
    skipped: list[Skipped] = []
    people: list[str] = []
    for entry in sorted(os.scandir(path), key=lambda e: natural_key(e.name)):
        if entry.name.startswith("."):
            skipped.append(Skipped(entry.path, "hidden file or folder"))
        elif _is_dir(entry):
            people.append(entry.name)
        else:
            skipped.append(Skipped(entry.path, "not inside a person folder"))
    paths: list[str] = []
    keys: list[str] = []
    ids: list[int] = []
    empty: list[str] = []
    for index, person in enumerate(people):
        files, skip = walk_images(path / person)
        skipped.extend(skip)
        kept = 0
        for p in files:
            if skip_ambient and _AMBIENT.search(p.stem):
                skipped.append(Skipped(str(p), "ambient (no-flash) reference frame, not one of the set's face images"))
                continue
            paths.append(str(p))
            keys.append(p.relative_to(path).as_posix())
            ids.append(index)
            kept += 1
        if kept == 0:
            empty.append(person)
    if empty:
        log.warning("identity set %s: %d person folder(s) without images: %s", path, len(empty), ", ".join(empty[:10]))
    ids_arr = np.array(ids, dtype=np.int64)
    return Entries(
        paths=paths,
        keys=keys,
        rows={"labels": ids_arr, "identities": ids_arr.copy()},
        class_names=people,
        skipped=skipped,
        info={"root": str(path), "skip_ambient": skip_ambient, "empty_person_folders": empty},
    )


#: Extended Yale B's file names carry the light source's direction: ``yaleB01_P00A+035E-20.pgm`` =
#: azimuth +35 degrees, elevation -20 degrees from the camera axis.
_YALEB_LIGHT = re.compile(r"_P\d+A([+-]\d+)E([+-]\d+)(?:\.[A-Za-z0-9]+)?$")


def yaleb_light_angles(keys) -> tuple[np.ndarray, np.ndarray]:
    """Light-source azimuth and elevation (degrees) of Extended Yale B images, from their keys.

    Args:
        keys: image keys or file names ending in ``_P00A+035E-20.pgm`` (the extension is optional).

    Returns:
        (azimuth, elevation), int arrays with one entry per key.

    Raises:
        ValueError: naming the first key that carries no Yale B light direction.
    """
    azimuth, elevation = [], []
    for key in keys:
        match = _YALEB_LIGHT.search(str(key))
        if match is None:
            raise ValueError(f"{key!r} does not name an Extended Yale B light direction "
                             "(expected a file name such as yaleB01_P00A+035E-20.pgm)")
        azimuth.append(int(match[1]))
        elevation.append(int(match[2]))
    return np.asarray(azimuth, dtype=np.int64), np.asarray(elevation, dtype=np.int64)


def select_even_light(data: LabeledImages, max_angle: float) -> LabeledImages:
    """The Extended Yale B images lit from near the camera: light azimuth and elevation both within
    ``max_angle`` degrees (25 keeps 18-19 of each person's 64 conditions, the near-frontal, evenly
    lit faces; AT&T's faces are all evenly lit).

    Args:
        data: an Extended Yale B identity set (keys are its file names).
        max_angle: largest absolute azimuth and elevation kept, in degrees (>= 0).

    Returns:
        the kept images, labels and identities unchanged; ``meta["max_light_angle"]`` records the filter.
    """
    if not max_angle >= 0:
        raise ValueError(f"max_light_angle must be >= 0 degrees, got {max_angle}")
    azimuth, elevation = yaleb_light_angles(data.keys)
    part = data.subset(np.flatnonzero((np.abs(azimuth) <= max_angle) & (np.abs(elevation) <= max_angle)))
    if len(part) == 0:
        raise ValueError(f"no image has its light within {max_angle} degrees of the camera axis")
    part.meta["max_light_angle"] = float(max_angle)
    return part


def load_identity_set(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None,
    channels: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    crop: str = "center",
    skip_ambient: bool = True,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    rebuild: bool = False,
) -> LabeledImages:
    """An identity set (one folder per person) for re-identification.

    Args:
        path: root with one sub-folder per person.
        size: output side or (H, W); ``None`` keeps the most common native size (192 x 168 for
            Yale B, 112 x 92 for AT&T) and skips images of other sizes with a reason.
        channels: ``None``: 1 when every image is grey, else 3.
        skip_ambient: skip Yale B's ``*_Ambient`` frames (see :func:`identity_entries`).

    Returns:
        LabeledImages, labels = identities = person index; class_names = person folder names.
    """
    entries = identity_entries(path, skip_ambient)
    prep = Preprocess(size=normalize_size(size), crop=crop, channels=channels)
    return _to_labeled("identities", entries, prep, cache_dir, workers, strict, progress, rebuild=rebuild)


# ----------------------------------------------------------------------------- common

def _to_labeled(kind, entries, prep, cache_dir, workers, strict, progress, key=None, rebuild=False) -> LabeledImages:
    cached = build_or_open(kind, entries, prep, cache_dir=cache_dir, workers=workers,
                           strict=strict, progress=progress, key=key, rebuild=rebuild)
    return _labeled_from_cache(kind, cached)


def _labeled_from_cache(kind: str, cached: CachedSet) -> LabeledImages:
    rows = cached.rows
    info = cached.manifest.get("info", {})
    meta: dict[str, Any] = {
        "source": kind,
        "root": info.get("root"),
        "paths": cached.paths,
        "preprocess": cached.manifest["preprocess"],
        "cache": {"folder": str(cached.folder), "hash": cached.manifest["hash"]},
        "skipped": cached.skipped,
    }
    for k in ("partition", "attributes", "attributes_known"):
        if k in rows:
            meta[k] = rows[k]
    for k in ("attribute_names", "labels_without_image", "partitions", "empty_person_folders"):
        if k in info:
            meta[k] = info[k]
    if kind == "celeba" and info.get("labels_without_image"):
        # Said once per load (also on a cache hit): the set is a subset of the label files.
        log.warning("CelebA: %d labelled images are absent from %s; using the %d cached",
                    info["labels_without_image"], info.get("root"), len(cached.images))
    return LabeledImages(
        images=cached.images,
        labels=rows["labels"].astype(np.int64),
        class_names=list(cached.class_names),
        keys=list(cached.keys),
        identities=rows["identities"].astype(np.int64) if "identities" in rows else None,
        meta=meta,
    )


def detect_kind(path: str | os.PathLike) -> str:
    """``celeba`` (official layout), ``identities`` (only person sub-folders hold images) or ``folder``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        return "folder"
    if (path / "img_align_celeba").is_dir() or (path / "identity_CelebA.txt").is_file():
        return "celeba"
    subdirs, top_images = 0, 0
    for entry in os.scandir(path):
        if entry.name.startswith("."):
            continue
        if _is_dir(entry):
            subdirs += 1
        elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
            top_images += 1
    return "identities" if subdirs >= 2 and top_images == 0 else "folder"


def load_source(spec: str | os.PathLike | Mapping[str, Any], size: int | tuple[int, int] | None, **kwargs) -> LabeledImages:
    """Load any source from a path or a one-key mapping.

    Args:
        spec: a path (kind detected by :func:`detect_kind`), or ``{"celeba": path, ...options}``,
            ``{"folder": path, ...}``, ``{"identities": path, ...}``, ``{"synthetic": {...}}``;
            extra keys of the mapping are passed on as options (e.g. ``partitions``, ``limit``,
            ``class_name``).
        size: output side or (H, W).
        **kwargs: options for the loader (``cache_dir``, ``workers``, ``strict``, ...).
    """
    if isinstance(spec, (str, os.PathLike)):
        kind = detect_kind(spec)
        options: dict[str, Any] = {}
        target = spec
    elif isinstance(spec, Mapping):
        kinds = [k for k in ("celeba", "folder", "identities", "synthetic") if k in spec]
        if len(kinds) != 1:
            raise ValueError(
                "a source mapping needs exactly one of 'celeba', 'folder', 'identities', 'synthetic', "
                f"got keys {sorted(spec)}"
            )
        kind = kinds[0]
        target = spec[kind]
        options = {k: v for k, v in spec.items() if k != kind}
    else:
        raise ValueError(f"a source is a path or a mapping, got {type(spec).__name__}")
    options.update(kwargs)
    if kind == "synthetic":
        from privattrib.data.synthetic import synthetic_faces

        params = dict(target or {})
        params.update({k: v for k, v in options.items() if k in ("n_identities", "per_identity", "channels", "seed")})
        if size is not None:
            params["size"] = size if isinstance(size, int) else int(size[0])
        return synthetic_faces(**params)
    if kind == "celeba":
        return load_celeba(target, size=size, **options)
    if kind == "identities":
        return load_identity_set(target, size, **options)
    return load_folder(target, size, **options)


def check_path(
    path: str | os.PathLike,
    kind: str = "auto",
    *,
    workers: int | None = None,
    progress: bool = False,
    skip_ambient: bool = True,
    max_pixels: int | None = None,
) -> dict:
    """Decode every candidate file under ``path`` and report what is usable, writing nothing.

    Returns:
        ``{"kind", "path", "images", "identities", "classes", "sizes", "skipped": [{path, reason}], ...}``
        where ``images`` counts usable images, ``identities`` distinct people (CelebA and identity
        sets, else None), ``classes`` the class names where they apply, ``sizes`` a count per
        ``"WxH xC"`` shape. CelebA adds ``labels_without_image`` and per-partition counts.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    if kind == "auto":
        kind = detect_kind(path)
    if kind == "celeba":
        entries = celeba_entries(path)
    elif kind == "identities":
        entries = identity_entries(path, skip_ambient)
    elif path.is_file():
        files, skip = walk_images(path)
        entries = Entries(paths=[str(p) for p in files], keys=[p.name for p in files],
                          rows={"labels": np.zeros(len(files), dtype=np.int64)},
                          class_names=[path.stem], skipped=skip, info={"root": str(path)})
    else:
        entries = folder_entries(path)
    good, skipped, shapes = validate(entries, max_pixels=max_pixels, workers=workers, progress=progress)
    report: dict[str, Any] = {
        "kind": kind,
        "path": str(path),
        "images": int(len(good)),
        "identities": None,
        "classes": None,
        "sizes": {f"{wh} x{c}": n for (wh, c), n in shapes.most_common()},
        "skipped": skipped,
    }
    if kind == "identities":
        ids = entries.rows["identities"][good]
        present = sorted(set(ids.tolist()))
        report["identities"] = len(present)
        report["classes"] = [entries.class_names[i] for i in present]
        per = np.bincount(ids, minlength=len(entries.class_names))
        report["images_per_identity"] = {"min": int(per[present].min()) if present else 0,
                                         "max": int(per.max()) if len(per) else 0}
        report["empty_person_folders"] = [n for i, n in enumerate(entries.class_names) if per[i] == 0]
    elif kind == "celeba":
        ids = entries.rows["identities"][good]
        part = entries.rows["partition"][good]
        report["identities"] = int(len(np.unique(ids)))
        report["classes"] = list(entries.class_names)
        report["partitions"] = {PARTITION_NAMES[p]: int((part == p).sum()) for p in range(3)}
        report["labels_without_image"] = entries.info["labels_without_image"]
        report["attributes"] = len(entries.info["attribute_names"])
        if "attributes_known" in entries.rows:
            report["images_with_attributes"] = int(entries.rows["attributes_known"][good].sum())
    else:
        report["classes"] = list(entries.class_names)
    return report
