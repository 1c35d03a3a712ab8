"""``OUTDIR/report.html``: one self-contained page (figures embedded as base64 PNG, no external files)."""

from __future__ import annotations

import base64
import html
import json
import os
import time
import traceback
from collections import OrderedDict
from pathlib import Path

import numpy as np
import yaml

from privattrib.common import atomic_write_text
from privattrib.report import plots
from privattrib.report.tables import summarise, summary_html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table.results{border-collapse:collapse;font-size:.8em}table.results td,table.results th{border:1px solid #ddd;padding:2px 6px;text-align:right}
table.results td:first-child,table.results td:nth-child(2){text-align:left}table.results tr:nth-child(even){background:#f7f7f7}
img{max-width:100%;height:auto;display:block;margin:.6em 0}pre{background:#f5f5f5;padding:.8em;overflow:auto;font-size:.8em}
.note{color:#555;font-size:.9em}details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _section(title: str, body: str, anchor: str) -> str:
    return f"<h2 id='{anchor}'>{html.escape(title)}</h2>\n{body}\n"


def _safe(fn, *args, **kwargs):
    """A figure that fails is reported in the page; it must not lose the rest of the report."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001
        return None, f"<p class='note'>figure failed: {html.escape(''.join(traceback.format_exception_only(type(exc), exc)))}</p>"


def _examples(outdir: Path, manifest: dict, specs: list[str], cell_seed: int,
              per_class: int = 1) -> tuple[bytes | None, str | None]:
    """Test images of every class, original and obfuscated with every method setting, with the
    noise the cells of seed ``cell_seed`` drew for them."""
    from privattrib.attribution.scenarios import derive_seed

    data_dir = outdir / "data" / str(manifest.get("data_hash", ""))
    if not (data_dir / "test.npz").is_file():
        return None, "<p class='note'>example images: the assembled data set is not in this directory.</p>"
    info = json.loads((data_dir / "info.json").read_text(encoding="utf-8"))
    with np.load(data_dir / "test.npz", allow_pickle=False) as z:
        labels = z["labels"]
        keys = [str(k) for k in z["keys"]]
        picks = []
        for c in range(len(info["class_names"])):
            picks.extend(np.flatnonzero(labels == c)[:per_class].tolist())
        images = z["images"][picks]
    names = [info["class_names"][labels[i]] for i in picks]
    return _safe(plots.example_grid, images, [keys[i] for i in picks], names, specs,
                 seed=derive_seed(cell_seed, "obfuscation"))


def _attack_section(rows: list[dict]) -> str:
    body = ["<p class='note'>An identity classifier trained on obfuscated training images (<b>reid:retrain</b>) "
            "or on clean ones (<b>reid:no-retrain</b>), tested on obfuscated test images of the same people; "
            "noise drawn once per image. Chance = 1 / number of people.</p>",
            summary_html(summarise(rows), [])]
    png, err = _safe(plots.accuracy_bars, rows, "accuracy")
    body.append(_img(png, "re-identification accuracy") + (err or ""))
    for method in OrderedDict.fromkeys(r["method"] for r in rows if r.get("spec") != "none"):
        mrows = [r for r in rows if r.get("method") == method]
        for param in plots.varying_params(mrows):
            png, err = _safe(plots.accuracy_vs_param, rows, method, param)
            body.append(_img(png, f"reid {method} vs {param}") + (err or ""))
    return "\n".join(body)


def _reconstruct_section(rows: list[dict]) -> str:
    body = ["<p class='note'>A U-Net trained on (obfuscated, original) training pairs restores held-out test "
            "images; re-identification by a classifier trained on clean images, tested on the obfuscated and "
            "on the restored images.</p>"]
    for pairs, ylabel, title, ref, chance in (
        ([("psnr_obfuscated", "obfuscated"), ("psnr_restored", "restored")], "PSNR vs original (dB)",
         "does restoration bring the pixels back?", None, False),
        ([("ssim_obfuscated", "obfuscated"), ("ssim_restored", "restored")], "SSIM vs original",
         "structural similarity before and after restoration", None, False),
        ([("reid_obfuscated", "obfuscated"), ("reid_restored", "restored")], "re-identification accuracy",
         "does restoration bring identity back?", ("reid_clean", "clean images"), True),
    ):
        png, err = _safe(plots.paired_bars, rows, pairs, ylabel, title, ref, chance)
        body.append(_img(png, title) + (err or ""))
    return "\n".join(body)


def build_report(outdir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """(Re)build ``OUTDIR/report.html`` from the rows in ``OUTDIR/cells`` and ``experiment.json``.

    Contents: the summary table; accuracy against each varying parameter per method and scenario
    (mean ± std and min-max over seeds, chance and clean lines); accuracy per setting; privacy-utility
    plots (accuracy vs PSNR / SSIM); laundering rate; confusion matrices; example images (original
    and obfuscated); the data actually used (counts, sources, GAN quality); the spec and versions.

    Returns:
        The path of the written report.

    Raises:
        FileNotFoundError: ``outdir`` is not an experiment directory (no experiment.json).
    """
    from privattrib.experiments.store import ResultsStore

    outdir = Path(outdir)
    manifest_path = outdir / "experiment.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{outdir} is not an experiment directory (no experiment.json); "
                                "run `privattrib run SPEC -o OUTDIR` first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    store = ResultsStore(outdir)
    stems = manifest.get("cells")
    rows = store.rows(stems)
    valid = {None, manifest.get("rows_hash"), *(manifest.get("task_hashes") or {}).values()}
    rows = [r for r in rows if r.get("rows_hash") in valid]
    reid_rows = [r for r in rows if r.get("task") == "reid"]
    rec_rows = [r for r in rows if r.get("task") == "reconstruct"]
    all_rows, rows = rows, [r for r in rows if r.get("task", "attribution") == "attribution"]
    spec = manifest.get("spec", {})
    data_info_path = outdir / "data" / str(manifest.get("data_hash", "")) / "info.json"
    data_info = json.loads(data_info_path.read_text(encoding="utf-8")) if data_info_path.is_file() else {}
    class_names = data_info.get("class_names") or sorted({k[4:] for r in rows for k in r if k.startswith("acc_")})
    name = manifest.get("name", outdir.name)

    parts: list[str] = []
    n_cells = len(stems or [])
    frac = spec.get("obfuscated_fraction", 1.0)
    parts.append(
        f"<h1>privattrib report: {html.escape(name)}</h1>"
        f"<p>{len(all_rows)} of {n_cells} cells finished · classes: {html.escape(', '.join(class_names))} "
        f"(chance {1 / max(1, len(class_names)):.3f} when balanced) · obfuscated share of test images: {frac:g} · "
        f"built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>"
        "<p class='note'>Scenarios: <b>clean-train</b> = classifier trained on clean images, tested on obfuscated "
        "ones; <b>obfuscated-train</b> = trained and tested on obfuscated images (noise drawn once per image); "
        "<b>fine-tune</b> = the clean classifier fine-tuned on obfuscated images (Yu et al.'s immunization). "
        "Laundering rate = share of GAN test images attributed to the real class. Spread = std over seeds "
        "(error bars) and min-max (bands). DP-Pix/DP-Blur ε is ε-DP on m-pixel neighbours; SVD-MP ε is "
        "d<sub>X</sub>-privacy and not comparable with it.</p>"
    )
    if not rows:
        parts.append("<p><b>No finished cells yet.</b></p>")
    else:
        summary = summarise(rows)
        parts.append(_section("Summary (mean ± std over seeds)", summary_html(summary, class_names), "summary"))

        figs = []
        png, err = _safe(plots.accuracy_bars, rows, "accuracy")
        figs.append(_img(png, "accuracy per setting") + (err or ""))
        methods = list(OrderedDict.fromkeys(r["method"] for r in rows if r.get("spec") != "none"))
        for method in methods:
            mrows = [r for r in rows if r.get("method") == method]
            for param in plots.varying_params(mrows):
                png, err = _safe(plots.accuracy_vs_param, rows, method, param)
                figs.append(_img(png, f"{method} accuracy vs {param}") + (err or ""))
        parts.append(_section("Attribution accuracy", "\n".join(figs), "accuracy"))

        png, err = _safe(plots.privacy_utility, rows)
        parts.append(_section("Privacy-utility", (_img(png, "privacy-utility") or "<p class='note'>no utility "
                                                  "figures in the rows.</p>") + (err or ""), "utility"))

        figs = []
        png, err = _safe(plots.accuracy_bars, rows, "laundering_rate")
        figs.append(_img(png, "laundering rate") + (err or ""))
        for method in methods:
            mrows = [r for r in rows if r.get("method") == method]
            for param in plots.varying_params(mrows):
                png, err = _safe(plots.accuracy_vs_param, rows, method, param, metric="laundering_rate")
                figs.append(_img(png, f"{method} laundering vs {param}") + (err or ""))
        parts.append(_section("Laundering rate (GAN images passed off as real)", "\n".join(figs), "laundering"))

        figs = []
        for method in OrderedDict.fromkeys(r["method"] for r in rows):
            png, err = _safe(plots.confusion_grid, rows, method, class_names)
            if png or err:
                figs.append(f"<details{' open' if method == 'none' else ''}><summary>{html.escape(str(method))}"
                            f"</summary>{_img(png, f'confusion {method}')}{err or ''}</details>")
        parts.append(_section("Confusion matrices (summed over seeds, row-normalised)", "\n".join(figs), "confusion"))

        specs = list(OrderedDict.fromkeys(r["spec"] for r in rows))
        cell_seed = min(int(r["seed"]) for r in rows)
        png, err = _examples(outdir, manifest, specs, cell_seed)
        parts.append(_section(f"Example test images (as the cells of seed {cell_seed} saw them)",
                              _img(png, "examples") + (err or ""), "examples"))

    if reid_rows:
        parts.append(_section("Re-identification (attack)", _attack_section(reid_rows), "reid"))
    if rec_rows:
        parts.append(_section("Reconstruction (attack)", _reconstruct_section(rec_rows), "reconstruct"))
    if data_info:
        lines = []
        for src_name, src in data_info.get("sources", {}).items():
            shown = {k: v for k, v in src.items() if k != "quality"}
            lines.append(f"<li><b>{html.escape(src_name)}</b>: <code>{html.escape(json.dumps(shown, default=str))}</code></li>")
        quality_rows = []
        for src_name, src in data_info.get("sources", {}).items():
            q = src.get("quality") or {}
            if q:
                cells = [src_name, q.get("kid"), q.get("kid_real_vs_real"), q.get("spectrum_distance"),
                         q.get("spectrum_distance_real_vs_real"), q.get("colour_distance")]
                quality_rows.append("<tr>" + "".join(
                    f"<td>{html.escape(f'{c:.3g}' if isinstance(c, (int, float)) else str(c if c is not None else '–'))}</td>"
                    for c in cells) + "</tr>")
        if quality_rows:
            lines.append("</ul><p>Did the GANs learn? (the zoo's quality report, against the real training images; "
                         "lower is closer to real; the real-vs-real values are the floor)</p><table class='results'>"
                         "<tr><th>source</th><th>KID</th><th>KID real vs real</th><th>spectrum dist.</th>"
                         "<th>spectrum real vs real</th><th>colour dist.</th></tr>" + "".join(quality_rows)
                         + "</table><ul>")
        counts = json.dumps(data_info.get("counts", {}))
        parts.append(_section("Data", f"<p>images per split and class: <code>{html.escape(counts)}</code>; "
                                      f"shape C x H x W {data_info.get('shape')}</p><ul>{''.join(lines)}</ul>", "data"))
    failures = outdir / "failures.json"
    if failures.is_file():
        parts.append(_section("Failed cells (rerun the command to retry)",
                              f"<pre>{html.escape(failures.read_text(encoding='utf-8'))}</pre>", "failures"))
    env = manifest.get("environment", {})
    parts.append(_section("Versions and hardware", "<pre>" + html.escape(json.dumps(env, indent=1)) + "</pre>", "env"))
    raw_spec = (outdir / "spec.yaml").read_text(encoding="utf-8") if (outdir / "spec.yaml").is_file() else ""
    parts.append(_section("Experiment spec",
                          f"<p>as given:</p><pre>{html.escape(raw_spec)}</pre><details><summary>resolved</summary>"
                          f"<pre>{html.escape(yaml.safe_dump(spec, sort_keys=False))}</pre></details>", "spec"))

    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>privattrib: {html.escape(name)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    out = Path(out) if out is not None else outdir / "report.html"
    atomic_write_text(out, page)
    return out
