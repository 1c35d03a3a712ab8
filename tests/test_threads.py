"""CPU threads that follow the cores other processes leave free (privattrib.threads)."""

from __future__ import annotations

import pytest
import torch

from privattrib import threads
from privattrib.threads import CpuSample, cores_held_by_others, fit_threads


@pytest.fixture(autouse=True)
def fresh_governor(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PRIVATTRIB_THREADS", raising=False)
    before = torch.get_num_threads()
    threads._GOVERNOR.__init__()
    yield
    threads._GOVERNOR.__init__()
    torch.set_num_threads(before)


def test_other_processes_time_is_total_busy_minus_our_own():
    a = CpuSample(at=0.0, busy_normal=100.0, busy_niced=50.0, own=10.0)
    # 2 s: all processes used 3.6 + 1.0 (niced) CPU-seconds, we used 2.0 of them -> others held 1.3 cores
    b = CpuSample(at=2.0, busy_normal=103.6, busy_niced=51.0, own=12.0)
    assert cores_held_by_others(a, b) == pytest.approx(1.3)
    assert cores_held_by_others(b, b) == 0.0


def test_proc_stat_is_parsed(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1000 200 300 9000 50 10 20 5 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    sample = threads.read_sample(str(stat))
    hz = threads._ticks_per_second()
    assert sample.busy_normal == pytest.approx((1000 + 300 + 10 + 20 + 5) / hz)
    assert sample.busy_niced == pytest.approx(200 / hz)
    assert threads.read_sample(str(tmp_path / "absent")) is None
    # pinned to cpu1 of two: the work on cpu0 does not take our core
    stat.write_text("cpu  30 0 30 100 0 0 0 0 0 0\ncpu0 20 0 20 50 0 0 0 0 0 0\ncpu1 10 0 10 50 0 0 0 0 0 0\n")
    assert threads.read_sample(str(stat), cpus={1}).busy_normal == pytest.approx(20 / hz)
    assert threads.read_sample(str(stat), cpus={0, 1}).busy_normal == pytest.approx(60 / hz)


def _fake_counters(monkeypatch, others_cores: float, cores: int = 2):
    """A clock in which other processes keep ``others_cores`` cores busy and we keep one."""
    state = {"t": 0.0}

    def sample(stat_path="/proc/stat", cpus=None):
        state["t"] += 1.5
        t = state["t"]
        return CpuSample(at=t, busy_normal=t * (others_cores + 1.0), busy_niced=0.0, own=t)

    monkeypatch.setattr(threads, "read_sample", sample)
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    monkeypatch.setattr(threads.time, "monotonic", lambda: state["t"] + 100.0)


def test_a_busy_core_leaves_one_thread_and_a_free_machine_all_of_them(monkeypatch):
    torch.set_num_threads(2)
    _fake_counters(monkeypatch, others_cores=1.0)
    assert fit_threads(force=True) == 1 and torch.get_num_threads() == 1
    _fake_counters(monkeypatch, others_cores=0.2)
    assert fit_threads(force=True) == 2 and torch.get_num_threads() == 2
    _fake_counters(monkeypatch, others_cores=5.0)  # far more work than cores: still one thread
    assert fit_threads(force=True) == 1
    _fake_counters(monkeypatch, others_cores=0.2)
    assert fit_threads("cuda:0", force=True) == 1 and torch.get_num_threads() == 1  # a GPU loop: left alone
    assert fit_threads(torch.device("cpu"), force=True) == 2


def test_never_above_torchs_count_at_the_first_call(monkeypatch):
    torch.set_num_threads(1)
    _fake_counters(monkeypatch, others_cores=0.0, cores=4)
    assert fit_threads(force=True) == 1


def test_the_users_choice_wins(monkeypatch):
    torch.set_num_threads(2)
    _fake_counters(monkeypatch, others_cores=1.0)
    monkeypatch.setenv("PRIVATTRIB_THREADS", "2")
    assert fit_threads(force=True) == 2
    monkeypatch.setenv("PRIVATTRIB_THREADS", "lots")
    with pytest.raises(ValueError, match="PRIVATTRIB_THREADS"):
        fit_threads(force=True)
    monkeypatch.delenv("PRIVATTRIB_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert fit_threads(force=True) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert fit_threads(force=True) == 1  # now privattrib may choose
    torch.set_num_threads(2)  # the user's own call between two of ours: theirs from now on
    assert fit_threads(force=True) == 2
    threads.pin_threads(None)
    assert fit_threads(force=True) == 1


def test_readings_are_rate_limited(monkeypatch):
    calls = []
    real = threads.read_sample
    monkeypatch.setattr(threads, "read_sample", lambda *a, **k: calls.append(1) or real(*a, **k))
    fit_threads()
    first = len(calls)
    for _ in range(100):
        fit_threads()
    assert first >= 1 and len(calls) == first  # within a second nothing is read again


def test_on_this_machine_the_count_is_within_the_cores():
    n = fit_threads(force=True)
    assert 1 <= n <= threads.available_cores() and n == torch.get_num_threads()
