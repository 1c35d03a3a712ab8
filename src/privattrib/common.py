"""Small helpers every stage shares: atomic writes, stable hashing, device choice."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes owner-only files; results and reports should get the usual umask mode
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask, read without os.umask's set-and-restore where Linux allows (that dance
    briefly sets umask 0 for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created), for one trainer of a cached model at a time;
    the kernel releases it if the holder dies, even by SIGKILL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic renames still keep files whole
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def json_ready(obj: Any) -> Any:
    """``obj`` with NumPy scalars and arrays as plain values, tuples as lists, dict keys as strings
    and non-finite floats as None: JSON has no NaN or infinity, and a strict parser (a browser's,
    Python's with ``parse_constant``) refuses them."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


#: Device names privattrib accepts (specs, ``--device``): what :func:`resolve_device` maps.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


def resolve_device(device: str | None = "auto"):
    """``"auto"`` picks CUDA when present, else CPU; anything else goes to ``torch.device``.

    A bare ``cuda`` gets the current device's index (``cuda:0``), as the tensors placed there report
    it: ``tensor.device == resolve_device("cuda")`` must hold, or the training loop treats data already
    on the GPU as host data (the first GPU run of the training loop failed there). Where this process
    sees no GPU (a Ray driver sending cells to GPU workers) it stays a bare ``cuda``; refusing a
    device this process cannot use is :func:`privattrib.experiments.runner.check_local_device`'s job.
    """
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None and torch.cuda.is_available():
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package whose public names live in submodules that are
    imported on first use, so importing the package stays cheap.

    ``exports`` maps each public name to the module that defines it.
    """
    import importlib

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        sys.modules[package].__dict__[name] = value  # later lookups skip this hook
        return value

    def __dir__():
        return sorted(set(exports) | set(sys.modules[package].__dict__))

    return __getattr__, __dir__


class ProgressBar:
    """A rich progress bar on stderr (or a task on the caller's ``rich.progress.Progress``), or
    nothing: ``with ProgressBar(progress, total, "training") as bar: bar.advance(n)``.

    Args:
        progress: True for an own bar, a started ``rich.progress.Progress`` to add a task to, or
            False/None for none.
    """

    def __init__(self, progress: Any, total: int, description: str) -> None:
        self._own = None
        self._progress = None
        if progress is True:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._own = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=Console(stderr=True), transient=True)
            self._progress = self._own
        elif progress not in (False, None):
            self._progress = progress  # a rich Progress owned (started) by the caller
        self._task = None
        if self._progress is not None:
            self._task = self._progress.add_task(description, total=total, info="")

    def __enter__(self) -> "ProgressBar":
        if self._own is not None:
            self._own.start()
        return self

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        if self._task is not None:
            kwargs = {} if info is None else {"info": info}
            self._progress.update(self._task, advance=steps, **kwargs)

    def __exit__(self, *exc: Any) -> None:
        if self._own is not None:
            self._own.stop()
        elif self._task is not None:
            self._progress.remove_task(self._task)
