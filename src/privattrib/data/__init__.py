"""The data layer: sources, preprocessing, the uint8 cache, splits, safe image I/O.

    from privattrib.data import load_celeba, load_identity_set, split_per_identity
    celeba = load_celeba("../shared/data/celeba", size=128)          # cached, memory-mapped
    yale = load_identity_set("../shared/data/yaleb", size=64)
    parts = split_per_identity(yale.identities, train=8, test=2, seed=0)

Names are imported lazily so that ``import privattrib.data`` stays cheap (decoding workers
import only what they use).
"""

from __future__ import annotations

from privattrib.common import lazy_exports

_EXPORTS = {
    "LabeledImages": "privattrib.data.dataset",
    "load_image": "privattrib.data.io",
    "load_image_bytes": "privattrib.data.io",
    "save_png": "privattrib.data.io",
    "encode_png": "privattrib.data.io",
    "walk_images": "privattrib.data.io",
    "BadImageError": "privattrib.data.io",
    "Skipped": "privattrib.data.io",
    "IMAGE_EXTENSIONS": "privattrib.data.io",
    "Preprocess": "privattrib.data.preprocess",
    "prepare": "privattrib.data.preprocess",
    "default_cache_dir": "privattrib.data.cache",
    "load_celeba": "privattrib.data.sources",
    "load_folder": "privattrib.data.sources",
    "load_identity_set": "privattrib.data.sources",
    "load_source": "privattrib.data.sources",
    "check_path": "privattrib.data.sources",
    "detect_kind": "privattrib.data.sources",
    "yaleb_light_angles": "privattrib.data.sources",
    "select_even_light": "privattrib.data.sources",
    "synthetic_faces": "privattrib.data.synthetic",
    "Split": "privattrib.data.splits",
    "split_per_class": "privattrib.data.splits",
    "split_per_identity": "privattrib.data.splits",
    "identity_disjoint_split": "privattrib.data.splits",
    "official_split": "privattrib.data.splits",
    "download_celeba": "privattrib.data.download",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
