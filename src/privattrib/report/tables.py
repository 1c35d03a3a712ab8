"""Aggregate results rows over seeds and lay them out as tables (HTML and terminal)."""

from __future__ import annotations

import html
import math
from collections import OrderedDict
from typing import Iterable

import numpy as np

METRICS = ("accuracy", "laundering_rate", "mse", "psnr", "ssim", "wall_s")


def _num(x) -> float | None:
    if x is None or x == "":
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def group_rows(rows: Iterable[dict], keys=("spec", "scenario")) -> "OrderedDict[tuple, list[dict]]":
    """Rows grouped by ``keys`` (first-seen order)."""
    groups: OrderedDict[tuple, list[dict]] = OrderedDict()
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    return groups


def stats(values: Iterable) -> dict:
    """mean, std (sample std over seeds, ddof = 1; 0 for one value), min, max and n of the finite
    values (None when empty)."""
    vals = np.array([v for v in (_num(x) for x in values) if v is not None], dtype=float)
    if len(vals) == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, "min": float(vals.min()),
            "max": float(vals.max()), "n": int(len(vals))}


def summarise(rows: list[dict]) -> list[dict]:
    """One entry per (spec, scenario): identity columns of its first row + stats of each metric
    over seeds + the per-class accuracy means + the confusion matrix summed over seeds."""
    out = []
    for (spec, scenario), group in group_rows(rows).items():
        first = group[0]
        entry = {
            "spec": spec, "scenario": scenario, "method": first.get("method"),
            "epsilon": first.get("epsilon"), "privacy_notion": first.get("privacy_notion"),
            "noise": first.get("noise"), "seeds": sorted(r.get("seed") for r in group),
            "params": {k[len("param_"):]: v for k, v in first.items() if k.startswith("param_") and v is not None},
            "chance": _num(first.get("chance")),
        }
        for metric in METRICS:
            entry[metric] = stats(r.get(metric) for r in group)
        classes = [k for k in first if k.startswith("acc_")]
        entry["per_class"] = {k[4:]: stats(r.get(k) for r in group)["mean"] for k in classes}
        mats = [np.asarray(r["confusion_matrix"], dtype=float) for r in group
                if r.get("confusion_matrix") is not None]
        if mats and all(m.shape == mats[0].shape for m in mats):
            entry["confusion"] = np.sum(mats, axis=0)
        out.append(entry)
    return out


def clean_reference(rows: list[dict]) -> dict | None:
    """Stats over seeds of the clean (``none``) rows: the reference line of every plot.

    Attribution: the ``clean-train`` rows; attack rows: their own ``none`` scenario (reid:retrain).
    """
    clean = [r for r in rows if r.get("spec") == "none"]
    if not clean:
        return None
    scenarios = [r.get("scenario") for r in clean]
    pick = "clean-train" if "clean-train" in scenarios else scenarios[0]
    clean = [r for r in clean if r.get("scenario") == pick]
    return {"accuracy": stats(r.get("accuracy") for r in clean),
            "laundering_rate": stats(r.get("laundering_rate") for r in clean)}


def fmt_stat(s: dict | None, digits: int = 3, percent: bool = False) -> str:
    if not s or s.get("mean") is None:
        return "–"
    scale = 100.0 if percent else 1.0
    mean = s["mean"] * scale
    if s["n"] > 1:
        return f"{mean:.{digits}f} ± {s['std'] * scale:.{digits}f}"
    return f"{mean:.{digits}f}"


def summary_html(summary: list[dict], class_names: list[str]) -> str:
    """The per-(spec, scenario) table of the report."""
    head = ["method setting", "scenario", "ε", "privacy notion", "seeds", "accuracy", "laundering",
            "PSNR (dB)", "SSIM", *[f"acc {c}" for c in class_names], "chance"]
    lines = ["<table class='results'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
             + "</tr></thead><tbody>"]
    for e in summary:
        cells = [
            f"<code>{html.escape(str(e['spec']))}</code>", html.escape(str(e["scenario"])),
            "–" if e["epsilon"] in (None, "") else html.escape(f"{e['epsilon']:g}" if isinstance(e["epsilon"], (int, float)) else str(e["epsilon"])),
            html.escape(str(e.get("privacy_notion") or "none")),
            str(len(e["seeds"])),
            fmt_stat(e["accuracy"]), fmt_stat(e["laundering_rate"]), fmt_stat(e["psnr"], 2),
            fmt_stat(e["ssim"]),
            *[("–" if e["per_class"].get(c) is None else f"{e['per_class'][c]:.3f}") for c in class_names],
            "–" if e["chance"] is None else f"{e['chance']:.3f}",
        ]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def short_spec(spec: str) -> str:
    """A spec shortened for narrow tables: no default noise backend, ``eps`` for epsilon, a model
    checkpoint by its file name only."""
    import re

    text = str(spec).replace(",noise=fast", "").replace("epsilon=", "eps=")
    return re.sub(r"model=[^,]*[/\\]([^,/\\]+)", r"model=\1", text)


