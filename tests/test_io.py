"""Single-file I/O: every odd-but-valid file is converted, every bad one refused with a reason."""

from __future__ import annotations

import builtins
import errno
import pickle
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from bad_files import SECRET, bad_names, bomb_png, good_names, gradient_rgb, make_corpus
from privattrib.data import BadImageError, load_image, save_png, walk_images
from privattrib.data.io import encode_png


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


def test_every_good_file_loads_with_its_shape(corpus):
    root, expect = corpus
    for name in good_names(expect):
        arr = load_image(root / name)
        assert arr.dtype == np.uint8 and arr.flags["C_CONTIGUOUS"], name
        assert arr.shape == expect[name].shape, name


def test_every_bad_file_is_refused_with_its_reason(corpus):
    root, expect = corpus
    for name in bad_names(expect):
        if name in ("notes.txt", "face.pgm.bad"):
            continue  # refused by extension in walk_images, not by load_image
        with pytest.raises(BadImageError) as info:
            load_image(root / name)
        assert expect[name].reason in info.value.reason, (name, info.value.reason)
        assert info.value.path.endswith(name)
        assert info.value.too_large == ("bomb" in name)  # the bomb for its size, the rest for content


def test_decompression_bomb_is_refused_fast_without_allocating(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(60000, 60000))
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(BadImageError, match="decompression") as info:
        load_image(path)
    assert info.value.too_large
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0
    assert peak < 50e6  # 60000^2 RGB would be 10.8 GB


def test_limit_is_explicit_and_adjustable(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(gradient_rgb(40, 50)).save(path)
    with pytest.raises(BadImageError, match="2,000 pixels, over the limit of 1,000") as info:
        load_image(path, max_pixels=1000)
    again = pickle.loads(pickle.dumps(info.value))  # as it crosses a worker process
    assert again.too_large and again.reason == info.value.reason and again.path == info.value.path
    assert load_image(path, max_pixels=2000).shape == (40, 50, 3)


def test_exif_orientation_is_applied(corpus):
    root, _ = corpus
    stored = load_image(root / "good.jpg")
    shown = load_image(root / "exif_rotated.jpg")
    # Orientation 6 = rotate 90 degrees clockwise for display.
    expected = np.rot90(stored, k=-1)
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected.astype(int)).mean() < 3  # JPEG noise only


def test_16_bit_is_scaled_not_clipped(corpus):
    root, _ = corpus
    arr = load_image(root / "deep16.png")[:, :, 0]
    expected = np.rint((np.mgrid[0:20, 0:30][1] * 2000) / 257.0)
    assert np.array_equal(arr, expected.astype(np.uint8))
    assert arr.max() > 200  # a clip to 255 would leave most columns saturated instead


def test_alpha_is_flattened_and_transparent_colour_dropped(corpus):
    root, _ = corpus
    arr = load_image(root / "rgba.png")
    assert arr.shape[2] == 3
    assert (arr[:10] == 0).all()  # transparent rows: black, original colour gone
    assert np.array_equal(arr[10:], gradient_rgb(30, 40)[10:])


def test_cmyk_and_palette_become_rgb(corpus):
    root, _ = corpus
    ref = gradient_rgb(30, 40).astype(int)
    cmyk = load_image(root / "cmyk.jpg").astype(int)
    assert np.abs(cmyk - ref).mean() < 6
    pal = load_image(root / "palette_transparent.png")
    assert pal.shape == (30, 40, 3)



@pytest.mark.parametrize("channels", [1, 3])
def test_channels_option(corpus, channels):
    root, _ = corpus
    for name in ("good.png", "grey.png"):
        assert load_image(root / name, channels=channels).shape[2] == channels
    grey = load_image(root / "grey.png", channels=3)
    assert (grey[:, :, 0] == grey[:, :, 2]).all()


def test_bad_channels_value():
    with pytest.raises(ValueError, match="channels must be None, 1 or 3"):
        load_image("x.png", channels=2)


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    """chmod 000 does not stop root, so the permission error is injected at open()."""
    path = tmp_path / "locked.png"
    Image.fromarray(gradient_rgb(8, 8)).save(path)
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(BadImageError, match="permission denied"):
        load_image(path)


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        kinds.append(kind)
        pos += 12 + length
    return kinds


def test_save_png_writes_pixels_only(corpus, tmp_path):
    root, _ = corpus
    for name in ("metadata.png", "exif_rotated.jpg"):
        arr = load_image(root / name)
        out = tmp_path / (name + ".png")
        save_png(out, arr)
        data = out.read_bytes()
        assert set(_png_chunks(data)) == {b"IHDR", b"IDAT", b"IEND"}
        assert SECRET.encode() not in data and b"GPS" not in data
        back = Image.open(out)
        assert back.mode in ("RGB", "L") and not back.info.get("icc_profile") and not back.getexif()
        assert np.array_equal(np.asarray(back), arr)


def test_save_png_refuses_inputs_and_alpha(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(gradient_rgb(8, 8)).save(src)
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        save_png(src, load_image(src), protect=[src])
    with pytest.raises(ValueError, match="no alpha"):
        save_png(tmp_path / "a.png", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4), np.float32))
    save_png(tmp_path / "g.png", np.zeros((4, 5, 1), np.uint8))
    assert Image.open(tmp_path / "g.png").mode == "L"


def test_walk_lists_images_and_says_why_others_were_left(corpus):
    root, expect = corpus
    files, skipped = walk_images(root)
    rel = {p.relative_to(root).as_posix() for p in files}
    assert "nested/deeper/inner.png" in rel
    assert "notes.txt" not in rel and "face.pgm.bad" not in rel
    reasons = {s.path.replace(str(root) + "/", ""): s.reason for s in skipped}
    assert "not an image file" in reasons["notes.txt"]
    assert "not an image file" in reasons["face.pgm.bad"]
    assert any("symlink loop" in r for r in reasons.values())  # nested/deeper/up -> nested
    ordered = [p.relative_to(root).as_posix() for p in files]
    assert ordered == sorted(ordered)
