"""Sources, the uint8 cache and its manifest, on generated sets and on the real data."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bad_files import bad_names, good_names, gradient_rgb, make_corpus
from privattrib.data import (
    BadImageError,
    check_path,
    detect_kind,
    load_celeba,
    load_folder,
    load_identity_set,
    load_image,
    load_source,
    synthetic_faces,
)
from privattrib.data.cache import default_cache_dir
from privattrib.data.preprocess import YU2019_CENTER, Preprocess, crop_box, prepare


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _write_set(root: Path, people: dict[str, int], size=(24, 20), grey=False) -> None:
    for i, (person, n) in enumerate(people.items()):
        (root / person).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            img = gradient_rgb(*size, seed=100 * i + j)
            Image.fromarray(img[:, :, 0] if grey else img).save(root / person / f"{j + 1}.png")


# ----------------------------------------------------------------------------- cache

def test_folder_cache_is_built_once_and_reused(tmp_path, cache):
    src = tmp_path / "imgs"
    src.mkdir()
    for j in range(5):
        Image.fromarray(gradient_rgb(32, 48, seed=j)).save(src / f"{j}.png")
    a = load_folder(src, 16, cache_dir=cache, workers=1, progress=False)
    assert a.images.shape == (5, 3, 16, 16) and a.images.dtype == np.uint8
    assert isinstance(a.images, np.memmap) and not a.images.flags.writeable
    assert a.class_names == ["imgs"] and (a.labels == 0).all()
    assert a.keys == [f"imgs/{j}.png" for j in range(5)]
    folder = Path(a.meta["cache"]["folder"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["shape"] == [5, 3, 16, 16] and manifest["preprocess"]["size"] == [16, 16]
    assert len(manifest["paths"]) == 5 and manifest["hash"] in folder.name
    mtime = (folder / "images.npy").stat().st_mtime_ns
    b = load_folder(src, 16, cache_dir=cache, workers=1, progress=False)
    assert b.meta["cache"]["folder"] == str(folder)
    assert (folder / "images.npy").stat().st_mtime_ns == mtime  # reused, not rewritten
    assert np.array_equal(a.images, b.images)
    # Anything that changes: a file's content, the parameters, a new file -> a new entry.
    time.sleep(0.01)
    Image.fromarray(gradient_rgb(32, 48, seed=99)).save(src / "0.png")
    c = load_folder(src, 16, cache_dir=cache, workers=1, progress=False)
    assert c.meta["cache"]["folder"] != str(folder)
    assert not np.array_equal(c.images[0], a.images[0]) and np.array_equal(c.images[1:], a.images[1:])
    d = load_folder(src, 8, cache_dir=cache, workers=1, progress=False)
    assert d.images.shape == (5, 3, 8, 8)
    Image.fromarray(gradient_rgb(32, 48, seed=7)).save(src / "5.png")
    assert len(load_folder(src, 16, cache_dir=cache, workers=1, progress=False)) == 6
    # No temporary folders left behind.
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PRIVATTRIB_CACHE", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    monkeypatch.delenv("PRIVATTRIB_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "privattrib"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_shape(path: Path) -> None:
    manifest = json.loads(path.read_text())
    del manifest["shape"]
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("name, damage", [
    ("images.npy", lambda p: p.write_bytes(b"garbage")),
    ("images.npy", _truncate),
    ("rows.npz", _truncate),  # zipfile's BadZipFile is no OSError
    ("rows.npz", os.unlink),
    ("manifest.json", lambda p: p.write_text("{")),
    ("manifest.json", _drop_shape),
], ids=["npy-garbage", "npy-truncated", "npz-truncated", "npz-missing", "manifest-garbage", "manifest-field"])
def test_damaged_entry_is_rebuilt_and_named_once(tmp_path, cache, caplog, name, damage):
    src = tmp_path / "imgs"
    src.mkdir()
    for j in range(2):
        Image.fromarray(gradient_rgb(16, 16, seed=j)).save(src / f"{j}.png")
    a = load_folder(src, 8, cache_dir=cache, workers=1, progress=False)
    folder = Path(a.meta["cache"]["folder"])
    expected = np.array(a.images)
    del a
    damage(folder / name)
    with caplog.at_level(logging.WARNING, logger="privattrib.data"):
        b = load_folder(src, 8, cache_dir=cache, workers=1, progress=False)
    warnings = [r.getMessage() for r in caplog.records if "damaged cache entry" in r.getMessage()]
    assert len(warnings) == 1 and str(folder) in warnings[0] and "rebuilt" in warnings[0], warnings
    assert b.meta["cache"]["folder"] == str(folder)  # rebuilt in place
    assert np.array_equal(np.asarray(b.images), expected)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no stale or temporary folder left


def test_parallel_build_equals_serial_and_skips_the_same(tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    for j in range(300):
        Image.fromarray(gradient_rgb(20, 20, seed=j)).save(src / f"{j:03d}.png")
    (src / "150_bad.png").write_bytes(b"not a png")
    serial = load_folder(src, 12, cache_dir=tmp_path / "c1", workers=1, progress=False)
    parallel = load_folder(src, 12, cache_dir=tmp_path / "c2", workers=2, progress=False)
    assert len(serial) == len(parallel) == 300
    assert np.array_equal(serial.images, parallel.images) and serial.keys == parallel.keys
    assert [s["path"] for s in parallel.meta["skipped"]] == [str(src / "150_bad.png")]


def test_bad_corpus_is_skipped_with_reasons_and_strict_is_fatal(tmp_path, cache):
    expect = make_corpus(tmp_path / "corpus")
    data = load_folder(tmp_path / "corpus", 16, cache_dir=cache, workers=1, progress=False)
    kept = sorted(k.split("/", 1)[1] for k in data.keys)
    assert kept == good_names(expect)
    reasons = {s["path"].replace(str(tmp_path / "corpus") + "/", ""): s["reason"] for s in data.meta["skipped"]}
    for name in bad_names(expect):
        assert expect[name].reason in reasons[name], (name, reasons.get(name))
    with pytest.raises(BadImageError):
        load_folder(tmp_path / "corpus", 16, cache_dir=cache, workers=1, progress=False, strict=True)


def test_empty_folder_is_a_clear_error(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files found"):
        load_folder(tmp_path / "empty", 16, cache_dir=cache, progress=False)
    report = check_path(tmp_path / "empty", workers=1)
    assert report["images"] == 0 and report["skipped"] == []


def test_native_size_skips_other_sizes(tmp_path, cache):
    _write_set(tmp_path / "ids", {"s1": 3, "s2": 3})
    Image.fromarray(gradient_rgb(50, 50)).save(tmp_path / "ids" / "s2" / "odd.png")
    data = load_identity_set(tmp_path / "ids", None, cache_dir=cache, workers=1, progress=False)
    assert data.images.shape == (6, 3, 24, 20)
    assert [s["reason"] for s in data.meta["skipped"]] == ["size 50x50 differs from the set's 20x24 (native-size set)"]
    # Native size copies pixels exactly.
    assert np.array_equal(data.images[0].transpose(1, 2, 0), load_image(tmp_path / "ids" / "s1" / "1.png"))


# ----------------------------------------------------------------------------- preprocessing

def test_yu2019_crop_geometry(tmp_path):
    img = gradient_rgb(218, 178)
    Image.fromarray(img).save(tmp_path / "a.png")
    assert crop_box(178, 218, "yu2019", (128, 128)) == (25, 57, 153, 185)
    exact = prepare(tmp_path / "a.png", Preprocess(size=(128, 128), crop="yu2019"))
    assert np.array_equal(exact.transpose(1, 2, 0), img[57:185, 25:153])
    small = prepare(tmp_path / "a.png", Preprocess(size=(64, 64), crop="yu2019"))
    box_mean = img[57:185, 25:153].reshape(-1, 3).mean(0)
    assert np.allclose(small.reshape(3, -1).mean(1), box_mean, atol=2)
    with pytest.raises(BadImageError, match="178x218"):
        Image.fromarray(gradient_rgb(100, 100)).save(tmp_path / "b.png")
        prepare(tmp_path / "b.png", Preprocess(size=(64, 64), crop="yu2019"))


def test_center_crop_and_draft_decode_agree(tmp_path):
    img = gradient_rgb(240, 320)
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    assert crop_box(320, 240, "center", (32, 32)) == (40, 0, 280, 240)
    fast = prepare(tmp_path / "a.jpg", Preprocess(size=(32, 32), crop="center", draft=True)).astype(int)
    full = prepare(tmp_path / "a.jpg", Preprocess(size=(32, 32), crop="center", draft=False)).astype(int)
    assert np.abs(fast - full).mean() < 3  # reduced-scale JPEG decoding changes only JPEG-level noise


def test_bad_parameters():
    with pytest.raises(ValueError, match="crop must be one of"):
        Preprocess(crop="square")
    with pytest.raises(ValueError, match="size must be"):
        load_folder(".", 0)
    with pytest.raises(ValueError, match="exactly one of"):
        load_source({"folder": "a", "celeba": "b"}, 16)


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_faces_are_deterministic_and_labelled():
    a = synthetic_faces(n_identities=4, per_identity=3, size=24, seed=1)
    b = synthetic_faces(n_identities=4, per_identity=3, size=24, seed=1)
    c = synthetic_faces(n_identities=4, per_identity=3, size=24, seed=2)
    assert a.images.shape == (12, 3, 24, 24) and a.meta["synthetic"] is True
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    assert a.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert a.class_names[0] == "synthetic-000" and a.keys[4] == "synthetic/001/001"
    # Identity is learnable: images of one person are closer to each other than to others'.
    x = a.images.reshape(12, -1).astype(float)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    same = d[a.labels[:, None] == a.labels[None]].sum() / (12 * 2)
    other = d[a.labels[:, None] != a.labels[None]].mean()
    assert same < other
    grey = synthetic_faces(2, 2, size=16, channels=1)
    assert grey.images.shape == (4, 1, 16, 16)
    with pytest.raises(ValueError):
        synthetic_faces(0)


def test_load_source_dispatch(tmp_path, cache):
    _write_set(tmp_path / "ids", {"alice": 2, "bob": 2})
    assert detect_kind(tmp_path / "ids") == "identities"
    ids = load_source(str(tmp_path / "ids"), 16, cache_dir=cache, workers=1, progress=False)
    assert ids.class_names == ["alice", "bob"] and ids.labels.tolist() == [0, 0, 1, 1]
    one = load_source({"folder": tmp_path / "ids", "class_name": "gan"}, 16, cache_dir=cache, workers=1, progress=False)
    assert one.class_names == ["gan"] and len(one) == 4
    syn = load_source({"synthetic": {"n_identities": 2, "per_identity": 2}}, 16)
    assert syn.images.shape == (4, 3, 16, 16)


def test_identity_order_is_natural_not_listing(tmp_path, cache):
    _write_set(tmp_path / "att", {"s10": 1, "s2": 1, "s1": 1}, grey=True)
    data = load_identity_set(tmp_path / "att", 16, cache_dir=cache, workers=1, progress=False)
    assert data.class_names == ["s1", "s2", "s10"]
    assert data.images.shape[1] == 1  # all grey -> one channel
    assert [data.class_names[i] for i in data.labels] == [k.split("/")[0] for k in data.keys]


# ----------------------------------------------------------------------------- real data

@pytest.mark.shared_data
def test_yaleb_check_counts(yaleb_root):
    report = check_path(yaleb_root, workers=2)
    assert report["kind"] == "identities"
    assert report["identities"] == 38 and report["images"] == 2414
    assert report["sizes"] == {"168x192 x1": 2414}
    reasons = [s["reason"] for s in report["skipped"]]
    assert sum(s["path"].endswith(".pgm.bad") for s in report["skipped"]) == 18
    assert sum(s["path"].endswith(".info") for s in report["skipped"]) == 38
    assert sum("ambient" in r for r in reasons) == 38
    assert len(report["skipped"]) == 94


@pytest.mark.shared_data
def test_yaleb_load_native(yaleb_root, cache):
    data = load_identity_set(yaleb_root, None, cache_dir=cache, progress=False)
    assert data.images.shape == (2414, 1, 192, 168)
    assert len(data.class_names) == 38 and data.class_names[0] == "yaleB01"
    assert np.bincount(data.identities).min() >= 59


@pytest.mark.shared_data
def test_celeba_subset_loads_with_labels(celeba_root, cache, caplog):
    with caplog.at_level(logging.WARNING, logger="privattrib.data"):
        data = load_celeba(celeba_root, size=32, limit=300, cache_dir=cache, progress=False)
    assert "192599 labelled images are absent" in caplog.text
    assert data.images.shape == (300, 3, 32, 32) and data.class_names == ["real"]
    names = [k.split("/")[1] for k in data.keys]
    assert names == sorted(names)
    ident = dict(line.split() for line in open(celeba_root / "identity_CelebA.txt"))
    assert data.identities.tolist() == [int(ident[n]) for n in names]
    assert (data.meta["partition"] == 0).all()  # the shared subset is all official train
    assert data.meta["attributes"].shape == (300, 40) and len(data.meta["attribute_names"]) == 40
    known = data.meta["attributes_known"]
    assert set(np.unique(data.meta["attributes"][known])) <= {-1, 1}
    assert (data.meta["attributes"][~known] == 0).all()
    # yu2019 at 128 is an exact crop of the file.
    full = load_celeba(celeba_root, size=128, limit=3, cache_dir=cache, progress=False)
    img = load_image(Path(full.meta["paths"][0]))
    cx, cy = YU2019_CENTER
    assert np.array_equal(full.images[0].transpose(1, 2, 0), img[cy - 64 : cy + 64, cx - 64 : cx + 64])
    with pytest.raises(ValueError, match="unknown CelebA partition"):
        load_celeba(celeba_root, partitions=["training"], cache_dir=cache)
    with pytest.raises(ValueError, match="no image files found"):  # the shared subset has no test images
        load_celeba(celeba_root, size=16, partitions=["test"], cache_dir=cache, progress=False)


@pytest.mark.shared_data
@pytest.mark.integration  # decodes all 10,000 JPEGs: about 15 s on 2 cores
def test_celeba_check(celeba_root):
    report = check_path(celeba_root, workers=2)
    assert report["kind"] == "celeba" and report["images"] == 10000
    assert report["identities"] == 2000 and report["partitions"] == {"train": 10000, "val": 0, "test": 0}
    assert report["labels_without_image"] == 202599 - 10000
    assert report["sizes"] == {"178x218 x3": 10000} and report["skipped"] == []


def _load_in_child(args):
    src, cache = args
    data = load_folder(src, 12, cache_dir=cache, workers=1, progress=False)
    return data.meta["cache"]["folder"], np.asarray(data.images).tobytes()


def test_concurrent_builders_agree_and_leave_one_entry(tmp_path, cache):
    import multiprocessing as mp

    src = tmp_path / "imgs"
    src.mkdir()
    for j in range(40):
        Image.fromarray(gradient_rgb(24, 24, seed=j)).save(src / f"{j:02d}.png")
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_load_in_child, [(src, cache)] * 3)
    assert len({r[0] for r in results}) == 1 and len({r[1] for r in results}) == 1
    # one entry, no temporaries left (aliases/ holds the stat pre-check's names)
    assert sorted(p.name for p in cache.iterdir()) == sorted([Path(results[0][0]).name, "aliases"])
    again = load_folder(src, 12, cache_dir=cache, workers=1, progress=False, rebuild=True)
    assert np.asarray(again.images).tobytes() == results[0][1]


def test_celeba_official_attribute_format_center_crop_and_dict_source(tmp_path, cache, caplog):
    """The official list_attr_celeba.txt starts with a count line; the shared subset's does not."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    for i in (1, 2, 3):
        Image.fromarray(gradient_rgb(218, 178, i)).save(root / "img_align_celeba" / f"{i:06d}.jpg", quality=95)
    (root / "img_align_celeba" / "000009.jpg").write_bytes(b"broken")  # labelled but corrupt
    (root / "img_align_celeba" / "999999.jpg").write_bytes(b"x")  # no label rows at all
    rows = [f"{i:06d}.jpg" for i in (1, 2, 3, 4, 9)]
    (root / "identity_CelebA.txt").write_text("".join(f"{r} {10 + k}\n" for k, r in enumerate(rows)))
    (root / "list_eval_partition.txt").write_text("".join(f"{r} {k % 3}\n" for k, r in enumerate(rows)))
    (root / "list_attr_celeba.txt").write_text(
        "5\nSmiling Male\n" + "".join(f"{r} {1 if k % 2 else -1} 1\n" for k, r in enumerate(rows)))
    with caplog.at_level(logging.WARNING, logger="privattrib.data"):
        data = load_source({"celeba": root, "class_name": "camera"}, (24, 20), crop="center",
                           cache_dir=cache, workers=1, progress=False)
    assert "1 labelled images are absent" in caplog.text  # 000004.jpg
    assert data.images.shape == (3, 3, 24, 20) and data.class_names == ["camera"]
    assert data.identities.tolist() == [10, 11, 12] and data.meta["partition"].tolist() == [0, 1, 2]
    assert data.meta["attribute_names"] == ["Smiling", "Male"]
    assert data.meta["attributes"].tolist() == [[-1, 1], [1, 1], [-1, 1]]
    reasons = {Path(s["path"]).name: s["reason"] for s in data.meta["skipped"]}
    assert "no identity label" in reasons["999999.jpg"] and "not an image" in reasons["000009.jpg"]
    val = load_celeba(root, size=16, partitions=["val"], cache_dir=cache, workers=1, progress=False)
    assert [k.split("/")[1] for k in val.keys] == ["000002.jpg"]
