"""CLI verb ``train``: a classifier on one process, or on several under ``torchrun`` (DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from privattrib.cli.options import device_option


def register(app: typer.Typer) -> None:
    """Add ``train`` to the main app."""

    @app.command("train")
    def train(
        data: Path = typer.Argument(..., help="an identity set (label = person), or an experiment's data "
                                    "directory OUTDIR/data/<hash> (its train/val sets)"),
        out: Path = typer.Option(..., "-o", "--out", help="folder for classifier.pt and classifier.json"),
        arch: str = typer.Option("yu2019", help="classifier: yu2019, resnet18, mcpherson2016, dct"),
        size: int = typer.Option(64, help="input side in pixels (sources; experiment data keep theirs)"),
        channels: Optional[int] = typer.Option(None, help="1 or 3 (default: the source's)"),
        epochs: int = typer.Option(10, min=1),
        batch: int = typer.Option(32, min=1, help="global batch, split between the processes"),
        lr: float = typer.Option(1e-3, help="Adam learning rate (> 0)"),
        seed: int = typer.Option(0, min=0),
        val_fraction: float = typer.Option(0.1,
                                           help="share of each class kept for validation (sources)"),
        device: Optional[str] = device_option("auto", "where to train (under torchrun: GPU LOCAL_RANK)"),
        no_progress: bool = typer.Option(False, "--no-progress"),
    ) -> None:
        """Train a plain classifier on one data set (identities or an experiment's data); under `torchrun
        --nproc-per-node N -m privattrib train ...` on N processes with DistributedDataParallel (NCCL on
        GPUs, gloo on CPU), the same result as one process. A model for `attribute` comes from
        `train-attributor`."""
        from rich.console import Console

        from privattrib.distributed import close_process_group, rank, train_job

        console = Console(stderr=True)
        try:
            summary = train_job(data, out, arch=arch, size=size, channels=channels, epochs=epochs, batch_size=batch,
                                lr=lr, seed=seed, val_fraction=val_fraction, device=device or "auto",
                                progress=not no_progress)
        except (ValueError, FileNotFoundError) as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        finally:
            is_main = rank() == 0
            close_process_group()
        if is_main:
            val = summary["val_accuracy"]
            typer.echo(f"{summary['world_size']} process(es), {summary['device']}: "
                       f"{summary['images_per_second']:.0f} images/s, train accuracy {summary['train_accuracy']:.3f}"
                       + (f", val accuracy {val:.3f}" if val is not None else ""))
            typer.echo(f"checkpoint: {summary['checkpoint']}")
