"""CPU threads that follow the cores other processes leave free.

Why: torch's CPU kernels split every operation over ``torch.get_num_threads()`` OpenMP threads
and wait for all of them at the end of it. When another process holds one of two cores, every
operation waits for the thread that has no core, and GNU OpenMP's waiting threads spin on the
core they do have: ``privattrib demo`` took 64 s alone and 1,071 s beside one ``yes > /dev/null``
(109 s with one thread). One thread per free core avoids both.

How: :func:`fit_threads` compares the CPU time all processes used on the CPUs this process may
run on (``/proc/stat``, per CPU of its affinity) with the time this process used over the same
interval; what the others used, rounded, is the number of cores
they hold. Niced processes count too: the kernel gives a process that is not niced most of their
cores' time, but not all of it, and one thread of ours descheduled for theirs still stalls every
operation (the demo's attribution model trained in 5 min 31 s when niced neighbours were not
counted, 3 min 3 s on one thread, at load 8-11). Long loops call :func:`fit_threads` often;
it reads the counters at most once every :data:`MIN_INTERVAL_S` seconds, so the call is free in a
training step.

The user decides where they asked: ``OMP_NUM_THREADS`` in the environment, an explicit
``--threads``, ``PRIVATTRIB_THREADS=N``, or a ``torch.set_num_threads`` call of the user's own
between two calls here pin the count and nothing here changes it. The count never rises above
what torch had at the first call (its default is one thread per physical core).
``PRIVATTRIB_THREADS=auto`` (or unset) lets it follow the free cores. Off Linux (no
``/proc/stat``), the count stays as torch chose it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["MIN_INTERVAL_S", "available_cores", "fit_threads", "pin_threads", "threads_pinned", "CpuSample"]

#: Least time between two readings of the CPU counters (a shorter window is mostly noise: the
#: kernel counts in 10 ms ticks).
MIN_INTERVAL_S = 1.0
#: A window that started longer ago than this says little about now: start a fresh one.
MAX_WINDOW_S = 10.0
_ENV = "PRIVATTRIB_THREADS"


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds at one instant: every process (``busy``, by priority) and this one (``own``)."""

    at: float
    busy_normal: float  # user + system + irq + softirq + steal, over all cores
    busy_niced: float  # the 'nice' column: processes with a positive nice value
    own: float  # this process, all threads


def _ticks_per_second() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 100


def read_sample(stat_path: str = "/proc/stat", cpus: set[int] | None = None) -> CpuSample | None:
    """The counters now, or None where ``/proc/stat`` is not readable (not Linux).

    Args:
        stat_path: the kernel's CPU counters.
        cpus: count only these CPUs (the ones this process may run on: work on the others does not
            take our cores); None for the whole machine.
    """
    try:
        with open(stat_path) as handle:
            lines = [line.split() for line in handle if line.startswith("cpu")]
    except OSError:
        return None
    if not lines or lines[0][0] != "cpu":
        return None
    if cpus is not None:
        mine = [f for f in lines[1:] if f[0][3:].isdigit() and int(f[0][3:]) in cpus]
        if mine and len(mine) < len(lines) - 1:  # a subset of the machine: its own lines only
            width = min(len(f) for f in mine)
            lines[0] = ["cpu", *(str(sum(int(f[i]) for f in mine)) for i in range(1, width))]
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest time is in user)
    values = [int(v) for v in lines[0][1:]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    hz = _ticks_per_second()
    return CpuSample(at=time.monotonic(), busy_normal=(user + system + irq + softirq + steal) / hz,
                     busy_niced=nice / hz, own=time.process_time())


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None


def cores_held_by_others(before: CpuSample, after: CpuSample) -> float:
    """Mean number of cores other processes (niced or not) kept busy between two samples."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        return 0.0
    busy = (after.busy_normal - before.busy_normal) + (after.busy_niced - before.busy_niced)
    return max(0.0, (busy - (after.own - before.own)) / elapsed)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


class _Governor:
    """The state behind :func:`fit_threads` (one per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window: CpuSample | None = None
        self.pinned: int | None = None
        self.ceiling: int | None = None  # torch's count at the first call
        self.last_set: int | None = None  # what this module last set (to notice the user's own calls)

    def threads_for(self, held: float) -> int:
        cores = available_cores()
        return max(1, min(self.ceiling or cores, cores - math.floor(held + 0.5)))


_GOVERNOR = _Governor()


def threads_pinned() -> int | None:
    """The thread count the user fixed (``pin_threads``, ``PRIVATTRIB_THREADS=N`` or
    ``OMP_NUM_THREADS``), or None when privattrib may choose."""
    if _GOVERNOR.pinned is not None:
        return _GOVERNOR.pinned
    value = os.environ.get(_ENV, "auto").strip().lower()
    if value not in ("", "auto"):
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{_ENV} must be 'auto' or a number of threads >= 1, got {value!r}") from None
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp:
        try:
            return max(1, int(omp.split(",")[0]))
        except ValueError:
            return None
    return None


def pin_threads(n: int | None) -> None:
    """Fix torch's CPU threads at ``n`` for the rest of the process (None: follow the free cores again)."""
    import torch

    if n is not None:
        if int(n) < 1:
            raise ValueError(f"the number of threads must be >= 1, got {n}")
        torch.set_num_threads(int(n))
    with _GOVERNOR.lock:
        _GOVERNOR.pinned = None if n is None else int(n)
        _GOVERNOR.last_set = torch.get_num_threads()


def fit_threads(device: Any = None, force: bool = False) -> int:
    """Set torch's (and OpenCV's) CPU threads to the cores other processes leave free, at most once
    a second; returns the thread count in force.

    Args:
        device: where the caller computes; for anything but the CPU nothing is done (a GPU loop
            needs its host threads as they are).
        force: read the counters now even if the last reading is recent (a fresh window of
            about 50 ms is measured when there is none).
    """
    import torch

    if device is not None and torch.device(device).type != "cpu":
        return torch.get_num_threads()
    pinned = threads_pinned()
    if pinned is not None:
        if torch.get_num_threads() != pinned:
            torch.set_num_threads(pinned)
        return pinned
    governor = _GOVERNOR
    with governor.lock:
        current = torch.get_num_threads()
        if governor.last_set is None:
            governor.ceiling, governor.last_set = current, current
        elif current != governor.last_set:  # the user set it: theirs from now on
            governor.pinned = current
            return current
        now = time.monotonic()
        window = governor.window
        if window is not None and not force and now - window.at < MIN_INTERVAL_S:
            return current
        if window is None or now - window.at > MAX_WINDOW_S:
            window = read_sample(cpus=_affinity())
            if window is None:
                return current
            time.sleep(0.05)
        sample = read_sample(cpus=_affinity())
        if sample is None:
            return current
        governor.window = sample
        held = cores_held_by_others(window, sample)
        threads = governor.threads_for(held)
        if threads != current:
            torch.set_num_threads(threads)
            _set_opencv_threads(threads)
            governor.last_set = threads
        return threads


def _set_opencv_threads(n: int) -> None:
    try:
        import cv2
    except ImportError:  # pragma: no cover - a core dependency, but keep threads independent of it
        return
    cv2.setNumThreads(n)