def _laundering_scenario(scenarios: list[str]) -> str | None:
    """Which scenario's laundering rate a summary shows: clean-train's (a detector never shown
    obfuscated images) when the rows have it, else the first scenario present, named in the header."""
    return "clean-train" if "clean-train" in scenarios else (scenarios[0] if scenarios else None)


def _laundering(per: dict, scenario: str | None):
    return per[scenario]["laundering_rate"] if scenario in per else None


def summary_rich_table(rows: list[dict], title: str = "results (mean over seeds)", max_rows: int = 40):
    """A short terminal table: accuracy per method setting and scenario, plus utility (attribution rows)."""
    from rich import box
    from rich.table import Table

    summary = summarise([r for r in rows if r.get("task", "attribution") == "attribution"])
    scenarios = list(OrderedDict.fromkeys(e["scenario"] for e in summary))
    short = {"clean-train": "clean", "obfuscated-train": "obf", "fine-tune": "tune", "obfuscated-train+adv": "obf+adv",
             "fine-tune+adv": "tune+adv"}
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method setting", style="cyan", overflow="fold", min_width=min(26, max(
        [len(short_spec(e["spec"])) for e in summary] or [10])))
    for s in scenarios:
        table.add_column(short.get(s, s), justify="right")
    laundering_from = _laundering_scenario(scenarios)
    table.add_column("laund.", justify="right")
    table.add_column("PSNR", justify="right")
    table.add_column("SSIM", justify="right")
    by_spec: OrderedDict[str, dict] = OrderedDict()
    for e in summary:
        by_spec.setdefault(e["spec"], {})[e["scenario"]] = e
    for i, (spec, per) in enumerate(by_spec.items()):
        if i >= max_rows:
            table.add_row(f"... {len(by_spec) - max_rows} more in results.csv")
            break
        any_e = next(iter(per.values()))
        launder = _laundering(per, laundering_from)
        table.add_row(short_spec(spec), *[fmt_stat(per[s]["accuracy"], 2) if s in per else "" for s in scenarios],
                      fmt_stat(launder, 2) if launder is not None else "", fmt_stat(any_e["psnr"], 1),
                      fmt_stat(any_e["ssim"], 2))
    chance = next((e["chance"] for e in summary if e["chance"] is not None), None)
    notes = ["accuracy when the classifier was trained clean / on obfuscated images / fine-tuned from clean; "
             f"laund. = share of GAN images called real ({short.get(laundering_from, laundering_from)})"]
    if chance is not None:
        notes.append(f"chance {chance:.2f}; ± = std over seeds")
    table.caption = "; ".join(notes)
    return table


def summary_markdown(rows: list[dict], digits: int = 3) -> str:
    """A Markdown table of the attribution rows: one line per method setting, accuracy per
    scenario (mean ± std over seeds), laundering rate (clean-train), PSNR, SSIM, and the chance
    level below. For pasting measured results into documentation."""
    summary = summarise([r for r in rows if r.get("task", "attribution") == "attribution"])
    scenarios = list(OrderedDict.fromkeys(e["scenario"] for e in summary))
    by_spec: OrderedDict[str, dict] = OrderedDict()
    for e in summary:
        by_spec.setdefault(e["spec"], {})[e["scenario"]] = e
    laundering_from = _laundering_scenario(scenarios)
    head = ["method setting", *[f"acc. {s}" for s in scenarios], f"laundering ({laundering_from})", "PSNR dB", "SSIM",
            "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec, per in by_spec.items():
        any_e = next(iter(per.values()))
        launder = _laundering(per, laundering_from)
        cells = [f"`{short_spec(spec)}`", *[fmt_stat(per[s]["accuracy"], digits) if s in per else "" for s in scenarios],
                 fmt_stat(launder, digits) if launder is not None else "", fmt_stat(any_e["psnr"], 1),
                 fmt_stat(any_e["ssim"], digits),
                 str(len(any_e["seeds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    chance = next((e["chance"] for e in summary if e["chance"] is not None), None)
    if chance is not None:
        lines.append("")
        lines.append(f"Chance level {chance:.3f}; ± is the standard deviation over seeds.")
    return "\n".join(lines) + "\n"
