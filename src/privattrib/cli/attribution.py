"""``privattrib attribute`` and ``privattrib train-attributor``: attribution of your own images
(thin wrappers over :mod:`privattrib.attribution.inference` and :mod:`privattrib.attribution.attributor`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import List, Optional

import typer

from privattrib.cli.options import device_option
from privattrib.cli.output import write_csv


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _gather(inputs: list[Path]) -> tuple[list[Path], list[tuple[str, str]], int]:
    """Image files under the inputs (folders searched recursively), the entries skipped while
    listing (with reasons), and the number of folder entries ignored by name (hidden files, other
    extensions: not bad files, as for ``obfuscate``)."""
    from privattrib.data import walk_images

    files: list[Path] = []
    bad: list[tuple[str, str]] = []
    ignored = 0
    for inp in inputs:
        if not inp.exists() and not inp.is_symlink():
            raise typer.BadParameter(f"{inp} does not exist", param_hint="IMAGES")
        if inp.is_dir():
            found, skip = walk_images(inp)
            files += found
            bad += [(s.path, s.reason) for s in skip if not s.not_an_image]
            ignored += sum(1 for s in skip if s.not_an_image)
        else:
            found, skip = walk_images(inp)
            files += found
            bad += [(s.path, s.reason) for s in skip]
    return files, bad, ignored


def _model_summary(attributor) -> list[str]:
    d = attributor.describe()
    lines = [f"model: {d['source']} ({d['arch']}, {d['image_size']}x{d['image_size']} px, "
             f"{'RGB' if d['in_channels'] == 3 else 'grey'}; classes: {', '.join(d['classes'])})"]
    if d["held_out_accuracy"] is not None:
        lines.append(f"held-out accuracy {d['held_out_accuracy']:.3f} (chance {d['chance']:.3f}, "
                     f"{d['n_test']} test images)")
    if d["calibrated"]:
        lines.append(f"calibrated: temperature {d['temperature']:.3f}; ECE ({d['ece_bins']} bins) on its test split "
                     f"{d['ece_before']:.3f} before, {d['ece_after']:.3f} after")
    lines.append(f"scope: {d['scope']}")
    lines += [f"note: {m}" for m in d["notes"]]
    return lines


def _short_notes(a) -> str:
    parts = []
    if a.resized_from is not None:
        parts.append(f"resized from {a.resized_from[1]}x{a.resized_from[0]}")
    if a.channels_converted:
        parts.append(a.channels_converted)
    return "; ".join(parts)


def _print_table(attributions, class_names: list[str], show: int) -> None:
    from rich.console import Console
    from rich.table import Table

    per_class = len(class_names) <= 6
    table = Table(title=f"{len(attributions)} image(s) attributed")
    table.add_column("file", overflow="fold")
    table.add_column("predicted")
    if per_class:
        for name in class_names:
            table.add_column(f"p({name})", justify="right")
    else:
        table.add_column("p(predicted)", justify="right")
    table.add_column("input")
    for a in attributions[:show]:
        probs = ([f"{a.probabilities[n]:.3f}" for n in class_names] if per_class else [f"{a.confidence:.3f}"])
        table.add_row(a.key, a.predicted, *probs, _short_notes(a))
    if len(attributions) > show:
        table.add_row(f"... {len(attributions) - show} more (--json or --csv list all)", "",
                      *([""] * (len(class_names) if per_class else 1)), "")
    console = Console()
    console.print(table)
    counts = Counter(a.predicted for a in attributions)
    console.print("predicted: " + ", ".join(f"{name} {counts[name]}" for name in class_names if counts[name]),
                  highlight=False)


def _csv_rows(attributions, skipped: list[tuple[str, str]], class_names: list[str]) -> tuple[list[str], list[dict]]:
    fields = ["file", "status", "predicted", "confidence", *[f"p_{n}" for n in class_names],
              "resized_from", "channels_converted", "notes"]
    rows = [{
        "file": a.key, "status": "ok", "predicted": a.predicted, "confidence": f"{a.confidence:.6f}",
        **{f"p_{n}": f"{a.probabilities[n]:.6f}" for n in class_names},
        "resized_from": "" if a.resized_from is None else f"{a.resized_from[0]}x{a.resized_from[1]}",
        "channels_converted": a.channels_converted or "", "notes": " | ".join(a.notes),
    } for a in attributions]
    rows += [{"file": path_, "status": f"skipped: {reason}"} for path_, reason in skipped]
    return fields, rows


def attribute(
    images: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    model: str = typer.Option(..., "--model", "-m", help="A checkpoint of `train-attributor`, a classifier checkpoint "
                              "or OUTDIR of `privattrib run`, or 'demo' (the built-in demo model: demo sources only)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: the model's description, every image, "
                                 "every skipped file."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Also write one row per file to this CSV."),
    device: str = device_option(help="where to run the model"),
    batch_size: int = typer.Option(256, "--batch-size", help="images per forward pass"),
    workers: Optional[int] = typer.Option(None, "--workers", help="decoding threads (default: the cores, at most 8)"),
    show: int = typer.Option(50, "--show", min=0, help="rows of the table to print (--json and --csv have all)"),
) -> None:
    """Which source made each image: the predicted class and the probability of every class.

    Images are cropped and resized the way the model's training images were (and the output says
    so); bad files are named and skipped with a reason. Exit status: 0 when every file was
    attributed, 1 when any was skipped, 2 for bad arguments.
    """
    from privattrib.attribution.inference import AttributorError, load_attributor

    if batch_size < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--batch-size")
    if workers is not None and workers < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--workers")
    files, bad, ignored = _gather(list(images))
    try:
        attributor = load_attributor(model, device=device)
    except (AttributorError, ValueError, OSError) as exc:  # ValueError, OSError: the demo model's training
        _err(f"error: --model: {exc}")
        raise typer.Exit(2) from None
    for line in _model_summary(attributor):
        _err(line)
    if ignored:
        _err(f"ignored {ignored} entr{'y' if ignored == 1 else 'ies'} of the input folders that are not images by "
             "name (hidden or another extension)")
    try:
        attributions, skipped = attributor.predict_files(files, batch_size=batch_size, workers=workers,
                                                         progress=len(files) >= 64)
    except KeyboardInterrupt:
        _err("interrupted: nothing was written")
        raise typer.Exit(130) from None
    bad += [(s.path, s.reason) for s in skipped]
    names = attributor.class_names
    if as_json:
        typer.echo(json.dumps({
            "model": attributor.describe(),
            "images": [a.to_dict() for a in attributions],
            "skipped": [{"path": p, "reason": r} for p, r in bad],
            "predicted": dict(Counter(a.predicted for a in attributions)),
        }, indent=1))
    elif attributions:
        _print_table(attributions, names, show)
    if csv_path is not None:
        write_csv(csv_path, *_csv_rows(attributions, bad, names), "--csv")
    for path, reason in bad:
        _err(f"skipped {path}: {reason}")
    if not attributions:
        _err("error: no image could be attributed" + (" (see the reasons above)" if bad else ""))
        raise typer.Exit(1)
    if bad:
        _err(f"{len(attributions)} attributed, {len(bad)} skipped")
        raise typer.Exit(1)


def _parse_fakes(values: list[str]) -> dict[str, str]:
    from privattrib.experiments.spec import REAL_CLASS

    fakes: dict[str, str] = {}
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name or not source:
            raise typer.BadParameter(f"{value!r}: write NAME=FOLDER, NAME=GAN_RUN or NAME=zoo:ARCH[:PRESET]",
                                     param_hint="--fake")
        if name == REAL_CLASS:
            raise typer.BadParameter(f"{REAL_CLASS!r} is the camera class (--real), not a fake source name",
                                     param_hint="--fake")
        if name in fakes:
            raise typer.BadParameter(f"the name {name!r} is given twice", param_hint="--fake")
        fakes[name] = source
    return fakes


def _parse_options(values: list[str]) -> dict:
    """KEY=VALUE pairs; a VALUE that reads as JSON (256, 1e-5, true, [0.5, 0.9]) is taken as such,
    anything else as text (reflect)."""
    options = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r}: write KEY=VALUE, e.g. fmap_base=256", param_hint="--option")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def train_attributor_cmd(
    real: str = typer.Option(..., "--real", help="Camera images: a CelebA root or a folder of images (class 'real')."),
    fake: List[str] = typer.Option(..., "--fake", help="NAME=SOURCE, repeatable: a folder of GAN images, a GAN-zoo run "
                                   "folder (`privattrib gan train`), or zoo:ARCH[:PRESET] to train one here on the real "
                                   "training images."),
    out: Path = typer.Option(..., "-o", "--out", help="The checkpoint to write (.pt); .json and .png figures go beside it."),
    size: int = typer.Option(64, "--size", help="side of the model's input in pixels"),
    channels: int = typer.Option(3, "--channels", help="3 (RGB) or 1 (grey)"),
    arch: str = typer.Option("yu2019", "--arch", help="classifier: yu2019, resnet18, dct"),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    option: Optional[List[str]] = typer.Option(None, "--option", help="architecture option KEY=VALUE, repeatable "
                                               "(e.g. fmap_base=256)"),
    per_class: Optional[int] = typer.Option(None, "--per-class", help="images per class (default: all of the "
                                            "smallest file source)"),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="share for validation (fits the temperature; "
                                       "0: uncalibrated)"),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="share held out for the reported figures"),
    seed: int = typer.Option(0, "--seed", help="split, sampling and training seed"),
    device: str = device_option(help="where to train"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="keep the assembled data (and zoo GANs) here"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as one JSON object"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bars"),
) -> None:
    """Train one attribution classifier on a real folder and one or more GAN sources, calibrate it
    (temperature scaling on a validation split) and report its held-out accuracy, per-class accuracy,
    confusion matrix and calibration error."""
    from rich.console import Console

    from privattrib.attribution.attributor import train_attributor

    if channels not in (1, 3):
        raise typer.BadParameter("must be 1 or 3", param_hint="--channels")
    fakes = _parse_fakes(list(fake))
    if not Path(real).exists():
        raise typer.BadParameter(f"{real} does not exist", param_hint="--real")
    if out.suffix != ".pt":
        raise typer.BadParameter(f"{out}: the checkpoint's name must end in .pt", param_hint="--out")
    classifier = {"arch": arch, "epochs": epochs, "batch": batch_size, "lr": lr, **_parse_options(list(option or []))}
    console = Console(stderr=True)
    try:
        result = train_attributor(real, fakes, out, size=size, channels=channels, per_class=per_class,
                                  val_fraction=val_fraction, test_fraction=test_fraction, classifier=classifier,
                                  seed=seed, device=device, work_dir=work_dir, progress=not no_progress,
                                  console=console)
    except (ValueError, FileNotFoundError) as exc:
        _err(f"error: {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        _err("interrupted: nothing was written (zoo GAN training resumes on a rerun)")
        raise typer.Exit(130) from None
    if as_json:
        from dataclasses import asdict

        d = asdict(result)
        d["calibration"] = {k: v for k, v in d["calibration"].items() if not k.startswith("reliability")}
        typer.echo(json.dumps(d, indent=1, default=str))
        return
    _print_training(result)


def _print_training(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    names = result.class_names
    counts = result.counts
    table = Table(title=f"held-out test split: accuracy {result.accuracy:.3f} (chance {result.chance:.3f})")
    table.add_column("true \\ predicted")
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("accuracy", justify="right")
    for i, n in enumerate(names):
        table.add_row(n, *[str(v) for v in result.confusion_matrix[i]], f"{result.per_class_accuracy[n]:.3f}")
    console.print(table)
    cal = result.calibration
    split = ", ".join(f"{s} {sum(counts.get(s, {}).values()):,}" for s in ("train", "val", "test"))
    console.print(f"images: {split} ({len(names)} classes, balanced)", highlight=False)
    console.print(f"laundering rate (fake test images called real): {result.laundering_rate:.3f}", highlight=False)
    if cal["fitted_on"]:
        console.print(f"temperature {result.temperature:.3f} (fitted on the {cal['fitted_on']}); ECE ({cal['bins']} "
                      f"bins, test split) {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}; NLL "
                      f"{cal['nll_before']:.4f} -> {cal['nll_after']:.4f}", highlight=False)
    else:
        why = cal.get("not_fitted") or "no validation split"
        console.print(f"uncalibrated ({why}): ECE {cal['ece_before']:.4f}", highlight=False)
    console.print(f"model: {result.path} (+ {result.path.with_suffix('.json').name})", highlight=False)
    console.print(f"plots: {result.plots['confusion']}, {result.plots['calibration']}", highlight=False)
    if result.work_dir is not None:
        console.print(f"data and GAN runs: {result.work_dir}", highlight=False)
    console.print(f"took {result.seconds:.0f} s (training {result.train_seconds:.0f} s)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the main app."""
    app.command("attribute")(attribute)
    app.command("train-attributor")(train_attributor_cmd)
