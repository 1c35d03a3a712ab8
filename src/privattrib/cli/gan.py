"""``privattrib gan ...``: train the GAN zoo and sample fake sources (thin wrappers over privattrib.gans)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from privattrib.cli.options import device_option

gan_app = typer.Typer(help="Train GANs on real images and sample the fake sources to attribute.", no_args_is_help=True)


@gan_app.command("archs")
def archs() -> None:
    """List the GAN architectures and presets."""
    from rich.console import Console
    from rich.table import Table

    from privattrib.gans import PRESETS, available_archs, get_arch
    from privattrib.gans.train import PRESET_FALLBACK

    table = Table("arch", "loss", "n_critic", "what differs (fingerprint)", title="GAN architectures")
    for name in available_archs():
        a = get_arch(name)
        table.add_row(name, a.loss + (" + DP-SGD" if a.dp else ""), str(a.n_critic), a.fingerprint)
    console = Console()
    console.print(table)
    presets = Table("preset", "size", "width", "batch", "steps", "recipe changes", title="presets (explicit options win)")
    for name, p in PRESETS.items():
        def fmt(key):
            v = p[key]
            if not isinstance(v, dict):
                return str(v)
            rest = PRESET_FALLBACK.get(name, {}).get(key)
            return ", ".join([f"{k} {x}" for k, x in v.items()] + ([f"others {rest}"] if rest is not None else []))

        changes = "; ".join(f"{a}: " + ", ".join(f"{k}={v}" for k, v in o.items()) for a, o in p.get("arch_overrides", {}).items())
        presets.add_row(name, str(p["size"]), fmt("width"), str(p["batch_size"]), fmt("steps"), changes)
    console.print(presets)


@gan_app.command("train")
def train(
    arch: str = typer.Option(..., "--arch", help="architecture (see `privattrib gan archs`)"),
    data: str = typer.Option(..., "--data", help="real training images: a CelebA root, a folder of images or an identity set (check one with `privattrib data check`)"),
    out: Path = typer.Option(..., "-o", "--out", help="run folder (rerun the same command to resume)"),
    size: Optional[int] = typer.Option(None, "--size", help="32, 64 or 128 (default: the preset's, else 64)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="generator steps (overrides the preset)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="tiny | cpu-64 | gpu-64 | gpu-128"),
    seed: int = typer.Option(0, "--seed", help="training seed: two seeds of one arch are two sources"),
    device: str = device_option(help="where to train"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="steps between sample grids"),
    limit: Optional[int] = typer.Option(None, "--limit", help="use at most this many training images"),
    width: Optional[int] = typer.Option(None, "--width", help="net width (overrides the preset)"),
    dp_noise: Optional[float] = typer.Option(None, "--dp-noise", help="dp-dcgan: noise multiplier"),
    dp_clip: Optional[float] = typer.Option(None, "--dp-clip", help="dp-dcgan: per-example clipping norm"),
    dp_delta: Optional[float] = typer.Option(None, "--dp-delta", help="dp-dcgan: delta (default min(1e-5, 1/(10 N)))"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: one per core that other processes leave free, checked every second)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Train one GAN; writes config.json, checkpoint.pt, log.jsonl, samples/, quality.json, summary.json."""
    from privattrib.data import load_source
    from privattrib.gans import PRESETS, train_gan
    from privattrib.threads import pin_threads

    if threads is not None:
        if threads < 1:
            typer.echo("error: --threads must be >= 1", err=True)
            raise typer.Exit(2)
        pin_threads(threads)

    try:
        train_size = size or (PRESETS[preset]["size"] if preset in PRESETS else 64)
        options = {"limit": limit} if limit else {}
        images = load_source(data, train_size, progress=not quiet, **options)
        overrides = {k: v for k, v in (("width", width), ("dp_noise_multiplier", dp_noise),
                                       ("dp_max_grad_norm", dp_clip), ("dp_delta", dp_delta)) if v is not None}
        run = train_gan(arch, images, size=size, steps=steps, preset=preset, seed=seed, out=out, device=device,
                        batch_size=batch_size, progress=not quiet, sample_every=sample_every, overrides=overrides)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    summary = json.loads((run / "summary.json").read_text())
    line = f"{run}: {summary['steps']} steps in {summary['elapsed_s']:.1f}s, KID {summary['kid']}"
    if "privacy" in summary:
        p = summary["privacy"]
        line += f", (epsilon={p['epsilon']:.3f}, delta={p['delta']:.2g})-DP"
    typer.echo(line)


@gan_app.command("sample")
def sample(
    run: Path = typer.Argument(..., help="a run folder written by `privattrib gan train`"),
    n: int = typer.Option(..., "-n", help="number of images"),
    out: Path = typer.Option(..., "-o", "--out", help="folder for the PNG files"),
    seed: int = typer.Option(0, "--seed", help="sampling seed (same seed, same images)"),
    device: str = device_option(help="where to sample"),
) -> None:
    """Write N generated images as pixel-only PNG files."""
    from privattrib.gans import sample_to_folder

    try:
        paths = sample_to_folder(run, n, out, seed=seed, device=device)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"wrote {len(paths)} images to {out}")


@gan_app.command("quality")
def quality(
    run: Path = typer.Argument(..., help="a run folder"),
    data: str = typer.Option(..., "--data", help="real images to compare with"),
    n: int = typer.Option(1000, "-n", help="samples per set"),
    limit: Optional[int] = typer.Option(None, "--limit"),
    device: str = device_option(help="where to sample and compute features"),
) -> None:
    """KID (random-CNN features), colour and spectrum distances between a run's samples and real images."""
    from privattrib.data import load_source
    from privattrib.gans import gan_quality, load_gan, sample_gan

    try:
        _, config = load_gan(run, "cpu")
        real = load_source(data, config["size"], **({"limit": limit} if limit else {})).images[:n]
        report = gan_quality(sample_gan(run, n, seed=1, device=device), real, device=device)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(json.dumps(report, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``privattrib gan ...`` to the main app."""
    app.add_typer(gan_app, name="gan")
