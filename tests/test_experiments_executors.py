"""Executors: the local one in order with per-cell errors; the Ray one against a minimal in-process
stand-in of Ray's task API (ray is an optional extra; tests/test_ray_cluster.py runs a real cluster)."""

from __future__ import annotations

import sys
import types

import pytest

from privattrib.experiments.executors import LocalExecutor, RayExecutor, make_executor


def _cell_fn(cell, shared):
    if cell == "bad":
        raise ValueError("boom")
    return {"cell": cell, "scale": shared["scale"]}


def test_local_executor_yields_rows_and_errors_in_order():
    out = list(LocalExecutor().map_unordered(_cell_fn, ["a", "bad", "c"], {"scale": 2}))
    assert [c for c, _ in out] == ["a", "bad", "c"]
    assert out[0][1] == {"cell": "a", "scale": 2}
    assert isinstance(out[1][1], ValueError)


def test_make_executor_validates():
    with pytest.raises(ValueError, match="local, ray"):
        make_executor("spark")
    with pytest.raises(ValueError, match="--address"):
        make_executor("local", address="ray://x:1")


class _Ref:
    """Like an ObjectRef: hashable, holds a finished task's outcome."""

    def __init__(self, kind, value):
        self.kind, self.value = kind, value


class _FakeRay(types.ModuleType):
    """Just enough of Ray's API (init, put, remote, wait, get, cancel) to run tasks eagerly."""

    def __init__(self, gpus=0):
        super().__init__("ray")
        self.util = types.SimpleNamespace(get_node_ip_address=lambda: "10.0.0.7")
        self.initialized = False
        self.remote_options = None
        self.puts = 0
        self.gpus = gpus

    def is_initialized(self):
        return self.initialized

    def init(self, address=None, ignore_reinit_error=False):
        self.initialized = True
        self.address = address

    def get_runtime_context(self):
        return types.SimpleNamespace(get_node_id=lambda: "node-1")

    def get_gpu_ids(self):
        return [0] if self.gpus else []

    def cluster_resources(self):
        return {"CPU": 16.0, "GPU": float(self.gpus)}

    def put(self, value):
        self.puts += 1
        return _Ref("ref", value)

    def remote(self, **options):
        self.remote_options = options

        def wrap(fn):
            class _Remote:
                def remote(self, cell_fn, cell, ref):
                    try:
                        return _Ref("done", fn(cell_fn, cell, ref.value))
                    except Exception as exc:  # noqa: BLE001
                        return _Ref("error", exc)
            return _Remote()
        return wrap

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        if ref.kind == "error":
            raise ref.value
        return ref.value

    def cancel(self, ref):
        pass


def test_ray_executor_runs_the_same_cell_function(monkeypatch):
    fake = _FakeRay(gpus=1)
    monkeypatch.setitem(sys.modules, "ray", fake)
    ex = make_executor("ray", address="auto")
    assert isinstance(ex, RayExecutor)
    out = dict(ex.map_unordered(_cell_fn, ["a", "bad", "c"], {"scale": 3}))
    assert out["a"] == {"cell": "a", "scale": 3} and out["c"]["cell"] == "c"
    assert isinstance(out["bad"], ValueError)
    assert fake.address == "auto" and fake.puts == 1  # the data goes to the object store once
    shared = {"scale": 3}
    for wave in (["a"], ["c"]):  # the runner's waves share one copy
        dict(ex.map_unordered(_cell_fn, wave, shared))
    assert fake.puts == 2
    assert fake.remote_options == {"num_cpus": 1, "num_gpus": 1, "max_retries": 3, "retry_exceptions": False}
    assert ex.placements["a"] == {"node_id": "node-1", "node_ip": "10.0.0.7", "gpu_ids": ["0"], "num_cpus": 1,
                                  "num_gpus": 1}


def test_ray_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'privattrib\[ray\]'"):
        make_executor("ray")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_an_unreachable_or_malformed_address_is_named_at_once(monkeypatch):
    """ray.init would retry an address that does not answer for minutes, printing GCS warnings."""
    import time

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"cannot reach the Ray cluster at 127\.0\.0\.1:{port} .*ray start --head"):
        make_executor("ray", address=f"127.0.0.1:{port}").connect()
    assert time.monotonic() - started < 10 and not fake.initialized
    with pytest.raises(RuntimeError, match=r"expected HOST:PORT"):
        make_executor("ray", address="10.0.0.1").connect()
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")  # what ray.init reads without an address
    with pytest.raises(RuntimeError, match="cannot reach"):
        make_executor("ray").connect()


def test_ray_refusing_the_address_is_a_clear_error(monkeypatch):
    fake = _FakeRay()

    def refuse(address=None, ignore_reinit_error=False):
        raise ConnectionError("Could not find any running Ray instance.")

    fake.init = refuse
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(RuntimeError, match="could not connect to the Ray cluster at auto: Could not find"):
        make_executor("ray", address="auto").connect()
