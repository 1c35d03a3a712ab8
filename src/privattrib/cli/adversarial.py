"""CLI verbs of the ``adv`` method: ``adv surrogate`` (the attribution classifier it attacks).

Thin: parses options and calls :func:`privattrib.experiments.surrogate.train_surrogate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from privattrib.cli.options import device_option

adv_app = typer.Typer(help="Adversarial perturbation (the adv method): the surrogate models it attacks.",
                      no_args_is_help=True)


@adv_app.command("surrogate")
def surrogate_command(
    spec_file: Path = typer.Argument(..., help="experiment file (YAML) whose data the surrogate learns"),
    outdir: Path = typer.Option(..., "-o", "--out", help="the experiment directory (data are assembled there once)"),
    seed: int = typer.Option(100, help="the surrogate's weight seed (not one of the experiment's seeds)"),
    arch: Optional[str] = typer.Option(None, help="another network than the experiment's classifier, e.g. dct"),
    save: Optional[Path] = typer.Option(None, help="where to write (default OUTDIR/surrogates/ARCH-sSEED.pt)"),
    device: str = device_option(help="where to train"),
) -> None:
    """Train the clean attribution classifier an `adv:target=attribution,model=PATH` method attacks."""
    from rich.console import Console

    from privattrib.experiments import SpecError, load_spec
    from privattrib.experiments.surrogate import train_surrogate

    console = Console(stderr=True)
    try:
        spec = load_spec(spec_file)
        path = train_surrogate(spec, outdir, seed=seed, arch=arch, path=save, device=device, console=console)
    except (SpecError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    typer.echo(f"surrogate: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``adv`` group to the main app."""
    app.add_typer(adv_app, name="adv")
