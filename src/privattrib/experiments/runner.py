"""The resumable grid runner: ``privattrib run SPEC -o OUTDIR``.

1. Check OUTDIR: rows of a different experiment (another data, classifier, fraction or attack
   setting) are refused unless ``force`` (then moved to ``OUTDIR/stale``).
2. Assemble the data once (real split, GAN sources trained and sampled; cached, resumable).
3. Run every cell whose row file does not exist yet, with a live progress display, storing each
   row atomically as it finishes and regenerating ``results.csv`` after it.

The report is built from the stored rows by its own stage (:func:`privattrib.report.build_report`,
which ``privattrib run`` calls after this runner).

Killing the process at any point loses at most the cells that were running; the same command
resumes. Cell order is seed-major, and each seed's first cell that needs the clean classifier
runs in a first wave, so the clean model is trained once and only read afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from privattrib.common import atomic_write_text, resolve_device
from privattrib.experiments.executors import make_executor
from privattrib.experiments.sources import adopt_legacy_folders, assemble_data
from privattrib.experiments.spec import REAL_CLASS, Cell, ExperimentSpec
from privattrib.experiments.store import ResultsStore, SpecChangedError

__all__ = ["RunResult", "run_experiment", "execute_cell", "environment_info", "SpecChangedError"]


@dataclass
class RunResult:
    """What a run did.

    Attributes:
        outdir: the experiment directory.
        total: cells in the grid; ``skipped``: already finished before this run; ``ran``: finished now.
        failures: ``{cell_id: error message}`` of cells that raised (their rows are absent; a rerun retries them).
        rows: every row of the grid present on disk, in grid order.
    """

    outdir: Path
    total: int
    skipped: int
    ran: int
    failures: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    results_csv: Path | None = None
    wall_s: float = 0.0


def environment_info(device: str = "auto") -> dict:
    """Versions and hardware a run used (written into experiment.json and the report)."""
    import numpy
    import torch

    import privattrib

    dev = resolve_device(device)
    info = {
        "privattrib": privattrib.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(dev),
        "cpu_threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        info["cuda"] = torch.version.cuda
        try:  # a Ray driver without a GPU may send cells to GPU workers
            info["gpu"] = torch.cuda.get_device_name(dev)
        except (AssertionError, RuntimeError) as exc:
            info["gpu"] = f"not visible from this process ({exc})"
    from importlib.metadata import PackageNotFoundError, version

    try:  # opendp has no __version__; its distribution metadata has
        info["opendp"] = version("opendp")
    except PackageNotFoundError:
        pass
    return info


# ----------------------------------------------------------------------------------------------
# the cell function (module level: Ray pickles it by reference)


def execute_cell(cell: Cell, shared: dict) -> dict:
    """Run one attribution cell and return its complete results row.

    Args:
        cell: (method spec, scenario, seed).
        shared: ``{"train", "val", "test"}`` clean :class:`LabeledImages` plus ``"context"``:
            classifier options, work_dir, obfuscated_fraction, device, hashes, experiment name.

    Returns:
        The row: identity columns (scenario, method, spec, ``param_<name>`` per parameter, epsilon,
        seed, noise backend, privacy notion) + everything the attribution cell reports (accuracy,
        ``acc_<class>``, confusion_matrix, chance, laundering_rate, n_train, n_test, mse, psnr,
        ssim, ...) + wall_s of the whole cell.
    """
    from privattrib.obfuscation import make

    ctx = shared["context"]
    ob = make(cell.spec)
    start = time.perf_counter()
    if cell.task == "attribution":
        from privattrib.attribution.scenarios import run_attribution_cell

        result = run_attribution_cell(
            shared["train"], shared["val"], shared["test"], ob, cell.scenario, dict(ctx["classifier"]),
            cell.seed, ctx["work_dir"], obfuscated_fraction=ctx["obfuscated_fraction"],
            real_class=REAL_CLASS, device=ctx["device"], progress=ctx.get("progress", False),
        )
    else:
        result = _run_attack(cell, ob, shared, ctx)
    wall = time.perf_counter() - start
    return compose_row(cell, ob, dict(result), ctx, wall)


def _run_attack(cell: Cell, ob, shared: dict, ctx: dict) -> dict:
    """One re-identification or reconstruction row (issue 6) on the attack's identity set."""
    from privattrib import attacks

    opts = ctx["attacks"][cell.task]
    identity_set = shared["attack_sets"][cell.task]
    common = dict(arch_cfg=opts.get("arch"), work_dir=str(Path(ctx["work_dir"]) / "attacks"),
                  train_per_identity=opts["train_per_identity"], test_per_identity=opts["test_per_identity"],
                  device=ctx["device"], max_identities=opts.get("max_identities"))
    if cell.task == "reid":
        return attacks.run_reid_cell(identity_set, ob, cell.seed, variant=cell.scenario.split(":", 1)[1], **common)
    return attacks.run_reconstruct_cell(identity_set, ob, cell.seed, unet_cfg=opts.get("unet"), **common)


