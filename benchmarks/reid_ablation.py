"""Issue 18: which protocol difference moves DP-Pix's re-identification ratio (DP-Pix accuracy /
plain pixelization accuracy) away from Fan 2018's Table 3, one factor at a time from our baseline.

Fan's setting: AT&T faces 92 x 112, b = 16, m = 16, so 6 x 7 cells with Laplace noise of scale
255 * 16 / (16 * 16 * epsilon) = 15.9 / epsilon grey levels per cell mean. At ``--scale s`` the grid
uses b = 4s and m = s * s, so every size keeps that noise per cell and m's share of the face:

    scale 1 (CPU): b = 4,  m = 1,  faces 24 x 24 (6 x 6 cells, the 96 px grid's cells), 28 x 24 (6 x 7)
    scale 4 (GPU): b = 16, m = 16, faces 96 x 96, 112 x 96 (Fan's exact b, m and 6 x 7 cells)

A cell = (data, factor's resolved options, method, seed); cells whose resolved options coincide run
once (plain pixelization has no noise, so the noise factors share the baseline's plain cell). Every
cell trains ``--epochs`` epochs and scores the test images after each one, so the table can read
any shorter training (the loop is deterministic: epoch 40 of a 100-epoch run is a 40-epoch run).

    python benchmarks/reid_ablation.py prepare --yaleb ../shared/data/yaleb --celeba ../shared/data/celeba \\
        --scale 1 --sets .cache/fan-ablation-s1
    python benchmarks/reid_ablation.py run --sets .cache/fan-ablation-s1 --out runs/fan-ablation-cpu \\
        --data yaleb --factors baseline noise-per-epoch --seeds 0 1 2 --shard 0/2 --threads 1
    python benchmarks/reid_ablation.py table --out runs/fan-ablation-cpu --at 40 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reid_grid as grid  # noqa: E402  (rows files, resuming and .npz sets are shared with the grid)

EPSILONS = (0.1, 0.3, 0.5, 1.0)
#: Fan 2018, Table 3 (AT&T, b = 16, m = 16): plain pixelization 96.25%, DP-Pix by epsilon.
FAN_PLAIN = 96.25
FAN_DP = {0.1: 3.75, 0.3: 18.75, 0.5: 43.75, 1.0: 77.5}
#: cell grid name -> (rows, columns) of cells; faces are (rows * b) x (columns * b)
GEOMETRIES = {"6x6": (6, 6), "6x7": (7, 6), "8x8": (8, 8)}
#: data name -> (set file prefix, train per identity, test per identity, max identities)
DATA = {
    # Fan's 8 training images; 10 test images per person (not 2) only to shrink the sampling
    # error: the expected accuracy is the same
    "yaleb": ("yaleb", 8, 10, None),
    # 5 images per person: 4 / 1, and 100 people (drawn per seed from all 2,000) so that clean
    # faces are re-identified well above chance (500 people: 3.5% at 32 px)
    "celeba": ("celeba", 4, 1, 100),
}
#: factor -> options changed from the baseline (geometry 6x6, all lighting, noise once per image,
#: one release of every image)
FACTORS = {
    "baseline": {},
    "cells-6x7": {"geometry": "6x7"},
    "cells-8x8": {"geometry": "8x8"},
    "even-light": {"max_light_angle": 25},
    "noise-per-epoch": {"noise_per_epoch": True},
    "train-releases-4": {"train_releases": 4},
    "test-releases-4": {"test_releases": 4},
    # the composition attack with matched training: 4 releases of every face, train and test
    "releases-4": {"train_releases": 4, "test_releases": 4},
    "train-48": {"train_per_identity": 48, "test_per_identity": 12},
    # AT&T-like faces (even light, 6 x 7 cells) for the baseline attacker, then with fresh noise
    "fan-data": {"geometry": "6x7", "max_light_angle": 25},
    "fan-like": {"geometry": "6x7", "max_light_angle": 25, "noise_per_epoch": True},
}
#: legend of the plot
FACTOR_LABELS = {
    "baseline": "our grid: all lighting, 6 x 6 cells, noise once",
    "noise-per-epoch": "+ fresh noise every epoch",
    "fan-data": "even light, 6 x 7 cells, noise once",
    "fan-like": "even light, 6 x 7 cells, fresh noise every epoch",
    "even-light": "+ even light",
    "releases-4": "+ 4 releases averaged (train and test)",
}
BASE = {"geometry": "6x6", "max_light_angle": None, "noise_per_epoch": False, "train_releases": 1,
        "test_releases": 1}
#: factors that only apply to Yale B (file names carry the light; 64 images per person)
YALEB_ONLY = {"even-light", "train-48", "fan-data", "fan-like"}
NOISE_OPTIONS = ("noise_per_epoch", "train_releases", "test_releases")


def methods(scale: int, epsilons=EPSILONS) -> list[str]:
    """Plain pixelization, then DP-Pix at each epsilon, with b = 4 * scale and m = scale**2."""
    b, m = 4 * scale, scale * scale
    return [f"pixelate:b={b}"] + [f"dp-pix:b={b},m={m},epsilon={eps:g}" for eps in epsilons]


def set_name(data: str, geometry: str, scale: int) -> str:
    rows, cols = GEOMETRIES[geometry]
    return f"{DATA[data][0]}-{rows * 4 * scale}x{cols * 4 * scale}.npz"


def resolve(data: str, factor: str, method: str, scale: int) -> dict:
    """The options a cell actually runs with; a method without noise ignores the noise options."""
    options = {**BASE, **FACTORS[factor]}
    _, n_train, n_test, max_ids = DATA[data]
    options.setdefault("train_per_identity", n_train)
    options.setdefault("test_per_identity", n_test)
    if method.startswith("pixelate"):
        options.update({k: BASE[k] for k in NOISE_OPTIONS})
    return {"data": data, "scale": scale, "max_identities": max_ids, "method": method, **options}


# --------------------------------------------------------------------------- prepare
def prepare(args) -> None:
    from privattrib.data import load_source

    out = Path(args.sets)
    out.mkdir(parents=True, exist_ok=True)
    for geometry in args.geometries:
        rows, cols = GEOMETRIES[geometry]
        hw = (rows * 4 * args.scale, cols * 4 * args.scale)
        if args.yaleb:
            faces = load_source(str(args.yaleb), size=hw)
            grid._save(out / set_name("yaleb", geometry, args.scale), faces,
                       {"source": "Extended Yale B (cropped), centre crop", "size": list(hw)})
            print(f"yaleb {geometry}: {faces.images.shape}, {faces.num_classes} people")
        if args.celeba and rows == cols:  # the yu2019 crop is square: no 6 x 7 CelebA set
            faces = load_source({"celeba": str(args.celeba)}, size=hw)
            ids = np.asarray(faces.identities)
            people, counts = np.unique(ids, return_counts=True)
            faces = faces.subset(np.flatnonzero(np.isin(ids, people[counts >= 5])))
            grid._save(out / set_name("celeba", geometry, args.scale), faces,
                       {"source": "CelebA img_align_celeba, yu2019 crop", "size": list(hw)})
            print(f"celeba {geometry}: {faces.images.shape}, {len(np.unique(faces.identities))} people")


# --------------------------------------------------------------------------- cells
def build_cells(args) -> list[dict]:
    cells, seen = [], set()
    for data in args.data:
        for factor in args.factors:
            if data != "yaleb" and factor in YALEB_ONLY:
                continue
            for seed in args.seeds:
                for method in methods(args.scale, args.epsilons):
                    cell = {**resolve(data, factor, method, args.scale), "seed": seed, "epochs": args.epochs,
                            "batch_size": args.batch_size}
                    key = cell_key(cell)
                    if key not in seen:
                        seen.add(key)
                        cells.append({**cell, "factor": factor})
    return cells


def cell_key(cell: dict) -> str:
    from privattrib.common import stable_hash

    return stable_hash({k: v for k, v in cell.items() if k != "factor"})


def run(args) -> None:
    import torch

    from privattrib.attacks import run_reid_cell

    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    shard, shards = (int(x) for x in args.shard.split("/"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = build_cells(args)[shard::shards]
    finished = grid.done_keys(out)
    todo = [c for c in cells if cell_key(c) not in finished]
    print(f"shard {shard}/{shards}: {len(cells)} cells, {len(cells) - len(todo)} already done", flush=True)
    missing = sorted({set_name(c["data"], c["geometry"], c["scale"]) for c in todo}
                     - {p.name for p in Path(args.sets).glob("*.npz")})
    if missing:
        sys.exit(f"{args.sets}: missing {', '.join(missing)} (make them with `prepare --scale {args.scale}`)")
    sets: dict[str, object] = {}
    rows_path = out / f"rows-{args.tag}-{shard}.jsonl"
    start = time.perf_counter()
    for i, cell in enumerate(todo):
        name = set_name(cell["data"], cell["geometry"], cell["scale"])
        if name not in sets:
            sets[name] = grid._load(Path(args.sets) / name)
        arch_cfg = {"arch": "mcpherson2016", "epochs": cell["epochs"], "batch_size": cell["batch_size"], "lr": 1e-3}
        t0 = time.perf_counter()
        try:
            row = run_reid_cell(sets[name], cell["method"], cell["seed"], arch_cfg, None, cell["train_per_identity"],
                                cell["test_per_identity"], device=args.device, max_identities=cell["max_identities"],
                                noise_per_epoch=cell["noise_per_epoch"], train_releases=cell["train_releases"],
                                test_releases=cell["test_releases"], max_light_angle=cell["max_light_angle"],
                                epoch_curve=True)
        except Exception as exc:  # one failing cell must not stop the grid; the error is a row too
            import traceback

            traceback.print_exc()
            row = {"attack": "reid", "error": repr(exc), "device": args.device}
        row.pop("method_describe", None)
        row.update({"cell_key": cell_key(cell), "ablation": cell, "grid_tag": args.tag})
        with open(rows_path, "a") as f:  # one line per cell, flushed: an interrupted run loses one cell at most
            f.write(json.dumps(row, default=str) + "\n")
        print(f"[{shard}] {i + 1}/{len(todo)} {cell['data']} {cell['factor']} {cell['method']} s{cell['seed']}: "
              f"{row.get('accuracy', float('nan')):.3f} ({time.perf_counter() - t0:.0f}s, "
              f"total {time.perf_counter() - start:.0f}s)", flush=True)


# --------------------------------------------------------------------------- tables
#: ``--best-epoch``: read every curve at its maximum (an epoch chosen on the test set: optimistic)
BEST = "best"


def _accuracy(row: dict, epoch: int | str | None) -> float:
    curve = row.get("accuracy_by_epoch") or []
    if epoch is None or not curve:
        return row["accuracy"]
    if epoch == BEST:
        return max(curve)
    return curve[min(epoch, len(curve)) - 1]


def summarize(rows: list[dict], data: str, scale: int, epoch: int | str | None, factors: list[str]) -> list[dict]:
    """Per factor and training length: the plain cells' accuracies by seed, and per epsilon the DP-Pix
    accuracies and ratios of the seeds that have both cells, read at ``epoch`` (None: the last
    epoch run; :data:`BEST`: each curve's maximum).

    Returns:
        ``[{"factor", "epochs", "plain": {seed: acc}, "eps": {eps: {"dp": [...], "ratio": r,
        "per_seed": [...]}}}]`` in the order of ``factors``.
    """
    by_key: dict[tuple, list[dict]] = {}
    for r in rows:
        a = r.get("ablation") or {}
        if "error" in r or a.get("data") != data or a.get("scale") != scale:
            continue
        key = tuple(sorted((k, json.dumps(v)) for k, v in a.items() if k not in ("factor", "seed")))
        by_key.setdefault(key, []).append(r)

    def find(factor: str, method: str, epochs: int) -> dict[int, float]:
        cell = {**resolve(data, factor, method, scale), "epochs": epochs}
        out = {}
        for key, found in by_key.items():
            k = dict(key)
            if all(k.get(name) == json.dumps(value) for name, value in cell.items()):
                out.update({r["seed"]: _accuracy(r, epoch) for r in found})
        return out

    epochs_run = sorted({(r.get("ablation") or {}).get("epochs") for r in rows if r.get("ablation")} - {None})
    meth = methods(scale)
    out = []
    for factor in factors:
        if data != "yaleb" and factor in YALEB_ONLY:
            continue
        for epochs in epochs_run:
            if isinstance(epoch, int) and epoch > epochs:
                continue
            plain = find(factor, meth[0], epochs)
            entry = {"factor": factor, "epochs": epochs, "plain": plain, "eps": {}}
            for eps, method in zip(EPSILONS, meth[1:]):
                dp = find(factor, method, epochs)
                common = sorted(set(dp) & set(plain))  # a ratio pairs each seed's DP cell with its plain cell
                if not common:
                    continue
                p_mean = float(np.mean([plain[s] for s in common]))
                entry["eps"][eps] = {
                    "dp": [dp[s] for s in common],
                    "ratio": float(np.mean([dp[s] for s in common])) / p_mean if p_mean > 0 else float("nan"),
                    "per_seed": [dp[s] / plain[s] for s in common if plain[s] > 0]}
            if entry["eps"]:
                out.append(entry)
    return out


def ratio_table(rows: list[dict], data: str, scale: int, epoch: int | str | None, factors: list[str]) -> list[str]:
    """Markdown: per factor, plain and DP-Pix accuracy and DP / plain at each epsilon, read at ``epoch``
    (see :func:`summarize`), beside Fan 2018's ratios."""
    entries = summarize(rows, data, scale, epoch, factors)
    several = len({e["epochs"] for e in entries}) > 1
    eps_cols = " | ".join(f"eps {e:g}" for e in EPSILONS)
    lines = [f"| factor | seeds | plain | DP-Pix {eps_cols} | ratio {eps_cols} | max gap to Fan |",
             "|---|---|---|" + "---|" * (2 * len(EPSILONS)) + "---|"]
    for entry in entries:
        accs, ratios, gaps = [], [], []
        for eps in EPSILONS:
            got = entry["eps"].get(eps)
            if got is None:
                accs.append("-")
                ratios.append("-")
                continue
            accs.append(_pct(got["dp"]))
            spread = f" ± {np.std(got['per_seed'], ddof=1):.2f}" if len(got["per_seed"]) > 1 else ""
            ratios.append(f"{got['ratio']:.2f}{spread}")
            gaps.append(abs(got["ratio"] - FAN_DP[eps] / FAN_PLAIN))
        counts = {len(got["dp"]) for got in entry["eps"].values()}
        label = f"{entry['factor']} ({entry['epochs']} ep.)" if several else entry["factor"]
        gap = f"{max(gaps):.2f}" if len(gaps) == len(EPSILONS) else "-"
        seeds = "-".join(str(n) for n in sorted({min(counts), max(counts)}))
        lines.append(f"| {label} | {seeds} | {_pct(list(entry['plain'].values()))} | {' | '.join(accs)} | "
                     f"{' | '.join(ratios)} | {gap} |")
    fan = " | ".join(f"{FAN_DP[e]:g}" for e in EPSILONS)
    fan_r = " | ".join(f"{FAN_DP[e] / FAN_PLAIN:.2f}" for e in EPSILONS)
    lines.append(f"| Fan 2018, AT&T | - | {FAN_PLAIN:g} | {fan} | {fan_r} | - |")
    return lines


def plot(args) -> None:
    """DP-Pix / plain against epsilon, one line per factor (mean ± std of the per-seed ratios), Fan's dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in grid.load_rows(Path(args.out)) if "error" not in r
            and (r.get("ablation") or {}).get("epochs") == args.epochs]
    entries = summarize(rows, args.data, args.scale, None, args.factors)
    if not entries:
        sys.exit(f"{args.out}: no {args.data} rows at scale {args.scale} with {args.epochs} epochs")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(EPSILONS, [FAN_DP[e] / FAN_PLAIN for e in EPSILONS], "k--", marker="s",
            label="Fan 2018, AT&T (Table 3)")
    for entry in entries:
        eps = sorted(entry["eps"])
        ax.errorbar(eps, [entry["eps"][e]["ratio"] for e in eps],
                    yerr=[np.std(entry["eps"][e]["per_seed"], ddof=1) if len(entry["eps"][e]["per_seed"]) > 1
                          else 0 for e in eps], marker="o", capsize=3, label=args.labels.get(entry["factor"],
                                                                                                  entry["factor"]))
    ax.set_xlabel("epsilon (DP-Pix, Fan's noise per cell: 15.9 / epsilon grey levels)")
    ax.set_ylabel("re-identification: DP-Pix / plain pixelization")
    ax.set_xticks(EPSILONS)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"Yale B, 8 training faces per person, {args.epochs} epochs, three seeds", fontsize=9)
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png)
    print(f"wrote {args.png}")


def _pct(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{values[0]:.1f}" if len(values) == 1 else f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def table(args) -> None:
    rows = grid.load_rows(Path(args.out))
    errors = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    scales = sorted({(r.get("ablation") or {}).get("scale") for r in rows} - {None})
    for scale in scales:
        for data in DATA:
            sub = [r for r in rows if (r.get("ablation") or {}).get("data") == data and r["ablation"]["scale"] == scale]
            if not sub:
                continue
            present = [f for f in FACTORS if any(r["ablation"]["factor"] == f for r in sub)]
            shapes = sorted({"x".join(map(str, r["image_shape"][1:])) for r in sub})
            for epoch in (args.at or [None]) + ([BEST] if args.best_epoch else []):
                when = ("at each cell's best epoch on the test set (optimistic)" if epoch == BEST
                        else f"after {epoch} epochs" if epoch else "after the last epoch run")
                lines = ratio_table(sub, data, scale, epoch, present)
                if len(lines) == 3:  # header and Fan's row only: no cell ran that long
                    continue
                print(f"\n#### {data}, scale {scale} (b = {4 * scale}, m = {scale * scale}; "
                      f"faces {', '.join(shapes)}), {when}\n")
                print("\n".join(lines))
            print("\nTop-1 accuracy in % (mean ± sample std over seeds); seeds = of the DP-Pix cells (a range "
                  "where epsilons differ); ratio = mean DP-Pix / mean plain over those seeds (± std of the per-seed "
                  f"ratios); plain over every seed run. {len(sub)} cells, "
                  f"{sum(r.get('wall_s', 0) for r in sub) / 60:.0f} min of cell time, devices "
                  f"{sorted({r.get('device', '?') for r in sub})}.")
    for r in errors:
        print(f"\nFAILED: {(r.get('ablation') or {}).get('factor')} {r.get('error')}")


def cells(args) -> None:
    """How dark the DP-Pix cells of a Yale B set are, and how many of them the [0, 255] clip cuts, for
    all lighting and for even light: the mechanism behind the even-light factor."""
    from privattrib.attacks.reid import obfuscate_once
    from privattrib.data import select_even_light

    faces = grid._load(Path(args.sets) / set_name("yaleb", args.geometry, args.scale))
    b, m = 4 * args.scale, args.scale * args.scale
    print(f"| Yale B {args.geometry} cells (b = {b}) | mean cell | cells below 32 | "
          + " | ".join(f"clipped at eps {e:g}" for e in EPSILONS) + " |")
    print("|---|---|---|" + "---|" * len(EPSILONS))
    parts = (("all 64 lighting conditions", faces), ("light within 25 degrees", select_even_light(faces, 25)))
    for label, part in parts:
        plain = obfuscate_once(f"pixelate:b={b}", part, 0, device="cpu").numpy()[:, :, ::b, ::b].astype(np.float64)
        clipped = []
        for eps in EPSILONS:
            noisy = obfuscate_once(f"dp-pix:b={b},m={m},epsilon={eps:g}", part, 0, device="cpu").numpy()[:, :, ::b, ::b]
            clipped.append(f"{np.mean((noisy == 0) | (noisy == 255)):.1%}")
        print(f"| {label} ({len(part)} faces) | {plain.mean():.0f} | {np.mean(plain < 32):.0%} | "
              f"{' | '.join(clipped)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="decode Yale B and CelebA at the ablation's sizes into .npz arrays")
    p.add_argument("--yaleb", type=Path)
    p.add_argument("--celeba", type=Path)
    p.add_argument("--scale", type=int, default=1, help="1: 24 px faces (b = 4); 4: 96 px faces (b = 16)")
    p.add_argument("--geometries", nargs="+", default=list(GEOMETRIES), choices=list(GEOMETRIES))
    p.add_argument("--sets", required=True)
    r = sub.add_parser("run", help="run (a shard of) the ablation; resumes")
    r.add_argument("--sets", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--data", nargs="+", default=["yaleb"], choices=list(DATA))
    r.add_argument("--factors", nargs="+", default=list(FACTORS), choices=list(FACTORS),
                   help="in priority order (a run cut short has done the first ones)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--epsilons", type=float, nargs="+", default=list(EPSILONS), choices=list(EPSILONS),
                   help="DP-Pix's epsilons to run (plain pixelization always runs)")
    r.add_argument("--scale", type=int, default=1)
    r.add_argument("--epochs", type=int, default=100)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--device", default="auto")
    r.add_argument("--shard", default="0/1", help="i/n: run every n-th cell starting at i")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--tag", default="ablation", help="rows go to rows-TAG-SHARD.jsonl")
    t = sub.add_parser("table", help="print the ratio tables of the rows so far")
    t.add_argument("--out", required=True)
    t.add_argument("--at", type=int, nargs="*", default=None,
                   help="read every curve after these epochs (default: the last epoch run)")
    t.add_argument("--best-epoch", action="store_true",
                   help="also a table read at each curve's maximum: the epoch a paper that reports its best "
                        "test epoch would pick (optimistic)")
    g = sub.add_parser("plot", help="a PNG of DP-Pix / plain against epsilon, one line per factor")
    g.add_argument("--out", required=True)
    g.add_argument("--png", required=True)
    g.add_argument("--data", default="yaleb", choices=list(DATA))
    g.add_argument("--scale", type=int, default=1)
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--factors", nargs="+", default=["baseline", "noise-per-epoch", "fan-data", "fan-like"],
                   choices=list(FACTORS))
    c = sub.add_parser("cells", help="dark and clipped DP-Pix cells of Yale B, all lighting against even light")
    c.add_argument("--sets", required=True)
    c.add_argument("--scale", type=int, default=1)
    c.add_argument("--geometry", default="6x7", choices=list(GEOMETRIES))
    args = parser.parse_args(argv)
    args.labels = FACTOR_LABELS
    if getattr(args, "scale", 1) < 1:
        parser.error("--scale must be >= 1")
    {"prepare": prepare, "run": run, "table": table, "plot": plot, "cells": cells}[args.step](args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
