"""CLI verbs of the ``adv`` method: the models it attacks.

``adv surrogate`` (an attribution experiment's detector) and ``adv reid-surrogate`` (an identity
classifier of a re-identification split). Thin: they parse options and call
:func:`privattrib.experiments.surrogate.train_surrogate` and
:func:`privattrib.attacks.reid.train_reid_surrogate`.
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


@adv_app.command("reid-surrogate")
def reid_surrogate_command(
    data: str = typer.Option(..., "--data", help="identity set: per-person folders (Yale B), a CelebA root, or "
                             "synthetic:n_identities=40,per_identity=10"),
    out: Path = typer.Option(..., "-o", "--out", help="checkpoint to write (.pt; its options beside it as .json)"),
    seed: int = typer.Option(0, help="the split: the same seed as `attack reid --seed` protects that split's faces"),
    surrogate_seed: int = typer.Option(1000, help="the surrogate's weight seed (not --seed: the attack's own "
                                       "classifiers use that one)"),
    arch: str = typer.Option("mcpherson2016", help="identity classifier (mcpherson2016, resnet18, ...)"),
    train_per_identity: int = typer.Option(8), test_per_identity: int = typer.Option(2),
    max_identities: Optional[int] = typer.Option(None),
    pretrain_others: bool = typer.Option(False, "--pretrain-others", help="first train on the people left out "
                                         "of the split (needs --max-identities below the set's people): with few "
                                         "photos per person a surrogate from scratch recognises almost nobody"),
    size: int = typer.Option(32, help="image side in pixels after loading"),
    epochs: int = typer.Option(40), batch_size: int = typer.Option(32), lr: float = typer.Option(1e-3),
    device: str = device_option(help="where to train"),
) -> None:
    """Train the identity classifier an `adv:target=reid,model=PATH` method attacks, on the clean
    training images of the split of --seed."""
    from privattrib.attacks.reid import train_reid_surrogate
    from privattrib.cli.attacks import load_identity_data

    identity_set = load_identity_data(data, size, seed)
    try:
        path = train_reid_surrogate(identity_set, out, seed=seed, surrogate_seed=surrogate_seed,
                                    arch_cfg={"arch": arch, "epochs": epochs, "batch_size": batch_size, "lr": lr},
                                    train_per_identity=train_per_identity, test_per_identity=test_per_identity,
                                    max_identities=max_identities, device=device, progress=True,
                                    pretrain_others=pretrain_others)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"surrogate: {path}")


@adv_app.command("train-generator")
def train_generator_command(
    surrogate: Path = typer.Option(..., "--surrogate", help="the identity classifier to fool (adv reid-surrogate)"),
    data: str = typer.Option(..., "--data", help="identity set: the generator learns on its training split"),
    out: Path = typer.Option(..., "-o", "--out", help="generator checkpoint to write (adv-gen:model=PATH)"),
    eps: float = typer.Option(4.0, help="L-inf budget in grey levels"),
    seed: int = typer.Option(0, help="the split (as the surrogate's --seed) and the generator's weights"),
    train_per_identity: int = typer.Option(8), test_per_identity: int = typer.Option(2),
    max_identities: Optional[int] = typer.Option(None),
    size: int = typer.Option(32, help="image side in pixels after loading"),
    epochs: int = typer.Option(10), batch_size: int = typer.Option(64), lr: float = typer.Option(1e-3),
    device: str = device_option(help="where to train"),
) -> None:
    """Train a PriGAN-style one-pass generator (adv-gen) against a re-identification surrogate, on the
    clean training faces of the split of --seed (never its test faces)."""
    from privattrib.attacks.reid import split_identity_set
    from privattrib.cli.attacks import load_identity_data
    from privattrib.obfuscation.adversarial import train_perturbation_generator

    identity_set = load_identity_data(data, size, seed)
    try:
        train, _ = split_identity_set(identity_set, train_per_identity, test_per_identity, seed=seed,
                                      max_identities=max_identities)
        path = train_perturbation_generator(surrogate, train.images, out, eps=eps, epochs=epochs,
                                            batch_size=batch_size, lr=lr, seed=seed, device=device, progress=True)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"generator: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``adv`` group to the main app."""
    app.add_typer(adv_app, name="adv")
