"""Executors: run independent grid cells and hand back each (cell, row or error) as it finishes.

Both executors run the same module-level cell function; neither schedules anything itself. The
local executor runs cells one after the other in this process (the data stays in memory, and on a
GPU one cell at a time already keeps the device busy). The Ray executor hands the cells to Ray
(`ray` is an optional extra: ``pip install 'privattrib[ray]'``), which places them on the cluster's
CPUs/GPUs; the data is put in Ray's object store once.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

CellResult = tuple[Any, "dict | BaseException"]


class LocalExecutor:
    """Run cells sequentially, in-process."""

    name = "local"

    def map_unordered(self, fn: Callable, cells: Sequence, shared: Any) -> Iterator[CellResult]:
        """Yield ``(cell, fn(cell, shared))`` for each cell, or ``(cell, exception)`` when it failed.

        ``KeyboardInterrupt`` is not caught: an interrupted run stops at once (finished rows are
        already stored; the rerun resumes).
        """
        for cell in cells:
            try:
                row = fn(cell, shared)
            except Exception as exc:  # noqa: BLE001 - reported per cell by the runner
                yield cell, exc
            else:
                yield cell, row


class RayExecutor:
    """Run cells as Ray tasks.

    Args:
        address: Ray cluster address (``auto``, ``ray://host:10001``, ...); None starts a local Ray.
        num_gpus: GPUs per cell; None gives 1 when the cluster has GPUs, else 0.
        num_cpus: CPUs per cell.

    The cached clean models live in ``OUTDIR/models``: on several nodes OUTDIR must be on a shared
    file system (the runner trains each seed's clean model in a first wave, so the other cells
    only read it).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: float | None = None, num_cpus: float = 1):
        self.ray = import_ray()
        self.address = address
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus

    def _init(self) -> None:
        if not self.ray.is_initialized():
            self.ray.init(address=self.address, ignore_reinit_error=True)

    def map_unordered(self, fn: Callable, cells: Sequence, shared: Any) -> Iterator[CellResult]:
        ray = self.ray
        self._init()
        gpus = self.num_gpus
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        shared_ref = ray.put(shared)
        remote_fn = ray.remote(num_cpus=self.num_cpus, num_gpus=gpus)(fn)
        pending = {remote_fn.remote(cell, shared_ref): cell for cell in cells}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        yield cell, ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a task error, reported per cell
                        yield cell, exc
        finally:
            for ref in pending:  # interrupted: do not leave orphan tasks running
                ray.cancel(ref)


def import_ray():
    """Import Ray or say how to get it."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError(
            "the ray executor needs Ray, which is not installed: pip install 'privattrib[ray]' "
            "(or 'ray[default]'), or use --executor local"
        ) from exc
    return ray


def make_executor(name: str, *, address: str | None = None, num_gpus: float | None = None):
    """``local`` or ``ray`` (``address`` only makes sense with ray)."""
    if name == "local":
        if address or num_gpus is not None:
            raise ValueError("--address and --gpus-per-cell are for --executor ray; the local executor runs "
                             "in this process")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, num_gpus=num_gpus)
    raise ValueError(f"unknown executor {name!r}; allowed: local, ray")
