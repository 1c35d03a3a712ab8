"""Files the verbs write beside their terminal output (CSV tables)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer


def write_csv(path: Path, fields: list[str], rows: list[dict], option: str) -> None:
    """Write ``rows`` (missing fields left empty) as a CSV table, atomically; a path that cannot be
    written ends the command with exit status 2 and a message naming ``option``."""
    from privattrib.common import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    try:
        atomic_write_text(path, buf.getvalue())
    except OSError as exc:
        typer.echo(f"error: {option} {path} cannot be written: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
