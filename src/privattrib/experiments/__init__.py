"""Experiment files, the resumable grid runner, the results store and the executors (DESIGN.md §1, §5-6).

    from privattrib.experiments import load_spec, run_experiment
    spec = load_spec("examples/celeba-attribution.yaml")
    result = run_experiment(spec, "runs/celeba")      # resumes when rerun
"""

from privattrib.common import lazy_exports
from privattrib.experiments.spec import (Cell, ExperimentSpec, SpecError, load_builtin_spec, load_spec,
                                         validate_spec)
from privattrib.experiments.store import ResultsStore, SpecChangedError, read_csv

__all__ = [
    "Cell", "ExperimentSpec", "SpecError", "SpecChangedError", "ResultsStore", "load_spec",
    "load_builtin_spec", "validate_spec", "read_csv", "run_experiment", "assemble_data",
    "load_experiment_data", "RunResult",
]


# the runner pulls torch and the other stages in; import it on first use
_EXPORTS = {
    **{name: "privattrib.experiments.runner"
       for name in ("run_experiment", "RunResult", "execute_cell", "environment_info")},
    **{name: "privattrib.experiments.sources"
       for name in ("assemble_data", "load_experiment_data", "ExperimentData")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
