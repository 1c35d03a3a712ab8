"""Generator of a corpus of bad and odd image files, for any test that must not crash on them.

    from bad_files import make_corpus
    corpus = make_corpus(tmp_path / "corpus")   # {relative name: Expect}

Every entry says whether a loader must keep it (``ok``, with the shape it must come out as) or
skip it (``reason``: a fragment the skip reason must contain). Odd-but-valid files (16-bit, CMYK,
palette with transparency, RGBA, EXIF-rotated, 1 x 1, grey among RGB) must be kept; broken or
non-image files must be skipped with a clear reason; nothing may hang (FIFO, symlink loops).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

#: A marker written into every metadata field, so tests can grep outputs for leaks.
SECRET = "SECRET-GPS-48.8584N-2.2945E"


@dataclass(frozen=True)
class Expect:
    ok: bool
    shape: tuple[int, int, int] | None = None  # H x W x C after load_image(channels=None)
    reason: str | None = None  # fragment of the skip reason


def gradient_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric test picture (so rotations and flips are detectable)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + 2 * yy) % 256], -1)
    img = img + rng.integers(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A valid-looking PNG whose header claims ``width`` x ``height`` pixels, with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def exif_with_secret(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010E] = SECRET  # ImageDescription
    exif[0x013B] = SECRET  # Artist
    gps = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x8825] = gps  # GPS IFD
    return exif


def metadata_png(path: Path) -> None:
    """An RGB PNG carrying text, XMP-like iTXt, an ICC profile and EXIF, all with SECRET."""
    from PIL import ImageCms

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", SECRET)
    info.add_itxt("XML:com.adobe.xmp", f"<x:xmpmeta><rdf:Description>{SECRET}</rdf:Description></x:xmpmeta>")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(gradient_rgb(24, 32, 7)).save(path, pnginfo=info, icc_profile=icc, exif=exif_with_secret())


def make_corpus(root: str | os.PathLike) -> dict[str, Expect]:
    """Write the corpus under ``root``; returns {path relative to root: Expect}."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ex: dict[str, Expect] = {}

    def save(name: str, im: Image.Image, expect: Expect, **kw) -> None:
        im.save(root / name, **kw)
        ex[name] = expect

    rgb = gradient_rgb(30, 40)
    save("good.jpg", Image.fromarray(rgb), Expect(True, (30, 40, 3)), quality=95)
    save("good.png", Image.fromarray(rgb), Expect(True, (30, 40, 3)))
    save("grey.png", Image.fromarray(rgb[:, :, 0]), Expect(True, (30, 40, 1)))
    save("grey.pgm", Image.fromarray(rgb[:, :, 1]), Expect(True, (30, 40, 1)))
    save("pic.webp", Image.fromarray(rgb), Expect(True, (30, 40, 3)), lossless=True)
    save("pic.bmp", Image.fromarray(rgb), Expect(True, (30, 40, 3)))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), Expect(True, (30, 40, 3)), quality=95)
    rgba = np.concatenate([rgb, np.full((30, 40, 1), 255, np.uint8)], -1)
    rgba[:10, :, 3] = 0  # fully transparent top rows: the colour under them must not survive
    save("rgba.png", Image.fromarray(rgba, "RGBA"), Expect(True, (30, 40, 3)))
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    save("palette_transparent.png", pal, Expect(True, (30, 40, 3)), transparency=0)
    save("tiny.png", Image.fromarray(np.array([[[200, 10, 30]]], np.uint8)), Expect(True, (1, 1, 3)))
    # EXIF orientation 6 (rotate 90 CW to display): stored 30 x 40 shows as 40 x 30.
    save("exif_rotated.jpg", Image.fromarray(rgb), Expect(True, (40, 30, 3)), quality=95,
         exif=exif_with_secret(orientation=6).tobytes())
    metadata_png(root / "metadata.png")
    ex["metadata.png"] = Expect(True, (24, 32, 3))
    deep = (np.mgrid[0:20, 0:30][1] * 2000).astype(np.uint16)  # 0 .. 58000
    import cv2

    cv2.imwrite(str(root / "deep16.png"), deep)
    ex["deep16.png"] = Expect(True, (20, 30, 1))

    jpeg = io.BytesIO()
    Image.fromarray(gradient_rgb(64, 64, 3)).save(jpeg, format="JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    ex["truncated.jpg"] = Expect(False, reason="truncated")
    (root / "empty.jpg").write_bytes(b"")
    ex["empty.jpg"] = Expect(False, reason="empty file")
    (root / "text.jpg").write_text("this is not a picture\n")
    ex["text.jpg"] = Expect(False, reason="not an image")
    (root / "bomb.png").write_bytes(bomb_png())
    ex["bomb.png"] = Expect(False, reason="decompression")
    (root / "notes.txt").write_text("hello")
    ex["notes.txt"] = Expect(False, reason="not an image file")
    (root / "face.pgm.bad").write_bytes(b"P5\n2 2\n255\n\x00\x01\x02\x03")
    ex["face.pgm.bad"] = Expect(False, reason="not an image file")
    os.symlink("loop.jpg", root / "loop.jpg")
    ex["loop.jpg"] = Expect(False, reason="symlink loop")
    os.symlink("does-not-exist.jpg", root / "broken_link.jpg")
    ex["broken_link.jpg"] = Expect(False, reason="broken symlink")
    os.mkfifo(root / "fifo.jpg")
    ex["fifo.jpg"] = Expect(False, reason="not a regular file")
    (root / "empty_folder").mkdir()
    sub = root / "nested" / "deeper"
    sub.mkdir(parents=True)
    Image.fromarray(gradient_rgb(16, 16, 5)).save(sub / "inner.png")
    ex["nested/deeper/inner.png"] = Expect(True, (16, 16, 3))
    os.symlink("..", sub / "up")  # a folder symlink loop: nested/deeper/up -> nested
    # Unreadable: chmod 000 works for normal users; tests running as root simulate it instead.
    Image.fromarray(rgb).save(root / "unreadable.png")
    os.chmod(root / "unreadable.png", 0)
    ex["unreadable.png"] = (
        Expect(False, reason="permission denied") if os.geteuid() != 0 else Expect(True, (30, 40, 3))
    )
    return ex


def good_names(expect: dict[str, Expect]) -> list[str]:
    return sorted(k for k, v in expect.items() if v.ok)


def bad_names(expect: dict[str, Expect]) -> list[str]:
    return sorted(k for k, v in expect.items() if not v.ok)
