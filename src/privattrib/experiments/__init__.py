"""Experiment files, the resumable grid runner, the results store and the executors (DESIGN.md §1, §5-6).

    from privattrib.experiments import load_spec, run_experiment
    spec = load_spec("examples/celeba-attribution.yaml")
    result = run_experiment(spec, "runs/celeba")      # resumes when rerun
"""

from privattrib.experiments.spec import (Cell, ExperimentSpec, SpecError, load_builtin_spec, load_spec,
                                         validate_spec)
from privattrib.experiments.store import ResultsStore, SpecChangedError, read_csv

__all__ = [
    "Cell", "ExperimentSpec", "SpecError", "SpecChangedError", "ResultsStore", "load_spec",
    "load_builtin_spec", "validate_spec", "read_csv", "run_experiment", "assemble_data",
    "load_experiment_data", "RunResult",
]


def __getattr__(name):  # the runner pulls torch and the other stages in; import it on first use
    if name in ("run_experiment", "RunResult", "execute_cell", "environment_info"):
        from privattrib.experiments import runner

        return getattr(runner, name)
    if name in ("assemble_data", "load_experiment_data", "ExperimentData"):
        from privattrib.experiments import sources

        return getattr(sources, name)
    raise AttributeError(name)
