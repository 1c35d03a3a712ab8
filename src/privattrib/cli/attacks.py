"""CLI verbs of the attacks: ``attack reid``, ``attack reconstruct`` and ``audit``.

Thin: each verb parses options, loads the data and calls :mod:`privattrib.attacks`. Library
imports happen inside the verbs so that ``privattrib --help`` stays fast and independent of them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from privattrib.cli.options import device_option

attack_app = typer.Typer(
    help="Attacks on obfuscated faces: re-identification and reconstruction.",
    no_args_is_help=True,
)


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _finite(obj):
    """JSON has no inf/nan: write them as strings ("inf") so every parser reads the output."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _emit_json(obj) -> None:
    typer.echo(json.dumps(_finite(obj), indent=2, default=_json_default))


_SYNTHETIC_KEYS = ("n_identities", "per_identity", "channels", "seed")


def _parse_synthetic(text: str) -> dict:
    """``synthetic:n_identities=40,per_identity=10`` -> keyword arguments of synthetic_faces."""
    options = {}
    _, _, rest = text.partition(":")
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected key=value in {text!r}, got {item!r}", param_hint="--data")
        name = key.strip().replace("-", "_")
        if name not in _SYNTHETIC_KEYS:
            raise typer.BadParameter(f"{text!r}: unknown option {key.strip()!r}; allowed: {', '.join(_SYNTHETIC_KEYS)}",
                                     param_hint="--data")
        try:
            options[name] = int(value)
        except ValueError:
            raise typer.BadParameter(f"{text!r}: {key.strip()} must be an integer, got {value!r}",
                                     param_hint="--data") from None
    return options


def load_identity_data(data: str, size: int | tuple[int, int], seed: int = 0):
    """Load ``--data`` at ``size`` (a side, or (H, W)): a path (identity folders such as Yale B, or a
    CelebA root), or ``synthetic[:n_identities=N,per_identity=M,channels=C]`` for generated
    identities (square only)."""
    from privattrib import data as data_api

    try:
        if data == "synthetic" or data.startswith("synthetic:"):
            if not isinstance(size, int):
                raise ValueError("synthetic faces are square: leave out --height")
            options = {"n_identities": 40, "per_identity": 10, "channels": 1, "seed": seed, **_parse_synthetic(data)}
            return data_api.synthetic_faces(size=size, **options)
        path = Path(data)
        if not path.exists():
            raise typer.BadParameter(f"--data {data!r}: no such file or folder (or use 'synthetic:...')")
        return data_api.load_source(str(path), size=size)
    except (ValueError, TypeError, OSError) as exc:  # empty folder, bad option: a message, not a traceback
        raise typer.BadParameter(f"--data {data!r}: {exc}") from exc


def _arch_cfg(arch: str, epochs: int, batch_size: int, lr: float) -> dict:
    return {"arch": arch, "epochs": epochs, "batch_size": batch_size, "lr": lr}


