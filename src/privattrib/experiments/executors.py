"""Executors: run independent grid cells and hand back each (cell, row or error) as it finishes.

Both executors run the same module-level cell function; neither schedules anything itself. The
local executor runs cells one after the other in this process (the data stays in memory, and on a
GPU one cell at a time already keeps the device busy). The Ray executor hands the cells to Ray
(`ray` is an optional extra: ``pip install 'privattrib[ray]'``), which places them on the cluster's
CPUs/GPUs; the data is put in Ray's object store once.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterator, Sequence

CellResult = tuple[Any, "dict | BaseException"]


class LocalExecutor:
    """Run cells sequentially, in-process."""

    name = "local"

    def connect(self) -> None:
        """Nothing to join: cells run in this process."""

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
        address: Ray cluster address (``auto``, ``HOST:6379``, ``ray://host:10001``, ...); None
            starts a local Ray.
        num_gpus: GPUs per cell (fractions share a GPU); None gives 1 when the cluster has GPUs,
            else 0. A cell asking for a GPU is placed only on a node that has one (Ray's
            resource scheduling), and sees only its GPU (``CUDA_VISIBLE_DEVICES``).
        num_cpus: CPUs per cell (fractions allowed).
        max_retries: times Ray reruns a cell whose worker process or node died. A retry is
            harmless: the driver writes a cell's row only when its task returns, atomically, and
            a row that exists is never computed again. Exceptions raised by a cell are not
            retried (they are reported per cell; a rerun of the command retries them).

    The cached clean models live in ``OUTDIR/models``: on several nodes OUTDIR must be on a shared
    file system (the runner trains each seed's clean model in a first wave, so the other cells
    only read it).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: float | None = None, num_cpus: float = 1,
                 max_retries: int = 3):
        self.ray = import_ray()
        self.address = address
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        #: cell -> {"node_id", "node_ip", "gpu_ids", "num_cpus", "num_gpus"} of the task that returned
        self.placements: dict = {}
        self._shared: tuple[Any, Any] | None = None  # (shared, its object ref): put once for every wave

    def connect(self) -> None:
        """Join the cluster (or start a local Ray), before any data is assembled.

        Raises:
            RuntimeError: the address does not answer, or Ray refused it; the message says which
                address and what to check (``ray.init`` alone would retry an unreachable address
                for minutes).
        """
        if self.ray.is_initialized():
            return
        check_address(self.address)
        try:
            self.ray.init(address=self.address, ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
            raise RuntimeError(f"could not connect to the Ray cluster at {where}: {exc}") from None

    def resources(self) -> dict:
        """What each cell asks for: ``{"num_cpus", "num_gpus"}`` (after :meth:`connect`)."""
        gpus = self.num_gpus
        if gpus is None:
            gpus = 1 if self.ray.cluster_resources().get("GPU", 0) > 0 else 0
        return {"num_cpus": self.num_cpus, "num_gpus": gpus}

    def map_unordered(self, fn: Callable, cells: Sequence, shared: Any) -> Iterator[CellResult]:
        ray = self.ray
        self.connect()
        request = self.resources()
        if self._shared is None or self._shared[0] is not shared:
            self._shared = (shared, ray.put(shared))
        shared_ref = self._shared[1]
        remote_fn = ray.remote(max_retries=self.max_retries, retry_exceptions=False, **request)(_placed)
        pending = {remote_fn.remote(fn, cell, shared_ref): cell for cell in cells}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        row, placement = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a task error, reported per cell
                        yield cell, _unwrap(exc)
                    else:
                        self.placements[cell] = {**placement, **request}
                        yield cell, row
        finally:
            for ref in pending:  # interrupted: do not leave orphan tasks running
                ray.cancel(ref)


def _placed(fn: Callable, cell: Any, shared: Any) -> tuple[Any, dict]:
    """Run ``fn(cell, shared)`` in a Ray worker and say where it ran."""
    import ray

    ctx = ray.get_runtime_context()
    placement = {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                 "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
    return fn(cell, shared), placement


def _unwrap(exc: BaseException) -> BaseException:
    """The cell's own exception out of Ray's ``RayTaskError`` wrapper (same message per cell
    with either executor); system failures (a worker that died past its retries) stay as they are."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast when a ``HOST:PORT`` or ``ray://HOST:PORT`` Ray address (or ``RAY_ADDRESS`` when
    ``address`` is None) does not accept a TCP connection; ``auto``, ``local`` and none pass.

    Raises:
        RuntimeError: the address is malformed or nothing answers there, naming the address and
            what to check.
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RuntimeError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379, the head's "
                           "`ray start --head --port`), ray://HOST:10001 (Ray Client) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RuntimeError(
            f"cannot reach the Ray cluster at {address} ({reason}): is Ray running there "
            f"(`ray start --head --port {port}` on {host}), and is port {port} open from this machine? "
            "On a node of the cluster, --address auto finds it."
        ) from None


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


def make_executor(name: str, *, address: str | None = None, num_gpus: float | None = None,
                  num_cpus: float | None = None):
    """``local`` or ``ray`` (``address``, ``num_gpus`` and ``num_cpus`` only make sense with ray)."""
    if name == "local":
        if address or num_gpus is not None:
            raise ValueError("--address and --gpus-per-cell are for --executor ray; the local executor runs "
                             "in this process")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, num_gpus=num_gpus, num_cpus=1 if num_cpus is None else num_cpus)
    raise ValueError(f"unknown executor {name!r}; allowed: local, ray")
