"""The report's figures (matplotlib, Agg backend), each returned as PNG bytes.

Every accuracy plot shows the spread over seeds (mean ± std as error bars, min-max as a light
band), the chance level (dashed grey) and the clean classifier's accuracy (dotted black).
"""

from __future__ import annotations

import io
import math
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from privattrib.report.tables import _num, clean_reference, group_rows, short_spec, stats, summarise  # noqa: E402

SCENARIO_MARKERS = {"clean-train": "o", "obfuscated-train": "s", "fine-tune": "^", "obfuscated-train+adv": "D",
                    "fine-tune+adv": "v"}


def fig_to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _reference_lines(ax, chance: float | None, clean: dict | None, metric: str = "accuracy") -> None:
    if chance is not None and metric == "accuracy":
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance {chance:.2f}")
    if clean is not None and clean[metric]["mean"] is not None:
        ax.axhline(clean[metric]["mean"], color="black", ls=":", lw=1,
                   label=f"clean {clean[metric]['mean']:.2f}")


def varying_params(rows: list[dict]) -> list[str]:
    """Parameter names (without ``param_``) that take more than one value among ``rows``."""
    names = sorted({k for r in rows for k in r if k.startswith("param_")})
    out = []
    for name in names:
        values = {repr(r.get(name)) for r in rows}
        if len(values) > 1:
            out.append(name[len("param_"):])
    return out


def _chance(rows):
    return next((_num(r.get("chance")) for r in rows if _num(r.get("chance")) is not None), None)


def accuracy_vs_param(rows: list[dict], method: str, param: str, metric: str = "accuracy") -> bytes:
    """``metric`` against parameter ``param`` of ``method``: one panel per scenario, one line per
    combination of the method's other varying parameters; mean ± std over seeds, min-max band."""
    mrows = [r for r in rows if r.get("method") == method]
    scenarios = list(OrderedDict.fromkeys(r["scenario"] for r in mrows))
    others = [p for p in varying_params(mrows) if p != param]
    chance, clean = _chance(rows), clean_reference(rows)
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 3.3), squeeze=False,
                             sharey=True)
    xs_all = [r.get(f"param_{param}") for r in mrows]
    numeric = all(_num(x) is not None for x in xs_all)
    categories = list(OrderedDict.fromkeys(str(x) for x in xs_all)) if not numeric else None
    positive = numeric and all(_num(x) > 0 for x in xs_all)
    log_x = bool(positive and max(_num(x) for x in xs_all) / min(_num(x) for x in xs_all) >= 10)
    for ax, scenario in zip(axes[0], scenarios):
        srows = [r for r in mrows if r["scenario"] == scenario]
        for other_key, line_rows in group_rows(srows, keys=tuple(f"param_{p}" for p in others)).items():
            points = []
            for (xval,), prow in group_rows(line_rows, keys=(f"param_{param}",)).items():
                s = stats(r.get(metric) for r in prow)
                if s["mean"] is None:
                    continue
                x = _num(xval) if numeric else categories.index(str(xval))
                points.append((x, s))
            if not points:
                continue
            points.sort(key=lambda p: p[0])
            x = np.array([p[0] for p in points])
            mean = np.array([p[1]["mean"] for p in points])
            std = np.array([p[1]["std"] for p in points])
            lo = np.array([p[1]["min"] for p in points])
            hi = np.array([p[1]["max"] for p in points])
            label = ", ".join(f"{p}={v}" for p, v in zip(others, other_key)) or None
            line = ax.errorbar(x, mean, yerr=std, marker=SCENARIO_MARKERS.get(scenario, "o"), capsize=3,
                               label=label)
            ax.fill_between(x, lo, hi, alpha=0.15, color=line[0].get_color())
        _reference_lines(ax, chance, clean, metric)
        ax.set_title(scenario)
        ax.set_xlabel(param)
        if log_x:
            ax.set_xscale("log")
        if categories is not None:
            ax.set_xticks(range(len(categories)), categories)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    if metric in ("accuracy", "laundering_rate"):
        axes[0][0].set_ylim(-0.02, 1.02)
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{method}: {metric.replace('_', ' ')} vs {param} (mean ± std over seeds, band = min-max)",
                 fontsize=10)
    return fig_to_png(fig)


