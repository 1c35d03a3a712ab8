"""Shared fixtures: the real data beside the checkout, skipped with a reason where absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (only the development machines have ../shared/data)")
    return path


@pytest.fixture(scope="session")
def celeba_root() -> Path:
    """Official-layout CelebA subset: img_align_celeba/ plus the label files."""
    return _shared("celeba")


@pytest.fixture(scope="session")
def yaleb_root() -> Path:
    """Extended Yale B, cropped: yaleBNN/ folders of PGM faces plus the release's extra files."""
    return _shared("yaleb")


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch on the cores CI has; tests must not oversubscribe a 2-core machine."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
