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


def test_cuda_without_a_gpu_is_refused_plainly(monkeypatch):
    import torch

    from privattrib.common import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