def accuracy_bars(rows: list[dict], metric: str = "accuracy") -> bytes:
    """Grouped bars: ``metric`` per method setting, one bar per scenario, mean ± std over seeds."""
    summary = summarise(rows)
    specs = list(OrderedDict.fromkeys(e["spec"] for e in summary))
    scenarios = list(OrderedDict.fromkeys(e["scenario"] for e in summary))
    index = {(e["spec"], e["scenario"]): e for e in summary}
    width = 0.8 / max(1, len(scenarios))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(specs) * max(1, len(scenarios)) ** 0.5 + 2), 4.0))
    for j, scenario in enumerate(scenarios):
        xs, ms, ss = [], [], []
        for i, spec in enumerate(specs):
            e = index.get((spec, scenario))
            if e is None or e[metric]["mean"] is None:
                continue
            xs.append(i + (j - (len(scenarios) - 1) / 2) * width)
            ms.append(e[metric]["mean"])
            ss.append(e[metric]["std"])
        ax.bar(xs, ms, width=width, yerr=ss, capsize=2, label=scenario)
    _reference_lines(ax, _chance(rows), clean_reference(rows), metric)
    ax.set_xticks(range(len(specs)), [short_spec(s) for s in specs], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(metric.replace("_", " "))
    if metric in ("accuracy", "laundering_rate"):
        ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    title = {"accuracy": "attribution accuracy per method setting",
             "laundering_rate": "laundering rate: share of GAN test images attributed to real"}.get(metric, metric)
    ax.set_title(f"{title} (mean ± std over seeds)", fontsize=10)
    return fig_to_png(fig)


def privacy_utility(rows: list[dict]) -> bytes | None:
    """Attribution accuracy against PSNR and SSIM of the obfuscated test images (means over seeds);
    colour = method, marker = scenario. Up and right = the classifier still works on images that
    stay close to the original."""
    summary = [e for e in summarise(rows) if e["spec"] != "none"]
    if not any(e["psnr"]["mean"] is not None or e["ssim"]["mean"] is not None for e in summary):
        return None
    methods = list(OrderedDict.fromkeys(e["method"] for e in summary))
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, util, label in ((axes[0], "psnr", "PSNR of obfuscated test images (dB)"),
                            (axes[1], "ssim", "SSIM of obfuscated test images")):
        for e in summary:
            if e[util]["mean"] is None or e["accuracy"]["mean"] is None:
                continue
            x = e[util]["mean"]
            if util == "psnr" and not math.isfinite(x):
                continue
            ax.errorbar(x, e["accuracy"]["mean"], yerr=e["accuracy"]["std"], ls="none",
                        marker=SCENARIO_MARKERS.get(e["scenario"], "o"), color=colours[e["method"]],
                        capsize=2, ms=5)
        _reference_lines(ax, _chance(rows), clean_reference(rows))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("attribution accuracy")
    axes[0].set_ylim(-0.02, 1.02)
    handles = [plt.Line2D([], [], color=colours[m], marker="o", ls="none", label=m) for m in methods]
    handles += [plt.Line2D([], [], color="k", marker=mk, ls="none", label=s)
                for s, mk in SCENARIO_MARKERS.items() if any(e["scenario"] == s for e in summary)]
    axes[1].legend(handles=handles, fontsize=7, loc="best")
    fig.suptitle("privacy-utility: attribution accuracy vs image utility", fontsize=10)
    return fig_to_png(fig)


def confusion_grid(rows: list[dict], method: str, class_names: list[str]) -> bytes | None:
    """Row-normalised confusion matrices (summed over seeds) for each setting of ``method`` (rows)
    and each scenario (columns). Rows of a matrix = true class, columns = predicted class."""
    summary = [e for e in summarise(rows) if e["method"] == method and "confusion" in e]
    if not summary:
        return None
    specs = list(OrderedDict.fromkeys(e["spec"] for e in summary))
    scenarios = list(OrderedDict.fromkeys(e["scenario"] for e in summary))
    index = {(e["spec"], e["scenario"]): e for e in summary}
    k = len(class_names)
    cell = 0.45 * k + 1.2
    fig, axes = plt.subplots(len(specs), len(scenarios), figsize=(cell * len(scenarios), cell * len(specs) * 0.9),
                             squeeze=False)
    for i, spec in enumerate(specs):
        for j, scenario in enumerate(scenarios):
            ax = axes[i][j]
            e = index.get((spec, scenario))
            if e is None:
                ax.axis("off")
                continue
            _draw_confusion(ax, e["confusion"], class_names, x_labels=i == len(specs) - 1, y_labels=j == 0)
            ax.set_title(f"{short_spec(spec)}\n{scenario}", fontsize=7)
    fig.suptitle(f"{method}: confusion matrices (true = rows, predicted = columns)", fontsize=9)
    fig.tight_layout()
    return fig_to_png(fig)


def _draw_confusion(ax, matrix, class_names: list[str], *, x_labels: bool = True, y_labels: bool = True,
                    fontsize: int = 6, counts: bool = False) -> None:
    """One row-normalised confusion matrix on ``ax`` (rows = true class, columns = predicted);
    with ``counts`` each cell also shows its number of images."""
    m = np.asarray(matrix, dtype=float)
    k = len(class_names)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    if k <= 8:
        for a in range(k):
            for b in range(k):
                text = f"{norm[a, b]:.2f}" + (f"\n({int(m[a, b])})" if counts else "")
                ax.text(b, a, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if norm[a, b] > 0.5 else "black")
    ax.set_xticks(range(k), class_names if x_labels else [""] * k, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(k), class_names if y_labels else [""] * k, fontsize=fontsize)


def confusion_figure(matrix, class_names: list[str], title: str) -> bytes:
    """One confusion matrix (counts, rows = true class), row-normalised, with the counts shown."""
    k = len(class_names)
    side = 0.9 * k + 2.0
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    _draw_confusion(ax, matrix, class_names, fontsize=8, counts=True)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig_to_png(fig)


def reliability_figure(curves: dict[str, dict], title: str) -> bytes:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per
    curve (e.g. ``{"before (T = 1), ECE 0.08": bins, "after (T = 1.9), ECE 0.02": bins}``, each as
    :func:`privattrib.attribution.calibration.reliability_bins` returns), beside the diagonal of a
    perfectly calibrated model; marker area grows with the bin's number of images."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    for label, bins in curves.items():
        used = np.asarray(bins["count"]) > 0
        conf, acc, count = (np.asarray(bins[key])[used] for key in ("confidence", "accuracy", "count"))
        line, = ax.plot(conf, acc, lw=1.2, label=label)
        ax.scatter(conf, acc, s=8 + 60 * count / max(1, count.max()), color=line.get_color(), zorder=3)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (largest class probability)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    return fig_to_png(fig)


def example_grid(images_nchw: np.ndarray, keys: list[str], labels: list[str], specs: list[str],
                 seed: int = 0) -> bytes:
    """Example images: one column per image (titled with its class), row 1 the originals, then one
    row per method setting (noise drawn with ``seed`` and the images' keys, as in the cells)."""
    from privattrib.obfuscation import make

    rows = [("original", images_nchw)]
    for spec in specs:
        if spec == "none":
            continue
        ob = make(spec)
        rows.append((short_spec(spec), np.asarray(_apply(ob, images_nchw, seed, keys))))
    n = len(images_nchw)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.25 * n + 1.6, 1.25 * len(rows)), squeeze=False)
    for i, (title, batch) in enumerate(rows):
        for j in range(n):
            ax = axes[i][j]
            img = batch[j].transpose(1, 2, 0)
            ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                      vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(labels[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(title, fontsize=6, rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return fig_to_png(fig)


def paired_bars(rows: list[dict], pairs: list[tuple[str, str]], ylabel: str, title: str,
                reference: tuple[str, str] | None = None, chance: bool = False) -> bytes | None:
    """Bars of several columns side by side per method setting (mean ± std over seeds), e.g. PSNR
    of the obfuscated vs the restored images. ``reference`` = (column, label) drawn as a dotted
    line at its mean over all rows; ``chance`` adds the rows' chance line."""
    specs = list(OrderedDict.fromkeys(r["spec"] for r in rows))
    if not specs:
        return None
    width = 0.8 / len(pairs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(specs) + 2), 3.8))
    for j, (col, label) in enumerate(pairs):
        xs, ms, ss = [], [], []
        for i, spec in enumerate(specs):
            st = stats(r.get(col) for r in rows if r["spec"] == spec)
            if st["mean"] is None:
                continue
            xs.append(i + (j - (len(pairs) - 1) / 2) * width)
            ms.append(st["mean"])
            ss.append(st["std"])
        ax.bar(xs, ms, width=width, yerr=ss, capsize=2, label=label)
    if reference is not None:
        st = stats(r.get(reference[0]) for r in rows)
        if st["mean"] is not None:
            ax.axhline(st["mean"], color="black", ls=":", lw=1, label=f"{reference[1]} {st['mean']:.2f}")
    if chance and _chance(rows) is not None:
        ax.axhline(_chance(rows), color="grey", ls="--", lw=1, label=f"chance {_chance(rows):.2f}")
    ax.set_xticks(range(len(specs)), [short_spec(s) for s in specs], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return fig_to_png(fig)


def _apply(ob, images_nchw: np.ndarray, seed: int, keys: list[str]):
    import torch

    out = ob(torch.from_numpy(np.ascontiguousarray(images_nchw)), seed=seed, keys=keys)
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)
