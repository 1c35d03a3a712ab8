"""``privattrib data``: check a source, build its cache, download CelebA."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Check image sources, build their uint8 cache, download CelebA.", no_args_is_help=True)
download_app = typer.Typer(help="Download a public data set from its official source.", no_args_is_help=True)
data_app.add_typer(download_app, name="download")


def _console():
    from rich.console import Console

    return Console(stderr=False)


@data_app.command("check")
def check(
    path: Path = typer.Argument(..., help="A CelebA root, a folder of images, an identity set or one file."),
    kind: str = typer.Option("auto", help="auto | celeba | folder | identities"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (kind, images, identities, classes, skipped)."),
    workers: Optional[int] = typer.Option(None, help="Decoding processes (default: all cores)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 when any file was skipped."),
    show: int = typer.Option(5, help="Skipped paths to list per reason (the JSON always lists all)."),
) -> None:
    """Decode every file like a cache build would and report what is usable and what is skipped, and why."""
    from privattrib.data import check_path

    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    try:
        report = check_path(path, kind, workers=workers, progress=not as_json and sys.stderr.isatty())
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        from rich.table import Table

        con = _console()
        one_file = path.is_file()
        table = Table(title=f"{'file' if one_file else report['kind']}: {report['path']}", show_header=False)
        table.add_row("usable images", f"{report['images']:,}")
        if report["identities"] is not None:
            table.add_row("identities", f"{report['identities']:,}")
        if report.get("classes") and report["kind"] != "identities" and not one_file:
            table.add_row("classes", ", ".join(report["classes"]))
        for shape, n in report["sizes"].items():
            table.add_row(f"size {shape}", f"{n:,}")
        for key in ("partitions", "labels_without_image", "images_per_identity", "images_with_attributes"):
            if report.get(key) not in (None, {}):
                table.add_row(key.replace("_", " "), str(report[key]))
        table.add_row("skipped", f"{len(report['skipped']):,}")
        con.print(table)
        by_reason: dict[str, list[str]] = {}
        for s in report["skipped"]:
            by_reason.setdefault(s["reason"], []).append(s["path"])
        for reason, paths in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
            con.print(f"[yellow]skipped {len(paths)}[/]: {reason}")
            for p in paths[:show]:
                con.print(f"    {p}", highlight=False)
            if len(paths) > show:
                con.print(f"    ... and {len(paths) - show} more (--json lists all)")
    if report["images"] == 0:
        typer.echo(f"error: no usable image in {path} as {report['kind']}", err=True)
        raise typer.Exit(1)
    if strict and report["skipped"]:
        raise typer.Exit(1)


@data_app.command("build")
def build(
    source: str = typer.Argument(..., help="A CelebA root, a folder of images or an identity set (kind detected)."),
    size: Optional[int] = typer.Option(None, help="Output side in pixels (identity sets and folders: omit for native size)."),
    kind: str = typer.Option("auto", help="auto | celeba | folder | identities"),
    crop: Optional[str] = typer.Option(None, help="yu2019 (CelebA default) | center (default otherwise) | none"),
    channels: Optional[int] = typer.Option(None, help="1 or 3 (default: 3 for CelebA and folders, native for identity sets)."),
    partitions: Optional[str] = typer.Option(None, help="CelebA partitions, comma-separated: train,val,test."),
    limit: Optional[int] = typer.Option(None, help="Keep only the first N images."),
    class_name: Optional[str] = typer.Option(None, help="Class name for CelebA and folders."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache root (default $PRIVATTRIB_CACHE or ~/.cache/privattrib)."),
    workers: Optional[int] = typer.Option(None, help="Decoding processes (default: all cores)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first unusable file instead of skipping it."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild even if a matching cache entry exists."),
) -> None:
    """Decode, crop and resize a source once into the memory-mapped uint8 cache (experiments reuse it)."""
    from privattrib.data import BadImageError, detect_kind, load_celeba, load_folder, load_identity_set

    if kind not in ("auto", "celeba", "folder", "identities"):
        raise typer.BadParameter("use auto, celeba, folder or identities", param_hint="--kind")
    if not Path(source).exists():
        raise typer.BadParameter(f"{source} does not exist", param_hint="SOURCE")
    kind = detect_kind(source) if kind == "auto" else kind
    common = dict(cache_dir=cache_dir, workers=workers, strict=strict, rebuild=rebuild)
    t0 = time.perf_counter()
    try:
        if kind == "celeba":
            parts = [p.strip() for p in partitions.split(",")] if partitions else None
            data = load_celeba(source, size=size or 64, crop=crop or "yu2019", partitions=parts, limit=limit,
                               class_name=class_name or "real", **common)
        elif kind == "identities":
            data = load_identity_set(source, size, channels=channels, crop=crop or "center", **common)
        else:
            data = load_folder(source, size, channels=channels or 3, class_name=class_name, limit=limit,
                               crop=crop or "center", **common)
    except BadImageError as exc:
        typer.echo(f"error (--strict): {exc.path}: {exc.reason}", err=True)
        raise typer.Exit(1)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    elapsed = time.perf_counter() - t0
    skipped = data.meta.get("skipped", [])
    n, c, h, w = data.images.shape
    typer.echo(f"{kind}: {n:,} images, {c} x {h} x {w} uint8, {len(data.class_names)} class(es), "
               f"{len(skipped)} skipped, {elapsed:.1f} s")
    typer.echo(f"cache: {data.meta['cache']['folder']}")
    for reason, count in Counter(s["reason"] for s in skipped).most_common():
        typer.echo(f"  skipped {count}: {reason}")


@download_app.command("celeba")
def download_celeba_cmd(
    root: Path = typer.Argument(..., help="Destination folder (official layout is created there)."),
    remove_archive: bool = typer.Option(False, "--remove-archive", help="Delete the verified zip after extraction."),
) -> None:
    """Download CelebA (aligned images, identities, partitions, attributes) from the official Google Drive, MD5-checked.

    CelebA is for non-commercial research only (Liu, Luo, Wang, Tang, ICCV 2015).
    """
    from privattrib.data.download import DownloadError, download_celeba

    try:
        download_celeba(root, keep_archive=not remove_archive, log=typer.echo)
    except DownloadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    typer.echo(f"CelebA ready at {root}; try: privattrib data check {root}")


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the main app."""
    app.add_typer(data_app, name="data")
