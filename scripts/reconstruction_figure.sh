#!/usr/bin/env bash
# Makes docs/img/reconstruction-synthetic.png: original / obfuscated / U-Net-restored grids of the
# reconstruction attack (`privattrib attack reconstruct --grid`) for blur and for DP-Pix, on
# privattrib's synthetic identity set. Grids from Yale B or CelebA cannot be committed (their terms
# forbid sharing derived images); the same command makes them locally (docs/results-attacks.md).
# The three attacks run side by side, one thread each: 15 min 48 s on the 2-core machine (2026-11-27).
set -euo pipefail
cd "$(dirname "$0")/.."
PA=.venv/bin/privattrib
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# DP-Pix twice: m = 1 adds about 4 grey levels of noise a cell at b = 8 (255 m / (b^2 epsilon)),
# m = 16 about 64
specs=("blur:k=15" "dp-pix:b=8,m=1,epsilon=1" "dp-pix:b=8,m=16,epsilon=1")
pids=()
for i in "${!specs[@]}"; do
    OMP_NUM_THREADS=1 "$PA" attack reconstruct --data synthetic:n_identities=40,per_identity=10 \
        --method "${specs[$i]}" --size 64 --seed 0 --grid "$work/grid$i.png" --json > "$work/result$i.json" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done  # set -e: a failed attack stops the script here
.venv/bin/python - "$work" "${specs[@]}" <<'PY'
import json
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from privattrib.data import load_image

work, specs = sys.argv[1], sys.argv[2:]
fig, axes = plt.subplots(len(specs), 1, figsize=(8, 3.4 * len(specs)))
for i, (ax, spec) in enumerate(zip(axes, specs)):
    r = json.load(open(f"{work}/result{i}.json"))
    ax.imshow(load_image(f"{work}/grid{i}.png", 3))
    ax.set_title(f"{spec}: rows original / obfuscated / restored\n"
                 f"PSNR {r['psnr_obfuscated']:.1f} -> {r['psnr_restored']:.1f} dB; re-identified "
                 f"{100 * r['reid_obfuscated']:.0f}% -> {100 * r['reid_restored']:.0f}% "
                 f"(clean {100 * r['reid_clean']:.0f}%, chance {100 * r['chance']:.1f}%)", fontsize=8)
    ax.axis("off")
    print(spec, {k: round(r[k], 3) for k in ("psnr_obfuscated", "psnr_restored", "ssim_obfuscated",
                                             "ssim_restored", "reid_clean", "reid_obfuscated", "reid_restored")})
fig.tight_layout()
fig.savefig("docs/img/reconstruction-synthetic.png", dpi=110)
print("wrote docs/img/reconstruction-synthetic.png")
PY
