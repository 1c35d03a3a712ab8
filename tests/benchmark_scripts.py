"""Loading a script of benchmarks/ as a module in the tests, and reading the options its ``run``
step would get without running it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (its folder on sys.path, for the scripts it imports)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_args(script: ModuleType, argv: list[str]):
    """The parsed arguments ``script.main(argv)`` hands to ``script.run``, which is not called."""
    captured = {}
    original = script.run
    script.run = lambda args: captured.setdefault("args", args)
    try:
        script.main(argv)
    finally:
        script.run = original
    return captured["args"]
