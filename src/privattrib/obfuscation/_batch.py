"""Accept every supported image layout and give back the same type, device, shape and dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class Batch:
    """A uint8 batch in the form a method computes on.

    ``data`` is a contiguous NumPy array (``layout`` "nhwc" or "nchw") for everything on the CPU,
    or a contiguous torch tensor ``N x C x H x W`` on an accelerator (``is_torch``).
    """

    data: Any
    layout: str
    is_torch: bool
    restore: Callable[[Any], Any]

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def hwc(self) -> tuple[int, int, int]:
        if self.layout == "nhwc":
            return tuple(self.data.shape[1:4])  # type: ignore[return-value]
        _, c, h, w = self.data.shape
        return h, w, c


def _type_error(method: str, what: str) -> ValueError:
    return ValueError(
        f"{method}: images must be uint8: a torch tensor N x C x H x W, a NumPy array N x H x W x C, "
        f"or one NumPy image H x W (x C); got {what}"
    )


def normalize(images: Any, method: str = "obfuscation") -> Batch:
    """Wrap ``images`` for computation; see :class:`Batch`."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise _type_error(method, f"NumPy array of dtype {images.dtype}")
        if images.ndim == 2:
            shape = images.shape
            data = np.ascontiguousarray(images)[None, :, :, None]
            return Batch(data, "nhwc", False, lambda out: out.reshape(shape))
        if images.ndim == 3:
            shape = images.shape
            data = np.ascontiguousarray(images)[None]
            return Batch(data, "nhwc", False, lambda out: out.reshape(shape))
        if images.ndim == 4:
            _check_sizes(method, images.shape[1:3], images.shape[3])
            return Batch(np.ascontiguousarray(images), "nhwc", False, lambda out: out)
        raise _type_error(method, f"NumPy array with shape {images.shape}")
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise _type_error(method, f"torch tensor of dtype {images.dtype}")
        if images.ndim != 4:
            raise _type_error(method, f"torch tensor with shape {tuple(images.shape)} (want N x C x H x W)")
        _check_sizes(method, images.shape[2:4], images.shape[1])
        if images.device.type == "cpu":
            # NumPy/OpenCV kernels are the fast ones on the CPU; from_numpy shares memory (no copy).
            data = images.detach().contiguous().numpy()
            return Batch(data, "nchw", False, lambda out: torch.from_numpy(out))
        data = images.detach().contiguous()
        return Batch(data, "nchw", True, lambda out: out)
    raise _type_error(method, type(images).__name__)


def _check_sizes(method: str, hw, c) -> None:
    if min(int(hw[0]), int(hw[1]), int(c)) < 1:
        raise ValueError(f"{method}: images must have H, W, C >= 1, got H x W = {tuple(hw)}, C = {c}")
