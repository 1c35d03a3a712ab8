"""privattrib.common: device resolution."""

import pytest


def test_bare_cuda_resolves_to_the_current_index(monkeypatch):
    # tensors on the GPU report cuda:0; a bare "cuda" must compare equal to that device, or the
    # training loop treats GPU data as host data and fails (found on the first H100 run)
    import torch

    from privattrib.common import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device(torch.device("cuda")) == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_cuda_without_a_gpu_stays_bare_and_a_local_run_is_refused(monkeypatch):
    # a Ray driver without a GPU describes a "cuda" run it sends to GPU workers (environment_info);
    # only a local run on that device is refused, with a message
    import torch

    from privattrib.common import resolve_device
    from privattrib.experiments.runner import check_local_device, environment_info

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    assert environment_info("cuda")["device"] == "cuda"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        check_local_device("cuda")


def test_environment_info_records_the_opendp_version_when_installed():
    # opendp has no __version__ attribute: the manifest used to record "?"
    from importlib.metadata import PackageNotFoundError, version

    from privattrib.experiments.runner import environment_info

    try:
        expected = version("opendp")
    except PackageNotFoundError:
        pytest.skip("opendp is not installed")
    assert environment_info("cpu")["opendp"] == expected


def test_json_ready_gives_what_a_strict_json_parser_reads():
    import json

    import numpy as np

    from privattrib.common import json_ready

    obj = {"a": np.float32(0.5), 3: (np.int64(2), float("nan")), "m": np.array([[1.0, np.inf]]), "s": "x"}
    ready = json_ready(obj)
    assert ready == {"a": 0.5, "3": [2, None], "m": [[1.0, None]], "s": "x"}
    assert json.loads(json.dumps(ready, allow_nan=False)) == ready
