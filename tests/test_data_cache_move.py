"""The decode cache survives a move: entries are named by file contents and paths relative to the
source root, so a copy of a source and its cache in another clone (or on another node) is a hit."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bad_files import gradient_rgb
from privattrib.data import load_celeba, load_folder, load_identity_set
from privattrib.data import cache as cache_module
from privattrib.data.cache import STAT_FORMAT, entries_key
from privattrib.data.preprocess import Preprocess
from privattrib.data.sources import folder_entries


def _no_decoding(monkeypatch):
    """Make any decode fail loudly: a cache hit must not decode a single file."""

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was rebuilt: a file was decoded")

    monkeypatch.setattr(cache_module, "_work_chunk", refuse)
    monkeypatch.setattr(cache_module, "_probe_chunk", refuse)


def _people(root: Path, n_people: int = 3, per: int = 4) -> None:
    for i in range(n_people):
        (root / f"s{i + 1}").mkdir(parents=True)
        for j in range(per):
            Image.fromarray(gradient_rgb(20, 16, seed=10 * i + j)).save(root / f"s{i + 1}" / f"{j}.png")


def test_copied_source_and_cache_are_a_hit_elsewhere(tmp_path, monkeypatch):
    clone_a = tmp_path / "node-a"
    _people(clone_a / "data" / "faces")
    (clone_a / "data" / "faces" / "notes.txt").write_text("not an image")  # a skipped file
    a = load_identity_set(clone_a / "data" / "faces", 12, cache_dir=clone_a / "cache", workers=1, progress=False)
    assert a.meta["skipped"][0]["path"] == str(clone_a / "data" / "faces" / "notes.txt")

    # Another node: cp without -p gives every file a new mtime, and the absolute paths differ.
    clone_b = tmp_path / "elsewhere" / "node-b"
    shutil.copytree(clone_a, clone_b, copy_function=shutil.copy)
    shutil.rmtree(clone_a)
    _no_decoding(monkeypatch)
    b = load_identity_set(clone_b / "data" / "faces", 12, cache_dir=clone_b / "cache", workers=1, progress=False)
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images)) and a.keys == b.keys
    assert Path(b.meta["cache"]["folder"]).parent == clone_b / "cache"
    # Paths name the files where they are now, not where the cache was built.
    assert b.meta["paths"][0] == str(clone_b / "data" / "faces" / "s1" / "0.png")
    assert b.meta["skipped"][0]["path"] == str(clone_b / "data" / "faces" / "notes.txt")
    # The content hash was recorded under the new stat signature: the next load reads no file.
    monkeypatch.setattr(cache_module, "file_digest", lambda p: pytest.fail("contents hashed again"))
    c = load_identity_set(clone_b / "data" / "faces", 12, cache_dir=clone_b / "cache", workers=1, progress=False)
    assert c.meta["cache"]["folder"] == b.meta["cache"]["folder"]


def test_changed_content_is_a_miss_even_with_the_same_size_and_mtime(tmp_path):
    def save(seed: int, path: Path) -> None:  # stored (uncompressed) PNG: the size depends only on W x H
        Image.fromarray(gradient_rgb(16, 16, seed=seed)).save(path, compress_level=0)

    src = tmp_path / "imgs"
    src.mkdir()
    for j in range(3):
        save(j, src / f"{j}.png")
    a = load_folder(src, 8, cache_dir=tmp_path / "cache", workers=1, progress=False)
    moved = tmp_path / "moved" / "imgs"
    shutil.copytree(src, moved)  # copy2: same mtimes
    # Same name, size and mtime, other pixels: the stat pre-check misses (other path) and the
    # content hash must then tell the difference.
    stat = os.stat(moved / "0.png")
    save(99, moved / "0.png")
    os.utime(moved / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = os.stat(moved / "0.png")
    assert (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    b = load_folder(moved, 8, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert b.meta["cache"]["folder"] != a.meta["cache"]["folder"]
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert np.array_equal(np.asarray(a.images[1:]), np.asarray(b.images[1:]))


def test_format1_entry_is_adopted_without_decoding(tmp_path, monkeypatch):
    """A cache built by privattrib before CACHE_FORMAT 2 (named by the stat hash, absolute paths)
    is renamed to its content name on first use instead of being rebuilt."""
    src = tmp_path / "imgs"
    src.mkdir()
    for j in range(4):
        Image.fromarray(gradient_rgb(16, 16, seed=j)).save(src / f"{j}.png")
    cache = tmp_path / "cache"
    a = load_folder(src, 8, cache_dir=cache, workers=1, progress=False)
    folder = Path(a.meta["cache"]["folder"])
    # Turn it into what format 1 wrote.
    key = entries_key("folder", folder_entries(src), Preprocess(size=(8, 8), crop="center", channels=3))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(format=STAT_FORMAT, hash=key.stat_hash, paths=[str(src / p) for p in manifest["paths"]])
    del manifest["root"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    legacy = cache / f"folder-{key.stat_hash}"
    os.rename(folder, legacy)
    shutil.rmtree(cache / "aliases")
    _no_decoding(monkeypatch)
    b = load_folder(src, 8, cache_dir=cache, workers=1, progress=False)
    assert b.meta["cache"]["folder"] == str(folder) and not legacy.exists()
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
    adopted = json.loads((folder / "manifest.json").read_text())
    assert adopted["format"] == 2 and adopted["paths"][0] == "0.png" and adopted["adopted_from"] == legacy.name


@pytest.mark.shared_data
def test_celeba_cache_moves_with_a_copy_of_the_data(celeba_root, tmp_path, monkeypatch):
    """CelebA's own key (listing + label files) is move-proof too; the copy holds 40 images."""
    root = tmp_path / "a" / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    for name in sorted(os.listdir(celeba_root / "img_align_celeba"))[:40]:
        shutil.copy(celeba_root / "img_align_celeba" / name, root / "img_align_celeba" / name)
    for name in ("identity_CelebA.txt", "list_eval_partition.txt"):
        os.symlink(celeba_root / name, root / name)  # label files: content read through the link
    a = load_celeba(root, size=16, cache_dir=tmp_path / "a" / "cache", workers=1, progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy, symlinks=True)
    _no_decoding(monkeypatch)
    b = load_celeba(tmp_path / "b" / "celeba", size=16, cache_dir=tmp_path / "b" / "cache", workers=1,
                    progress=False)
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images)) and a.keys == b.keys
    assert b.meta["paths"][0].startswith(str(tmp_path / "b" / "celeba"))


def test_gan_run_resumes_after_its_data_moved(tmp_path):
    """A GAN run keys its data by the pixels' fingerprint; the source's root (informative, in the
    images' meta) changes with a move and must not make the resume refuse the run."""
    import torch

    from privattrib.data.dataset import LabeledImages
    from privattrib.gans import train_gan

    images = np.stack([gradient_rgb(32, 32, seed=j).transpose(2, 0, 1) for j in range(16)])

    def at(root: str) -> LabeledImages:
        return LabeledImages(images, np.zeros(16, np.int64), ["real"], [f"r{j}" for j in range(16)],
                             meta={"source": "folder", "root": root})

    kw = dict(size=32, batch_size=8, progress=False, overrides={"width": 8, "z_dim": 8, "quality_samples": 8})
    run = train_gan("dcgan", at("/node-a/data/faces"), steps=1, out=tmp_path / "run", **kw)
    run = train_gan("dcgan", at("/node-b/elsewhere/faces"), steps=2, out=tmp_path / "run", **kw)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 2
    with pytest.raises(ValueError, match="different configuration"):  # other pixels are still refused
        other = at("/node-b/elsewhere/faces")
        other.images = 255 - images
        train_gan("dcgan", other, steps=3, out=tmp_path / "run", **kw)