def method_columns(ob) -> dict:
    """Identity columns of a method: name, canonical spec, one ``param_<name>`` per parameter,
    epsilon, noise backend and privacy notion (from ``describe()``)."""
    desc = _describe(ob)
    cols: dict[str, Any] = {"method": ob.name, "spec": ob.spec, "epsilon": ob.epsilon}
    for key, value in dict(ob.params).items():
        cols[f"param_{key}"] = value
    cols["noise"] = _first(desc, "noise_backend", "noise", "backend")
    cols["privacy_notion"] = _first(desc, "privacy_notion", "privacy", "notion") or "none"
    sigma = _first(desc, "sigma_used", "sigma")
    if sigma is not None and not isinstance(sigma, (dict, list)):
        cols["sigma_used"] = sigma
    return cols


def compose_row(cell: Cell, ob, result: dict, ctx: dict, wall_s: float) -> dict:
    row: dict[str, Any] = {
        "experiment": ctx["name"],
        "cell_id": cell.cell_id,
        "task": cell.task,
        "scenario": cell.scenario,
        "seed": cell.seed,
        "obfuscated_fraction": ctx["obfuscated_fraction"],
    }
    row.update(method_columns(ob))
    per_class = result.pop("per_class_accuracy", None)
    for key, value in result.items():
        if key in ("scenario", "seed", "spec", "method", "epsilon"):
            continue  # ours are authoritative (and identical when the cell reports them)
        row.setdefault(key, value)
    if isinstance(per_class, dict):
        row["per_class_accuracy"] = per_class
        for name, acc in per_class.items():
            row.setdefault(f"acc_{name}", acc)
    elif per_class is not None:
        names = ctx["class_names"]
        row["per_class_accuracy"] = {n: a for n, a in zip(names, list(per_class))}
        for name, acc in zip(names, list(per_class)):
            row.setdefault(f"acc_{name}", acc)
    row["describe"] = _describe(ob)
    row["cell_wall_s"] = result.get("wall_s", result.get("wall_seconds"))
    row["wall_s"] = round(wall_s, 3)
    row["rows_hash"] = ctx["task_hashes"][cell.key_group]
    row["data_hash"] = ctx["data_hash"]
    row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return row


def _describe(ob) -> dict:
    try:
        return dict(ob.describe())
    except Exception:  # noqa: BLE001 - describe is informative only
        return {}


def _first(d: dict, *keys):
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


# ----------------------------------------------------------------------------------------------


