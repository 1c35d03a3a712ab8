"""Tables and the figure of docs/adversarial.md from the rows of the adv runs.

Reads the re-identification rows of ``benchmarks/reid_grid.py`` (``--reid``: a folder of
``rows-*.jsonl``) and the ``results.csv`` of the attribution experiments (``--attribution`` for the
yu2019 grid, ``--dct`` for the DCT detector on the same perturbations), prints Markdown tables and
writes the figure (``--figure``): budget against re-identification and against laundering, with
DP-Pix beside it at matched PSNR.

    python benchmarks/adv_results.py --reid docs/data/adv-reid-cpu32 --attribution docs/data/adv-celeba-cpu32/results.csv \\
        --dct docs/data/adv-celeba-cpu32/results-dct.csv --figure docs/img/adv-budget.png
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np


def _stat(values, percent: bool = True, digits: int = 1) -> str:
    vals = [float(v) for v in values if v is not None and v == v]
    if not vals:
        return "-"
    scale = 100.0 if percent else 1.0
    if len(vals) == 1:
        return f"{scale * vals[0]:.{digits}f}"
    return f"{scale * np.mean(vals):.{digits}f} ± {scale * np.std(vals, ddof=1):.{digits}f}"


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and v == v]
    return float(np.mean(vals)) if vals else None


def short(spec: str) -> str:
    """A spec without its surrogate path and target, for tables."""
    spec = re.sub(r",?model=[^,]*", "", str(spec))
    return spec.replace(",target=attribution", "").replace(",target=reid", "").replace(",noise=fast", "")


# --------------------------------------------------------------------------- re-identification
def load_reid(folder: Path) -> list[dict]:
    """The finished rows of a reid_grid output folder (each cell once)."""
    from reid_grid import load_rows

    return [r for r in load_rows(folder) if "error" not in r]


def reid_table(rows: list[dict]) -> str:
    first = rows[0]
    methods = list(dict.fromkeys(r["grid_method"] for r in rows))
    methods.sort(key=lambda m: (not m.startswith("none"), not m.startswith("adv"), m))

    def pick(method, arch, variant, key="accuracy"):
        return [r.get(key) for r in rows if r["grid_method"] == method and r["arch"] == arch
                and r["variant"] == variant]

    transfer = sorted({r["arch"] for r in rows if r["arch"] != "mcpherson2016"})
    head = ["method", "PSNR dB", "SSIM", "surrogate (attacked)", "same network, other seed",
            *[f"{a} (other network)" for a in transfer], "retrained attacker", "seeds"]
    pretrained = ""
    if first.get("pretrain"):  # by_protocol keeps pretrained and from-scratch rows apart
        surrogates = [(r.get("surrogate") or {}).get("split") or {} for r in rows if r.get("surrogate")]
        also = ", the surrogate too," if surrogates and all(s.get("pretrained_on_others") for s in surrogates) else ""
        pretrained = (f" Every model{also} first learned the {first['n_pretrain_identities']:,} "
                      f"other people ({first['n_pretrain']:,} faces).")
    lines = [f"{data_set_name(first)}, {first['n_identities']} people, {first['n_train']} training / "
             f"{first['n_test']} test images, {first['image_shape'][1]} px "
             f"{'grey' if first['image_shape'][0] == 1 else 'RGB'}, chance {100 * first['chance']:.1f}%; top-1 "
             f"re-identification accuracy in %, mean ± std over seeds.{pretrained}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # the surrogate on the clean test faces, once per seed (every adv row of a seed has the same figure)
    surrogate_clean = {r["seed"]: r["accuracy_surrogate_clean"] for r in rows
                       if r.get("accuracy_surrogate_clean") is not None}
    for m in methods:
        mrows = [r for r in rows if r["grid_method"] == m]
        psnr = _mean(r.get("psnr_obfuscated") for r in mrows if m != "none")
        ssim = _mean(r.get("ssim_obfuscated") for r in mrows if m != "none")
        clean = m == "none"
        cells = [f"`{m}`", "-" if psnr is None else f"{psnr:.1f}", "-" if ssim is None else f"{ssim:.3f}",
                 _stat(surrogate_clean.values() if clean else pick(m, "mcpherson2016", "retrain", "accuracy_surrogate")),
                 _stat(pick(m, "mcpherson2016", "retrain" if clean else "no-retrain")),
                 *[_stat(pick(m, a, "no-retrain")) for a in transfer],
                 _stat(pick(m, "mcpherson2016", "retrain")),
                 str(len({r["seed"] for r in mrows}))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def data_set_name(row: dict) -> str:
    return "Extended Yale B" if row["protocol"].startswith("yaleb") else "CelebA identities"


def by_protocol(rows: list[dict]) -> list[list[dict]]:
    """The rows of each protocol apart, and within one the models pretrained on other people apart
    from those trained from scratch (a folder may hold several; their cells must not mix)."""
    group = lambda r: (r["protocol"], bool(r.get("pretrain")))  # noqa: E731
    return [[r for r in rows if group(r) == g] for g in dict.fromkeys(map(group, rows))]


# --------------------------------------------------------------------------- attribution
def load_csv(path: Path | None) -> list[dict]:
    """Attribution rows of a ``results.csv``, or of every row file of an experiment directory
    (several experiment files may share one directory; results.csv lists the last one's cells)."""
    if path is None or not Path(path).exists():
        return []
    from privattrib.experiments import ResultsStore, read_csv

    if Path(path).is_dir():
        from privattrib.experiments.store import flatten_row

        rows = [flatten_row(r) for r in ResultsStore(path).rows()]
    else:
        rows = read_csv(path)
    return [r for r in rows if r.get("task", "attribution") == "attribution"]


def laundering_table(rows: list[dict], dct: list[dict]) -> str:
    clean = [r for r in rows if r["scenario"] == "clean-train"]
    specs = list(dict.fromkeys(r["spec"] for r in clean))
    head = ["method", "PSNR dB", "surrogate (attacked)", "unseen yu2019 (3 seeds)", "yu2019, attack aimed at it",
            "unseen DCT detector", "accuracy, unseen yu2019", "seeds"]
    lines = ["Laundering rate in % (share of GAN test images called `real`), mean ± std over seeds; the "
             "perturbations are made once against the surrogate (yu2019, weight seed 100).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec in specs:
        s = [r for r in clean if r["spec"] == spec]
        d = [r for r in dct if r["spec"] == spec and r["scenario"] == "clean-train"]
        psnr = _mean(r.get("psnr") for r in s) if spec != "none" else None
        cells = [f"`{short(spec)}`", "-" if psnr is None else f"{psnr:.1f}",
                 _stat(r.get("laundering_rate_surrogate") for r in s),
                 _stat(r.get("laundering_rate") for r in s),
                 _stat(r.get("laundering_rate_adaptive") for r in s),
                 _stat(r.get("laundering_rate") for r in d),
                 _stat(r.get("accuracy") for r in s), str(len(s))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def immunization_table(rows: list[dict]) -> str:
    specs = [s for s in dict.fromkeys(r["spec"] for r in rows if str(r["spec"]).startswith("adv"))
             if any(r["spec"] == s and r["scenario"] != "clean-train" for r in rows)]
    order = ["clean-train", "fine-tune", "fine-tune+adv", "obfuscated-train", "obfuscated-train+adv"]
    head = ["method", "detector", "accuracy", "laundering", "accuracy, attack aimed at it",
            "laundering, attack aimed at it", "accuracy on clean images", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec in specs:
        for scenario in order:
            s = [r for r in rows if r["spec"] == spec and r["scenario"] == scenario]
            if not s:
                continue
            lines.append("| " + " | ".join([
                f"`{short(spec)}`", scenario, _stat(r.get("accuracy") for r in s),
                _stat(r.get("laundering_rate") for r in s), _stat(r.get("accuracy_adaptive") for r in s),
                _stat(r.get("laundering_rate_adaptive") for r in s),
                _stat(r.get("accuracy_on_originals") for r in s), str(len(s))]) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figure
def _series(ax, rows, family, x_key, y_pick, label, style, annotate=None) -> None:
    """One curve: per method of ``family`` (a prefix or a predicate on the method name, ``r["_m"]``)
    the mean of ``x_key`` against the mean ± std of ``y_pick(method)``, in %."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["_m"], []).append(r)
    pts = []
    for m, g in groups.items():
        if not (family(m) if callable(family) else m.startswith(family)):
            continue
        xs, ys = [r.get(x_key) for r in g if r.get(x_key) is not None], y_pick(m)
        if not xs or not ys:
            continue
        pts.append((float(np.mean(xs)), 100 * float(np.mean(ys)), 100 * float(np.std(ys, ddof=1)) if len(ys) > 1
                    else 0.0, annotate(m) if annotate else ""))
    pts.sort()
    if not pts:
        return
    x, y, e, names = zip(*pts)
    ax.errorbar(x, y, yerr=e, fmt=style, capsize=3, label=label)
    for xi, yi, name in zip(x, y, names):
        if name:
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)


def _dp_label(m: str) -> str:
    return re.sub(r".*epsilon=([0-9.]+).*", r"DP ε=\1", m)


def _reid_panel(ax, reid: list[dict]) -> None:
    """Re-identification against PSNR: PGD and the generator per attacked model, DP-Pix beside them."""
    for r in reid:
        r["_m"] = r["grid_method"]

    def acc(arch, variant, key="accuracy"):
        return lambda m: [r[key] for r in reid if r["_m"] == m and r["arch"] == arch and r["variant"] == variant
                          and r.get(key) is not None]

    eps = lambda m: re.sub(r"adv:eps=([0-9.]+).*", r"eps \1", m).replace(",norm=l2", " L2")  # noqa: E731
    pgd = lambda m: m.startswith("adv:") and "norm=l2" not in m  # noqa: E731  (L-inf PGD; L2 is in the table)
    _series(ax, reid, pgd, "psnr_obfuscated", acc("mcpherson2016", "retrain", "accuracy_surrogate"),
            "adv: surrogate (attacked)", "o-", eps)
    _series(ax, reid, pgd, "psnr_obfuscated", acc("mcpherson2016", "no-retrain"), "adv: same network, other seed", "s-")
    for arch in sorted({r["arch"] for r in reid if r["arch"] != "mcpherson2016"}):
        _series(ax, reid, pgd, "psnr_obfuscated", acc(arch, "no-retrain"), f"adv: {arch}", "^-")
    _series(ax, reid, pgd, "psnr_obfuscated", acc("mcpherson2016", "retrain"), "adv: retrained attacker", "D-")
    _series(ax, reid, "adv-gen", "psnr_obfuscated", acc("mcpherson2016", "retrain", "accuracy_surrogate"),
            "adv-gen (one pass): surrogate", "o:")
    _series(ax, reid, "adv-gen", "psnr_obfuscated", acc("mcpherson2016", "no-retrain"),
            "adv-gen: same network, other seed", "s:")
    _series(ax, reid, "dp-pix", "psnr_obfuscated", acc("mcpherson2016", "retrain"), "DP-Pix b=1: retrained attacker",
            "D--", _dp_label)
    _series(ax, reid, "dp-pix", "psnr_obfuscated", acc("mcpherson2016", "no-retrain"), "DP-Pix b=1: clean-trained",
            "s--")
    clean = [r["accuracy"] for r in reid if r["_m"] == "none" and r["variant"] == "retrain"]
    if clean:
        ax.axhline(100 * np.mean(clean), color="black", ls=":", lw=1, label=f"clean {100 * np.mean(clean):.0f}%")
    ax.axhline(100 * reid[0]["chance"], color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("PSNR of the published image (dB)")
    ax.set_ylabel("re-identification top-1 (%)")
    first = reid[0]
    ax.set_title(f"Re-identification, {data_set_name(first).replace('Extended ', '')} {first['image_shape'][1]} px"
                 + (" (models pretrained on others)" if first.get("pretrain") else ""), fontsize=10)
    ax.legend(fontsize=7)


def _laundering_panel(ax, attribution: list[dict], dct: list[dict]) -> None:
    """Laundering rate against PSNR: PGD toward real per detector, DP-Pix b=1 beside it."""
    rows = [r for r in attribution if r["scenario"] == "clean-train"]
    for r in rows:
        r["_m"] = short(r["spec"])
    drows = [r for r in dct if r["scenario"] == "clean-train"]
    for r in drows:
        r["_m"] = short(r["spec"])

    def lr(rows_, key="laundering_rate"):
        return lambda m: [r[key] for r in rows_ if r["_m"] == m and r.get(key) is not None]

    eps = lambda m: re.sub(r"adv:eps=([0-9.]+).*", r"eps \1", m)  # noqa: E731
    real = [r for r in rows if "goal=real" in r["_m"] or not r["_m"].startswith("adv")]
    _series(ax, real, "adv", "psnr", lr(rows, "laundering_rate_surrogate"), "adv→real: surrogate (attacked)", "o-", eps)
    _series(ax, real, "adv", "psnr", lr(rows), "adv→real: unseen yu2019", "s-")
    _series(ax, real, "adv", "psnr", lr(rows, "laundering_rate_adaptive"), "adv→real: aimed at that yu2019", "v-")
    if drows:
        _series(ax, [r for r in drows if r["_m"].startswith("adv")], "adv", "psnr", lr(drows), "adv→real: unseen DCT",
                "^-")
        _series(ax, [r for r in drows if r["_m"].startswith("dp-pix:b=1")], "dp-pix", "psnr", lr(drows),
                "DP-Pix b=1: DCT", "^--")
    _series(ax, [r for r in rows if r["_m"].startswith("dp-pix:b=1")], "dp-pix", "psnr", lr(rows),
            "DP-Pix b=1: yu2019", "s--", _dp_label)
    clean = [r["laundering_rate"] for r in rows if r["_m"] == "none"]
    if clean:
        ax.axhline(100 * np.mean(clean), color="black", ls=":", lw=1, label="no obfuscation")
    ax.set_xlabel("PSNR of the published image (dB)")
    ax.set_ylabel("GAN images called real (%)")
    ax.set_title("Laundering, CelebA vs 4 GANs 32 px")
    ax.legend(fontsize=7)


def figure(reid: list[dict], attribution: list[dict], dct: list[dict], path: Path) -> None:
    """Budget (as PSNR, each point named by its budget) against re-identification (left) and
    laundering (right), DP-Pix at matched PSNR beside the perturbation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = by_protocol(reid)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5.75 * (len(panels) + 1), 4.3), squeeze=False)
    for ax, rows in zip(axes[0], panels):
        _reid_panel(ax, rows)
    if attribution:
        _laundering_panel(axes[0][-1], attribution, dct)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reid", type=Path, nargs="*", default=[],
                        help="folders of reid_grid rows-*.jsonl (a table and a panel per protocol)")
    parser.add_argument("--attribution", type=Path, nargs="*", default=[],
                        help="results.csv files or experiment directories of the yu2019 experiments (laundering, immunization)")
    parser.add_argument("--dct", type=Path, default=None, help="results.csv or directory of the DCT-detector experiment")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args(argv)
    reid = [row for folder in args.reid for row in load_reid(folder)]
    attribution = [row for path in args.attribution for row in load_csv(path)]
    dct = load_csv(args.dct)
    for rows in by_protocol(reid):
        print(f"### Re-identification, {data_set_name(rows[0])}\n\n" + reid_table(rows) + "\n")
    if attribution:
        print("### Laundering\n\n" + laundering_table(attribution, dct) + "\n")
        print("### Immunization\n\n" + immunization_table(attribution) + "\n")
    if args.figure:
        figure(reid, attribution, dct, args.figure)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
