"""``privattrib obfuscate`` and ``privattrib metrics``: the file commands for people's photos."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer

from privattrib.cli.output import write_csv

#: The flag of each option the publishing library checks (for its error messages).
_OPTION_FLAGS = {"method": "--method", "faces": "--faces", "box": "--box", "if_no_face": "--if-no-face",
                 "margin": "--margin", "seed": "--seed", "detector": "--detector"}


@dataclass
class _Job:
    src: Path
    rel: str  # the input's relative path (posix): its noise key and the output's name
    out: Path


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _plan(inputs: list[Path], outdir: Path) -> tuple[list[_Job], list[tuple[str, str]], list[tuple[str, str]]]:
    """Jobs (input file -> output PNG), the entries skipped while listing (with reasons), and the
    entries of input folders ignored as not images by their name (hidden files, other
    extensions: they are not bad files and do not fail the run).

    A folder's files mirror their path relative to that folder; with several inputs, a folder's
    files go under a sub-folder named after it. A file input lands directly in ``outdir``.
    """
    from privattrib.data import walk_images

    out_resolved = outdir.resolve()
    for inp in inputs:
        if not inp.exists() and not inp.is_symlink():
            raise typer.BadParameter(f"{inp} does not exist", param_hint="INPUT")
        if inp.is_dir() and (out_resolved == inp.resolve() or _is_within(out_resolved, inp.resolve())):
            raise typer.BadParameter(
                f"the output folder {outdir} is inside the input folder {inp}: outputs could overwrite "
                "inputs and would be read back as inputs on a rerun; choose an output folder outside it",
                param_hint="--output",
            )
        # Outputs written into the folder that holds the inputs, or above it, land among the
        # originals: a.jpg -> a.png would replace an original a.png beside it (not an input of this
        # run, so the check below would not see it). A file's own folder counts; one below is fine.
        home = (inp if inp.is_dir() else inp.parent).resolve()
        if out_resolved == home or _is_within(home, out_resolved):
            raise typer.BadParameter(
                f"the output folder {outdir} holds the input {inp}: an output could replace an original "
                "there (a.jpg -> a.png over an existing a.png); choose an output folder outside the inputs' folders",
                param_hint="--output",
            )
    jobs: list[_Job] = []
    skipped: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    several = len(inputs) > 1
    for inp in inputs:
        if inp.is_dir():
            files, skip = walk_images(inp)
            skipped += [(s.path, s.reason) for s in skip if not s.not_an_image]
            ignored += [(s.path, s.reason) for s in skip if s.not_an_image]
            prefix = f"{inp.resolve().name}/" if several else ""
            for f in files:
                rel = prefix + f.relative_to(inp).as_posix()
                jobs.append(_Job(f, rel, outdir / Path(rel).with_suffix(".png")))
        else:
            jobs.append(_Job(inp, inp.name, outdir / Path(inp.name).with_suffix(".png")))
    # Two inputs mapping to one output (a.jpg and a.png): neither is written, both are reported.
    by_out = Counter(j.out for j in jobs)
    clashes = {o for o, n in by_out.items() if n > 1}
    for j in jobs:
        if j.out in clashes:
            skipped.append((str(j.src), f"another input also maps to {j.out.name}; rename one of them"))
    jobs = [j for j in jobs if j.out not in clashes]
    # Never overwrite an input, whatever the layout (e.g. a PNG given as a file and OUTDIR its folder).
    # realpath, not Path.resolve: it never raises on a symlink loop (those are reported later).
    input_files = {os.path.realpath(j.src) for j in jobs}
    for j in jobs:
        if os.path.realpath(j.out) in input_files:
            raise typer.BadParameter(f"writing {j.out} would overwrite the input {j.src}", param_hint="--output")
    return jobs, skipped, ignored


def obfuscate(
    inputs: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder; outputs mirror the inputs' relative paths as PNG."),
    method: str = typer.Option(..., "--method", "-m", help="Method spec, e.g. 'pixelate:b=16' or 'dp-pix:b=16,m=16,epsilon=0.5' (see `privattrib methods`). DP methods default to noise=secure here (exact OpenDP noise, not reproducible) unless --seed is given."),
    seed: Optional[int] = typer.Option(None, help="Noise seed, for reproducible experiments: DP methods then default to noise=fast, which anyone who knows the seed can regenerate and subtract. Default: a fresh secret seed."),
    faces: bool = typer.Option(False, "--faces", help="Obfuscate only the faces an offline detector finds."),
    box: Optional[List[str]] = typer.Option(None, "--box", help="Obfuscate only this box X,Y,W,H (repeatable)."),
    if_no_face: str = typer.Option("skip", help="With --faces, an image where no face is found: skip (write nothing, exit 1) | whole (obfuscate it all) | keep (write it unobfuscated)."),
    detector: str = typer.Option("auto", help="Face detector backend: auto | haar | dlib."),
    margin: float = typer.Option(0.2, help="With --faces, grow each face box by this fraction of its side on every edge."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad file."),
    report: Optional[Path] = typer.Option(None, help="Write a CSV: one row per input (output, faces, status)."),
) -> None:
    """Obfuscate image files for publishing: pixels only (no EXIF, GPS, ICC, XMP or text), never over an input.

    Exit status: 0 when every input was written, 1 when any was skipped (each is named with its reason),
    2 for bad arguments.
    """
    from privattrib.data import BadImageError, load_image, save_png
    from privattrib.obfuscation.publish import Publisher, PublishOptionError, noise_warning

    try:
        publisher = Publisher(method, seed=seed, faces=faces, boxes=box, if_no_face=if_no_face,
                              detector=detector, margin=margin)
    except PublishOptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=_OPTION_FLAGS[exc.option])
    ob, backend = publisher.method, publisher.backend
    jobs, bad, ignored = _plan([Path(p) for p in inputs], output)
    total = len(jobs) + len(bad)
    err = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    if ignored:
        shown = ", ".join(os.path.basename(p) for p, _ in ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        err(f"ignored {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} of the input folders that "
            f"are not images by name (hidden or another extension): {shown}")
    if strict and bad:
        err(f"bad file: {bad[0][0]}: {bad[0][1]}")
        raise typer.Exit(1)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    rows: list[dict] = [{"input": p, "output": "", "faces": "", "status": f"ignored: {why}"} for p, why in ignored]
    written = 0
    face_counts: list[tuple[str, int]] = []
    with Progress(TextColumn("[bold]obfuscating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), disable=len(jobs) < 2, transient=True) as bar:
        task = bar.add_task("files", total=len(jobs))
        for job in jobs:
            bar.advance(task)
            try:
                img = load_image(job.src)
                result = publisher.protect(img, key=job.rel)
                status, n_faces = result.status, result.faces
                if faces:
                    face_counts.append((job.rel, n_faces))
                if result.pixels is None:
                    bad.append((str(job.src), "no face found (detector miss?); use --if-no-face whole or keep"))
                    rows.append({"input": str(job.src), "output": "", "faces": 0, "status": result.status})
                    continue
                out = result.pixels
                save_png(job.out, out, protect=[job.src])
                written += 1
                rows.append({"input": str(job.src), "output": str(job.out),
                             "faces": "" if n_faces is None else n_faces, "status": status})
            except (BadImageError, ValueError, OSError) as exc:
                # BadImageError: unreadable input; ValueError: the method cannot take this image (e.g.
                # svd-mp's k above its smaller side); OSError: the output cannot be written. Each is
                # one bad file, named with its reason; the run goes on with the others.
                if isinstance(exc, BadImageError):
                    path, reason = exc.path, exc.reason
                elif isinstance(exc, OSError):
                    path, reason = str(job.src), f"cannot write {job.out}: {exc.strerror or exc}"
                else:
                    path, reason = str(job.src), str(exc)
                bad.append((path, reason))
                rows.append({"input": str(job.src), "output": "", "faces": "", "status": f"skipped: {reason}"})
                if strict:
                    break
    for path, reason in bad:
        err(f"skipped {path}: {reason}")
        if not any(r["input"] == path for r in rows):
            rows.append({"input": path, "output": "", "faces": "", "status": f"skipped: {reason}"})
    if faces:
        if len(face_counts) <= 50:
            for rel, n in face_counts:
                typer.echo(f"{rel}: {n} face{'s' if n != 1 else ''}")
        hist = Counter(min(n, 3) for _, n in face_counts)
        typer.echo("faces per image: " + ", ".join(
            f"{'3+' if k == 3 else k}: {hist[k]}" for k in sorted(hist)) + f" (detector: {backend})")
    desc = ob.describe() if hasattr(ob, "describe") else {}
    typer.echo(f"{written} of {total} written to {output} with {ob.spec}; {len(bad)} skipped"
               + (f"; privacy: {desc.get('privacy')}" if desc.get("privacy") else ""))
    warning = noise_warning(ob)
    if warning:
        err(f"note: {warning}")
    if report is not None:
        for row in rows:
            row["method"] = ob.spec
        write_csv(report, ["input", "output", "faces", "status", "method"], rows, "--report")
    if bad:
        raise typer.Exit(1)


def _index(path: Path) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """{relative path without extension: file} under ``path`` (or the file itself), plus ambiguities."""
    from privattrib.data import walk_images

    if path.is_file():
        return {path.stem: path}, []
    files, _ = walk_images(path)
    index: dict[str, Path] = {}
    dupes: list[tuple[str, str]] = []
    for f in files:
        key = f.relative_to(path).with_suffix("").as_posix()
        if key in index:
            dupes.append((str(f), f"same name as {index[key].name} apart from the extension: ambiguous match"))
        else:
            index[key] = f
    return index, dupes


def metrics(
    originals: Path = typer.Argument(..., help="Original image file or folder."),
    obfuscated: Path = typer.Argument(..., help="Obfuscated image file or folder (matched by relative path, ignoring the extension)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write every row and the means to this CSV file."),
    show: int = typer.Option(20, help="Rows to print (the CSV has all)."),
) -> None:
    """MSE, PSNR and SSIM (Wang et al. 2004) per matching file, and their means."""
    import numpy as np

    from privattrib import metrics as m
    from privattrib.data import BadImageError, load_image

    for p, hint in ((originals, "ORIGINALS"), (obfuscated, "OBFUSCATED")):
        if not p.exists():
            raise typer.BadParameter(f"{p} does not exist", param_hint=hint)
    if originals.is_file() != obfuscated.is_file():
        raise typer.BadParameter("give two files or two folders", param_hint="OBFUSCATED")
    if originals.is_file():
        pairs = [(originals.name, originals, obfuscated)]
        only_a, only_b, problems = [], [], []
    else:
        a, dupes_a = _index(originals)
        b, dupes_b = _index(obfuscated)
        pairs = [(k, a[k], b[k]) for k in sorted(a.keys() & b.keys())]
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        problems = dupes_a + dupes_b
    rows = []
    notes: list[str] = []
    for key, pa, pb in pairs:
        try:
            x = load_image(pa)
            y = load_image(pb)
            if y.shape[2] != x.shape[2]:
                notes.append(f"{pb}: {y.shape[2]} channel(s) converted to the original's {x.shape[2]}")
                y = load_image(pb, channels=x.shape[2])
        except BadImageError as exc:
            problems.append((exc.path, exc.reason))
            continue
        if x.shape != y.shape:
            problems.append((str(pb), f"size {y.shape[1]}x{y.shape[0]} differs from the original's {x.shape[1]}x{x.shape[0]}"))
            continue
        try:
            values = {"mse": float(m.mse(x, y)), "psnr": float(m.psnr(x, y)), "ssim": float(m.ssim(x, y))}
        except ValueError as exc:  # e.g. smaller than SSIM's 11 x 11 window
            problems.append((str(pa), str(exc)))
            continue
        rows.append({"file": key, "height": x.shape[0], "width": x.shape[1], "channels": x.shape[2], **values})
    means = {k: (float(np.mean([r[k] for r in rows])) if rows else math.nan) for k in ("mse", "psnr", "ssim")}

    from rich.console import Console
    from rich.table import Table

    fmt = lambda v, d: "inf" if math.isinf(v) else f"{v:.{d}f}"  # noqa: E731
    title = f"{len(rows)} matched image(s)" if len(rows) == len(pairs) else f"{len(rows)} of {len(pairs)} matched image(s) measured"
    table = Table(title=f"{title}: {originals} vs {obfuscated}")
    for col in ("file", "size", "MSE", "PSNR (dB)", "SSIM"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for r in rows[:show]:
        table.add_row(r["file"], f"{r['width']}x{r['height']}x{r['channels']}", fmt(r["mse"], 2), fmt(r["psnr"], 2), fmt(r["ssim"], 4))
    if len(rows) > show:
        table.add_row(f"... {len(rows) - show} more", "", "", "", "")
    table.add_section()
    table.add_row("[bold]mean", "", fmt(means["mse"], 2), fmt(means["psnr"], 2), fmt(means["ssim"], 4))
    if rows:
        Console().print(table)
    if only_a or only_b:
        typer.echo(f"unmatched: {len(only_a)} only in {originals}, {len(only_b)} only in {obfuscated}", err=True)
        for k in (only_a + only_b)[:10]:
            typer.echo(f"    {k}", err=True)
    for path, reason in problems:
        typer.echo(f"skipped {path}: {reason}", err=True)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if csv_path is not None:
        write_csv(csv_path, ["file", "height", "width", "channels", "mse", "psnr", "ssim"],
                   [*rows, {"file": "MEAN", **means}] if rows else [], "--csv")
    if not rows:
        typer.echo("error: no matching pair of images" if not pairs else
                   f"error: none of the {len(pairs)} matching pair(s) could be measured (see the reasons above)",
                   err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the main app."""
    app.command("obfuscate")(obfuscate)
    app.command("metrics")(metrics)
