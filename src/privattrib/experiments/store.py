"""The results store: one JSON file per finished cell, ``results.csv`` regenerated from them.

Layout of an experiment directory::

    OUTDIR/
      experiment.json      resolved spec, its hashes, versions, device (written at every start)
      spec.yaml            the experiment file as given
      cells/<stem>.json    one row per finished cell, written by temp file + rename
      results.csv          every row of the current grid, regenerated (atomically) after each cell
      data/<hash>/         the assembled train/val/test arrays (reused on resume)
      gans/<name>-<hash>/  GAN runs trained for fake sources (resumable)
      models/              cached clean classifiers (one per seed)
      report.html          the self-contained report
      stale/               rows moved aside by ``--force`` after a spec change (never deleted)

A cell is done exactly when its row file exists. The row file is the unit of atomicity, so a
kill at any moment (even SIGKILL) leaves every row complete or absent, never half-written or
twice present; ``results.csv`` is only a view and is rebuilt from the row files at each start.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from privattrib.common import atomic_write_text, json_ready
from privattrib.experiments.spec import key_group

#: Columns that always come first in results.csv, in this order.
LEADING_COLUMNS = [
    "task", "scenario", "method", "spec", "epsilon", "seed", "accuracy", "chance", "laundering_rate",
    "n_train", "n_test", "mse", "psnr", "ssim", "wall_s", "noise", "privacy_notion",
    "obfuscated_fraction",
]
#: Columns that are never in results.csv (too large or nested; kept in the row JSON).
_NESTED = {"confusion_matrix", "per_class_accuracy", "describe", "method_describe", "history", "ray"}


class SpecChangedError(RuntimeError):
    """OUTDIR holds rows of a different experiment; resuming would mix incompatible results."""


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a results row")


class ResultsStore:
    """Rows of one experiment directory.

    Args:
        outdir: the experiment directory (created when missing).
    """

    def __init__(self, outdir: str | os.PathLike):
        self.outdir = Path(outdir)
        self.cells_dir = self.outdir / "cells"
        self.cells_dir.mkdir(parents=True, exist_ok=True)

    # -- manifest -------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.outdir / "experiment.json"

    def read_manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def check_compatible(self, task_hashes: dict[str, str | set[str]], task_keys: dict[str, dict], *,
                         legacy_hash: str | None = None, force: bool = False) -> None:
        """Refuse to resume into rows of another experiment unless ``force`` (then move them aside).

        A finished row is valid when it carries the hash of its key group in this spec (one hash,
        or any of a set: :meth:`ExperimentSpec.accepted_hashes`), or ``legacy_hash``, the
        whole-spec hash older versions stamped rows with. Rows of a group this spec does not run
        are left alone (hidden, like rows of a removed method).

        Raises:
            SpecChangedError: naming the task and the parts of its key that changed.
        """
        accepted = {legacy_hash} if legacy_hash else set()
        valid_stamps = {group: {h} if isinstance(h, str) else set(h) for group, h in task_hashes.items()}
        invalid: dict[str, list[Path]] = {}
        for path, _, task, stamp in self._stamped_rows():
            if stamp is None or task not in valid_stamps or stamp in accepted or stamp in valid_stamps[task]:
                continue
            invalid.setdefault(task, []).append(path)
        if not invalid:
            return
        if not force:
            manifest = self.read_manifest() or {}
            old_keys = manifest.get("task_keys") or {}
            changed = []
            for task in sorted(invalid):
                old, new = old_keys.get(task), task_keys.get(task, {})
                if old is None and task == "attribution" and "rows_key" in manifest:
                    old = {k: v for k, v in manifest["rows_key"].items() if k != "attacks"}
                parts = [k for k in sorted(set(old or {}) | set(new))
                         if json.dumps((old or {}).get(k), sort_keys=True, default=str)
                         != json.dumps(new.get(k), sort_keys=True, default=str)] if old is not None else []
                changed.append(f"{task}: {', '.join(parts)}" if parts else task)
            raise SpecChangedError(
                f"{self.outdir} holds results of a different experiment spec ({'; '.join(changed)} changed); "
                "its rows would not be comparable. Use another output directory, or --force to move "
                f"the old rows to {self.outdir / 'stale'} and start over."
            )
        self.move_aside([path for paths in invalid.values() for path in paths])

    def move_aside(self, paths: Iterable[Path]) -> None:
        """Move row files to ``stale/<time>/`` (never deleted)."""
        stale = self.outdir / "stale" / time.strftime("%Y%m%d-%H%M%S")
        stale.mkdir(parents=True, exist_ok=True)
        for path in paths:
            os.replace(path, stale / path.name)

    def restamp(self, accepted: dict[str, set[str]], current: dict[str, str], *, legacy_hash: str | None = None) -> int:
        """Give every row that ``accepted`` (or ``legacy_hash``) marks valid its group's ``current``
        stamp, so that the report, which knows only current stamps, and later versions keep it.
        Returns the number of rows rewritten (each atomically)."""
        count = 0
        for path, row, group, stamp in self._stamped_rows():
            if group not in current or group not in accepted or stamp is None or stamp == current[group]:
                continue
            if stamp in accepted[group] or (legacy_hash is not None and stamp == legacy_hash):
                row["rows_hash"] = current[group]
                self.write_row(path.stem, row)
                count += 1
        return count

    def _stamped_rows(self):
        """``(path, row, key group, stamp)`` of every readable row file."""
        for path in self.cells_dir.glob("*.json"):
            try:
                row = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            yield path, row, key_group(row.get("task", "attribution"), row.get("scenario", "")), row.get("rows_hash")

    # -- rows -----------------------------------------------------------------------------
    def row_path(self, stem: str) -> Path:
        return self.cells_dir / f"{stem}.json"

    def has(self, stem: str) -> bool:
        return self.row_path(stem).is_file()

    def write_row(self, stem: str, row: dict) -> Path:
        """Store one finished cell's row atomically (temp file + rename)."""
        path = self.row_path(stem)
        atomic_write_text(path, json.dumps(json_ready(row), indent=1, sort_keys=True, default=_json_default))
        return path

    def rows(self, stems: Iterable[str] | None = None) -> list[dict]:
        """Rows on disk, in the order of ``stems`` when given (missing ones skipped), else by name."""
        if stems is None:
            paths = sorted(self.cells_dir.glob("*.json"))
        else:
            paths = [self.row_path(s) for s in stems]
        out = []
        for path in paths:
            if path.is_file():
                out.append(json.loads(path.read_text(encoding="utf-8")))
        return out

    # -- csv ------------------------------------------------------------------------------
    def write_csv(self, rows: list[dict], path: str | os.PathLike | None = None) -> Path:
        """Write ``results.csv`` (atomically) with one row per cell and flat columns."""
        path = Path(path) if path is not None else self.outdir / "results.csv"
        atomic_write_text(path, rows_to_csv(rows))
        return path


