"""CLI verbs ``run``, ``report`` and ``demo`` (see privattrib.cli): thin wrappers over
:mod:`privattrib.experiments` and :mod:`privattrib.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from privattrib.cli.options import device_option

DEFAULT_DEMO_DIR = "privattrib-demo"


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _build_report(outdir: Path, console) -> Optional[Path]:
    """report.html from the stored rows; a failure is reported, not raised (the rows are safe)."""
    from privattrib.report import build_report

    try:
        return build_report(outdir)
    except Exception as exc:  # noqa: BLE001 - say why, and how to retry
        console.print(f"[red]report failed[/]: {exc!r} (rerun `privattrib report {outdir}`)")
        return None


def _finish(result, console, *, table_title: str) -> None:
    from rich.console import Console

    from privattrib.report import summary_rich_table

    report_html = _build_report(result.outdir, console)
    out = Console()
    if result.rows:
        out.print(summary_rich_table(result.rows, title=table_title))
    out.print(f"{result.ran} cells run, {result.skipped} already done, {len(result.failures)} failed "
              f"of {result.total} in {result.wall_s:.0f} s")
    out.print(f"results: {result.results_csv}")
    if report_html is not None:
        out.print(f"report:  [bold]{report_html}[/]")
    if result.failures:
        console.print(f"[red]{len(result.failures)} cell(s) failed[/] (listed in {result.outdir / 'failures.json'}); "
                      "rerun the same command to retry them")
        raise typer.Exit(1)


def _run(spec, outdir: Path, *, executor: str, address: Optional[str], force: bool, device: Optional[str],
         progress: bool, fail_fast: bool, table_title: str, gpus_per_cell: Optional[float] = None,
         only_seeds: Optional[list] = None) -> None:
    from privattrib.experiments import SpecChangedError, run_experiment

    console = _console()
    try:
        result = run_experiment(spec, outdir, executor=executor, address=address, force=force, device=device,
                                progress=progress, console=console, fail_fast=fail_fast,
                                gpus_per_cell=gpus_per_cell, only_seeds=only_seeds)
    except (SpecChangedError, RuntimeError, ValueError, FileNotFoundError, NotImplementedError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: finished cells are stored in {outdir}; rerun the same command "
                      "to resume")
        raise typer.Exit(130) from None
    _finish(result, console, table_title=table_title)


def _seed_subset(text: str, seeds: list[int]) -> list[int]:
    """``--seeds 0,2`` -> those of the spec's seeds (seeds are not part of a run's keys, so a
    later run with all of them adds the others to the same directory)."""
    from privattrib.experiments import SpecError

    try:
        chosen = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise SpecError(f"--seeds: a list of integers such as 0,1, got {text!r}") from None
    unknown = [s for s in chosen if s not in seeds]
    if unknown or not chosen:
        raise SpecError(f"--seeds: {unknown or text!r} not among the spec's seeds {seeds}")
    return [s for s in seeds if s in chosen]


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the main app."""

    @app.command("run")
    def run(
        spec_file: Path = typer.Argument(..., help="experiment file (YAML)", exists=False),
        outdir: Path = typer.Option(..., "-o", "--out", help="experiment directory (created; a rerun resumes)"),
        executor: str = typer.Option("local", help="local (in-process) or ray (needs the ray extra)"),
        address: Optional[str] = typer.Option(None, help="Ray cluster address (with --executor ray)"),
        gpus_per_cell: Optional[float] = typer.Option(None, help="Ray: GPUs per cell, e.g. 0.5 to share a GPU "
                                                      "between two cells (default 1 when the cluster has GPUs)"),
        device: Optional[str] = device_option(None, "override the spec's device", here=False),
        force: bool = typer.Option(False, "--force", help="OUTDIR holds rows of another spec: move them to "
                                   "OUTDIR/stale and start over instead of refusing"),
        fail_fast: bool = typer.Option(False, "--fail-fast", help="stop at the first failing cell"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no live progress display"),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="run only these of the spec's seeds now, e.g. "
                                            "0 or 0,1 (the others stay for a later run; results.csv and the report keep every finished seed)"),
    ) -> None:
        """Run every cell of an experiment grid; rerun the same command to resume after any interruption."""
        from privattrib.experiments import SpecError, load_spec

        try:
            spec = load_spec(spec_file)
            only_seeds = _seed_subset(seeds, spec.seeds) if seeds is not None else None
        except (SpecError, FileNotFoundError) as exc:
            _console().print(f"[red]error in {spec_file}:[/] {exc}")
            raise typer.Exit(2) from None
        _run(spec, outdir, executor=executor, address=address, force=force, device=device,
             progress=not no_progress, fail_fast=fail_fast, table_title=f"{spec.name} (mean over seeds)",
             gpus_per_cell=gpus_per_cell, only_seeds=only_seeds)

    @app.command("report")
    def report(
        outdir: Path = typer.Argument(..., help="experiment directory written by `privattrib run`"),
        out: Optional[Path] = typer.Option(None, "-o", "--out", help="where to write (default OUTDIR/report.html)"),
        markdown: bool = typer.Option(False, "--markdown", help="also print the summary as a Markdown table"),
    ) -> None:
        """Rebuild OUTDIR/report.html (and results.csv) from the finished cells."""
        from privattrib.experiments import ResultsStore
        from privattrib.report import build_report

        try:
            store = ResultsStore(outdir) if (outdir / "experiment.json").is_file() else None
            if store is not None:
                manifest = store.read_manifest() or {}
                store.write_csv(store.rows(manifest.get("cells")))
            path = build_report(outdir, out)
        except FileNotFoundError as exc:
            _console().print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        if markdown:
            from privattrib.report.tables import summary_markdown

            typer.echo(summary_markdown(store.rows((store.read_manifest() or {}).get("cells"))))
        typer.echo(f"report: {path}")

    @app.command("demo")
    def demo(
        outdir: Path = typer.Option(Path(DEFAULT_DEMO_DIR), "-o", "--out", help="experiment directory"),
        device: Optional[str] = device_option(None, "where to compute (default: auto)"),
        force: bool = typer.Option(False, "--force", help="replace rows of an older demo spec in OUTDIR"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no live progress display"),
    ) -> None:
        """The main job on built-in data, no download: synthetic faces vs tiny GANs, every method, three scenarios.

        A few minutes on 2 CPU cores; ends with a summary table and the report's path.
        """
        from privattrib.experiments import load_builtin_spec, validate_spec

        spec = validate_spec(load_builtin_spec("demo"))
        _run(spec, outdir, executor="local", address=None, force=force, device=device,
             progress=not no_progress, fail_fast=False, table_title="privattrib demo: attribution accuracy")
