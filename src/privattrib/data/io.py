"""Reading and writing single image files, safely.

``load_image`` (``load_image_bytes`` for an upload held in memory) turns any odd-but-valid file
(CMYK, 16-bit, palette, alpha, EXIF-rotated, 1 x 1) into a plain uint8 H x W x C array and
refuses everything else with a :class:`BadImageError` that names the file and says why.
``save_png`` writes pixels only, never metadata. ``walk_images`` lists the image files under a
folder without ever hanging (symlink loops, FIFOs) and says why each other entry was left out.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from privattrib.common import atomic_write_bytes

#: Extensions treated as images (lower case). Content decides in the end: a text file named
#: ``.jpg`` is refused by content, a PNG named ``.jpg`` is read as the PNG it is.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff", ".gif"}
)

#: Largest image accepted by default (Pillow's own bomb threshold: about 89 megapixels).
DEFAULT_MAX_PIXELS = 89_478_485


class BadImageError(ValueError):
    """A file that is not a usable image.

    Attributes:
        path: the file.
        reason: a short human sentence (``"truncated or corrupt image data"`` ...).
        too_large: the image is refused for its size (over the pixel limit, a decompression
            bomb), not for its content; a server answers 413 to it.
    """

    def __init__(self, path: str | os.PathLike, reason: str, *, too_large: bool = False) -> None:
        self.path = str(path)
        self.reason = reason
        self.too_large = too_large
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (_rebuild_bad_image_error, (self.path, self.reason, self.too_large))


def _rebuild_bad_image_error(path: str, reason: str, too_large: bool) -> BadImageError:
    return BadImageError(path, reason, too_large=too_large)


def _read_file(path: Path, max_bytes: int) -> bytes:
    """Read a regular file; never blocks on FIFOs or devices, never follows a loop forever."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadImageError(path, "symlink loop") from None
        if exc.errno == errno.ENOENT:
            reason = "broken symlink (target missing)" if os.path.islink(path) else "file not found"
            raise BadImageError(path, reason) from None
        if exc.errno == errno.EACCES:
            raise BadImageError(path, "permission denied (unreadable file)") from None
        raise BadImageError(path, f"cannot stat: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadImageError(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise BadImageError(path, "not a regular file (FIFO, socket or device)")
    if st.st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    if st.st_size > max_bytes:
        raise BadImageError(path, f"file too large ({st.st_size} bytes > {max_bytes})")
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:
        raise BadImageError(path, "permission denied (unreadable file)") from None
    except OSError as exc:
        raise BadImageError(path, f"cannot read: {exc.strerror or exc}") from None


def _to_uint8_array(im: Image.Image) -> np.ndarray:
    """Pixels of a loaded image as uint8 H x W (grey) or H x W x 3 (colour); alpha flattened."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: scale 0..65535 to 0..255 (Pillow's convert("L") would clip instead).
        arr = np.asarray(im).astype(np.float64)
        if mode == "I" and arr.max(initial=0) <= 255 and arr.min(initial=0) >= 0:
            return arr.astype(np.uint8)
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if mode == "P":
        # Palette: expand; a transparency entry makes it RGBA (flattened below).
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "A" in mode:
        # Flatten onto black: the colour under transparent pixels is discarded, so no hidden
        # original content survives in an output written from these pixels.
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = np.rint(rgba[..., :3] * alpha).astype(np.uint8)
        if mode in ("LA", "La"):
            return rgb[..., 0]
        return rgb
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("L", "RGB"):
        return np.array(im)  # a writable copy: callers may edit pixels in place
    # CMYK, YCbCr, LAB, HSV, RGBX ...: Pillow knows the conversion (inverted Adobe CMYK included).
    return np.asarray(im.convert("RGB"))


def _set_channels(arr: np.ndarray, channels: int | None) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if channels is None or arr.shape[2] == channels:
        return np.ascontiguousarray(arr)
    if channels == 3:  # grey -> RGB by repetition
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2))
    # RGB -> grey with ITU-R BT.601 luma, as Pillow's convert("L") and OpenCV do.
    grey = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[:, :, None]


def open_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = 1 << 30,
) -> Image.Image:
    """Open a file with Pillow after every cheap check (no pixel data decoded yet).

    Raises:
        BadImageError: not a regular file, empty, not an image, or larger than ``max_pixels``.
    """
    path = Path(path)
    return open_image_bytes(_read_file(path, max_bytes), path, max_pixels=max_pixels)


def open_image_bytes(
    data: bytes,
    name: str | os.PathLike = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open encoded image bytes held in memory (an upload) with the checks of :func:`open_image`.

    Args:
        data: the file's bytes.
        name: what error messages call it (a file name).
        max_pixels: refuse images whose header claims more pixels (decompression bombs).

    Raises:
        BadImageError: empty, not an image, or larger than ``max_pixels``.
    """
    if not data:
        raise BadImageError(name, "empty file (0 bytes)")
    with warnings.catch_warnings():
        # We apply our own explicit limit below; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise BadImageError(name, f"decompression bomb refused: {exc}", too_large=True) from None
        except UnidentifiedImageError:
            raise BadImageError(name, "not an image (content is no recognised image format)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImageError(name, f"unreadable image header: {exc}") from None
    w, h = im.size
    if w < 1 or h < 1:
        raise BadImageError(name, f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise BadImageError(
            name,
            f"image claims {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
            "(decompression-bomb guard; raise max_pixels if the file is genuine)",
            too_large=True,
        )
    return im


def decode_image(im: Image.Image, path: str | os.PathLike, transpose: bool = True) -> Image.Image:
    """Decode the pixel data and apply EXIF orientation; errors become :class:`BadImageError`.

    ``transpose=False`` skips the orientation step (and its full copy) for a caller that already
    knows the orientation is the identity.
    """
    try:
        im.load()
        # EXIF orientation first: the pixels a viewer shows are the pixels we obfuscate.
        if transpose:
            im = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        msg = str(exc)
        if "truncated" in msg or isinstance(exc, EOFError):
            raise BadImageError(path, f"truncated or corrupt image data ({msg})") from None
        raise BadImageError(path, f"corrupt image data ({msg})") from None
    return im


def _check_channels(channels: int | None) -> None:
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")


def load_image(
    path: str | os.PathLike,
    channels: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read one image file as uint8 pixels, H x W x C.

    Odd-but-valid files are converted: EXIF orientation is applied; 16-bit images are scaled to
    8 bits (not clipped); CMYK, YCbCr and other colour modes go to RGB; palette images are
    expanded; alpha (including palette transparency) is flattened onto black so the colour under
    transparent pixels is discarded; the first frame of an animation is used.

    Args:
        path: the file.
        channels: ``None`` keeps the file's own (1 for grey, 3 for colour); 1 converts to grey
            (BT.601 luma), 3 repeats grey to RGB.
        max_pixels: refuse images whose header claims more pixels (decompression bombs).

    Returns:
        uint8 array H x W x C, C-contiguous.

    Raises:
        BadImageError: the file cannot be used; ``reason`` says why.
        ValueError: ``channels`` is not None, 1 or 3.
    """
    _check_channels(channels)
    return image_pixels(open_image(path, max_pixels=max_pixels), path, channels)


def load_image_bytes(
    data: bytes,
    name: str | os.PathLike = "<bytes>",
    channels: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """:func:`load_image` for encoded bytes held in memory (an upload): the same checks and conversions.

    Args:
        data: the file's bytes.
        name: what error messages call it (a file name).
        channels, max_pixels: as for :func:`load_image`.

    Returns:
        uint8 array H x W x C, C-contiguous.
    """
    _check_channels(channels)
    return image_pixels(open_image_bytes(data, name, max_pixels=max_pixels), name, channels)


def image_pixels(im: Image.Image, name: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """Decode an image opened by :func:`open_image` / :func:`open_image_bytes` into uint8 H x W x C
    pixels, with every conversion :func:`load_image` documents (EXIF orientation applied)."""
    _check_channels(channels)
    im = decode_image(im, name)
    try:
        arr = _to_uint8_array(im)
    except (OSError, ValueError) as exc:
        raise BadImageError(name, f"cannot convert mode {im.mode}: {exc}") from None
    return _set_channels(arr, channels)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of uint8 pixels (H x W, H x W x 1 or H x W x 3) with no ancillary chunks."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"save_png needs uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(
            f"save_png writes H x W, H x W x 1 or H x W x 3 pixels (no alpha), got shape {arr.shape}"
        )
    im = Image.fromarray(np.ascontiguousarray(arr))  # mode L or RGB from the shape
    buf = io.BytesIO()
    # No exif=, icc_profile=, pnginfo= or dpi=: Pillow then writes only IHDR, IDAT and IEND.
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def save_png(
    path: str | os.PathLike,
    array_hwc: np.ndarray,
    *,
    protect: Iterable[str | os.PathLike] = (),
) -> None:
    """Write pixels only as a PNG, atomically (temp file + rename).

    Nothing but the pixels leaves: no EXIF, GPS, XMP, ICC profile, thumbnail, text chunk or alpha.

    Args:
        path: destination file.
        array_hwc: uint8, H x W, H x W x 1 or H x W x 3.
        protect: input files that must never be overwritten; writing onto one raises ValueError.
    """
    path = Path(path)
    for p in protect:
        if path.exists() and _same_file(path, Path(p)):
            raise ValueError(f"refusing to overwrite the input file {p}")
    atomic_write_bytes(path, encode_png(array_hwc))


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why. ``not_an_image`` marks entries a folder walk left out by their
    name alone (hidden files, other extensions: ``.DS_Store``, ``Thumbs.db``, ``notes.txt``),
    as opposed to files that could not be read."""

    path: str
    reason: str
    not_an_image: bool = False

    def as_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


def walk_image_files(
    root: str | os.PathLike,
    *,
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> tuple[list[str], list[Skipped]]:
    """Like :func:`walk_images` but returns relative POSIX paths as strings (fast: no pathlib,
    which costs more than the listing itself on 10^5 files)."""
    root_s = os.fspath(root)
    if not os.path.exists(root_s):
        raise FileNotFoundError(f"{root_s} does not exist")
    if not os.path.isdir(root_s):
        ext = os.path.splitext(root_s)[1]
        if ext.lower() in extensions:
            return [os.path.basename(root_s)], []
        return [], [Skipped(root_s, f"not an image file (extension '{ext}')")]
    found: list[str] = []
    skipped: list[Skipped] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[str, str]] = [(root_s, "")]  # (folder path, its path relative to root + "/")
    while stack:
        folder, rel_prefix = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            reason = "symlink loop" if exc.errno == errno.ELOOP else f"cannot open folder: {exc.strerror}"
            skipped.append(Skipped(folder, reason))
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            skipped.append(Skipped(folder, "folder already visited (symlink loop)"))
            continue
        seen.add(ident)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(folder, f"cannot list folder: {exc.strerror}"))
            continue
        subfolders = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                skipped.append(Skipped(entry.path, "hidden file or folder", not_an_image=True))
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append((entry.path, rel_prefix + name + "/"))
                continue
            suffix = os.path.splitext(name)[1]
            if suffix.lower() not in extensions:
                if suffix.lower() == ".bad":  # Yale B's convention for shots its release flags as corrupt
                    why = "not an image file (extension '.bad': marked corrupt by its release)"
                elif suffix:
                    why = f"not an image file (extension '{suffix}')"
                else:
                    why = "not an image file (no extension)"
                skipped.append(Skipped(entry.path, why, not_an_image=True))
                continue
            found.append(rel_prefix + name)  # content is checked when decoding (symlink loops included)
        stack.extend(reversed(subfolders))
    found.sort()
    return found, skipped


def walk_images(
    root: str | os.PathLike,
    *,
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> tuple[list[Path], list[Skipped]]:
    """Image files under ``root`` (recursive, sorted), and every other entry with a reason.

    Folder symlinks are followed once; a folder reached twice (a symlink loop) is reported and
    not entered again. Hidden entries (``.name``) are reported as skipped. Files are chosen by
    extension here; their content is checked when decoding.

    Returns:
        (image paths sorted by their POSIX path relative to root, skipped entries).
    """
    rels, skipped = walk_image_files(root, extensions=extensions)
    root = Path(root)
    if not root.is_dir():
        return [root] if rels else [], skipped
    return [root / r for r in rels], skipped