def write_manifest(store: ResultsStore, spec: ExperimentSpec, env: dict, executor: str,
                   attack_data: dict | None = None) -> None:
    old = store.read_manifest() or {}
    manifest = {
        "name": spec.name,
        "spec": spec.to_dict(),
        "rows_hash": spec.rows_hash(),
        "rows_key": spec.rows_key(),
        "task_hashes": spec.task_hashes(),
        "task_keys": spec.task_keys(),
        "data_hash": spec.data_hash(),
        "environment": env,
        "executor": executor,
        "created_at": old.get("created_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": int(old.get("runs", 0)) + 1,
        "cells": [c.file_stem for c in spec.cells()],
        # identity-set fingerprints (check_attack_data); kept for attacks not loaded this run
        "attack_data": {**old.get("attack_data", {}), **(attack_data or {})},
    }
    atomic_write_text(store.manifest_path, json.dumps(manifest, indent=1, sort_keys=True, default=str))
    atomic_write_text(store.outdir / "spec.yaml", yaml.safe_dump(spec.raw, sort_keys=False))


_CLEAN_MODEL_SCENARIOS = ("clean-train", "fine-tune", "fine-tune+adv")


def first_wave(cells: list[Cell], done: set[str]) -> list[Cell]:
    """Per seed, the first pending cell that needs the clean model, unless one is already done."""
    seeds_ready = {c.seed for c in cells if c.file_stem in done and c.scenario in _CLEAN_MODEL_SCENARIOS}
    # (attack cells cache their own clean identity classifier; they run in the second wave)
    wave, seen = [], set()
    for c in cells:
        if c.file_stem in done or c.seed in seeds_ready or c.seed in seen:
            continue
        if c.scenario in _CLEAN_MODEL_SCENARIOS:
            wave.append(c)
            seen.add(c.seed)
    return wave


def run_experiment(spec: ExperimentSpec, outdir: str | os.PathLike, *, executor: str = "local",
                   address: str | None = None, force: bool = False, device: str | None = None,
                   progress: bool = True, console=None, fail_fast: bool = False, gpus_per_cell: float | None = None,
                   only_seeds: list[int] | None = None) -> RunResult:
    """Run (or resume) every cell of ``spec`` into ``outdir``.

    Args:
        spec: the validated experiment.
        outdir: experiment directory (created).
        executor: ``local`` or ``ray``; ``address`` is the Ray cluster.
        force: when OUTDIR holds rows of a different spec, move them to ``OUTDIR/stale`` instead of refusing.
        device: overrides the spec's ``device``.
        progress: live progress display (rich).
        fail_fast: stop at the first failing cell instead of running the others.
        gpus_per_cell: Ray only: GPUs each cell asks for, overriding the spec's ``resources.gpus``
            (default 1 when the cluster has GPUs).
        only_seeds: run only the pending cells of these seeds now; ``results.csv``, the report and
            the manifest still cover the whole grid (the other seeds' finished rows included).

    Raises:
        SpecChangedError: OUTDIR belongs to another spec and ``force`` is False.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    started = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with _exclusive(outdir):
        return _run_locked(spec, outdir, executor=executor, address=address, force=force, device=device,
                           progress=progress, console=console, fail_fast=fail_fast,
                           started=started, gpus_per_cell=gpus_per_cell, only_seeds=only_seeds)


@contextlib.contextmanager
def _exclusive(outdir: Path):
    """One run per OUTDIR at a time (an advisory lock the kernel drops when the process dies,
    even by SIGKILL, so a killed run never blocks its resumption)."""
    import fcntl

    fh = open(outdir / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another `privattrib run` is using {outdir}; wait for it or use another -o") from None
        yield
    finally:
        fh.close()


def _run_locked(spec: ExperimentSpec, outdir: Path, *, executor, address, force, device, progress, console,
                fail_fast, started, gpus_per_cell, only_seeds=None) -> RunResult:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    device = device or spec.device
    runner = _make_runner(spec, executor, device, address, gpus_per_cell)
    store = ResultsStore(outdir)
    store.check_compatible(spec.accepted_hashes(), spec.task_keys(), legacy_hash=spec.rows_hash(), force=force)
    # Rows, data and GAN runs of older versions, accepted above, take today's stamps and names.
    restamped = store.restamp(spec.accepted_hashes(), spec.task_hashes(), legacy_hash=spec.rows_hash())
    for what in adopt_legacy_folders(outdir, spec) + ([f"{restamped} rows restamped"] if restamped else []):
        console.log(f"adopted from an older privattrib: {what}")

    cells = spec.cells()
    stems = [c.file_stem for c in cells]
    done = {s for s in stems if store.has(s)}
    # Attack cells reload their identity set each run: make sure it is the one their rows used.
    attack_sets = load_attack_sets(spec, {c.task for c in cells if c.task != "attribution" and c.file_stem not in done},
                                   progress)
    attack_data = check_attack_data(store, attack_sets, cells, done, force=force)
    done = {s for s in stems if store.has(s)}  # --force may have moved some aside
    env = environment_info(device)
    write_manifest(store, spec, env, executor, attack_data)
    store.write_csv(store.rows(stems))  # a kill between a row and its csv update is healed here

    todo = [c for c in cells if c.file_stem not in done and (only_seeds is None or c.seed in only_seeds)]
    check_method_models(todo)
    console.log(f"[bold]{spec.name}[/]: {len(cells)} cells, {len(done)} already done, {len(todo)} to run "
                f"({executor} executor, device {env['device']})")
    failures: dict[str, str] = {}
    ran = 0
    if todo:
        runner.connect()  # a wrong --address is named now, not after the data is assembled
        shared = _shared_inputs(spec, outdir, todo, attack_sets, device=device, console=console,
                                # a cell's own progress bars only in this process (Ray would
                                # stream them from every worker)
                                progress=progress, cell_progress=progress and runner.name == "local")
        wave1 = first_wave([c for c in cells if only_seeds is None or c.seed in only_seeds], done)
        waves = [wave1, [c for c in todo if c not in wave1]]
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("cells"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
            task = bar.add_task(spec.name, total=len(cells), completed=len(done))
            for wave in waves:
                if not wave:
                    continue
                if runner.name == "local":
                    bar.update(task, description=_cell_text(wave[0]))
                for i, (cell, outcome) in enumerate(runner.map_unordered(execute_cell, wave, shared)):
                    if isinstance(outcome, BaseException):
                        msg = "".join(traceback.format_exception_only(type(outcome), outcome)).strip()
                        failures[cell.cell_id] = msg
                        console.log(f"[red]cell failed[/] {cell.cell_id}: {msg}")
                        if fail_fast:
                            raise outcome
                    else:
                        placement = getattr(runner, "placements", {}).get(cell)
                        if placement is not None:  # where a Ray task computed the row (not a result)
                            outcome["ray"] = placement
                        store.write_row(cell.file_stem, outcome)
                        store.write_csv(store.rows(stems))
                        ran += 1
                        console.log(f"done {_cell_text(cell)}: accuracy {_fmt(outcome.get('accuracy'))}")
                    bar.advance(task)
                    if runner.name == "local" and i + 1 < len(wave):  # local runs cells in order
                        bar.update(task, description=_cell_text(wave[i + 1]))
                bar.update(task, description=spec.name)
    if failures:
        atomic_write_text(outdir / "failures.json", json.dumps(failures, indent=1))
    elif (outdir / "failures.json").exists():
        os.unlink(outdir / "failures.json")
    rows = store.rows(stems)
    csv_path = store.write_csv(rows)
    return RunResult(outdir=outdir, total=len(cells), skipped=len(done), ran=ran, failures=failures,
                     rows=rows, results_csv=csv_path, wall_s=time.perf_counter() - started)


def _make_runner(spec: ExperimentSpec, executor: str, device: str, address: str | None,
                 gpus_per_cell: float | None):
    """The executor, checked: the local one refuses a device this process lacks; the Ray one asks
    for the spec's resources (``--gpus-per-cell`` overrides ``gpus``), which place cells on a
    cluster and change no result."""
    if executor == "local":
        check_local_device(device)
        return make_executor(executor, address=address, num_gpus=gpus_per_cell)
    from privattrib.experiments.spec import resource_amount

    request = dict(spec.resources)
    if gpus_per_cell is not None:
        request["gpus"] = resource_amount(gpus_per_cell, "gpus", "--gpus-per-cell")
    return make_executor(executor, address=address, num_gpus=request.get("gpus"), num_cpus=request.get("cpus"))


def _shared_inputs(spec: ExperimentSpec, outdir: Path, todo: list[Cell], attack_sets: dict, *, device: str,
                   console, progress: bool, cell_progress: bool) -> dict:
    """What every cell reads (:func:`execute_cell`'s ``shared``): the assembled splits when an
    attribution cell is to run, the attack sets, and the run's context."""
    if any(c.task == "attribution" for c in todo):
        data = assemble_data(spec, outdir, device=device, console=console, progress=progress)
        splits = {"train": data.train, "val": data.val, "test": data.test}
    else:
        splits = {"train": None, "val": None, "test": None}
    return {
        **splits,
        "attack_sets": attack_sets,
        "context": {
            "name": spec.name, "classifier": spec.classifier,
            "work_dir": str(outdir / "models"), "obfuscated_fraction": spec.obfuscated_fraction,
            "device": device, "progress": cell_progress, "task_hashes": spec.task_hashes(),
            "data_hash": spec.data_hash(),
            "class_names": spec.class_names, "attacks": spec.attacks,
        },
    }


def check_method_models(cells: list[Cell]) -> None:
    """Load the model every method of ``cells`` attacks (``adv``'s surrogate) before any data is
    assembled, so that a missing or wrong checkpoint is named now, not by every cell later."""
    from privattrib.obfuscation import make

    for spec in dict.fromkeys(c.spec for c in cells):
        ob = make(spec)
        if callable(getattr(ob, "surrogate", None)):
            ob.surrogate("cpu")


def check_local_device(device: str) -> None:
    """Refuse a device this process cannot use, with a message instead of torch's traceback."""
    import torch

    dev = resolve_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                               "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {device!r}: MPS is not available here; use --device cpu or auto")


def _cell_text(cell: Cell) -> str:
    return f"{cell.scenario} · {cell.spec} · seed {cell.seed}"


def _fmt(x) -> str:
    return "?" if x is None else f"{float(x):.3f}"


def check_attack_data(store: ResultsStore, attack_sets: dict, cells: list[Cell], done: set[str], *,
                      force: bool) -> dict[str, str]:
    """Compare each loaded identity set with the one the task's finished rows were computed on (a
    fingerprint of keys, labels and sampled pixels, kept in experiment.json).

    The spec keys an attack's data by its path as written, so other images behind the same path
    would otherwise join the old rows unnoticed. With ``force`` those rows move to ``stale/``.
    Returns ``{task: fingerprint}`` of the loaded sets, for the manifest.

    Raises:
        SpecChangedError: the data changed and ``force`` is False.
    """
    from privattrib.attribution.scenarios import _data_fingerprint
    from privattrib.common import stable_hash

    recorded = (store.read_manifest() or {}).get("attack_data") or {}
    fingerprints = {}
    for task, data in attack_sets.items():
        fingerprint = fingerprints[task] = stable_hash(_data_fingerprint(data))
        finished = [store.row_path(c.file_stem) for c in cells if c.task == task and c.file_stem in done]
        if finished and recorded.get(task) not in (None, fingerprint):
            if not force:
                raise SpecChangedError(
                    f"the identity set of attack {task} is not the one its {len(finished)} finished rows in "
                    f"{store.outdir} used (same path, other images); their rows would not be comparable. Use "
                    f"another output directory, or --force to move them to {store.outdir / 'stale'}."
                )
            store.move_aside(finished)
    return fingerprints


def load_attack_sets(spec: ExperimentSpec, tasks: set[str], progress: bool) -> dict:
    """The identity set of each attack in ``tasks`` (the data layer caches the decoded images)."""
    from privattrib.data.dataset import LabeledImages
    from privattrib.experiments.sources import _load_plain_source, conform_images

    sets = {}
    for name in sorted(tasks):
        opts = spec.attacks[name]
        data = _load_plain_source(opts["data"], opts["size"], opts["channels"], spec.data.get("cache_dir"), progress)
        images = conform_images(data.images, opts["size"], opts["channels"])
        sets[name] = LabeledImages(images=images, labels=data.labels, class_names=data.class_names, keys=data.keys,
                                   identities=data.identities, meta=dict(data.meta))
    return sets