def _show_row(title: str, row: dict, keys: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key in keys:
        if key in row:
            value = row[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


@attack_app.command("reid")
def reid_command(
    data: str = typer.Option(..., "--data", help="identity set: folder of per-person folders (Yale B, AT&T), a "
                             "CelebA root, or synthetic:n_identities=40,per_identity=10"),
    method: str = typer.Option(..., "--method", help="obfuscation spec, e.g. dp-pix:b=16,m=16,epsilon=0.5"),
    arch: str = typer.Option("mcpherson2016", help="identity classifier (mcpherson2016, resnet18, ...)"),
    variant: str = typer.Option("retrain", help="retrain (train+test obfuscated) or no-retrain (train clean)"),
    train_per_identity: int = typer.Option(8, help="training images per person (AT&T: 8)"),
    test_per_identity: int = typer.Option(2, help="test images per person (AT&T: 2)"),
    max_identities: Optional[int] = typer.Option(None, help="keep at most this many people (drawn by seed)"),
    pretrain_on_others: bool = typer.Option(False, "--pretrain-on-others", help="a stronger attacker: first "
                                            "learn to tell apart the people left out by --max-identities (their "
                                            "images obfuscated the same way), then fine-tune on the targets"),
    size: int = typer.Option(32, help="image side (the width with --height) in pixels after loading"),
    height: Optional[int] = typer.Option(None, help="image height when not square, e.g. --size 24 --height 28: "
                                         "AT&T's shape, 6 x 7 cells of 4 px (mcpherson2016 only)"),
    noise_per_epoch: bool = typer.Option(False, "--noise-per-epoch", help="retrain: obfuscate the clean training "
                                         "images afresh every epoch (noise keyed by seed, epoch and image)"),
    train_releases: int = typer.Option(1, help="retrain: each training image is the mean of this many obfuscations"),
    test_releases: int = typer.Option(1, help="each test face is the mean of this many releases (costs "
                                      "test-releases x epsilon)"),
    max_light_angle: Optional[float] = typer.Option(None, help="Extended Yale B: keep faces lit from within this "
                                                    "many degrees of the camera axis (25: the evenly lit ones)"),
    epochs: int = typer.Option(40, help="classifier training epochs"),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0, help="seeds the split, the noise and the training"),
    device: str = device_option(help="where to train and test"),
    work_dir: Optional[Path] = typer.Option(None, help="cache of clean models (no-retrain)"),
    json_out: bool = typer.Option(False, "--json", help="print the result row as JSON"),
) -> None:
    """Re-identification: train an identity classifier and measure top-1 accuracy on obfuscated test images."""
    from privattrib.attacks.reid import run_reid_cell

    identity_set = load_identity_data(data, size if height is None else (height, size), seed)
    try:
        row = run_reid_cell(identity_set, method, seed, _arch_cfg(arch, epochs, batch_size, lr), work_dir,
                            train_per_identity=train_per_identity, test_per_identity=test_per_identity,
                            variant=variant, device=device, progress=not json_out, max_identities=max_identities,
                            pretrain="others" if pretrain_on_others else None, noise_per_epoch=noise_per_epoch,
                            train_releases=train_releases, test_releases=test_releases,
                            max_light_angle=max_light_angle)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    row["data"] = data
    if json_out:
        _emit_json(row)
    else:
        _show_row(f"re-identification, {row['method']} ({variant})", row,
                  ["accuracy", "top5_accuracy", "chance", "n_identities", "n_train", "n_test", "n_pretrain",
                   "n_pretrain_identities", "arch", "seed", "psnr_obfuscated", "ssim_obfuscated", "wall_s"])


@attack_app.command("reconstruct")
def reconstruct_command(
    data: str = typer.Option(..., "--data", help="identity set (as for attack reid)"),
    method: str = typer.Option(..., "--method", help="obfuscation spec"),
    arch: str = typer.Option("mcpherson2016", help="identity classifier used to score re-identification"),
    train_per_identity: int = typer.Option(8),
    test_per_identity: int = typer.Option(2),
    max_identities: Optional[int] = typer.Option(None),
    size: int = typer.Option(32),
    epochs: int = typer.Option(30, help="U-Net training epochs"),
    reid_epochs: int = typer.Option(40, help="identity classifier epochs"),
    base: int = typer.Option(32, help="U-Net channels at full resolution"),
    seed: int = typer.Option(0),
    device: str = device_option(help="where to train and test"),
    work_dir: Optional[Path] = typer.Option(None, help="cache of clean identity classifiers"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="write an original/obfuscated/restored PNG grid"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Reconstruction: train a U-Net on (obfuscated, original) pairs, restore held-out images, score them."""
    from privattrib.attacks.reconstruction import run_reconstruct_cell

    identity_set = load_identity_data(data, size, seed)
    unet_cfg = {"epochs": epochs, "base": base}
    try:
        row = run_reconstruct_cell(identity_set, method, seed, _arch_cfg(arch, reid_epochs, 32, 1e-3), work_dir,
                                   train_per_identity=train_per_identity, test_per_identity=test_per_identity,
                                   unet_cfg=unet_cfg, device=device, grid_path=grid, progress=not json_out,
                                   max_identities=max_identities)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    row["data"] = data
    if json_out:
        _emit_json(row)
    else:
        _show_row(f"reconstruction, {row['method']}", row,
                  ["psnr_obfuscated", "psnr_restored", "ssim_obfuscated", "ssim_restored", "reid_clean",
                   "reid_obfuscated", "reid_restored", "chance", "n_identities", "n_train", "n_test", "wall_s",
                   "grid_png"])


def audit_command(
    spec: str = typer.Argument(..., help="obfuscation spec, e.g. dp-pix:b=16,m=16,epsilon=0.5"),
    trials: int = typer.Option(50_000, help="mechanism draws on each of the two neighbouring images "
                               "(at least 200: half choose the test, half measure its errors)"),
    confidence: float = typer.Option(0.95, help="confidence of the lower bound"),
    seed: int = typer.Option(0, help="obfuscation seed of the draws"),
    channels: int = typer.Option(1, help="channels of the audited pair (sensitivity is C*255*m)"),
    device: str = device_option(help="where the mechanism runs"),
    fail_on_violation: bool = typer.Option(False, "--fail-on-violation",
                                           help="exit with status 3 when the bound exceeds the claim"),
    json_out: bool = typer.Option(False, "--json", help="print the result as one JSON object"),
) -> None:
    """Empirical DP audit: a statistically valid lower bound on epsilon, beside the claimed epsilon."""
    from privattrib.attacks.audit import UnauditableMechanism, audit

    try:
        result = audit(spec, trials=trials, confidence=confidence, seed=seed, channels=channels, device=device,
                       progress=not json_out)
    except UnauditableMechanism as exc:
        if json_out:
            _emit_json({"spec": spec, "auditable": False, "reason": str(exc)})
            raise typer.Exit(2)
        typer.echo(f"cannot audit {spec}: {exc}", err=True)
        raise typer.Exit(2)
    except ValueError as exc:
        hint = next((f"--{name}" for name in ("trials", "confidence") if str(exc).startswith(name)), None)
        raise typer.BadParameter(str(exc), param_hint=hint) from exc
    row = result.to_dict()
    row["auditable"] = True
    if json_out:
        _emit_json(row)
    else:
        claim = "none (no DP claim)" if result.claimed_epsilon is None else f"{result.claimed_epsilon:g}"
        if result.claimed_epsilon is None:
            verdict = "no claim to check"
        elif result.violated:
            verdict = "VIOLATED"
        elif result.at_ceiling:
            verdict = "inconclusive: the test never erred, and this many draws cannot show the claim; raise --trials"
        else:
            verdict = "consistent with the claim"
        bound = f"{result.epsilon_lower_bound:.4f}" + (" (the ceiling of this many draws)" if result.at_ceiling else "")
        typer.echo(
            f"{result.spec}: claimed epsilon {claim}; empirical lower bound {bound} "
            f"at {result.confidence:.0%} confidence ({result.trials} draws per image, {result.test['rule']}, "
            f"FPR {result.fpr:.4f}, FNR {result.fnr:.4f}) -> {verdict}"
        )
        for note in result.notes:
            typer.echo(f"  note: {note}")
    if fail_on_violation and result.violated:
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    """Add ``attack reid``, ``attack reconstruct`` and ``audit`` to the main app."""
    app.add_typer(attack_app, name="attack")
    app.command("audit")(audit_command)
