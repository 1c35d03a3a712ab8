"""Crop and resize one file into a fixed-size uint8 C x H x W array, the unit of the cache.

Crops:
    ``"yu2019"``: 128 x 128 around (x=89, y=121) of the aligned 178 x 218 CelebA image, as in
        Yu, Davis, Fritz (ICCV 2019); other image sizes are refused.
    ``"center"``: the largest centred box with the output's aspect ratio.
    ``"none"``: the whole image, stretched to the output size.
then an antialiased bicubic resize (Pillow) to the output size; when the box already has the output
size the pixels are copied exactly. With ``draft`` a JPEG is decoded directly at 1/2, 1/4 or 1/8
scale (libjpeg DCT scaling) whenever the box is at least that much larger than the output, which
is several times faster and still antialiased.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from privattrib.data.io import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    _set_channels,
    _to_uint8_array,
    decode_image,
    open_image,
)

CROPS = ("yu2019", "center", "none")
#: Centre and side of Yu et al.'s crop in the 178 x 218 aligned CelebA image.
YU2019_CENTER = (89, 121)
YU2019_SIDE = 128
CELEBA_ALIGNED_SIZE = (178, 218)  # (W, H)


@dataclass(frozen=True)
class Preprocess:
    """How a file becomes a cache row.

    Attributes:
        size: output (H, W); ``None`` keeps the native size (see ``exact_size``).
        crop: one of ``CROPS``.
        channels: 1 or 3 (``None`` keeps the file's own; the cache resolves it before building).
        draft: allow reduced-scale JPEG decoding when downsizing.
        exact_size: refuse (as a bad file) any image whose size is not ``size`` (W, H swapped
            into (H, W)) instead of resizing it; used for native-size sets.
        max_pixels: decompression-bomb limit.
    """

    size: tuple[int, int] | None = None
    crop: str = "center"
    channels: int | None = 3
    draft: bool = True
    exact_size: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be None, 1 or 3, got {self.channels!r}")
        if self.size is not None:
            if len(self.size) != 2 or min(self.size) < 1:
                raise ValueError(f"size must be None or (H, W) with H, W >= 1, got {self.size!r}")
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["size"] = None if self.size is None else list(self.size)
        return d


def normalize_size(size) -> tuple[int, int] | None:
    """``64`` -> (64, 64); ``(H, W)`` -> (H, W); ``None`` -> None (native)."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        return (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be an int, (H, W) or None, got {size!r}")
    return size


def _orientation_swaps(im: Image.Image) -> tuple[bool, bool]:
    """(has a non-trivial EXIF orientation, it swaps width and height)."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: exif_transpose will decide later
        return True, False
    return orientation not in (None, 1), orientation in (5, 6, 7, 8)


def crop_box(width: int, height: int, crop: str, out_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer crop box (x0, y0, x1, y1) in an image of ``width`` x ``height``."""
    out_h, out_w = out_hw
    if crop == "yu2019":
        if (width, height) != CELEBA_ALIGNED_SIZE:
            raise ValueError(
                f"the yu2019 crop needs the 178x218 aligned CelebA image, got {width}x{height}"
            )
        cx, cy = YU2019_CENTER
        half = YU2019_SIDE // 2
        return (cx - half, cy - half, cx + half, cy + half)
    if crop == "none":
        return (0, 0, width, height)
    aspect = out_w / out_h
    crop_w = min(width, max(1, round(height * aspect)))
    crop_h = min(height, max(1, round(width / aspect)))
    x0 = (width - crop_w) // 2
    y0 = (height - crop_h) // 2
    return (x0, y0, x0 + crop_w, y0 + crop_h)


def prepare(path: str | os.PathLike, prep: Preprocess) -> np.ndarray:
    """Decode, orient, crop and resize one file.

    Returns:
        uint8 array C x H x W.

    Raises:
        BadImageError: the file is unusable (or, with ``exact_size``, has another size).
    """
    return prepare_image(open_image(path, max_pixels=prep.max_pixels), path, prep)