def flatten_row(row: dict) -> dict:
    """The flat CSV form of a row: nested values dropped or JSON-encoded, per-class columns kept."""
    flat = {}
    for key, value in row.items():
        if key in _NESTED:
            continue
        if isinstance(value, (dict, list, tuple)):
            flat[key] = json.dumps(value, sort_keys=True, default=_json_default)
        else:
            flat[key] = value
    if "confusion_matrix" in row:
        flat["confusion_matrix"] = json.dumps(row["confusion_matrix"], default=_json_default)
    return flat


def rows_to_csv(rows: list[dict]) -> str:
    flats = [flatten_row(r) for r in rows]
    keys: list[str] = [c for c in LEADING_COLUMNS if any(c in f for f in flats)]
    params = sorted({k for f in flats for k in f if k.startswith("param_")})
    per_class = sorted({k for f in flats for k in f if k.startswith("acc_")})
    keys += params + per_class
    rest = sorted({k for f in flats for k in f} - set(keys))
    keys += rest
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for f in flats:
        writer.writerow({k: ("" if f.get(k) is None else f.get(k)) for k in keys})
    return buf.getvalue()


def read_csv(path: str | os.PathLike) -> list[dict]:
    """results.csv back as a list of dicts (strings converted to numbers where they parse)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key, value in row.items():
            if value == "":
                row[key] = None
                continue
            try:
                row[key] = int(value)
            except ValueError:
                try:
                    row[key] = float(value)
                except ValueError:
                    pass
    return rows