def prepare_array(pixels: np.ndarray, prep: Preprocess, name: str = "<array>") -> np.ndarray:
    """The cache's crop and resize applied to pixels already in memory (an upload, a test array).

    Args:
        pixels: uint8 H x W (grey), H x W x 1, x 2 (grey + alpha), x 3 (RGB) or x 4 (RGBA); alpha
            is flattened onto black as :func:`privattrib.data.io.load_image` does.
        prep: as for :func:`prepare` (no reduced-scale JPEG decoding: the pixels are decoded already).
        name: what error messages call the array.

    Returns:
        uint8 array C x H x W, exactly as :func:`prepare` would make it from a lossless file of
        these pixels.
    """
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise BadImageError(name, f"pixels must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4))) or min(arr.shape[:2]) < 1:
        raise BadImageError(name, f"pixels must be H x W or H x W x C with C in 1-4, got shape {arr.shape}")
    # Pillow reads the mode from the shape: L, LA, RGB or RGBA
    return prepare_image(Image.fromarray(np.ascontiguousarray(arr)), name, prep)


def prepare_image(im: Image.Image, path: str | os.PathLike, prep: Preprocess) -> np.ndarray:
    """:func:`prepare` for an image Pillow has opened but not decoded (as ``open_image`` returns
    it), so a caller that reads the header first (its size and mode) does not open the file twice.
    ``path`` only names the image in errors."""
    rotated, swaps = _orientation_swaps(im)
    w, h = im.size
    if swaps:
        w, h = h, w
    out_hw = prep.size if prep.size is not None else (h, w)
    if prep.exact_size and (h, w) != out_hw:
        raise BadImageError(
            path, f"size {w}x{h} differs from the set's {out_hw[1]}x{out_hw[0]} (native-size set)"
        )
    try:
        box = crop_box(w, h, prep.crop, out_hw)
    except ValueError as exc:
        raise BadImageError(path, str(exc)) from None
    scale = 1
    box_w, box_h = box[2] - box[0], box[3] - box[1]
    if prep.draft and not rotated and im.format == "JPEG":
        ratio = min(box_w / out_hw[1], box_h / out_hw[0])
        for s in (8, 4, 2):
            if ratio >= s:
                im.draft(im.mode, (math.ceil(w / s), math.ceil(h / s)))
                scale = w / im.size[0]
                break
    im = decode_image(im, path, transpose=rotated)
    if im.mode not in ("L", "RGB"):
        # Odd modes (16-bit, CMYK, palette, alpha...) go through the careful conversion first.
        try:
            im = Image.fromarray(_to_uint8_array(im))
        except (OSError, ValueError) as exc:
            raise BadImageError(path, f"cannot convert mode {im.mode}: {exc}") from None
    # Crop and resize inside Pillow, so only the output's pixels are ever copied into NumPy.
    if scale == 1 and box_w == out_hw[1] and box_h == out_hw[0]:
        im = im.crop(box)  # exact copy, no resampling
    else:
        sx, sy = w / im.width, h / im.height
        fbox = (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)
        im = im.resize((out_hw[1], out_hw[0]), Image.Resampling.BICUBIC, box=fbox)
    arr = np.asarray(im)
    arr = _set_channels(arr, prep.channels)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def probe(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, int]:
    """(H, W, C) a file will have after orientation, from its header only (C: 1 grey, 3 colour).

    Raises:
        BadImageError: not an image, or over ``max_pixels``.
    """
    im = open_image(path, max_pixels=max_pixels)
    h, w = oriented_size(im)
    return h, w, 1 if is_grey(im) else 3


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """(H, W) of an opened image as a viewer shows it (after EXIF orientation), from its header."""
    _, swaps = _orientation_swaps(im)
    w, h = im.size
    return (w, h) if swaps else (h, w)


def is_grey(im: Image.Image) -> bool:
    """Whether an opened image decodes to one channel (grey modes, or a palette of greys)."""
    if im.mode == "P":
        try:
            return all(r == g == b for r, g, b in zip(*[iter(im.getpalette() or [])] * 3))
        except Exception:
            return False
    return im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode.startswith("I;16")
